// What an ARMT executor is asked for and what it returns (recurrent/sequential.hpp,
// recurrent/diagonal.hpp), and the pieces both share: the per-sequence result buffers and the
// logits of a finished cell.
#pragma once

#include <algorithm>
#include <vector>

#include "crossbatch/recurrent/memory_hooks.hpp"

namespace crossbatch {

struct armt_options {
  bool memory = true;          // false: memory neither read nor written (the base model per segment)
  bool all_logits = true;      // false: only the last segment's logits of each sequence are kept
  bool record_states = false;  // keep every layer's A and z after every segment
};

struct armt_result {
  std::vector<tensor<float>> logits;  // per sequence: (n, V), or (last segment's len, V)
  std::vector<memory_state> states;   // per sequence: A, z after its last segment
  std::vector<tensor<float>> A_trace;  // per sequence (N, L, d_key, C) when record_states
  std::vector<tensor<float>> z_trace;  // per sequence (N, L, d_key)
  double compute_seconds = 0;  // CUDA: device time of the schedule (no allocation, no downloads)
};

namespace armt_detail {
// Result buffers for the plan; states zeroed.
inline armt_result make_result(const model_config& c, const armt_config& a,
                               const std::vector<std::vector<armt_cell>>& plan,
                               const armt_options& opt) {
  armt_result r;
  for (const auto& cells : plan) {
    const int n = cells.back().start + cells.back().len;
    r.logits.emplace_back(shape_t{opt.all_logits ? n : cells.back().len, c.vocab_size});
    r.states.emplace_back(c.num_layers, a.d_key(), c.hidden_size);
    if (opt.record_states) {
      const index_t N = index_t(cells.size());
      r.A_trace.emplace_back(shape_t{N, c.num_layers, a.d_key(), c.hidden_size});
      r.z_trace.emplace_back(shape_t{N, c.num_layers, a.d_key()});
    }
  }
  return r;
}

// Copies layer l's state of cell's sequence into the traces.
inline void record_state(armt_result& r, const armt_cell& cell, int l, const memory_state& s) {
  if (r.A_trace.empty()) return;
  const index_t a_size = s.A.dim(1) * s.A.dim(2), z_size = s.z.dim(1), layers = s.A.dim(0);
  std::copy_n(s.A.data() + l * a_size, a_size,
              r.A_trace[cell.seq].data() + (cell.seg * layers + l) * a_size);
  std::copy_n(s.z.data() + l * z_size, z_size,
              r.z_trace[cell.seq].data() + (cell.seg * layers + l) * z_size);
}

// Final norm + LM head of the text rows of a cell's last-layer output x (T, C) into the result
// (every cell when all_logits, else only the sequence's last cell).
template <class T>
void emit_logits(const context<cpu>& ctx, const armt_model<T>& m,
                 const std::vector<std::vector<armt_cell>>& plan, const armt_cell& cell,
                 tensor_view<const T> x, const armt_options& opt, armt_result& r,
                 tensor<T>& hidden, tensor<T>& logits) {
  const bool last = cell.seg + 1 == int(plan[cell.seq].size());
  if (!opt.all_logits && !last) return;
  const index_t len = cell.len, v = m.config().vocab_size;
  auto h = tensor_view<T>(hidden.data(), {len, m.config().hidden_size});
  auto lg = tensor_view<T>(logits.data(), {len, v});
  m.base.final_norm(ctx, h, x.narrow(0, 0, len));
  m.base.logits(ctx, lg, h);
  float* out = r.logits[cell.seq].data() + (opt.all_logits ? index_t(cell.start) * v : 0);
  for (index_t i = 0; i < len * v; ++i) out[i] = static_cast<float>(lg.data[i]);
}
}  // namespace armt_detail

}  // namespace crossbatch
