// ARMT's associative memory as block hooks of decoder_block (model/block_hooks.hpp): before each
// block every sequence of the call reads its layer's memory (skipped in segment 0), after it the
// block output at the memory rows is written. Row b of the call's residual stream (B, T, C) is
// cell cells[b]. The sequential executor runs these; generation uses memory_read_hooks (reads at
// every position, no writes: memory is static while decoding).
#pragma once

#include <functional>
#include <span>
#include <vector>

#include "crossbatch/model/block_hooks.hpp"
#include "crossbatch/recurrent/associative_memory.hpp"
#include "crossbatch/recurrent/segments.hpp"

namespace crossbatch {

// Called after layer l wrote cell's memory (tests record every layer's A and z with it).
using memory_write_callback = std::function<void(const armt_cell&, int layer, const memory_state&)>;

template <class T>
struct memory_hooks : hooks_base {
  const armt_model<T>& model;
  std::span<const armt_cell> cells;   // one per row of the call's batch
  std::span<memory_state> states;     // by sequence
  bool enabled = true;                // false: the base model only (memory neither read nor written)
  const memory_write_callback* on_write = nullptr;

  void before_block(const context<cpu>& ctx, int l, tensor_view<T> x) const {
    if (!enabled) return;
    for (std::size_t b = 0; b < cells.size(); ++b) {
      const auto& c = cells[b];
      if (c.first()) continue;
      memory_read(ctx, x.select(b).narrow(0, 0, c.len + model.armt.num_mem_tokens),
                  model.memory.layers[l], states[c.seq], l, model.armt.nu);
    }
  }
  void after_block(const context<cpu>& ctx, int l, tensor_view<T> x) const {
    if (!enabled) return;
    for (std::size_t b = 0; b < cells.size(); ++b) {
      const auto& c = cells[b];
      memory_write(ctx, tensor_view<const T>(x.select(b).narrow(0, c.len, model.armt.num_mem_tokens)),
                   model.memory.layers[l], states[c.seq], l, c.first(), model.armt.nu,
                   model.armt.correction);
      if (on_write && *on_write) (*on_write)(c, l, states[c.seq]);
    }
  }
};

// Reads only, at every row of the call (generation: the last segment's prefill and each decode
// step); reads[b] false (a sequence with a single segment: its memory is empty) skips row b.
template <class T>
struct memory_read_hooks : hooks_base {
  const armt_model<T>& model;
  std::span<memory_state> states;  // by batch row
  std::vector<bool> reads;

  void before_block(const context<cpu>& ctx, int l, tensor_view<T> x) const {
    for (std::size_t b = 0; b < states.size(); ++b)
      if (reads[b])
        memory_read(ctx, x.select(b), model.memory.layers[l], states[b], l, model.armt.nu);
  }
};

}  // namespace crossbatch
