// The diagonal ARMT executor (../shared/reference/armt_diagonal_batching_spec.md). Cell (l, j)
// (layer l of slice j) needs (l - 1, j) (its input) and (l, j - 1) (layer l's memory), so it runs
// at step i = j + l: J + L - 1 steps instead of J * L layer calls. At step i the active layers are
// lo = max(0, i - J + 1) .. hi = min(i, L - 1), and they run as one grouped layer
// (recurrent/grouped_layer.hpp); before it every member reads its layer's memory, after it every
// member writes it, and the member at layer L - 1 emits its slice's logits.
// A slice is what enters layer 0 in one step:
//   lockstep   slice j = segment j of every sequence that has one (a batch in lock step)
//   amortised  slice = one segment; the sequences stream through the layer ring back to back
//              (sequence b + 1's first segment enters right after sequence b's last), so the
//              pipeline stays full across sequences. Each sequence has its own A, z (zero when it
//              enters), which is the reference's ring of L slots zeroed when a new sequence enters.
// The first-segment rule is applied by segment index (armt_cell::first), so the result equals the
// sequential executor's: bit for bit when the cells' GEMMs have the same row counts (lockstep).
#pragma once

#include <deque>
#include <map>
#include <vector>

#include "crossbatch/recurrent/armt_run.hpp"
#include "crossbatch/recurrent/grouped_layer.hpp"

namespace crossbatch {

enum class diagonal_mode { lockstep, amortised };

template <class T>
armt_result armt_diagonal(const context<cpu>& ctx, const armt_model<T>& m,
                          const std::vector<std::vector<int>>& seqs, const armt_options& opt = {},
                          diagonal_mode mode = diagonal_mode::lockstep) {
  const auto& c = m.config();
  const auto& a = m.armt;
  const auto plan = plan_segments(a, c, seqs);
  armt_result r = armt_detail::make_result(c, a, plan, opt);
  std::vector<std::vector<armt_cell>> slices;
  if (mode == diagonal_mode::amortised) {
    for (const auto& p : plan)
      for (const auto& cell : p) slices.push_back({cell});
  } else {
    for (std::size_t s = 0;; ++s) {
      std::vector<armt_cell> slice;
      for (const auto& p : plan)
        if (s < p.size()) slice.push_back(p[s]);
      if (slice.empty()) break;
      slices.push_back(std::move(slice));
    }
  }
  const int layers = c.num_layers, steps = int(slices.size()) + layers - 1;
  const index_t t = a.rows();
  index_t widest = 0;  // most sequences in flight in one step
  for (int i = 0; i < steps; ++i) {
    index_t w = 0;
    for (int l = std::max(0, i - int(slices.size()) + 1); l <= std::min(i, layers - 1); ++l)
      w += index_t(slices[i - l].size());
    widest = std::max(widest, w);
  }
  grouped_workspace<T> ws(c, widest, t);
  tensor<T> hidden({t, c.hidden_size}), logits({t, c.vocab_size});
  std::map<int, tensor<T>> live;  // slice -> its residual stream (b, T, C) between layers
  std::vector<group_member<T>> members;
  for (int i = 0; i < steps; ++i) {
    const int lo = std::max(0, i - int(slices.size()) + 1), hi = std::min(i, layers - 1);
    if (i < int(slices.size())) {  // slice i enters layer 0
      const auto& slice = slices[i];
      tensor<T> x({index_t(slice.size()), t, c.hidden_size});
      for (std::size_t k = 0; k < slice.size(); ++k)
        segment_input(ctx, m, slice[k], std::span<const int>(seqs[slice[k].seq]),
                      x.view().select(index_t(k)));
      live.emplace(i, std::move(x));
    }
    members.clear();
    index_t row = 0;
    for (int l = lo; l <= hi; ++l) {
      auto& x = live.at(i - l);
      members.push_back({l, x.view()});
      for (index_t k = 0; k < x.dim(0); ++k, row += t) segment_positions(a, ws.positions.data() + row);
    }
    if (opt.memory)  // every member reads its layer's memory (not in a sequence's segment 0)
      for (const auto& g : members) {
        const auto& slice = slices[i - g.layer];
        for (std::size_t k = 0; k < slice.size(); ++k)
          if (!slice[k].first())
            memory_read(ctx, g.x.select(index_t(k)).narrow(0, 0, slice[k].len + a.num_mem_tokens),
                        m.memory.layers[g.layer], r.states[slice[k].seq], g.layer, a.nu);
      }
    grouped_decoder_layer(ctx, m.base, std::span<const group_member<T>>(members),
                          tensor_view<const std::int32_t>(ws.positions.data(), {row}), ws);
    if (opt.memory)  // every member writes its layer's memory from the block output
      for (const auto& g : members) {
        const auto& slice = slices[i - g.layer];
        for (std::size_t k = 0; k < slice.size(); ++k) {
          const auto& cell = slice[k];
          memory_write(ctx,
                       tensor_view<const T>(g.x.select(index_t(k)).narrow(0, cell.len,
                                                                          a.num_mem_tokens)),
                       m.memory.layers[g.layer], r.states[cell.seq], g.layer, cell.first(), a.nu,
                       a.correction);
          if (opt.record_states)
            armt_detail::record_state(r, cell, g.layer, r.states[cell.seq]);
        }
      }
    if (hi == layers - 1) {  // the slice at the last layer is done
      const int j = i - (layers - 1);
      auto& x = live.at(j);
      for (std::size_t k = 0; k < slices[j].size(); ++k)
        armt_detail::emit_logits(ctx, m, plan, slices[j][k],
                                 tensor_view<const T>(x.view().select(index_t(k))), opt, r, hidden,
                                 logits);
      live.erase(j);
    }
  }
  return r;
}

}  // namespace crossbatch
