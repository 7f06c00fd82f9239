// Single-precision matrix multiply for the CPU backend: packed panels and a register-blocked
// microkernel, AVX-512 or AVX2/FMA chosen at run time (a scalar loop in the caller serves
// other CPUs, or all CPUs under LANES_CPU_SIMD=scalar).
#pragma once
#include <cstdint>

#include "cpu_features.hpp"

namespace lanes::cpu {

// One row-major-or-strided matrix operand: element (i, j) is at data[i * row + j * col].
struct MatrixView {
  const float* data;
  int64_t row, col;
};

// C[M, N] (row-major, contiguous) = A[M, K] · B[K, N]. Every element is one fused multiply-add
// chain over k = 0, 1, ..., K-1 starting from zero, whatever the thread count, block sizes or
// SIMD width, so results are bitwise reproducible and the AVX2 and AVX-512 paths agree bit for
// bit. Returns false when simd_level() is Scalar (the caller then uses its own loop).
// Thread-safe; pack buffers belong to the calling thread.
bool sgemm_packed(MatrixView a, MatrixView b, float* c, int64_t M, int64_t N, int64_t K);

// The same with an explicit microkernel (tests); `level` must not exceed simd_level()'s
// hardware support. Returns false for Scalar.
bool sgemm_packed_with(SimdLevel level, MatrixView a, MatrixView b, float* c, int64_t M, int64_t N, int64_t K);

}  // namespace lanes::cpu
