// Logit filters that shape a distribution before a draw, with Hugging Face's semantics:
// temperature, top-k (ties with the k-th value kept), top-p (nucleus) and min-p. Each works on one
// row of float logits in place, setting removed entries to -inf; filters compose in any order.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <span>
#include <vector>

#include "crossbatch/core/error.hpp"

namespace crossbatch {

inline constexpr float neg_inf = -std::numeric_limits<float>::infinity();

struct temperature {
  float value = 1.0f;
  void apply(std::span<float> logits) const {
    require(value > 0, "temperature must be > 0 (use greedy for 0), got " + std::to_string(value));
    for (float& x : logits) x /= value;
  }
};

// Keeps the k largest logits (and any tied with the k-th).
struct top_k {
  int k = 0;  // 0 disables
  void apply(std::span<float> logits) const {
    require(k >= 0, "top_k must be >= 0, got " + std::to_string(k));
    if (k == 0 || k >= static_cast<int>(logits.size())) return;
    std::vector<float> v(logits.begin(), logits.end());
    std::nth_element(v.begin(), v.begin() + (k - 1), v.end(), std::greater<>());
    const float kth = v[k - 1];
    for (float& x : logits)
      if (x < kth) x = neg_inf;
  }
};

namespace detail {
// Probabilities of a logit row (softmax), in float.
inline std::vector<float> probabilities(std::span<const float> logits) {
  const float m = *std::max_element(logits.begin(), logits.end());
  std::vector<float> p(logits.size());
  double s = 0;
  for (std::size_t i = 0; i < p.size(); ++i) s += (p[i] = std::exp(logits[i] - m));
  for (float& x : p) x = static_cast<float>(x / s);
  return p;
}
}  // namespace detail

// Nucleus: keeps the smallest set of most likely tokens whose probability reaches p (HF: sort
// ascending, drop tokens whose cumulative probability is <= 1 - p, always keep the top one).
struct top_p {
  float p = 1.0f;  // 1 disables
  void apply(std::span<float> logits) const {
    require(p > 0 && p <= 1, "top_p must be in (0, 1], got " + std::to_string(p));
    if (p >= 1.0f) return;
    const auto probs = detail::probabilities(logits);
    std::vector<int> order(logits.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return logits[a] < logits[b]; });
    float cum = 0;
    for (std::size_t r = 0; r + 1 < order.size(); ++r) {  // the last (most likely) always stays
      cum += probs[order[r]];
      if (cum <= 1.0f - p) logits[order[r]] = neg_inf;
    }
  }
};

// Keeps tokens whose probability is at least p times that of the most likely token.
struct min_p {
  float p = 0.0f;  // 0 disables
  void apply(std::span<float> logits) const {
    require(p >= 0 && p <= 1, "min_p must be in [0, 1], got " + std::to_string(p));
    if (p == 0.0f) return;
    const auto probs = detail::probabilities(logits);
    const float threshold = p * *std::max_element(probs.begin(), probs.end());
    for (std::size_t i = 0; i < probs.size(); ++i)
      if (probs[i] < threshold) logits[i] = neg_inf;
  }
};

}  // namespace crossbatch
