// The packed sgemm: B is packed per (KC x NC) block into 16-column panels, each thread packs its
// (MC x KC) block of A into 6-row panels, and a 6x16 microkernel keeps the whole C tile in 12
// AVX registers while it streams through k (the BLIS / GotoBLAS structure). Blocks over k are
// added to C in increasing k order, so the summation order of every element is fixed.
#include "sgemm.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "compute_pool.hpp"
#include "cpu_features.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace lanes::cpu {
namespace {

constexpr int64_t kMR = 6, kNR = 16;
constexpr int64_t kKC = 256, kMaxMC = 96, kNC = 3072;

// B(k0 : k0+kc, j0 : j0+nc) into panels of kNR columns: panel p holds k-major rows of 16
// values, zero-padded past nc.
void pack_b(MatrixView b, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* out) {
  for (int64_t p = 0; p < nc; p += kNR) {
    int64_t w = std::min(kNR, nc - p);
    float* dst = out + p * kc;
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = b.data + (k0 + k) * b.row + (j0 + p) * b.col;
      float* d = dst + k * kNR;
      if (b.col == 1) {
        std::memcpy(d, src, static_cast<size_t>(w) * sizeof(float));
      } else {
        for (int64_t j = 0; j < w; ++j) d[j] = src[j * b.col];
      }
      for (int64_t j = w; j < kNR; ++j) d[j] = 0.0f;
    }
  }
}

// A(i0 : i0+mc, k0 : k0+kc) into panels of kMR rows: panel p holds, for each k, 6 values.
void pack_a(MatrixView a, int64_t i0, int64_t mc, int64_t k0, int64_t kc, float* out) {
  for (int64_t p = 0; p < mc; p += kMR) {
    int64_t h = std::min(kMR, mc - p);
    float* dst = out + p * kc;
    for (int64_t k = 0; k < kc; ++k) {
      float* d = dst + k * kMR;
      for (int64_t i = 0; i < h; ++i) d[i] = a.data[(i0 + p + i) * a.row + (k0 + k) * a.col];
      for (int64_t i = h; i < kMR; ++i) d[i] = 0.0f;
    }
  }
}

#if defined(__x86_64__)
// C tile (mr x nr of a 6 x 16 tile) = (first ? 0 : C) + A_panel · B_panel over kc.
__attribute__((target("avx2,fma"))) void kernel_6x16(int64_t kc, const float* A, const float* B, float* C, int64_t ldc,
                                                     bool first, int64_t mr, int64_t nr) {
  __m256 c[kMR][2];
  for (int i = 0; i < kMR; ++i) c[i][0] = c[i][1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    __m256 b0 = _mm256_loadu_ps(B + k * kNR), b1 = _mm256_loadu_ps(B + k * kNR + 8);
    const float* a = A + k * kMR;
    for (int i = 0; i < kMR; ++i) {
      __m256 ai = _mm256_broadcast_ss(a + i);
      c[i][0] = _mm256_fmadd_ps(ai, b0, c[i][0]);
      c[i][1] = _mm256_fmadd_ps(ai, b1, c[i][1]);
    }
  }
  if (mr == kMR && nr == kNR) {
    for (int i = 0; i < kMR; ++i) {
      float* row = C + i * ldc;
      if (first) {
        _mm256_storeu_ps(row, c[i][0]);
        _mm256_storeu_ps(row + 8, c[i][1]);
      } else {
        _mm256_storeu_ps(row, _mm256_add_ps(_mm256_loadu_ps(row), c[i][0]));
        _mm256_storeu_ps(row + 8, _mm256_add_ps(_mm256_loadu_ps(row + 8), c[i][1]));
      }
    }
    return;
  }
  alignas(32) float tile[kMR][kNR];
  for (int i = 0; i < kMR; ++i) {
    _mm256_store_ps(tile[i], c[i][0]);
    _mm256_store_ps(tile[i] + 8, c[i][1]);
  }
  for (int64_t i = 0; i < mr; ++i)
    for (int64_t j = 0; j < nr; ++j) C[i * ldc + j] = first ? tile[i][j] : C[i * ldc + j] + tile[i][j];
}

#endif

}  // namespace

bool sgemm_packed(MatrixView a, MatrixView b, float* c, int64_t M, int64_t N, int64_t K) {
#if defined(__x86_64__)
  if (!has_avx2_fma()) return false;
  if (M == 0 || N == 0) return true;
  if (K == 0) {
    std::fill(c, c + M * N, 0.0f);
    return true;
  }
  // Row blocks small enough that every pool thread gets several (the block size does not change
  // any element's summation order, only who computes it).
  int64_t per_thread = (M + int64_t(pool_threads()) * 4 - 1) / (int64_t(pool_threads()) * 4);
  int64_t mc_step = std::clamp<int64_t>((per_thread + kMR - 1) / kMR * kMR, kMR * 4, kMaxMC);
  std::vector<float> bpack(static_cast<size_t>(kKC * ((std::min(kNC, N) + kNR - 1) / kNR * kNR)));
  for (int64_t j0 = 0; j0 < N; j0 += kNC) {
    int64_t nc = std::min(kNC, N - j0);
    for (int64_t k0 = 0; k0 < K; k0 += kKC) {
      int64_t kc = std::min(kKC, K - k0);
      bool first = k0 == 0;
      pack_b(b, k0, kc, j0, nc, bpack.data());
      int64_t blocks = (M + mc_step - 1) / mc_step;
      parallel_for(blocks, 1, [&](int64_t bb, int64_t be) {
        std::vector<float> apack(static_cast<size_t>(kMaxMC * kKC));
        for (int64_t blk = bb; blk < be; ++blk) {
          int64_t i0 = blk * mc_step, mc = std::min(mc_step, M - i0);
          pack_a(a, i0, mc, k0, kc, apack.data());
          for (int64_t jr = 0; jr < nc; jr += kNR)
            for (int64_t ir = 0; ir < mc; ir += kMR)
              kernel_6x16(kc, apack.data() + ir * kc, bpack.data() + jr * kc, c + (i0 + ir) * N + j0 + jr, N, first,
                          std::min(kMR, mc - ir), std::min(kNR, nc - jr));
        }
      });
    }
  }
  return true;
#else
  (void)a, (void)b, (void)c, (void)M, (void)N, (void)K;
  return false;
#endif
}

}  // namespace lanes::cpu
