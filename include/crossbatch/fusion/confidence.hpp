// The confidence-weighted ensembles of paraphrase fusion. A paraphrase's confidence is the share
// of N sampled generations whose answer lemmas equal the greedy answer's (N = 100 in the
// reference); weighted_avg weights the logits of a question's paraphrases by their confidences,
// weighted_max takes the logits of the most confident one (the first on ties). Both are
// weighted_mean_combiner: the latter with weight 1 on that paraphrase and 0 elsewhere.
// Deviation from the reference: when every paraphrase of a question has confidence 0 the weights
// would sum to zero (the reference divides by it); here they fall back to equal weights.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "crossbatch/core/error.hpp"
#include "crossbatch/sample/logit_combiner.hpp"

namespace crossbatch {

// Share of `samples` equal to `greedy` (each an answer as a sequence of lemmas).
inline float answer_confidence(const std::vector<std::string>& greedy,
                               const std::vector<std::vector<std::string>>& samples) {
  require(!samples.empty(), "confidence: no sampled generation");
  const auto same = std::count(samples.begin(), samples.end(), greedy);
  return static_cast<float>(same) / static_cast<float>(samples.size());
}

inline void check_confidences(const std::vector<float>& c) {
  require(!c.empty() && int(c.size()) <= max_combined_models,
          "confidence weights: 1.." + std::to_string(max_combined_models) + " paraphrases, got " +
              std::to_string(c.size()));
  for (std::size_t i = 0; i < c.size(); ++i)
    require(c[i] >= 0.0f && c[i] <= 1.0f,
            "confidence " + std::to_string(i) + " must lie in [0, 1], got " + std::to_string(c[i]));
}

inline weighted_mean_combiner weighted_avg_combiner(const std::vector<float>& confidences) {
  check_confidences(confidences);
  std::vector<float> w = confidences;
  if (std::all_of(w.begin(), w.end(), [](float x) { return x == 0.0f; }))
    std::fill(w.begin(), w.end(), 1.0f);
  return weighted_mean_combiner::from(w);
}

inline weighted_mean_combiner weighted_max_combiner(const std::vector<float>& confidences) {
  check_confidences(confidences);
  std::vector<float> w(confidences.size(), 0.0f);
  w[std::max_element(confidences.begin(), confidences.end()) - confidences.begin()] = 1.0f;
  return weighted_mean_combiner::from(w);
}

}  // namespace crossbatch
