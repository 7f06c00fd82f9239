#include "quant.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "compute_pool.hpp"
#include "cpu_features.hpp"
#include "half.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace lanes::cpu {
namespace {

constexpr int64_t kBlock = 32;

constexpr int64_t bytes_of(BlockType t) { return t == BlockType::Q4_0 ? 18 : t == BlockType::Q4_1 ? 20 : 34; }

// ---- the canonical computation -------------------------------------------------------------
//
// Blocks are taken in pairs (a, b). A pair of weight blocks unpacks to 64 signed weights laid
// out as 16 lanes of 4, which is how vpdpbusd sums them:
//   Q4_0 / Q4_1: [a 0..15, b 0..15, a 16..31, b 16..31]  (low nibbles, then high nibbles)
//   Q8_0:        [a 0..31, b 0..31]
// For one output element, lane l accumulates acc[l] = fma(float(Σ of its 4 products), dw[l] *
// dx[l], acc[l]) over the pairs (dw, dx: the weight and activation scales of the lane's
// block); Q4_1 adds mins[1] += m_a * s_a and mins[3] += m_b * s_b with the same fma (mins[0]
// and mins[2] accumulate d * 0). The result is the pairwise tree sum of acc (l + 8, then
// l + 4, l + 2, l + 1), plus for Q4_1 (mins[0] + mins[2]) + (mins[1] + mins[3]). An odd last
// block pairs with a zero block (zero weights, scales, sums). The integer lane sums are exact
// in every path, so every path rounds identically.

// One quantized activation pair in the lane layout above.
struct alignas(64) ActPair {
  int8_t q[64];
  float scale[16];  // dx of the lane's block
  union {
    int32_t bias[16];   // Q4_0: -8 Σ of the lane's 4 q; Q8_0: -128 Σ (VNNI takes weights + 128)
    float min_sum[16];  // Q4_1: {0, s_a, 0, s_b, 0...}
  };
};

// Byte position in ActPair::q of element e (0..31) of block `half` (0 = a, 1 = b).
constexpr int pair_position(BlockType t, int half, int e) {
  if (t == BlockType::Q8_0) return half * 32 + e;
  return e < 16 ? half * 16 + e : 32 + half * 16 + (e - 16);
}

// Which block (0 = a, 1 = b) lane l belongs to.
constexpr int lane_half(BlockType t, int l) { return t == BlockType::Q8_0 ? l / 8 : (l / 4) % 2; }

// ggml keeps activation scales as float16; so do we where float16 has a normal number for the
// value, and keep the float32 value where float16 would flush or overflow it.
float at_half_precision(float v) {
  uint16_t h = to_f16(v).bits;
  uint32_t exponent = (h >> 10) & 0x1f;
  return exponent >= 1 && exponent <= 30 ? to_float(f16{h}) : v;
}

// The scalars of one quantized activation block, from its max |x| and Σq.
struct BlockScales {
  float d;    // dx
  float sum;  // s = d * Σq at float16 precision (Q4_1)
};

BlockScales block_scales(float amax, bool finite, int32_t qsum) {
  if (!finite) return {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::quiet_NaN()};
  float d = amax / 127.f;
  return {at_half_precision(d), at_half_precision(d * float(qsum))};
}

float inverse_scale(float amax) { return amax != 0.f ? 127.f / amax : 0.f; }

// Fills the scale and bias / min_sum fields of a pair whose q bytes are in place.
void finish_pair(BlockType t, ActPair& p, const BlockScales (&s)[2], const int32_t (&lane_sum)[16]) {
  for (int l = 0; l < 16; ++l) p.scale[l] = s[lane_half(t, l)].d;
  if (t == BlockType::Q4_1) {
    for (float& v : p.min_sum) v = 0.f;
    p.min_sum[1] = s[0].sum;
    p.min_sum[3] = s[1].sum;
  } else {
    int32_t factor = t == BlockType::Q4_0 ? -8 : -128;
    for (int l = 0; l < 16; ++l) p.bias[l] = factor * lane_sum[l];
  }
}

// Quantizes one row of k activations into ceil(nb / 2) pairs.
void quantize_row_scalar(BlockType t, const float* x, int64_t nb, ActPair* out) {
  for (int64_t pi = 0; pi < (nb + 1) / 2; ++pi) {
    ActPair& p = out[pi];
    BlockScales s[2] = {{0.f, 0.f}, {0.f, 0.f}};
    for (int half = 0; half < 2; ++half) {
      int64_t b = pi * 2 + half;
      if (b >= nb) {
        for (int e = 0; e < 32; ++e) p.q[pair_position(t, half, e)] = 0;
        continue;
      }
      const float* xb = x + b * kBlock;
      float amax = 0.f;
      bool finite = true;
      for (int e = 0; e < 32; ++e) {
        finite = finite && std::isfinite(xb[e]);
        amax = std::max(amax, std::fabs(xb[e]));
      }
      float id = inverse_scale(amax);
      int32_t qsum = 0;
      for (int e = 0; e < 32; ++e) {
        int q = finite ? static_cast<int>(std::nearbyint(xb[e] * id)) : 0;  // round half to even
        p.q[pair_position(t, half, e)] = static_cast<int8_t>(q);
        qsum += q;
      }
      s[half] = block_scales(amax, finite, qsum);
    }
    int32_t lane_sum[16];
    for (int l = 0; l < 16; ++l) lane_sum[l] = p.q[4 * l] + p.q[4 * l + 1] + p.q[4 * l + 2] + p.q[4 * l + 3];
    finish_pair(t, p, s, lane_sum);
  }
}

// ---- scalar kernel -------------------------------------------------------------------------

// Unpacks the pair of weight blocks starting at `blocks` (b absent when `one`) into the lane
// layout, with each lane's weight scale, and for Q4_1 {d_a, m_a, d_b, m_b}.
void unpack_pair_scalar(BlockType t, const uint8_t* blocks, bool one, int8_t (&w)[64], float (&dw)[16], float (&dm)[4]) {
  int64_t bb = bytes_of(t);
  float d[2] = {0.f, 0.f};
  dm[0] = dm[1] = dm[2] = dm[3] = 0.f;
  for (int half = 0; half < 2; ++half) {
    const uint8_t* blk = blocks + half * bb;
    bool present = half == 0 || !one;
    uint16_t dbits = present ? uint16_t(blk[0] | (blk[1] << 8)) : 0;
    d[half] = to_float(f16{dbits});
    if (t == BlockType::Q4_1) {
      uint16_t mbits = present ? uint16_t(blk[2] | (blk[3] << 8)) : 0;
      dm[2 * half] = d[half];
      dm[2 * half + 1] = to_float(f16{mbits});
    }
    for (int e = 0; e < 32; ++e) {
      int v = 0;
      if (present) {
        if (t == BlockType::Q8_0) {
          v = static_cast<int8_t>(blk[2 + e]);
        } else {
          const uint8_t* qs = blk + (t == BlockType::Q4_0 ? 2 : 4);
          int q = e < 16 ? (qs[e] & 0x0f) : (qs[e - 16] >> 4);
          v = t == BlockType::Q4_0 ? q - 8 : q;
        }
      }
      w[pair_position(t, half, e)] = static_cast<int8_t>(v);
    }
  }
  for (int l = 0; l < 16; ++l) dw[l] = d[lane_half(t, l)];
}

float lane_tree_sum(const float (&acc)[16]) {
  float t8[8], t4[4], t2[2];
  for (int l = 0; l < 8; ++l) t8[l] = acc[l] + acc[l + 8];
  for (int l = 0; l < 4; ++l) t4[l] = t8[l] + t8[l + 4];
  for (int l = 0; l < 2; ++l) t2[l] = t4[l] + t4[l + 2];
  return t2[0] + t2[1];
}

float min_tree_sum(const float (&mins)[4]) {
  float t0 = mins[0] + mins[2], t1 = mins[1] + mins[3];
  return t0 + t1;
}

void columns_scalar(BlockType t, const ActPair* act, int64_t m, int64_t pairs, const uint8_t* w, int64_t nb,
                    int64_t n, int64_t j0, int64_t j1, float* y) {
  int64_t row_bytes = nb * bytes_of(t);
  std::vector<float> acc(size_t(m) * 16), mins(size_t(m) * 4);
  for (int64_t j = j0; j < j1; ++j) {
    std::fill(acc.begin(), acc.end(), 0.f);
    std::fill(mins.begin(), mins.end(), 0.f);
    for (int64_t pi = 0; pi < pairs; ++pi) {
      int8_t wq[64];
      float dw[16], dm[4];
      unpack_pair_scalar(t, w + j * row_bytes + pi * 2 * bytes_of(t), pi * 2 + 1 >= nb, wq, dw, dm);
      for (int64_t i = 0; i < m; ++i) {
        const ActPair& a = act[i * pairs + pi];
        float* ai = &acc[size_t(i) * 16];
        for (int l = 0; l < 16; ++l) {
          int32_t dot = 0;
          for (int e = 4 * l; e < 4 * l + 4; ++e) dot += int32_t(wq[e]) * int32_t(a.q[e]);
          float scale = dw[l] * a.scale[l];
          ai[l] = std::fma(float(dot), scale, ai[l]);
        }
        if (t == BlockType::Q4_1)
          for (int l = 0; l < 4; ++l) mins[size_t(i) * 4 + l] = std::fma(dm[l], a.min_sum[l], mins[size_t(i) * 4 + l]);
      }
    }
    for (int64_t i = 0; i < m; ++i) {
      float lanes[16], m4[4];
      std::copy_n(&acc[size_t(i) * 16], 16, lanes);
      std::copy_n(&mins[size_t(i) * 4], 4, m4);
      float r = lane_tree_sum(lanes);
      if (t == BlockType::Q4_1) r = r + min_tree_sum(m4);
      y[i * n + j] = r;
    }
  }
}

// A pair of blocks to feed the SIMD kernels, copied with a zero block b when the row has an
// odd block count (so no load reads past the row).
struct PaddedPair {
  alignas(16) uint8_t bytes[2 * 34 + 16];
  const uint8_t* from(BlockType t, const uint8_t* last_block) {
    std::memset(bytes, 0, sizeof bytes);
    std::memcpy(bytes, last_block, size_t(bytes_of(t)));
    return bytes;
  }
};

#if defined(__x86_64__)
#define LANES_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define LANES_TARGET_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

// ---- AVX2 activation quantization (used by the AVX2 and AVX-512 paths) --------------------

// Quantizes 32 floats: q in natural order, returns max |x|; `finite` false on a NaN or inf.
LANES_TARGET_AVX2 inline __m256i quantize_block_avx2(const float* x, float& amax_out, bool& finite) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 largest = _mm256_set1_ps(std::numeric_limits<float>::max());
  __m256 v[4], vmax = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
  for (int i = 0; i < 4; ++i) {
    v[i] = _mm256_loadu_ps(x + 8 * i);
    __m256 a = _mm256_and_ps(v[i], abs_mask);
    bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, largest, _CMP_NLE_UQ));  // NaN or inf
    vmax = _mm256_max_ps(vmax, a);
  }
  finite = _mm256_testz_ps(bad, bad);
  __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(vmax, 1), _mm256_castps256_ps128(vmax));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  float amax = _mm_cvtss_f32(m4);
  amax_out = amax;
  if (!finite) return _mm256_setzero_si256();
  __m256 id = _mm256_set1_ps(inverse_scale(amax));
  __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v[0], id));  // round half to even (MXCSR default)
  __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v[1], id));
  __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v[2], id));
  __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v[3], id));
  __m256i p01 = _mm256_packs_epi32(i0, i1), p23 = _mm256_packs_epi32(i2, i3);
  __m256i p = _mm256_packs_epi16(p01, p23);
  return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

LANES_TARGET_AVX2 inline __m256i lane_sums_avx2(__m256i q) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q), _mm256_set1_epi16(1));
}

LANES_TARGET_AVX2 inline int32_t hsum_epi32_avx2(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
  return _mm_cvtsi128_si32(s);
}

LANES_TARGET_AVX2 void quantize_row_avx2(BlockType t, const float* x, int64_t nb, ActPair* out) {
  for (int64_t pi = 0; pi < (nb + 1) / 2; ++pi) {
    ActPair& p = out[pi];
    BlockScales s[2] = {{0.f, 0.f}, {0.f, 0.f}};
    __m256i q[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    for (int half = 0; half < 2; ++half) {
      int64_t b = pi * 2 + half;
      if (b >= nb) break;
      float amax = 0.f;
      bool finite = true;
      q[half] = quantize_block_avx2(x + b * kBlock, amax, finite);
      s[half] = block_scales(amax, finite, hsum_epi32_avx2(lane_sums_avx2(q[half])));
    }
    if (t == BlockType::Q8_0) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(p.q), q[0]);
      _mm256_store_si256(reinterpret_cast<__m256i*>(p.q + 32), q[1]);
    } else {
      _mm256_store_si256(reinterpret_cast<__m256i*>(p.q), _mm256_permute2x128_si256(q[0], q[1], 0x20));
      _mm256_store_si256(reinterpret_cast<__m256i*>(p.q + 32), _mm256_permute2x128_si256(q[0], q[1], 0x31));
    }
    alignas(32) int32_t lane_sum[16];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lane_sum), lane_sums_avx2(_mm256_load_si256(reinterpret_cast<const __m256i*>(p.q))));
    _mm256_store_si256(reinterpret_cast<__m256i*>(lane_sum + 8),
                       lane_sums_avx2(_mm256_load_si256(reinterpret_cast<const __m256i*>(p.q + 32))));
    finish_pair(t, p, s, lane_sum);
  }
}

LANES_TARGET_AVX2 inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
LANES_TARGET_AVX2 inline uint32_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// The pair's float16 scales as floats: Q4_1 {d_a, m_a, d_b, m_b}; Q4_0 / Q8_0 {d_a, d_b, 0, 0}.
template <BlockType T>
LANES_TARGET_AVX2 inline __m128 pair_scales(const uint8_t* p) {
  constexpr int64_t bb = bytes_of(T);
  __m128i h;
  if constexpr (T == BlockType::Q4_1)
    h = _mm_insert_epi32(_mm_cvtsi32_si128(int(load_u32(p))), int(load_u32(p + bb)), 1);
  else
    h = _mm_cvtsi32_si128(int(load_u16(p) | (load_u16(p + bb) << 16)));
  return _mm_cvtph_ps(h);
}

// Low and high nibbles of a Q4 pair: [a 0..15, b 0..15] and [a 16..31, b 16..31].
template <BlockType T>
LANES_TARGET_AVX2 inline void pair_nibbles(const uint8_t* p, __m256i& lo, __m256i& hi) {
  constexpr int64_t bb = bytes_of(T), qs = T == BlockType::Q4_0 ? 2 : 4;
  __m256i raw = _mm256_inserti128_si256(_mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + qs))),
                                        _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + bb + qs)), 1);
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  lo = _mm256_and_si256(raw, low4);
  hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
}

LANES_TARGET_AVX2 inline float tree_sum_avx2(__m256 lo, __m256 hi) {
  __m256 t8 = _mm256_add_ps(lo, hi);
  __m128 t4 = _mm_add_ps(_mm256_castps256_ps128(t8), _mm256_extractf128_ps(t8, 1));
  __m128 t2 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
  return _mm_cvtss_f32(_mm_add_ss(t2, _mm_movehdup_ps(t2)));
}

LANES_TARGET_AVX2 inline float min_sum_avx2(__m128 mins) {
  __m128 t2 = _mm_add_ps(mins, _mm_movehl_ps(mins, mins));
  return _mm_cvtss_f32(_mm_add_ss(t2, _mm_movehdup_ps(t2)));
}

// ---- AVX2 kernel: R activation rows x C weight columns -------------------------------------

template <BlockType T, int R, int C>
LANES_TARGET_AVX2 void tile_avx2(const ActPair* act, int64_t pairs, const uint8_t* w, int64_t row_bytes, int64_t nb,
                                 float* y, int64_t n) {
  __m256 acc_lo[R][C], acc_hi[R][C];
  __m128 mins[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc_lo[r][c] = acc_hi[r][c] = _mm256_setzero_ps(), mins[r][c] = _mm_setzero_ps();
  const __m256i ones16 = _mm256_set1_epi16(1);
  PaddedPair pad[C];
  for (int64_t pi = 0; pi < pairs; ++pi) {
    __m256i w_lo[C], w_hi[C];
    __m256 dw_lo[C], dw_hi[C];
    __m128 dm[C];
    for (int c = 0; c < C; ++c) {
      const uint8_t* p = w + c * row_bytes + pi * 2 * bytes_of(T);
      if (pi * 2 + 1 >= nb) p = pad[c].from(T, p);
      dm[c] = pair_scales<T>(p);
      __m256 d8 = _mm256_zextps128_ps256(dm[c]);
      if constexpr (T == BlockType::Q8_0) {
        w_lo[c] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2));
        w_hi[c] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + bytes_of(T) + 2));
        dw_lo[c] = _mm256_permutevar8x32_ps(d8, _mm256_set1_epi32(0));
        dw_hi[c] = _mm256_permutevar8x32_ps(d8, _mm256_set1_epi32(1));
      } else {
        pair_nibbles<T>(p, w_lo[c], w_hi[c]);
        int b = T == BlockType::Q4_1 ? 2 : 1;  // where d_b sits in dm
        dw_lo[c] = dw_hi[c] = _mm256_permutevar8x32_ps(d8, _mm256_setr_epi32(0, 0, 0, 0, b, b, b, b));
      }
    }
    for (int r = 0; r < R; ++r) {
      const ActPair& a = act[r * pairs + pi];
      __m256i q_lo = _mm256_load_si256(reinterpret_cast<const __m256i*>(a.q));
      __m256i q_hi = _mm256_load_si256(reinterpret_cast<const __m256i*>(a.q + 32));
      __m256 sx_lo = _mm256_load_ps(a.scale), sx_hi = _mm256_load_ps(a.scale + 8);
      for (int c = 0; c < C; ++c) {
        __m256i s_lo, s_hi;
        if constexpr (T == BlockType::Q8_0) {
          s_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w_lo[c], w_lo[c]), _mm256_sign_epi8(q_lo, w_lo[c])), ones16);
          s_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w_hi[c], w_hi[c]), _mm256_sign_epi8(q_hi, w_hi[c])), ones16);
        } else {
          s_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(w_lo[c], q_lo), ones16);
          s_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(w_hi[c], q_hi), ones16);
          if constexpr (T == BlockType::Q4_0) {
            s_lo = _mm256_add_epi32(s_lo, _mm256_load_si256(reinterpret_cast<const __m256i*>(a.bias)));
            s_hi = _mm256_add_epi32(s_hi, _mm256_load_si256(reinterpret_cast<const __m256i*>(a.bias + 8)));
          }
        }
        acc_lo[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s_lo), _mm256_mul_ps(dw_lo[c], sx_lo), acc_lo[r][c]);
        acc_hi[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s_hi), _mm256_mul_ps(dw_hi[c], sx_hi), acc_hi[r][c]);
        if constexpr (T == BlockType::Q4_1) mins[r][c] = _mm_fmadd_ps(dm[c], _mm_load_ps(a.min_sum), mins[r][c]);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      float v = tree_sum_avx2(acc_lo[r][c], acc_hi[r][c]);
      if constexpr (T == BlockType::Q4_1) v = v + min_sum_avx2(mins[r][c]);
      y[r * n + c] = v;
    }
}

// ---- AVX-512 VNNI kernel -------------------------------------------------------------------

template <BlockType T, int R, int C>
LANES_TARGET_AVX512 void tile_avx512(const ActPair* act, int64_t pairs, const uint8_t* w, int64_t row_bytes, int64_t nb,
                                     float* y, int64_t n) {
  __m512 acc[R][C];
  __m128 mins[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps(), mins[r][c] = _mm_setzero_ps();
  // Lane -> index of its block's d in pair_scales' result.
  const __m512i d_index = T == BlockType::Q8_0 ? _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1)
                          : T == BlockType::Q4_1 ? _mm512_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2, 0, 0, 0, 0, 2, 2, 2, 2)
                                                 : _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1);
  PaddedPair pad[C];
  for (int64_t pi = 0; pi < pairs; ++pi) {
    __m512i wv[C];
    __m512 dw[C];
    __m128 dm[C];
    for (int c = 0; c < C; ++c) {
      const uint8_t* p = w + c * row_bytes + pi * 2 * bytes_of(T);
      if (pi * 2 + 1 >= nb) p = pad[c].from(T, p);
      dm[c] = pair_scales<T>(p);
      dw[c] = _mm512_permutexvar_ps(d_index, _mm512_zextps128_ps512(dm[c]));
      if constexpr (T == BlockType::Q8_0) {
        __m512i raw = _mm512_inserti64x4(_mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2))),
                                         _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + bytes_of(T) + 2)), 1);
        wv[c] = _mm512_xor_si512(raw, _mm512_set1_epi8(char(0x80)));  // w + 128 as unsigned
      } else {
        __m256i lo, hi;
        pair_nibbles<T>(p, lo, hi);
        wv[c] = _mm512_inserti64x4(_mm512_zextsi256_si512(lo), hi, 1);
      }
    }
    for (int r = 0; r < R; ++r) {
      const ActPair& a = act[r * pairs + pi];
      __m512i q = _mm512_load_si512(a.q);
      __m512 sx = _mm512_load_ps(a.scale);
      __m512i start = T == BlockType::Q4_1 ? _mm512_setzero_si512() : _mm512_load_si512(a.bias);
      for (int c = 0; c < C; ++c) {
        __m512i s = _mm512_dpbusd_epi32(start, wv[c], q);
        acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw[c], sx), acc[r][c]);
        if constexpr (T == BlockType::Q4_1) mins[r][c] = _mm_fmadd_ps(dm[c], _mm_load_ps(a.min_sum), mins[r][c]);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      float v = tree_sum_avx2(_mm512_castps512_ps256(acc[r][c]), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[r][c]), 1)));
      if constexpr (T == BlockType::Q4_1) v = v + min_sum_avx2(mins[r][c]);
      y[r * n + c] = v;
    }
}
#endif  // __x86_64__

// ---- tiling over a column range ------------------------------------------------------------

using TileFn = void (*)(const ActPair*, int64_t, const uint8_t*, int64_t, int64_t, float*, int64_t);

// Tile kernels for R = 1..kMaxRows rows and C = 1 or kCols columns.
struct TileSet {
  int max_rows = 0;
  int cols = 0;
  TileFn wide[4] = {};    // [R - 1], C = cols
  TileFn narrow[4] = {};  // [R - 1], C = 1
};

#if defined(__x86_64__)
template <BlockType T>
TileSet avx2_tiles() {
  return {2, 2, {tile_avx2<T, 1, 2>, tile_avx2<T, 2, 2>}, {tile_avx2<T, 1, 1>, tile_avx2<T, 2, 1>}};
}
template <BlockType T>
TileSet avx512_tiles() {
  return {4,
          2,
          {tile_avx512<T, 1, 2>, tile_avx512<T, 2, 2>, tile_avx512<T, 3, 2>, tile_avx512<T, 4, 2>},
          {tile_avx512<T, 1, 1>, tile_avx512<T, 2, 1>, tile_avx512<T, 3, 1>, tile_avx512<T, 4, 1>}};
}
#endif

void columns_tiled(const TileSet& tiles, BlockType t, const ActPair* act, int64_t m, int64_t pairs, const uint8_t* w,
                   int64_t nb, int64_t n, int64_t j0, int64_t j1, float* y) {
  int64_t row_bytes = nb * bytes_of(t);
  for (int64_t i0 = 0; i0 < m; i0 += tiles.max_rows) {
    int r = int(std::min<int64_t>(tiles.max_rows, m - i0));
    const ActPair* a = act + i0 * pairs;
    float* yr = y + i0 * n;
    int64_t j = j0;
    for (; j + tiles.cols <= j1; j += tiles.cols) tiles.wide[r - 1](a, pairs, w + j * row_bytes, row_bytes, nb, yr + j, n);
    for (; j < j1; ++j) tiles.narrow[r - 1](a, pairs, w + j * row_bytes, row_bytes, nb, yr + j, n);
  }
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

QuantKernel best_kernel() {
  if (const char* env = std::getenv("LANES_QUANT_KERNEL")) {
    QuantKernel asked = std::strcmp(env, "scalar") == 0 ? QuantKernel::Scalar
                        : std::strcmp(env, "avx2") == 0 ? QuantKernel::Avx2
                        : std::strcmp(env, "avx512") == 0 ? QuantKernel::Avx512Vnni
                                                          : QuantKernel::Auto;
    if (asked != QuantKernel::Auto && supported(asked)) return asked;
  }
  if (supported(QuantKernel::Avx512Vnni)) return QuantKernel::Avx512Vnni;
  if (supported(QuantKernel::Avx2)) return QuantKernel::Avx2;
  return QuantKernel::Scalar;
}

std::atomic<int> g_forced{int(QuantKernel::Auto)};
std::atomic<bool> g_serial{false};

QuantKernel current_kernel() {
  int forced = g_forced.load(std::memory_order_relaxed);
  if (forced != int(QuantKernel::Auto)) return QuantKernel(forced);
  static const QuantKernel best = best_kernel();
  return best;
}

void run(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& body) {
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
thread_local std::vector<ActPair> t_act;
constexpr size_t kKeepActPairs = (size_t(1) << 20) / sizeof(ActPair);

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
  int64_t nb = k / kBlock, pairs = (nb + 1) / 2;
  if (nb == 0) {
    std::fill(y, y + m * n, 0.f);
    return;
  }
  QuantKernel kernel = current_kernel();
  std::vector<ActPair>& act = t_act;
  act.resize(size_t(m * pairs));
  ActPair* a = act.data();
  auto quantize_rows = [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
#if defined(__x86_64__)
      if (kernel != QuantKernel::Scalar) {
        quantize_row_avx2(type, x + i * x_row_stride, nb, a + i * pairs);
        continue;
      }
#endif
      quantize_row_scalar(type, x + i * x_row_stride, nb, a + i * pairs);
    }
  };
  if (m == 1)
    quantize_rows(0, 1);
  else
    run(m, std::max<int64_t>(1, (64 << 10) / (k * 4)), quantize_rows);

  const uint8_t* wb = static_cast<const uint8_t*>(w);
  int64_t grain = std::max<int64_t>(2, kChunkBytes / (nb * bytes_of(type)));
  TileSet tiles;
#if defined(__x86_64__)
  if (kernel == QuantKernel::Avx512Vnni)
    tiles = type == BlockType::Q4_0 ? avx512_tiles<BlockType::Q4_0>()
            : type == BlockType::Q4_1 ? avx512_tiles<BlockType::Q4_1>()
                                      : avx512_tiles<BlockType::Q8_0>();
  else if (kernel == QuantKernel::Avx2)
    tiles = type == BlockType::Q4_0 ? avx2_tiles<BlockType::Q4_0>()
            : type == BlockType::Q4_1 ? avx2_tiles<BlockType::Q4_1>()
                                      : avx2_tiles<BlockType::Q8_0>();
#endif
  if (tiles.max_rows == 0)
    run(n, grain, [&](int64_t j0, int64_t j1) { columns_scalar(type, a, m, pairs, wb, nb, n, j0, j1, y); });
  else
    run(n, grain, [&](int64_t j0, int64_t j1) { columns_tiled(tiles, type, a, m, pairs, wb, nb, n, j0, j1, y); });
  if (act.capacity() > kKeepActPairs) std::vector<ActPair>().swap(act);
}

void dequantize(BlockType type, const void* blocks, int64_t count, float* out) {
  const uint8_t* p = static_cast<const uint8_t*>(blocks);
  int64_t bb = bytes_of(type);
  for (int64_t b = 0; b < count / kBlock; ++b, p += bb, out += kBlock) {
    float d = to_float(f16{uint16_t(p[0] | (p[1] << 8))});
    if (type == BlockType::Q8_0) {
      for (int e = 0; e < 32; ++e) out[e] = float(static_cast<int8_t>(p[2 + e])) * d;
    } else if (type == BlockType::Q4_0) {
      for (int e = 0; e < 16; ++e) {
        out[e] = float((p[2 + e] & 0x0f) - 8) * d;
        out[e + 16] = float((p[2 + e] >> 4) - 8) * d;
      }
    } else {
      float mn = to_float(f16{uint16_t(p[2] | (p[3] << 8))});
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
