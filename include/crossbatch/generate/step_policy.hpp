// Step policies of the decode driver: what one step does between the tokens fed and the logits
// sampled. The driver (generate/generate.hpp on any device, generate/cuda/graph_driver.cuh with
// the whole step in one CUDA graph) owns the loop: sampling, per-sequence stop and retire,
// streaming, timing. A policy owns (or refers to) the sessions and runs their layers:
//   plain_step      one session, no hooks: the model's own logits (the fused step on CUDA)
//   combined_step   several sessions (models) fed the same tokens in lock step, their logits
//                   merged by a logit_combiner (LDA, ensembles)
//   cross_batch_step (generate/cross_batch.hpp) a mixer on the hidden states of layer k
// A policy provides batch(), prefill(), step(ids, greedy_best) -> whether the argmax was folded
// into greedy_best, logits() (B, V), retire_groups() (device group ids that a finished sequence
// sets to -1, or null) and for_each_session(f).
#pragma once

#include <concepts>
#include <cstdint>
#include <span>
#include <vector>

#include "crossbatch/generate/batch_session.hpp"
#include "crossbatch/sample/logit_combiner.hpp"

namespace crossbatch {

template <class P, class T, class D>
concept step_policy = requires(P& p, tensor_view<const std::int32_t, D> ids, std::uint64_t* best) {
  { p.batch() } -> std::convertible_to<int>;
  p.prefill();
  { p.step(ids, best) } -> std::convertible_to<bool>;
  { p.logits() } -> std::convertible_to<tensor_view<const T, D>>;
  { p.retire_groups() } -> std::convertible_to<std::int32_t*>;
};

template <class T, class D = cpu, class Layout = left_padded>
class plain_step {
 public:
  using session_type = batch_session<T, D, Layout>;
  explicit plain_step(session_type& s) : m_session(s) {}

  int batch() const { return m_session.batch(); }
  const model_config& config() const { return m_session.model().config; }
  void prefill() { m_session.prefill(no_hooks{}, step_outputs{.hidden = false}); }
  bool step(tensor_view<const std::int32_t, D> ids, std::uint64_t* greedy_best) {
    return m_session.step(ids, no_hooks{},
                          step_outputs{.hidden = false, .greedy_best = greedy_best});
  }
  tensor_view<const T, D> logits() const { return m_session.logits(); }
  std::int32_t* retire_groups() { return nullptr; }
  template <class F>
  void for_each_session(F&& f) {
    f(m_session);
  }

 private:
  session_type& m_session;
};

template <class T, class D = cpu, class Layout = left_padded, logit_combiner C = identity_combiner>
class combined_step {
 public:
  using session_type = batch_session<T, D, Layout>;

  // The sessions must hold the same prompts (same batch and vocabulary); logits of
  // sessions[0..M) feed the combiner in that order.
  combined_step(std::vector<session_type*> sessions, C combiner = {})
      : m_sessions(std::move(sessions)), m_combiner(combiner) {
    require(!m_sessions.empty() && int(m_sessions.size()) <= max_combined_models,
            "combined_step: 1.." + std::to_string(max_combined_models) + " sessions, got " +
                std::to_string(m_sessions.size()));
    m_combiner.check(int(m_sessions.size()));
    const auto& c0 = m_sessions[0]->model().config;
    for (std::size_t m = 1; m < m_sessions.size(); ++m) {
      const auto& s = *m_sessions[m];
      require(s.model().config.vocab_size == c0.vocab_size,
              "combined_step: model " + std::to_string(m) + " has a vocabulary of " +
                  std::to_string(s.model().config.vocab_size) + ", model 0 of " +
                  std::to_string(c0.vocab_size) + ": their logits cannot be combined");
      require(s.batch() == m_sessions[0]->batch() &&
                  s.prompt_length() == m_sessions[0]->prompt_length(),
              "combined_step: session " + std::to_string(m) + " holds other prompts");
    }
    m_logits = tensor<T, D>({m_sessions[0]->batch(), c0.vocab_size});
    for (auto* s : m_sessions) m_inputs.push_back(s->logits());  // stable views of each session
  }

  int batch() const { return m_sessions[0]->batch(); }
  const model_config& config() const { return m_sessions[0]->model().config; }
  void prefill() {
    for (auto* s : m_sessions) s->prefill(no_hooks{}, step_outputs{.hidden = false});
    combine();
  }
  bool step(tensor_view<const std::int32_t, D> ids, std::uint64_t*) {
    for (auto* s : m_sessions) s->step(ids, no_hooks{}, step_outputs{.hidden = false});
    combine();
    return false;
  }
  tensor_view<const T, D> logits() const { return m_logits.view(); }
  std::int32_t* retire_groups() { return nullptr; }
  template <class F>
  void for_each_session(F&& f) {
    for (auto* s : m_sessions) f(*s);
  }

 private:
  void combine() {
    combine_logits(m_sessions[0]->ctx(), m_combiner, m_logits.view(),
                   std::span<const tensor_view<const T, D>>(m_inputs));
  }

  std::vector<session_type*> m_sessions;
  C m_combiner;
  std::vector<tensor_view<const T, D>> m_inputs;  // each session's logits (B, V)
  tensor<T, D> m_logits;                          // (B, V)
};

}  // namespace crossbatch
