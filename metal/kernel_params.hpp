/* The parameter blocks of metal/kernels.metal (bound at buffer index 8), one struct per block,
 * included by both the kernels and the host (metal/launch.mm): a field changed here changes
 * both sides, and a field renamed or removed fails to compile on the side that still uses it.
 * A compiled plan's run-time scalars are written into these blocks on the host at each replay
 * (metal/launch.mm, ScalarPatch), so no kernel reads a double or a separate parameter buffer.
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

/* A compiled plan's chain of float32 elementwise ops (ffi/src/gpu/kernel_layout.hpp's KFused):
 * `inputs` inputs read through s0..s3 from buffers 1-4 (unused ones bound to input 0, never
 * read); the running value starts as input 0. kind: 0 unary, 1 binary with input `operand`, 2
 * binary with `scalar`. flags bit 0 as EwParams. */
#define LANES_KERNEL_MAX_FUSED_STEPS 16
typedef struct FusedParams {
  KShape shape;
  KStrides s0, s1, s2, s3;
  long n;
  int flags;
  int inputs;
  int steps;
  int kind[LANES_KERNEL_MAX_FUSED_STEPS];
  int subop[LANES_KERNEL_MAX_FUSED_STEPS];
  int operand[LANES_KERNEL_MAX_FUSED_STEPS];
  int value_first[LANES_KERNEL_MAX_FUSED_STEPS];
  float scalar[LANES_KERNEL_MAX_FUSED_STEPS];
} FusedParams;

/* binaryScalar: `a op scalar`, or `scalar op a` when scalar_first; the scalar as the array's
 * type stores it (its bits, ffi/src/gpu's storage_bits). flags bit 0: contiguous operand. */
typedef struct ScalarParams {
  KShape shape;
  KStrides s0;
  long n;
  int op;
  int flags;
  unsigned int scalar_bits;
  int scalar_first;
} ScalarParams;

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

/* Only the first `used` of the Lk keys hold data (a preallocated cache's filled prefix); a
 * causal mask aligns with their end. The per-row form (attention_rows_*) reads `used` per batch
 * entry from a buffer instead. */
typedef struct AttnParams {
  long B, H, Lq, D, Hk, Lk, Dv, used;
  float scale;
  int causal;
} AttnParams;

/* The position offset (a double on the host) as its floor and the float fraction above it, so
 * integral offsets stay exact past float's 2^24. */
typedef struct RopeParams {
  long rows, L, D;
  int dims, traditional;
  float base, scale;
  long offset;
  float offset_fraction;
  long rows_per_entry; /* per-row form (rope_rows_*): the rows of leading entry b start at offsets[b] */
} RopeParams;

/* A per-row sliceUpdate (copy_rows_*): the fields of ffi/src/gpu's RowWrite. */
typedef struct RowWriteParams {
  long n, per_entry, U, C, R;
} RowWriteParams;

/* Both matmul kernels: A[M, K] and B[K, N] read through element strides, batch dims through
 * `batch` with each operand's batch strides and offset. */
typedef struct MatmulParams {
  long M, N, K, a_row, a_col, b_row, b_col, batches;
  KShape batch;
  KStrides ab, bb;
} MatmulParams;

/* Quantized weights (ggml's Q4_0, Q4_1, Q8_0 blocks of 32 along rows of k). */
typedef struct DequantParams {
  long count; /* weights to expand, a multiple of 32 */
} DequantParams;

/* Rows of a quantized [dim, k] matrix at `count` int32 indices, as float32. */
typedef struct TakeQuantParams {
  long count, k, dim;
} TakeQuantParams;

/* y[m, n] = x[m, k] (float32 rows) times the transpose of a quantized w[n, k]. */
typedef struct QuantMatmulParams {
  long m, k, n;
} QuantMatmulParams;

#endif
