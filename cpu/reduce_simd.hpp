// Sum of one contiguous float32 row with AVX2: sixteen lanes widened to double in four
// accumulators, combined in a fixed order, so a row's sum is the same on every run and thread.
#pragma once
#include <cstdint>

namespace lanes::cpu {

// The double-precision sum of x[0..n). Call only when has_avx2_fma().
double sum_row_avx2(const float* x, int64_t n);

}  // namespace lanes::cpu
