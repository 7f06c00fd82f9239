// Run-time CPU feature checks for the kernels that have SIMD paths.
#pragma once

namespace lanes::cpu {

// AVX2 and FMA, with the OS saving YMM state. Checked once.
bool has_avx2_fma();

// AVX2, FMA and F16C (float16 conversions), with the OS saving YMM state. Checked once.
bool has_avx2_fma_f16c();

// AVX-512 F, BW, VL and VNNI (vpdpbusd) on top of has_avx2_fma_f16c, with the OS saving the ZMM
// and mask registers. Checked once.
bool has_avx512_vnni();

}  // namespace lanes::cpu
