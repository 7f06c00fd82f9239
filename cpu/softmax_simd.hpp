// Softmax of one contiguous float32 row with AVX2/FMA: a vectorized exp (Cephes' polynomial,
// about 1 ulp) instead of a libm call per element.
#pragma once
#include <cstdint>

namespace lanes::cpu {

// y = softmax(x) over n elements; -inf entries give exact zeros. False, with nothing written,
// when the CPU lacks AVX2/FMA or the row holds a NaN or +inf or only -inf (the caller's general
// path handles those).
bool softmax_row_avx2(const float* x, float* y, int64_t n);

}  // namespace lanes::cpu
