// Runs metal/kernels.metal's two matmul kernels (8x8 SIMD-group matrices, 32x32 tiles; and the
// 16x16 tile) on the CPU, every threadgroup of the grid launch.mm would dispatch, and compares each
// output element with a float64 reference. Not Metal: matmul_emulation_kernels.cpp says what is
// emulated. Built and run by metal/check/run.sh.
//
// Inputs are multiples of 1/4 in [-2, 2], exact in float32, float16 and bfloat16, and with K <= 64
// every product and partial sum is a multiple of 1/16 below 2^8: exact in float whatever the
// summation order. So float32 outputs must equal the reference exactly, and float16 / bfloat16
// outputs must equal it rounded to nearest-even; any indexing, tiling or bounds error shows.
// Every buffer ends exactly at an inaccessible page, so an access past an operand's or the
// output's end stops the test (SIGSEGV, reported); elements before an operand's offset are NaN,
// output elements start as a sentinel, and threadgroup memory starts as NaN.
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "guarded_memory.hpp"
#include "matmul_emulation.hpp"

thread_local std::barrier<>* current_threadgroup;
thread_local unsigned current_lane;

void emulated_threadgroup_barrier() { current_threadgroup->arrive_and_wait(); }
unsigned emulated_simd_lane() { return current_lane; }

namespace {

struct Case {
  EmulatedDType dtype;
  std::vector<long> batch;
  long M, N, K;
  bool a_transposed = false, b_transposed = false;
  bool b_broadcast = false;  // one B for every batch (batch strides 0)
  bool a_broadcast_first = false;  // A's first batch dim has stride 0
  long a_offset = 0, b_offset = 0;
};

const char* dtype_name(EmulatedDType d) {
  return d == EmulatedDType::f32 ? "float32" : d == EmulatedDType::f16 ? "float16" : "bfloat16";
}

size_t element_size(EmulatedDType d) { return d == EmulatedDType::f32 ? 4 : 2; }

uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// The stored bits of an exactly representable value v (a multiple of 1/4 in [-2, 2]).
uint32_t exact_bits(EmulatedDType d, double v) {
  if (d == EmulatedDType::f32) return float_bits(static_cast<float>(v));
  if (d == EmulatedDType::bf16) return float_bits(static_cast<float>(v)) >> 16;
  _Float16 h = static_cast<_Float16>(v);
  uint16_t u;
  std::memcpy(&u, &h, 2);
  return u;
}

// v rounded to nearest-even in dtype d: the reference output. float16 through the compiler's
// conversion; bfloat16 by choosing the nearer of its two neighbours.
uint32_t rounded_bits(EmulatedDType d, double v) {
  if (d != EmulatedDType::bf16) return exact_bits(d, v);
  uint32_t lo = float_bits(static_cast<float>(v)) & 0xffff0000u;  // v is exact in float here
  uint32_t hi = lo + 0x10000u;
  double dlo = std::fabs(v - bits_float(lo)), dhi = std::fabs(v - bits_float(hi));
  uint32_t pick = dlo < dhi ? lo : dhi < dlo ? hi : ((lo >> 16) & 1) ? hi : lo;
  return pick >> 16;
}

void store(const GuardedBuffer& buf, EmulatedDType d, long i, uint32_t bits) {
  std::memcpy(buf.data() + static_cast<size_t>(i) * element_size(d), &bits, element_size(d));
}

uint32_t load(const GuardedBuffer& buf, EmulatedDType d, long i) {
  uint32_t bits = 0;
  std::memcpy(&bits, buf.data() + static_cast<size_t>(i) * element_size(d), element_size(d));
  return bits;
}

uint32_t nan_bits(EmulatedDType d) { return d == EmulatedDType::f32 ? 0x7fc00000u : d == EmulatedDType::f16 ? 0x7e00u : 0x7fc0u; }
uint32_t sentinel_bits(EmulatedDType d) { return d == EmulatedDType::f32 ? 0x4640e400u : 0x5a5au; }

// One operand: `rows` x `cols` per batch, element (z, r, c) at offset + batch part + r*row + c*col.
struct Operand {
  long row, col;
  std::vector<long> batch_strides;
  long offset;
  std::unique_ptr<GuardedBuffer> data;
  std::vector<double> values;  // by storage index
};

long batch_part(const std::vector<long>& batch, const std::vector<long>& strides, long z) {
  long off = 0;
  for (size_t d = batch.size(); d-- > 0;) {
    off += (z % batch[d]) * strides[d];
    z /= batch[d];
  }
  return off;
}

Operand make_operand(EmulatedDType d, const std::vector<long>& batch, long rows, long cols, bool transposed, bool broadcast_all,
                     bool broadcast_first, long offset, uint32_t& seed) {
  Operand o;
  o.row = transposed ? 1 : cols;
  o.col = transposed ? rows : 1;
  o.offset = offset;
  long stride = rows * cols, stored = 1;
  o.batch_strides.assign(batch.size(), 0);
  for (size_t k = batch.size(); k-- > 0;) {
    bool broadcast = broadcast_all || (broadcast_first && k == 0);
    o.batch_strides[k] = broadcast ? 0 : stride * stored;
    if (!broadcast) stored *= batch[k];
  }
  long n = offset + stride * stored;
  o.data = std::make_unique<GuardedBuffer>(static_cast<size_t>(n) * element_size(d));
  o.values.assign(static_cast<size_t>(n), std::nan(""));
  for (long i = 0; i < offset; ++i) store(*o.data, d, i, nan_bits(d));
  for (long i = offset; i < n; ++i) {
    seed = seed * 1664525u + 1013904223u;
    double v = static_cast<double>(static_cast<int>(seed >> 24) % 17 - 8) / 4.0;
    o.values[static_cast<size_t>(i)] = v;
    store(*o.data, d, i, exact_bits(d, v));
  }
  return o;
}

MatmulParams params_for(const Case& c, const Operand& a, const Operand& b) {
  MatmulParams p{};
  p.M = c.M;
  p.N = c.N;
  p.K = c.K;
  p.a_row = a.row;
  p.a_col = a.col;
  p.b_row = b.row;
  p.b_col = b.col;
  p.batches = 1;
  for (long n : c.batch) p.batches *= n;
  p.batch.nd = static_cast<long>(c.batch.size());
  for (size_t d = 0; d < c.batch.size(); ++d) {
    p.batch.dims[d] = c.batch[d];
    p.ab.s[d] = a.batch_strides[d];
    p.bb.s[d] = b.batch_strides[d];
  }
  p.ab.offset = a.offset;
  p.bb.offset = b.offset;
  return p;
}

// Every threadgroup of the grid, one after another; the threads of one group all at once.
void run_grid(const EmulatedMatmul& m, const MatmulParams& p) {
  long tile = m.simdgroup ? 32 : 16;
  unsigned threads = m.simdgroup ? 128 : 256;
  long gx = (p.N + tile - 1) / tile, gy = (p.M + tile - 1) / tile, gz = std::min<long>(p.batches, 65535);
  std::vector<float> memory(emulated_threadgroup_floats(m.simdgroup));
  for (long z = 0; z < gz; ++z)
    for (long y = 0; y < gy; ++y)
      for (long x = 0; x < gx; ++x) {
        std::fill(memory.begin(), memory.end(), std::nanf(""));
        unsigned group[3] = {static_cast<unsigned>(x), static_cast<unsigned>(y), static_cast<unsigned>(z)};
        std::barrier<> barrier(threads);
        std::vector<std::jthread> workers;
        for (unsigned tid = 0; tid < threads; ++tid)
          workers.emplace_back([&, tid] {
            current_threadgroup = &barrier;
            current_lane = tid % 32;
            emulate_matmul_thread(m, tid, group, memory.data());
          });
      }
}

// Runs one kernel on one case; returns the number of wrong elements (and prints the first few).
long check(const Case& c, bool simdgroup, uint32_t seed) {
  EmulatedDType d = c.dtype;
  Operand a = make_operand(d, c.batch, c.M, c.K, c.a_transposed, false, c.a_broadcast_first, c.a_offset, seed);
  Operand b = make_operand(d, c.batch, c.K, c.N, c.b_transposed, c.b_broadcast, false, c.b_offset, seed);
  MatmulParams p = params_for(c, a, b);
  long outputs = p.batches * c.M * c.N;
  GuardedBuffer y(static_cast<size_t>(outputs) * element_size(d));
  for (long i = 0; i < outputs; ++i) store(y, d, i, sentinel_bits(d));
  EmulatedMatmul m{d, simdgroup, y.data(), a.data->data(), b.data->data(), &p};
  run_grid(m, p);

  long wrong = 0;
  auto report = [&](const std::string& what) {
    if (++wrong <= 3) std::printf("    %s\n", what.c_str());
  };
  for (long z = 0; z < p.batches; ++z) {
    long az = a.offset + batch_part(c.batch, a.batch_strides, z), bz = b.offset + batch_part(c.batch, b.batch_strides, z);
    for (long i = 0; i < c.M; ++i)
      for (long j = 0; j < c.N; ++j) {
        double sum = 0;
        for (long k = 0; k < c.K; ++k)
          sum += a.values[static_cast<size_t>(az + i * a.row + k * a.col)] * b.values[static_cast<size_t>(bz + k * b.row + j * b.col)];
        uint32_t want = rounded_bits(d, sum), got = load(y, d, (z * c.M + i) * c.N + j);
        if (got != want)
          report("y[" + std::to_string(z) + "][" + std::to_string(i) + "][" + std::to_string(j) + "]: bits " + std::to_string(got) +
                 ", want " + std::to_string(want) + " (" + std::to_string(sum) + ")");
      }
  }
  return wrong;
}

std::string describe(const Case& c) {
  std::string s = std::string(dtype_name(c.dtype)) + " [";
  for (long n : c.batch) s += std::to_string(n) + ",";
  s += std::to_string(c.M) + "x" + std::to_string(c.K) + "] @ [" + std::to_string(c.K) + "x" + std::to_string(c.N) + "]";
  if (c.a_transposed) s += ", A transposed";
  if (c.b_transposed) s += ", B transposed";
  if (c.b_broadcast) s += ", B broadcast";
  if (c.a_broadcast_first) s += ", A broadcast on batch dim 0";
  if (c.a_offset || c.b_offset) s += ", offsets " + std::to_string(c.a_offset) + "/" + std::to_string(c.b_offset);
  return s;
}

}  // namespace

int main() {
  signal(SIGSEGV, report_fault);
  signal(SIGBUS, report_fault);
  using D = EmulatedDType;
  const std::vector<Case> cases = {
      {.dtype = D::f32, .batch = {}, .M = 32, .N = 32, .K = 16},  // one whole tile, one k step
      {.dtype = D::f32, .batch = {2}, .M = 33, .N = 65, .K = 17},
      {.dtype = D::f32, .batch = {3}, .M = 64, .N = 40, .K = 40, .a_transposed = true, .b_broadcast = true, .a_offset = 5, .b_offset = 7},
      {.dtype = D::f32, .batch = {2, 3}, .M = 35, .N = 34, .K = 8, .a_broadcast_first = true},
      {.dtype = D::f32, .batch = {}, .M = 34, .N = 34, .K = 0},  // zeros
      {.dtype = D::f32, .batch = {}, .M = 1, .N = 1, .K = 1},
      {.dtype = D::f32, .batch = {}, .M = 5, .N = 3, .K = 7, .b_transposed = true},
      {.dtype = D::f16, .batch = {2}, .M = 37, .N = 33, .K = 64},
      {.dtype = D::bf16, .batch = {}, .M = 45, .N = 32, .K = 9, .b_transposed = true},
      {.dtype = D::bf16, .batch = {2}, .M = 70, .N = 36, .K = 33, .a_transposed = true, .a_offset = 3},
  };
  long failed = 0, passed = 0;
  uint32_t seed = 12345;
  for (const Case& c : cases)
    for (bool simdgroup : {true, false}) {
      const char* kernel = simdgroup ? "8x8 SIMD-group kernel" : "16x16 kernel";
      long wrong = check(c, simdgroup, seed++);
      if (wrong) {
        std::printf("FAIL %s, %s: %ld wrong\n", describe(c).c_str(), kernel, wrong);
        ++failed;
      } else {
        std::printf("ok   %s, %s\n", describe(c).c_str(), kernel);
        ++passed;
      }
    }
  std::printf("matmul emulation: %ld passed, %ld failed\n", passed, failed);
  return failed ? 1 : 0;
}
