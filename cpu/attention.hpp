// Scaled dot-product attention on the CPU: q [B, H, Lq, D], k [B, Hk, Lk, D], v [B, Hk, Lk, Dv]
// read in place through their strides (a KV cache is never copied whole), output [B, H, Lq, Dv].
//
// The canonical computation of one query row, the same on every SIMD path, for every tiling,
// thread count and split of the keys (so results are bitwise identical across all of them):
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

// Runs an Attention command whose storage type (q, k, v and output alike) is T = float, f16 or
// bf16; inputs[3], when present, holds each batch entry's key count (int32). Throws a device
// error for a key count out of range. Thread-safe.
template <class T>
void attention(const Command& c);

}  // namespace lanes::cpu
