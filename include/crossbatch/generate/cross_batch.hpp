// Cross-batch generation: batched decoding in which, at every step, the newest hidden states of
// one layer are mixed across the batch by a batch_mixer (mix/mixer.hpp) before they become logits.
//
// mix_layer follows transformers' hidden_states indexing: k in [0, L] is the state after k layers
// (0 = embeddings) and L (or -1) is the last layer's output after the final norm, which is what
// the LM head reads. Negative k counts from the end of those L + 1 states. What happens to the
// mixed states of an intermediate layer k < L (mix_projection):
//   project          logits = head(final_norm(mix(h_k)));  the model itself (its KV cache) runs
//                    unmixed through the remaining layers. The later reference applies the final
//                    norm this way ("critical fix") and trains without it only because its
//                    states are already final-normed at k = L.
//   project_raw      logits = head(mix(h_k)), the first reference version (no final norm).
//   continue_layers  the mixed state replaces the residual stream of the newest token at layer k
//                    and runs through layers k..L-1 (so the cache of those layers holds it), then
//                    the final norm and the head: the mix changes what later tokens attend to.
// At k = L all three are logits = head(mix(final_norm(h_L))); a mixer that returns its input gives
// exactly the standard generation. (The reference's generator applies the final norm once more
// after mixing the already final-normed states at -1; we do not reproduce that double norm.)
//
// Groups: only prompts with equal group ids mix; a prompt that stopped at EOS gets group -1 from
// then on, so finished sequences stop contributing (and a sample left without a partner gets its
// own state back). Left padding, samplers, EOS and max_new_tokens as in generate.hpp.
#pragma once

#include <algorithm>
#include <chrono>
#include <span>
#include <vector>

#include "crossbatch/generate/batch_session.hpp"
#include "crossbatch/generate/generate.hpp"
#include "crossbatch/mix/mixer.hpp"
#include "crossbatch/sample/sampler.hpp"

namespace crossbatch {

enum class mix_projection { project, project_raw, continue_layers };

inline const char* to_string(mix_projection p) {
  return p == mix_projection::project       ? "project"
         : p == mix_projection::project_raw ? "project_raw"
                                            : "continue";
}
inline mix_projection mix_projection_from_name(const std::string& s) {
  if (s == "project") return mix_projection::project;
  if (s == "project_raw" || s == "raw") return mix_projection::project_raw;
  if (s == "continue" || s == "continue_layers") return mix_projection::continue_layers;
  throw value_error("unknown mix projection '" + s + "' (project, project_raw, continue)");
}

// mix_layer in transformers' hidden_states indexing -> k in [0, L].
inline int resolve_mix_layer(int layer, int num_layers) {
  const int k = layer < 0 ? num_layers + 1 + layer : layer;
  require(k >= 0 && k <= num_layers, "mix_layer " + std::to_string(layer) + " outside [-" +
                                         std::to_string(num_layers + 1) + ", " +
                                         std::to_string(num_layers) + "] for a model of " +
                                         std::to_string(num_layers) + " layers");
  return k;
}

struct cross_batch_options : generation_options {
  int mix_layer = -1;
  mix_projection projection = mix_projection::project;
  std::vector<int> groups;  // one id per prompt; empty: all prompts form one group
};

// The head input from states (B, C) taken at layer k in a project mode: mix(states), then the final
// norm for project at k < L. `mixed` and `normed` are (B, C) buffers. Returns a view of one of
// them.
template <class T, class D, class M>
tensor_view<const T, D> mix_and_project(const context<D>& ctx, const decoder_model<T, D>& model,
                                        M& mixer, tensor_view<const T, D> states, int k,
                                        mix_projection projection, std::span<const int> groups,
                                        tensor<T, D>& mixed, tensor<T, D>& normed) {
  mixer.mix(ctx, mixed.view(), states, groups);
  if (k == model.config.num_layers || projection == mix_projection::project_raw)
    return mixed.view();
  model.final_norm(ctx, normed.view(), tensor_view<const T, D>(mixed.view()));
  return normed.view();
}

// The state the LM head reads after mixing, from the session paused after layer k (see the
// header comment); `scratch`, `mixed` and `normed` are (B, C) buffers. Returns a view of the state.
template <class T, class D, class M>
tensor_view<const T, D> cross_batch_features(const context<D>& ctx, batch_session<T, D>& session,
                                             M& mixer, int k, mix_projection projection,
                                             std::span<const int> groups, tensor<T, D>& scratch,
                                             tensor<T, D>& mixed, tensor<T, D>& normed) {
  const auto& model = session.model();
  if (k == model.config.num_layers) {
    session.resume(false);
    return mix_and_project(ctx, model, mixer, session.hidden(), k, projection, groups, mixed,
                           normed);
  }
  copy_rows(ctx, scratch.view(), tensor_view<const T, D>(session.newest_residual()));
  if (projection == mix_projection::continue_layers) {
    mixer.mix(ctx, mixed.view(), tensor_view<const T, D>(scratch.view()), groups);
    copy_rows(ctx, session.newest_residual(), tensor_view<const T, D>(mixed.view()));
    session.resume(false);
    return session.hidden();
  }
  session.resume(false);
  return mix_and_project(ctx, model, mixer, tensor_view<const T, D>(scratch.view()), k, projection,
                         groups, mixed, normed);
}

// The decode loop after the first step: `session` has run its prefill (not paused) and
// `first` (B, C) is the head input of step 0 (mixed and projected, e.g. by mix_and_project). Steps
// 1.. run through cross_batch_features. One prefill can thus serve several mixers (batch_session::
// fork()) in the project modes; cross_batch_generate() is the one-call form.
template <class T, class D, class M, sampler S>
generation_result cross_batch_decode(const context<D>& ctx, batch_session<T, D>& session,
                                     tensor_view<const T, D> first, M& mixer, const S& sampler,
                                     const cross_batch_options& opt,
                                     tensor_view<const T, D> lm_head = {},
                                     const token_callback& on_token = {}) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  const auto& model = session.model();
  const auto& c = model.config;
  const int L = c.num_layers, k = resolve_mix_layer(opt.mix_layer, L);
  const int b = session.batch();
  std::vector<int> groups = opt.groups.empty() ? std::vector<int>(b, 0) : opt.groups;
  require(static_cast<int>(groups.size()) == b,
          "cross_batch_generate: " + std::to_string(groups.size()) + " group ids for " +
              std::to_string(b) + " prompts");
  const tensor_view<const T, D> head = lm_head.data ? lm_head : model.output_embedding().view();
  require<shape_error>(head.shape == shape_t{c.vocab_size, c.hidden_size},
                       "cross_batch_generate: lm_head must be " +
                           to_string({c.vocab_size, c.hidden_size}) + ", got " +
                           to_string(head.shape));
  require<shape_error>(first.shape == shape_t{b, c.hidden_size},
                       "cross_batch_decode: first states must be (B, C)");
  const std::vector<int>& eos = opt.eos_ids.empty() ? c.eos_token_ids : opt.eos_ids;
  const counter_rng rng{opt.seed};
  generation_result r;
  r.tokens.resize(b);
  r.stopped_at_eos.assign(b, false);
  if (opt.max_new_tokens == 0) return r;

  tensor<T, D> scratch({b, c.hidden_size}), mixed({b, c.hidden_size}), normed({b, c.hidden_size});
  tensor<T, D> logits({b, c.vocab_size});
  tensor<float> host_logits({b, c.vocab_size});
  std::vector<bool> done(b, false);
  std::vector<std::int32_t> next(b);
  for (int step = 0; step < opt.max_new_tokens; ++step) {
    tensor_view<const T, D> feature = first;
    if (step > 0) {
      session.step_until(next, std::min(k, L));
      feature = cross_batch_features(ctx, session, mixer, k, opt.projection,
                                     std::span<const int>(groups), scratch, mixed, normed);
    }
    linear(ctx, logits.view(), feature, head);
    const tensor<T> h = to_host(logits);
    for (index_t i = 0; i < h.size(); ++i) host_logits.data()[i] = static_cast<float>(h.data()[i]);
    sample(context<cpu>{}, sampler, host_logits.view(), std::span(next), rng,
           static_cast<std::uint64_t>(step));
    int live = 0;
    for (int s = 0; s < b; ++s) {
      if (done[s]) {
        next[s] = opt.pad_id;
        continue;
      }
      r.tokens[s].push_back(next[s]);
      ++r.generated_tokens;
      if (on_token) on_token(s, next[s]);
      if (opt.stop_at_eos && std::find(eos.begin(), eos.end(), next[s]) != eos.end()) {
        done[s] = true;
        r.stopped_at_eos[s] = true;
        groups[s] = -1;  // finished sequences stop contributing
        next[s] = opt.pad_id;
      } else {
        ++live;
      }
    }
    if (live == 0) break;
  }
  r.decode_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  return r;
}

// Generates for `prompts` with `mixer` acting at every step (prefill included: the first token is
// already mixed). lm_head (V, C), when given, replaces the model's output embedding (a trained
// head). Returns the tokens as generate() does.
template <class T, class D, class M, sampler S>
generation_result cross_batch_generate(const context<D>& ctx, const decoder_model<T, D>& model,
                                       const std::vector<std::vector<int>>& prompts, M& mixer,
                                       const S& sampler, const cross_batch_options& opt,
                                       tensor_view<const T, D> lm_head = {},
                                       const token_callback& on_token = {}) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  const auto& c = model.config;
  const int L = c.num_layers, k = resolve_mix_layer(opt.mix_layer, L);
  batch_session<T, D> session(ctx, model, prompts, opt.max_new_tokens);
  const int b = session.batch();
  require(opt.groups.empty() || static_cast<int>(opt.groups.size()) == b,
          "cross_batch_generate: " + std::to_string(opt.groups.size()) + " group ids for " +
              std::to_string(b) + " prompts");
  const std::vector<int> groups = opt.groups.empty() ? std::vector<int>(b, 0) : opt.groups;
  int prompt_tokens = 0;
  for (const auto& p : prompts) prompt_tokens += static_cast<int>(p.size());
  if (opt.max_new_tokens == 0) {
    generation_result r;
    r.tokens.resize(b);
    r.stopped_at_eos.assign(b, false);
    r.prompt_tokens = prompt_tokens;
    return r;
  }
  tensor<T, D> scratch({b, c.hidden_size}), mixed({b, c.hidden_size}), normed({b, c.hidden_size});
  session.prefill_until(std::min(k, L));
  const auto first = cross_batch_features(ctx, session, mixer, k, opt.projection,
                                          std::span<const int>(groups), scratch, mixed, normed);
  const double prefill = std::chrono::duration<double>(clock::now() - t0).count();
  auto r = cross_batch_decode(ctx, session, first, mixer, sampler, opt, lm_head, on_token);
  r.prompt_tokens = prompt_tokens;
  r.prefill_seconds = prefill;
  return r;
}

}  // namespace crossbatch
