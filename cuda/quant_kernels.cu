// Quantized-weight kernels (GGUF Q4_0, Q4_1, Q8_0 blocks): the QUANT family of the NVRTC source,
// appended to cuda/kernels.cu and using its typedefs (i64, u32, u16, u8), f16/bf16 with
// to_float/to_f16/to_bf16, qnan() and GRID_STRIDE. No CUDA headers.
//
// Decode (small m): quantized_matvec_<type>. Each block stages the activations of up to 8 rows
// and 2048 columns of k in shared memory, quantized to 8 bits exactly as the CPU kernels do
// (ggml's q8_0 / q8_1 scheme: d = max|x| / 127 at float16 precision, q = round-to-nearest-even
// of x * 127 / max|x|, s = d * Σq), then every warp takes whole output columns and its lanes
// take half-blocks: dp4a integer dots, one float multiply-add per half-block and row.
// Why 8-bit activations and not float: at 4.8 TB/s the H200 streams about 240 G Q4_1 blocks/s,
// while its 132 SMs issue about 33 T fp32 FMA/s, some 139 lane-operations per block. A float
// dot costs 32 FMAs plus ~40 unpacking operations per block and row, so from m = 2 it is
// compute-bound; dp4a costs 8 operations (4 for Q8_0's half) per block and row plus the
// unpacking once for all rows. The staging reads m·k floats per thread block from L2, small
// next to the weights when each block has several columns per warp (the caller picks the grid:
// 4 blocks per SM, 528 on the H200, or fewer when n is small: a column per warp, in blocks of
// 16 warps for the _few and pair builds).
// Measured on an H200 (scripts/check_cuda_kernels.py --run --time, m = 1): 1.27 TB/s on SmolLM2's Q8_0
// head (576 x 49152, 24 us), 0.88 TB/s on a Q4_1 4096 x 14336 FFN matrix (42 us); m = 8 takes
// 3 to 5 times as long. SmolLM2's small matrices take 5.7 to 8.3 us, latency rather than
// bandwidth. The limit is memory-level parallelism: a warp has one column's loads in flight.
// Loading ahead within a column (tried: 2 and 4 half-blocks per lane) raised register use and
// lost occupancy; several columns per warp is the next step.
//
// quantized_matvec_epilogue_<type> also applies a compiled plan's elementwise chain (a residual
// add) to each complete sum as it stores it, so the chain needs no kernel of its own;
// quantized_matvec_norm_<type> normalizes its activations as it stages them (a compiled plan's
// rmsNorm that alone feeds the product), with norm_f32_g32's bits.
//
// Launch: blockDim = (QMV_THREADS, 1, 1) or any multiple of 32 up to 1024 (the backend gives the
// _few and pair builds 16 warps a block: cuda/device.hpp), any gridDim.x; warps
// take columns in grid-stride order. For a given k, results are bitwise identical for any grid
// size and any concurrency (each output's sum has a fixed order).
// Preconditions (checked by the caller): k % 32 == 0; w is 4-byte aligned; y does not alias
// x or w.
//
// Prefill (large m): quantized_activations_f32 rounds the activations as the matvec does, and
// dequantize_<type>_to_f32 / _to_bf16 expand count weights (count % 32 == 0) for a dense matmul. Bit for bit the CPU's dequantize (bf16: then rounded to nearest even).
// Launch: any grid; one thread per 2 weights (count / 2 threads in all, grid-stride).

#if defined(LANES_FAMILY_QUANT)
#define QMV_THREADS 256
#define QMV_ROWS 8      // activation rows staged at once
#define QMV_KTILE 2048  // activation columns staged at once (64 blocks)

// ---- shared helpers ----------------------------------------------------------------------------

__device__ __forceinline__ float q_half_value(const u8* p) { f16 h; h.bits = u16(p[0] | (p[1] << 8)); return to_float(h); }

// ggml keeps activation scales as float16; so do we where float16 has a normal number for the
// value (else the float32 value stays), as the CPU kernels do.
__device__ __forceinline__ float q_at_half_precision(float v) {
  f16 h = to_f16(v);
  u32 e = (h.bits >> 10) & 0x1f;
  return (e >= 1 && e <= 30) ? to_float(h) : v;
}

__device__ __forceinline__ u32 q_load_u32_aligned2(const u8* p) {
  const u16* h = reinterpret_cast<const u16*>(p);
  return u32(h[0]) | (u32(h[1]) << 16);
}

// ---- activation staging ----------------------------------------------------------------------

// Shared state of one thread block: the 8-bit activations of QMV_ROWS rows x QMV_KTILE columns.
// q holds each block's 32 values in the order the dot loop reads them: for Q4 types, lane
// half h of a block reads 16 bytes at 32b + 16h = [x 8h..8h+7, x 16+8h..16+8h+7] (the weights
// of the low and high nibbles of its 8 bytes); for Q8_0, natural order.
struct __align__(16) QmvStage {
  int q[QMV_ROWS][QMV_KTILE / 4];        // as int words for dp4a
  float d[QMV_ROWS][QMV_KTILE / 32];     // dx
  float s[QMV_ROWS][QMV_KTILE / 32];     // Q4_1: d * Σq at float16 precision
  int half_sum[QMV_ROWS][QMV_KTILE / 16];  // Q4_0: Σq of each lane half's 16 values
};

// Element e of a block goes to byte position pos(e) in its 32 staged bytes.
template <int TYPE>
__device__ __forceinline__ int q_stage_position(int e) {
  if (TYPE == 2) return e;                // Q8_0
  int h = (e & 15) >> 3;                  // which lane half reads it
  return 16 * h + (e >> 4) * 8 + (e & 7);  // low nibble weights first, then high
}

// One warp quantizes S blocks of 32 activations at once (lane e holds element e of each, in v),
// each the same way alone: the S blocks' shuffles are interleaved so their latencies overlap.
// Block s goes to row r[s], block b[s]; only the first `count` are stored (the rest are
// padding, computed so every lane takes part in every shuffle).
template <int TYPE, int S>
__device__ void q_stage_blocks(QmvStage& st, const int (&r)[S], const int (&b)[S], const float (&v)[S], int count) {
  int lane = threadIdx.x & 31;
  float amax[S];
  bool all_finite[S];
  int q[S], qsum[S], g[S];
#pragma unroll
  for (int s = 0; s < S; ++s) amax[s] = fabsf(v[s]);
#pragma unroll
  for (int s = 0; s < S; ++s) all_finite[s] = __all_sync(0xffffffffu, amax[s] <= 3.402823466e38f);  // false for NaN and inf
  for (int o = 16; o > 0; o >>= 1)
#pragma unroll
    for (int s = 0; s < S; ++s) amax[s] = fmaxf(amax[s], __shfl_xor_sync(0xffffffffu, amax[s], o));
#pragma unroll
  for (int s = 0; s < S; ++s) {
    q[s] = 0;
    if (all_finite[s] && amax[s] != 0.f) q[s] = __float2int_rn(__fmul_rn(v[s], __fdiv_rn(127.f, amax[s])));
    qsum[s] = q[s];
    g[s] = q[s];
  }
  for (int o = 16; o > 0; o >>= 1)
#pragma unroll
    for (int s = 0; s < S; ++s) qsum[s] += __shfl_xor_sync(0xffffffffu, qsum[s], o);
  // Q4_0: the Σq of each lane half (elements with (e & 15) >> 3 == h): groups of 8 lanes, then
  // groups 0 + 2 and 1 + 3.
  for (int o = 4; o > 0; o >>= 1)
#pragma unroll
    for (int s = 0; s < S; ++s) g[s] += __shfl_xor_sync(0xffffffffu, g[s], o);
#pragma unroll
  for (int s = 0; s < S; ++s) {
    int g_other = __shfl_xor_sync(0xffffffffu, g[s], 16);
    if (s >= count) continue;
    reinterpret_cast<signed char*>(st.q[r[s]])[32 * b[s] + q_stage_position<TYPE>(lane)] = (signed char)q[s];
    if (lane == 0) {
      float d = __fdiv_rn(amax[s], 127.f);
      st.d[r[s]][b[s]] = all_finite[s] ? q_at_half_precision(d) : qnan();
      st.s[r[s]][b[s]] = all_finite[s] ? q_at_half_precision(__fmul_rn(d, float(qsum[s]))) : qnan();
    }
    if (lane == 0 || lane == 8) st.half_sum[r[s]][2 * b[s] + (lane >> 3)] = g[s] + g_other;
  }
}

// ---- the matvec --------------------------------------------------------------------------------

// One lane's half of a weight block: 16 weights as 4 words of bytes (Q4: low nibbles of its 8
// bytes, then high nibbles), the scale and (Q4_1) the min.
struct QHalf {
  int wq[4];
  float dw, mw;
};

template <int TYPE>
__device__ __forceinline__ QHalf q_load_half(const u8* __restrict__ blk, int h) {
  QHalf r;
  r.mw = 0.f;
  if (TYPE == 0) {  // Q4_0: 18 bytes, 2-byte aligned
    r.dw = q_half_value(blk);
    u32 w0 = q_load_u32_aligned2(blk + 2 + 8 * h), w1 = q_load_u32_aligned2(blk + 6 + 8 * h);
    r.wq[0] = int(w0 & 0x0f0f0f0fu), r.wq[1] = int(w1 & 0x0f0f0f0fu);
    r.wq[2] = int((w0 >> 4) & 0x0f0f0f0fu), r.wq[3] = int((w1 >> 4) & 0x0f0f0f0fu);
  } else if (TYPE == 1) {  // Q4_1: 20 bytes, 4-byte aligned
    u32 dm = __ldg(reinterpret_cast<const u32*>(blk));
    f16 hd, hm;
    hd.bits = u16(dm & 0xffff), hm.bits = u16(dm >> 16);
    r.dw = to_float(hd), r.mw = to_float(hm);
    const u32* qs = reinterpret_cast<const u32*>(blk + 4 + 8 * h);
    u32 w0 = __ldg(qs), w1 = __ldg(qs + 1);
    r.wq[0] = int(w0 & 0x0f0f0f0fu), r.wq[1] = int(w1 & 0x0f0f0f0fu);
    r.wq[2] = int((w0 >> 4) & 0x0f0f0f0fu), r.wq[3] = int((w1 >> 4) & 0x0f0f0f0fu);
  } else {  // Q8_0: 34 bytes, 2-byte aligned
    r.dw = q_half_value(blk);
    for (int i = 0; i < 4; ++i) r.wq[i] = int(q_load_u32_aligned2(blk + 2 + 16 * h + 4 * i));
  }
  return r;
}

// Adds one half-block's products with `rows` staged rows to acc.
template <int TYPE>
__device__ __forceinline__ void q_dot_half(const QHalf& wh, int h, const QmvStage& st, int b, int rows, float (&acc)[QMV_ROWS]) {
#pragma unroll
  for (int r = 0; r < QMV_ROWS; ++r) {
    if (r >= rows) break;
    const int4 xq = *reinterpret_cast<const int4*>(&st.q[r][8 * b + 4 * h]);
    int sumi = __dp4a(wh.wq[0], xq.x, 0);
    sumi = __dp4a(wh.wq[1], xq.y, sumi);
    sumi = __dp4a(wh.wq[2], xq.z, sumi);
    sumi = __dp4a(wh.wq[3], xq.w, sumi);
    if (TYPE == 0) sumi -= 8 * st.half_sum[r][2 * b + h];
    float v = __fmul_rn(__fmul_rn(wh.dw, st.d[r][b]), float(sumi));
    if (TYPE == 1 && h == 0) v = __fadd_rn(v, __fmul_rn(wh.mw, st.s[r][b]));
    acc[r] = __fadd_rn(acc[r], v);
  }
}

// A compiled plan's rmsNorm folded into the matvec (its only reader): the activations are
// rmsNorm(x) with this weight, as norm_f32_g32 computes them (warp r computes row r's scale, as
// a group of that kernel's) and x contiguous (rows of k).
struct QmvNorm {
  const float* weight;
  double eps;
};

// `finish(e, sum)` stores output element e's complete sum (its last tile's).
// GROUP: activation blocks a warp stages at once (q_stage_blocks).
// PAIR: w has 2n rows and a warp takes columns j and j + n together, each summed as alone;
// `finish(e, sum_j, sum_j_plus_n)` stores output element e of [m, n]. Needs k <= QMV_KTILE.
template <int TYPE, int BLOCK_BYTES, bool NORM, int GROUP, bool PAIR = false, class Finish>
__device__ void quantized_matvec_impl(float* __restrict__ y, const float* __restrict__ x, i64 m, i64 k, i64 x_row_stride,
                                      const u8* __restrict__ w, i64 n, QmvNorm norm, Finish finish) {
  __shared__ QmvStage st;
  __shared__ NormScale norm_scales[QMV_ROWS];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const i64 nb = k / 32, row_bytes = nb * BLOCK_BYTES;
  // The weights are not written by the kernel before this one, so this warp's first column
  // (its first tile) is fetched into L2 while that kernel finishes. A prefetch is only a hint:
  // L2 is coherent, so it cannot return stale data even for weights a plan computes.
  const i64 first = i64(blockIdx.x) * warps + warp;
  if (first < n)
    for (i64 at = 128 * lane; at < min(row_bytes, i64(QMV_KTILE / 32) * BLOCK_BYTES); at += 32 * 128) {
      asm volatile("prefetch.L2 [%0];" ::"l"(w + first * row_bytes + at));
      if (PAIR) asm volatile("prefetch.L2 [%0];" ::"l"(w + (first + n) * row_bytes + at));
    }
  await_previous_kernel();
  for (i64 i0 = 0; i0 < m; i0 += QMV_ROWS) {
    const int rows = int(min(i64(QMV_ROWS), m - i0));
    if (NORM) {
      bool valid = warp < rows;
      NormScale scale = norm_scale<float, 32>(x + (valid ? (i0 + warp) * k : 0), valid ? k : 0, k, norm_packed(x, k),
                                              norm.eps, 0, nullptr);  // a warp folds by shuffles
      if (lane == 0 && valid) norm_scales[warp] = scale;
    }
    for (i64 k0 = 0; k0 < k; k0 += QMV_KTILE) {
      const int tile_blocks = int(min(i64(QMV_KTILE), k - k0) / 32);
      __syncthreads();  // the previous tile's readers are done (and the rows' scales written)
      // Each warp takes GROUP of the tile's blocks at a time, all their loads issued before any
      // is used: one latency per group instead of one per block.
      constexpr int S = GROUP;
      const int tasks = rows * tile_blocks;
      for (int first_task = warp; first_task < tasks; first_task += S * warps) {
        int r[S], b[S];
        float v[S];
        const int count = min(S, (tasks - first_task + warps - 1) / warps);
#pragma unroll
        for (int s = 0; s < S; ++s) {
          int task = min(first_task + s * warps, tasks - 1);
          r[s] = task / tile_blocks, b[s] = task % tile_blocks;
          v[s] = x[(i0 + r[s]) * x_row_stride + k0 + 32 * b[s] + lane];
        }
        if (NORM)
#pragma unroll
          for (int s = 0; s < S; ++s)
            v[s] = norm_value<float>(v[s], norm_scales[r[s]], norm.weight, static_cast<const float*>(nullptr), k0 + 32 * b[s] + lane);
        q_stage_blocks<TYPE, S>(st, r, b, v, count);
      }
      __syncthreads();
      for (i64 j = i64(blockIdx.x) * warps + warp; j < n; j += i64(gridDim.x) * warps) {
        float acc[QMV_ROWS], acc_pair[PAIR ? QMV_ROWS : 1];
#pragma unroll
        for (int r = 0; r < QMV_ROWS; ++r) acc[r] = 0.f;
        if constexpr (PAIR)
#pragma unroll
          for (int r = 0; r < QMV_ROWS; ++r) acc_pair[r] = 0.f;
        const u8* row = w + j * row_bytes + (k0 / 32) * BLOCK_BYTES;
        for (int b = lane >> 1; b < tile_blocks; b += 16) {
          if constexpr (PAIR) {
            // Both columns' loads first, so their latencies overlap.
            QHalf lo = q_load_half<TYPE>(row + b * BLOCK_BYTES, lane & 1), hi = q_load_half<TYPE>(row + n * row_bytes + b * BLOCK_BYTES, lane & 1);
            q_dot_half<TYPE>(lo, lane & 1, st, b, rows, acc);
            q_dot_half<TYPE>(hi, lane & 1, st, b, rows, acc_pair);
          } else {
            q_dot_half<TYPE>(q_load_half<TYPE>(row + b * BLOCK_BYTES, lane & 1), lane & 1, st, b, rows, acc);
          }
        }
#pragma unroll
        for (int r = 0; r < QMV_ROWS; ++r) {
          if (r >= rows) break;
          float v = acc[r];
          for (int o = 16; o > 0; o >>= 1) v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, o));
          if constexpr (PAIR) {
            float u = acc_pair[r];
            for (int o = 16; o > 0; o >>= 1) u = __fadd_rn(u, __shfl_xor_sync(0xffffffffu, u, o));
            if (lane == 0) finish((i0 + r) * n + j, v, u);
          } else if (lane == 0) {
            i64 e = (i0 + r) * n + j;
            float sum = k0 == 0 ? v : __fadd_rn(y[e], v);
            if (k0 + QMV_KTILE >= k)
              finish(e, sum);
            else
              y[e] = sum;
          }
        }
      }
    }
  }
}

// The matvec alone, with a compiled plan's epilogue (the elementwise chain that alone reads its
// product, whose input 0 is the sum as the matvec alone would have stored it), or with its
// folded rmsNorm. Each in two builds with the same bits: <name>_<type> stages one activation
// block per warp at a time, for warps that go on to many columns (fewer registers, so more
// blocks per SM: the bandwidth-bound products); <name>_<type>_few stages four at a time, for
// grids where a warp has a column or two and staging is most of its path (measured on an H200:
// 5.6 -> 5.2 us for a 576 x 576 Q4_1 matrix, 8.6 -> 7.6 us for 1536 x 576, but 24 -> 36 us for
// SmolLM2's 576 x 49152 Q8_0 head, whose blocks no longer fit four to an SM).
#define QUANTIZED_MATVEC_BUILD(S, NAME_END, TYPE, BLOCK_BYTES, GROUP) \
  extern "C" __global__ void quantized_matvec_##S##NAME_END(float* y, const float* x, i64 m, i64 k, i64 x_row_stride, const u8* w, i64 n) { \
    quantized_matvec_impl<TYPE, BLOCK_BYTES, false, GROUP>(y, x, m, k, x_row_stride, w, n, QmvNorm{}, [y](i64 e, float sum) { y[e] = sum; }); \
  } \
  extern "C" __global__ void quantized_matvec_epilogue_##S##NAME_END(float* y, const float* x, i64 m, i64 k, i64 x_row_stride, const u8* w, \
                                                                     i64 n, const float* x1, const float* x2, const float* x3, KFusedWalk fw, \
                                                                     KFused f, int inputs, int contiguous) { \
    quantized_matvec_impl<TYPE, BLOCK_BYTES, false, GROUP>(y, x, m, k, x_row_stride, w, n, QmvNorm{}, [&](i64 e, float sum) { \
      y[e] = fused_value(e, sum, x1, x2, x3, fw, f, inputs, contiguous); \
    }); \
  } \
  extern "C" __global__ void quantized_matvec_norm_##S##NAME_END(float* y, const float* x, i64 m, i64 k, const u8* w, i64 n, \
                                                                 const float* norm_weight, double eps) { \
    quantized_matvec_impl<TYPE, BLOCK_BYTES, true, GROUP>(y, x, m, k, k, w, n, QmvNorm{norm_weight, eps}, [y](i64 e, float sum) { y[e] = sum; }); \
  }
// With a pair epilogue (a gated MLP's silu(gate) * up over the product's two column halves),
// with or without the folded norm: the build that stages four blocks at once only, since the
// backend gives a product a pair epilogue only where each warp has at most two pairs.
#define QUANTIZED_MATVEC_PAIR(S, TYPE, BLOCK_BYTES) \
  extern "C" __global__ void quantized_matvec_pair_##S(float* y, const float* x, i64 m, i64 k, const u8* w, i64 n, KFused f) { \
    quantized_matvec_impl<TYPE, BLOCK_BYTES, false, 4, true>(y, x, m, k, k, w, n, QmvNorm{}, [&](i64 e, float a, float b) { \
      y[e] = fused_pair_value(a, b, f); \
    }); \
  } \
  extern "C" __global__ void quantized_matvec_norm_pair_##S(float* y, const float* x, i64 m, i64 k, const u8* w, i64 n, \
                                                            const float* norm_weight, double eps, KFused f) { \
    quantized_matvec_impl<TYPE, BLOCK_BYTES, true, 4, true>(y, x, m, k, k, w, n, QmvNorm{norm_weight, eps}, [&](i64 e, float a, float b) { \
      y[e] = fused_pair_value(a, b, f); \
    }); \
  }
#define QUANTIZED_MATVEC(S, TYPE, BLOCK_BYTES) \
  QUANTIZED_MATVEC_BUILD(S, , TYPE, BLOCK_BYTES, 1) \
  QUANTIZED_MATVEC_BUILD(S, _few, TYPE, BLOCK_BYTES, 4) \
  QUANTIZED_MATVEC_PAIR(S, TYPE, BLOCK_BYTES)
QUANTIZED_MATVEC(q4_0, 0, 18)
QUANTIZED_MATVEC(q4_1, 1, 20)
QUANTIZED_MATVEC(q8_0, 2, 34)

// ---- activations rounded for the dense path -----------------------------------------------------

// y [m, k] (contiguous) = x's rows with each block of 32 values rounded to 8 bits exactly as
// q_stage_blocks does (q · d, d at float16 precision; a block with a NaN or infinity gives NaN),
// so that a product of more rows than the matvec takes, dequantized weights times these, equals
// the matvec's sum up to float32 rounding order (and Q4_1's scaled sum, which ggml keeps at
// float16) instead of differing by the activations' 8-bit rounding. A row's result then does
// not depend on how many rows share its product: a batched decode step of 32 sequences agrees
// with each sequence decoded alone. Launch: any grid of whole warps; one warp per block of 32.
extern "C" __global__ void quantized_activations_f32(float* y, const float* x, i64 m, i64 k, i64 x_row_stride) {
  await_previous_kernel();
  const int lane = threadIdx.x & 31;
  const i64 nb = k / 32, total = m * nb;
  const i64 warps = (i64(gridDim.x) * blockDim.x) >> 5;
  for (i64 t = (i64(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; t < total; t += warps) {
    const i64 r = t / nb, b = t % nb;
    float v = x[r * x_row_stride + 32 * b + lane];
    float a = fabsf(v);
    bool all_finite = __all_sync(0xffffffffu, a <= 3.402823466e38f);
    float amax = a;
    for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    int q = 0;
    if (all_finite && amax != 0.f) q = __float2int_rn(__fmul_rn(v, __fdiv_rn(127.f, amax)));
    float d = all_finite ? q_at_half_precision(__fdiv_rn(amax, 127.f)) : qnan();
    y[r * k + 32 * b + lane] = __fmul_rn(float(q), d);
  }
}

// ---- dequantization ----------------------------------------------------------------------------

// Weights e and e + 16 of block b (e < 16): one nibble byte for Q4 types, two int8 for Q8_0.
// Products are rounded, then Q4_1's min added, as on the CPU (no fused multiply-add).
template <int TYPE, int BLOCK_BYTES>
__device__ __forceinline__ void q_dequant_pair(const u8* w, i64 t, float& lo, float& hi) {
  const u8* blk = w + (t >> 4) * BLOCK_BYTES;
  int e = int(t & 15);
  float d = q_half_value(blk);
  if (TYPE == 2) {
    lo = __fmul_rn(float((signed char)blk[2 + e]), d);
    hi = __fmul_rn(float((signed char)blk[18 + e]), d);
    return;
  }
  u32 byte = blk[(TYPE == 0 ? 2 : 4) + e];
  int q_lo = int(byte & 15), q_hi = int(byte >> 4);
  if (TYPE == 0) {
    lo = __fmul_rn(float(q_lo - 8), d);
    hi = __fmul_rn(float(q_hi - 8), d);
  } else {
    float mn = q_half_value(blk + 2);
    lo = __fadd_rn(__fmul_rn(float(q_lo), d), mn);
    hi = __fadd_rn(__fmul_rn(float(q_hi), d), mn);
  }
}

template <int TYPE, int BLOCK_BYTES>
__device__ void dequantize_f32_impl(float* out, const u8* w, i64 count) {
  GRID_STRIDE(t, count / 2) {
    float lo, hi;
    q_dequant_pair<TYPE, BLOCK_BYTES>(w, t, lo, hi);
    i64 base = (t >> 4) * 32 + (t & 15);
    out[base] = lo;
    out[base + 16] = hi;
  }
}

template <int TYPE, int BLOCK_BYTES>
__device__ void dequantize_bf16_impl(u16* out, const u8* w, i64 count) {
  GRID_STRIDE(t, count / 2) {
    float lo, hi;
    q_dequant_pair<TYPE, BLOCK_BYTES>(w, t, lo, hi);
    i64 base = (t >> 4) * 32 + (t & 15);
    out[base] = to_bf16(lo).bits;
    out[base + 16] = to_bf16(hi).bits;
  }
}

extern "C" __global__ void dequantize_q4_0_to_f32(float* out, const u8* w, i64 count) { await_previous_kernel(); dequantize_f32_impl<0, 18>(out, w, count); }
extern "C" __global__ void dequantize_q4_1_to_f32(float* out, const u8* w, i64 count) { await_previous_kernel(); dequantize_f32_impl<1, 20>(out, w, count); }
extern "C" __global__ void dequantize_q8_0_to_f32(float* out, const u8* w, i64 count) { await_previous_kernel(); dequantize_f32_impl<2, 34>(out, w, count); }
extern "C" __global__ void dequantize_q4_0_to_bf16(u16* out, const u8* w, i64 count) { await_previous_kernel(); dequantize_bf16_impl<0, 18>(out, w, count); }
extern "C" __global__ void dequantize_q4_1_to_bf16(u16* out, const u8* w, i64 count) { await_previous_kernel(); dequantize_bf16_impl<1, 20>(out, w, count); }
extern "C" __global__ void dequantize_q8_0_to_bf16(u16* out, const u8* w, i64 count) { await_previous_kernel(); dequantize_bf16_impl<2, 34>(out, w, count); }

// Rows of a quantized [dim, k] matrix at int32 indices (negative ones count from the end), as
// float32: the embedding lookup. An index out of range sets error[0] and error[1] (as take does).
template <int TYPE, int BLOCK_BYTES>
__device__ void take_dequantize_impl(float* y, const u8* w, const int* idx, i64 count, i64 k, i64 dim, int* error) {
  i64 pairs = k / 2, row_bytes = k / 32 * BLOCK_BYTES;
  GRID_STRIDE(t, count * pairs) {
    i64 i = t / pairs, p = t % pairs;
    i64 row = idx[i];
    if (row < 0) row += dim;
    i64 base = (p >> 4) * 32 + (p & 15);
    if (row < 0 || row >= dim) {
      if (atomicCAS(error, 0, 1) == 0) error[1] = idx[i];
      y[i * k + base] = 0.0f;
      y[i * k + base + 16] = 0.0f;
      continue;
    }
    float lo, hi;
    q_dequant_pair<TYPE, BLOCK_BYTES>(w + row * row_bytes, p, lo, hi);
    y[i * k + base] = lo;
    y[i * k + base + 16] = hi;
  }
}

extern "C" __global__ void take_dequantize_q4_0(float* y, const u8* w, const int* idx, i64 count, i64 k, i64 dim, int* error) { await_previous_kernel(); take_dequantize_impl<0, 18>(y, w, idx, count, k, dim, error); }
extern "C" __global__ void take_dequantize_q4_1(float* y, const u8* w, const int* idx, i64 count, i64 k, i64 dim, int* error) { await_previous_kernel(); take_dequantize_impl<1, 20>(y, w, idx, count, k, dim, error); }
extern "C" __global__ void take_dequantize_q8_0(float* y, const u8* w, const int* idx, i64 count, i64 k, i64 dim, int* error) { await_previous_kernel(); take_dequantize_impl<2, 34>(y, w, idx, count, k, dim, error); }
#endif
