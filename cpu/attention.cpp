#include "attention.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "../ffi/src/status.hpp"
#include "compute_pool.hpp"
#include "cpu_features.hpp"
#include "exp_poly.hpp"
#include "tensor_access.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace lanes::cpu {
namespace {

constexpr int kBlockKeys = 64;         // keys per block (see attention.hpp)
constexpr int64_t kQueryChunk = 16;    // query positions of one tile: K/V blocks are widened once for them
constexpr int64_t kSplitBelowTiles = 8;  // fewer tiles than this: the keys are split across chunks too
// The least work (multiply-adds of scores and weighted values) a chunk is handed to a pool
// thread for: below it the hand-off costs more than the chunk (a small model's decode step,
// 8 heads over 80 keys of 16, took twice as long split over two threads as on one).
constexpr int64_t kMinChunkMacs = int64_t(1) << 16;

// Units of `unit_macs` each per chunk so that a chunk is worth a hand-off.
int64_t grain_of(int64_t unit_macs) { return std::max<int64_t>(1, kMinChunkMacs / std::max<int64_t>(1, unit_macs)); }

int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

// ---- the canonical scalar pieces (every SIMD path matches them bit for bit) ----------------

constexpr float kExpLow = -87.3365447505531f;  // below: e^x is subnormal or zero in float; 0
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
constexpr float kExpPoly[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                               4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

// e^x for x <= 0 (Cephes' range reduction and polynomial, about 1 ulp); NaN stays NaN.
float exp_nonpositive(float x) {
  if (x != x) return x;
  bool underflow = x < kExpLow;
  x = std::max(kExpLow, x);
  float fx = std::floor(std::fma(x, kLog2e, 0.5f));
  x = std::fma(-fx, kLn2Hi, x);
  x = std::fma(-fx, kLn2Lo, x);
  float y = kExpPoly[0];
  for (int i = 1; i < 6; ++i) y = std::fma(y, x, kExpPoly[i]);
  y = std::fma(y, x * x, x + 1.0f);
  y = y * bits_float(uint32_t(static_cast<int32_t>(fx) + 127) << 23);
  return underflow ? 0.0f : y;
}

// Pairwise sum of 16 lanes: l + 8, l + 4, l + 2, l + 1.
float tree16(const float* a) {
  float t8[8], t4[4];
  for (int l = 0; l < 8; ++l) t8[l] = a[l] + a[l + 8];
  for (int l = 0; l < 4; ++l) t4[l] = t8[l] + t8[l + 4];
  return (t4[0] + t4[2]) + (t4[1] + t4[3]);
}

// Scores of one query row against n <= 64 keys (rows of `keys`, key_stride floats apart, dp
// floats each, zero-padded to a multiple of 16); returns their max.
float scores_scalar(const float* q, const float* keys, int64_t key_stride, int64_t dp, int n, float scale, float* out) {
  float m = -INFINITY;
  for (int j = 0; j < n; ++j) {
    const float* k = keys + j * key_stride;
    float lanes[16] = {};
    for (int64_t c = 0; c < dp; c += 16)
      for (int l = 0; l < 16; ++l) lanes[l] = std::fma(q[c + l], k[c + l], lanes[l]);
    out[j] = tree16(lanes) * scale;
    m = out[j] > m ? out[j] : m;
  }
  return m;
}

// p_j = e^(score_j - m) for j < n (zeros up to the next multiple of 16); returns their sum.
float exp_sum_scalar(const float* scores, int n, float m, float* p) {
  float lanes[16] = {};
  for (int c = 0; c < n; c += 16)
    for (int l = 0; l < 16; ++l) {
      int j = c + l;
      p[j] = j < n ? exp_nonpositive(scores[j] - m) : 0.0f;
      lanes[l] = lanes[l] + p[j];
    }
  return tree16(lanes);
}

// a[d] = Σ_j p_j v_j[d] over n keys, fma in key order from +0; dvp floats (a multiple of 16).
void weighted_scalar(const float* p, int n, const float* values, int64_t value_stride, int64_t dvp, float* a) {
  std::fill(a, a + dvp, 0.0f);
  for (int j = 0; j < n; ++j) {
    const float* v = values + j * value_stride;
    for (int64_t d = 0; d < dvp; ++d) a[d] = std::fma(p[j], v[d], a[d]);
  }
}

// A row's running result over the blocks folded so far.
struct RowState {
  float m, s;
  float* a;  // dvp floats
  bool started;
};

// Folds block (m, s, a) into the row's state.
void fold(RowState& st, float m, float s, const float* a, int64_t dvp) {
  if (!st.started) {
    st.m = m, st.s = s, st.started = true;
    if (st.a != a) std::copy(a, a + dvp, st.a);
    return;
  }
  float mx = std::max(st.m, m);
  float alpha = exp_nonpositive(st.m - mx), beta = exp_nonpositive(m - mx);
  st.m = mx;
  st.s = std::fma(st.s, alpha, s * beta);
  for (int64_t d = 0; d < dvp; ++d) st.a[d] = std::fma(st.a[d], alpha, a[d] * beta);
}

// ---- AVX2 + FMA ----------------------------------------------------------------------------

#if defined(__x86_64__)
#define LANES_ATT_AVX2 __attribute__((target("avx2,fma,f16c")))
#define LANES_ATT_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq")))

LANES_ATT_AVX2 inline __m256 exp_avx2(__m256 x) {
  const __m256 lo = _mm256_set1_ps(kExpLow);
  __m256 underflow = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  x = _mm256_max_ps(lo, x);  // NaN stays: maxps returns its second operand for NaN
  __m256 fx = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(kLog2e), _mm256_set1_ps(0.5f)));
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(kLn2Hi), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(kLn2Lo), x);
  __m256 y = _mm256_set1_ps(kExpPoly[0]);
  for (int i = 1; i < 6; ++i) y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(kExpPoly[i]));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  __m256i k = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
  y = _mm256_mul_ps(y, _mm256_castsi256_ps(k));
  return _mm256_andnot_ps(underflow, y);
}

// tree16 of lanes lo (0..7) and hi (8..15).
LANES_ATT_AVX2 inline float tree16_avx2(__m256 lo, __m256 hi) {
  __m256 t8 = _mm256_add_ps(lo, hi);
  __m128 t4 = _mm_add_ps(_mm256_castps256_ps128(t8), _mm256_extractf128_ps(t8, 1));
  __m128 t2 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
  return _mm_cvtss_f32(_mm_add_ss(t2, _mm_movehdup_ps(t2)));
}

LANES_ATT_AVX2 float scores_avx2(const float* q, const float* keys, int64_t key_stride, int64_t dp, int n, float scale, float* out) {
  float m = -INFINITY;
  for (int j = 0; j < n; ++j) {
    const float* k = keys + j * key_stride;
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    for (int64_t c = 0; c < dp; c += 16) {
      lo = _mm256_fmadd_ps(_mm256_loadu_ps(q + c), _mm256_loadu_ps(k + c), lo);
      hi = _mm256_fmadd_ps(_mm256_loadu_ps(q + c + 8), _mm256_loadu_ps(k + c + 8), hi);
    }
    out[j] = tree16_avx2(lo, hi) * scale;
    m = out[j] > m ? out[j] : m;
  }
  return m;
}

LANES_ATT_AVX2 float exp_sum_avx2(const float* scores, int n, float m, float* p) {
  __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps(), vm = _mm256_set1_ps(m);
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int c = 0; c < n; c += 16) {
    __m256 keep0 = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n - c), lane));
    __m256 keep1 = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n - c - 8), lane));
    __m256 e0 = _mm256_and_ps(keep0, exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(scores + c), vm)));
    __m256 e1 = _mm256_and_ps(keep1, exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(scores + c + 8), vm)));
    _mm256_storeu_ps(p + c, e0);
    _mm256_storeu_ps(p + c + 8, e1);
    lo = _mm256_add_ps(lo, e0);
    hi = _mm256_add_ps(hi, e1);
  }
  return tree16_avx2(lo, hi);
}

LANES_ATT_AVX2 void weighted_avx2(const float* p, int n, const float* values, int64_t value_stride, int64_t dvp, float* a) {
  for (int64_t d0 = 0; d0 < dvp; d0 += 32) {
    int nv = int(std::min<int64_t>(4, (dvp - d0) / 8));
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int j = 0; j < n; ++j) {
      __m256 pj = _mm256_set1_ps(p[j]);
      const float* v = values + j * value_stride + d0;
      for (int u = 0; u < 4; ++u)
        if (u < nv) acc[u] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(v + 8 * u), acc[u]);
    }
    for (int u = 0; u < nv; ++u) _mm256_storeu_ps(a + d0 + 8 * u, acc[u]);
  }
}

// ---- AVX-512 -------------------------------------------------------------------------------

LANES_ATT_AVX512 inline __m512 exp_avx512(__m512 x) {
  const __m512 lo = _mm512_set1_ps(kExpLow);
  __mmask16 underflow = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
  x = _mm512_max_ps(lo, x);
  __m512 fx = _mm512_fmadd_ps(x, _mm512_set1_ps(kLog2e), _mm512_set1_ps(0.5f));
  fx = _mm512_roundscale_ps(fx, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(kLn2Hi), x);
  x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(kLn2Lo), x);
  __m512 y = _mm512_set1_ps(kExpPoly[0]);
  for (int i = 1; i < 6; ++i) y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(kExpPoly[i]));
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(x, x), _mm512_add_ps(x, _mm512_set1_ps(1.0f)));
  __m512i k = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(fx), _mm512_set1_epi32(127)), 23);
  y = _mm512_mul_ps(y, _mm512_castsi512_ps(k));
  return _mm512_maskz_mov_ps(__mmask16(~underflow), y);
}

LANES_ATT_AVX512 inline float tree16_avx512(__m512 v) {
  __m256 lo = _mm512_castps512_ps256(v);
  __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
  return tree16_avx2(lo, hi);
}

// tree16 of each of 16 vectors at once: result lane j is tree16(acc[j]). Each step adds the
// same lane pairs as tree16, only gathered across vectors by shuffles.
LANES_ATT_AVX512 inline __m512 tree16_x16(__m512 (&acc)[16]) {
  __m512 x[8], z[4], w[2];
  for (int i = 0; i < 8; ++i) {  // lanes 0..7: t8 of key 2i; 8..15: t8 of key 2i + 1
    __m512 a = acc[2 * i], b = acc[2 * i + 1];
    x[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xee));
  }
  for (int i = 0; i < 4; ++i) {  // 128-bit chunk c: t4 of key 4i + c
    __m512 a = x[2 * i], b = x[2 * i + 1];
    z[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x88), _mm512_shuffle_f32x4(a, b, 0xdd));
  }
  for (int i = 0; i < 2; ++i) {  // chunk c: t2 of key 8i + c (lanes 0, 1), of key 8i + 4 + c (2, 3)
    __m512 a = z[2 * i], b = z[2 * i + 1];
    w[i] = _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x44), _mm512_shuffle_ps(a, b, 0xee));
  }
  // chunk c: keys c, 4 + c, 8 + c, 12 + c.
  __m512 r = _mm512_add_ps(_mm512_shuffle_ps(w[0], w[1], 0x88), _mm512_shuffle_ps(w[0], w[1], 0xdd));
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(order, r);
}

LANES_ATT_AVX512 float scores_avx512(const float* q, const float* keys, int64_t key_stride, int64_t dp, int n, float scale,
                                     float* out) {
  __m512 vmax = _mm512_set1_ps(-INFINITY), vscale = _mm512_set1_ps(scale);
  for (int j0 = 0; j0 < n; j0 += 16) {
    int nk = std::min(16, n - j0);
    const float* k = keys + j0 * key_stride;
    __m512 acc[16];
    for (int u = 0; u < 16; ++u) acc[u] = _mm512_setzero_ps();
    for (int64_t c = 0; c < dp; c += 16) {
      __m512 qv = _mm512_loadu_ps(q + c);
      // Lanes of keys past n read key 0 again and are dropped.
      for (int u = 0; u < 16; ++u) acc[u] = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k + (u < nk ? u : 0) * key_stride + c), acc[u]);
    }
    __m512 s = _mm512_mul_ps(tree16_x16(acc), vscale);
    __mmask16 keep = __mmask16((1u << nk) - 1);
    _mm512_mask_storeu_ps(out + j0, keep, s);
    vmax = _mm512_mask_max_ps(vmax, keep, vmax, s);
  }
  return _mm512_reduce_max_ps(vmax);
}

LANES_ATT_AVX512 float exp_sum_avx512(const float* scores, int n, float m, float* p) {
  __m512 sum = _mm512_setzero_ps(), vm = _mm512_set1_ps(m);
  for (int c = 0; c < n; c += 16) {
    __mmask16 keep = n - c >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - c)) - 1);
    __m512 e = _mm512_maskz_mov_ps(keep, exp_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(keep, scores + c), vm)));
    _mm512_storeu_ps(p + c, e);
    sum = _mm512_add_ps(sum, e);
  }
  return tree16_avx512(sum);
}

template <int NV>
LANES_ATT_AVX512 inline void weighted_run_avx512(const float* p, int n, const float* values, int64_t value_stride, float* a) {
  __m512 acc[NV];
  for (int u = 0; u < NV; ++u) acc[u] = _mm512_setzero_ps();
  for (int j = 0; j < n; ++j) {
    __m512 pj = _mm512_set1_ps(p[j]);
    const float* v = values + j * value_stride;
    for (int u = 0; u < NV; ++u) acc[u] = _mm512_fmadd_ps(pj, _mm512_loadu_ps(v + 16 * u), acc[u]);
  }
  for (int u = 0; u < NV; ++u) _mm512_storeu_ps(a + 16 * u, acc[u]);
}

LANES_ATT_AVX512 void weighted_avx512(const float* p, int n, const float* values, int64_t value_stride, int64_t dvp, float* a) {
  int64_t d0 = 0;
  for (; d0 + 64 <= dvp; d0 += 64) weighted_run_avx512<4>(p, n, values + d0, value_stride, a + d0);
  switch ((dvp - d0) / 16) {
    case 3: weighted_run_avx512<3>(p, n, values + d0, value_stride, a + d0); break;
    case 2: weighted_run_avx512<2>(p, n, values + d0, value_stride, a + d0); break;
    case 1: weighted_run_avx512<1>(p, n, values + d0, value_stride, a + d0); break;
    default: break;
  }
}
#endif  // __x86_64__

// ---- widening rows of a storage type into float32 ------------------------------------------

// dst[0, n) = src[0, n * stride) widened, dst[n, padded) = 0.
template <class T>
void widen_scalar(const T* src, int64_t stride, int64_t n, float* dst, int64_t padded) {
  for (int64_t d = 0; d < n; ++d) dst[d] = static_cast<float>(up(src[d * stride]));
  std::fill(dst + n, dst + padded, 0.0f);
}

#if defined(__x86_64__)
template <class T>
LANES_ATT_AVX2 void widen_avx2(const T* src, int64_t n, float* dst, int64_t padded) {
  int64_t d = 0;
  for (; d + 8 <= n; d += 8) {
    __m256 v;
    if constexpr (std::is_same_v<T, float>) {
      v = _mm256_loadu_ps(src + d);
    } else {
      __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + d));
      if constexpr (std::is_same_v<T, f16>) v = _mm256_cvtph_ps(h);
      else v = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));  // bfloat16: a float32's top half
    }
    _mm256_storeu_ps(dst + d, v);
  }
  widen_scalar(src + d, 1, n - d, dst + d, padded - d);
}

template <class T>
LANES_ATT_AVX512 void widen_avx512(const T* src, int64_t n, float* dst, int64_t padded) {
  for (int64_t d = 0; d < padded; d += 16) {
    __mmask16 keep = n - d >= 16 ? __mmask16(0xffff) : n > d ? __mmask16((1u << (n - d)) - 1) : __mmask16(0);
    __m512 v;
    if constexpr (std::is_same_v<T, float>) {
      v = _mm512_maskz_loadu_ps(keep, src + d);
    } else {
      __m256i h = _mm256_maskz_loadu_epi16(keep, src + d);
      if constexpr (std::is_same_v<T, f16>) v = _mm512_cvtph_ps(h);
      else v = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));  // bfloat16: a float32's top half
    }
    _mm512_storeu_ps(dst + d, v);
  }
}
#endif

// ---- path selection ------------------------------------------------------------------------

struct Paths {
  float (*scores)(const float*, const float*, int64_t, int64_t, int, float, float*);
  float (*exp_sum)(const float*, int, float, float*);
  void (*weighted)(const float*, int, const float*, int64_t, int64_t, float*);
  SimdLevel level;
};

Paths paths_for(SimdLevel level) {
#if defined(__x86_64__)
  if (level == SimdLevel::Avx512) return {scores_avx512, exp_sum_avx512, weighted_avx512, level};
  if (level == SimdLevel::Avx2) return {scores_avx2, exp_sum_avx2, weighted_avx2, level};
#endif
  return {scores_scalar, exp_sum_scalar, weighted_scalar, SimdLevel::Scalar};
}

template <class T>
void widen(SimdLevel level, const T* src, int64_t stride, int64_t n, float* dst, int64_t padded) {
#if defined(__x86_64__)
  if (stride == 1 && level == SimdLevel::Avx512) return widen_avx512(src, n, dst, padded);
  if (stride == 1 && level == SimdLevel::Avx2) return widen_avx2(src, n, dst, padded);
#endif
  widen_scalar(src, stride, n, dst, padded);
}

// ---- the kernel ----------------------------------------------------------------------------

// Element (b, h, j, 0) of a [B, H, L, D] operand read in place through its strides.
template <class T>
struct Rows4 {
  const T* base;
  int64_t sb, sh, sl, sd;
  const T* at(int64_t b, int64_t h, int64_t j) const { return base + b * sb + h * sh + j * sl; }
};

template <class T>
Rows4<T> rows4(const TensorArg& a) {
  Shape st = a.strides.empty() ? contiguous_strides(a.shape) : a.strides;
  return Rows4<T>{cpu::base<T>(a), st[0], st[1], st[2], st[3]};
}

// What both computations share: sizes, options, and which keys a query row sees.
struct Geometry {
  int64_t B, H, Lq, D, Hk, Dv, group;
  float scale;
  bool causal;
  int64_t fixed_keys, max_keys;
  const int32_t* key_lengths;

  int64_t keys_of(int64_t b) const { return key_lengths ? key_lengths[b] : fixed_keys; }
  // Causal masking aligned to the end: query i sees keys up to i + (Lk - Lq).
  int64_t visible(int64_t i, int64_t lk) const { return causal ? std::min(lk, std::max<int64_t>(0, i + lk - Lq + 1)) : lk; }
};

template <class T>
struct Problem : Geometry {
  Rows4<T> q, k, v;
  int64_t dp, dvp;
  int64_t query_chunks, blocks, key_chunks, blocks_per_chunk;
  Paths paths;
  T* y;

  // A block's partial result in split mode: {m, s, a[dvp]} for (row, block).
  int64_t partial_floats() const { return dvp + 2; }
};

// Scratch of the thread running a tile, grown as needed and kept between calls.
struct TileScratch {
  std::vector<float> q, a, states, keys, values, scores, p, block_a;
  std::vector<RowState> rows;
};
thread_local TileScratch t_tile;
thread_local std::vector<float> t_partials;

template <class T>
void write_row(const Problem<T>& pb, const RowState& st, int64_t row) {
  T* out = pb.y + row * pb.Dv;
  float inv = st.started && st.s > 0 ? 1.0f / st.s : 0.0f;
  for (int64_t d = 0; d < pb.Dv; ++d) out[d] = down<T>(st.started ? st.a[d] * inv : 0.0f);
}

// Query positions [i0, i1) of every query head over KV head hk of batch entry b, against key
// blocks [blk0, blk1). Without `partials` the blocks fold as they come and the rows are written;
// with it, each block's partial result is stored for fold_partials.
template <class T>
void run_tile(const Problem<T>& pb, int64_t b, int64_t hk, int64_t i0, int64_t i1, int64_t blk0, int64_t blk1, float* partials) {
  TileScratch& s = t_tile;
  const int64_t ni = i1 - i0, rows = pb.group * ni, dp = pb.dp, dvp = pb.dvp;
  const int64_t lk = pb.keys_of(b);
  const int64_t tile_keys = pb.visible(i1 - 1, lk);
  if (s.q.size() < size_t(rows * dp)) s.q.resize(size_t(rows * dp));
  if (s.states.size() < size_t(rows * dvp)) s.states.resize(size_t(rows * dvp));
  if (s.rows.size() < size_t(rows)) s.rows.resize(size_t(rows));
  if (s.keys.size() < size_t(kBlockKeys * dp)) s.keys.resize(size_t(kBlockKeys * dp));
  if (s.values.size() < size_t(kBlockKeys * dvp)) s.values.resize(size_t(kBlockKeys * dvp));
  if (s.block_a.size() < size_t(dvp)) s.block_a.resize(size_t(dvp));
  s.scores.resize(kBlockKeys);
  s.p.resize(kBlockKeys);
  for (int64_t g = 0; g < pb.group; ++g)
    for (int64_t i = i0; i < i1; ++i) {
      int64_t r = g * ni + (i - i0);
      widen(pb.paths.level, pb.q.at(b, hk * pb.group + g, i), pb.q.sd, pb.D, s.q.data() + r * dp, dp);
      s.rows[size_t(r)] = RowState{0.0f, 0.0f, s.states.data() + r * dvp, false};
    }
  // float32 rows that are contiguous and already a multiple of 16 long are read in place.
  const bool keys_in_place = std::is_same_v<T, float> && pb.k.sd == 1 && dp == pb.D;
  const bool values_in_place = std::is_same_v<T, float> && pb.v.sd == 1 && dvp == pb.Dv;
  for (int64_t blk = blk0; blk < blk1; ++blk) {
    const int64_t j0 = blk * kBlockKeys;
    if (j0 >= tile_keys) break;
    const int64_t jn = std::min<int64_t>(kBlockKeys, tile_keys - j0);
    const float *keys, *values;
    int64_t key_stride = dp, value_stride = dvp;
    if (keys_in_place) {
      keys = reinterpret_cast<const float*>(pb.k.at(b, hk, j0));
      key_stride = pb.k.sl;
    } else {
      for (int64_t j = 0; j < jn; ++j) widen(pb.paths.level, pb.k.at(b, hk, j0 + j), pb.k.sd, pb.D, s.keys.data() + j * dp, dp);
      keys = s.keys.data();
    }
    if (values_in_place) {
      values = reinterpret_cast<const float*>(pb.v.at(b, hk, j0));
      value_stride = pb.v.sl;
    } else {
      for (int64_t j = 0; j < jn; ++j) widen(pb.paths.level, pb.v.at(b, hk, j0 + j), pb.v.sd, pb.Dv, s.values.data() + j * dvp, dvp);
      values = s.values.data();
    }
    for (int64_t g = 0; g < pb.group; ++g)
      for (int64_t i = i0; i < i1; ++i) {
        int64_t r = g * ni + (i - i0);
        int64_t seen = pb.visible(i, lk);
        if (seen <= j0) continue;
        int n = int(std::min<int64_t>(seen - j0, kBlockKeys));
        float m = pb.paths.scores(s.q.data() + r * dp, keys, key_stride, dp, n, pb.scale, s.scores.data());
        float sum = pb.paths.exp_sum(s.scores.data(), n, m, s.p.data());
        RowState& st = s.rows[size_t(r)];
        if (partials) {
          int64_t row = (b * pb.H + hk * pb.group + g) * pb.Lq + i;
          float* slot = partials + (row * pb.blocks + blk) * pb.partial_floats();
          slot[0] = m, slot[1] = sum;
          pb.paths.weighted(s.p.data(), n, values, value_stride, dvp, slot + 2);
        } else {
          float* a = st.started ? s.block_a.data() : st.a;
          pb.paths.weighted(s.p.data(), n, values, value_stride, dvp, a);
          fold(st, m, sum, a, dvp);
        }
      }
  }
  if (partials) return;
  for (int64_t g = 0; g < pb.group; ++g)
    for (int64_t i = i0; i < i1; ++i) write_row(pb, s.rows[size_t(g * ni + (i - i0))], (b * pb.H + hk * pb.group + g) * pb.Lq + i);
}

// Folds the stored block results of each output row in block order and writes the row.
template <class T>
void fold_partials(const Problem<T>& pb, const float* partials, int64_t row0, int64_t row1) {
  TileScratch& s = t_tile;
  if (s.states.size() < size_t(pb.dvp)) s.states.resize(size_t(pb.dvp));
  for (int64_t row = row0; row < row1; ++row) {
    int64_t i = row % pb.Lq, b = row / (pb.Lq * pb.H);
    int64_t seen = pb.visible(i, pb.keys_of(b));
    RowState st{0.0f, 0.0f, s.states.data(), false};
    for (int64_t blk = 0; blk * kBlockKeys < seen; ++blk) {
      const float* slot = partials + (row * pb.blocks + blk) * pb.partial_floats();
      fold(st, slot[0], slot[1], slot + 2, pb.dvp);
    }
    write_row(pb, st, row);
  }
}

// ---- float16 keys and values: one key at a time (see attention.hpp) ------------------------

constexpr int64_t kDotLanes = 64;

// 2^(i/32) as doubles, less i << 47 (glibc's __exp2f_data table).
constexpr uint64_t kExp2Table[32] = {
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51, 0x3fef72b83c7d517b, 0x3fef54873168b9aa,
    0x3fef387a6e756238, 0x3fef1e9df51fdee1, 0x3fef06fe0a31b715, 0x3feef1a7373aa9cb, 0x3feedea64c123422, 0x3feece086061892d,
    0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429, 0x3feea47eb03a5585, 0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74,
    0x3feea11473eb0187, 0x3feea589994cce13, 0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d,
    0x3feee89f995ad3ad, 0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069, 0x3fef5818dcfba487, 0x3fef7c97337b9b5f,
    0x3fefa4afa2a490da, 0x3fefd0765b6e4540};

// e^x with the bits of glibc's expf (its FMA build, the one x86 CPUs with FMA run) for every
// float x, since llama.cpp's softmax weights come from the C library's expf: x / ln 2 = k/32 + r,
// e^x = 2^(k/32) (the table) times a cubic in r, all in double. Checked against glibc 2.36 over
// all 2^32 inputs.
float exp_glibc(float x) {
  const uint32_t top = (float_bits(x) >> 20) & 0x7ff;
  if (top >= 0x42b) {  // |x| >= 88, inf or NaN
    if (float_bits(x) == 0xff800000u) return 0.0f;
    if (top >= 0x7f8) return x + x;
    if (x > 0x1.62e42ep6f) return INFINITY;
    if (x < -0x1.9fe368p6f) return 0.0f;
    if (x < -0x1.9d1d9ep6f) return 0x1p-149f;
  }
  const double inv_ln2_32 = 0x1.71547652b82fep+5, shift = 0x1.8p+52;
  const double xd = x;
  double kd = std::fma(inv_ln2_32, xd, shift);  // k rounded to an integer in the low bits
  uint64_t ki;
  std::memcpy(&ki, &kd, 8);
  kd -= shift;
  const double r = std::fma(inv_ln2_32, xd, -kd);
  const uint64_t t = kExp2Table[ki % 32] + (ki << 47);
  double s;
  std::memcpy(&s, &t, 8);
  const double z = std::fma(r, 0x1.c6af84b912394p-20, 0x1.ebfce50fac4f3p-13);
  const double r2 = r * r;
  double y = std::fma(r, 0x1.62e42ff0c52d6p-6, 1.0);
  y = std::fma(z, r2, y);
  return static_cast<float>(y * s);
}

// The 64 lanes of a dot product folded as llama.cpp's ggml_vec_dot_f16 folds its four 16-lane
// vectors: (v0 + v2) + (v1 + v3), then tree16.
float fold64(const float* acc) {
  float a[16];
  for (int l = 0; l < 16; ++l) a[l] = (acc[l] + acc[l + 32]) + (acc[l + 16] + acc[l + 48]);
  return tree16(a);
}

// Adds the elements past the last whole 64 as ggml_vec_dot_f16 does: float products summed in double.
float dot_tail(float folded, const float* q, const f16* k, int64_t from, int64_t D) {
  if (from == D) return folded;
  double sum = folded;
  for (int64_t d = from; d < D; ++d) sum += static_cast<double>(q[d] * to_float(k[d]));
  return static_cast<float>(sum);
}

// The dot in `Lanes` lanes (lane c: fma over d = c, c + Lanes, ... in order, from +0), folded.
template <int64_t Lanes, float (*Fold)(const float*)>
float dot_f16_lanes_scalar(const float* q, const f16* k, int64_t D) {
  float acc[Lanes] = {};
  const int64_t whole = D / Lanes * Lanes;
  for (int64_t c = 0; c < whole; c += Lanes)
    for (int64_t l = 0; l < Lanes; ++l) acc[l] = std::fma(q[c + l], to_float(k[c + l]), acc[l]);
  return dot_tail(Fold(acc), q, k, whole, D);
}

// llama.cpp's AVX2 build (haswell) takes the dot in 32 lanes: four 8-lane vectors folded as
// (v0 + v2) + (v1 + v3), then lanes l + 4, then (0 + 1) + (2 + 3) (two horizontal adds).
constexpr int64_t kNarrowDotLanes = 32;

float fold32(const float* acc) {
  float a[8], t[4];
  for (int l = 0; l < 8; ++l) a[l] = (acc[l] + acc[l + 16]) + (acc[l + 8] + acc[l + 24]);
  for (int l = 0; l < 4; ++l) t[l] = a[l] + a[l + 4];
  return (t[0] + t[1]) + (t[2] + t[3]);
}

constexpr auto dot_f16_scalar = dot_f16_lanes_scalar<kDotLanes, fold64>;
constexpr auto dot_f16_narrow_scalar = dot_f16_lanes_scalar<kNarrowDotLanes, fold32>;

void scale_f16_scalar(f16* y, int64_t n, float s) {
  for (int64_t d = 0; d < n; ++d) y[d] = to_f16(to_float(y[d]) * s);
}

void mad_f16_scalar(f16* y, const f16* v, int64_t n, float s) {
  for (int64_t d = 0; d < n; ++d) y[d] = to_f16(std::fma(to_float(v[d]), s, to_float(y[d])));
}

#if defined(__x86_64__)
LANES_ATT_AVX2 inline __m256 load8_f16(const f16* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
LANES_ATT_AVX2 inline void store8_f16(f16* p, __m256 v) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}

LANES_ATT_AVX2 float dot_f16_avx2(const float* q, const f16* k, int64_t D) {
  __m256 acc[8];
  for (__m256& a : acc) a = _mm256_setzero_ps();
  const int64_t whole = D / kDotLanes * kDotLanes;
  for (int64_t c = 0; c < whole; c += kDotLanes)
    for (int u = 0; u < 8; ++u) acc[u] = _mm256_fmadd_ps(_mm256_loadu_ps(q + c + 8 * u), load8_f16(k + c + 8 * u), acc[u]);
  // 16-lane vector j of fold64 is acc[2j] (its lanes 0..7) and acc[2j + 1] (8..15).
  __m256 lo = _mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[2], acc[6]));
  __m256 hi = _mm256_add_ps(_mm256_add_ps(acc[1], acc[5]), _mm256_add_ps(acc[3], acc[7]));
  return dot_tail(tree16_avx2(lo, hi), q, k, whole, D);
}

LANES_ATT_AVX2 float dot_f16_narrow_avx2(const float* q, const f16* k, int64_t D) {
  __m256 acc[4];
  for (__m256& a : acc) a = _mm256_setzero_ps();
  const int64_t whole = D / kNarrowDotLanes * kNarrowDotLanes;
  for (int64_t c = 0; c < whole; c += kNarrowDotLanes)
    for (int u = 0; u < 4; ++u) acc[u] = _mm256_fmadd_ps(_mm256_loadu_ps(q + c + 8 * u), load8_f16(k + c + 8 * u), acc[u]);
  const __m256 a = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]));
  const __m128 t = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  const __m128 pairs = _mm_hadd_ps(t, t);
  return dot_tail(_mm_cvtss_f32(_mm_hadd_ps(pairs, pairs)), q, k, whole, D);
}

LANES_ATT_AVX2 void scale_f16_avx2(f16* y, int64_t n, float s) {
  const __m256 vs = _mm256_set1_ps(s);
  int64_t d = 0;
  for (; d + 8 <= n; d += 8) store8_f16(y + d, _mm256_mul_ps(load8_f16(y + d), vs));
  scale_f16_scalar(y + d, n - d, s);
}

LANES_ATT_AVX2 void mad_f16_avx2(f16* y, const f16* v, int64_t n, float s) {
  const __m256 vs = _mm256_set1_ps(s);
  int64_t d = 0;
  for (; d + 8 <= n; d += 8) store8_f16(y + d, _mm256_fmadd_ps(load8_f16(v + d), vs, load8_f16(y + d)));
  mad_f16_scalar(y + d, v + d, n - d, s);
}

LANES_ATT_AVX512 inline __m512 load16_f16(const f16* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
LANES_ATT_AVX512 inline void store16_f16(f16* p, __m512 v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}

LANES_ATT_AVX512 float dot_f16_avx512(const float* q, const f16* k, int64_t D) {
  __m512 acc[4];
  for (__m512& a : acc) a = _mm512_setzero_ps();
  const int64_t whole = D / kDotLanes * kDotLanes;
  for (int64_t c = 0; c < whole; c += kDotLanes)
    for (int u = 0; u < 4; ++u) acc[u] = _mm512_fmadd_ps(_mm512_loadu_ps(q + c + 16 * u), load16_f16(k + c + 16 * u), acc[u]);
  __m512 sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3]));
  return dot_tail(tree16_avx512(sum), q, k, whole, D);
}

LANES_ATT_AVX512 void scale_f16_avx512(f16* y, int64_t n, float s) {
  const __m512 vs = _mm512_set1_ps(s);
  int64_t d = 0;
  for (; d + 16 <= n; d += 16) store16_f16(y + d, _mm512_mul_ps(load16_f16(y + d), vs));
  scale_f16_scalar(y + d, n - d, s);
}

LANES_ATT_AVX512 void mad_f16_avx512(f16* y, const f16* v, int64_t n, float s) {
  const __m512 vs = _mm512_set1_ps(s);
  int64_t d = 0;
  for (; d + 16 <= n; d += 16) store16_f16(y + d, _mm512_fmadd_ps(load16_f16(v + d), vs, load16_f16(y + d)));
  mad_f16_scalar(y + d, v + d, n - d, s);
}
#endif

struct SeqPaths {
  float (*dot)(const float*, const f16*, int64_t);
  void (*scale)(f16*, int64_t, float);
  void (*mad)(f16*, const f16*, int64_t, float);
};

SeqPaths seq_paths_for(SimdLevel level) {
#if defined(__x86_64__)
  if (llama_build() == LlamaBuild::Avx2 && level != SimdLevel::Scalar) return {dot_f16_narrow_avx2, scale_f16_avx2, mad_f16_avx2};
#endif
  if (llama_build() == LlamaBuild::Avx2) return {dot_f16_narrow_scalar, scale_f16_scalar, mad_f16_scalar};
#if defined(__x86_64__)
  if (level == SimdLevel::Avx512) return {dot_f16_avx512, scale_f16_avx512, mad_f16_avx512};
  if (level == SimdLevel::Avx2) return {dot_f16_avx2, scale_f16_avx2, mad_f16_avx2};
#endif
  return {dot_f16_scalar, scale_f16_scalar, mad_f16_scalar};
}

template <class TQ>
struct SeqProblem : Geometry {
  Rows4<TQ> q;
  Rows4<f16> k, v;
  SeqPaths paths;
  TQ* y;
};

struct SeqScratch {
  std::vector<float> q;
  std::vector<f16> acc, key, value;
};
thread_local SeqScratch t_seq;

// Row j of head h of k or v as n contiguous float16s: in place, or gathered into `scratch` when
// its elements are strided.
const f16* contiguous_row(const Rows4<f16>& a, int64_t b, int64_t h, int64_t j, int64_t n, std::vector<f16>& scratch) {
  const f16* p = a.at(b, h, j);
  if (a.sd == 1) return p;
  for (int64_t d = 0; d < n; ++d) scratch[size_t(d)] = p[d * a.sd];
  return scratch.data();
}

// One query row (b, h, i) over its visible keys in order, as llama.cpp's one-row flash attention.
template <class TQ>
void run_row(const SeqProblem<TQ>& pb, int64_t row) {
  SeqScratch& s = t_seq;
  const int64_t i = row % pb.Lq, h = (row / pb.Lq) % pb.H, b = row / (pb.Lq * pb.H), hk = h / pb.group;
  s.q.resize(size_t(pb.D));
  s.key.resize(size_t(pb.D));
  s.value.resize(size_t(pb.Dv));
  s.acc.assign(size_t(pb.Dv), f16{0});
  const TQ* q = pb.q.at(b, h, i);
  for (int64_t d = 0; d < pb.D; ++d) s.q[size_t(d)] = to_float(to_f16(static_cast<float>(up(q[d * pb.q.sd]))));
  float m = -INFINITY, sum = 0.0f;
  const int64_t seen = pb.visible(i, pb.keys_of(b));
  for (int64_t j = 0; j < seen; ++j) {
    const float score = pb.paths.dot(s.q.data(), contiguous_row(pb.k, b, hk, j, pb.D, s.key), pb.D) * pb.scale;
    float ms = 1.0f, vs = 1.0f;
    if (score > m) {
      ms = exp_glibc(m - score);
      m = score;
      pb.paths.scale(s.acc.data(), pb.Dv, ms);
    } else {
      vs = exp_glibc(score - m);
    }
    pb.paths.mad(s.acc.data(), contiguous_row(pb.v, b, hk, j, pb.Dv, s.value), pb.Dv, vs);
    sum = sum * ms;  // rounded before the add, as in llama.cpp's build (no fma)
    sum = sum + vs;
  }
  const float inv = sum == 0.0f ? 0.0f : 1.0f / sum;
  TQ* out = pb.y + row * pb.Dv;
  for (int64_t d = 0; d < pb.Dv; ++d) out[d] = down<TQ>(to_float(s.acc[size_t(d)]) * inv);
}

// The sizes and options of an Attention command; throws a device error for a key count out of range.
Geometry geometry(const Command& c) {
  const Shape &qs = c.inputs[0].shape, &ks = c.inputs[1].shape, &vs = c.inputs[2].shape;
  Geometry g;
  g.B = qs[0], g.H = qs[1], g.Lq = qs[2], g.D = qs[3], g.Hk = ks[1], g.Dv = vs[3];
  g.group = g.Hk ? g.H / g.Hk : 0;
  g.scale = static_cast<float>(c.params.scalars[0]);
  g.causal = c.params.flags & 1;
  g.fixed_keys = static_cast<int64_t>(c.params.scalars[1]);
  // Per-row form: batch entry b attends over its own first key_lengths[b] keys.
  g.key_lengths = c.inputs.size() > 3 ? base<int32_t>(c.inputs[3]) : nullptr;
  g.max_keys = 0;
  for (int64_t b = 0; b < (g.key_lengths ? g.B : 1); ++b) {
    int64_t used = g.keys_of(b);
    if (used < 0 || used > ks[2])
      throw_error(LANES_ERR_DEVICE, "scaledDotProductAttention: key length " + std::to_string(used) +
                                        (g.key_lengths ? " of batch entry " + std::to_string(b) : "") + " is out of range for " +
                                        std::to_string(ks[2]) + " keys");
    g.max_keys = std::max(g.max_keys, used);
  }
  return g;
}

template <class T>
void blocked(const Command& c, const Geometry& g) {
  Problem<T> pb;
  static_cast<Geometry&>(pb) = g;
  pb.dp = round16(pb.D), pb.dvp = round16(pb.Dv);
  pb.q = rows4<T>(c.inputs[0]), pb.k = rows4<T>(c.inputs[1]), pb.v = rows4<T>(c.inputs[2]);
  pb.y = output<T>(c);
  pb.paths = paths_for(simd_level());
  pb.query_chunks = (pb.Lq + kQueryChunk - 1) / kQueryChunk;
  pb.blocks = std::max<int64_t>(1, (pb.max_keys + kBlockKeys - 1) / kBlockKeys);
  const int64_t tiles = pb.B * pb.Hk * pb.query_chunks;
  // A tile's multiply-adds: its query rows (every head of the group) against each key, over the
  // key and value widths.
  const int64_t tile_macs = pb.group * std::min(pb.Lq, kQueryChunk) * pb.max_keys * (pb.D + pb.Dv);
  // Few tiles (decode): the key blocks are split across chunks too, and each row's block results
  // fold afterwards in block order, the same arithmetic as folding them as they come. Only as
  // far as each part stays worth a hand-off.
  pb.key_chunks = tiles < kSplitBelowTiles ? std::min(pb.blocks, (kSplitBelowTiles + tiles - 1) / tiles) : 1;
  pb.key_chunks = std::max<int64_t>(1, std::min(pb.key_chunks, tile_macs / kMinChunkMacs));
  pb.blocks_per_chunk = (pb.blocks + pb.key_chunks - 1) / pb.key_chunks;
  pb.key_chunks = (pb.blocks + pb.blocks_per_chunk - 1) / pb.blocks_per_chunk;
  float* partials = nullptr;
  if (pb.key_chunks > 1) {
    size_t need = size_t(pb.B * pb.H * pb.Lq * pb.blocks * pb.partial_floats());
    if (t_partials.size() < need) t_partials.resize(need);
    partials = t_partials.data();
  }
  const int64_t units = tiles * pb.key_chunks;
  parallel_for(units, grain_of(tile_macs / pb.key_chunks), [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      int64_t kc = u % pb.key_chunks, t = u / pb.key_chunks;
      int64_t qc = t % pb.query_chunks, hk = (t / pb.query_chunks) % pb.Hk, b = t / (pb.query_chunks * pb.Hk);
      int64_t i0 = qc * kQueryChunk, i1 = std::min(pb.Lq, i0 + kQueryChunk);
      run_tile(pb, b, hk, i0, i1, kc * pb.blocks_per_chunk, (kc + 1) * pb.blocks_per_chunk, partials);
    }
  });
  if (partials) {
    int64_t rows = pb.B * pb.H * pb.Lq;
    parallel_for(rows, 8, [&](int64_t r0, int64_t r1) { fold_partials(pb, partials, r0, r1); });
  }
}

template <class TQ>
void sequential(const Command& c, const Geometry& g) {
  SeqProblem<TQ> pb;
  static_cast<Geometry&>(pb) = g;
  pb.q = rows4<TQ>(c.inputs[0]), pb.k = rows4<f16>(c.inputs[1]), pb.v = rows4<f16>(c.inputs[2]);
  pb.y = output<TQ>(c);
  pb.paths = seq_paths_for(simd_level());
  parallel_for(pb.B * pb.H * pb.Lq, grain_of(pb.max_keys * (pb.D + pb.Dv)), [&](int64_t r0, int64_t r1) {
    for (int64_t row = r0; row < r1; ++row) run_row(pb, row);
  });
}

// ---- float16 keys and values, 64 query rows or more: llama.cpp's tiled flash attention -----

constexpr int64_t kTiledFromRows = 64;  // GGML_FA_TILE_Q: llama.cpp tiles calls of this many query rows
constexpr int kTileKeys = 64;           // GGML_FA_TILE_KV: keys per tile, from key 0
constexpr int64_t kTiledDvMultiple = 16;  // its tiled path needs Dv a multiple of its float32 vector
constexpr int64_t kUnitQueries = 32;    // query positions of a work unit, for every query head of its KV head

// p_j = e^(s_j - m) for the 64 scores of a tile, written over them; returns their sum as
// ggml_vec_soft_max_f32 adds it: each group of `Width` summed in float by `Tree`, the groups
// added in double in order. Its AVX-512 builds: exp_poly, groups of 16 (tree16); its AVX2 build:
// exp_poly_haswell, groups of 8 (lanes l + 4, then l + 2, then l + 1).
template <int Width, float (*Exp)(float), float (*Tree)(const float*)>
double exp_sum_tiled_groups_scalar(float* s, float m) {
  double sum = 0.0;
  for (int c = 0; c < kTileKeys; c += Width) {
    for (int l = 0; l < Width; ++l) s[c + l] = Exp(s[c + l] - m);
    sum += static_cast<double>(Tree(s + c));
  }
  return sum;
}

float tree8(const float* a) {
  float t[4];
  for (int l = 0; l < 4; ++l) t[l] = a[l] + a[l + 4];
  return (t[0] + t[2]) + (t[1] + t[3]);
}

constexpr auto exp_sum_tiled_scalar = exp_sum_tiled_groups_scalar<16, exp_poly, tree16>;
constexpr auto exp_sum_tiled_haswell_scalar = exp_sum_tiled_groups_scalar<8, exp_poly_haswell, tree8>;

// Scores of `rows` query rows against a tile's keys, kt holding them transposed (kt[d * 64 + j]):
// out[r * 64 + j] = (fma over d in order of q_r[d] k_j[d], from +0) * scale.
void scores_tiled_scalar(const float* const* q, int rows, const float* kt, int64_t D, float scale, float* out) {
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < kTileKeys; ++j) {
      float acc = 0.0f;
      for (int64_t d = 0; d < D; ++d) acc = std::fma(q[r][d], kt[d * kTileKeys + j], acc);
      out[r * kTileKeys + j] = acc * scale;
    }
}

// a_r[d] = fma over keys j < n in order of p_r[j] v_j[d], continuing from a_r[d]; p_r is row r of
// p (64 apart), v holds n rows of Dv floats.
void accumulate_tiled_scalar(const float* p, float* const* a, int rows, int n, const float* v, int64_t Dv) {
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < n; ++j)
      for (int64_t d = 0; d < Dv; ++d) a[r][d] = std::fma(p[r * kTileKeys + j], v[j * Dv + d], a[r][d]);
}

#if defined(__x86_64__)
LANES_ATT_AVX2 double exp_sum_tiled_avx2(float* s, float m) {
  const __m256 vm = _mm256_set1_ps(m);
  double sum = 0.0;
  for (int c = 0; c < kTileKeys; c += 16) {
    __m256 lo = exp_poly_avx2(_mm256_sub_ps(_mm256_loadu_ps(s + c), vm));
    __m256 hi = exp_poly_avx2(_mm256_sub_ps(_mm256_loadu_ps(s + c + 8), vm));
    _mm256_storeu_ps(s + c, lo);
    _mm256_storeu_ps(s + c + 8, hi);
    sum += static_cast<double>(tree16_avx2(lo, hi));
  }
  return sum;
}

LANES_ATT_AVX2 double exp_sum_tiled_haswell_avx2(float* s, float m) {
  const __m256 vm = _mm256_set1_ps(m);
  double sum = 0.0;
  for (int c = 0; c < kTileKeys; c += 8) {
    const __m256 e = exp_poly_haswell_avx2(_mm256_sub_ps(_mm256_loadu_ps(s + c), vm));
    _mm256_storeu_ps(s + c, e);
    const __m128 t4 = _mm_add_ps(_mm256_castps256_ps128(e), _mm256_extractf128_ps(e, 1));
    const __m128 t2 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
    sum += static_cast<double>(_mm_cvtss_f32(_mm_add_ss(t2, _mm_movehdup_ps(t2))));
  }
  return sum;
}

LANES_ATT_AVX2 void scores_tiled_avx2(const float* const* q, int rows, const float* kt, int64_t D, float scale, float* out) {
  const __m256 vs = _mm256_set1_ps(scale);
  for (int r = 0; r < rows; ++r) {
    __m256 acc[8];
    for (__m256& x : acc) x = _mm256_setzero_ps();
    for (int64_t d = 0; d < D; ++d) {
      const __m256 qd = _mm256_set1_ps(q[r][d]);
      for (int u = 0; u < 8; ++u) acc[u] = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kt + d * kTileKeys + 8 * u), acc[u]);
    }
    for (int u = 0; u < 8; ++u) _mm256_storeu_ps(out + r * kTileKeys + 8 * u, _mm256_mul_ps(acc[u], vs));
  }
}

LANES_ATT_AVX2 void accumulate_tiled_avx2(const float* p, float* const* a, int rows, int n, const float* v, int64_t Dv) {
  for (int r = 0; r < rows; ++r)
    for (int64_t d0 = 0; d0 < Dv; d0 += 32) {
      const int nv = int(std::min<int64_t>(4, (Dv - d0) / 8));
      __m256 acc[4];
      for (int u = 0; u < nv; ++u) acc[u] = _mm256_loadu_ps(a[r] + d0 + 8 * u);
      for (int j = 0; j < n; ++j) {
        const __m256 pj = _mm256_set1_ps(p[r * kTileKeys + j]);
        for (int u = 0; u < nv; ++u) acc[u] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(v + j * Dv + d0 + 8 * u), acc[u]);
      }
      for (int u = 0; u < nv; ++u) _mm256_storeu_ps(a[r] + d0 + 8 * u, acc[u]);
    }
}

LANES_ATT_AVX512 double exp_sum_tiled_avx512(float* s, float m) {
  const __m512 vm = _mm512_set1_ps(m);
  double sum = 0.0;
  for (int c = 0; c < kTileKeys; c += 16) {
    __m512 e = exp_poly_avx512(_mm512_sub_ps(_mm512_loadu_ps(s + c), vm));
    _mm512_storeu_ps(s + c, e);
    sum += static_cast<double>(tree16_avx512(e));
  }
  return sum;
}

template <int R>
LANES_ATT_AVX512 inline void scores_rows_avx512(const float* const* q, const float* kt, int64_t D, float scale, float* out) {
  __m512 acc[R][4];
  for (int r = 0; r < R; ++r)
    for (int u = 0; u < 4; ++u) acc[r][u] = _mm512_setzero_ps();
  for (int64_t d = 0; d < D; ++d) {
    __m512 k[4];
    for (int u = 0; u < 4; ++u) k[u] = _mm512_loadu_ps(kt + d * kTileKeys + 16 * u);
    for (int r = 0; r < R; ++r) {
      const __m512 qd = _mm512_set1_ps(q[r][d]);
      for (int u = 0; u < 4; ++u) acc[r][u] = _mm512_fmadd_ps(qd, k[u], acc[r][u]);
    }
  }
  const __m512 vs = _mm512_set1_ps(scale);
  for (int r = 0; r < R; ++r)
    for (int u = 0; u < 4; ++u) _mm512_storeu_ps(out + r * kTileKeys + 16 * u, _mm512_mul_ps(acc[r][u], vs));
}

LANES_ATT_AVX512 void scores_tiled_avx512(const float* const* q, int rows, const float* kt, int64_t D, float scale, float* out) {
  int r = 0;
  for (; r + 4 <= rows; r += 4) scores_rows_avx512<4>(q + r, kt, D, scale, out + r * kTileKeys);
  switch (rows - r) {
    case 3: scores_rows_avx512<3>(q + r, kt, D, scale, out + r * kTileKeys); break;
    case 2: scores_rows_avx512<2>(q + r, kt, D, scale, out + r * kTileKeys); break;
    case 1: scores_rows_avx512<1>(q + r, kt, D, scale, out + r * kTileKeys); break;
    default: break;
  }
}

template <int R, int NV>
LANES_ATT_AVX512 inline void accumulate_rows_avx512(const float* p, float* const* a, int n, const float* v, int64_t Dv, int64_t d0) {
  __m512 acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int u = 0; u < NV; ++u) acc[r][u] = _mm512_loadu_ps(a[r] + d0 + 16 * u);
  for (int j = 0; j < n; ++j) {
    __m512 vj[NV];
    for (int u = 0; u < NV; ++u) vj[u] = _mm512_loadu_ps(v + j * Dv + d0 + 16 * u);
    for (int r = 0; r < R; ++r) {
      const __m512 pj = _mm512_set1_ps(p[r * kTileKeys + j]);
      for (int u = 0; u < NV; ++u) acc[r][u] = _mm512_fmadd_ps(pj, vj[u], acc[r][u]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int u = 0; u < NV; ++u) _mm512_storeu_ps(a[r] + d0 + 16 * u, acc[r][u]);
}

// Dv 64 floats at a time (then the last 16, 32 or 48).
template <int R>
LANES_ATT_AVX512 void accumulate_group_avx512(const float* p, float* const* a, int n, const float* v, int64_t Dv) {
  int64_t d0 = 0;
  for (; d0 + 64 <= Dv; d0 += 64) accumulate_rows_avx512<R, 4>(p, a, n, v, Dv, d0);
  switch ((Dv - d0) / 16) {
    case 3: accumulate_rows_avx512<R, 3>(p, a, n, v, Dv, d0); break;
    case 2: accumulate_rows_avx512<R, 2>(p, a, n, v, Dv, d0); break;
    case 1: accumulate_rows_avx512<R, 1>(p, a, n, v, Dv, d0); break;
    default: break;
  }
}

LANES_ATT_AVX512 void accumulate_tiled_avx512(const float* p, float* const* a, int rows, int n, const float* v, int64_t Dv) {
  int r = 0;
  for (; r + 4 <= rows; r += 4) accumulate_group_avx512<4>(p + r * kTileKeys, a + r, n, v, Dv);
  switch (rows - r) {
    case 3: accumulate_group_avx512<3>(p + r * kTileKeys, a + r, n, v, Dv); break;
    case 2: accumulate_group_avx512<2>(p + r * kTileKeys, a + r, n, v, Dv); break;
    case 1: accumulate_group_avx512<1>(p + r * kTileKeys, a + r, n, v, Dv); break;
    default: break;
  }
}

#endif

struct TiledPaths {
  void (*scores)(const float* const*, int, const float*, int64_t, float, float*);
  double (*exp_sum)(float*, float);
  void (*accumulate)(const float*, float* const*, int, int, const float*, int64_t);
  SimdLevel level;
};

TiledPaths tiled_paths_for(SimdLevel level) {
  const bool haswell = llama_build() == LlamaBuild::Avx2;
#if defined(__x86_64__)
  if (level == SimdLevel::Avx512)
    return {scores_tiled_avx512, haswell ? exp_sum_tiled_haswell_avx2 : exp_sum_tiled_avx512, accumulate_tiled_avx512, level};
  if (level == SimdLevel::Avx2)
    return {scores_tiled_avx2, haswell ? exp_sum_tiled_haswell_avx2 : exp_sum_tiled_avx2, accumulate_tiled_avx2, level};
#endif
  return {scores_tiled_scalar, haswell ? exp_sum_tiled_haswell_scalar : exp_sum_tiled_scalar, accumulate_tiled_scalar, SimdLevel::Scalar};
}

struct TiledProblem : Geometry {
  Rows4<float> q;
  Rows4<f16> k, v;
  TiledPaths paths;
  float* y;
  int64_t query_chunks;
};

// A unit's rows and one key tile.
struct TiledScratch {
  std::vector<float> q, kt, v, acc, scores, m, s, row;
  std::vector<const float*> q_of, q_rows;  // every row's q; the q of the rows a tile reaches
  std::vector<float*> a_rows;
  std::vector<int64_t> active;
};
thread_local TiledScratch t_tiled;

// Keys [j0, j0 + n) of KV head hk widened: transposed into kt (kt[d * 64 + j], zeros past n)
// and as rows into v.
void load_tile(const TiledProblem& pb, int64_t b, int64_t hk, int64_t j0, int n, TiledScratch& s) {
  std::fill(s.kt.begin(), s.kt.end(), 0.0f);
  for (int j = 0; j < n; ++j) {
    widen(pb.paths.level, pb.k.at(b, hk, j0 + j), pb.k.sd, pb.D, s.row.data(), pb.D);
    for (int64_t d = 0; d < pb.D; ++d) s.kt[size_t(d * kTileKeys + j)] = s.row[size_t(d)];
    widen(pb.paths.level, pb.v.at(b, hk, j0 + j), pb.v.sd, pb.Dv, s.v.data() + j * pb.Dv, pb.Dv);
  }
}

// The largest of a tile's 64 scores, in 16 lanes then halving (a loop the compiler vectorizes):
// llama.cpp's in-order maximum for any scores but NaN, up to the sign of a zero, which no later
// step can tell apart.
float tile_max(const float* scores) {
  float lanes[16];
  std::copy(scores, scores + 16, lanes);
  for (int c = 16; c < kTileKeys; c += 16)
    for (int l = 0; l < 16; ++l) lanes[l] = lanes[l] > scores[c + l] ? lanes[l] : scores[c + l];
  for (int w = 8; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) lanes[l] = lanes[l] > lanes[l + w] ? lanes[l] : lanes[l + w];
  return lanes[0];
}

// Folds a row's scores over one tile into its (M, S, A) as llama.cpp's tiled loop does; the
// scores become the row's weights. Returns false for a row the tile has no visible key for.
bool fold_tile_scores(float* scores, int visible, float& m, float& s, float* a, int64_t Dv) {
  std::fill(scores + visible, scores + kTileKeys, -INFINITY);
  const float tile_m = tile_max(scores);
  if (tile_m == -INFINITY) return false;
  const float m_new = std::fmax(m, tile_m);
  if (m_new > m) {
    const float ms = exp_glibc(m - m_new);
    for (int64_t d = 0; d < Dv; ++d) a[d] *= ms;
    s *= ms;
  }
  m = m_new;
  return true;
}

// A work unit: query positions [i0, i0 + ni) of every query head over KV head hk of batch entry
// b; its row r is head hk * group + r / ni, position i0 + r % ni.
struct TiledUnit {
  int64_t b, hk, i0, ni, rows, keys;
  int64_t head(int64_t r) const { return r / ni; }
  int64_t position(int64_t r) const { return i0 + r % ni; }
};

// Sizes the scratch for a unit, starts every row at M = -inf, S = 0, A = 0 and points at its q
// (gathered where its elements are strided).
void start_unit(const TiledProblem& pb, const TiledUnit& u, TiledScratch& s) {
  const int64_t D = pb.D, Dv = pb.Dv;
  s.kt.resize(size_t(D * kTileKeys));
  s.v.resize(size_t(kTileKeys * Dv));
  s.row.resize(size_t(std::max(D, Dv)));
  s.acc.assign(size_t(u.rows * Dv), 0.0f);
  s.scores.resize(size_t(u.rows * kTileKeys));
  s.m.assign(size_t(u.rows), -INFINITY);
  s.s.assign(size_t(u.rows), 0.0f);
  s.q_of.resize(size_t(u.rows));
  s.q_rows.resize(size_t(u.rows));
  s.a_rows.resize(size_t(u.rows));
  s.active.resize(size_t(u.rows));
  if (pb.q.sd != 1) s.q.resize(size_t(u.rows * D));
  for (int64_t r = 0; r < u.rows; ++r) {
    const float* q = pb.q.at(u.b, u.hk * pb.group + u.head(r), u.position(r));
    if (pb.q.sd != 1) {
      for (int64_t d = 0; d < D; ++d) s.q[size_t(r * D + d)] = q[d * pb.q.sd];
      q = s.q.data() + r * D;
    }
    s.q_of[size_t(r)] = q;
  }
}

// The unit's rows over the key tile at j0 (already in s.kt and s.v, n keys).
void run_key_tile(const TiledProblem& pb, const TiledUnit& u, int64_t j0, int n, TiledScratch& s) {
  int active = 0;
  for (int64_t r = 0; r < u.rows; ++r)
    if (pb.visible(u.position(r), u.keys) > j0) {
      s.active[size_t(active)] = r;
      s.q_rows[size_t(active)] = s.q_of[size_t(r)];
      s.a_rows[size_t(active)] = s.acc.data() + r * pb.Dv;
      ++active;
    }
  pb.paths.scores(s.q_rows.data(), active, s.kt.data(), pb.D, pb.scale, s.scores.data());
  int kept = 0;  // rows with a finite score, their weights and sums compacted to the front
  for (int x = 0; x < active; ++x) {
    const size_t r = size_t(s.active[size_t(x)]);
    float* sc = s.scores.data() + x * kTileKeys;
    const int visible = int(std::min<int64_t>(kTileKeys, pb.visible(u.position(int64_t(r)), u.keys) - j0));
    if (!fold_tile_scores(sc, visible, s.m[r], s.s[r], s.a_rows[size_t(x)], pb.Dv)) continue;
    const double sum = pb.paths.exp_sum(sc, s.m[r]);
    s.s[r] = static_cast<float>(static_cast<double>(s.s[r]) + sum);
    if (kept != x) std::copy(sc, sc + kTileKeys, s.scores.data() + kept * kTileKeys);
    s.a_rows[size_t(kept++)] = s.a_rows[size_t(x)];
  }
  pb.paths.accumulate(s.scores.data(), s.a_rows.data(), kept, n, s.v.data(), pb.Dv);
}

void run_tiled_unit(const TiledProblem& pb, const TiledUnit& u) {
  TiledScratch& s = t_tiled;
  start_unit(pb, u, s);
  const int64_t unit_keys = pb.visible(u.i0 + u.ni - 1, u.keys);  // what its last position sees
  for (int64_t j0 = 0; j0 < unit_keys; j0 += kTileKeys) {
    const int n = int(std::min<int64_t>(kTileKeys, u.keys - j0));
    load_tile(pb, u.b, u.hk, j0, n, s);
    run_key_tile(pb, u, j0, n, s);
  }
  for (int64_t r = 0; r < u.rows; ++r) {
    const float sum = s.s[size_t(r)], inv = sum == 0.0f ? 0.0f : 1.0f / sum;
    float* out = pb.y + ((u.b * pb.H + u.hk * pb.group + u.head(r)) * pb.Lq + u.position(r)) * pb.Dv;
    const float* a = s.acc.data() + r * pb.Dv;
    for (int64_t d = 0; d < pb.Dv; ++d) out[d] = a[d] * inv;
  }
}

void tiled(const Command& c, const Geometry& g) {
  TiledProblem pb;
  static_cast<Geometry&>(pb) = g;
  pb.q = rows4<float>(c.inputs[0]), pb.k = rows4<f16>(c.inputs[1]), pb.v = rows4<f16>(c.inputs[2]);
  pb.y = output<float>(c);
  pb.paths = tiled_paths_for(simd_level());
  pb.query_chunks = (pb.Lq + kUnitQueries - 1) / kUnitQueries;
  parallel_for(pb.B * pb.Hk * pb.query_chunks, grain_of(pb.group * kUnitQueries * pb.max_keys * (pb.D + pb.Dv)), [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t qc = u % pb.query_chunks, hk = (u / pb.query_chunks) % pb.Hk, b = u / (pb.query_chunks * pb.Hk);
      const int64_t i0 = qc * kUnitQueries, ni = std::min(kUnitQueries, pb.Lq - i0);
      run_tiled_unit(pb, TiledUnit{b, hk, i0, ni, pb.group * ni, pb.keys_of(b)});
    }
  });
}

}  // namespace

void attention(const Command& c) {
  const Geometry g = geometry(c);
  if (g.B * g.H * g.Lq * g.Dv == 0) return;
  const DType out = c.output.dtype;
  if (c.inputs[1].dtype == DType::Float16) {
    if (c.inputs[0].dtype == DType::Float32 && g.Lq >= kTiledFromRows && g.Dv % kTiledDvMultiple == 0) return tiled(c, g);
    return out == DType::Float32 ? sequential<float>(c, g) : sequential<f16>(c, g);
  }
  if (out == DType::Float32) return blocked<float>(c, g);
  if (out == DType::BFloat16) return blocked<bf16>(c, g);
  throw_error(LANES_ERR_INTERNAL, std::string("scaledDotProductAttention: no CPU kernel for ") + dtype_name(out));
}

}  // namespace lanes::cpu
