// Teacher-forced scoring: the log-probability a decoder model gives each next token of a sequence
// (for perplexity and answer-token losses), from one causal pass over the whole sequence.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "crossbatch/core/transfer.hpp"
#include "crossbatch/model/decoder.hpp"

namespace crossbatch {

// Logits (T, V) on the host for every position of ids, from one causal pass: the reference a
// KV-cached decode of the same tokens must agree with.
template <class T, class D>
tensor<T> teacher_forced_logits(const context<D>& ctx, const decoder_model<T, D>& model,
                                const std::vector<int>& ids,
                                const char* who = "teacher_forced_logits") {
  const auto& c = model.config;
  const index_t t = static_cast<index_t>(ids.size()), C = c.hidden_size, V = c.vocab_size;
  require(t >= 1, std::string(who) + ": no tokens");
  require(t <= c.max_positions, std::string(who) + ": " + std::to_string(t) +
                                    " tokens exceed the model's context of " +
                                    std::to_string(c.max_positions) + " positions");
  tensor<std::int32_t> hid({t}), hpos({t});
  for (index_t i = 0; i < t; ++i) {
    require(ids[i] >= 0 && ids[i] < V,
            std::string(who) + ": token id " + std::to_string(ids[i]) + " outside the vocabulary");
    hid(i) = ids[i];
    hpos(i) = static_cast<std::int32_t>(i);
  }
  const auto did = to_device<D>(hid), dpos = to_device<D>(hpos);
  auto cache = model.make_cache(1, static_cast<int>(t));
  decoder_workspace<T, D> ws(c, t);
  tensor<T, D> x({1, t, C}), h({t, C}), logits({t, V});
  model.embed_tokens(ctx, x.view().reshape({t, C}), did.view(), dpos.view());
  model.run_layers(ctx, x.view(), dpos.view(), cache, 0, causal{}, 0, c.num_layers, ws);
  model.final_norm(ctx, h.view(), x.view().reshape({t, C}));
  model.logits(ctx, logits.view(), h.view());
  return to_host(logits);
}

// log p(ids[t+1] | ids[0..t]) for t = 0 .. T-2, computed in float.
template <class T, class D>
std::vector<double> next_token_logprobs(const context<D>& ctx, const decoder_model<T, D>& model,
                                        const std::vector<int>& ids) {
  require(ids.size() >= 2, "next_token_logprobs: need at least two tokens");
  const auto host = teacher_forced_logits(ctx, model, ids, "next_token_logprobs");
  const index_t t = static_cast<index_t>(ids.size()), V = model.config.vocab_size;
  std::vector<double> out;
  for (index_t i = 0; i + 1 < t; ++i) {
    const T* row = host.data() + i * V;
    double m = -INFINITY;
    for (index_t v = 0; v < V; ++v) m = std::max(m, double(static_cast<float>(row[v])));
    double z = 0;
    for (index_t v = 0; v < V; ++v) z += std::exp(double(static_cast<float>(row[v])) - m);
    out.push_back(double(static_cast<float>(row[ids[i + 1]])) - m - std::log(z));
  }
  return out;
}

// exp(-mean log p) over the predicted tokens.
inline double perplexity(const std::vector<double>& logprobs) {
  double s = 0;
  for (double l : logprobs) s += l;
  return std::exp(-s / static_cast<double>(logprobs.size()));
}

}  // namespace crossbatch
