// Logit combiners: the logits of several models (sessions advanced in lock step on the same
// tokens) -> one row of logits to sample from. Each combiner is a small struct evaluated per
// vocabulary entry from the M models' logits and log-probabilities (log-softmax of each model's
// row), so one CPU loop and one CUDA kernel (generate/cuda/combine.cuh) serve them all:
//   identity       logits of model 0
//   lda            after + alpha (after - before), models ordered (after, before)
//   mean_logits    the mean of the logits (the "avg" ensemble)
//   max_prob       log of the elementwise max of the probabilities: its argmax is the argmax of
//                  max_m p_m, and softmax of it is max_m p_m renormalised (the "max" ensemble)
//   weighted_mean  sum_m w_m logits_m / sum_m w_m (the confidence-weighted ensemble)
#pragma once

#include <cmath>
#include <concepts>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "crossbatch/core/context.hpp"
#include "crossbatch/core/error.hpp"
#include "crossbatch/core/host_device.hpp"
#include "crossbatch/core/tensor.hpp"

namespace crossbatch {

constexpr int max_combined_models = 8;

// A combiner maps (logits[m], log_probs[m]) of M models at one vocabulary entry to one logit;
// needs_log_probs says whether it reads log_probs (they cost a pass over every row).
template <class C>
concept logit_combiner = requires(const C& c, const float* l, int m) {
  { c(l, l, m) } -> std::convertible_to<float>;
  { C::needs_log_probs } -> std::convertible_to<bool>;
  {c.check(m)};
};

struct identity_combiner {
  static constexpr bool needs_log_probs = false;
  void check(int models) const { require(models >= 1, "identity combiner: no model"); }
  CROSSBATCH_HD float operator()(const float* logits, const float*, int) const { return logits[0]; }
};

struct lda_combiner {
  static constexpr bool needs_log_probs = false;
  float alpha = 1.0f;
  void check(int models) const {
    require(models == 2,
            "lda combiner: needs two models (after, before), got " + std::to_string(models));
  }
  CROSSBATCH_HD float operator()(const float* logits, const float*, int) const {
    return logits[0] + alpha * (logits[0] - logits[1]);
  }
};

struct mean_logits_combiner {
  static constexpr bool needs_log_probs = false;
  void check(int models) const { require(models >= 1, "mean combiner: no model"); }
  CROSSBATCH_HD float operator()(const float* logits, const float*, int m) const {
    float s = 0.0f;
    for (int i = 0; i < m; ++i) s += logits[i];
    return s / float(m);
  }
};

struct max_prob_combiner {
  static constexpr bool needs_log_probs = true;
  void check(int models) const { require(models >= 1, "max combiner: no model"); }
  CROSSBATCH_HD float operator()(const float*, const float* log_probs, int m) const {
    float best = log_probs[0];
    for (int i = 1; i < m; ++i) best = log_probs[i] > best ? log_probs[i] : best;
    return best;
  }
};

struct weighted_mean_combiner {
  static constexpr bool needs_log_probs = false;
  float weight[max_combined_models] = {};

  static weighted_mean_combiner from(const std::vector<float>& w) {
    require(!w.empty() && int(w.size()) <= max_combined_models,
            "weighted mean: 1.." + std::to_string(max_combined_models) + " weights, got " +
                std::to_string(w.size()));
    weighted_mean_combiner c;
    for (std::size_t i = 0; i < w.size(); ++i) c.weight[i] = w[i];
    return c;
  }
  void check(int models) const {
    float total = 0.0f;
    for (int i = 0; i < models; ++i) {
      require(std::isfinite(weight[i]) && weight[i] >= 0.0f,
              "weighted mean: weight " + std::to_string(i) + " must be finite and >= 0");
      total += weight[i];
    }
    require(total > 0.0f, "weighted mean: the weights sum to zero");
  }
  CROSSBATCH_HD float operator()(const float* logits, const float*, int m) const {
    float s = 0.0f, w = 0.0f;
    for (int i = 0; i < m; ++i) {
      s += weight[i] * logits[i];
      w += weight[i];
    }
    return s / w;
  }
};

namespace detail {
// log-sum-exp of a row of n values read through get(i).
template <class Get>
float log_sum_exp(index_t n, Get&& get) {
  float mx = -std::numeric_limits<float>::infinity();
  for (index_t i = 0; i < n; ++i) mx = std::max(mx, get(i));
  if (mx == -std::numeric_limits<float>::infinity()) return mx;
  double s = 0;
  for (index_t i = 0; i < n; ++i) s += std::exp(double(get(i) - mx));
  return mx + float(std::log(s));
}
}  // namespace detail

// out (B, V) = combine(inputs[m] (B, V)) on the CPU; out may alias an input.
template <class T, logit_combiner C>
void combine_logits(const context<cpu>&, const C& combiner, tensor_view<T> out,
                    std::span<const tensor_view<const T>> inputs) {
  const int m = static_cast<int>(inputs.size());
  require(m >= 1 && m <= max_combined_models, "combine_logits: 1.." +
                                                  std::to_string(max_combined_models) +
                                                  " models, got " + std::to_string(m));
  combiner.check(m);
  for (const auto& in : inputs)
    require<shape_error>(in.shape == out.shape && in.contiguous() && out.contiguous(),
                         "combine_logits: every input must be " + to_string(out.shape));
  const index_t b = out.shape[0], v = out.shape[1];
  std::vector<float> lse(m), l(m), lp(m);
  for (index_t r = 0; r < b; ++r) {
    if constexpr (C::needs_log_probs)
      for (int i = 0; i < m; ++i)
        lse[i] = detail::log_sum_exp(
            v, [&](index_t j) { return static_cast<float>(inputs[i].data[r * v + j]); });
    for (index_t j = 0; j < v; ++j) {
      for (int i = 0; i < m; ++i) {
        l[i] = static_cast<float>(inputs[i].data[r * v + j]);
        lp[i] = l[i] - lse[i];
      }
      out.data[r * v + j] = static_cast<T>(combiner(l.data(), lp.data(), m));
    }
  }
}

}  // namespace crossbatch
