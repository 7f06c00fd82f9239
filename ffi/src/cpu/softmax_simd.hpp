// Softmax of one contiguous float32 row with AVX2/FMA: a vectorized exp (Cephes' polynomial,
// about 1 ulp) instead of a libm call per element.
#pragma once
#include <cstdint>

namespace lanes::cpu {

// y = softmax(x) over n elements, or false when the CPU lacks AVX2/FMA. The row must hold no
// NaN and no +inf (the caller handles those rows); -inf entries give exact zeros.
bool softmax_row_avx2(const float* x, float* y, int64_t n);

}  // namespace lanes::cpu
