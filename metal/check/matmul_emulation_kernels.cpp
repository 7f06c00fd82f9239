// metal/kernels.metal's two matmul kernels compiled as host C++, for metal/check/matmul_emulation.cpp.
// This is not Metal: the MSL library is the check's metal_stdlib stand-in (declarations) plus the
// few definitions below, written from the MSL specification. A threadgroup is one std::thread per
// GPU thread meeting at a barrier (the driver's); a SIMD-group matrix is a whole 8x8 matrix in every
// lane (lane 0 alone stores it). It checks the kernels' indexing, tiling, bounds and barriers, not
// how Apple's GPU schedules or rounds them.
#include <metal_stdlib>

#include "matmul_emulation.hpp"

// Kernel entry points become unused inline functions: the ones this file calls are the _impl
// templates, and the rest of the library (declared only) is never emitted.
#undef kernel
#define kernel [[maybe_unused]] static inline
// The definitions below replace the type check's declarations of the SIMD-group matrix API.
#define LANES_METAL_CHECK_SIMDGROUP_MATRIX_H

namespace metal {

void threadgroup_barrier(mem_flags) { emulated_threadgroup_barrier(); }

template <typename T, int Cols, int Rows>
struct simdgroup_matrix {
  T e[Rows][Cols];
};
typedef simdgroup_matrix<float, 8, 8> simdgroup_float8x8;

template <typename T, int Cols, int Rows>
simdgroup_matrix<T, Cols, Rows> make_filled_simdgroup_matrix(T value) {
  simdgroup_matrix<T, Cols, Rows> m;
  for (int r = 0; r < Rows; ++r)
    for (int c = 0; c < Cols; ++c) m.e[r][c] = value;
  return m;
}

template <typename T, int Cols, int Rows>
void simdgroup_load(simdgroup_matrix<T, Cols, Rows>& d, const T* src, ulong elements_per_row = Cols) {
  for (int r = 0; r < Rows; ++r)
    for (int c = 0; c < Cols; ++c) d.e[r][c] = src[ulong(r) * elements_per_row + ulong(c)];
}

template <typename T, int Cols, int Rows>
void simdgroup_store(simdgroup_matrix<T, Cols, Rows> a, T* dst, ulong elements_per_row = Cols) {
  if (emulated_simd_lane() != 0) return;
  for (int r = 0; r < Rows; ++r)
    for (int c = 0; c < Cols; ++c) dst[ulong(r) * elements_per_row + ulong(c)] = a.e[r][c];
}

template <typename T, int Cols, int Rows, int K>
void simdgroup_multiply_accumulate(simdgroup_matrix<T, Cols, Rows>& d, simdgroup_matrix<T, K, Rows>& a,
                                   simdgroup_matrix<T, Cols, K>& b, simdgroup_matrix<T, Cols, Rows>& c) {
  simdgroup_matrix<T, Cols, Rows> r;
  for (int i = 0; i < Rows; ++i)
    for (int j = 0; j < Cols; ++j) {
      T sum = 0;
      for (int k = 0; k < K; ++k) sum += a.e[i][k] * b.e[k][j];
      r.e[i][j] = sum + c.e[i][j];
    }
  d = r;
}

}  // namespace metal

#include "../kernels.metal"

namespace {

// One GPU thread of a kernel's threadgroup `group`.
template <typename T>
void run_thread(const EmulatedMatmul& m, unsigned tid, const unsigned group[3], float* ta, float* tb, float* tc) {
  uint3 tile = {group[0], group[1], group[2]};
  MatmulParams params = *m.params;  // constant memory: `constant` is no qualifier here
  T* y = static_cast<T*>(m.y);
  const T* a = static_cast<const T*>(m.a);
  const T* b = static_cast<const T*>(m.b);
  if (m.simdgroup) {
    matmul_simdgroup_impl<T>(y, a, b, params, ta, tb, tc, tid, tid / 32, tile);
  } else {
    uint2 tid2 = {tid % 16, tid / 16};
    matmul_impl<T>(y, a, b, params, ta, tb, tid2, tile);
  }
}

}  // namespace

void emulate_matmul_thread(const EmulatedMatmul& m, unsigned tid, const unsigned group[3], float* threadgroup_memory) {
  // The kernels' threadgroup arrays, laid out one after another as their entry points declare them.
  float* ta = threadgroup_memory;
  float* tb = ta + (m.simdgroup ? SG_TILE * SG_A_STRIDE : 16 * 17);
  float* tc = tb + (m.simdgroup ? SG_K * SG_B_STRIDE : 16 * 17);
  switch (m.dtype) {
    case EmulatedDType::f32: return run_thread<float>(m, tid, group, ta, tb, tc);
    case EmulatedDType::f16: return run_thread<f16>(m, tid, group, ta, tb, tc);
    case EmulatedDType::bf16: return run_thread<bf16>(m, tid, group, ta, tb, tc);
  }
}

unsigned emulated_threadgroup_floats(bool simdgroup) {
  return simdgroup ? SG_TILE * SG_A_STRIDE + SG_K * SG_B_STRIDE + SG_TILE * SG_C_STRIDE : 2 * 16 * 17;
}
