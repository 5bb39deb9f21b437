// Logit difference amplification (LDA), the front end: two models ("after", "before") fed the same
// ids with their own KV caches, logits after + alpha (after - before) (lda_combiner), then the
// sampler. Built on the engine (combined_step + decode()); on CUDA pass the same combined_step to
// graph_driver<T>::run with lda_sampling::to_sampling_params(). Also checks that the two models
// share a vocabulary (tokenizers id by id, configs by size) and names the first difference.
#pragma once

#include <algorithm>
#include <cmath>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "crossbatch/generate/generate.hpp"
#include "crossbatch/sample/logit_combiner.hpp"
#include "crossbatch/sample/sampler.hpp"
#include "crossbatch/text/tokenizer.hpp"

namespace crossbatch {

// The two models' vocabularies differ: at id `first_id` (tokens `token_a`, `token_b`, "<none>"
// where an id has no token), or only in size (first_id = the smaller size).
struct vocabulary_mismatch : value_error {
  int first_id = -1;
  std::string token_a, token_b;
  std::size_t size_a = 0, size_b = 0;
  vocabulary_mismatch(const std::string& what, int id, std::string a, std::string b, std::size_t na,
                      std::size_t nb)
      : value_error(what),
        first_id(id),
        token_a(std::move(a)),
        token_b(std::move(b)),
        size_a(na),
        size_b(nb) {}
};

// Throws vocabulary_mismatch unless a and b map every id to the same token (added tokens
// included) and have the same size. The first differing id is reported even when sizes differ.
inline void check_same_vocabulary(const text::tokenizer& a, const text::tokenizer& b) {
  const std::size_t na = a.vocab_size(), nb = b.vocab_size();
  const auto shown = [](const std::optional<std::string>& t) {
    return t ? "'" + *t + "'" : "<none>";
  };
  const std::string sizes = std::to_string(na) + " vs " + std::to_string(nb) + " tokens";
  for (std::size_t i = 0; i < std::min(na, nb); ++i) {
    const auto id = static_cast<std::int32_t>(i);
    const auto ta = a.id_to_token(id), tb = b.id_to_token(id);
    if (ta != tb)
      throw vocabulary_mismatch("the two tokenizers differ first at id " + std::to_string(id) +
                                    ": " + shown(ta) + " vs " + shown(tb) + " (" + sizes + ")",
                                id, ta.value_or("<none>"), tb.value_or("<none>"), na, nb);
  }
  if (na != nb)
    throw vocabulary_mismatch("the two tokenizers have different sizes: " + sizes + " (the first " +
                                  std::to_string(std::min(na, nb)) + " agree)",
                              static_cast<int>(std::min(na, nb)), "", "", na, nb);
}

// The logits rows must line up: both configs' vocab_size equal.
inline void check_same_vocabulary(const model_config& after, const model_config& before) {
  const auto na = std::size_t(after.vocab_size), nb = std::size_t(before.vocab_size);
  if (na != nb)
    throw vocabulary_mismatch("LDA: the after model has vocab_size " + std::to_string(na) +
                                  ", the before model " + std::to_string(nb),
                              int(std::min(na, nb)), "", "", na, nb);
}

// The sampler of the LDA reference and issue: temperature, then top-p (the standard shifted
// nucleus of filters.hpp that keeps the token crossing p; the reference drops it), then min-p,
// then top-k; greedy when !do_sample. sampling_params applies Hugging Face's order (temperature,
// top-k, top-p, min-p). The two agree whenever top_k == 0 or top_p == 1 (min-p and top-k only
// compare probabilities within one row, so renormalising after a cut does not move them); with
// both top-k and top-p on, HF's top-p measures mass after the top-k cut and keeps fewer tokens.
// Defaults are the reference server's (temperature 0.8, top-p 0.95, sampling).
struct lda_sampling {
  bool do_sample = true;
  float temperature = 0.8f;
  float top_p = 0.95f;
  float min_p = 0.0f;
  int top_k = 0;

  int pick(std::span<float> row, float u) const {
    if (!do_sample) return argmax(row);
    crossbatch::temperature{temperature}.apply(row);
    crossbatch::top_p{top_p}.apply(row);
    crossbatch::min_p{min_p}.apply(row);
    crossbatch::top_k{top_k}.apply(row);
    return draw(row, u);
  }

  // The same sampler as sampling_params (for the CUDA graph driver's device sampler); only where
  // the orders agree.
  sampling_params to_sampling_params() const {
    require(!do_sample || top_k == 0 || top_p >= 1.0f,
            "lda_sampling: top-k together with top-p has no sampling_params form (its order "
            "is top-k before top-p); use one of them on this path");
    return sampling_params{.do_sample = do_sample,
                           .temperature = temperature,
                           .top_k = top_k,
                           .top_p = top_p,
                           .min_p = min_p};
  }
};

inline void check_lda_alpha(float alpha) {
  require(std::isfinite(alpha), "LDA: alpha must be finite, got " + std::to_string(alpha));
}

// LDA generation with the host-driven decode driver: prompts left-padded (positions follow the
// real tokens), both models advanced on the sampled ids, tokens of each sequence = new tokens
// only (EOS included when it stopped there; opt.stop_at_eos = false is fixed-length mode). Row b
// draws from RNG stream b (generate.hpp), so a duplicated prompt gets the same logits and, when
// sampling, its own draws.
template <class T, class D, sampler S>
generation_result lda_generate(const context<D>& ctx, const decoder_model<T, D>& after,
                               const decoder_model<T, D>& before,
                               const std::vector<std::vector<int>>& prompts, float alpha,
                               const S& sampler, const generation_options& opt,
                               const token_callback& on_token = {}) {
  check_same_vocabulary(after.config, before.config);
  check_lda_alpha(alpha);
  batch_session<T, D> a(ctx, after, prompts, opt.max_new_tokens);
  batch_session<T, D> b(ctx, before, prompts, opt.max_new_tokens);
  combined_step<T, D, left_padded, lda_combiner> policy({&a, &b}, lda_combiner{alpha});
  auto r = decode<T, D>(ctx, policy, sampler, opt, stop_ids(opt, after.config), on_token);
  r.prompt_tokens = real_prompt_tokens(a.layout());
  return r;
}

}  // namespace crossbatch
