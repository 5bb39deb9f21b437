// One batch of prompts running through a decoder model: left padding, one prefill, then one token
// per sequence per step with the KV cache. It returns final hidden states and float logits at the
// newest position of every sequence; sampling and stopping belong to the caller (generate.hpp),
// so experiments that act on hidden states or combine models (mixers, LDA) reuse it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "crossbatch/attention/mask.hpp"
#include "crossbatch/core/transfer.hpp"
#include "crossbatch/generate/prompt_layout.hpp"
#include "crossbatch/model/decoder.hpp"

namespace crossbatch {

template <class T, class D = cpu>
class batch_session {
 public:
  using mask_type = all_of<causal, left_padding>;

  // Validates the prompts against the model's context: every prompt non-empty, ids inside the
  // vocabulary, and longest prompt + max_new_tokens within max_position_embeddings.
  batch_session(const context<D>& ctx, const decoder_model<T, D>& model,
                const std::vector<std::vector<int>>& prompts, int max_new_tokens)
      : m_ctx(ctx), m_model(model) {
    const auto& c = model.config;
    const left_padded_prompts layout = left_pad_prompts(c, prompts, max_new_tokens);
    m_batch = static_cast<int>(prompts.size());
    m_prompt_len = layout.length;
    m_next_position = layout.lengths;
    const int slots = m_prompt_len + max_new_tokens;
    m_cache = model.make_cache(m_batch, slots);
    m_ws = decoder_workspace<T, D>(c, index_t(m_batch) * m_prompt_len);
    m_x = tensor<T, D>({m_batch, m_prompt_len, c.hidden_size});
    m_last = tensor<T, D>({m_batch, c.hidden_size});
    m_hidden = tensor<T, D>({m_batch, c.hidden_size});
    m_logits = tensor<T, D>({m_batch, c.vocab_size});
    m_pad = to_device<D>(layout.pad);
    m_prompt_ids = to_device<D>(layout.ids);
    m_prompt_pos = to_device<D>(layout.positions);
    m_step_ids = tensor<std::int32_t, D>({m_batch});
    m_step_pos = tensor<std::int32_t, D>({m_batch});
  }

  // An independent deep copy (KV cache, newest states, positions) of a session that is not paused:
  // one prefill, then several decodes that diverge (comparing mixers on the same prompts).
  batch_session fork() const {
    require(!m_paused, "fork: the session is paused; call resume() first");
    return batch_session(*this, fork_tag{});
  }
  batch_session(batch_session&&) = default;

  int batch() const { return m_batch; }
  int prompt_length() const { return m_prompt_len; }  // padded
  int slots_used() const { return m_cache.length; }
  mask_type mask() const { return mask_type(causal{}, left_padding{m_pad.data()}); }
  const decoder_model<T, D>& model() const { return m_model; }

  // Runs the prompts; afterwards hidden() and logits() hold the newest position of each sequence.
  void prefill() {
    prefill_until(m_model.config.num_layers);
    resume();
  }

  // Feeds one token per sequence (B) and advances one slot.
  void step(const std::vector<std::int32_t>& next) {
    step_until(next, m_model.config.num_layers);
    resume();
  }

  // Split forms of prefill() and step() for callers that act between layers (cross-batch mixing
  // at an intermediate layer): they run layers [0, stop) only; residual() then holds the residual
  // stream after `stop` layers at every position of the call and resume() runs layers
  // [stop, num_layers) and finishes the step. prefill_until(L) + resume() is prefill().
  void prefill_until(int stop) {
    require(m_cache.length == 0 && !m_paused, "prefill: already ran");
    const auto& c = m_model.config;
    const index_t n = index_t(m_batch) * m_prompt_len;
    auto x2 = m_x.view().reshape({n, c.hidden_size});
    m_model.embed_tokens(m_ctx, x2, flat(m_prompt_ids), flat(m_prompt_pos));
    begin_call(m_x.view(), flat(m_prompt_pos), stop);
  }
  void step_until(const std::vector<std::int32_t>& next, int stop) {
    const auto& c = m_model.config;
    require(m_cache.length > 0, "step: call prefill first");
    require(!m_paused, "step: the previous step is paused; call resume() first");
    require(static_cast<int>(next.size()) == m_batch, "step: need one token per sequence");
    require(m_cache.length < m_cache.capacity(),
            "step: the KV cache is full (max_new_tokens reached)");
    tensor<std::int32_t> ids({m_batch}), pos({m_batch});
    for (int s = 0; s < m_batch; ++s) {
      require(next[s] >= 0 && next[s] < c.vocab_size,
              "step: token id " + std::to_string(next[s]) + " outside the vocabulary");
      ids(s) = next[s];
      pos(s) = m_next_position[s]++;
    }
    device_traits<D>::upload(m_step_ids.data(), ids.data(), sizeof(std::int32_t) * m_batch);
    device_traits<D>::upload(m_step_pos.data(), pos.data(), sizeof(std::int32_t) * m_batch);
    auto x = tensor_view<T, D>(m_x.data(), {m_batch, 1, c.hidden_size});
    m_model.embed_tokens(m_ctx, x.reshape({m_batch, c.hidden_size}), m_step_ids.view(),
                         m_step_pos.view());
    begin_call(x, m_step_pos.view(), stop);
  }
  // Runs the remaining layers of the paused call, advances the cache and fills hidden() (and
  // logits() unless with_logits is false, for callers that compute their own).
  void resume(bool with_logits = true) {
    require(m_paused, "resume: no paused prefill or step");
    m_model.run_layers(m_ctx, m_call_x, m_call_pos, m_cache, m_cache.length, mask(), m_stop,
                       m_model.config.num_layers, m_ws);
    m_cache.length += static_cast<int>(m_call_x.shape[1]);
    m_paused = false;
    gather_last(m_call_x, m_call_x.shape[1] - 1);
    finish_step(with_logits);
  }
  // The paused call's residual stream (B, T, C): T = padded prompt length after prefill_until,
  // 1 after step_until. The caller may change it before resume().
  tensor_view<T, D> residual() {
    require(m_paused, "residual: no paused prefill or step");
    return m_call_x;
  }
  // Its newest position (B, C), a row-strided view into residual().
  tensor_view<T, D> newest_residual() {
    auto x = residual();
    const index_t t = x.shape[1], c = x.shape[2];
    return tensor_view<T, D>(x.data + (t - 1) * c, {x.shape[0], c}, {t * c, 1});
  }

  // Final-normed hidden states (B, C) and logits (B, V) of the newest position, on the device.
  tensor_view<const T, D> hidden() const { return m_hidden.view(); }
  tensor_view<const T, D> logits() const { return m_logits.view(); }
  // Pre-norm residual stream (B, C) at the newest position (after the last layer).
  tensor_view<T, D> last_residual() { return m_last.view(); }

  // Logits as float on the host (B, V), for host-side sampling.
  tensor<float> logits_host() const {
    auto h = to_host(m_logits);
    tensor<float> f(h.shape());
    for (index_t i = 0; i < h.size(); ++i) f.data()[i] = static_cast<float>(h.data()[i]);
    return f;
  }

  // Recomputes hidden() and logits() from last_residual() (after a caller changed it).
  void finish_step(bool with_logits = true) {
    m_model.final_norm(m_ctx, m_hidden.view(), m_last.view());
    if (with_logits) m_model.logits(m_ctx, m_logits.view(), m_hidden.view());
  }

 private:
  static tensor_view<const std::int32_t, D> flat(const tensor<std::int32_t, D>& t) {
    return tensor_view<const std::int32_t, D>(t.data(), {t.size()});
  }
  struct fork_tag {};
  batch_session(const batch_session& o, fork_tag)
      : m_ctx(o.m_ctx),
        m_model(o.m_model),
        m_batch(o.m_batch),
        m_prompt_len(o.m_prompt_len),
        m_next_position(o.m_next_position),
        m_ws(o.m_model.config, o.m_ws.tokens),
        m_x(o.m_x.shape()),
        m_last(o.m_last.clone()),
        m_hidden(o.m_hidden.clone()),
        m_logits(o.m_logits.clone()),
        m_pad(o.m_pad.clone()),
        m_prompt_ids(o.m_prompt_ids.clone()),
        m_prompt_pos(o.m_prompt_pos.clone()),
        m_step_ids(o.m_step_ids.shape()),
        m_step_pos(o.m_step_pos.shape()) {
    m_cache.k = o.m_cache.k.clone();
    m_cache.v = o.m_cache.v.clone();
    m_cache.length = o.m_cache.length;
  }

  void begin_call(tensor_view<T, D> x, tensor_view<const std::int32_t, D> positions, int stop) {
    require(stop >= 0 && stop <= m_model.config.num_layers,
            "batch_session: stop layer " + std::to_string(stop) + " outside [0, " +
                std::to_string(m_model.config.num_layers) + "]");
    m_model.run_layers(m_ctx, x, positions, m_cache, m_cache.length, mask(), 0, stop, m_ws);
    m_call_x = x;
    m_call_pos = positions;
    m_stop = stop;
    m_paused = true;
  }
  // m_last (B, C) = x[:, t, :] for x (B, T, C).
  void gather_last(tensor_view<T, D> x, index_t t) {
    const index_t c = x.shape[2];
    for (int s = 0; s < m_batch; ++s)
      device_traits<D>::copy(m_last.data() + s * c, x.data + (s * x.shape[1] + t) * c,
                             sizeof(T) * c);
  }

  const context<D>& m_ctx;
  const decoder_model<T, D>& m_model;
  int m_batch = 0, m_prompt_len = 0;
  std::vector<int> m_next_position;
  bool m_paused = false;  // between prefill_until/step_until and resume
  int m_stop = 0;
  tensor_view<T, D> m_call_x;
  tensor_view<const std::int32_t, D> m_call_pos;
  kv_cache<T, D> m_cache;
  decoder_workspace<T, D> m_ws;
  tensor<T, D> m_x, m_last, m_hidden, m_logits;
  tensor<std::int32_t, D> m_pad, m_prompt_ids, m_prompt_pos, m_step_ids, m_step_pos;
};

}  // namespace crossbatch
