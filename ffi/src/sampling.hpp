// Picking a token from logits on the host (lanes_logits_sample): temperature, top-k and top-p
// (nucleus) sampling by the inverse of the candidates' cumulative distribution at a draw u.
#pragma once
#include <cstdint>
#include <span>

namespace lanes {

struct SampledToken {
  int64_t token = 0;
  int64_t kept = 0;  // candidates left after the top-k and top-p cuts
};

// The token for draw `u` in [0, 1) at `temperature` > 0, among the `top_k` most likely (0: all),
// then the fewest most likely whose probabilities reach `top_p` in (0, 1] (1: all). Weights are
// e^((logit - top) / temperature) in float64; ties rank the lower index first; NaN logits are
// never candidates, and where the top logit is infinite the tokens at it share every draw.
// Arguments are checked by the caller. Thread-safe.
SampledToken sample_logits(std::span<const float> logits, double temperature, int64_t top_k, double top_p, double u);

// e^x for x <= 0: within 2 ulp of std::exp on [-700, 0] (1 ulp over 22 million points), and 0
// below -700, where e^x < 1e-304. A plain expression the compiler vectorizes in a loop.
double exp_nonpositive(double x);

}  // namespace lanes
