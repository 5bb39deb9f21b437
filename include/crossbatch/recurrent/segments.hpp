// How ARMT cuts sequences into segments and lays one segment out as the rows of a layer call.
// A sequence of n tokens becomes ceil(n / S) left-aligned chunks (the last may be shorter). A
// segment occupies T = S + M rows: its len text tokens, then the M memory tokens, then S - len pad
// rows (a short last segment only). Attention is causal, so text and memory rows never see the
// pad rows: a padded segment computes exactly what the unpadded len + M rows would, and every cell
// of every executor has the same shape (the diagonal schedule groups cells of equal shape).
// Positions restart at 0 in every segment: text i at i, memory j at len + j (or, with wrap_pos,
// the memory rows take the extra position rows memory_position_start + j), pad rows at len + M + j.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "crossbatch/recurrent/armt_model.hpp"

namespace crossbatch {

// Segment `seg` of sequence `seq`: tokens [start, start + len) of it.
struct armt_cell {
  int seq = 0, seg = 0;
  int start = 0, len = 0;
  bool first() const { return seg == 0; }
};

// Every sequence's cells in order; checks that sequences are non-empty and ids in the vocabulary.
inline std::vector<std::vector<armt_cell>> plan_segments(const armt_config& a, const model_config& c,
                                                         const std::vector<std::vector<int>>& seqs) {
  require(!seqs.empty(), "armt: no sequences");
  std::vector<std::vector<armt_cell>> plan(seqs.size());
  for (std::size_t b = 0; b < seqs.size(); ++b) {
    const int n = static_cast<int>(seqs[b].size());
    require(n > 0, "armt: sequence " + std::to_string(b) + " is empty");
    for (int i = 0; i < n; ++i)
      require(seqs[b][i] >= 0 && seqs[b][i] < c.vocab_size,
              "armt: sequence " + std::to_string(b) + " holds token id " +
                  std::to_string(seqs[b][i]) + " at " + std::to_string(i) +
                  ", outside the vocabulary of " + std::to_string(c.vocab_size));
    for (int s = 0; s * a.segment_size < n; ++s) {
      const int start = s * a.segment_size;
      plan[b].push_back({int(b), s, start, std::min(a.segment_size, n - start)});
    }
  }
  return plan;
}

// Positions (T) of a segment's rows as the decoder block sees them (RoPE; gpt2 adds its position
// embeddings in segment_input): row r sits at position r (text i, memory len + j, pad len + M + j).
inline void segment_positions(const armt_config& a, std::int32_t* pos) {
  for (int r = 0; r < a.rows(); ++r) pos[r] = r;
}

// x (T, C) = the segment's input rows: token embeddings (+ gpt2 position embeddings) of its text,
// the memory embeddings (+ their positions), zero pad rows.
template <class T>
void segment_input(const context<cpu>& ctx, const armt_model<T>& m, const armt_cell& cell,
                   std::span<const int> tokens, tensor_view<T> x) {
  const auto& a = m.armt;
  const index_t c = m.config().hidden_size, len = cell.len, mem = a.num_mem_tokens;
  require<shape_error>(x.shape == shape_t{a.rows(), c}, "segment_input: x must be (T, C)");
  std::vector<std::int32_t> ids(len), pos(len);
  for (index_t i = 0; i < len; ++i) ids[i] = tokens[cell.start + i], pos[i] = std::int32_t(i);
  const auto view = [](std::vector<std::int32_t>& v) {
    return tensor_view<const std::int32_t>(v.data(), {index_t(v.size())});
  };
  m.base.embed_tokens(ctx, x.narrow(0, 0, len), view(ids), view(pos));
  auto xm = x.narrow(0, len, mem);
  std::vector<std::int32_t> rows(mem), mem_pos(mem);
  for (index_t j = 0; j < mem; ++j) rows[j] = std::int32_t(j), mem_pos[j] = std::int32_t(len + j);
  embedding(ctx, xm, view(rows), m.memory.memory.view());
  if (m.config().kind == family::gpt2) {
    if (a.wrap_pos)
      embedding(ctx, xm, view(rows), m.memory.memory_pos.view(), /*accumulate=*/true);
    else
      embedding(ctx, xm, view(mem_pos), m.base.pos_embed.view(), /*accumulate=*/true);
  }
  auto pad = x.narrow(0, len + mem, a.segment_size - len);
  for (index_t i = 0; i < pad.shape[0]; ++i)
    for (index_t j = 0; j < c; ++j) pad(i, j) = T(0.0f);
}

}  // namespace crossbatch
