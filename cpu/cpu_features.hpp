// Run-time CPU feature checks for the kernels that have SIMD paths.
#pragma once

namespace lanes::cpu {

// AVX2 and FMA, with the OS saving YMM state. Checked once.
bool has_avx2_fma();

}  // namespace lanes::cpu
