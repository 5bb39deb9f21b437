// Generation with ARMT on the GPU, as recurrent/armt_generate.hpp on the CPU: every segment but
// the last runs through an executor (with memory writes), keeping the memory states on the
// device; the last segment's text is prefilled WITHOUT memory tokens, reading the memory before
// every block and writing nothing, and decoding continues with an ordinary KV cache, each new
// token reading the (static) memory. The prefill and decode steps are the engine's batch_session
// under cuda_memory_read_hooks, driven by decode(), so sampling and stopping are the engine's.
#pragma once

#include <vector>

#include "crossbatch/generate/generate.hpp"
#include "crossbatch/recurrent/cuda/executors.cuh"

namespace crossbatch {

// The device memory states after all but the last segment of each sequence, and the last
// segments.
struct cuda_armt_prefix {
  std::vector<device_memory_state> states;     // per sequence
  std::vector<bool> reads;                     // false for a sequence of a single segment
  std::vector<std::vector<int>> last_segment;  // per sequence
};

template <class T>
cuda_armt_prefix armt_prefill_memory(const context<cuda>& ctx, const cuda_armt<T>& m,
                                     const std::vector<std::vector<int>>& seqs,
                                     bool diagonal = true) {
  const auto plan = plan_segments(m.armt, m.config(), seqs);
  cuda_armt_prefix p;
  std::vector<std::vector<int>> heads;
  std::vector<std::size_t> with_head;
  for (std::size_t b = 0; b < seqs.size(); ++b) {
    const auto& last = plan[b].back();
    p.last_segment.emplace_back(seqs[b].begin() + last.start, seqs[b].end());
    p.reads.push_back(plan[b].size() > 1);
    p.states.emplace_back(m.config().num_layers, m.armt.d_key(), m.config().hidden_size);
    if (last.start > 0) {
      heads.emplace_back(seqs[b].begin(), seqs[b].begin() + last.start);
      with_head.push_back(b);
    }
  }
  if (!heads.empty()) {
    const armt_options opt{.all_logits = false};
    std::vector<device_memory_state> kept;
    if (diagonal)
      armt_diagonal(ctx, m, heads, opt, gemm_mode::batched, diagonal_mode::lockstep, &kept);
    else
      armt_sequential(ctx, m, heads, opt, gemm_mode::batched, &kept);
    for (std::size_t i = 0; i < with_head.size(); ++i) p.states[with_head[i]] = std::move(kept[i]);
  }
  return p;
}

// Reads only, at every row of the call; reads[b] false skips row b (its memory is empty).
template <class T>
struct cuda_memory_read_hooks : hooks_base {
  const cuda_armt<T>& model;
  std::vector<device_memory_state>& states;  // by batch row
  const std::vector<bool>& reads;
  memory_scratch* scratch;

  void before_block(const context<cuda>& ctx, int l, tensor_view<T, cuda> x) const {
    std::vector<memory_cell<T>> cells;
    for (std::size_t b = 0; b < states.size(); ++b)
      if (reads[b]) cells.push_back({x.select(index_t(b)).data, &states[b], l, false});
    memory_read<T>(ctx, cells, model.layers, model.armt, *scratch, x.shape[1]);
  }
};

// A step policy (generate/step_policy.hpp) over a session of the last segments.
template <class T>
class cuda_armt_step {
 public:
  using session_type = batch_session<T, cuda, left_padded>;
  cuda_armt_step(session_type& s, const cuda_armt<T>& m, cuda_armt_prefix& p)
      : m_session(s),
        m_scratch(index_t(p.states.size()), m.config().hidden_size, m.armt),
        m_hooks{{}, m, p.states, p.reads, &m_scratch} {}

  int batch() const { return m_session.batch(); }
  void prefill() { m_session.prefill(m_hooks, step_outputs{.hidden = false}); }
  bool step(tensor_view<const std::int32_t, cuda> ids, std::uint64_t*) {
    m_session.step(ids, m_hooks, step_outputs{.hidden = false});
    return false;
  }
  tensor_view<const T, cuda> logits() const { return m_session.logits(); }
  std::int32_t* retire_groups() { return nullptr; }

 private:
  session_type& m_session;
  memory_scratch m_scratch;
  cuda_memory_read_hooks<T> m_hooks;
};

// Generates a continuation of every sequence (the whole sequence is the prompt).
template <class T, sampler S>
generation_result armt_generate(const context<cuda>& ctx, const cuda_armt<T>& m,
                                const std::vector<std::vector<int>>& seqs, const S& sampler,
                                const generation_options& opt, bool diagonal = true,
                                const token_callback& on_token = {}) {
  auto prefix = armt_prefill_memory(ctx, m, seqs, diagonal);
  batch_session<T, cuda, left_padded> session(ctx, m.base, prefix.last_segment, opt.max_new_tokens);
  cuda_armt_step<T> policy(session, m, prefix);
  auto r = decode<T, cuda>(ctx, policy, sampler, opt, stop_ids(opt, m.config()), on_token);
  r.prompt_tokens = 0;
  for (const auto& s : seqs) r.prompt_tokens += int(s.size());
  return r;
}

}  // namespace crossbatch
