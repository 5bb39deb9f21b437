// The sequential ARMT executor: segment after segment, layer after layer, the reference every
// faster schedule is checked against. Segment s of every sequence that has one runs as one batch
// (B_s, T, C) through the decoder's run_layers with memory_hooks: each sequence reads its memory
// before every block and writes it from the block output's memory rows after it.
#pragma once

#include <numeric>
#include <vector>

#include "crossbatch/recurrent/armt_run.hpp"

namespace crossbatch {

template <class T>
armt_result armt_sequential(const context<cpu>& ctx, const armt_model<T>& m,
                            const std::vector<std::vector<int>>& seqs,
                            const armt_options& opt = {}) {
  const auto& c = m.config();
  const auto& a = m.armt;
  const auto plan = plan_segments(a, c, seqs);
  armt_result r = armt_detail::make_result(c, a, plan, opt);
  const index_t t = a.rows(), batch = index_t(seqs.size());
  std::size_t segments = 0;
  for (const auto& p : plan) segments = std::max(segments, p.size());

  decoder_workspace<T> ws(c, batch * t);
  tensor<T> x({batch, t, c.hidden_size}), hidden({t, c.hidden_size}), logits({t, c.vocab_size});
  tensor<std::int32_t> pos({batch * t});
  kv_cache<T> cache;
  index_t cache_batch = -1;
  const memory_write_callback record = [&](const armt_cell& cell, int l, const memory_state& s) {
    armt_detail::record_state(r, cell, l, s);
  };
  for (std::size_t s = 0; s < segments; ++s) {
    std::vector<armt_cell> cells;  // segment s of every sequence that has one
    for (const auto& p : plan)
      if (s < p.size()) cells.push_back(p[s]);
    const index_t b = index_t(cells.size());
    auto xs = tensor_view<T>(x.data(), {b, t, c.hidden_size});
    for (index_t i = 0; i < b; ++i) {
      segment_input(ctx, m, cells[i], std::span<const int>(seqs[cells[i].seq]), xs.select(i));
      segment_positions(a, pos.data() + i * t);
    }
    if (cache_batch != b) cache = m.base.make_cache(int(b), int(t)), cache_batch = b;
    memory_hooks<T> hooks{{}, m, cells, r.states, opt.memory, opt.record_states ? &record : nullptr};
    m.base.run_layers(ctx, xs, tensor_view<const std::int32_t>(pos.data(), {b * t}), cache, 0,
                      causal{}, 0, c.num_layers, ws, hooks);
    for (index_t i = 0; i < b; ++i)
      armt_detail::emit_logits(ctx, m, plan, cells[i], tensor_view<const T>(xs.select(i)), opt, r,
                               hidden, logits);
  }
  return r;
}

}  // namespace crossbatch
