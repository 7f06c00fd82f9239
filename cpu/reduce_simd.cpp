#include "reduce_simd.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace lanes::cpu {
namespace {

#if defined(__x86_64__)
__attribute__((target("avx2"))) double sum_row(const float* x, int64_t n) {
  __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd(), s2 = _mm256_setzero_pd(), s3 = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
    s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(a)));
    s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)));
    s2 = _mm256_add_pd(s2, _mm256_cvtps_pd(_mm256_castps256_ps128(b)));
    s3 = _mm256_add_pd(s3, _mm256_cvtps_pd(_mm256_extractf128_ps(b, 1)));
  }
  alignas(32) double part[4];
  _mm256_store_pd(part, _mm256_add_pd(_mm256_add_pd(s0, s1), _mm256_add_pd(s2, s3)));
  double sum = (part[0] + part[1]) + (part[2] + part[3]);
  for (; i < n; ++i) sum += x[i];
  return sum;
}
#endif

}  // namespace

double sum_row_avx2(const float* x, int64_t n) {
#if defined(__x86_64__)
  return sum_row(x, n);
#else
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += x[i];
  return sum;
#endif
}

}  // namespace lanes::cpu
