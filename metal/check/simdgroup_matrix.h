// MSL's SIMD-group matrix API (Metal Shading Language specification, section 6.7), declared for
// the Linux type check of metal/kernels.metal only. Apple's <metal_stdlib> has it; the check's
// stand-in (../shared/metal-check/msl/shim/metal_stdlib) does not, and that folder is outside
// this project. kernels.metal includes this file only where __METAL_VERSION__ is undefined,
// which Apple's compiler always defines. Signatures as in the specification; the bodies are
// Apple's. Only what kernels.metal uses: 8x8 float matrices, load, store, multiply-accumulate.
#ifndef LANES_METAL_CHECK_SIMDGROUP_MATRIX_H
#define LANES_METAL_CHECK_SIMDGROUP_MATRIX_H

typedef ulong ulong2 __attribute__((ext_vector_type(2)));

namespace metal {

template <typename T, int Cols, int Rows>
struct simdgroup_matrix {
  simdgroup_matrix() = default;
  simdgroup_matrix(T diagonal);
};
typedef simdgroup_matrix<float, 8, 8> simdgroup_float8x8;

template <typename T, int Cols, int Rows>
simdgroup_matrix<T, Cols, Rows> make_filled_simdgroup_matrix(T value);

template <typename T, int Cols, int Rows>
void simdgroup_load(thread simdgroup_matrix<T, Cols, Rows>& d, const threadgroup T* src, ulong elements_per_row = Cols,
                    ulong2 matrix_origin = 0, bool transpose_matrix = false);
template <typename T, int Cols, int Rows>
void simdgroup_store(thread simdgroup_matrix<T, Cols, Rows> a, threadgroup T* dst, ulong elements_per_row = Cols,
                     ulong2 matrix_origin = 0, bool transpose_matrix = false);
#if MSL_AS  // device and threadgroup differ only where the shim maps them to address spaces
template <typename T, int Cols, int Rows>
void simdgroup_load(thread simdgroup_matrix<T, Cols, Rows>& d, const device T* src, ulong elements_per_row = Cols,
                    ulong2 matrix_origin = 0, bool transpose_matrix = false);
template <typename T, int Cols, int Rows>
void simdgroup_store(thread simdgroup_matrix<T, Cols, Rows> a, device T* dst, ulong elements_per_row = Cols,
                     ulong2 matrix_origin = 0, bool transpose_matrix = false);
#endif

// d = a * b + c
template <typename T, int Cols, int Rows, int K>
void simdgroup_multiply_accumulate(thread simdgroup_matrix<T, Cols, Rows>& d, thread simdgroup_matrix<T, K, Rows>& a,
                                   thread simdgroup_matrix<T, Cols, K>& b, thread simdgroup_matrix<T, Cols, Rows>& c);

}  // namespace metal

#endif
