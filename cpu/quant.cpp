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
// Blocks are taken in groups of 4 (a, b, c, d). A group of weight blocks unpacks to 128 signed
// weights, and the activations are laid out to match:
//   Q4_0 / Q4_1: [a 0..15, b 0..15, c 0..15, d 0..15 | a 16..31, b 16..31, c 16..31, d 16..31]
//                (low nibbles, then high nibbles); 16 lanes, lane l sums the 8 products at
//                bytes 4l..4l+3 and 64+4l..64+4l+3 (block l / 4).
//   Q8_0:        [a 0..31, b 0..31, c 0..31, d 0..31]; 32 lanes, lane l sums the 4 products at
//                bytes 4l..4l+3 (block l / 8).
// That is how vpdpbusd sums bytes into 32-bit lanes. For one output element, lane l accumulates
// acc[l] = fma(float(its integer sum), dw[l] * dx[l], acc[l]) over the groups (dw, dx: the
// weight and activation scales of the lane's block); Q4_1 also accumulates, over the 8 lanes of
// {d_a, m_a, d_b, m_b, d_c, m_c, d_d, m_d} times {0, s_a, 0, s_b, 0, s_c, 0, s_d}, mins[l] =
// fma(dm[l], ms[l], mins[l]). The result is a pairwise tree sum (Q8_0 first adds lane l + 16;
// then l + 8, l + 4, l + 2, l + 1), plus for Q4_1 the tree sum of mins (l + 4, l + 2, l + 1).
// A last group with fewer than 4 blocks is padded with zero blocks (zero weights, scales and
// sums). The integer lane sums are exact in every path, so every path rounds identically.

constexpr int64_t kGroup = 4;  // blocks per group

constexpr int lanes_of(BlockType t) { return t == BlockType::Q8_0 ? 32 : 16; }
constexpr int lane_block(BlockType t, int l) { return t == BlockType::Q8_0 ? l / 8 : l / 4; }
// Byte position in a group of element e (0..31) of block b (0..3).
constexpr int group_position(BlockType t, int b, int e) {
  if (t == BlockType::Q8_0) return b * 32 + e;
  return e < 16 ? b * 16 + e : 64 + b * 16 + (e - 16);
}

// One quantized activation group in the layout above.
struct alignas(64) ActGroup {
  int8_t q[128];
  float scale[32];  // dx of each lane's block (Q4: the first 16)
  union {
    int32_t bias[32];  // Q4_0: -8 Σ of the lane's q; Q8_0: -128 Σ (VNNI takes weights + 128)
    float min_sum[8];  // Q4_1: {0, s_a, 0, s_b, 0, s_c, 0, s_d}
  };
};

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

// Integer sum of the activation bytes of each lane, from the q bytes in place.
void lane_sums_scalar(BlockType t, const ActGroup& g, int32_t (&sums)[32]) {
  for (int l = 0; l < lanes_of(t); ++l) {
    int32_t s = 0;
    for (int e = 4 * l; e < 4 * l + 4; ++e) s += g.q[e] + (t == BlockType::Q8_0 ? 0 : g.q[64 + e]);
    sums[l] = s;
  }
}

// Fills the scale and bias / min_sum fields of a group whose q bytes are in place.
void finish_group(BlockType t, ActGroup& g, const BlockScales (&s)[kGroup], const int32_t (&lane_sum)[32]) {
  for (int l = 0; l < 32; ++l) g.scale[l] = l < lanes_of(t) ? s[lane_block(t, l)].d : 0.f;
  if (t == BlockType::Q4_1) {
    for (int b = 0; b < kGroup; ++b) g.min_sum[2 * b] = 0.f, g.min_sum[2 * b + 1] = s[b].sum;
    for (int l = 8; l < 32; ++l) g.bias[l] = 0;
  } else {
    int32_t factor = t == BlockType::Q4_0 ? -8 : -128;
    for (int l = 0; l < 32; ++l) g.bias[l] = l < lanes_of(t) ? factor * lane_sum[l] : 0;
  }
}

// Quantizes one row of nb blocks into ceil(nb / 4) groups.
void quantize_row_scalar(BlockType t, const float* x, int64_t nb, ActGroup* out) {
  for (int64_t gi = 0; gi < (nb + kGroup - 1) / kGroup; ++gi) {
    ActGroup& g = out[gi];
    BlockScales s[kGroup] = {};
    for (int bi = 0; bi < kGroup; ++bi) {
      int64_t b = gi * kGroup + bi;
      if (b >= nb) {
        for (int e = 0; e < 32; ++e) g.q[group_position(t, bi, e)] = 0;
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
        g.q[group_position(t, bi, e)] = static_cast<int8_t>(q);
        qsum += q;
      }
      s[bi] = block_scales(amax, finite, qsum);
    }
    int32_t sums[32];
    lane_sums_scalar(t, g, sums);
    finish_group(t, g, s, sums);
  }
}

// ---- scalar kernel -------------------------------------------------------------------------

// Unpacks `present` (1..4) weight blocks from `blocks` into a group: weights in the group
// layout, each lane's weight scale, and for Q4_1 {d_a, m_a, ..., d_d, m_d}.
void unpack_group_scalar(BlockType t, const uint8_t* blocks, int present, int8_t (&w)[128], float (&dw)[32],
                         float (&dm)[8]) {
  int64_t bb = bytes_of(t);
  float d[kGroup] = {};
  for (float& v : dm) v = 0.f;
  for (int bi = 0; bi < kGroup; ++bi) {
    const uint8_t* blk = blocks + bi * bb;
    bool here = bi < present;
    d[bi] = here ? to_float(f16{uint16_t(blk[0] | (blk[1] << 8))}) : 0.f;
    if (t == BlockType::Q4_1) {
      dm[2 * bi] = d[bi];
      dm[2 * bi + 1] = here ? to_float(f16{uint16_t(blk[2] | (blk[3] << 8))}) : 0.f;
    }
    for (int e = 0; e < 32; ++e) {
      int v = 0;
      if (here && t == BlockType::Q8_0) {
        v = static_cast<int8_t>(blk[2 + e]);
      } else if (here) {
        const uint8_t* qs = blk + (t == BlockType::Q4_0 ? 2 : 4);
        int q = e < 16 ? (qs[e] & 0x0f) : (qs[e - 16] >> 4);
        v = t == BlockType::Q4_0 ? q - 8 : q;
      }
      w[group_position(t, bi, e)] = static_cast<int8_t>(v);
    }
  }
  for (int l = 0; l < 32; ++l) dw[l] = l < lanes_of(t) ? d[lane_block(t, l)] : 0.f;
}

float tree_sum_16(const float* acc) {
  float t8[8], t4[4], t2[2];
  for (int l = 0; l < 8; ++l) t8[l] = acc[l] + acc[l + 8];
  for (int l = 0; l < 4; ++l) t4[l] = t8[l] + t8[l + 4];
  for (int l = 0; l < 2; ++l) t2[l] = t4[l] + t4[l + 2];
  return t2[0] + t2[1];
}

// The result of one output element from its lane accumulators (see the top of the file).
float finish_output(BlockType t, const float* acc, const float* mins) {
  float r;
  if (t == BlockType::Q8_0) {
    float t16[16];
    for (int l = 0; l < 16; ++l) t16[l] = acc[l] + acc[l + 16];
    r = tree_sum_16(t16);
  } else {
    r = tree_sum_16(acc);
  }
  if (t == BlockType::Q4_1) {
    float m4[4], m2[2];
    for (int l = 0; l < 4; ++l) m4[l] = mins[l] + mins[l + 4];
    for (int l = 0; l < 2; ++l) m2[l] = m4[l] + m4[l + 2];
    r = r + (m2[0] + m2[1]);
  }
  return r;
}

void columns_scalar(BlockType t, const ActGroup* act, int64_t m, int64_t groups, const uint8_t* w, int64_t nb,
                    int64_t n, int64_t j0, int64_t j1, float* y) {
  int64_t row_bytes = nb * bytes_of(t);
  int lanes = lanes_of(t);
  std::vector<float> acc(size_t(m) * 32), mins(size_t(m) * 8);
  for (int64_t j = j0; j < j1; ++j) {
    std::fill(acc.begin(), acc.end(), 0.f);
    std::fill(mins.begin(), mins.end(), 0.f);
    for (int64_t gi = 0; gi < groups; ++gi) {
      int8_t wq[128];
      float dw[32], dm[8];
      int present = int(std::min<int64_t>(kGroup, nb - gi * kGroup));
      unpack_group_scalar(t, w + j * row_bytes + gi * kGroup * bytes_of(t), present, wq, dw, dm);
      for (int64_t i = 0; i < m; ++i) {
        const ActGroup& a = act[i * groups + gi];
        float* ai = &acc[size_t(i) * 32];
        for (int l = 0; l < lanes; ++l) {
          int32_t dot = 0;
          for (int e = 4 * l; e < 4 * l + 4; ++e) {
            dot += int32_t(wq[e]) * int32_t(a.q[e]);
            if (t != BlockType::Q8_0) dot += int32_t(wq[64 + e]) * int32_t(a.q[64 + e]);
          }
          float scale = dw[l] * a.scale[l];
          ai[l] = std::fma(float(dot), scale, ai[l]);
        }
        if (t == BlockType::Q4_1)
          for (int l = 0; l < 8; ++l) mins[size_t(i) * 8 + l] = std::fma(dm[l], a.min_sum[l], mins[size_t(i) * 8 + l]);
      }
    }
    for (int64_t i = 0; i < m; ++i) y[i * n + j] = finish_output(t, &acc[size_t(i) * 32], &mins[size_t(i) * 8]);
  }
}

// The last group of a row that ends in 1 or 3 blocks, copied with zero blocks after it so the
// SIMD kernels read a whole group and never past the row. (A row ending in 2 blocks, like
// k = 576, is read in place: see the kernels.)
struct PaddedGroup {
  alignas(64) uint8_t bytes[kGroup * 34 + 32];
  const uint8_t* from(BlockType t, const uint8_t* blocks, int64_t present) {
    std::memset(bytes, 0, sizeof bytes);
    std::memcpy(bytes, blocks, size_t(present * bytes_of(t)));
    return bytes;
  }
};

#if defined(__x86_64__)
#define LANES_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define LANES_TARGET_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define LANES_UNROLL _Pragma("GCC unroll 4")

// ---- AVX2 activation quantization (used by the AVX2 and AVX-512 paths) --------------------

// Quantizes 32 floats: q in natural order; max |x| and whether all are finite on the side.
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
  __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
  return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// Sums of each 4 consecutive bytes, as 8 int32 lanes.
LANES_TARGET_AVX2 inline __m256i sums_of_4_avx2(__m256i q) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q), _mm256_set1_epi16(1));
}

LANES_TARGET_AVX2 inline int32_t hsum_epi32_avx2(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
  return _mm_cvtsi128_si32(s);
}

LANES_TARGET_AVX2 inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

LANES_TARGET_AVX2 void quantize_row_avx2(BlockType t, const float* x, int64_t nb, ActGroup* out) {
  for (int64_t gi = 0; gi < (nb + kGroup - 1) / kGroup; ++gi) {
    ActGroup& g = out[gi];
    BlockScales s[kGroup] = {};
    for (int bi = 0; bi < kGroup; ++bi) {
      int64_t b = gi * kGroup + bi;
      __m256i q = _mm256_setzero_si256();
      if (b < nb) {
        float amax = 0.f;
        bool finite = true;
        q = quantize_block_avx2(x + b * kBlock, amax, finite);
        s[bi] = block_scales(amax, finite, hsum_epi32_avx2(sums_of_4_avx2(q)));
      }
      if (t == BlockType::Q8_0) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(g.q + 32 * bi), q);
      } else {
        _mm_store_si128(reinterpret_cast<__m128i*>(g.q + 16 * bi), _mm256_castsi256_si128(q));
        _mm_store_si128(reinterpret_cast<__m128i*>(g.q + 64 + 16 * bi), _mm256_extracti128_si256(q, 1));
      }
    }
    alignas(32) int32_t sums[32];
    for (int h = 0; h < 4; ++h) _mm256_store_si256(reinterpret_cast<__m256i*>(sums + 8 * h), sums_of_4_avx2(load256(g.q + 32 * h)));
    if (t != BlockType::Q8_0)
      for (int l = 0; l < 16; ++l) sums[l] += sums[l + 16];
    finish_group(t, g, s, sums);
  }
}

inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// The group's float16 scales as floats: Q4_1 {d_a, m_a, ..., d_d, m_d}; Q4_0 / Q8_0 {d_a, d_b,
// d_c, d_d, 0, 0, 0, 0}.
template <BlockType T>
LANES_TARGET_AVX2 inline __m256 group_scales(const uint8_t* p) {
  constexpr int64_t bb = bytes_of(T);
  if constexpr (T == BlockType::Q4_1) {
    __m128i h = _mm_setr_epi32(int(load_u32(p)), int(load_u32(p + bb)), int(load_u32(p + 2 * bb)), int(load_u32(p + 3 * bb)));
    return _mm256_cvtph_ps(h);
  } else {
    uint64_t h = load_u16(p) | (load_u16(p + bb) << 16) | (load_u16(p + 2 * bb) << 32) | (load_u16(p + 3 * bb) << 48);
    return _mm256_cvtph_ps(_mm_cvtsi64_si128(int64_t(h)));
  }
}

// group_scales for a group of only blocks a and b (c and d read as zero).
template <BlockType T>
LANES_TARGET_AVX2 inline __m256 pair_scales(const uint8_t* p) {
  constexpr int64_t bb = bytes_of(T);
  if constexpr (T == BlockType::Q4_1)
    return _mm256_cvtph_ps(_mm_setr_epi32(int(load_u32(p)), int(load_u32(p + bb)), 0, 0));
  else
    return _mm256_cvtph_ps(_mm_cvtsi64_si128(int64_t(load_u16(p) | (load_u16(p + bb) << 16))));
}

// The 16 nibble bytes of blocks b and b + 1 as one vector.
template <BlockType T>
LANES_TARGET_AVX2 inline __m256i nibble_pair(const uint8_t* p) {
  constexpr int64_t bb = bytes_of(T), qs = T == BlockType::Q4_0 ? 2 : 4;
  return _mm256_inserti128_si256(_mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + qs))),
                                 _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + bb + qs)), 1);
}

LANES_TARGET_AVX2 inline float tree_sum_avx2(__m256 lo, __m256 hi) {
  __m256 t8 = _mm256_add_ps(lo, hi);
  __m128 t4 = _mm_add_ps(_mm256_castps256_ps128(t8), _mm256_extractf128_ps(t8, 1));
  __m128 t2 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
  return _mm_cvtss_f32(_mm_add_ss(t2, _mm_movehdup_ps(t2)));
}

LANES_TARGET_AVX2 inline float min_tree_sum_avx2(__m256 mins) {
  __m128 t4 = _mm_add_ps(_mm256_castps256_ps128(mins), _mm256_extractf128_ps(mins, 1));
  __m128 t2 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
  return _mm_cvtss_f32(_mm_add_ss(t2, _mm_movehdup_ps(t2)));
}

// Lane -> index of its block's d in group_scales' result, for 8 lanes starting at block b.
template <BlockType T>
LANES_TARGET_AVX2 inline __m256i d_index_avx2(int first_block) {
  constexpr int step = T == BlockType::Q4_1 ? 2 : 1;
  if constexpr (T == BlockType::Q8_0) return _mm256_set1_epi32(first_block * step);
  int a = first_block * step, b = (first_block + 1) * step;
  return _mm256_setr_epi32(a, a, a, a, b, b, b, b);
}

// Weights stream from memory once per call: the hardware prefetcher alone leaves the kernel
// waiting on DRAM for about half of its time (measured with quant_bench's cold case), so each
// group asks for the bytes 2 KiB ahead of it in its row.
constexpr int64_t kPrefetchAhead = 2048;

template <BlockType T>
LANES_TARGET_AVX2 inline void prefetch_group(const uint8_t* p) {
  _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetchAhead), _MM_HINT_T0);
  if constexpr (T == BlockType::Q8_0) _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetchAhead + 64), _MM_HINT_T0);
}

// ---- AVX2 kernel: R activation rows x C weight columns at a time ---------------------------
//
// Lanes are held as 8-lane vectors: acc[r][c][v] holds lanes 8v..8v+7 (v < 2 for Q4, 4 for Q8_0).

template <BlockType T, int C>
struct Avx2Weights {
  static constexpr int V = lanes_of(T) / 8;
  __m256i w[C][4];  // Q4: lo ab, hi ab, lo cd, hi cd; Q8_0: blocks a, b, c, d
  __m256 dw[C][V], dm[C];
};

// Loads column c's group at p: all 4 blocks, or (pair) only a and b with c and d as zeros.
template <BlockType T, int C>
LANES_TARGET_AVX2 inline void load_avx2(Avx2Weights<T, C>& g, int c, const uint8_t* p, bool pair) {
  constexpr int V = lanes_of(T) / 8;
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  g.dm[c] = pair ? pair_scales<T>(p) : group_scales<T>(p);
  LANES_UNROLL for (int v = 0; v < V; ++v) g.dw[c][v] = _mm256_permutevar8x32_ps(g.dm[c], d_index_avx2<T>(T == BlockType::Q8_0 ? v : 2 * v));
  if constexpr (T == BlockType::Q8_0) {
    LANES_UNROLL for (int b = 0; b < 4; ++b) g.w[c][b] = pair && b >= 2 ? _mm256_setzero_si256() : load256(p + b * bytes_of(T) + 2);
  } else {
    LANES_UNROLL for (int h = 0; h < 2; ++h) {
      __m256i raw = pair && h == 1 ? _mm256_setzero_si256() : nibble_pair<T>(p + 2 * h * bytes_of(T));
      g.w[c][2 * h] = _mm256_and_si256(raw, low4);
      g.w[c][2 * h + 1] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
    }
  }
}

template <BlockType T, int R, int C>
LANES_TARGET_AVX2 void columns_avx2(const ActGroup* act, int64_t groups, const uint8_t* w, int64_t row_bytes, int64_t nb,
                                    float* y, int64_t n, int64_t cols) {
  constexpr int V = lanes_of(T) / 8;
  const __m256i ones16 = _mm256_set1_epi16(1);
  const int64_t full = nb / kGroup, rest = nb % kGroup;
  for (int64_t j = 0; j + C <= cols; j += C, w += C * row_bytes, y += C) {
    __m256 acc[R][C][V], mins[R][C];
    LANES_UNROLL for (int r = 0; r < R; ++r) LANES_UNROLL for (int c = 0; c < C; ++c) {
      LANES_UNROLL for (int v = 0; v < V; ++v) acc[r][c][v] = _mm256_setzero_ps();
      mins[r][c] = _mm256_setzero_ps();
    }
    PaddedGroup pad[C];
    for (int64_t gi = 0; gi < groups; ++gi) {
      Avx2Weights<T, C> g;
      LANES_UNROLL for (int c = 0; c < C; ++c) {
        const uint8_t* p = w + c * row_bytes + gi * kGroup * bytes_of(T);
        prefetch_group<T>(p);
        bool pair = gi == full && rest == 2;
        if (gi == full && rest != 2) p = pad[c].from(T, p, rest);
        load_avx2<T, C>(g, c, p, pair);
      }
      LANES_UNROLL for (int r = 0; r < R; ++r) {
        const ActGroup& a = act[r * groups + gi];
        LANES_UNROLL for (int c = 0; c < C; ++c) {
          LANES_UNROLL for (int v = 0; v < V; ++v) {
            __m256i s;
            if constexpr (T == BlockType::Q8_0) {
              __m256i wb = g.w[c][v], qb = load256(a.q + 32 * v);
              s = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(wb, wb), _mm256_sign_epi8(qb, wb)), ones16);
            } else {
              // Two products of at most 15 * 127 per int16 each: the int16 sum cannot overflow.
              __m256i lo = _mm256_maddubs_epi16(g.w[c][2 * v], load256(a.q + 32 * v));
              __m256i hi = _mm256_maddubs_epi16(g.w[c][2 * v + 1], load256(a.q + 64 + 32 * v));
              s = _mm256_madd_epi16(_mm256_add_epi16(lo, hi), ones16);
              if constexpr (T == BlockType::Q4_0) s = _mm256_add_epi32(s, load256(a.bias + 8 * v));
            }
            __m256 scale = _mm256_mul_ps(g.dw[c][v], _mm256_load_ps(a.scale + 8 * v));
            acc[r][c][v] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), scale, acc[r][c][v]);
          }
          if constexpr (T == BlockType::Q4_1) mins[r][c] = _mm256_fmadd_ps(g.dm[c], _mm256_load_ps(a.min_sum), mins[r][c]);
        }
      }
    }
    LANES_UNROLL for (int r = 0; r < R; ++r) LANES_UNROLL for (int c = 0; c < C; ++c) {
      float v;
      if constexpr (T == BlockType::Q8_0)
        v = tree_sum_avx2(_mm256_add_ps(acc[r][c][0], acc[r][c][2]), _mm256_add_ps(acc[r][c][1], acc[r][c][3]));
      else
        v = tree_sum_avx2(acc[r][c][0], acc[r][c][1]);
      if constexpr (T == BlockType::Q4_1) v = v + min_tree_sum_avx2(mins[r][c]);
      y[r * n + c] = v;
    }
  }
}

// ---- AVX-512 VNNI kernel -------------------------------------------------------------------
//
// acc[r][c][v] holds lanes 16v..16v+15 (v < 1 for Q4, 2 for Q8_0).

LANES_TARGET_AVX512 inline __m512 extend(__m256 v) { return _mm512_castpd_ps(_mm512_zextpd256_pd512(_mm256_castps_pd(v))); }
LANES_TARGET_AVX512 inline __m256 upper_half(__m512 v) {
  return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}

// Loads column c's group at p (all 4 blocks, or with `pair` only a and b, c and d as zeros):
// wv = Q4: low nibbles, high nibbles; Q8_0: blocks ab, cd (+ 128, as unsigned bytes).
template <BlockType T, int C, int V>
LANES_TARGET_AVX512 inline void load_avx512(__m512i (&wv)[C][2], __m512 (&dw)[C][V], __m256 (&dm)[C], int c, const uint8_t* p,
                                            bool pair) {
  const __m512i d_index[2] = {
      T == BlockType::Q8_0   ? _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1)
      : T == BlockType::Q4_1 ? _mm512_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2, 4, 4, 4, 4, 6, 6, 6, 6)
                             : _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
      _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3)};
  dm[c] = pair ? pair_scales<T>(p) : group_scales<T>(p);
  LANES_UNROLL for (int v = 0; v < V; ++v) dw[c][v] = _mm512_permutexvar_ps(d_index[v], extend(dm[c]));
  if constexpr (T == BlockType::Q8_0) {
    const __m512i flip = _mm512_set1_epi8(char(0x80));
    LANES_UNROLL for (int h = 0; h < 2; ++h) {
      if (pair && h == 1) {
        wv[c][h] = _mm512_setzero_si512();  // unused: the pair's lanes 16..31 are skipped
        continue;
      }
      const uint8_t* b0 = p + 2 * h * bytes_of(T) + 2;
      __m512i raw = _mm512_inserti64x4(_mm512_zextsi256_si512(load256(b0)), load256(b0 + bytes_of(T)), 1);
      wv[c][h] = _mm512_xor_si512(raw, flip);
    }
  } else {
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    __m512i raw = pair ? _mm512_zextsi256_si512(nibble_pair<T>(p))
                       : _mm512_inserti64x4(_mm512_zextsi256_si512(nibble_pair<T>(p)), nibble_pair<T>(p + 2 * bytes_of(T)), 1);
    wv[c][0] = _mm512_and_si512(raw, low4);
    wv[c][1] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low4);
  }
}

// acc[r][c][v] holds lanes 16v..16v+15 (v < 1 for Q4, 2 for Q8_0). A pair group of Q8_0 skips
// v = 1, whose lanes would only add zeros (acc is never -0, so adding +0 changes no bit).
template <BlockType T, int R, int C>
LANES_TARGET_AVX512 void columns_avx512(const ActGroup* act, int64_t groups, const uint8_t* w, int64_t row_bytes, int64_t nb,
                                        float* y, int64_t n, int64_t cols) {
  constexpr int V = lanes_of(T) / 16;
  const int64_t full = nb / kGroup, rest = nb % kGroup;
  for (int64_t j = 0; j + C <= cols; j += C, w += C * row_bytes, y += C) {
    __m512 acc[R][C][V];
    __m256 mins[R][C];
    LANES_UNROLL for (int r = 0; r < R; ++r) LANES_UNROLL for (int c = 0; c < C; ++c) {
      LANES_UNROLL for (int v = 0; v < V; ++v) acc[r][c][v] = _mm512_setzero_ps();
      mins[r][c] = _mm256_setzero_ps();
    }
    PaddedGroup pad[C];
    for (int64_t gi = 0; gi < groups; ++gi) {
      __m512i wv[C][2];
      __m512 dw[C][V];
      __m256 dm[C];
      bool pair = gi == full && rest == 2;
      LANES_UNROLL for (int c = 0; c < C; ++c) {
        const uint8_t* p = w + c * row_bytes + gi * kGroup * bytes_of(T);
        prefetch_group<T>(p);
        if (gi == full && rest != 2) p = pad[c].from(T, p, rest);
        load_avx512<T, C, V>(wv, dw, dm, c, p, pair);
      }
      LANES_UNROLL for (int r = 0; r < R; ++r) {
        const ActGroup& a = act[r * groups + gi];
        LANES_UNROLL for (int c = 0; c < C; ++c) {
          LANES_UNROLL for (int v = 0; v < V; ++v) {
            if (V == 2 && v == 1 && pair) continue;
            __m512i start = T == BlockType::Q4_1 ? _mm512_setzero_si512() : _mm512_load_si512(a.bias + 16 * v);
            __m512i s;
            if constexpr (T == BlockType::Q8_0) {
              s = _mm512_dpbusd_epi32(start, wv[c][v], _mm512_load_si512(a.q + 64 * v));
            } else {
              s = _mm512_dpbusd_epi32(start, wv[c][0], _mm512_load_si512(a.q));
              s = _mm512_dpbusd_epi32(s, wv[c][1], _mm512_load_si512(a.q + 64));
            }
            __m512 scale = _mm512_mul_ps(dw[c][v], _mm512_load_ps(a.scale + 16 * v));
            acc[r][c][v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, acc[r][c][v]);
          }
          if constexpr (T == BlockType::Q4_1) mins[r][c] = _mm256_fmadd_ps(dm[c], _mm256_load_ps(a.min_sum), mins[r][c]);
        }
      }
    }
    LANES_UNROLL for (int r = 0; r < R; ++r) LANES_UNROLL for (int c = 0; c < C; ++c) {
      __m512 lanes16 = acc[r][c][0];
      if constexpr (V == 2) lanes16 = _mm512_add_ps(acc[r][c][0], acc[r][c][1]);
      float v = tree_sum_avx2(_mm512_castps512_ps256(lanes16), upper_half(lanes16));
      if constexpr (T == BlockType::Q4_1) v = v + min_tree_sum_avx2(mins[r][c]);
      y[r * n + c] = v;
    }
  }
}
#endif  // __x86_64__

// ---- tiling over a column range ------------------------------------------------------------

using TileFn = void (*)(const ActGroup*, int64_t, const uint8_t*, int64_t, int64_t, float*, int64_t, int64_t);

// Kernels over a run of columns, C at a time, for R = 1..max_rows activation rows.
struct TileSet {
  int max_rows = 0;
  int cols = 0;
  TileFn wide[4] = {};    // [R - 1], C = cols
  TileFn narrow[4] = {};  // [R - 1], C = 1
};

#if defined(__x86_64__)
template <BlockType T>
TileSet avx2_tiles() {
  if constexpr (T == BlockType::Q8_0)
    return {2, 1, {columns_avx2<T, 1, 1>, columns_avx2<T, 2, 1>}, {columns_avx2<T, 1, 1>, columns_avx2<T, 2, 1>}};
  return {2, 2, {columns_avx2<T, 1, 2>, columns_avx2<T, 2, 2>}, {columns_avx2<T, 1, 1>, columns_avx2<T, 2, 1>}};
}
template <BlockType T>
TileSet avx512_tiles() {
  return {4,
          2,
          {columns_avx512<T, 1, 2>, columns_avx512<T, 2, 2>, columns_avx512<T, 3, 2>, columns_avx512<T, 4, 2>},
          {columns_avx512<T, 1, 1>, columns_avx512<T, 2, 1>, columns_avx512<T, 3, 1>, columns_avx512<T, 4, 1>}};
}
#endif

void columns_tiled(const TileSet& tiles, BlockType t, const ActGroup* act, int64_t m, int64_t groups, const uint8_t* w,
                   int64_t nb, int64_t n, int64_t j0, int64_t j1, float* y) {
  int64_t row_bytes = nb * bytes_of(t);
  for (int64_t i0 = 0; i0 < m; i0 += tiles.max_rows) {
    int r = int(std::min<int64_t>(tiles.max_rows, m - i0));
    const ActGroup* a = act + i0 * groups;
    float* yr = y + i0 * n;
    int64_t wide = (j1 - j0) / tiles.cols * tiles.cols, j = j0 + wide;
    tiles.wide[r - 1](a, groups, w + j0 * row_bytes, row_bytes, nb, yr + j0, n, wide);
    if (j < j1) tiles.narrow[r - 1](a, groups, w + j * row_bytes, row_bytes, nb, yr + j, n, j1 - j);
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

// The same level as every CPU kernel: AVX-512 needs VNNI, AVX2 needs F16C (simd_level).
QuantKernel best_kernel() {
  switch (simd_level()) {
    case SimdLevel::Avx512: return QuantKernel::Avx512Vnni;
    case SimdLevel::Avx2: return QuantKernel::Avx2;
    default: return QuantKernel::Scalar;
  }
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
thread_local std::vector<ActGroup> t_act;
constexpr size_t kKeepActGroups = (size_t(1) << 20) / sizeof(ActGroup);

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
  int64_t nb = k / kBlock, groups = (nb + kGroup - 1) / kGroup;
  if (nb == 0) {
    std::fill(y, y + m * n, 0.f);
    return;
  }
  QuantKernel kernel = current_kernel();
  std::vector<ActGroup>& act = t_act;
  act.resize(size_t(m * groups));
  ActGroup* a = act.data();
  auto quantize_rows = [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
#if defined(__x86_64__)
      if (kernel != QuantKernel::Scalar) {
        quantize_row_avx2(type, x + i * x_row_stride, nb, a + i * groups);
        continue;
      }
#endif
      quantize_row_scalar(type, x + i * x_row_stride, nb, a + i * groups);
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
    run(n, grain, [&](int64_t j0, int64_t j1) { columns_scalar(type, a, m, groups, wb, nb, n, j0, j1, y); });
  else
    run(n, grain, [&](int64_t j0, int64_t j1) { columns_tiled(tiles, type, a, m, groups, wb, nb, n, j0, j1, y); });
  if (act.capacity() > kKeepActGroups) std::vector<ActGroup>().swap(act);
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
