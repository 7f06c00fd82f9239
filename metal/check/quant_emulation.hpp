// The interface between metal/check/quant_emulation.cpp (cases, reference, threads) and
// metal/check/quant_emulation_kernels.cpp (the quantized-weight kernels of metal/kernels.metal,
// compiled against the MSL stand-in, which must see no standard header).
#pragma once
#include "../kernel_params.hpp"

enum class EmulatedQuant { q4_0, q4_1, q8_0 };

// GPU thread `gid` of the `gsize` threads of a grid-stride kernel (their threads never talk to
// each other, so the driver may run them one after another).
void emulate_dequantize(EmulatedQuant type, float* out, const unsigned char* w, const DequantParams& p, unsigned gid,
                        unsigned gsize);
void emulate_take_dequantize(EmulatedQuant type, float* y, const unsigned char* w, const int* idx, int* error,
                             const TakeQuantParams& p, unsigned gid, unsigned gsize);
// One lane of quantized_matmul; every lane of its SIMD-group runs at once.
void emulate_quantized_matmul(EmulatedQuant type, float* y, const float* x, const unsigned char* w, const QuantMatmulParams& p,
                              unsigned lane, unsigned width, unsigned simd_group, unsigned simd_groups, unsigned group,
                              unsigned groups);

// The driver's side: simd_shuffle_down within the calling thread's SIMD-group.
float emulated_simd_shuffle_down(float v, unsigned delta);
