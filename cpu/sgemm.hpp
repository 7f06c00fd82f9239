// Single-precision matrix multiply for the CPU backend: packed panels and a register-blocked
// AVX2/FMA microkernel (chosen at run time; a portable loop serves other CPUs).
#pragma once
#include <cstdint>

namespace lanes::cpu {

// One row-major-or-strided matrix operand: element (i, j) is at data[i * row + j * col].
struct MatrixView {
  const float* data;
  int64_t row, col;
};

// C[M, N] (row-major, contiguous) = A[M, K] · B[K, N]. Every element sums over k in the same
// order whatever the thread count, so results are bitwise reproducible. Returns false when the
// CPU lacks AVX2/FMA (the caller then uses its own loop).
bool sgemm_packed(MatrixView a, MatrixView b, float* c, int64_t M, int64_t N, int64_t K);

}  // namespace lanes::cpu
