// Runs metal/kernels.metal's quantized-weight kernels (dequantize, take of quantized rows, and the
// small-m quantizedMatmul) on the CPU over the grids launch.mm dispatches, and compares every
// output with an independent reference computed here from the GGUF block layout. Not Metal:
// quant_emulation_kernels.cpp says what is emulated. Built and run by metal/check/run.sh.
//
// Dequantization must be bit for bit: blocks hold random bytes and random finite float16 scales
// (subnormals included); the reference rounds each exact weight once to float (Q4_1's q * d + m
// summed in long double, exact for float16 operands). The matmul's inputs make every sum exact
// in float whatever its order (scales 1/8 and 1/16, mins multiples of 1/8, activations multiples
// of 1/4), so its outputs must equal a float64 reference exactly. Each buffer ends at an
// inaccessible page and outputs start as NaN, so a stray access or an unwritten output shows.
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
#include "quant_emulation.hpp"

namespace {

// One SIMD-group's lanes: one std::thread each, meeting at `barrier` for every shuffle.
struct SimdGroup {
  std::barrier<>* barrier;
  float* slots;
  unsigned width;
};
thread_local SimdGroup* current_simd;
thread_local unsigned current_lane;

}  // namespace

float emulated_simd_shuffle_down(float v, unsigned delta) {
  SimdGroup& s = *current_simd;
  s.slots[current_lane] = v;
  s.barrier->arrive_and_wait();
  float r = current_lane + delta < s.width ? s.slots[current_lane + delta] : v;
  s.barrier->arrive_and_wait();  // every lane read before the next shuffle writes
  return r;
}

namespace {

const char* type_name(EmulatedQuant t) { return t == EmulatedQuant::q4_0 ? "q4_0" : t == EmulatedQuant::q4_1 ? "q4_1" : "q8_0"; }
long block_bytes(EmulatedQuant t) { return t == EmulatedQuant::q4_0 ? 18 : t == EmulatedQuant::q4_1 ? 20 : 34; }

uint32_t next(uint32_t& seed) {
  seed = seed * 1664525u + 1013904223u;
  return seed >> 8;
}

double half_value(uint16_t bits) {
  _Float16 h;
  std::memcpy(&h, &bits, 2);
  return static_cast<double>(h);
}

uint16_t half_bits(double v) {
  auto h = static_cast<_Float16>(v);
  uint16_t u;
  std::memcpy(&u, &h, 2);
  return u;
}

// A finite float16, any exponent (subnormals included), either sign.
uint16_t random_half(uint32_t& seed) {
  for (;;) {
    auto bits = static_cast<uint16_t>(next(seed));
    if (((bits >> 10) & 0x1f) != 0x1f) return bits;
  }
}

void put_half(unsigned char* p, uint16_t bits) {
  p[0] = static_cast<unsigned char>(bits & 0xff);
  p[1] = static_cast<unsigned char>(bits >> 8);
}

// Weight e of the block at `blk`, exactly, rounded once to float: the reference.
float reference_weight(EmulatedQuant t, const unsigned char* blk, int e) {
  double d = half_value(static_cast<uint16_t>(blk[0] | (blk[1] << 8)));
  if (t == EmulatedQuant::q8_0) return static_cast<float>(static_cast<int8_t>(blk[2 + e]) * d);
  int byte = (t == EmulatedQuant::q4_0 ? blk[2 + e % 16] : blk[4 + e % 16]);
  int q = e < 16 ? byte & 15 : byte >> 4;
  if (t == EmulatedQuant::q4_0) return static_cast<float>((q - 8) * d);
  long double m = half_value(static_cast<uint16_t>(blk[2] | (blk[3] << 8)));
  return static_cast<float>(static_cast<long double>(q) * static_cast<long double>(d) + m);
}

// `blocks` blocks of random bytes with random finite scales (and mins).
std::unique_ptr<GuardedBuffer> random_blocks(EmulatedQuant t, long blocks, uint32_t& seed) {
  auto w = std::make_unique<GuardedBuffer>(static_cast<size_t>(blocks * block_bytes(t)));
  unsigned char* p = w->data();
  for (long i = 0; i < blocks * block_bytes(t); ++i) p[i] = static_cast<unsigned char>(next(seed));
  for (long b = 0; b < blocks; ++b) {
    put_half(p + b * block_bytes(t), random_half(seed));
    if (t == EmulatedQuant::q4_1) put_half(p + b * block_bytes(t) + 2, random_half(seed));
  }
  return w;
}

std::unique_ptr<GuardedBuffer> nan_floats(long count) {
  auto buf = std::make_unique<GuardedBuffer>(static_cast<size_t>(count) * sizeof(float));
  float* f = reinterpret_cast<float*>(buf->data());
  std::fill(f, f + count, std::nanf(""));
  return buf;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

struct Tally {
  long passed = 0, failed = 0;
  void add(const std::string& what, long wrong) {
    std::printf("%s %s%s\n", wrong ? "FAIL" : "ok  ", what.c_str(), wrong ? (": " + std::to_string(wrong) + " wrong").c_str() : "");
    ++(wrong ? failed : passed);
  }
};

long check_dequantize(EmulatedQuant t, long blocks, unsigned gsize, uint32_t seed) {
  auto w = random_blocks(t, blocks, seed);
  long count = blocks * 32;
  auto out = nan_floats(count);
  float* y = reinterpret_cast<float*>(out->data());
  DequantParams p{.count = count};
  for (unsigned gid = 0; gid < gsize; ++gid) emulate_dequantize(t, y, w->data(), p, gid, gsize);
  long wrong = 0;
  for (long i = 0; i < count; ++i) {
    float want = reference_weight(t, w->data() + (i / 32) * block_bytes(t), static_cast<int>(i % 32));
    if (!same_bits(y[i], want) && ++wrong <= 3) std::printf("    weight %ld: %a, want %a\n", i, double(y[i]), double(want));
  }
  return wrong;
}

// Rows of a [dim, k] matrix at `indices`; a bad index must set the error word and zero its row.
long check_take(EmulatedQuant t, long dim, long k, const std::vector<int>& indices, unsigned gsize, uint32_t seed) {
  long row_blocks = k / 32;
  auto w = random_blocks(t, dim * row_blocks, seed);
  auto count = static_cast<long>(indices.size());
  GuardedBuffer idx(indices.size() * sizeof(int));
  std::memcpy(idx.data(), indices.data(), indices.size() * sizeof(int));
  GuardedBuffer error(2 * sizeof(int));
  int* words = reinterpret_cast<int*>(error.data());
  words[0] = words[1] = 0;
  auto out = nan_floats(count * k);
  float* y = reinterpret_cast<float*>(out->data());
  TakeQuantParams p{.count = count, .k = k, .dim = dim};
  for (unsigned gid = 0; gid < gsize; ++gid)
    emulate_take_dequantize(t, y, w->data(), reinterpret_cast<const int*>(idx.data()), words, p, gid, gsize);
  long wrong = 0;
  int first_bad = 0;
  bool any_bad = false;
  for (long i = 0; i < count; ++i) {
    long row = indices[static_cast<size_t>(i)] < 0 ? indices[static_cast<size_t>(i)] + dim : indices[static_cast<size_t>(i)];
    bool bad = row < 0 || row >= dim;
    if (bad && !any_bad) first_bad = indices[static_cast<size_t>(i)], any_bad = true;
    for (long e = 0; e < k; ++e) {
      float want = bad ? 0.0f : reference_weight(t, w->data() + (row * row_blocks + e / 32) * block_bytes(t), static_cast<int>(e % 32));
      if (!same_bits(y[i * k + e], want) && ++wrong <= 3)
        std::printf("    y[%ld][%ld]: %a, want %a\n", i, e, double(y[i * k + e]), double(want));
    }
  }
  // One bad index in a case: the word names it (with several, any one of them may win).
  if (words[0] != (any_bad ? 1 : 0) || (any_bad && words[1] != first_bad)) {
    std::printf("    error word %d, %d; want %d, %d\n", words[0], words[1], any_bad ? 1 : 0, any_bad ? first_bad : 0);
    ++wrong;
  }
  return wrong;
}

// Every threadgroup of the grid, one after another; within one, each SIMD-group's lanes at once.
void run_matmul_grid(EmulatedQuant t, float* y, const float* x, const unsigned char* w, const QuantMatmulParams& p, unsigned width,
                     unsigned threads, unsigned groups) {
  unsigned simd_groups = threads / width;
  for (unsigned group = 0; group < groups; ++group)
    for (unsigned sg = 0; sg < simd_groups; ++sg) {
      std::barrier<> barrier(width);
      std::vector<float> slots(width);
      SimdGroup simd{&barrier, slots.data(), width};
      std::vector<std::jthread> lanes;
      for (unsigned lane = 0; lane < width; ++lane)
        lanes.emplace_back([&, lane] {
          current_simd = &simd;
          current_lane = lane;
          emulate_quantized_matmul(t, y, x, w, p, lane, width, sg, simd_groups, group, groups);
        });
    }
}

// Blocks whose weights and products are exact: scale 1/8 (Q8_0: 1/16), min a multiple of 1/8.
std::unique_ptr<GuardedBuffer> exact_blocks(EmulatedQuant t, long blocks, uint32_t& seed) {
  auto w = random_blocks(t, blocks, seed);
  for (long b = 0; b < blocks; ++b) {
    unsigned char* blk = w->data() + b * block_bytes(t);
    put_half(blk, half_bits(t == EmulatedQuant::q8_0 ? 1.0 / 16 : 1.0 / 8));
    if (t == EmulatedQuant::q4_1) put_half(blk + 2, half_bits(static_cast<double>(static_cast<int>(next(seed) % 17) - 8) / 8));
  }
  return w;
}

// `groups_cap` < the launch's own count makes SIMD-groups take several columns each.
long check_matmul(EmulatedQuant t, long m, long k, long n, unsigned width, long groups_cap, uint32_t seed) {
  long blocks = k / 32;
  auto w = exact_blocks(t, n * blocks, seed);
  GuardedBuffer xb(static_cast<size_t>(m * k) * sizeof(float));
  float* x = reinterpret_cast<float*>(xb.data());
  for (long i = 0; i < m * k; ++i) x[i] = static_cast<float>(static_cast<int>(next(seed) % 17) - 8) / 4;
  auto out = nan_floats(m * n);
  float* y = reinterpret_cast<float*>(out->data());
  QuantMatmulParams p{.m = m, .k = k, .n = n};
  // As launch.mm: 256 threads (whole SIMD-groups), enough threadgroups for one column per
  // SIMD-group, at most 1024.
  unsigned threads = 256 / width * width;
  long columns_per_group = threads / width;
  auto groups = static_cast<unsigned>(std::min<long>({(n + columns_per_group - 1) / columns_per_group, 1024, groups_cap}));
  run_matmul_grid(t, y, x, w->data(), p, width, threads, groups);
  long wrong = 0;
  for (long i = 0; i < m; ++i)
    for (long j = 0; j < n; ++j) {
      double sum = 0;
      for (long e = 0; e < k; ++e)
        sum += static_cast<double>(x[i * k + e]) *
               reference_weight(t, w->data() + (j * blocks + e / 32) * block_bytes(t), static_cast<int>(e % 32));
      float got = y[i * n + j];
      if (!same_bits(got, static_cast<float>(sum)) && ++wrong <= 3) std::printf("    y[%ld][%ld]: %g, want %g\n", i, j, double(got), sum);
    }
  return wrong;
}

}  // namespace

int main() {
  signal(SIGSEGV, report_fault);
  signal(SIGBUS, report_fault);
  Tally tally;
  uint32_t seed = 2024;
  for (EmulatedQuant t : {EmulatedQuant::q4_0, EmulatedQuant::q4_1, EmulatedQuant::q8_0}) {
    std::string name = type_name(t);
    tally.add(name + " dequantize, 37 blocks, one thread per pair", check_dequantize(t, 37, 37 * 16, seed++));
    tally.add(name + " dequantize, 37 blocks, 7 threads striding", check_dequantize(t, 37, 7, seed++));
    tally.add(name + " take rows [4, 0, -1, 2, -5] of [5, 96]", check_take(t, 5, 96, {4, 0, -1, 2, -5}, 13, seed++));
    tally.add(name + " take rows [1, 7, 0] of [5, 64]: index 7 fails", check_take(t, 5, 64, {1, 7, 0}, 64, seed++));
    tally.add(name + " take rows [-6] of [5, 32]: index -6 fails", check_take(t, 5, 32, {-6}, 5, seed++));
    tally.add(name + " matmul m=1 k=32 n=1", check_matmul(t, 1, 32, 1, 32, 1024, seed++));
    tally.add(name + " matmul m=3 k=1280 n=19 (blocks past one lane each)", check_matmul(t, 3, 1280, 19, 32, 1024, seed++));
    tally.add(name + " matmul m=9 k=64 n=40, 2 threadgroups (columns striding)", check_matmul(t, 9, 64, 40, 32, 2, seed++));
    tally.add(name + " matmul m=16 k=96 n=8, 16-wide SIMD-groups", check_matmul(t, 16, 96, 8, 16, 1024, seed++));
  }
  std::printf("quantized kernel emulation: %ld passed, %ld failed\n", tally.passed, tally.failed);
  return tally.failed ? 1 : 0;
}
