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
// own state back). Left padding, samplers, EOS and max_new_tokens as in generate.hpp: the policy
// below plugs into the same decode driver (and into the CUDA graph driver).
#pragma once

#include <string>
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
// norm for project at k < L. `mixed` and `normed` are (B, C) buffers; groups (B) are host ids
// (std::span<const int>) or device ids.
// Returns a view of one of them.
template <class T, class D, class M, class Groups>
tensor_view<const T, D> mix_and_project(const context<D>& ctx, const decoder_model<T, D>& model,
                                        M& mixer, tensor_view<const T, D> states, int k,
                                        mix_projection projection, const Groups& groups,
                                        tensor<T, D>& mixed, tensor<T, D>& normed) {
  mixer.mix(ctx, mixed.view(), states, groups);
  if (k == model.config.num_layers || projection == mix_projection::project_raw)
    return mixed.view();
  model.final_norm(ctx, normed.view(), tensor_view<const T, D>(mixed.view()));
  return normed.view();
}

// The step policy (generate/step_policy.hpp) of cross-batch generation: the session runs with a
// hook before block k that keeps (project modes) or mixes in place (continue_layers) the newest
// residual rows; after the layers the policy forms the head input as the header comment says
// and projects it with lm_head (the model's output embedding unless a trained head is given).
template <class T, class D, class M, class Layout = left_padded>
class cross_batch_step {
 public:
  using session_type = batch_session<T, D, Layout>;

  cross_batch_step(session_type& session, M& mixer, int mix_layer, mix_projection projection,
                   const std::vector<int>& groups, tensor_view<const T, D> lm_head = {})
      : m_session(session), m_mixer(mixer), m_projection(projection) {
    const auto& c = session.model().config;
    const int b = session.batch();
    m_k = resolve_mix_layer(mix_layer, c.num_layers);
    m_head = lm_head.data ? lm_head : session.model().output_embedding().view();
    require<shape_error>(m_head.shape == shape_t{c.vocab_size, c.hidden_size},
                         "cross_batch_generate: lm_head must be " +
                             to_string({c.vocab_size, c.hidden_size}) + ", got " +
                             to_string(m_head.shape));
    require(groups.empty() || static_cast<int>(groups.size()) == b,
            "cross_batch_generate: " + std::to_string(groups.size()) + " group ids for " +
                std::to_string(b) + " prompts");
    tensor<std::int32_t> g({b});
    for (int s = 0; s < b; ++s) g(s) = groups.empty() ? 0 : groups[s];
    m_groups = to_device<D>(g);
    for (auto* t : {&m_states, &m_mixed, &m_normed}) *t = tensor<T, D>({b, c.hidden_size});
    m_logits = tensor<T, D>({b, c.vocab_size});
  }

  int batch() const { return m_session.batch(); }
  const model_config& config() const { return m_session.model().config; }
  int mix_layer() const { return m_k; }
  void prefill() {
    m_session.prefill(layer_hook{this}, outputs());
    project();
  }
  bool step(tensor_view<const std::int32_t, D> ids, std::uint64_t*) {
    m_session.step(ids, layer_hook{this}, outputs());
    project();
    return false;
  }
  // Starts from a head input (B, C) computed elsewhere (one prefill shared by several mixers:
  // batch_session::fork and mix_and_project); the session must have run its prefill.
  void prefill_from(tensor_view<const T, D> first) {
    require<shape_error>(first.shape == m_states.view().shape,
                         "cross_batch_decode: first states must be (B, C)");
    linear(ctx(), m_logits.view(), first, m_head);
  }
  tensor_view<const T, D> logits() const { return m_logits.view(); }
  std::int32_t* retire_groups() { return m_groups.data(); }
  tensor_view<const std::int32_t, D> groups() const { return m_groups.view(); }
  template <class F>
  void for_each_session(F&& f) {
    f(m_session);
  }

 private:
  const context<D>& ctx() const { return m_session.ctx(); }
  bool at_last_layer() const { return m_k == m_session.model().config.num_layers; }
  step_outputs outputs() const {
    const bool hidden = at_last_layer() || m_projection == mix_projection::continue_layers;
    return step_outputs{.hidden = hidden, .logits = false};
  }
  struct layer_hook : hooks_base {
    cross_batch_step* p;
    explicit layer_hook(cross_batch_step* policy) : p(policy) {}
    void before_block(const context<D>&, int layer, tensor_view<T, D> x) const {
      if (layer == p->m_k) p->at_layer_k(x);
    }
  };
  // x (B, T, C): the residual stream before block k; its newest rows are the states to mix.
  void at_layer_k(tensor_view<T, D> x) {
    const index_t t = x.shape[1], c = x.shape[2];
    const tensor_view<T, D> newest(x.data + (t - 1) * c, {x.shape[0], c}, {t * c, 1});
    copy_rows(ctx(), m_states.view(), tensor_view<const T, D>(newest));
    if (m_projection != mix_projection::continue_layers) return;
    m_mixer.mix(ctx(), m_mixed.view(), tensor_view<const T, D>(m_states.view()), groups());
    copy_rows(ctx(), newest, tensor_view<const T, D>(m_mixed.view()));
  }
  // logits = head(feature) after the layers.
  void project() {
    const auto& model = m_session.model();
    tensor_view<const T, D> feature;
    if (at_last_layer())
      feature = mix_and_project(ctx(), model, m_mixer, m_session.hidden(), m_k, m_projection,
                                groups(), m_mixed, m_normed);
    else if (m_projection == mix_projection::continue_layers)
      feature = m_session.hidden();
    else
      feature = mix_and_project(ctx(), model, m_mixer, tensor_view<const T, D>(m_states.view()),
                                m_k, m_projection, groups(), m_mixed, m_normed);
    linear(ctx(), m_logits.view(), feature, m_head);
  }

  session_type& m_session;
  M& m_mixer;
  mix_projection m_projection;
  int m_k = 0;
  tensor_view<const T, D> m_head;
  tensor<std::int32_t, D> m_groups;                    // (B); -1 once a sequence finished
  tensor<T, D> m_states, m_mixed, m_normed, m_logits;  // (B, C) x 3, (B, V)
};

// The decode loop after a shared prefill: `session` has run its prefill and `first` (B, C) is the
// head input of step 0 (mixed and projected, e.g. by mix_and_project). One prefill can thus serve
// several mixers (batch_session::fork) in the project modes.
template <class T, class D, class M, sampler S>
generation_result cross_batch_decode(const context<D>& ctx, batch_session<T, D>& session,
                                     tensor_view<const T, D> first, M& mixer, const S& sampler,
                                     const cross_batch_options& opt,
                                     tensor_view<const T, D> lm_head = {},
                                     const token_callback& on_token = {}) {
  cross_batch_step<T, D, M> policy(session, mixer, opt.mix_layer, opt.projection, opt.groups,
                                   lm_head);
  policy.prefill_from(first);
  return decode<T, D>(ctx, policy, sampler, opt, stop_ids(opt, session.model().config), on_token,
                      /*prefilled=*/true);
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
  batch_session<T, D> session(ctx, model, prompts, opt.max_new_tokens);
  cross_batch_step<T, D, M> policy(session, mixer, opt.mix_layer, opt.projection, opt.groups,
                                   lm_head);
  auto r = decode<T, D>(ctx, policy, sampler, opt, stop_ids(opt, model.config), on_token);
  r.prompt_tokens = real_prompt_tokens(session.layout());
  return r;
}

}  // namespace crossbatch
