// One model's side of a continuously batched run: a fixed set of rows (sequences) sharing one
// KV cache of fixed capacity, advanced one token per row per step while sequences join and leave
// between steps. Every row writes the same slot at a step (slots() before it); row r's tokens
// occupy slots [pad(r), slots()) and it has its own position counter, so a row is left padding
// of whatever length its arrival time gives it: causal + left_padding masks stay exact.
//   place()  a joining sequence's prompt K/V (prefilled on its own, see prefill_alone()) copied
//            right-aligned into a free row at [slots() - P, slots())
//   shift()  moves every row's slots by delta (right: room for a prompt longer than slots();
//            left by the smallest pad: compaction when the cache would overflow); K/V of a slot
//            do not depend on its index (positions are per row), so moving them is exact
//   step()   one token per row at the given positions; free rows step on harmless ids and
//            their outputs are ignored
// Logits of the newest position stay on the device (rows, V).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "crossbatch/core/transfer.hpp"
#include "crossbatch/generate/batch_session.hpp"
#include "crossbatch/model/decoder.hpp"

namespace crossbatch::serve {

// A prompt run through the model on its own (batch 1, no padding): the same prefill as a
// one-request generate(); its cache holds exactly the prompt's P slots.
template <class T, class D>
batch_session<T, D> prefill_alone(const context<D>& ctx, const decoder_model<T, D>& model,
                                  const std::vector<int>& prompt) {
  batch_session<T, D> s(ctx, model, {prompt}, 0);
  s.prefill(no_hooks{}, step_outputs{.hidden = false});
  return s;
}

template <class T, class D = cpu>
class running_batch {
 public:
  running_batch(const context<D>& ctx, const decoder_model<T, D>& model, int rows, int capacity)
      : m_ctx(ctx),
        m_model(model),
        m_rows(rows),
        m_cache(model.make_cache(rows, capacity)),
        m_ws(model.config, rows),
        m_x({rows, 1, model.config.hidden_size}),
        m_hidden({rows, model.config.hidden_size}),
        m_logits({rows, model.config.vocab_size}),
        m_pad_host(rows, 0),
        m_pad({rows}),
        m_ids({rows}),
        m_pos({rows}),
        m_scratch({index_t(capacity) * model.config.head_dim}) {
    require(rows >= 1 && capacity >= 1, "running_batch: needs at least one row and one slot");
  }

  int rows() const { return m_rows; }
  int capacity() const { return m_cache.capacity(); }
  int slots() const { return m_cache.length; }
  int pad(int row) const { return m_pad_host[row]; }
  const decoder_model<T, D>& model() const { return m_model; }
  tensor_view<const T, D> logits() const { return m_logits.view(); }  // (rows, V)

  // Copies slots [0, n) of sequence 0 of `src` into `row` at [slots() - n, slots()).
  void place(int row, kv_cache<T, D>& src, int n) {
    require(row >= 0 && row < m_rows, "running_batch::place: row " + std::to_string(row));
    require(n >= 1 && n <= slots() && n <= src.capacity(),
            "running_batch::place: " + std::to_string(n) + " slots do not fit before slot " +
                std::to_string(slots()));
    const int dst = slots() - n;
    for (int l = 0; l < m_cache.layers(); ++l)
      for (int h = 0; h < m_cache.kv_heads(); ++h) {
        copy_slots(src.k, l, 0, h, 0, m_cache.k, row, dst, n, src.capacity());
        copy_slots(src.v, l, 0, h, 0, m_cache.v, row, dst, n, src.capacity());
      }
    m_pad_host[row] = dst;
  }

  // Marks a row free: it sees only its own newest slot from now on.
  void release(int row) { m_pad_host[row] = slots(); }

  // Smallest pad over `live` rows (the slots compaction can drop).
  int min_pad(const std::vector<bool>& live) const {
    int m = slots();
    for (int r = 0; r < m_rows; ++r)
      if (live[r]) m = std::min(m, m_pad_host[r]);
    return m;
  }

  // Moves the slots [pad(r), slots()) of every `live` row by delta; slots() += delta. Free rows
  // end with pad = slots().
  void shift(int delta, const std::vector<bool>& live) {
    const int n = slots();
    require(n + delta >= 0 && n + delta <= capacity(),
            "running_batch::shift: " + std::to_string(delta) + " from " + std::to_string(n) +
                " slots leaves the cache");
    if (delta < 0) require(-delta <= min_pad(live), "running_batch::shift: would drop real slots");
    for (int r = 0; r < m_rows; ++r) {
      if (!live[r]) continue;
      const int first = m_pad_host[r], count = n - first;
      for (int l = 0; l < m_cache.layers() && count > 0; ++l)
        for (int h = 0; h < m_cache.kv_heads(); ++h) {
          move_slots(m_cache.k, l, r, h, first, first + delta, count);
          move_slots(m_cache.v, l, r, h, first, first + delta, count);
        }
      m_pad_host[r] = first + delta;
    }
    m_cache.length = n + delta;
    for (int r = 0; r < m_rows; ++r)
      if (!live[r]) m_pad_host[r] = m_cache.length;
  }

  // Empties the cache (every row free).
  void clear() {
    m_cache.length = 0;
    std::fill(m_pad_host.begin(), m_pad_host.end(), 0);
  }

  // One token per row: ids and positions (rows) on the host; writes slot slots().
  void step(const std::vector<std::int32_t>& ids, const std::vector<std::int32_t>& positions) {
    const auto& c = m_model.config;
    require(int(ids.size()) == m_rows && int(positions.size()) == m_rows,
            "running_batch::step: one id and position per row");
    require(slots() < capacity(), "running_batch::step: the KV cache is full");
    const std::size_t bytes = sizeof(std::int32_t) * m_rows;
    device_traits<D>::upload(m_ids.data(), ids.data(), bytes);
    device_traits<D>::upload(m_pos.data(), positions.data(), bytes);
    device_traits<D>::upload(m_pad.data(), m_pad_host.data(), bytes);
    const tensor_view<const std::int32_t, D> idv = m_ids.view(), posv = m_pos.view();
    auto x2 = m_x.view().reshape({m_rows, c.hidden_size});
    m_model.embed_tokens(m_ctx, x2, idv, posv);
    const all_of<causal, left_padding> mask(causal{}, left_padding{m_pad.data()});
    m_model.run_layers(m_ctx, m_x.view(), posv, m_cache, slots(), mask, 0, c.num_layers, m_ws);
    ++m_cache.length;
    m_model.final_norm(m_ctx, m_hidden.view(), tensor_view<const T, D>(x2));
    m_model.logits(m_ctx, m_logits.view(), tensor_view<const T, D>(m_hidden.view()));
  }

 private:
  // Offset of (layer, row, head, slot) in a (L, B, Hkv, S, Dh) cache tensor.
  static index_t offset(const tensor<T, D>& t, int l, int b, int h, int slot) {
    return (((index_t(l) * t.dim(1) + b) * t.dim(2) + h) * t.dim(3) + slot) * t.dim(4);
  }
  static void copy_slots(const tensor<T, D>& src, int l, int sb, int h, int sfirst,
                         tensor<T, D>& dst, int db, int dfirst, int n, int) {
    device_traits<D>::copy(dst.data() + offset(dst, l, db, h, dfirst),
                           src.data() + offset(src, l, sb, h, sfirst),
                           sizeof(T) * index_t(n) * dst.dim(4));
  }
  // Overlapping move within one (layer, row, head) through the scratch buffer.
  void move_slots(tensor<T, D>& t, int l, int b, int h, int from, int to, int n) {
    if (from == to) return;
    const std::size_t bytes = sizeof(T) * index_t(n) * t.dim(4);
    device_traits<D>::copy(m_scratch.data(), t.data() + offset(t, l, b, h, from), bytes);
    device_traits<D>::copy(t.data() + offset(t, l, b, h, to), m_scratch.data(), bytes);
  }

  const context<D>& m_ctx;
  const decoder_model<T, D>& m_model;
  int m_rows = 0;
  kv_cache<T, D> m_cache;  // (L, rows, Hkv, capacity, Dh)
  decoder_workspace<T, D> m_ws;
  tensor<T, D> m_x, m_hidden, m_logits;  // (rows, 1, C), (rows, C), (rows, V)
  std::vector<std::int32_t> m_pad_host;  // (rows) first real slot of each row
  tensor<std::int32_t, D> m_pad, m_ids, m_pos;
  tensor<T, D> m_scratch;  // one (slots, Dh) run of the cache
};

}  // namespace crossbatch::serve
