#include "row_exp_simd.hpp"

#include <cmath>

#include "cpu_features.hpp"
#include "exp_poly.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace lanes::cpu {
namespace {

#if defined(__x86_64__)
// exp for x <= 0 (softmax shifts by the row max): range reduction to x = k ln2 + r, a degree-6
// polynomial for e^r, then 2^k through the exponent bits. Below -87.3 (where float exp is
// subnormal or zero) the result is 0.
__attribute__((target("avx2,fma"))) inline __m256 exp_nonpositive(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.3365447505531f);
  __m256 underflow = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  x = _mm256_max_ps(x, lo);
  __m256 fx = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f));
  fx = _mm256_floor_ps(fx);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  __m256i k = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
  y = _mm256_mul_ps(y, _mm256_castsi256_ps(k));
  return _mm256_andnot_ps(underflow, y);
}

// False (nothing written) when the row holds a NaN or +inf, or only -inf: the caller's general
// path gives those their NaN / uniform answers.
__attribute__((target("avx2,fma"))) bool softmax_row(const float* x, float* y, int64_t n) {
  // Max, and whether anything is NaN or +inf, in one pass.
  __m256 vmax = _mm256_set1_ps(-INFINITY), special = _mm256_setzero_ps();
  const __m256 inf = _mm256_set1_ps(INFINITY);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    special = _mm256_or_ps(special, _mm256_cmp_ps(v, inf, _CMP_NLT_UQ));  // NaN or +inf
    vmax = _mm256_max_ps(vmax, v);
  }
  if (!_mm256_testz_ps(special, special)) return false;
  alignas(32) float lanes8[8];
  _mm256_store_ps(lanes8, vmax);
  float m = -INFINITY;
  for (float v : lanes8) m = v > m ? v : m;
  for (; i < n; ++i) {
    if (!(x[i] < INFINITY)) return false;
    m = x[i] > m ? x[i] : m;
  }
  if (m == -INFINITY) return false;
  // Sums of exp in double, four lanes at a time, in a fixed order.
  __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
  __m256 vm = _mm256_set1_ps(m);
  i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
    _mm256_storeu_ps(y + i, e);
    s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  alignas(32) double part[4];
  _mm256_store_pd(part, _mm256_add_pd(s0, s1));
  double sum = (part[0] + part[1]) + (part[2] + part[3]);
  for (; i < n; ++i) {
    float e = std::exp(x[i] - m);
    y[i] = e;
    sum += e;
  }
  __m256 inv = _mm256_set1_ps(static_cast<float>(1.0 / sum));
  i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), inv));
  for (; i < n; ++i) y[i] *= static_cast<float>(1.0 / sum);
  return true;
}

__attribute__((target("avx2,fma,avx512f,avx512dq"))) void silu_row_avx512(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_loadu_ps(x + i);
    _mm512_storeu_ps(y + i, _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), exp_poly_avx512(_mm512_sub_ps(_mm512_setzero_ps(), v)))));
  }
  for (; i < n; ++i) y[i] = silu(x[i]);
}

template <__m256 (*Exp)(__m256)>
__attribute__((target("avx2,fma"))) void silu_row_avx2(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    _mm256_storeu_ps(y + i, _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), Exp(_mm256_sub_ps(_mm256_setzero_ps(), v)))));
  }
  for (; i < n; ++i) y[i] = silu(x[i]);
}
#endif

}  // namespace

float silu(float x) {
  static const bool haswell = llama_build() == LlamaBuild::Avx2;
  return x / (1.0f + (haswell ? exp_poly_haswell(0.0f - x) : exp_poly(0.0f - x)));
}

bool silu_row_simd(const float* x, float* y, int64_t n) {
#if defined(__x86_64__)
  if (simd_level() != SimdLevel::Scalar && llama_build() == LlamaBuild::Avx2) {
    silu_row_avx2<exp_poly_haswell_avx2>(x, y, n);
    return true;
  }
  switch (simd_level()) {
    case SimdLevel::Avx512: silu_row_avx512(x, y, n); return true;
    case SimdLevel::Avx2: silu_row_avx2<exp_poly_avx2>(x, y, n); return true;
    default: return false;
  }
#else
  (void)x, (void)y, (void)n;
  return false;
#endif
}

bool softmax_row_avx2(const float* x, float* y, int64_t n) {
#if defined(__x86_64__)
  return has_avx2_fma() && softmax_row(x, y, n);
#else
  (void)x, (void)y, (void)n;
  return false;
#endif
}

}  // namespace lanes::cpu
