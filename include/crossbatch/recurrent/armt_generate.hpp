// Generation with ARMT. Every segment but the last runs through an executor (with memory writes);
// the last segment's text is then prefilled WITHOUT memory tokens, reading the memory at every
// layer and writing nothing, and decoding continues with an ordinary KV cache, each new token
// reading the (now static) memory before every block. The last segment's prefill and the decode
// steps are the engine's batch_session under memory_read_hooks, driven by decode() through
// armt_step (a step policy), so sampling, stopping and streaming are the engine's.
#pragma once

#include <vector>

#include "crossbatch/generate/generate.hpp"
#include "crossbatch/recurrent/diagonal.hpp"
#include "crossbatch/recurrent/sequential.hpp"

namespace crossbatch {

// The memory states after all but the last segment of each sequence, and the last segments.
struct armt_prefix {
  std::vector<memory_state> states;           // per sequence
  std::vector<bool> reads;                    // false for a sequence of a single segment
  std::vector<std::vector<int>> last_segment;  // per sequence: the tokens of its last segment
};

// Runs segments 0 .. N-2 of every sequence (sequentially or on the diagonal schedule).
template <class T>
armt_prefix armt_prefill_memory(const context<cpu>& ctx, const armt_model<T>& m,
                                const std::vector<std::vector<int>>& seqs, bool diagonal = true) {
  const auto plan = plan_segments(m.armt, m.config(), seqs);
  armt_prefix p;
  std::vector<std::vector<int>> heads;
  std::vector<std::size_t> with_head;
  for (std::size_t b = 0; b < seqs.size(); ++b) {
    const auto& last = plan[b].back();
    p.last_segment.emplace_back(seqs[b].begin() + last.start, seqs[b].end());
    p.reads.push_back(plan[b].size() > 1);
    p.states.emplace_back(m.layers(), m.armt.d_key(), m.config().hidden_size);
    if (last.start > 0) {
      heads.emplace_back(seqs[b].begin(), seqs[b].begin() + last.start);
      with_head.push_back(b);
    }
  }
  if (!heads.empty()) {
    const armt_options opt{.all_logits = false};
    auto r = diagonal ? armt_diagonal(ctx, m, heads, opt) : armt_sequential(ctx, m, heads, opt);
    for (std::size_t i = 0; i < with_head.size(); ++i)
      p.states[with_head[i]] = std::move(r.states[i]);
  }
  return p;
}

// A step policy (generate/step_policy.hpp) over a session of the last segments: the memory read
// hooks in every prefill and step.
template <class T>
class armt_step {
 public:
  using session_type = batch_session<T, cpu, left_padded>;
  armt_step(session_type& s, const armt_model<T>& m, armt_prefix& p)
      : m_session(s), m_hooks{{}, m, p.states, p.reads} {}

  int batch() const { return m_session.batch(); }
  void prefill() { m_session.prefill(m_hooks, step_outputs{.hidden = false}); }
  bool step(tensor_view<const std::int32_t> ids, std::uint64_t*) {
    m_session.step(ids, m_hooks, step_outputs{.hidden = false});
    return false;
  }
  tensor_view<const T> logits() const { return m_session.logits(); }
  std::int32_t* retire_groups() { return nullptr; }

 private:
  session_type& m_session;
  memory_read_hooks<T> m_hooks;
};

// Generates a continuation of every sequence (the whole sequence is the prompt).
template <class T, sampler S>
generation_result armt_generate(const context<cpu>& ctx, const armt_model<T>& m,
                                const std::vector<std::vector<int>>& seqs, const S& sampler,
                                const generation_options& opt, bool diagonal = true,
                                const token_callback& on_token = {}) {
  auto prefix = armt_prefill_memory(ctx, m, seqs, diagonal);
  batch_session<T, cpu, left_padded> session(ctx, m.base, prefix.last_segment, opt.max_new_tokens);
  armt_step<T> policy(session, m, prefix);
  auto r = decode<T, cpu>(ctx, policy, sampler, opt, stop_ids(opt, m.config()), on_token);
  r.prompt_tokens = 0;
  for (const auto& s : seqs) r.prompt_tokens += int(s.size());
  return r;
}

}  // namespace crossbatch
