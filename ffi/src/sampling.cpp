#include "sampling.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <deque>
#include <limits>
#include <vector>

namespace lanes {

double exp_nonpositive(double x) {
  // x = n ln2 + r with |r| <= ln2 / 2 (ln2 in two parts, so that n * kLn2Hi is exact), then e^r
  // by its Taylor series to r^13 (the next term is below 5e-18) and 2^n from n's bits.
  constexpr double kLog2e = 1.4426950408889634074;
  constexpr double kLn2Hi = 6.93147180369123816490e-01;
  constexpr double kLn2Lo = 1.90821492927058770002e-10;
  // Adding 1.5 * 2^52 rounds to an integer, which then sits in the low bits of the sum.
  constexpr double kShift = 6755399441055744.0;
  const double shifted = x * kLog2e + kShift;
  const double n = shifted - kShift;
  const double r = (x - n * kLn2Hi) - n * kLn2Lo;
  double p = 1.0 / 6227020800.0;  // 1/13!
  constexpr std::array<double, 13> kInverseFactorials = {1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0,
                                                         1.0 / 40320.0,     1.0 / 5040.0,      1.0 / 720.0,     1.0 / 120.0,
                                                         1.0 / 24.0,        1.0 / 6.0,         0.5,             1.0,
                                                         1.0};
  for (double c : kInverseFactorials) p = p * r + c;
  const uint64_t biased = std::bit_cast<uint64_t>(shifted) - std::bit_cast<uint64_t>(kShift) + 1023;  // n + 1023
  const double scale = std::bit_cast<double>(biased << 52);
  return x >= -700.0 ? p * scale : 0.0;
}

namespace {

// Each token's weight goes into one of these buckets by its distance from the top,
// (top - logit) / temperature, in equal steps up to kGapRange (the last bucket also takes every
// larger distance, weights below e^-kGapRange of the top's). Bucket order is rank order, so
// only the few buckets where a cut or the draw falls are ever sorted.
constexpr int kGapBuckets = 512;
constexpr double kGapRange = 48;
constexpr int kNanBucket = kGapBuckets;  // NaN logits: never candidates, never read

// The largest logit that is not NaN (-infinity if none), in 16 running maxima the compiler
// vectorizes.
float largest(std::span<const float> logits) {
  std::array<float, 16> top;
  top.fill(-std::numeric_limits<float>::infinity());
  size_t i = 0;
  for (; i + 16 <= logits.size(); i += 16)
    for (size_t j = 0; j < 16; ++j) top[j] = logits[i + j] > top[j] ? logits[i + j] : top[j];
  for (; i < logits.size(); ++i) top[0] = logits[i] > top[0] ? logits[i] : top[0];
  float best = top[0];
  for (float t : top) best = t > best ? t : best;
  return best;
}

bool ranks_above(std::span<const float> logits, int32_t a, int32_t b) {
  const float x = logits[a], y = logits[b];
  return x > y || (x == y && a < b);
}

// The tokens' weights by bucket, and the sorted members of the buckets that were needed.
class WeightedTokens {
 public:
  WeightedTokens(std::span<const float> logits, double temperature) : logits_(logits) {
    const size_t n = logits.size();
    // Kept per thread between calls: a vocabulary's worth is half a megabyte, which a fresh
    // allocation would map and fault in on every token.
    thread_local std::vector<double> weights;
    thread_local std::vector<uint16_t> buckets;
    weights.resize(n);
    buckets.resize(n);
    weight_ = weights.data();
    bucket_ = buckets.data();
    const float top = largest(logits);
    constexpr double kPerGap = kGapBuckets / kGapRange;
    if (std::isfinite(top)) {
      // Vectorized: each token's distance from the top, its weight and its bucket.
      for (size_t i = 0; i < n; ++i) {
        const double gap = (double(top) - logits[i]) / temperature;
        weight_[i] = exp_nonpositive(-gap);
        bucket_[i] = static_cast<uint16_t>(gap != gap ? kNanBucket : gap < kGapRange ? std::min(double(kGapBuckets - 1), gap * kPerGap) : kGapBuckets - 1);
      }
    } else {
      // An infinite top: the tokens at it share the draw (the softmax's limit).
      for (size_t i = 0; i < n; ++i) {
        weight_[i] = logits[i] == top ? 1.0 : 0.0;
        bucket_[i] = logits[i] != logits[i] ? kNanBucket : logits[i] == top ? 0 : kGapBuckets - 1;
      }
    }
    for (size_t i = 0; i < n; ++i) {
      mass_[bucket_[i]] += weight_[i];
      ++count_[bucket_[i]];
    }
  }

  double weight(int32_t i) const { return weight_[i]; }
  double mass(int b) const { return mass_[b]; }
  int64_t count(int b) const { return count_[b]; }

  // The tokens of bucket b, most likely first.
  const std::vector<int32_t>& sorted(int b) {
    for (auto& [bucket, members] : sorted_)
      if (bucket == b) return members;
    std::vector<int32_t> members;
    members.reserve(static_cast<size_t>(count_[b]));
    for (size_t i = 0; i < logits_.size(); ++i)
      if (bucket_[i] == b) members.push_back(static_cast<int32_t>(i));
    std::sort(members.begin(), members.end(), [&](int32_t a, int32_t c) { return ranks_above(logits_, a, c); });
    return sorted_.emplace_back(b, std::move(members)).second;
  }

 private:
  std::span<const float> logits_;
  double* weight_;
  uint16_t* bucket_;
  std::array<double, kGapBuckets + 1> mass_{};
  std::array<int64_t, kGapBuckets + 1> count_{};
  std::deque<std::pair<int, std::vector<int32_t>>> sorted_;  // a deque: references to it stay valid
};

// A run of candidates in rank order: the first `length` tokens of a bucket (all of it, or a cut).
struct Run {
  int bucket;
  int64_t length;
  double mass;
};

Run run_of(WeightedTokens& tokens, int b, int64_t length) {
  if (length == tokens.count(b)) return {b, length, tokens.mass(b)};
  const std::vector<int32_t>& members = tokens.sorted(b);
  double mass = 0;
  for (int64_t j = 0; j < length; ++j) mass += tokens.weight(members[j]);
  return {b, length, mass};
}

std::vector<Run> top_runs(WeightedTokens& tokens, int64_t k) {
  std::vector<Run> runs;
  for (int b = 0; b < kGapBuckets && k > 0; ++b) {
    const int64_t n = tokens.count(b);
    if (n == 0) continue;
    runs.push_back(run_of(tokens, b, std::min(n, k)));
    k -= n;
  }
  return runs;
}

double total_mass(const std::vector<Run>& runs) {
  double total = 0;
  for (const Run& r : runs) total += r.mass;
  return total;
}

// The fewest most likely tokens of `runs` whose weights reach `top_p` of the runs' total.
std::vector<Run> nucleus_runs(WeightedTokens& tokens, const std::vector<Run>& runs, double top_p) {
  const double target = top_p * total_mass(runs);
  std::vector<Run> kept;
  double mass = 0;
  for (const Run& run : runs) {
    if (mass + run.mass < target) {
      kept.push_back(run);
      mass += run.mass;
      continue;
    }
    const std::vector<int32_t>& members = tokens.sorted(run.bucket);
    int64_t length = 0;
    while (length < run.length && mass < target) mass += tokens.weight(members[length++]);
    kept.push_back(run_of(tokens, run.bucket, length));
    // The run's mass, summed in index order, may round above the target where its tokens, added
    // in rank order, end just short of it: then the next run holds the cut.
    if (mass >= target) break;
  }
  return kept;
}

}  // namespace

SampledToken sample_logits(std::span<const float> logits, double temperature, int64_t top_k, double top_p, double u) {
  WeightedTokens tokens(logits, temperature);
  const int64_t n = static_cast<int64_t>(logits.size());
  std::vector<Run> runs = top_runs(tokens, top_k > 0 ? std::min(top_k, n) : n);
  if (top_p < 1) runs = nucleus_runs(tokens, runs, top_p);
  SampledToken out;
  for (const Run& run : runs) out.kept += run.length;
  if (runs.empty()) return out;  // every logit NaN
  double r = u * total_mass(runs);
  for (const Run& run : runs) {
    if (r > run.mass) {
      r -= run.mass;
      continue;
    }
    const std::vector<int32_t>& members = tokens.sorted(run.bucket);
    for (int64_t j = 0; j < run.length; ++j) {
      r -= tokens.weight(members[j]);
      if (r <= 0) {
        out.token = members[j];
        return out;
      }
    }
  }
  // Rounding left a sliver past the last candidate: the last one that can be drawn at all (a
  // weight of 0, a -infinity logit or one that underflowed, never is).
  for (auto run = runs.rbegin(); run != runs.rend(); ++run) {
    const std::vector<int32_t>& members = tokens.sorted(run->bucket);
    for (int64_t j = run->length - 1; j >= 0; --j)
      if (tokens.weight(members[j]) > 0) {
        out.token = members[j];
        return out;
      }
  }
  out.token = tokens.sorted(runs.front().bucket)[0];
  return out;
}

}  // namespace lanes
