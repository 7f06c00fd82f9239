#include "quant.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "compute_pool.hpp"
#include "cpu_features.hpp"
#include "../ffi/src/dtype.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace lanes::cpu {
namespace {

constexpr int64_t kBlock = 32;

constexpr int64_t bytes_of(BlockType t) { return t == BlockType::Q4_0 ? 18 : t == BlockType::Q4_1 ? 20 : 34; }

// ---- the canonical computation -------------------------------------------------------------
//
// llama.cpp's CPU matmul for these block types, so that a model gives the reference engine's
// answers to the bit. An activation row is quantized per block of 32 as ggml's
// quantize_row_q8_0 / q8_1 does: d = max|x| / 127 and q = round-half-even(x * (127 / max|x|)),
// with d and (Q4_1) s = d * Σq kept at float16 precision. w is a block's weights in natural
// order (Q4_0: nibble - 8, Q4_1: nibble, Q8_0: the signed byte), dd_b = dw_b * dx_b rounded,
// and the blocks b are taken in order. llama.cpp sums in one of two ways, by CPU:
//   block (its AMX / AVX-512 VNNI kernels on repacked weights, on CPUs with AMX): one
//   accumulator c = +0 per output;
//     c = fma(float(Σ_e w[e] q[e]), dd_b, c), then for Q4_1 c = fma(m_b, s_b, c).
//   lane (ggml_vec_dot on every other x86 CPU): 8 accumulators, lane l summing elements 4l..4l+3;
//     acc_l = fma(float(Σ_{e=4l}^{4l+3} w[e] q[e]), dd_b, acc_l); Q4_1: mins = fma(m_b, s_b, mins);
//     the result is ((acc_0 + acc_4) + (acc_2 + acc_6)) + ((acc_1 + acc_5) + (acc_3 + acc_7)),
//     plus mins for Q4_1.
// The integer dots are exact on every path, so the scalar, AVX2 and AVX-512 paths and every
// split of the columns round identically for either order.

enum class SumOrder { Block, Lane };

// One quantized activation block.
struct alignas(32) ActBlock {
  int8_t q[32];
  int32_t lane_bias[8];  // Q4_0: -8 and (AVX-512) Q8_0: -128 times each lane's Σq, undoing unsigned weight bytes
  float d;
  float s;       // Q4_1: d * Σq
  int32_t bias;  // the sum of lane_bias
};

// 16 activation rows' quantized blocks at one block index, laid out for AMX: A operand bytes
// contiguous, then the rows' scales.
struct alignas(64) TileBlock {
  int8_t q[16 * 32];
  float d[16];
  float s[16];
};

// ggml keeps activation scales as float16; so do we where float16 has a normal number for the
// value, and keep the float32 value where float16 would flush or overflow it.
float at_half_precision(float v) {
  uint16_t h = to_f16(v).bits;
  uint32_t exponent = (h >> 10) & 0x1f;
  return exponent >= 1 && exponent <= 30 ? to_float(f16{h}) : v;
}

float inverse_scale(float amax) { return amax != 0.f ? 127.f / amax : 0.f; }

// A block's d and s (d * Σq) from its max |x| and byte sum; NaN for a block holding a NaN or
// infinity. Half rounds to float16 precision as at_half_precision does (a faster equal may
// stand in for it).
template <float (*Half)(float)>
inline void block_scales(float amax, int32_t qsum, bool finite, float& d, float& s) {
  if (!finite) {
    d = s = std::numeric_limits<float>::quiet_NaN();
    return;
  }
  float scale = amax / 127.f;
  d = Half(scale);
  s = Half(scale * float(qsum));
}

// Fills d, s and the biases of a block whose q bytes are in place, given its lanes' byte sums
// (lane l: bytes 4l..4l+3).
template <float (*Half)(float)>
inline void finish_block(BlockType t, ActBlock& a, const int32_t (&lanes)[8], float amax, bool finite) {
  int32_t qsum = 0, factor = t == BlockType::Q4_0 ? -8 : t == BlockType::Q8_0 ? -128 : 0;
  for (int l = 0; l < 8; ++l) {
    qsum += lanes[l];
    a.lane_bias[l] = factor * lanes[l];
  }
  a.bias = factor * qsum;
  block_scales<Half>(amax, qsum, finite, a.d, a.s);
}

void quantize_row_scalar(BlockType t, const float* x, int64_t nb, ActBlock* out) {
  for (int64_t b = 0; b < nb; ++b) {
    const float* xb = x + b * kBlock;
    float amax = 0.f;
    bool finite = true;
    for (int e = 0; e < 32; ++e) {
      finite = finite && std::isfinite(xb[e]);
      amax = std::max(amax, std::fabs(xb[e]));
    }
    float id = inverse_scale(amax);
    for (int e = 0; e < 32; ++e) out[b].q[e] = finite ? static_cast<int8_t>(std::nearbyint(xb[e] * id)) : 0;  // half to even
    int32_t lanes[8] = {};
    for (int e = 0; e < 32; ++e) lanes[e / 4] += out[b].q[e];
    finish_block<at_half_precision>(t, out[b], lanes, amax, finite);
  }
}

float half_at(const uint8_t* p) { return to_float(f16{uint16_t(p[0] | (p[1] << 8))}); }

// A block's true weights in natural order.
void unpack_weights(BlockType t, const uint8_t* blk, int32_t (&w)[32]) {
  if (t == BlockType::Q8_0) {
    for (int e = 0; e < 32; ++e) w[e] = static_cast<int8_t>(blk[2 + e]);
    return;
  }
  const uint8_t* qs = blk + (t == BlockType::Q4_0 ? 2 : 4);
  int offset = t == BlockType::Q4_0 ? 8 : 0;
  for (int e = 0; e < 16; ++e) w[e] = (qs[e] & 0x0f) - offset, w[e + 16] = (qs[e] >> 4) - offset;
}

// The block order's step for one block, given its integer dot.
inline float accumulate_block(BlockType t, float c, int32_t dot, const uint8_t* blk, const ActBlock& a) {
  c = std::fma(float(dot), half_at(blk) * a.d, c);
  return t == BlockType::Q4_1 ? std::fma(half_at(blk + 2), a.s, c) : c;
}

float lane_tree_sum(const float (&acc)[8]) {
  float t0 = acc[0] + acc[4], t1 = acc[1] + acc[5], t2 = acc[2] + acc[6], t3 = acc[3] + acc[7];
  return (t0 + t2) + (t1 + t3);
}

float output_scalar(BlockType t, SumOrder order, const ActBlock* a, const uint8_t* row, int64_t nb) {
  float c = 0.f, acc[8] = {}, mins = 0.f;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + b * bytes_of(t);
    int32_t w[32];
    unpack_weights(t, blk, w);
    int32_t lane[8] = {};
    for (int e = 0; e < 32; ++e) lane[e / 4] += w[e] * a[b].q[e];
    if (order == SumOrder::Block) {
      int32_t dot = 0;
      for (int32_t v : lane) dot += v;
      c = accumulate_block(t, c, dot, blk, a[b]);
      continue;
    }
    float dd = half_at(blk) * a[b].d;
    for (int l = 0; l < 8; ++l) acc[l] = std::fma(float(lane[l]), dd, acc[l]);
    if (t == BlockType::Q4_1) mins = std::fma(half_at(blk + 2), a[b].s, mins);
  }
  if (order == SumOrder::Block) return c;
  float r = lane_tree_sum(acc);
  return t == BlockType::Q4_1 ? r + mins : r;
}

void columns_scalar(BlockType t, SumOrder order, const ActBlock* act, int64_t m, const uint8_t* w, int64_t nb, int64_t n,
                    int64_t j0, int64_t j1, float* y) {
  int64_t row_bytes = nb * bytes_of(t);
  for (int64_t j = j0; j < j1; ++j)
    for (int64_t i = 0; i < m; ++i) y[i * n + j] = output_scalar(t, order, act + i * nb, w + j * row_bytes, nb);
}

#if defined(__x86_64__)
#define LANES_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define LANES_TARGET_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#define LANES_UNROLL _Pragma("GCC unroll 8")
#define LANES_ALWAYS_INLINE inline __attribute__((always_inline))

// ---- AVX2 activation quantization (used by the AVX2 and AVX-512 paths) --------------------

// at_half_precision with F16C, which rounds to nearest even as to_f16 does.
LANES_TARGET_AVX2 inline float at_half_precision_f16c(float v) {
  uint16_t h = uint16_t(_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(v), _MM_FROUND_TO_NEAREST_INT), 0));
  uint32_t exponent = (h >> 10) & 0x1f;
  return exponent >= 1 && exponent <= 30 ? _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h))) : v;
}

// finish_block for the block's bytes q in a register: its lanes' sums in SIMD.
LANES_TARGET_AVX2 inline void finish_block_avx2(BlockType t, ActBlock& a, __m256i q, float amax, bool finite) {
  __m256i pairs = _mm256_maddubs_epi16(_mm256_set1_epi8(1), q);
  alignas(32) int32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
  finish_block<at_half_precision_f16c>(t, a, lanes, amax, finite);
}

LANES_TARGET_AVX2 void quantize_row_avx2(BlockType t, const float* x, int64_t nb, ActBlock* out) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 largest = _mm256_set1_ps(std::numeric_limits<float>::max());
  for (int64_t b = 0; b < nb; ++b) {
    const float* xb = x + b * kBlock;
    __m256 v[4], vmax = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
    for (int i = 0; i < 4; ++i) {
      v[i] = _mm256_loadu_ps(xb + 8 * i);
      __m256 a = _mm256_and_ps(v[i], abs_mask);
      bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, largest, _CMP_NLE_UQ));  // NaN or inf
      vmax = _mm256_max_ps(vmax, a);
    }
    bool finite = _mm256_testz_ps(bad, bad);
    __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(vmax, 1), _mm256_castps256_ps128(vmax));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    float amax = _mm_cvtss_f32(m4);
    __m256i q = _mm256_setzero_si256();
    if (finite) {
      __m256 id = _mm256_set1_ps(inverse_scale(amax));
      __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v[0], id));  // round half to even (MXCSR default)
      __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v[1], id));
      __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v[2], id));
      __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v[3], id));
      __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
      q = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    }
    _mm256_store_si256(reinterpret_cast<__m256i*>(out[b].q), q);
    finish_block_avx2(t, out[b], q, amax, finite);
  }
}

LANES_TARGET_AVX2 inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
LANES_TARGET_AVX2 inline __m128i load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }

// Weights stream from memory once per call: the hardware prefetcher alone leaves the kernel
// waiting on DRAM for about half of its time (measured with quant_bench's cold case), so each
// row asks for the bytes 2 KiB ahead of where it is read.
constexpr int64_t kPrefetchAhead = 2048;

LANES_TARGET_AVX2 inline void prefetch_ahead(const uint8_t* p) {
  _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetchAhead), _MM_HINT_T0);
}

// The 32 weight bytes of a block in natural order: Q4 nibbles, Q8_0 signed bytes.
template <BlockType T>
LANES_TARGET_AVX2 inline __m256i weight_bytes_avx2(const uint8_t* blk) {
  if constexpr (T == BlockType::Q8_0) return load256(blk + 2);
  __m128i raw = load128(blk + (T == BlockType::Q4_0 ? 2 : 4));
  __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(raw), _mm_srli_epi16(raw, 4), 1);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
}

// The 8 lane dots of one block (lane l: elements 4l..4l+3) as int32, Q4_0's -8 applied.
template <BlockType T>
LANES_TARGET_AVX2 inline __m256i lane_dots_avx2(__m256i wv, const ActBlock& a) {
  const __m256i ones16 = _mm256_set1_epi16(1);
  __m256i q = _mm256_load_si256(reinterpret_cast<const __m256i*>(a.q));
  // maddubs multiplies unsigned by signed bytes: Q8_0 moves each weight's sign onto its
  // activation (|w| <= 128, so a pair of products stays within int16).
  if constexpr (T == BlockType::Q8_0)
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(q, wv)), ones16);
  __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(wv, q), ones16);  // at most 2 * 15 * 127 per int16
  if constexpr (T == BlockType::Q4_0) s = _mm256_add_epi32(s, _mm256_load_si256(reinterpret_cast<const __m256i*>(a.lane_bias)));
  return s;
}

LANES_TARGET_AVX2 inline int32_t hsum_epi32_avx2(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
  return _mm_cvtsi128_si32(s);
}

LANES_TARGET_AVX2 inline float lane_tree_sum_avx2(__m256 acc) {
  __m128 t = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  __m128 u = _mm_add_ps(t, _mm_movehl_ps(t, t));
  return _mm_cvtss_f32(_mm_add_ss(u, _mm_movehdup_ps(u)));
}

// ---- AVX2 kernel: R activation rows x C weight columns at a time ---------------------------

template <BlockType T, SumOrder O, int R, int C>
LANES_TARGET_AVX2 void columns_avx2(const ActBlock* act, const uint8_t* w, int64_t row_bytes, int64_t nb, float* y,
                                    int64_t n, int64_t cols) {
  for (int64_t j = 0; j + C <= cols; j += C, w += C * row_bytes, y += C) {
    float c[R][C] = {}, mins[R][C] = {};
    __m256 acc[R][C];
    LANES_UNROLL for (int r = 0; r < R; ++r) LANES_UNROLL for (int k = 0; k < C; ++k) acc[r][k] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      LANES_UNROLL for (int k = 0; k < C; ++k) {
        const uint8_t* blk = w + k * row_bytes + b * bytes_of(T);
        prefetch_ahead(blk);
        __m256i wv = weight_bytes_avx2<T>(blk);
        float dw = half_at(blk);
        LANES_UNROLL for (int r = 0; r < R; ++r) {
          const ActBlock& a = act[r * nb + b];
          __m256i lanes = lane_dots_avx2<T>(wv, a);
          if constexpr (O == SumOrder::Block) {
            c[r][k] = accumulate_block(T, c[r][k], hsum_epi32_avx2(lanes), blk, a);
          } else {
            acc[r][k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes), _mm256_set1_ps(dw * a.d), acc[r][k]);
            if constexpr (T == BlockType::Q4_1) mins[r][k] = std::fma(half_at(blk + 2), a.s, mins[r][k]);
          }
        }
      }
    }
    LANES_UNROLL for (int r = 0; r < R; ++r) LANES_UNROLL for (int k = 0; k < C; ++k) {
      if constexpr (O == SumOrder::Block) y[r * n + k] = c[r][k];
      else y[r * n + k] = T == BlockType::Q4_1 ? lane_tree_sum_avx2(acc[r][k]) + mins[r][k] : lane_tree_sum_avx2(acc[r][k]);
    }
  }
}

// ---- AVX-512 VNNI kernels -------------------------------------------------------------------
//
// A register holds one block of two columns, 8 int32 lanes each; vpdpbusd needs unsigned weight
// bytes (Q4 nibbles as they are, Q8_0 plus 128, taken back out through the activation's bias).

template <BlockType T>
LANES_TARGET_AVX512 inline __m512i weight_pair_avx512(const uint8_t* b0, const uint8_t* b1) {
  if constexpr (T == BlockType::Q8_0) {
    __m512i raw = _mm512_inserti64x4(_mm512_castsi256_si512(load256(b0 + 2)), load256(b1 + 2), 1);
    return _mm512_xor_si512(raw, _mm512_set1_epi8(char(0x80)));
  } else {
    constexpr int qs = T == BlockType::Q4_0 ? 2 : 4;
    __m512i raw = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_broadcastsi128_si256(load128(b0 + qs))),
                                     _mm256_broadcastsi128_si256(load128(b1 + qs)), 1);
    // 128-bit quarters 1 and 3 take the high nibbles (elements 16..31 of each block).
    __m512i mixed = _mm512_mask_blend_epi64(0xCC, raw, _mm512_srli_epi16(raw, 4));
    return _mm512_and_si512(mixed, _mm512_set1_epi8(0x0f));
  }
}

// The lane dots of a column pair against one activation block, biases included where the
// weight bytes were offset (Q4_1's are not).
template <BlockType T>
LANES_TARGET_AVX512 inline __m512i pair_dots(__m512i wv, __m512i q, const ActBlock& a) {
  __m512i start = T == BlockType::Q4_1 ? _mm512_setzero_si512()
                                       : _mm512_broadcast_i64x4(_mm256_load_si256(reinterpret_cast<const __m256i*>(a.lane_bias)));
  return _mm512_dpbusd_epi32(start, wv, q);
}

LANES_TARGET_AVX512 inline __m512i broadcast_q(const ActBlock& a) {
  return _mm512_broadcast_i64x4(_mm256_load_si256(reinterpret_cast<const __m256i*>(a.q)));
}

LANES_TARGET_AVX512 inline __m256 upper_half(__m512 v) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)); }

// Lane order: R rows x 2P columns, each register's two 8-lane halves are two columns' acc.
template <BlockType T, int R, int P>
LANES_TARGET_AVX512 void lane_columns_avx512(const ActBlock* act, const uint8_t* w, int64_t row_bytes, int64_t nb, float* y,
                                             int64_t n, int64_t cols) {
  constexpr int C = 2 * P;
  for (int64_t j = 0; j + C <= cols; j += C, w += C * row_bytes, y += C) {
    __m512 acc[R][P];
    float mins[R][C] = {};
    LANES_UNROLL for (int r = 0; r < R; ++r) LANES_UNROLL for (int p = 0; p < P; ++p) acc[r][p] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      __m512i wv[P];
      __m512 dw[P];
      float mw[C];
      LANES_UNROLL for (int p = 0; p < P; ++p) {
        const uint8_t* b0 = w + 2 * p * row_bytes + b * bytes_of(T);
        const uint8_t* b1 = b0 + row_bytes;
        prefetch_ahead(b0), prefetch_ahead(b1);
        wv[p] = weight_pair_avx512<T>(b0, b1);
        dw[p] = _mm512_insertf32x8(_mm512_set1_ps(half_at(b0)), _mm256_set1_ps(half_at(b1)), 1);
        if constexpr (T == BlockType::Q4_1) mw[2 * p] = half_at(b0 + 2), mw[2 * p + 1] = half_at(b1 + 2);
      }
      LANES_UNROLL for (int r = 0; r < R; ++r) {
        const ActBlock& a = act[r * nb + b];
        __m512i q = broadcast_q(a);
        __m512 dx = _mm512_set1_ps(a.d);
        LANES_UNROLL for (int p = 0; p < P; ++p)
          acc[r][p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pair_dots<T>(wv[p], q, a)), _mm512_mul_ps(dw[p], dx), acc[r][p]);
        if constexpr (T == BlockType::Q4_1) LANES_UNROLL for (int k = 0; k < C; ++k) mins[r][k] = std::fma(mw[k], a.s, mins[r][k]);
      }
    }
    LANES_UNROLL for (int r = 0; r < R; ++r) LANES_UNROLL for (int p = 0; p < P; ++p) {
      float lo = lane_tree_sum_avx2(_mm512_castps512_ps256(acc[r][p])), hi = lane_tree_sum_avx2(upper_half(acc[r][p]));
      y[r * n + 2 * p] = T == BlockType::Q4_1 ? lo + mins[r][2 * p] : lo;
      y[r * n + 2 * p + 1] = T == BlockType::Q4_1 ? hi + mins[r][2 * p + 1] : hi;
    }
  }
}

// Block order: R rows x 16 columns, one column per float lane. Register p holds columns (p, p + 4)
// for p < 4 and (p + 4, p + 8) for p >= 4, so the transpose-and-add tree of column_dots leaves
// the 16 block dots in column order.
constexpr int pair_low(int p) { return p < 4 ? p : p + 4; }

LANES_TARGET_AVX512 inline __m512i column_dots(const __m512i (&v)[8]) {
  __m512i u[4], w[2];
  for (int i = 0; i < 4; ++i)
    u[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]));
  for (int i = 0; i < 2; ++i)
    w[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(u[2 * i], u[2 * i + 1]), _mm512_unpackhi_epi64(u[2 * i], u[2 * i + 1]));
  return _mm512_add_epi32(_mm512_shuffle_i64x2(w[0], w[1], 0x88), _mm512_shuffle_i64x2(w[0], w[1], 0xDD));
}

// The float16 scales (and Q4_1 mins) of block b of 16 rows `row_bytes` apart.
template <BlockType T>
LANES_TARGET_AVX512 inline void column_scales(const uint8_t* blk, int64_t row_bytes, __m512& d, __m512& m) {
  const __m512i offsets = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                             _mm512_set1_epi32(int32_t(row_bytes)));
  __m512i dm = _mm512_i32gather_epi32(offsets, blk, 1);  // d in the low half of each dword, m in the high
  d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm));
  if constexpr (T == BlockType::Q4_1) m = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dm, 16)));
}

template <BlockType T, int R>
LANES_TARGET_AVX512 void block_columns_avx512(const ActBlock* act, const uint8_t* w, int64_t row_bytes, int64_t nb, float* y,
                                              int64_t n, int64_t cols) {
  for (int64_t j = 0; j + 16 <= cols; j += 16, w += 16 * row_bytes, y += 16) {
    __m512 c[R];
    LANES_UNROLL for (int r = 0; r < R; ++r) c[r] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = w + b * bytes_of(T);
      __m512i wv[8];
      LANES_UNROLL for (int p = 0; p < 8; ++p) {
        const uint8_t* b0 = blk + pair_low(p) * row_bytes;
        const uint8_t* b1 = b0 + 4 * row_bytes;
        if ((b & 1) == 0) prefetch_ahead(b0), prefetch_ahead(b1);
        wv[p] = weight_pair_avx512<T>(b0, b1);
      }
      __m512 dw, mw;
      column_scales<T>(blk, row_bytes, dw, mw);
      LANES_UNROLL for (int r = 0; r < R; ++r) {
        const ActBlock& a = act[r * nb + b];
        __m512i q = broadcast_q(a);
        __m512i v[8];
        LANES_UNROLL for (int p = 0; p < 8; ++p) v[p] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv[p], q);
        __m512i dots = _mm512_add_epi32(column_dots(v), _mm512_set1_epi32(a.bias));
        c[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dots), _mm512_mul_ps(dw, _mm512_set1_ps(a.d)), c[r]);
        if constexpr (T == BlockType::Q4_1) c[r] = _mm512_fmadd_ps(mw, _mm512_set1_ps(a.s), c[r]);
      }
    }
    LANES_UNROLL for (int r = 0; r < R; ++r) _mm512_storeu_ps(y + r * n, c[r]);
  }
}

// ---- AMX kernel: block order, 16 rows x 16 columns per tile multiply ----------------------
//
// Per block, the 16 columns' weights are laid out as AMX's B operand (row k holds bytes
// 4k..4k+3 of every column) and tdpbssd gives the exact block dots of 16 activation rows at
// once; the float accumulation is then the same as block_columns_avx512's. A column group's
// B operands are laid out once per call (a panel) and serve every row tile, whose 16 output
// rows stay in registers across the blocks (amx_tile). The activations come laid out as A
// operands (TileBlock), 16 rows per tile, zero rows past m.
#define LANES_TARGET_AMX \
  __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,amx-tile,amx-int8")))

struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// A block's 32 weights as signed bytes in natural order.
template <BlockType T>
LANES_TARGET_AVX2 inline __m256i signed_weights(const uint8_t* blk) {
  __m256i v = weight_bytes_avx2<T>(blk);
  return T == BlockType::Q4_0 ? _mm256_sub_epi8(v, _mm256_set1_epi8(8)) : v;
}

// One block of 16 columns as tdpbssd's B operand, with the columns' scales.
struct alignas(64) PanelBlock {
  int8_t b[8 * 64];
  float d[16];
  float m[16];  // Q4_1 only
};

// The 16 x 8 dword transpose of pack_panel, in three rounds of two-register permutes: dword
// (c, k) is bytes 4k..4k+3 of column c, and register p starts with columns 2p and 2p + 1.
// Round 0 gathers 4 columns' dwords 0-3 or 4-7, round 1 8 columns' dwords 2j and 2j + 1, and
// round 2 one dword of all 16 columns. Output o of a round reads the registers first_input and
// first_input + input_gap; the lanes' index vectors are worked out once by following where
// every (c, k) goes.
constexpr int first_input(int round, int o) { return round == 0 ? o / 2 * 2 : round == 1 ? (o / 2) % 2 + o / 4 * 4 : o / 2; }
constexpr int input_gap(int round) { return round == 0 ? 1 : round == 1 ? 2 : 4; }

struct alignas(64) PanelTranspose {
  int32_t index[3][8][16];  // [round][output register][lane]

  PanelTranspose() {
    int in[8][16], out[8][16];  // c * 8 + k in each lane
    for (int p = 0; p < 8; ++p)
      for (int i = 0; i < 16; ++i) in[p][i] = (2 * p + i / 8) * 8 + i % 8;
    for (int round = 0; round < 3; ++round) {
      for (int o = 0; o < 8; ++o)
        for (int i = 0; i < 16; ++i) {
          int w = round == 0 ? (4 * (o / 2) + i % 4) * 8 + 4 * (o % 2) + i / 4
                  : round == 1 ? (8 * (o / 4) + i % 8) * 8 + 2 * (o % 4) + i / 8
                               : i * 8 + o;
          const int a = first_input(round, o), b = a + input_gap(round);
          index[round][o][i] = -1;
          for (int j = 0; j < 16; ++j) {
            if (in[a][j] == w) index[round][o][i] = j;
            if (in[b][j] == w) index[round][o][i] = 16 + j;
          }
          out[o][i] = w;
        }
      std::memcpy(in, out, sizeof(in));
    }
  }
};
const PanelTranspose g_panel_transpose;

// A block's 16 columns as tdpbssd's B operand (row k holds bytes 4k..4k+3 of every column).
LANES_TARGET_AMX LANES_ALWAYS_INLINE void transpose_panel(__m512i (&v)[8], int8_t* b) {
  __m512i next[8];
  _Pragma("GCC unroll 3") for (int round = 0; round < 3; ++round) {
    _Pragma("GCC unroll 8") for (int o = 0; o < 8; ++o) {
      const int a = first_input(round, o);
      next[o] = _mm512_permutex2var_epi32(v[a], _mm512_load_si512(g_panel_transpose.index[round][o]), v[a + input_gap(round)]);
    }
    _Pragma("GCC unroll 8") for (int o = 0; o < 8; ++o) v[o] = next[o];
  }
  _Pragma("GCC unroll 8") for (int k = 0; k < 8; ++k) _mm512_store_si512(b + 64 * k, v[k]);
}

template <BlockType T>
LANES_TARGET_AMX void pack_panel(const uint8_t* w, int64_t row_bytes, int64_t nb, PanelBlock* panel) {
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = w + b * bytes_of(T);
    __m512i pairs[8];
    _Pragma("GCC unroll 8") for (int p = 0; p < 8; ++p) {
      const uint8_t* c0 = blk + 2 * p * row_bytes;
      prefetch_ahead(c0), prefetch_ahead(c0 + row_bytes);
      pairs[p] = _mm512_inserti64x4(_mm512_castsi256_si512(signed_weights<T>(c0)), signed_weights<T>(c0 + row_bytes), 1);
    }
    transpose_panel(pairs, panel[b].b);
    __m512 dw, mw = _mm512_setzero_ps();
    column_scales<T>(blk, row_bytes, dw, mw);
    _mm512_store_ps(panel[b].d, dw);
    _mm512_store_ps(panel[b].m, mw);
  }
}

// quantize_row_avx2's blocks of one row, written straight into row r of its tiles' blocks
// (bytes and scales only: the AMX kernel needs no lane sums). The same roundings.
LANES_TARGET_AVX512 void quantize_row_to_tiles(BlockType t, const float* x, int64_t nb, TileBlock* tiles, int r) {
  const __m512 largest = _mm512_set1_ps(std::numeric_limits<float>::max());
  for (int64_t b = 0; b < nb; ++b) {
    const __m512 v0 = _mm512_loadu_ps(x + b * kBlock), v1 = _mm512_loadu_ps(x + b * kBlock + 16);
    const __m512 a0 = _mm512_abs_ps(v0), a1 = _mm512_abs_ps(v1);
    const __mmask16 bad = _mm512_cmp_ps_mask(a0, largest, _CMP_NLE_UQ) | _mm512_cmp_ps_mask(a1, largest, _CMP_NLE_UQ);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
    int8_t* q = tiles[b].q + 32 * r;
    int32_t qsum = 0;
    if (bad) {
      std::memset(q, 0, 32);
    } else {
      const __m512 id = _mm512_set1_ps(inverse_scale(amax));
      const __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, id)), i1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, id));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q), _mm512_cvtsepi32_epi8(i0));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16), _mm512_cvtsepi32_epi8(i1));
      if (t == BlockType::Q4_1) qsum = _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));  // s is read for Q4_1 only
    }
    block_scales<at_half_precision_f16c>(amax, qsum, !bad, tiles[b].d[r], tiles[b].s[r]);
  }
}

// One 16 x 16 tile of outputs over all blocks, its sums in registers. A tile multiply takes
// tens of cycles, and a tile store waits for its multiply while a vector load of stored dots
// waits for the store; so block b + 2 is multiplied and block b + 1 stored while block b is
// accumulated. The tile registers rotate (A and B by 2, C by 4) so that no load or multiply
// waits for an earlier instruction to finish reading its register.
struct TileRun {
  const TileBlock* a;  // the row tile's nb blocks
  int64_t nb;
  const PanelBlock* panel;
  int32_t (*dots)[256];
};

// The tile register numbers are literals: GCC's tile intrinsics paste them into assembly.
#define LANES_MULTIPLY_INTO(A, B, C)             \
  _tile_loadd(A, run.a[b].q, 32);             \
  _tile_loadd(B, run.panel[b].b, 64);          \
  _tile_zero(C);                               \
  _tile_dpbssd(C, A, B)

template <int U>
LANES_TARGET_AMX LANES_ALWAYS_INLINE void multiply_into(const TileRun& run, int64_t b) {
  if constexpr (U == 0) {
    LANES_MULTIPLY_INTO(0, 2, 4);
  } else if constexpr (U == 1) {
    LANES_MULTIPLY_INTO(1, 3, 5);
  } else if constexpr (U == 2) {
    LANES_MULTIPLY_INTO(0, 2, 6);
  } else {
    LANES_MULTIPLY_INTO(1, 3, 7);
  }
}
#undef LANES_MULTIPLY_INTO

template <int U>
LANES_TARGET_AMX LANES_ALWAYS_INLINE void store_dots(const TileRun& run, int64_t b) {
  if constexpr (U == 0) _tile_stored(4, run.dots[b & 1], 64);
  if constexpr (U == 1) _tile_stored(5, run.dots[b & 1], 64);
  if constexpr (U == 2) _tile_stored(6, run.dots[b & 1], 64);
  if constexpr (U == 3) _tile_stored(7, run.dots[b & 1], 64);
}

template <BlockType T>
LANES_TARGET_AMX LANES_ALWAYS_INLINE void accumulate_dots(const TileRun& run, int64_t b, __m512 (&c)[16]) {
  const int32_t* d = run.dots[b & 1];
  const __m512 dw = _mm512_load_ps(run.panel[b].d);
  const __m512 mw = _mm512_load_ps(run.panel[b].m);
  _Pragma("GCC unroll 16") for (int r = 0; r < 16; ++r) {
    const TileBlock& ab = run.a[b];
    c[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(d + 16 * r)), _mm512_mul_ps(dw, _mm512_set1_ps(ab.d[r])), c[r]);
    if constexpr (T == BlockType::Q4_1) c[r] = _mm512_fmadd_ps(mw, _mm512_set1_ps(ab.s[r]), c[r]);
  }
}

// Block b's step; U = b % 4 names its tile registers.
template <BlockType T, int U>
LANES_TARGET_AMX LANES_ALWAYS_INLINE void tile_step(const TileRun& run, int64_t b, __m512 (&c)[16]) {
  if (b + 2 < run.nb) multiply_into<(U + 2) % 4>(run, b + 2);
  if (b + 1 < run.nb) store_dots<(U + 1) % 4>(run, b + 1);
  accumulate_dots<T>(run, b, c);
}

template <BlockType T>
LANES_TARGET_AMX void amx_tile(const TileBlock* a, int64_t nb, const PanelBlock* panel, float* y, int64_t n, int rows) {
  alignas(64) int32_t dots[2][256];
  const TileRun run{a, nb, panel, dots};
  __m512 c[16];
  _Pragma("GCC unroll 16") for (int r = 0; r < 16; ++r) c[r] = _mm512_setzero_ps();
  multiply_into<0>(run, 0);
  if (nb > 1) multiply_into<1>(run, 1);
  store_dots<0>(run, 0);
  for (int64_t b = 0; b < nb; b += 4) {
    tile_step<T, 0>(run, b, c);
    if (b + 1 < nb) tile_step<T, 1>(run, b + 1, c);
    if (b + 2 < nb) tile_step<T, 2>(run, b + 2, c);
    if (b + 3 < nb) tile_step<T, 3>(run, b + 3, c);
  }
  _Pragma("GCC unroll 16") for (int r = 0; r < 16; ++r) if (r < rows) _mm512_storeu_ps(y + r * n, c[r]);
}

thread_local std::vector<PanelBlock> t_panel;

// Columns [0, cols) (cols % 16 == 0) for m >= 16 rows, from the rows' tile blocks.
template <BlockType T>
LANES_TARGET_AMX void amx_columns(const TileBlock* act, int64_t m, const uint8_t* w, int64_t row_bytes, int64_t nb, float* y,
                                  int64_t n, int64_t cols) {
  TileConfig config;
  config.rows[0] = config.rows[1] = 16, config.colsb[0] = config.colsb[1] = 32;  // A: 16 rows of one block's 32 bytes
  config.rows[2] = config.rows[3] = 8, config.colsb[2] = config.colsb[3] = 64;   // B: 8 rows of 4 bytes of 16 columns
  for (int c = 4; c < 8; ++c) config.rows[c] = 16, config.colsb[c] = 64;         // C: 16 x 16 int32
  _tile_loadconfig(&config);
  if (t_panel.size() < size_t(nb)) t_panel.resize(size_t(nb));
  PanelBlock* panel = t_panel.data();
  for (int64_t j = 0; j + 16 <= cols; j += 16) {
    pack_panel<T>(w + j * row_bytes, row_bytes, nb, panel);
    for (int64_t t = 0; t < m; t += 16) amx_tile<T>(act + t / 16 * nb, nb, panel, y + t * n + j, n, int(std::min<int64_t>(16, m - t)));
  }
  _tile_release();
}
#endif  // __x86_64__

// ---- tiling over a column range ------------------------------------------------------------

using TileFn = void (*)(const ActBlock*, const uint8_t*, int64_t, int64_t, float*, int64_t, int64_t);
using AmxFn = void (*)(const TileBlock*, int64_t, const uint8_t*, int64_t, int64_t, float*, int64_t, int64_t);

// Kernels over a run of columns, C at a time, for R = 1..4 activation rows.
struct TileSet {
  int cols = 0;
  TileFn wide[4] = {};    // [R - 1], C = cols
  TileFn narrow[4] = {};  // [R - 1], C = 1
  AmxFn amx = nullptr;    // block order on AMX: 16-row tiles of 16 columns
};

#if defined(__x86_64__)
template <BlockType T, SumOrder O>
TileSet avx2_tiles() {
  return {2,
          {columns_avx2<T, O, 1, 2>, columns_avx2<T, O, 2, 2>, columns_avx2<T, O, 3, 2>, columns_avx2<T, O, 4, 2>},
          {columns_avx2<T, O, 1, 1>, columns_avx2<T, O, 2, 1>, columns_avx2<T, O, 3, 1>, columns_avx2<T, O, 4, 1>}};
}
// A column left over from the wide tiles takes the AVX2 kernel, which rounds identically.
template <BlockType T, SumOrder O>
TileSet avx512_tiles() {
  TileSet narrow = avx2_tiles<T, O>();
  if constexpr (O == SumOrder::Block)
    return {16, {block_columns_avx512<T, 1>, block_columns_avx512<T, 2>, block_columns_avx512<T, 3>, block_columns_avx512<T, 4>},
            {narrow.narrow[0], narrow.narrow[1], narrow.narrow[2], narrow.narrow[3]}};
  else
    return {4, {lane_columns_avx512<T, 1, 2>, lane_columns_avx512<T, 2, 2>, lane_columns_avx512<T, 3, 2>, lane_columns_avx512<T, 4, 2>},
            {narrow.narrow[0], narrow.narrow[1], narrow.narrow[2], narrow.narrow[3]}};
}

template <SumOrder O>
TileSet tiles_for(QuantKernel kernel, BlockType type) {
  if (kernel == QuantKernel::Avx512Vnni) {
    TileSet tiles = type == BlockType::Q4_0 ? avx512_tiles<BlockType::Q4_0, O>()
                    : type == BlockType::Q4_1 ? avx512_tiles<BlockType::Q4_1, O>()
                                              : avx512_tiles<BlockType::Q8_0, O>();
    if (O == SumOrder::Block && amx_enabled())
      tiles.amx = type == BlockType::Q4_0 ? amx_columns<BlockType::Q4_0> : type == BlockType::Q4_1 ? amx_columns<BlockType::Q4_1> : amx_columns<BlockType::Q8_0>;
    return tiles;
  }
  if (kernel == QuantKernel::Avx2)
    return type == BlockType::Q4_0 ? avx2_tiles<BlockType::Q4_0, O>()
           : type == BlockType::Q4_1 ? avx2_tiles<BlockType::Q4_1, O>()
                                     : avx2_tiles<BlockType::Q8_0, O>();
  return {};
}
#endif

// Rows a (r of them, 1..4) over columns [j0, j1) with the wide kernels, then the narrow ones.
void columns_tiled_rows(const TileSet& tiles, const ActBlock* a, int r, const uint8_t* w, int64_t row_bytes, int64_t nb,
                        int64_t n, int64_t j0, int64_t j1, float* y) {
  int64_t wide = (j1 - j0) / tiles.cols * tiles.cols, j = j0 + wide;
  tiles.wide[r - 1](a, w + j0 * row_bytes, row_bytes, nb, y + j0, n, wide);
  if (j < j1) tiles.narrow[r - 1](a, w + j * row_bytes, row_bytes, nb, y + j, n, j1 - j);
}

// tile_act: the rows as AMX tiles where AMX runs, else null.
void columns_tiled(const TileSet& tiles, BlockType t, const ActBlock* act, const TileBlock* tile_act, int64_t m, const uint8_t* w,
                   int64_t nb, int64_t n, int64_t j0, int64_t j1, float* y) {
  int64_t row_bytes = nb * bytes_of(t);
  if (tile_act) {
    // Whole groups of 16 columns on AMX, every row; the columns left over on the other kernels.
    int64_t wide = (j1 - j0) / 16 * 16;
    tiles.amx(tile_act, m, w + j0 * row_bytes, row_bytes, nb, y + j0, n, wide);
    if (j0 + wide == j1) return;
    j0 += wide;
  }
  for (int64_t i0 = 0; i0 < m; i0 += 4)
    columns_tiled_rows(tiles, act + i0 * nb, int(std::min<int64_t>(4, m - i0)), w, row_bytes, nb, n, j0, j1, y + i0 * n);
}

// ---- path selection ------------------------------------------------------------------------

bool supported(QuantKernel k) {
  switch (k) {
    case QuantKernel::Scalar: return true;
    case QuantKernel::Avx2: return has_avx2_fma_f16c();
    case QuantKernel::Avx512Vnni: return has_avx512_vnni();
    default: return false;
  }
}

// The same level as every CPU kernel: AVX-512 needs VNNI, AVX2 needs F16C (simd_level).
QuantKernel best_kernel() {
  switch (simd_level()) {
    case SimdLevel::Avx512: return QuantKernel::Avx512Vnni;
    case SimdLevel::Avx2: return QuantKernel::Avx2;
    default: return QuantKernel::Scalar;
  }
}

// llama.cpp sums in block order on CPUs with AMX (where it repacks weights for its AMX kernels),
// in lane order everywhere else. (It also falls back to lane order for a matrix whose output
// count is not a multiple of 32; lanes keeps one order per CPU, so that a column's result never
// depends on how many columns a call has.)
SumOrder sum_order() {
  static const int forced = [] {
    const std::string& s = settings().cpu_quant_sum;
    return s == "block" ? 1 : s == "lane" ? 2 : 0;
  }();
  if (forced) return forced == 1 ? SumOrder::Block : SumOrder::Lane;
  return has_amx_int8() ? SumOrder::Block : SumOrder::Lane;
}

std::atomic<int> g_forced{int(QuantKernel::Auto)};
std::atomic<bool> g_serial{false};

QuantKernel current_kernel() {
  int forced = g_forced.load(std::memory_order_relaxed);
  if (forced != int(QuantKernel::Auto)) return QuantKernel(forced);
  static const QuantKernel best = best_kernel();
  return best;
}

void run(int64_t n, int64_t grain, ChunkBody body) {
  if (g_serial.load(std::memory_order_relaxed))
    body(0, n);
  else
    parallel_for(n, grain, body);
}

// Weight bytes a chunk of columns should cover at least, so the pool's hand-off costs little
// next to the work.
constexpr int64_t kChunkBytes = 24 << 10;

// The quantized activations of the calling thread's last call, reused so decode steps do not
// allocate; large buffers are released after use.
thread_local std::vector<ActBlock> t_act;
thread_local std::vector<TileBlock> t_tile_act;

// Row r of a tile of 16 rows: its blocks' bytes and scales into their tile blocks.
void to_tile_rows(const ActBlock* row, int64_t nb, TileBlock* tiles, int r) {
  for (int64_t b = 0; b < nb; ++b) {
    std::memcpy(tiles[b].q + 32 * r, row[b].q, 32);
    tiles[b].d[r] = row[b].d;
    tiles[b].s[r] = row[b].s;
  }
}
constexpr size_t kKeepActBlocks = (size_t(1) << 20) / sizeof(ActBlock);

}  // namespace

size_t block_bytes(BlockType t) { return size_t(bytes_of(t)); }

bool force_quant_kernel(QuantKernel kernel) {
  if (kernel != QuantKernel::Auto && !supported(kernel)) return false;
  g_forced.store(int(kernel), std::memory_order_relaxed);
  return true;
}

void force_quant_serial(bool serial) { g_serial.store(serial, std::memory_order_relaxed); }

QuantKernel active_quant_kernel() { return current_kernel(); }

void quantized_matmul(BlockType type, const float* x, int64_t m, int64_t k, int64_t x_row_stride, const void* w,
                      int64_t n, float* y) {
  if (m <= 0 || n <= 0) return;
  int64_t nb = k / kBlock;
  if (nb == 0) {
    std::fill(y, y + m * n, 0.f);
    return;
  }
  QuantKernel kernel = current_kernel();
  SumOrder order = sum_order();
  TileSet tiles;
#if defined(__x86_64__)
  tiles = order == SumOrder::Block ? tiles_for<SumOrder::Block>(kernel, type) : tiles_for<SumOrder::Lane>(kernel, type);
#endif
  // AMX reads whole tiles of 16 rows, the rows past m zero; the other kernels read activation
  // blocks, which AMX needs too where columns are left over past the last group of 16.
  const bool amx = tiles.amx && m >= 16;
  const bool blocks = !amx || n % 16 != 0;
  std::vector<ActBlock>& act = t_act;
  if (blocks) act.resize(size_t(m * nb));
  ActBlock* a = act.data();
  std::vector<TileBlock>& tile_act = t_tile_act;
  if (amx) {
    tile_act.resize(size_t((m + 15) / 16 * nb));
    if (m % 16) std::fill(tile_act.end() - nb, tile_act.end(), TileBlock{});
  }
  TileBlock* ta = amx ? tile_act.data() : nullptr;
  auto quantize_rows = [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
#if defined(__x86_64__)
      if (amx && !blocks) {
        quantize_row_to_tiles(type, x + i * x_row_stride, nb, ta + i / 16 * nb, int(i % 16));
        continue;
      }
      if (kernel != QuantKernel::Scalar)
        quantize_row_avx2(type, x + i * x_row_stride, nb, a + i * nb);
      else
#endif
        quantize_row_scalar(type, x + i * x_row_stride, nb, a + i * nb);
      if (amx) to_tile_rows(a + i * nb, nb, ta + i / 16 * nb, int(i % 16));
    }
  };
  if (m == 1)
    quantize_rows(0, 1);
  else
    run(m, std::max<int64_t>(1, (64 << 10) / (k * 4)), quantize_rows);

  const uint8_t* wb = static_cast<const uint8_t*>(w);
  // Chunks of whole 16-column tiles where there are enough columns.
  int64_t grain = std::max<int64_t>(2, kChunkBytes / (nb * bytes_of(type)));
  if (n >= 32) grain = (std::max<int64_t>(grain, 16) + 15) / 16 * 16;
  if (tiles.cols == 0)
    run(n, grain, [&](int64_t j0, int64_t j1) { columns_scalar(type, order, a, m, wb, nb, n, j0, j1, y); });
  else if (!blocks)  // AMX alone: chunks of whole 16-column groups, as it has no blocks for others
    run(n / 16, std::max<int64_t>(1, grain / 16), [&](int64_t g0, int64_t g1) { columns_tiled(tiles, type, a, ta, m, wb, nb, n, 16 * g0, 16 * g1, y); });
  else
    run(n, grain, [&](int64_t j0, int64_t j1) { columns_tiled(tiles, type, a, ta, m, wb, nb, n, j0, j1, y); });
  if (act.capacity() > kKeepActBlocks) std::vector<ActBlock>().swap(act);
  if (tile_act.capacity() * sizeof(TileBlock) > kKeepActBlocks * sizeof(ActBlock)) std::vector<TileBlock>().swap(tile_act);
}

void dequantize(BlockType type, const void* blocks, int64_t count, float* out) {
  const uint8_t* p = static_cast<const uint8_t*>(blocks);
  int64_t bb = bytes_of(type);
  for (int64_t b = 0; b < count / kBlock; ++b, p += bb, out += kBlock) {
    float d = half_at(p);
    if (type == BlockType::Q8_0) {
      for (int e = 0; e < 32; ++e) out[e] = float(static_cast<int8_t>(p[2 + e])) * d;
    } else if (type == BlockType::Q4_0) {
      for (int e = 0; e < 16; ++e) {
        out[e] = float((p[2 + e] & 0x0f) - 8) * d;
        out[e + 16] = float((p[2 + e] >> 4) - 8) * d;
      }
    } else {
      float mn = half_at(p + 2);
      // Rounded product, then the add (as ggml and gguf-py do): kept as two statements so no
      // compiler fuses them into one fma.
      float scaled[32];
      for (int e = 0; e < 16; ++e) {
        scaled[e] = float(p[4 + e] & 0x0f) * d;
        scaled[e + 16] = float(p[4 + e] >> 4) * d;
      }
      for (int e = 0; e < 32; ++e) out[e] = scaled[e] + mn;
    }
  }
}

}  // namespace lanes::cpu
