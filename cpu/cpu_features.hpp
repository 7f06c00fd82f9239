// Run-time CPU feature checks for the kernels that have SIMD paths.
#pragma once

#include "../ffi/src/backend.hpp"

namespace lanes::cpu {

// The backend's switches for the CPU kernels (LANES_CPU_SIMD, LANES_CPU_THREADS), set once by
// make_cpu_backend before any kernel runs; defaults until then.
void configure(const BackendSettings& settings);
const BackendSettings& settings();

// AVX2 and FMA, with the OS saving YMM state. Checked once.
bool has_avx2_fma();

// AVX2, FMA and F16C (float16 conversions), with the OS saving YMM state. Checked once.
bool has_avx2_fma_f16c();

// AVX-512 F, BW, VL and VNNI (vpdpbusd) on top of has_avx2_fma_f16c, with the OS saving the ZMM
// and mask registers. Checked once.
bool has_avx512_vnni();

// AMX tiles with int8 multiplication, enabled by the OS (XTILECFG and XTILEDATA in XCR0): the
// CPUs on which llama.cpp runs its quantized matmuls on AMX. Checked once.
bool has_amx_int8();

// Whether the quantized matmul may use AMX tiles: has_amx_int8, the AVX-512 level, LANES_CPU_SIMD
// not capping at avx512 or below, and Linux granting this process the tile data state. Checked once.
bool amx_enabled();

// The instruction set the CPU kernels use: the best this CPU has (AVX-512 needs has_avx512_vnni,
// AVX2 has_avx2_fma_f16c), capped by LANES_CPU_SIMD=scalar|avx2|avx512 (amx: the best, AMX
// included). Read once.
enum class SimdLevel : int { Scalar = 0, Avx2 = 1, Avx512 = 2 };
SimdLevel simd_level();

// Whose rounding the kernels that follow llama.cpp's CPU backend reproduce (SiLU's vector exp,
// float16 attention's dot products in its one-row path and weight sums in its tiled path): that of its AVX-512 builds (skylakex,
// icelake, zen4, sapphirerapids) on a CPU with AVX-512 F, BW, DQ and VL, that of its AVX2 build
// (haswell) elsewhere; LANES_CPU_LLAMA_BUILD=avx512|avx2 forces one. The choice is the same on
// every SIMD level, so results do not depend on LANES_CPU_SIMD. Read once.
enum class LlamaBuild : int { Avx512 = 0, Avx2 = 1 };
LlamaBuild llama_build();

}  // namespace lanes::cpu
