// Run-time CPU feature checks for the kernels that have SIMD paths.
#pragma once

namespace lanes::cpu {

// AVX2 and FMA, with the OS saving YMM state, and not capped below AVX2 by LANES_CPU_SIMD.
// Checked once.
bool has_avx2_fma();

// The widest SIMD level the CPU kernels may use: what the CPU and OS support, capped by the
// environment variable LANES_CPU_SIMD ("portable", "avx2" or "avx512"; read once, at the first
// call). The cap lets tests and benchmarks run every path this CPU supports; a cap above what
// the CPU has changes nothing.
enum class SimdLevel { Portable = 0, Avx2 = 1, Avx512 = 2 };
SimdLevel simd_level();

}  // namespace lanes::cpu
