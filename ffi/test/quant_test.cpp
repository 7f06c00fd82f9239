// Tests of the quantized-weight CPU kernels (cpu/quant.cpp) against float64 references
// written here from the GGUF block layouts. Build and run from the repo root:
//
//   g++ -std=c++20 -O2 -Iffi/src ffi/test/quant_test.cpp cpu/quant.cpp \
//       cpu/compute_pool.cpp cpu/cpu_features.cpp ffi/src/config.cpp \
//       -pthread -o /tmp/quant_test && /tmp/quant_test
//
// and under the sanitizers (the same command with `-O1 -g -fsanitize=address,undefined
// -fno-sanitize-recover=all`). `quant_test dump DIR` instead writes random blocks of every type
// and our dequantization of them to DIR, for bench/quant_reference.py to check against gguf-py.
//
// What is checked, for Q4_0, Q4_1 and Q8_0, for every kernel path this CPU supports (forced one
// at a time), m in {1, 2, 3, 7, 37, 64}, k in {32, 64, 576, 1536}, n in {1, 5, 576, 1536}, and
// 37 x 1536 by n in {1040, 2576} (splits of the columns that are not whole 16-column groups):
//  1. against the exact float64 dot product of x with the dequantized weights, within a bound
//     on the activation quantization error derived below;
//  2. against a float64 evaluation of the 8-bit activation scheme itself (ggml's q8_0 / q8_1
//     definition, written here independently), within float32 accumulation error only;
//  3. bitwise: every path gives the same bits, as do per-column and per-row calls (other
//     tilings and chunkings), serial runs and concurrent calls from several threads;
//  4. dequantize equals the float64 dequantization rounded to float32, bit for bit;
//  5. a NaN or infinity in an activation row makes exactly that row's outputs NaN (vector kernels
//     and AMX tiles).
#include <sys/stat.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../../cpu/quant.hpp"

using lanes::cpu::BlockType;
using lanes::cpu::QuantKernel;

namespace {

int g_passed = 0, g_failed = 0;

void check(bool ok, const std::string& what) {
  if (ok) {
    ++g_passed;
  } else {
    ++g_failed;
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
  }
}

const char* type_name(BlockType t) { return t == BlockType::Q4_0 ? "q4_0" : t == BlockType::Q4_1 ? "q4_1" : "q8_0"; }
const char* kernel_name(QuantKernel k) {
  return k == QuantKernel::Scalar ? "scalar" : k == QuantKernel::Avx2 ? "avx2" : "avx512";
}

constexpr double kU = 1.0 / (1 << 24);  // float32 unit roundoff

// ---- the block layouts, read independently of the library ---------------------------------

double half_value(uint16_t h) {
  int exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  double v = exponent == 0 ? std::ldexp(mantissa, -24) : std::ldexp(1024 + mantissa, exponent - 25);
  return (h & 0x8000) ? -v : v;
}

uint16_t read_u16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }

struct Block {
  double d = 0, min = 0;  // min: Q4_1 only
  bool has_min = false;
  int q[32] = {};  // integer weights: q - 8 (Q4_0), q (Q4_1), int8 (Q8_0)
  // Q4_0 / Q8_0: q·d alone, so a zero q with a negative d is -0 (as in ggml and gguf-py).
  double value(int e) const { return has_min ? q[e] * d + min : q[e] * d; }
};

Block read_block(BlockType t, const uint8_t* p) {
  Block b;
  b.d = half_value(read_u16(p));
  if (t == BlockType::Q8_0) {
    for (int e = 0; e < 32; ++e) b.q[e] = int8_t(p[2 + e]);
    return b;
  }
  const uint8_t* qs = p + (t == BlockType::Q4_0 ? 2 : 4);
  if (t == BlockType::Q4_1) b.min = half_value(read_u16(p + 2)), b.has_min = true;
  int offset = t == BlockType::Q4_0 ? 8 : 0;
  for (int e = 0; e < 16; ++e) {
    b.q[e] = (qs[e] & 0x0f) - offset;
    b.q[e + 16] = (qs[e] >> 4) - offset;
  }
  return b;
}

// ---- random data ---------------------------------------------------------------------------

// A float16 scale: mostly ordinary, sometimes extreme (subnormal, the largest finite, zero).
uint16_t random_scale(std::mt19937_64& rng, bool allow_negative) {
  std::uniform_int_distribution<int> kind(0, 19), mant(0, 0x3ff), ordinary_exp(5, 16), sign(0, 1);
  uint16_t h;
  switch (kind(rng)) {
    case 0: h = uint16_t(1 + mant(rng) % 0x3ff); break;  // subnormal
    case 1: h = 0x7bff; break;                            // 65504
    case 2: h = uint16_t((30 << 10) | mant(rng)); break;  // 32768 .. 65504
    case 3: h = 0; break;
    case 4: h = 0x0400; break;  // smallest normal
    default: h = uint16_t((ordinary_exp(rng) << 10) | mant(rng));
  }
  if (allow_negative && sign(rng)) h |= 0x8000;
  return h;
}

std::vector<uint8_t> random_weights(BlockType t, int64_t blocks, std::mt19937_64& rng) {
  size_t bb = lanes::cpu::block_bytes(t);
  std::vector<uint8_t> w(size_t(blocks) * bb);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int64_t b = 0; b < blocks; ++b) {
    uint8_t* p = &w[size_t(b) * bb];
    uint16_t d = random_scale(rng, t != BlockType::Q4_1), mn = random_scale(rng, true);
    std::memcpy(p, &d, 2);
    if (t == BlockType::Q4_1) std::memcpy(p + 2, &mn, 2);
    for (size_t i = (t == BlockType::Q4_1 ? 4 : 2); i < bb; ++i) p[i] = uint8_t(byte(rng));
  }
  return w;
}

// Activations whose 32-blocks have scales from 1e-6 to 1e4, with some all-zero blocks, single
// outliers, exact zeros, and values on rounding ties of the 8-bit grid.
std::vector<float> random_activations(int64_t m, int64_t k, int64_t stride, std::mt19937_64& rng) {
  std::vector<float> x(size_t(m * stride), -12345.f);  // padding must never be read
  std::normal_distribution<float> normal(0.f, 1.f);
  std::uniform_int_distribution<int> kind(0, 9), exponent(-6, 4), element(0, 31), grid(-127, 127);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t b = 0; b < k / 32; ++b) {
      float* xb = &x[size_t(i * stride + b * 32)];
      float scale = std::pow(10.f, float(exponent(rng)));
      int what = kind(rng);
      for (int e = 0; e < 32; ++e) xb[e] = what == 0 ? 0.f : normal(rng) * scale;
      if (what == 1) xb[element(rng)] = 50.f * scale;  // an outlier
      if (what == 2) xb[element(rng)] = 0.f;
      if (what == 3) {  // max 127 * 2^-3, so x * 127 / max hits k + 0.5 exactly
        for (int e = 0; e < 32; ++e) xb[e] = (float(grid(rng)) + 0.5f) * 0.125f;
        xb[0] = 127.f * 0.125f;
      }
    }
  return x;
}

// ---- float64 references ----------------------------------------------------------------------

// float32 -> float16 precision the way the scheme keeps activation scales (round to nearest
// even where float16 has a normal number for it, else unchanged), computed in double.
double half_precision(float v) {
  double a = std::fabs(double(v)), r;
  if (a == 0) return v;
  if (a < std::ldexp(1.0, -14)) {
    r = std::nearbyint(a * std::ldexp(1.0, 24)) * std::ldexp(1.0, -24);
    if (r != std::ldexp(1.0, -14)) r = a;
  } else {
    double ulp = std::ldexp(1.0, std::ilogb(a) - 10);
    r = std::nearbyint(a / ulp) * ulp;
    if (r > 65504.0) r = a;
  }
  return v < 0 ? -r : r;
}

struct Expected {
  double exact;            // x · w in float64
  double quant_bound;      // bound on |8-bit scheme - exact|
  double scheme;           // the 8-bit scheme in float64
  double magnitude;        // Σ |terms| the float32 accumulation rounds
};

// The 8-bit activation blocks of ggml's scheme for one row.
struct ActBlock {
  double d_true;  // max|x| / 127 exactly
  double dh;      // the scale at float16 precision
  double s;       // Q4_1: d * Σq at float16 precision
  int q[32];
};

std::vector<ActBlock> quantize_reference(const float* x, int64_t nb) {
  std::vector<ActBlock> out(static_cast<size_t>(nb));
  for (int64_t b = 0; b < nb; ++b) {
    const float* xb = x + b * 32;
    float amax = 0;
    for (int e = 0; e < 32; ++e) amax = std::max(amax, std::fabs(xb[e]));
    float d = amax / 127.f, id = amax != 0 ? 127.f / amax : 0.f;
    ActBlock& a = out[size_t(b)];
    a.d_true = double(amax) / 127.0;
    int sum = 0;
    for (int e = 0; e < 32; ++e) sum += a.q[e] = int(std::nearbyint(xb[e] * id));
    a.dh = half_precision(d);
    a.s = half_precision(d * float(sum));
  }
  return out;
}

// Error bound for one block (derivation). With d = max|x|/127 exactly, the scheme's activation
// value q_e·dh differs from x_e by
//   |q_e - x_e·127/max| ≤ 1/2 + 127·3u   (id = fl(127/max) and x·id each round once)
//   |dh - d| ≤ d·(2^-11 + 2u)            (float division, then float16 rounding)
// so with |q_e| ≤ 127:  |q_e·dh - x_e| ≤ d·c1,  c1 = 1/2 + 381u + 127·(2^-11 + 2u) ≈ 0.562.
// Main term error ≤ c1·d·Σ|W_e| where W_e is the weight without the Q4_1 min (q·d_w).
// Q4_1's min term uses s = half(fl(d_f·Σq)) for Σx:
//   |s - Σx| ≤ (2^-11 + 2u)·|d_f·Σq| + Σ|d_f·q_e - x_e| ≤ (2^-11 + 2u)·(Σ|x| + 32·c1·d) + 32·c1·d
// (|d_f - d| ≤ u·d is inside c1's slack), times |min|.
const double kC1 = 0.5 + 381 * kU + 127 * (std::ldexp(1.0, -11) + 2 * kU);

Expected expected(BlockType t, const float* x, const std::vector<ActBlock>& act, const std::vector<Block>& row) {
  Expected r{0, 0, 0, 0};
  for (size_t b = 0; b < row.size(); ++b) {
    const Block& w = row[b];
    const ActBlock& a = act[b];
    double sum_abs_main = 0, sum_abs_x = 0, int_dot = 0, int_abs = 0;
    for (int e = 0; e < 32; ++e) {
      double xe = x[b * 32 + e];
      r.exact += w.value(e) * xe;
      sum_abs_main += std::fabs(w.q[e] * w.d);
      sum_abs_x += std::fabs(xe);
      int_dot += double(w.q[e]) * a.q[e];
      int_abs += std::fabs(double(w.q[e]) * a.q[e]);
    }
    r.quant_bound += kC1 * a.d_true * sum_abs_main;
    r.scheme += w.d * a.dh * int_dot;
    r.magnitude += std::fabs(w.d * a.dh) * int_abs;
    if (t == BlockType::Q4_1) {
      double e_s = (std::ldexp(1.0, -11) + 2 * kU) * (sum_abs_x + 32 * kC1 * a.d_true) + 32 * kC1 * a.d_true;
      r.quant_bound += std::fabs(w.min) * e_s;
      r.scheme += w.min * a.s;
      r.magnitude += std::fabs(w.min * a.s);
    }
  }
  return r;
}

// ---- the matmul checks ---------------------------------------------------------------------

struct Case {
  BlockType type;
  int64_t m, k, n, stride;
  std::vector<float> x;
  std::vector<uint8_t> w;
};

std::vector<float> run(const Case& c) {
  std::vector<float> y(size_t(c.m * c.n), std::nanf(""));
  lanes::cpu::quantized_matmul(c.type, c.x.data(), c.m, c.k, c.stride, c.w.data(), c.n, y.data());
  return y;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Results of the same case computed column by column and row by row (other tilings and
// chunkings of the same outputs).
std::vector<float> run_sliced(const Case& c) {
  std::vector<float> y(size_t(c.m * c.n));
  size_t row_bytes = size_t(c.k / 32) * lanes::cpu::block_bytes(c.type);
  std::vector<float> col(size_t(c.m));
  for (int64_t j = 0; j < c.n; ++j) {
    lanes::cpu::quantized_matmul(c.type, c.x.data(), c.m, c.k, c.stride, c.w.data() + j * row_bytes, 1, col.data());
    for (int64_t i = 0; i < c.m; ++i) y[size_t(i * c.n + j)] = col[size_t(i)];
  }
  return y;
}

std::vector<float> run_rows(const Case& c) {
  std::vector<float> y(size_t(c.m * c.n));
  for (int64_t i = 0; i < c.m; ++i)
    lanes::cpu::quantized_matmul(c.type, c.x.data() + i * c.stride, 1, c.k, c.stride, c.w.data(), c.n, y.data() + i * c.n);
  return y;
}

void check_case(const Case& c, const std::vector<QuantKernel>& kernels) {
  int64_t nb = c.k / 32;
  size_t bb = lanes::cpu::block_bytes(c.type);
  std::string name = std::string(type_name(c.type)) + " m=" + std::to_string(c.m) + " k=" + std::to_string(c.k) +
                     " n=" + std::to_string(c.n);
  // float32 accumulation: per lane one fma per group of at least 2 blocks (at most ceil(nb/2)),
  // the scale product, a tree over at most 32 lanes (5 levels), for Q4_1 the min lanes' tree
  // and the final add: at most ceil(nb/2) + 8 roundings, each relative to at most Σ|terms|.
  double gamma = double((nb + 1) / 2 + 8) * kU / (1 - double((nb + 1) / 2 + 8) * kU);
  std::vector<std::vector<Block>> rows(size_t(c.n));
  for (int64_t j = 0; j < c.n; ++j)
    for (int64_t b = 0; b < nb; ++b) rows[size_t(j)].push_back(read_block(c.type, &c.w[size_t(j * nb + b) * bb]));
  std::vector<Expected> want(size_t(c.m * c.n));
  for (int64_t i = 0; i < c.m; ++i) {
    const float* xi = &c.x[size_t(i * c.stride)];
    std::vector<ActBlock> act = quantize_reference(xi, nb);
    for (int64_t j = 0; j < c.n; ++j) want[size_t(i * c.n + j)] = expected(c.type, xi, act, rows[size_t(j)]);
  }

  std::vector<float> first;
  for (QuantKernel kernel : kernels) {
    lanes::cpu::force_quant_kernel(kernel);
    std::string label = name + " " + kernel_name(kernel);
    std::vector<float> y = run(c);
    int64_t bad_exact = 0, bad_scheme = 0;
    double worst_exact = 0, worst_scheme = 0;
    for (size_t e = 0; e < y.size(); ++e) {
      const Expected& r = want[e];
      double fp = gamma * r.magnitude * 1.01;  // 1.01: the bound's own float64 evaluation
      double err_exact = std::fabs(double(y[e]) - r.exact), tol_exact = r.quant_bound + fp;
      double err_scheme = std::fabs(double(y[e]) - r.scheme);
      if (!(err_exact <= tol_exact)) ++bad_exact;
      if (!(err_scheme <= fp)) ++bad_scheme;
      if (tol_exact > 0) worst_exact = std::max(worst_exact, err_exact / tol_exact);
      if (fp > 0) worst_scheme = std::max(worst_scheme, err_scheme / fp);
    }
    check(bad_exact == 0, label + ": within the quantization bound of the exact dot (" + std::to_string(bad_exact) +
                              " outside, worst error/bound " + std::to_string(worst_exact) + ")");
    check(bad_scheme == 0, label + ": matches the float64 8-bit scheme (" + std::to_string(bad_scheme) +
                               " outside, worst error/bound " + std::to_string(worst_scheme) + ")");
    if (first.empty()) {
      first = y;
    } else {
      check(same_bits(y, first), label + ": bitwise equal to " + kernel_name(kernels[0]));
    }
    check(same_bits(run(c), y), label + ": repeatable");
    if (c.m * c.n <= 64 * 576 || kernel != QuantKernel::Scalar) {
      check(same_bits(run_sliced(c), y), label + ": column-by-column calls give the same bits");
      check(same_bits(run_rows(c), y), label + ": row-by-row calls give the same bits");
    }
    lanes::cpu::force_quant_serial(true);
    check(same_bits(run(c), y), label + ": serial run gives the same bits");
    lanes::cpu::force_quant_serial(false);
  }
  lanes::cpu::force_quant_kernel(QuantKernel::Auto);
}

void check_concurrent(BlockType t, std::mt19937_64& rng) {
  Case c{t, 3, 576, 1536, 576, {}, {}};
  c.x = random_activations(c.m, c.k, c.stride, rng);
  c.w = random_weights(t, c.n * c.k / 32, rng);
  std::vector<float> serial = run(c);
  std::vector<std::vector<float>> got(4);
  std::vector<std::thread> threads;
  for (auto& g : got)
    threads.emplace_back([&] {
      for (int rep = 0; rep < 5; ++rep) g = run(c);
    });
  for (auto& th : threads) th.join();
  bool all = true;
  for (auto& g : got) all = all && same_bits(g, serial);
  check(all, std::string(type_name(t)) + ": 4 threads calling at once give the serial bits");
}

void check_non_finite(BlockType t, std::mt19937_64& rng, const std::vector<QuantKernel>& kernels) {
  // 3 rows x 5 columns take the vector kernels; 20 x 32 the AMX tiles where the CPU has them.
  for (auto [m, n] : {std::pair<int64_t, int64_t>{3, 5}, {20, 32}})
  for (float bad : {std::nanf(""), INFINITY, -INFINITY}) {
    Case c{t, m, 96, n, 96, {}, {}};
    c.x = random_activations(c.m, c.k, c.stride, rng);
    c.w = random_weights(t, c.n * c.k / 32, rng);
    std::vector<float> clean_y = run(c);
    c.x[size_t(1 * c.stride + 40)] = bad;
    for (QuantKernel kernel : kernels) {
      lanes::cpu::force_quant_kernel(kernel);
      std::vector<float> y = run(c);
      bool row1_nan = true, others_same = true;
      for (int64_t j = 0; j < c.n; ++j) row1_nan = row1_nan && std::isnan(y[size_t(c.n + j)]);
      for (int64_t i = 0; i < c.m; ++i)
        for (int64_t j = 0; j < c.n && i != 1; ++j)
          others_same = others_same && std::memcmp(&y[size_t(i * c.n + j)], &clean_y[size_t(i * c.n + j)], 4) == 0;
      std::string label = std::string(type_name(t)) + " " + kernel_name(kernel) + " " + std::to_string(m) + "x" + std::to_string(n) +
                          " x=" + std::to_string(bad);
      check(row1_nan, label + ": the row with a non-finite activation is NaN");
      check(others_same, label + ": the other rows are unaffected");
    }
  }
  lanes::cpu::force_quant_kernel(QuantKernel::Auto);
}

// Column counts whose even split over the pool is not a whole number of 16-column groups, each
// kernel run right after a call with other activations of the same shape: a path that read
// anything left from that call would give other bits than the first kernel's.
void check_column_splits(BlockType t, std::mt19937_64& rng, const std::vector<QuantKernel>& kernels) {
  for (int64_t n : {int64_t(1040), int64_t(2576)}) {
    Case c{t, 37, 1536, n, 1536, random_activations(37, 1536, 1536, rng), random_weights(t, n * 1536 / 32, rng)};
    Case other = c;
    other.x = random_activations(c.m, c.k, c.stride, rng);
    std::vector<float> first;
    for (QuantKernel kernel : kernels) {
      for (QuantKernel before : kernels) {
        lanes::cpu::force_quant_kernel(before);
        run(other);
      }
      lanes::cpu::force_quant_kernel(kernel);
      std::vector<float> y = run(c);
      std::string label = std::string(type_name(t)) + " " + kernel_name(kernel) + " 37x1536x" + std::to_string(n);
      if (first.empty())
        first = y;
      else
        check(same_bits(y, first), label + ": after another call, bitwise equal to " + kernel_name(kernels[0]));
    }
  }
  lanes::cpu::force_quant_kernel(QuantKernel::Auto);
}

void check_dequantize(BlockType t, std::mt19937_64& rng) {
  // Every dequantized value is q·d (+ min): q·d is exact in float32 (at most 8 + 11 significant
  // bits) and the float64 sum of two float16-range values is exact, so one rounding to float32
  // of the float64 value is the only rounding: the results must match bit for bit.
  int64_t blocks = 4096;
  std::vector<uint8_t> w = random_weights(t, blocks, rng);
  std::vector<float> out(size_t(blocks * 32) + 1, 7.f);
  lanes::cpu::dequantize(t, w.data(), blocks * 32, out.data());
  int64_t bad = 0;
  for (int64_t b = 0; b < blocks; ++b) {
    Block blk = read_block(t, &w[size_t(b) * lanes::cpu::block_bytes(t)]);
    for (int e = 0; e < 32; ++e) {
      float want = float(blk.value(e));
      if (std::memcmp(&want, &out[size_t(b * 32 + e)], 4) != 0) ++bad;
    }
  }
  check(bad == 0, std::string(type_name(t)) + ": dequantize matches the layout bit for bit (" + std::to_string(bad) + " differ)");
  check(out.back() == 7.f, std::string(type_name(t)) + ": dequantize writes exactly count values");
}

// Writes random blocks and our dequantization for bench/quant_reference.py.
int dump(const std::string& dir) {
  mkdir(dir.c_str(), 0755);
  std::mt19937_64 rng(99);
  for (BlockType t : {BlockType::Q4_0, BlockType::Q4_1, BlockType::Q8_0}) {
    int64_t blocks = 8192;
    std::vector<uint8_t> w = random_weights(t, blocks, rng);
    std::vector<float> out(size_t(blocks * 32));
    lanes::cpu::dequantize(t, w.data(), blocks * 32, out.data());
    std::string base = dir + "/" + type_name(t);
    FILE* f = std::fopen((base + ".blocks").c_str(), "wb");
    FILE* g = std::fopen((base + ".f32").c_str(), "wb");
    if (!f || !g) return 1;
    std::fwrite(w.data(), 1, w.size(), f);
    std::fwrite(out.data(), 4, out.size(), g);
    std::fclose(f);
    std::fclose(g);
  }
  std::printf("wrote %s/{q4_0,q4_1,q8_0}.{blocks,f32}\n", dir.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "dump") return dump(argv[2]);
  std::vector<QuantKernel> kernels;
  for (QuantKernel k : {QuantKernel::Scalar, QuantKernel::Avx2, QuantKernel::Avx512Vnni})
    if (lanes::cpu::force_quant_kernel(k)) kernels.push_back(k);
  lanes::cpu::force_quant_kernel(QuantKernel::Auto);
  std::printf("kernel paths on this CPU:");
  for (QuantKernel k : kernels) std::printf(" %s", kernel_name(k));
  std::printf(" (auto: %s)\n", kernel_name(lanes::cpu::active_quant_kernel()));
  check(lanes::cpu::block_bytes(BlockType::Q4_0) == 18 && lanes::cpu::block_bytes(BlockType::Q4_1) == 20 &&
            lanes::cpu::block_bytes(BlockType::Q8_0) == 34,
        "block sizes");

  std::mt19937_64 rng(20261201);
  for (BlockType t : {BlockType::Q4_0, BlockType::Q4_1, BlockType::Q8_0}) {
    check_dequantize(t, rng);
    for (int64_t m : {1, 2, 3, 7, 37, 64})
      for (int64_t k : {32, 64, 576, 1536})
        for (int64_t n : {1, 5, 576, 1536}) {
          int64_t stride = k + (m % 2) * 32 + 3;  // padded, unaligned rows
          Case c{t, m, k, n, stride, random_activations(m, k, stride, rng), random_weights(t, n * k / 32, rng)};
          check_case(c, kernels);
        }
    check_column_splits(t, rng, kernels);
    check_concurrent(t, rng);
    check_non_finite(t, rng, kernels);
  }
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
