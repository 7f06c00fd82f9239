// e^x with the arithmetic of llama.cpp's vectorized expf (ggml_v_expf), which its SiLU, SwiGLU
// and its tiled flash attention's softmax run.
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

namespace lanes::cpu {

// 2^k as a float, for k in [-126, 127].
inline float exp_poly_pow2(int k) { return std::bit_cast<float>(static_cast<uint32_t>(k + 127) << 23); }

// x = n ln2 + b with ln2 in two parts, a degree-5 polynomial for e^b, then an exact scaling by
// 2^n. About 1.5 ulp; every step is a float32 operation or an explicit fma, so a scalar call and
// any vectorization of it give the same bits.
inline float exp_poly(float x) {
  constexpr float shift = 0x1.8p23f;  // adding it rounds to an integer
  float n = std::fma(x, 0x1.715476p+0f, shift) - shift;
  float b = std::fma(-n, 0x1.7f7d1cp-20f, std::fma(-n, 0x1.62e4p-1f, x));
  float u = b * b;
  float j = std::fma(std::fma(std::fma(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, std::fma(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)), u,
                     std::fma(0x1.ffffecp-1f, b, 1.0f));
  if (std::fabs(n) > 192) return n > 0 ? std::numeric_limits<float>::infinity() : 0.0f;
  if (n != n) return n;
  // j * 2^n rounded once: 2^(n/2) keeps the first product normal and exact, the second rounds
  // (to a subnormal or infinity too) as a single scaling would.
  int k = static_cast<int>(n), half = k / 2;
  return j * exp_poly_pow2(half) * exp_poly_pow2(k - half);
}

}  // namespace lanes::cpu
