// The packed sgemm, in the BLIS / GotoBLAS structure. K is cut into steps of kKC values, and
// consecutive steps into stages, as many as the pack budget holds. Each step's A rows are packed
// into panels of MR rows and its B columns into panels of NR columns (k-major, zero-padded at
// the edges), in a buffer owned by the calling thread. C is cut into near-equal tiles of whole
// panels, split over the compute pool; a tile runs all the stage's steps, each A panel (MR x kc,
// L1-resident) against the tile's B panels (kc x nc, L2-resident), so the tile's C block is
// revisited while still cached. Panels are packed by the first tile that needs them (see
// ensure_packed), so packing needs no phase or barrier of its own.
// The microkernel loads its C tile into the accumulators (zeros for the first step) and continues
// the FMA chain, so every element is one chain over k in increasing order: no blocking, thread
// split or SIMD width changes a bit.
// Products of few rows (up to kFewRowsDirect, like a decode step's x @ W) skip packing B: each
// value of B serves only those rows, so they stream B once through strip kernels that compute
// the same chains. A single row takes strips as wide as the registers allow; up to kFewRows
// rows against a transposed B (a tied output head) transpose 16 x 16 blocks of it in registers.
#include "sgemm.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "compute_pool.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace lanes::cpu {
namespace {

constexpr int64_t kKC = 256;
// Tile bounds: a tile's B block (kKC x kMaxNC floats, 512 KB) and C block (at most kMaxMC x
// kMaxNC, 384 KB) share a Zen 4 / Skylake-SP 1 MB L2 while the tile's A panels stream past.
constexpr int64_t kMaxNC = 512, kMaxMC = 192;
// Below about this much work a chunk does not repay waking a pool thread (a futex wake and a
// cold L1/L2 cost several microseconds): in flops, or in bytes of B streamed.
constexpr int64_t kMinChunkFlops = int64_t(1) << 21;
constexpr int64_t kMinChunkBytes = int64_t(256) << 10;
// Packed operands per stage (see Plan), and what a thread keeps between calls.
constexpr size_t kPackBudgetBytes = size_t(8) << 20;
constexpr size_t kRetainedScratchBytes = kPackBudgetBytes;

// C[0:mr, 0:nr] (row stride ldc) = (first ? 0 : C) + A_panel · B_panel over kc, one FMA chain
// per element. A_panel is kc x MR (k-major), B_panel is kc x NR (k-major, 64-byte aligned).
using Microkernel = void (*)(int64_t kc, const float* A, const float* B, float* C, int64_t ldc, bool first, int64_t mr,
                             int64_t nr);

// The most rows one few-row strip kernel computes, and the columns of B one pass streams.
constexpr int64_t kFewRows = 12, kStripCols = 64;
// Products of at most this many rows, with B's columns contiguous, read B in place.
constexpr int64_t kFewRowsDirect = 48;

// C[0:R, 0:nc] = A_panel (k-major, R rows) · B[:, 0:nc], B read in place with row stride ldb.
// Every call prefetches its own columns of B into L1 a few rows ahead. `ahead`, in the first call
// for a kStripCols-wide strip of B, is the strip's first column: that call also prefetches the
// whole strip into L2 for the calls on its other columns and row groups. Null in those calls
// (prefetches take load slots).
using StripKernel = void (*)(int64_t K, const float* A, const float* B, int64_t ldb, float* C, int64_t ldc, int64_t nc,
                             const float* ahead);

struct Strip {
  int64_t width;  // columns per call
  StripKernel kernel;
};

// One row against B read in place, for up to 16 * NV columns (NV a multiple of 4, at most
// kRowVectors): C[0:nc] = A[0:K] · B[:, 0:nc].
using RowKernel = void (*)(int64_t K, const float* A, const float* B, int64_t ldb, float* C, int64_t nc);
constexpr int64_t kRowVectors = 24;

// C[0:R, 0:16] (row stride ldc, nc <= 16 columns valid) = A_panel (k-major, R rows) · B[:, 0:nc]
// for a B whose columns are contiguous in k (a transposed weight, as a tied output head reads
// the embedding): B[k, j] at B[j * ldb + k].
using TransposedStripKernel = void (*)(int64_t K, const float* A, const float* B, int64_t ldb, float* C, int64_t ldc,
                                       int64_t nc);

struct Path {
  int64_t mr, nr;
  Microkernel kernel;
  Strip few_rows[kFewRows];  // [rows - 1]
  RowKernel row[kRowVectors / 4];  // [vectors / 4 - 1], or null: single rows take few_rows[0]
  TransposedStripKernel transposed[kFewRows];  // [rows - 1], or null: the packed kernel instead
};

#if defined(__x86_64__)
#define LANES_UNROLL _Pragma("clang loop unroll(full)")

// 12 x 32: 24 accumulators, 2 B vectors and a broadcast in the 32 ZMM registers.
constexpr int kMR512 = 12, kNV512 = 2, kNR512 = 16 * kNV512;

__attribute__((target("avx512f"))) void kernel_avx512(int64_t kc, const float* A, const float* B, float* C,
                                                      int64_t ldc, bool first, int64_t mr, int64_t nr) {
  __m512 c[kMR512][kNV512];
  __mmask16 mask[kNV512];
  LANES_UNROLL for (int v = 0; v < kNV512; ++v) {
    int64_t left = nr - 16 * v;
    mask[v] = left >= 16 ? __mmask16(0xFFFF) : left > 0 ? __mmask16((1u << left) - 1) : __mmask16(0);
  }
  LANES_UNROLL for (int i = 0; i < kMR512; ++i) {
    LANES_UNROLL for (int v = 0; v < kNV512; ++v) {
      c[i][v] = first || i >= mr ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mask[v], C + i * ldc + 16 * v);
    }
  }
  for (int64_t k = 0; k < kc; ++k) {
    __m512 b[kNV512];
    LANES_UNROLL for (int v = 0; v < kNV512; ++v) b[v] = _mm512_load_ps(B + k * kNR512 + 16 * v);
    const float* a = A + k * kMR512;
    LANES_UNROLL for (int i = 0; i < kMR512; ++i) {
      __m512 ai = _mm512_set1_ps(a[i]);
      LANES_UNROLL for (int v = 0; v < kNV512; ++v) c[i][v] = _mm512_fmadd_ps(ai, b[v], c[i][v]);
    }
  }
  LANES_UNROLL for (int i = 0; i < kMR512; ++i) {
    if (i >= mr) break;
    LANES_UNROLL for (int v = 0; v < kNV512; ++v) _mm512_mask_storeu_ps(C + i * ldc + 16 * v, mask[v], c[i][v]);
  }
}

// 6 x 16: 12 accumulators, 2 B vectors and a broadcast in the 16 YMM registers. Edge tiles go
// through a local copy (AVX2 has no cheap masked store for floats).
constexpr int kMR256 = 6, kNR256 = 16;

__attribute__((target("avx2,fma"))) void kernel_avx2(int64_t kc, const float* A, const float* B, float* C, int64_t ldc,
                                                     bool first, int64_t mr, int64_t nr) {
  alignas(32) float edge[kMR256][kNR256];
  bool full = mr == kMR256 && nr == kNR256;
  float* dst = full ? C : &edge[0][0];
  int64_t ld = full ? ldc : kNR256;
  if (!full)
    for (int64_t i = 0; i < kMR256; ++i)
      for (int64_t j = 0; j < kNR256; ++j) edge[i][j] = first || i >= mr || j >= nr ? 0.0f : C[i * ldc + j];
  __m256 c[kMR256][2];
  LANES_UNROLL for (int i = 0; i < kMR256; ++i) {
    c[i][0] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(dst + i * ld);
    c[i][1] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(dst + i * ld + 8);
  }
  for (int64_t k = 0; k < kc; ++k) {
    __m256 b0 = _mm256_load_ps(B + k * kNR256), b1 = _mm256_load_ps(B + k * kNR256 + 8);
    const float* a = A + k * kMR256;
    LANES_UNROLL for (int i = 0; i < kMR256; ++i) {
      __m256 ai = _mm256_broadcast_ss(a + i);
      c[i][0] = _mm256_fmadd_ps(ai, b0, c[i][0]);
      c[i][1] = _mm256_fmadd_ps(ai, b1, c[i][1]);
    }
  }
  LANES_UNROLL for (int i = 0; i < kMR256; ++i) {
    _mm256_storeu_ps(dst + i * ld, c[i][0]);
    _mm256_storeu_ps(dst + i * ld + 8, c[i][1]);
  }
  if (!full)
    for (int64_t i = 0; i < mr; ++i)
      for (int64_t j = 0; j < nr; ++j) C[i * ldc + j] = edge[i][j];
}

// Rows of B ahead of use to prefetch: B streams from memory with a stride the hardware
// prefetchers follow late, and one row is only R FMAs per vector of work.
constexpr int64_t kStripPrefetch = 8;

// Prefetches the lines of `cols` columns from `row` (64-byte lines of 16 floats) into the cache
// level `kLocality` names (3: L1, as _MM_HINT_T0; 2: L2, as _MM_HINT_T1).
template <int kLocality>
__attribute__((always_inline)) inline void prefetch_row(const float* row, int64_t cols) {
  for (int64_t col = 0; col < cols; col += 16) __builtin_prefetch(row + col, 0, kLocality);
}

// Few-row products (a decode step's x @ W): C[0:R, 0:nc] = A_panel · B[:, 0:nc] with A packed
// as one k-major panel of exactly R rows and B read in place, row after row (packing B would
// cost more than the R uses of each value save), for one strip of up to 16 * NV columns, one
// FMA chain per element over all of k.
template <int R, int NV>
__attribute__((target("avx512f"))) void strip_avx512(int64_t K, const float* A, const float* B, int64_t ldb, float* C,
                                                     int64_t ldc, int64_t nc, const float* ahead) {
  __m512 acc[R][NV];
  __mmask16 mask[NV];
  LANES_UNROLL for (int v = 0; v < NV; ++v) {
    int64_t left = nc - 16 * v;
    mask[v] = left >= 16 ? __mmask16(0xFFFF) : left > 0 ? __mmask16((1u << left) - 1) : __mmask16(0);
    LANES_UNROLL for (int i = 0; i < R; ++i) acc[i][v] = _mm512_setzero_ps();
  }
  for (int64_t k = 0; k < K; ++k) {
    __m512 b[NV];
    prefetch_row<3>(B + (k + kStripPrefetch) * ldb, 16 * NV);
    if (ahead) prefetch_row<2>(ahead + (k + kStripPrefetch) * ldb, kStripCols);
    LANES_UNROLL for (int v = 0; v < NV; ++v) b[v] = _mm512_maskz_loadu_ps(mask[v], B + k * ldb + 16 * v);
    LANES_UNROLL for (int i = 0; i < R; ++i) {
      __m512 ai = _mm512_set1_ps(A[k * R + i]);
      LANES_UNROLL for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(ai, b[v], acc[i][v]);
    }
  }
  LANES_UNROLL for (int i = 0; i < R; ++i)
    LANES_UNROLL for (int v = 0; v < NV; ++v) _mm512_mask_storeu_ps(C + i * ldc + 16 * v, mask[v], acc[i][v]);
}

// A single row (a decode step's x @ W at one request): as many columns per pass as the
// registers hold, so that B streams row after row, each row nearly in memory order, which the
// hardware prefetchers follow (software prefetches made the decode's weights, streamed from
// L3, slower), and NV independent FMA chains hide the FMA latency.
template <int NV>
__attribute__((target("avx512f"))) void row_avx512(int64_t K, const float* A, const float* B, int64_t ldb, float* C,
                                                   int64_t nc) {
  __m512 acc[NV];
  __mmask16 mask[NV];
  LANES_UNROLL for (int v = 0; v < NV; ++v) {
    int64_t left = nc - 16 * v;
    mask[v] = left >= 16 ? __mmask16(0xFFFF) : left > 0 ? __mmask16((1u << left) - 1) : __mmask16(0);
    acc[v] = _mm512_setzero_ps();
  }
  for (int64_t k = 0; k < K; ++k) {
    __m512 a = _mm512_set1_ps(A[k]);
    LANES_UNROLL for (int v = 0; v < NV; ++v)
      acc[v] = _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(mask[v], B + k * ldb + 16 * v), acc[v]);
  }
  LANES_UNROLL for (int v = 0; v < NV; ++v) _mm512_mask_storeu_ps(C + 16 * v, mask[v], acc[v]);
}

// Per 128-bit lane: the low (or high) 64-bit halves of a and b.
__attribute__((target("avx512f"), always_inline)) inline __m512 unpacklo_pairs(__m512 a, __m512 b) {
  return _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
}
__attribute__((target("avx512f"), always_inline)) inline __m512 unpackhi_pairs(__m512 a, __m512 b) {
  return _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
}

// r[i] <- column i of the 16 x 16 matrix whose rows are r: 4 rounds of 16 shuffles.
__attribute__((target("avx512f"), always_inline)) inline void transpose_16x16(__m512 (&r)[16]) {
  __m512 t[16];
  LANES_UNROLL for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  // In each 128-bit lane l of r[4q + e]: rows 4q..4q+3 of column 4l + e.
  LANES_UNROLL for (int q = 0; q < 16; q += 4) {
    r[q] = unpacklo_pairs(t[q], t[q + 2]);
    r[q + 1] = unpackhi_pairs(t[q], t[q + 2]);
    r[q + 2] = unpacklo_pairs(t[q + 1], t[q + 3]);
    r[q + 3] = unpackhi_pairs(t[q + 1], t[q + 3]);
  }
  // Column 4l + e gathers lane l of r[e], r[4 + e], r[8 + e], r[12 + e].
  LANES_UNROLL for (int e = 0; e < 4; ++e) {
    __m512 u0 = _mm512_shuffle_f32x4(r[e], r[4 + e], 0x88), u1 = _mm512_shuffle_f32x4(r[e], r[4 + e], 0xdd);
    __m512 u2 = _mm512_shuffle_f32x4(r[8 + e], r[12 + e], 0x88), u3 = _mm512_shuffle_f32x4(r[8 + e], r[12 + e], 0xdd);
    t[e] = _mm512_shuffle_f32x4(u0, u2, 0x88);
    t[8 + e] = _mm512_shuffle_f32x4(u0, u2, 0xdd);
    t[4 + e] = _mm512_shuffle_f32x4(u1, u3, 0x88);
    t[12 + e] = _mm512_shuffle_f32x4(u1, u3, 0xdd);
  }
  LANES_UNROLL for (int i = 0; i < 16; ++i) r[i] = t[i];
}

// Few rows against a transposed B: 16 columns' next 16 values of k are loaded as 16 contiguous
// vectors and transposed in registers into 16 rows of B, then accumulated in k order as
// strip_avx512 does (packing B would cost more than the R uses of each value save).
template <int R>
__attribute__((target("avx512f"))) void transposed_strip_avx512(int64_t K, const float* A, const float* B, int64_t ldb,
                                                                float* C, int64_t ldc, int64_t nc) {
  __m512 acc[R];
  LANES_UNROLL for (int i = 0; i < R; ++i) acc[i] = _mm512_setzero_ps();
  for (int64_t k0 = 0; k0 < K; k0 += 16) {
    const int64_t kc = std::min<int64_t>(16, K - k0);
    const __mmask16 kmask = kc == 16 ? __mmask16(0xFFFF) : __mmask16((1u << kc) - 1);
    __m512 rows[16];
    LANES_UNROLL for (int j = 0; j < 16; ++j)
      rows[j] = j < nc ? _mm512_maskz_loadu_ps(kmask, B + j * ldb + k0) : _mm512_setzero_ps();
    transpose_16x16(rows);
    LANES_UNROLL for (int kk = 0; kk < 16; ++kk) {
      if (kk >= kc) break;
      LANES_UNROLL for (int i = 0; i < R; ++i) acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(A[(k0 + kk) * R + i]), rows[kk], acc[i]);
    }
  }
  const __mmask16 mask = nc >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << nc) - 1);
  LANES_UNROLL for (int i = 0; i < R; ++i) _mm512_mask_storeu_ps(C + i * ldc, mask, acc[i]);
}

// One pass over k for strip_avx2; masked loads and stores only for a strip cut short by the
// matrix edge (VMASKMOVPS is slow on AMD cores, its stores most).
template <int R, int NV, bool kMasked, bool kAhead>
__attribute__((target("avx2,fma"), always_inline)) inline void strip_avx2_pass(int64_t K, const float* A, const float* B,
                                                                              int64_t ldb, const float* ahead,
                                                                              const __m256i* mask, __m256 (&acc)[R][NV]) {
  for (int64_t k = 0; k < K; ++k) {
    __m256 b[NV];
    prefetch_row<3>(B + (k + kStripPrefetch) * ldb, 8 * NV);
    if (kAhead) prefetch_row<2>(ahead + (k + kStripPrefetch) * ldb, kStripCols);
    LANES_UNROLL for (int v = 0; v < NV; ++v)
      b[v] = kMasked ? _mm256_maskload_ps(B + k * ldb + 8 * v, mask[v]) : _mm256_loadu_ps(B + k * ldb + 8 * v);
    LANES_UNROLL for (int i = 0; i < R; ++i) {
      __m256 ai = _mm256_broadcast_ss(A + k * R + i);
      LANES_UNROLL for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_fmadd_ps(ai, b[v], acc[i][v]);
    }
  }
}

template <int R, int NV>
__attribute__((target("avx2,fma"))) void strip_avx2(int64_t K, const float* A, const float* B, int64_t ldb, float* C,
                                                    int64_t ldc, int64_t nc, const float* ahead) {
  __m256 acc[R][NV];
  __m256i mask[NV];
  LANES_UNROLL for (int v = 0; v < NV; ++v) {
    __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    mask[v] = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(std::clamp<int64_t>(nc - 8 * v, 0, 8))), lane);
    LANES_UNROLL for (int i = 0; i < R; ++i) acc[i][v] = _mm256_setzero_ps();
  }
  // Each variant is a loop of its own: with the prefetch of the next strip as a branch inside
  // one loop, the compiler kept an accumulator on the stack for 8 rows (3x slower at 16 x 16).
  if (nc >= 8 * NV) {
    if (ahead) strip_avx2_pass<R, NV, false, true>(K, A, B, ldb, ahead, mask, acc);
    else strip_avx2_pass<R, NV, false, false>(K, A, B, ldb, ahead, mask, acc);
    LANES_UNROLL for (int i = 0; i < R; ++i)
      LANES_UNROLL for (int v = 0; v < NV; ++v) _mm256_storeu_ps(C + i * ldc + 8 * v, acc[i][v]);
    return;
  }
  if (ahead) strip_avx2_pass<R, NV, true, true>(K, A, B, ldb, ahead, mask, acc);
  else strip_avx2_pass<R, NV, true, false>(K, A, B, ldb, ahead, mask, acc);
  LANES_UNROLL for (int i = 0; i < R; ++i)
    LANES_UNROLL for (int v = 0; v < NV; ++v) _mm256_maskstore_ps(C + i * ldc + 8 * v, mask[v], acc[i][v]);
}

// Strip widths: as many vectors per row as the registers hold (24 of 32 ZMM; of 16 YMM, at most
// 12 accumulators beside the B vectors and a broadcast, or 8 + a reloaded B vector for one
// row), each dividing kStripCols.
template <int R>
constexpr Strip avx512_strip() {
  constexpr int nv = R <= 6 ? 4 : 2;
  return {16 * nv, strip_avx512<R, nv>};
}
template <int R>
constexpr Strip avx2_strip() {
  constexpr int nv = R == 1 ? 8 : R == 2 ? 4 : R <= 6 ? 2 : 1;
  return {8 * nv, strip_avx2<R, nv>};
}
constexpr Path kAvx512{kMR512,
                       kNR512,
                       kernel_avx512,
                       {avx512_strip<1>(), avx512_strip<2>(), avx512_strip<3>(), avx512_strip<4>(), avx512_strip<5>(),
                        avx512_strip<6>(), avx512_strip<7>(), avx512_strip<8>(), avx512_strip<9>(), avx512_strip<10>(),
                        avx512_strip<11>(), avx512_strip<12>()},
                       {row_avx512<4>, row_avx512<8>, row_avx512<12>, row_avx512<16>, row_avx512<20>, row_avx512<24>},
                       {transposed_strip_avx512<1>, transposed_strip_avx512<2>, transposed_strip_avx512<3>,
                        transposed_strip_avx512<4>, transposed_strip_avx512<5>, transposed_strip_avx512<6>,
                        transposed_strip_avx512<7>, transposed_strip_avx512<8>, transposed_strip_avx512<9>,
                        transposed_strip_avx512<10>, transposed_strip_avx512<11>, transposed_strip_avx512<12>}};
constexpr Path kAvx2{kMR256,
                     kNR256,
                     kernel_avx2,
                     {avx2_strip<1>(), avx2_strip<2>(), avx2_strip<3>(), avx2_strip<4>(), avx2_strip<5>(), avx2_strip<6>(),
                      avx2_strip<7>(), avx2_strip<8>(), avx2_strip<9>(), avx2_strip<10>(), avx2_strip<11>(), avx2_strip<12>()},
                     {},
                     {}};
#endif

const Path* path_for(SimdLevel level) {
#if defined(__x86_64__)
  if (level == SimdLevel::Avx512) return &kAvx512;
  if (level == SimdLevel::Avx2) return &kAvx2;
#endif
  (void)level;
  return nullptr;
}

// Copies rows of exactly W contiguous values: a fixed-size copy the compiler turns into vector
// moves (a memcpy call per row costs more than the copy at these widths).
template <int64_t W>
void copy_rows(const float* src, int64_t step_k, int64_t kc, float* dst) {
  for (int64_t k = 0; k < kc; ++k) std::memcpy(dst + k * W, src + k * step_k, W * sizeof(float));
}

// Transposes columns [j, j + 4) of a k-contiguous source into k-major rows of width w, four k
// at a time through SSE registers (x86-64 baseline), instead of one scalar store per value.
void transpose_quad(const float* src, int64_t step_j, int64_t kc, int64_t w, float* dst) {
  int64_t k = 0;
#if defined(__x86_64__)
  for (; k + 4 <= kc; k += 4) {
    __m128 r0 = _mm_loadu_ps(src + k), r1 = _mm_loadu_ps(src + step_j + k);
    __m128 r2 = _mm_loadu_ps(src + 2 * step_j + k), r3 = _mm_loadu_ps(src + 3 * step_j + k);
    _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
    _mm_storeu_ps(dst + k * w, r0);
    _mm_storeu_ps(dst + (k + 1) * w, r1);
    _mm_storeu_ps(dst + (k + 2) * w, r2);
    _mm_storeu_ps(dst + (k + 3) * w, r3);
  }
#endif
  for (; k < kc; ++k)
    for (int64_t j = 0; j < 4; ++j) dst[k * w + j] = src[j * step_j + k];
}

// dst[k * w + j] = src[j * step_j + k * step_k] for k < kc, j < valid; zero for valid <= j < w.
void pack_panel(const float* src, int64_t step_j, int64_t step_k, int64_t valid, int64_t w, int64_t kc, float* dst) {
  if (step_j == 1 && valid == w && w == 32) {
    copy_rows<32>(src, step_k, kc, dst);
  } else if (step_j == 1 && valid == w && w == 16) {
    copy_rows<16>(src, step_k, kc, dst);
  } else if (step_j == 1) {
    for (int64_t k = 0; k < kc; ++k) std::memcpy(dst + k * w, src + k * step_k, static_cast<size_t>(valid) * sizeof(float));
  } else if (step_k == 1) {
    int64_t j = 0;
    for (; j + 4 <= valid; j += 4) transpose_quad(src + j * step_j, step_j, kc, w, dst + j);
    for (; j < valid; ++j) {
      const float* s = src + j * step_j;
      for (int64_t k = 0; k < kc; ++k) dst[k * w + j] = s[k];
    }
  } else {
    for (int64_t k = 0; k < kc; ++k)
      for (int64_t j = 0; j < valid; ++j) dst[k * w + j] = src[j * step_j + k * step_k];
  }
  if (valid < w)
    for (int64_t k = 0; k < kc; ++k) std::fill(dst + k * w + valid, dst + (k + 1) * w, 0.0f);
}

// The calling thread's pack buffer: grown on demand, never cleared (packing writes every value
// the microkernel reads), and released after a call that needed more than kRetainedScratchBytes.
class Scratch {
 public:
  ~Scratch() { std::free(data_); }
  float* reserve(size_t floats) {
    if (floats > capacity_) {
      std::free(data_);
      size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
      data_ = static_cast<float*>(std::aligned_alloc(64, bytes));
      capacity_ = data_ ? bytes / sizeof(float) : 0;
    }
    return data_;
  }
  void trim() {
    if (capacity_ * sizeof(float) <= kRetainedScratchBytes) return;
    std::free(data_);
    data_ = nullptr;
    capacity_ = 0;
  }

 private:
  float* data_ = nullptr;
  size_t capacity_ = 0;
};

thread_local Scratch t_scratch;

// Panels are packed by the first tile that needs them: a tile claims the panels it needs that
// nobody has claimed, packs them, then waits for the ones other tiles are packing. No pack phase
// and no barrier before the tiles start; packing spreads over the threads like the tiles do.
enum PanelState : uint32_t { kUnpacked, kPacking, kPacked };

// The calling thread's panel states, one per panel of a stage (grown on demand).
class PanelStates {
 public:
  std::atomic<uint32_t>* reset(size_t n) {
    if (n > capacity_) {
      states_ = std::make_unique<std::atomic<uint32_t>[]>(n);
      capacity_ = n;
    }
    for (size_t i = 0; i < n; ++i) states_[i].store(kUnpacked, std::memory_order_relaxed);
    return states_.get();
  }

 private:
  std::unique_ptr<std::atomic<uint32_t>[]> states_;
  size_t capacity_ = 0;
};

thread_local PanelStates t_panel_states;

// Makes panels [q0, q1) ready: packs those no other thread has claimed, then waits for the rest.
template <class Pack>
void ensure_packed(std::atomic<uint32_t>* states, int64_t q0, int64_t q1, const Pack& pack) {
  for (int64_t q = q0; q < q1; ++q) {
    uint32_t unpacked = kUnpacked;
    if (states[q].load(std::memory_order_relaxed) != kUnpacked ||
        !states[q].compare_exchange_strong(unpacked, kPacking, std::memory_order_acquire, std::memory_order_relaxed))
      continue;
    pack(q);
    states[q].store(kPacked, std::memory_order_release);
    states[q].notify_all();
  }
  for (int64_t q = q0; q < q1; ++q)
    for (uint32_t state; (state = states[q].load(std::memory_order_acquire)) != kPacked;) states[q].wait(state, std::memory_order_acquire);
}

// Pulls the next C tile towards L1 while the current one computes: the microkernel's first
// FMAs depend on it.
void prefetch_tile(const float* c, int64_t ldc, int64_t rows) {
#if defined(__x86_64__)
  for (int64_t i = 0; i < rows; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16), _MM_HINT_T0);
  }
#else
  (void)c, (void)ldc, (void)rows;
#endif
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// Part p of `count` items cut into `parts` near-equal runs.
int64_t part_begin(int64_t p, int64_t count, int64_t parts) { return p * count / parts; }

// How one product is cut up. K goes in steps of kKC; consecutive steps form a stage, as many
// as fit the pack budget, whose A and B panels are all packed before any tile of the stage
// runs. C is cut into row_tiles x col_tiles tiles of whole panels, near-equal in size.
struct Plan {
  int64_t mr, nr, a_panels, b_panels;
  int64_t steps_per_stage, a_slab, b_slab;  // floats per step's A and B panels
  int64_t row_tiles, col_tiles;
};

Plan make_plan(const Path& p, int64_t M, int64_t N, int64_t K) {
  Plan plan{};
  plan.mr = p.mr;
  plan.nr = p.nr;
  plan.a_panels = ceil_div(M, p.mr);
  plan.b_panels = ceil_div(N, p.nr);
  int64_t kc = std::min(kKC, K);
  plan.a_slab = round_up(plan.a_panels * p.mr * kc, 16);  // every slab starts 64-byte aligned
  plan.b_slab = round_up(plan.b_panels * p.nr * kc, 16);
  int64_t budget = static_cast<int64_t>(kPackBudgetBytes / sizeof(float));
  int64_t steps = ceil_div(K, kKC);
  int64_t stages = ceil_div(steps, std::clamp<int64_t>(budget / (plan.a_slab + plan.b_slab), 1, steps));
  plan.steps_per_stage = ceil_div(steps, stages);  // stages of equal length
  plan.col_tiles = ceil_div(plan.b_panels * p.nr, kMaxNC);
  // Enough row tiles for the threads to share, in a multiple of the thread count so equal
  // tiles end together, unless the tiles would get too small to be worth a thread.
  int64_t threads = pool_threads();
  int64_t stage_k = std::min(K, plan.steps_per_stage * kKC);
  int64_t worth = std::max<int64_t>(1, 2 * M * N * stage_k / kMinChunkFlops);
  int64_t wanted = std::min(worth, threads * 4);
  int64_t rows = std::max(ceil_div(M, kMaxMC), ceil_div(wanted, plan.col_tiles));
  while ((rows * plan.col_tiles) % threads != 0 && rows * plan.col_tiles < worth) ++rows;
  plan.row_tiles = std::clamp<int64_t>(rows, 1, plan.a_panels);
  return plan;
}

// Few rows and B's columns contiguous: A packed once, in near-equal groups of at most
// kFewRows rows; B streamed once, in strips of kStripCols columns split over the pool, each
// strip serving every group while it is in cache.
bool run_few_rows(const Path& p, MatrixView a, MatrixView b, float* c, int64_t M, int64_t N, int64_t K) {
  const int64_t groups = ceil_div(M, kFewRows);
  float* apack = t_scratch.reserve(static_cast<size_t>(M * K));
  if (!apack) return false;
  for (int64_t g = 0; g < groups; ++g) {
    int64_t i0 = part_begin(g, M, groups), rows = part_begin(g + 1, M, groups) - i0;
    pack_panel(a.data + i0 * a.row, a.row, a.col, rows, rows, K, apack + i0 * K);
  }
  const int64_t strips = ceil_div(N, kStripCols);
  const int64_t strip_bytes = kStripCols * K * int64_t(sizeof(float));
  parallel_for(strips, ceil_div(kMinChunkBytes, strip_bytes), [&](int64_t sb, int64_t se) {
    for (int64_t s = sb; s < se; ++s) {
      int64_t j0 = s * kStripCols, j1 = std::min(N, j0 + kStripCols);
      for (int64_t g = 0; g < groups; ++g) {
        int64_t i0 = part_begin(g, M, groups), rows = part_begin(g + 1, M, groups) - i0;
        const Strip& strip = p.few_rows[rows - 1];
        for (int64_t j = j0; j < j1; j += strip.width) {
          bool more_calls = groups > 1 || strip.width < j1 - j0;  // that will read this strip of B
          const float* ahead = more_calls && g == 0 && j == j0 ? b.data + j0 : nullptr;
          strip.kernel(K, apack + i0 * K, b.data + j, b.row, c + i0 * N + j, N, std::min(strip.width, j1 - j), ahead);
        }
      }
    }
  });
  t_scratch.trim();
  return true;
}

// The part of B a pool thread takes in a decode-sized product (one row, or few rows against a
// transposed B) at least: a decode step's weights stream from L3 at what one core's outstanding
// misses allow, so two cores read them nearly twice as fast. Smaller parts (a toy model's
// 16 KB k and v weights) stay whole: the hand-off to a pool thread costs about a microsecond,
// what streaming a few tens of KB costs (the bound is a round figure, not tuned).
constexpr int64_t kMinStreamPartBytes = int64_t(32) << 10;

// Parts of `units` (whole vectors or 16-column strips, of `unit_bytes` of B each) for the pool.
int64_t stream_parts(int64_t units, int64_t unit_bytes, int64_t min_units) {
  int64_t by_bytes = units * unit_bytes / kMinStreamPartBytes;
  return std::max<int64_t>(1, std::min({int64_t(pool_threads()), units / min_units, by_bytes}));
}

// One row and B's columns contiguous: the vectors of columns in near-equal parts over the pool,
// each part in near-equal strips as wide as p.row allows (B streamed once, in order).
bool run_one_row(const Path& p, MatrixView a, MatrixView b, float* c, int64_t N, int64_t K) {
  const float* arow = a.data;
  if (a.col != 1) {
    float* packed = t_scratch.reserve(static_cast<size_t>(K));
    if (!packed) return false;
    pack_panel(a.data, a.row, a.col, 1, 1, K, packed);
    arow = packed;
  }
  const int64_t vectors = ceil_div(N, 16);
  const int64_t parts = stream_parts(vectors, 16 * K * int64_t(sizeof(float)), 4);
  parallel_for(parts, 1, [&](int64_t pb, int64_t pe) {
    for (int64_t part = pb; part < pe; ++part) {
      const int64_t pv0 = part_begin(part, vectors, parts), pv = part_begin(part + 1, vectors, parts) - pv0;
      const int64_t strips = ceil_div(pv, kRowVectors);
      for (int64_t s = 0; s < strips; ++s) {
        int64_t v0 = pv0 + part_begin(s, pv, strips), v1 = pv0 + part_begin(s + 1, pv, strips);
        int64_t j0 = v0 * 16, nc = std::min(N, v1 * 16) - j0;
        p.row[ceil_div(v1 - v0, 4) - 1](K, arow, b.data + j0, b.row, c + j0, nc);
      }
    }
  });
  t_scratch.trim();
  return true;
}

// Few rows (one group of at most kFewRows) and B's columns contiguous in k: strips of 16
// columns through the transposing kernel, in near-equal parts over the pool.
bool run_few_rows_transposed(const Path& p, MatrixView a, MatrixView b, float* c, int64_t M, int64_t N, int64_t K) {
  float* apack = t_scratch.reserve(static_cast<size_t>(M * K));
  if (!apack) return false;
  pack_panel(a.data, a.row, a.col, M, M, K, apack);
  const int64_t strips = ceil_div(N, 16);
  const int64_t parts = stream_parts(strips, 16 * K * int64_t(sizeof(float)), 1);
  parallel_for(parts, 1, [&](int64_t pb, int64_t pe) {
    for (int64_t s = part_begin(pb, strips, parts); s < part_begin(pe, strips, parts); ++s)
      p.transposed[M - 1](K, apack, b.data + s * 16 * b.col, b.col, c + s * 16, N, std::min<int64_t>(16, N - s * 16));
  });
  t_scratch.trim();
  return true;
}

bool run(const Path& p, MatrixView a, MatrixView b, float* c, int64_t M, int64_t N, int64_t K) {
  if (M == 0 || N == 0) return true;
  if (K == 0) {
    std::fill(c, c + M * N, 0.0f);
    return true;
  }
  if (M == 1 && b.col == 1 && p.row[0]) return run_one_row(p, a, b, c, N, K);
  if (M <= kFewRows && b.row == 1 && N > 1 && p.transposed[0]) return run_few_rows_transposed(p, a, b, c, M, N, K);
  if (M <= kFewRowsDirect && b.col == 1) return run_few_rows(p, a, b, c, M, N, K);
  const Plan plan = make_plan(p, M, N, K);
  const int64_t mr = plan.mr, nr = plan.nr;
  float* scratch = t_scratch.reserve(static_cast<size_t>(plan.steps_per_stage * (plan.a_slab + plan.b_slab)));
  if (!scratch) return false;
  float* apack = scratch;
  float* bpack = scratch + plan.steps_per_stage * plan.a_slab;
  const int64_t tiles = plan.row_tiles * plan.col_tiles;
  for (int64_t stage_k0 = 0; stage_k0 < K; stage_k0 += plan.steps_per_stage * kKC) {
    const int64_t steps = std::min(plan.steps_per_stage, ceil_div(K - stage_k0, kKC));
    const int64_t stage_kc = std::min(K - stage_k0, steps * kKC);
    auto step_kc = [&](int64_t s) { return std::min(kKC, K - stage_k0 - s * kKC); };
    std::atomic<uint32_t>* a_states = t_panel_states.reset(static_cast<size_t>(steps * (plan.a_panels + plan.b_panels)));
    std::atomic<uint32_t>* b_states = a_states + steps * plan.a_panels;
    // A tile runs every step of the stage, so its C block is revisited while still cached;
    // consecutive tiles share a column block, so a thread's run of tiles reuses B.
    const int64_t tile_flops = 2 * ceil_div(M, plan.row_tiles) * ceil_div(N, plan.col_tiles) * stage_kc;
    parallel_for(tiles, ceil_div(kMinChunkFlops, tile_flops), [&](int64_t tb, int64_t te) {
      for (int64_t tile = tb; tile < te; ++tile) {
        int64_t rt = tile % plan.row_tiles, ct = tile / plan.row_tiles;
        int64_t a0 = part_begin(rt, plan.a_panels, plan.row_tiles), a1 = part_begin(rt + 1, plan.a_panels, plan.row_tiles);
        int64_t b0 = part_begin(ct, plan.b_panels, plan.col_tiles), b1 = part_begin(ct + 1, plan.b_panels, plan.col_tiles);
        int64_t i0 = a0 * mr, i1 = std::min(M, a1 * mr), j0 = b0 * nr, j1 = std::min(N, b1 * nr);
        for (int64_t s = 0; s < steps; ++s) {
          const int64_t k0 = stage_k0 + s * kKC, kc = step_kc(s);
          const bool first = k0 == 0;
          float* as = apack + s * plan.a_slab;
          float* bs = bpack + s * plan.b_slab;
          ensure_packed(b_states + s * plan.b_panels, b0, b1, [&](int64_t q) {
            pack_panel(b.data + k0 * b.row + q * nr * b.col, b.col, b.row, std::min(nr, N - q * nr), nr, kc, bs + q * nr * kc);
          });
          ensure_packed(a_states + s * plan.a_panels, a0, a1, [&](int64_t q) {
            pack_panel(a.data + q * mr * a.row + k0 * a.col, a.row, a.col, std::min(mr, M - q * mr), mr, kc, as + q * mr * kc);
          });
          for (int64_t i = i0; i < i1; i += mr) {
            for (int64_t j = j0; j < j1; j += nr) {
              if (j + nr < j1) prefetch_tile(c + i * N + j + nr, N, std::min(mr, M - i));
              p.kernel(kc, as + i * kc, bs + j * kc, c + i * N + j, N, first, std::min(mr, M - i), std::min(nr, N - j));
            }
          }
        }
      }
    });
  }
  t_scratch.trim();
  return true;
}

}  // namespace

bool sgemm_packed_with(SimdLevel level, MatrixView a, MatrixView b, float* c, int64_t M, int64_t N, int64_t K) {
  const Path* p = path_for(level);
  return p && run(*p, a, b, c, M, N, K);
}

bool sgemm_packed(MatrixView a, MatrixView b, float* c, int64_t M, int64_t N, int64_t K) {
  return sgemm_packed_with(simd_level(), a, b, c, M, N, K);
}

}  // namespace lanes::cpu
