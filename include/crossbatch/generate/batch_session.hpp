// One batch of prompts running through a decoder model: the layout (generate/layout.hpp) turns
// the prompts into padded slots, ids, positions and the mask; the session owns the KV cache and
// runs one prefill, then one token per sequence per step. It leaves final hidden states and logits
// of the newest position of every sequence; sampling and stopping belong to the decode driver
// (generate/generate.hpp, generate/cuda/graph_driver.cuh), so experiments that act on hidden
// states or combine models (mixers, LDA) reuse it. Block hooks (model/block_hooks.hpp) run inside
// the layers of a call; a step without hooks that needs no hidden states takes the device's fused
// decode step where there is one (generate/fast_path.hpp).
//
// Under a device slot shift (context<cuda>::slot_shift, set by the graph driver) a step writes at
// slot (T - 1) + *shift with shift >= 1 and leaves the host-side slot count alone, so that one
// captured step serves every step; set_length() then tells the session how far it got.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "crossbatch/core/transfer.hpp"
#include "crossbatch/generate/fast_path.hpp"
#include "crossbatch/generate/layout.hpp"
#include "crossbatch/model/decoder.hpp"

namespace crossbatch {

// What a prefill or step computes after the layers. A step that took the fused path (no hooks,
// hidden = false) leaves hidden() and last_residual() as they were: only logits() is new.
struct step_outputs {
  bool hidden = true;  // final-normed hidden() (false allows the fused step, which skips them)
  bool logits = true;  // logits() through the model's LM head
  std::uint64_t* greedy_best = nullptr;  // (B), zero on entry: the fused step may fold the argmax
};

template <class T, class D = cpu, class Layout = left_padded>
class batch_session {
 public:
  using layout_type = Layout;
  using prompt = typename Layout::prompt;
  using mask_type = typename Layout::mask_type;

  fused_decode_options fused;  // the fast path's switches and launch shapes

  // Lays out and validates the prompts (Layout::lay_out) and allocates the cache for
  // max_new_tokens more slots.
  batch_session(const context<D>& ctx, const decoder_model<T, D>& model,
                const std::vector<prompt>& prompts, int max_new_tokens, Layout layout = {})
      : m_ctx(ctx), m_model(model), m_layout(layout) {
    const auto& c = model.config;
    m_host = m_layout.lay_out(c, prompts, max_new_tokens);
    m_batch = static_cast<int>(prompts.size());
    m_prompt_len = m_host.length;
    m_cache = model.make_cache(m_batch, m_prompt_len + max_new_tokens);
    m_ws = decoder_workspace<T, D>(c, index_t(m_batch) * m_prompt_len);
    m_x = tensor<T, D>({m_batch, m_prompt_len, c.hidden_size});
    m_hidden = tensor<T, D>({m_batch, c.hidden_size});
    m_logits = tensor<T, D>({m_batch, c.vocab_size});
    m_pad = to_device<D>(m_host.pad);
    if (!m_host.segment.empty()) {
      m_segment = to_device<D>(m_host.segment);
      m_gen_start = to_device<D>(m_host.gen_start);
    }
    m_prompt_ids = to_device<D>(m_host.ids);
    m_prompt_pos = to_device<D>(m_host.positions);
    m_step_ids = tensor<std::int32_t, D>({m_batch});
    tensor<std::int32_t> next({m_batch});
    for (int s = 0; s < m_batch; ++s) next(s) = m_host.next_position[s];
    m_pos = to_device<D>(next);
  }

  // An independent deep copy (KV cache, residual stream, newest states, positions) of a session
  // that is not paused: one prefill, then several decodes that diverge.
  batch_session fork() const {
    require(!m_paused, "fork: the session is paused; call resume() first");
    return batch_session(*this, fork_tag{});
  }
  batch_session(batch_session&&) = default;

  int batch() const { return m_batch; }
  int prompt_length() const { return m_prompt_len; }  // T, padded
  int slots_used() const { return m_cache.length; }
  int capacity() const { return m_cache.capacity(); }
  const laid_out_batch& layout() const { return m_host; }
  const decoder_model<T, D>& model() const { return m_model; }
  const context<D>& ctx() const { return m_ctx; }
  mask_type mask() const {
    return Layout::mask(
        layout_mask_state{m_pad.data(), m_segment.data(), m_gen_start.data(), m_prompt_len});
  }
  // Positions (B) of the tokens the next step feeds, on the device.
  tensor_view<const std::int32_t, D> positions() const { return m_pos.view(); }

  // Runs the prompts through every layer (with hooks); afterwards hidden() and logits() hold the
  // newest position of each sequence.
  template <class Hooks = no_hooks>
  void prefill(Hooks&& hooks = {}, const step_outputs& out = {}) {
    begin_prefill();
    m_model.run_layers(m_ctx, m_x.view(), flat(m_prompt_pos), m_cache, 0, mask(), 0,
                       m_model.config.num_layers, m_ws, hooks);
    m_cache.length = m_prompt_len;
    finish_call(m_x.view(), out);
  }

  // Feeds one token per sequence, ids (B) on the device, at positions() and the next slot, and
  // advances both. Returns true when the fused step folded the greedy argmax into
  // out.greedy_best.
  template <class Hooks = no_hooks>
  bool step(tensor_view<const std::int32_t, D> ids, Hooks&& hooks = {},
            const step_outputs& out = {}) {
    auto x = begin_step(ids);
    const int start = step_slot();
    if constexpr (is_no_hooks<Hooks>) {
      if (!out.hidden && out.logits) {
        auto x2 = x.reshape({m_batch, m_model.config.hidden_size});
        std::uint64_t* best = fused.fold_argmax ? out.greedy_best : nullptr;
        if (fused_decode(m_ctx, m_model, x2, positions(), m_cache, start, mask(), m_ws,
                         m_logits.view(), best, fused)) {
          end_step();
          return best != nullptr;
        }
      }
    }
    m_model.run_layers(m_ctx, x, positions(), m_cache, start, mask(), 0, m_model.config.num_layers,
                       m_ws, hooks);
    end_step();
    finish_call(x, out);
    return false;
  }

  // Host form: validates and uploads the ids (B).
  void step(const std::vector<std::int32_t>& next) { step(upload_ids(next)); }

  // Split forms of prefill() and step() for callers that work between layers on the whole
  // residual stream (training features, sharing one prefill across mixers): they run layers
  // [0, stop) only; residual() then holds the residual stream after `stop` layers at every
  // position of the call, and resume() runs layers [stop, L) and finishes the call.
  void prefill_until(int stop) {
    begin_prefill();
    pause(m_x.view(), flat(m_prompt_pos), 0, stop);
    m_call_is_prefill = true;
  }
  void step_until(const std::vector<std::int32_t>& next, int stop) {
    auto x = begin_step(upload_ids(next));
    pause(x, positions(), step_slot(), stop);
  }
  void resume(const step_outputs& out = {}) {
    require(m_paused, "resume: no paused prefill or step");
    m_model.run_layers(m_ctx, m_call_x, m_call_pos, m_cache, m_call_start, mask(), m_stop,
                       m_model.config.num_layers, m_ws);
    m_paused = false;
    if (m_call_is_prefill)
      m_cache.length = m_prompt_len;
    else
      end_step();
    finish_call(m_call_x, out);
  }
  void resume(bool with_logits) { resume(step_outputs{.logits = with_logits}); }
  // The paused call's residual stream (B, T, C): T = padded prompt length after prefill_until,
  // 1 after step_until. The caller may change it before resume().
  tensor_view<T, D> residual() {
    require(m_paused, "residual: no paused prefill or step");
    return m_call_x;
  }
  // Its newest position (B, C), a row-strided view into residual().
  tensor_view<T, D> newest_residual() { return newest_rows(residual()); }

  // Final-normed hidden states (B, C) and logits (B, V) of the newest position, on the device.
  tensor_view<const T, D> hidden() const { return m_hidden.view(); }
  tensor_view<const T, D> logits() const { return m_logits.view(); }
  tensor_view<T, D> mutable_logits() { return m_logits.view(); }
  // Pre-norm residual stream (B, C) at the newest position (after the last layer), a row-strided
  // view into the call's residual stream.
  tensor_view<T, D> last_residual() { return m_last; }

  // Logits as float on the host (B, V), for host-side sampling.
  tensor<float> logits_host() const {
    auto h = to_host(m_logits);
    tensor<float> f(h.shape());
    for (index_t i = 0; i < h.size(); ++i) f.data()[i] = static_cast<float>(h.data()[i]);
    return f;
  }

  // Recomputes hidden() and logits() from last_residual() (after a caller changed it).
  void finish_step(bool with_logits = true) {
    m_model.final_norm(m_ctx, m_hidden.view(), tensor_view<const T, D>(m_last));
    if (with_logits) m_model.logits(m_ctx, m_logits.view(), hidden());
  }

  // After steps run under a device slot shift: the slots now filled.
  void set_length(int slots) {
    require(slots >= m_prompt_len && slots <= m_cache.capacity(),
            "set_length: " + std::to_string(slots) + " slots outside [prompt, capacity]");
    m_cache.length = slots;
  }
  // A view of the KV cache (for tests and fast paths).
  kv_cache<T, D>& cache() { return m_cache; }

 private:
  static tensor_view<const std::int32_t, D> flat(const tensor<std::int32_t, D>& t) {
    return tensor_view<const std::int32_t, D>(t.data(), {t.size()});
  }
  static tensor_view<T, D> newest_rows(tensor_view<T, D> x) {  // (B, T, C) -> (B, C)
    const index_t t = x.shape[1], c = x.shape[2];
    return tensor_view<T, D>(x.data + (t - 1) * c, {x.shape[0], c}, {t * c, 1});
  }
  bool shifted() const {
    if constexpr (requires { m_ctx.slot_shift; })
      return m_ctx.slot_shift != nullptr;
    else
      return false;
  }
  // The slot the next step writes: the host count, or T - 1 plus the device shift (>= 1).
  int step_slot() const { return shifted() ? m_prompt_len - 1 : m_cache.length; }

  struct fork_tag {};
  static tensor<std::int32_t, D> clone_or_empty(const tensor<std::int32_t, D>& t) {
    return t.empty() ? tensor<std::int32_t, D>() : t.clone();
  }
  batch_session(const batch_session& o, fork_tag)
      : fused(o.fused),
        m_ctx(o.m_ctx),
        m_model(o.m_model),
        m_layout(o.m_layout),
        m_host(o.m_host.clone()),
        m_batch(o.m_batch),
        m_prompt_len(o.m_prompt_len),
        m_ws(o.m_model.config, o.m_ws.tokens),
        m_x(o.m_x.clone()),
        m_hidden(o.m_hidden.clone()),
        m_logits(o.m_logits.clone()),
        m_pad(o.m_pad.clone()),
        m_segment(clone_or_empty(o.m_segment)),
        m_gen_start(clone_or_empty(o.m_gen_start)),
        m_prompt_ids(o.m_prompt_ids.clone()),
        m_prompt_pos(o.m_prompt_pos.clone()),
        m_step_ids(o.m_step_ids.shape()),
        m_pos(o.m_pos.clone()) {
    m_cache.k = o.m_cache.k.clone();
    m_cache.v = o.m_cache.v.clone();
    m_cache.length = o.m_cache.length;
    m_last = tensor_view<T, D>(m_x.data() + (o.m_last.data - o.m_x.data()), o.m_last.shape,
                               o.m_last.strides);
  }

  tensor_view<const std::int32_t, D> upload_ids(const std::vector<std::int32_t>& next) {
    const auto& c = m_model.config;
    require(static_cast<int>(next.size()) == m_batch, "step: need one token per sequence");
    for (int s = 0; s < m_batch; ++s)
      require(next[s] >= 0 && next[s] < c.vocab_size,
              "step: token id " + std::to_string(next[s]) + " outside the vocabulary");
    device_traits<D>::upload(m_step_ids.data(), next.data(), sizeof(std::int32_t) * m_batch);
    return m_step_ids.view();
  }
  void begin_prefill() {
    require(m_cache.length == 0 && !m_paused, "prefill: already ran");
    const auto& c = m_model.config;
    auto x2 = m_x.view().reshape({index_t(m_batch) * m_prompt_len, c.hidden_size});
    m_model.embed_tokens(m_ctx, x2, flat(m_prompt_ids), flat(m_prompt_pos));
  }
  tensor_view<T, D> begin_step(tensor_view<const std::int32_t, D> ids) {
    require(m_cache.length > 0, "step: call prefill first");
    require(!m_paused, "step: the previous step is paused; call resume() first");
    require<shape_error>(ids.shape == shape_t{m_batch}, "step: ids must be (B)");
    require(shifted() || m_cache.length < m_cache.capacity(),
            "step: the KV cache is full (max_new_tokens reached)");
    const auto& c = m_model.config;
    auto x = tensor_view<T, D>(m_x.data(), {m_batch, 1, c.hidden_size});
    m_model.embed_tokens(m_ctx, x.reshape({m_batch, c.hidden_size}), ids, positions());
    return x;
  }
  void end_step() {
    advance_positions(m_ctx, m_pos.view());
    if (!shifted()) ++m_cache.length;
  }
  void pause(tensor_view<T, D> x, tensor_view<const std::int32_t, D> positions, int start,
             int stop) {
    require(stop >= 0 && stop <= m_model.config.num_layers,
            "batch_session: stop layer " + std::to_string(stop) + " outside [0, " +
                std::to_string(m_model.config.num_layers) + "]");
    m_model.run_layers(m_ctx, x, positions, m_cache, start, mask(), 0, stop, m_ws);
    m_call_x = x;
    m_call_pos = positions;
    m_call_start = start;
    m_call_is_prefill = false;
    m_stop = stop;
    m_paused = true;
  }
  void finish_call(tensor_view<T, D> x, const step_outputs& out) {
    m_last = newest_rows(x);
    if (out.hidden || out.logits) finish_step(out.logits);
  }

  const context<D>& m_ctx;
  const decoder_model<T, D>& m_model;
  Layout m_layout;
  laid_out_batch m_host;
  int m_batch = 0, m_prompt_len = 0;
  bool m_paused = false;  // between prefill_until/step_until and resume
  bool m_call_is_prefill = false;
  int m_stop = 0, m_call_start = 0;
  tensor_view<T, D> m_call_x, m_last;
  tensor_view<const std::int32_t, D> m_call_pos;
  kv_cache<T, D> m_cache;
  decoder_workspace<T, D> m_ws;
  tensor<T, D> m_x, m_hidden, m_logits;
  tensor<std::int32_t, D> m_pad, m_segment, m_gen_start, m_prompt_ids, m_prompt_pos, m_step_ids,
      m_pos;
};

}  // namespace crossbatch
