// metal/kernels.metal's quantized-weight kernels compiled as host C++, for
// metal/check/quant_emulation.cpp. This is not Metal: the MSL library is the check's metal_stdlib
// stand-in (declarations) plus the few definitions below, written from the MSL specification.
// Atomics are plain (the driver runs grid-stride threads one at a time); a SIMD-group shuffle is
// the driver's (one std::thread per lane meeting at a barrier). It checks the kernels' block
// decoding, indexing, bounds, lane and grid striding and shuffle tree, not Apple's compiler or GPU.
#include <metal_stdlib>

#include "quant_emulation.hpp"

// Kernel entry points become unused inline functions: the ones this file calls are the _impl
// templates, and the rest of the library (declared only) is never emitted.
#undef kernel
#define kernel [[maybe_unused]] static inline

namespace metal {

template <>
float simd_shuffle_down<float>(float v, ushort delta) {
  return emulated_simd_shuffle_down(v, delta);
}

bool atomic_compare_exchange_weak_explicit(volatile atomic_int* a, int* expected, int desired, memory_order, memory_order) {
  if (a->__v != *expected) {
    *expected = a->__v;
    return false;
  }
  a->__v = desired;
  return true;
}

void atomic_store_explicit(volatile atomic_int* a, int v, memory_order) { a->__v = v; }

}  // namespace metal

#include "../kernels.metal"

void emulate_dequantize(EmulatedQuant type, float* out, const unsigned char* w, const DequantParams& p, unsigned gid,
                        unsigned gsize) {
  DequantParams params = p;  // constant memory: `constant` is no qualifier here
  switch (type) {
    case EmulatedQuant::q4_0: return dequantize_impl<QT_Q4_0, 18>(out, w, params, gid, gsize);
    case EmulatedQuant::q4_1: return dequantize_impl<QT_Q4_1, 20>(out, w, params, gid, gsize);
    case EmulatedQuant::q8_0: return dequantize_impl<QT_Q8_0, 34>(out, w, params, gid, gsize);
  }
}

void emulate_take_dequantize(EmulatedQuant type, float* y, const unsigned char* w, const int* idx, int* error,
                             const TakeQuantParams& p, unsigned gid, unsigned gsize) {
  TakeQuantParams params = p;
  auto* words = reinterpret_cast<atomic_int*>(error);
  switch (type) {
    case EmulatedQuant::q4_0: return take_dequantize_impl<QT_Q4_0, 18>(y, w, idx, words, params, gid, gsize);
    case EmulatedQuant::q4_1: return take_dequantize_impl<QT_Q4_1, 20>(y, w, idx, words, params, gid, gsize);
    case EmulatedQuant::q8_0: return take_dequantize_impl<QT_Q8_0, 34>(y, w, idx, words, params, gid, gsize);
  }
}

void emulate_quantized_matmul(EmulatedQuant type, float* y, const float* x, const unsigned char* w, const QuantMatmulParams& p,
                              unsigned lane, unsigned width, unsigned simd_group, unsigned simd_groups, unsigned group,
                              unsigned groups) {
  QuantMatmulParams params = p;
  switch (type) {
    case EmulatedQuant::q4_0:
      return quantized_matmul_impl<QT_Q4_0, 18>(y, x, w, params, lane, width, simd_group, simd_groups, group, groups);
    case EmulatedQuant::q4_1:
      return quantized_matmul_impl<QT_Q4_1, 20>(y, x, w, params, lane, width, simd_group, simd_groups, group, groups);
    case EmulatedQuant::q8_0:
      return quantized_matmul_impl<QT_Q8_0, 34>(y, x, w, params, lane, width, simd_group, simd_groups, group, groups);
  }
}
