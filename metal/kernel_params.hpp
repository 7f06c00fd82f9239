/* The parameter blocks of metal/kernels.metal (bound at buffer index 8), one struct per block,
 * included by both the kernels and the host (metal/launch.mm): a field changed here changes
 * both sides, and a field renamed or removed fails to compile on the side that still uses it.
 *
 * Plain C that is also valid MSL (its readers are Objective-C++ and MSL, hence .hpp), so no
 * includes and no fixed-width typedefs: `long` is 64-bit in MSL and on 64-bit macOS (launch.mm
 * asserts it), `int` and `unsigned int` are 32-bit.
 * The runtime compiles the kernels from a string and resolves no project #include, so
 * metal/embed.zig puts this file's text ahead of kernels.metal, whose #include of it is then
 * skipped by this guard. */
#ifndef LANES_METAL_KERNEL_PARAMS_HPP
#define LANES_METAL_KERNEL_PARAMS_HPP

#define LANES_KERNEL_MAX_DIMS 32

/* The logical shape a kernel walks and how one operand is read along it (the kernel side of
 * ffi/src/gpu/kernel_layout.hpp's KShape and KStrides). */
typedef struct KShape {
  long nd;
  long dims[LANES_KERNEL_MAX_DIMS];
} KShape;
typedef struct KStrides {
  long offset;
  long s[LANES_KERNEL_MAX_DIMS];
} KStrides;

/* Elementwise family: unary, binary, where, copy, astype. flags bit 0: every operand reads
 * 0..n-1 from its offset. */
typedef struct EwParams {
  KShape shape;
  KStrides s0, s1, s2, s3;
  long n;
  int op;
  int flags;
} EwParams;

/* full (bits: the stored value) and arange (integral: start and step count in 64-bit). */
typedef struct FillParams {
  long n;
  unsigned int bits;
  int integral;
  float start, step;
  long istart, istep;
} FillParams;

typedef struct RandomParams {
  long n;
  unsigned int key0, key1;
  float a, b;
  int normal;
} RandomParams;

/* Row kernels: reductions over [outer, len, inner], softmax, rmsNorm and layerNorm. */
typedef struct RowsParams {
  long outer, len, inner;
  int op, layer, has_weight, has_bias;
  float eps;
} RowsParams;

typedef struct TakeParams {
  long outer, dim, inner, count;
} TakeParams;

typedef struct AttnParams {
  long B, H, Lq, D, Hk, Lk, Dv;
  float scale;
  int causal;
} AttnParams;

typedef struct RopeParams {
  long rows, L, D;
  int dims, traditional;
  float base, scale;
  long offset;
} RopeParams;

/* Both matmul kernels: A[M, K] and B[K, N] read through element strides, batch dims through
 * `batch` with each operand's batch strides and offset. */
typedef struct MatmulParams {
  long M, N, K, a_row, a_col, b_row, b_col, batches;
  KShape batch;
  KStrides ab, bb;
} MatmulParams;

#endif
