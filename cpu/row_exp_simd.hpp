// Row kernels built on a vectorized exp instead of a libm call per element: softmax (Cephes'
// polynomial, about 1 ulp) and SiLU (llama.cpp's exp, as exp_poly).
#pragma once
#include <cstdint>

namespace lanes::cpu {

// y = softmax(x) over n elements; -inf entries give exact zeros. False, with nothing written,
// when the CPU lacks AVX2/FMA or the row holds a NaN or +inf or only -inf (the caller's general
// path handles those).
bool softmax_row_avx2(const float* x, float* y, int64_t n);

// x / (1 + e^-x) with llama.cpp's vector exp: exp_poly, or exp_poly_haswell where llama_build()
// is its AVX2 build.
float silu(float x);

// silu over n contiguous elements, with AVX-512 or AVX2 (the same bits as the scalar formula).
// False, with nothing written, when the CPU has neither.
bool silu_row_simd(const float* x, float* y, int64_t n);

}  // namespace lanes::cpu
