// Scaled dot-product attention on the CPU: q [B, H, Lq, D], k [B, Hk, Lk, D], v [B, Hk, Lk, Dv]
// read in place through their strides (a KV cache is never copied whole), output [B, H, Lq, Dv].
// Each query row has one canonical computation (which one depends on the dtypes and, for a
// float16 cache, on the call's query count), the same on every SIMD path, for every tiling,
// thread count and split of the keys, so results are bitwise identical across all of them. It
// depends only on which llama.cpp build the kernels follow (llama_build in cpu_features.hpp).
//
// float16 keys and values follow llama.cpp's CPU flash attention as its x86 AVX-512 builds
// compile it, so a model with a float16 KV cache gives llama.cpp's bits. llama.cpp takes one of
// two paths, and so does lanes: its tiled one below for a float32 q (float32 output) when the call
// has 64 query rows or more (Lq, GGML_FA_TILE_Q) and Dv is a multiple of 16, its one-row path
// (ggml_compute_forward_flash_attn_ext_f16_one_chunk) otherwise (q float16 or float32):
//   - q is rounded to float16; a score is dot(q, k) * scale, the dot over 64 lanes (lane c: fma
//     over d = c, c + 64, ... in order, from +0), folded as lane l of (v0 + v2) + (v1 + v3) for
//     the four 16-lane vectors v_j (lanes 16j ..), then the pairwise tree l + 8, l + 4, l + 2,
//     l + 1; elements past the last whole 64 are float products added in double to that sum.
//     Following llama.cpp's AVX2 build: over 32 lanes, the four 8-lane vectors folded the same
//     way, then l + 4, then (0 + 1) + (2 + 3); the tail past the last whole 32;
//   - the visible keys are taken one at a time in order, with M = -inf, S = 0, A[d] = 0 (float16):
//     a score s > M gives ms = e^(M - s), M = s, A[d] = f16(A[d] ms), vs = 1; otherwise ms = 1,
//     vs = e^(s - M); then A[d] = f16(fma(v[d], vs, A[d])) and S = (S ms) + vs, two roundings;
//     e^x has glibc expf's bits;
//   - the output is float(A[d]) * (1 / S) (0 for S = 0: a row that sees no key gets zeros),
//     rounded to the output's type.
//
// llama.cpp's tiled path (ggml_compute_forward_flash_attn_ext_tiled):
//   - q stays float32; keys are taken in tiles of 64 from key 0 (GGML_FA_TILE_KV), a row skipping
//     the tiles it sees no key of; a score is (fma over d in order of q[d] k[d], from +0) * scale,
//     and the tile's keys the row does not see score -inf;
//   - with M = -inf, S = 0, A[d] = 0 (float32), each tile: m = the max of its 64 scores,
//     M' = fmax(M, m); if M' > M, ms = e^(M - M') (glibc expf's bits), A[d] = A[d] ms, S = S ms;
//     M = M'; p_j = e^(s_j - M) by ggml_v_expf's arithmetic (exp_poly.hpp); S = float(double(S)
//     + Σ), Σ the tree16 sums of the four 16-key groups of p added in double in order
//     (following llama.cpp's AVX2 build: exp_poly_haswell, and the sums of the eight 8-key
//     groups, lanes l + 4, l + 2, l + 1); then
//     A[d] = fma(p_j, v_j[d], A[d]) over the tile's keys below the key count, in order (p_j = 0
//     for those the row does not see);
//   - the output is A[d] * (1 / S) (0 for S = 0).
//   llama.cpp's result for a row does not depend on how its threads group rows into tiles: a key
//   tile it skips for a whole group is one each row of the group would skip, and a row's scores,
//   maxima and sums are its own. Only the sign of an A[d] that is exactly zero can differ from
//   lanes', as there a row's skipped tiles and the keys past the cache's end still add 0 * v.
//
// float32 and bfloat16 (q, k, v and output alike):
//   - keys are taken in blocks of 64 (block b: keys 64b .. 64b + 63 that the row sees);
//   - a score is dot(q, k) * scale, the dot summed in 16 lanes (lane l: fma over d = l, l + 16,
//     ... in order, from +0) and then the pairwise tree l + 8, l + 4, l + 2, l + 1;
//   - block b gives m_b = max of its scores, p_j = exp(score_j - m_b) (one polynomial exp, about
//     1 ulp), s_b = the 16-lane sum of p (lane l: p_l + p_{l+16} + ..., then the same tree) and
//     a_b[d] = fma over its keys in order of p_j * v_j[d], from +0;
//   - blocks fold in order into (M, S, A): the first is taken as it is; then M' = max(M, m_b),
//     α = exp(M - M'), β = exp(m_b - M'), S = fma(S, α, s_b β), A[d] = fma(A[d], α, a_b[d] β);
//   - the output is A[d] * (1 / S), or zeros for a row that sees no key.
#pragma once
#include "../ffi/src/command.hpp"

namespace lanes::cpu {

// Runs an Attention command: q and the output are float32, float16 or bfloat16, and k and v of
// q's type, or float16 under a float32 q; inputs[3], when present, holds each batch entry's key
// count (int32). Throws a device error for a key count out of range. Thread-safe.
void attention(const Command& c);

}  // namespace lanes::cpu
