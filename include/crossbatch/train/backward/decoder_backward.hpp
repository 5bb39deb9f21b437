// Training through a frozen decoder_model with LoRA adapters: a teacher-forced forward pass over a
// right-padded token batch and its backward pass, layer by layer, so that a caller can act between
// layers (the cross-batch mixer: embed -> forward(0, k) -> mix -> forward(k, L) -> lm_loss, then
// backward in reverse). Activation memory is bounded: a training forward keeps only each layer's
// input; backward recomputes the layer from it (same dropout masks) and differentiates it.
// Device-generic: the ops are train/backward/ops.hpp (CPU) and train/cuda/backward_ops.cuh (CUDA).
//
// Element types: T = the model's weights and in-layer activations (float, double; bfloat16 on
// CUDA), G = the residual stream x, its gradient, the adapters, their gradients and the loss head
// (float, double). On the CPU, T == G.
#pragma once

#include <cstdint>
#include <type_traits>
#include <vector>

#include "crossbatch/core/transfer.hpp"
#include "crossbatch/model/decoder.hpp"
#include "crossbatch/train/backward/lora.hpp"
#include "crossbatch/train/backward/ops.hpp"
#include "crossbatch/train/ops.hpp"

namespace crossbatch {

// A batch of B token rows of length T on the host, right-padded. Row b, column t is element
// b * T + t of every vector. Query t of a row sees key j when j <= t and valid[j] != 0.
struct token_batch {
  int batch = 0, length = 0;            // B, T
  std::vector<std::int32_t> ids;        // (B*T) token ids (padding: any id inside the vocabulary)
  std::vector<std::int32_t> valid;      // (B*T) 1 = real token, 0 = padding (key padding mask)
  std::vector<std::int32_t> positions;  // (B*T) position ids (RoPE / learned positions)
  std::vector<std::int32_t> targets;    // (B*T) token predicted at each slot, -1 = no loss
  index_t tokens() const { return index_t(batch) * length; }

  bool same_inputs(const token_batch& o) const {
    return batch == o.batch && length == o.length && ids == o.ids && valid == o.valid &&
           positions == o.positions;
  }
  // Checks sizes and value ranges against a model; errors name the field and the element.
  void validate(const model_config& c) const {
    const std::size_t n = std::size_t(tokens());
    require<shape_error>(batch > 0 && length > 0, "token_batch: empty batch");
    require<shape_error>(ids.size() == n && valid.size() == n && positions.size() == n &&
                             (targets.empty() || targets.size() == n),
                         "token_batch: ids, valid, positions and targets must have B*T = " +
                             std::to_string(n) + " elements");
    for (std::size_t i = 0; i < n; ++i) {
      require(ids[i] >= 0 && ids[i] < c.vocab_size,
              "token_batch: id " + std::to_string(ids[i]) + " at element " + std::to_string(i) +
                  " outside the vocabulary of " + std::to_string(c.vocab_size));
      require(positions[i] >= 0 && (c.kind != family::gpt2 || positions[i] < c.max_positions),
              "token_batch: position " + std::to_string(positions[i]) + " at element " +
                  std::to_string(i) + " outside the model's range");
      require(targets.empty() || (targets[i] >= -1 && targets[i] < c.vocab_size),
              "token_batch: target " + std::to_string(targets.empty() ? 0 : targets[i]) +
                  " at element " + std::to_string(i) + " is neither -1 nor a token id");
    }
  }
};

// Right-pads sequences into a batch: positions 0..len-1, valid 1 on real tokens, pad_id after,
// targets = the next token of the sequence (-1 at its last token and on padding).
inline token_batch make_token_batch(const std::vector<std::vector<std::int32_t>>& rows,
                                    std::int32_t pad_id = 0) {
  token_batch b;
  b.batch = int(rows.size());
  for (const auto& r : rows) b.length = std::max(b.length, int(r.size()));
  const std::size_t n = std::size_t(b.batch) * b.length;
  b.ids.assign(n, pad_id);
  b.valid.assign(n, 0);
  b.positions.assign(n, 0);
  b.targets.assign(n, -1);
  for (int i = 0; i < b.batch; ++i)
    for (int t = 0; t < b.length; ++t) {
      const std::size_t e = std::size_t(i) * b.length + t;
      b.positions[e] = t;
      if (t >= int(rows[i].size())) continue;
      b.ids[e] = rows[i][t];
      b.valid[e] = 1;
      if (t + 1 < int(rows[i].size())) b.targets[e] = rows[i][t + 1];
    }
  return b;
}

// A CPU copy of a model with its weights converted to U (float64 gradient checks of a float32
// checkpoint: decoder_model<double>::load has no float64 npy to read).
template <class U, class T>
decoder_model<U> cast_model(const decoder_model<T>& m) {
  auto cast = [](const tensor<T>& t) {
    if (t.empty()) return tensor<U>();
    tensor<U> u(t.shape());
    for (index_t i = 0; i < t.size(); ++i)
      u.data()[i] = static_cast<U>(static_cast<float>(t.data()[i]));
    return u;
  };
  decoder_model<U> out;
  out.config = m.config;
  out.embed = cast(m.embed);
  out.pos_embed = cast(m.pos_embed);
  out.final_w = cast(m.final_w);
  out.final_b = cast(m.final_b);
  out.lm_head = cast(m.lm_head);
  if (!m.inv_freq.empty()) out.inv_freq = m.inv_freq.clone();
  for (const auto& L : m.layers) {
    decoder_layer<U> c;
    c.norm1_w = cast(L.norm1_w), c.norm1_b = cast(L.norm1_b);
    c.qkv_w = cast(L.qkv_w), c.qkv_b = cast(L.qkv_b);
    c.o_w = cast(L.o_w), c.o_b = cast(L.o_b);
    c.norm2_w = cast(L.norm2_w), c.norm2_b = cast(L.norm2_b);
    c.up_w = cast(L.up_w), c.up_b = cast(L.up_b);
    c.down_w = cast(L.down_w), c.down_b = cast(L.down_b);
    out.layers.push_back(std::move(c));
  }
  return out;
}

// What a training forward keeps for backward: each layer's input (N, C) and the dropout seed it
// ran with.
template <class G, class D = cpu>
struct lora_activations {
  std::vector<tensor<G, D>> inputs;  // [layer], empty for layers not run in training mode
  std::vector<std::uint64_t> seeds;  // [layer]
  token_batch batch;                 // the batch they belong to
};

struct lm_loss_result {
  double sum = 0;  // summed cross-entropy over the counted tokens (nats)
  int tokens = 0;  // tokens with a target
  double mean() const { return tokens ? sum / tokens : 0.0; }
};

template <class T, class G = T, class D = cpu>
class lora_decoder {
  static_assert(!std::is_same_v<D, cpu> || std::is_same_v<T, G>,
                "lora_decoder on the CPU needs T == G");

 public:
  // adapters may be null (no LoRA: the frozen model, for head / mixer training through layers).
  // Both must outlive the decoder; the model is never written.
  lora_decoder(const decoder_model<T, D>& model, lora_adapters<G, D>* adapters)
      : m_model(model), m_ad(adapters) {
    const auto& c = model.config;
    require<value_error>(!adapters || int(adapters->layers.size()) == c.num_layers,
                         "lora_decoder: adapters made for another number of layers");
    if constexpr (std::is_same_v<T, G>) {
      m_final_w_view = model.final_w.view();
      m_final_b_view = model.final_b.view();
    } else {
      m_final_w = convert(model.final_w);
      if (!model.final_b.empty()) m_final_b = convert(model.final_b);
      m_final_w_view = m_final_w.view();
      m_final_b_view = m_final_b.view();
    }
  }

  // lm_loss computes the logits of at most this many target rows at a time.
  index_t loss_chunk_rows = 2048;

  // Precision emulation on the CPU (tests, tools): when set, the CPU path applies it in place to
  // each buffer that lora_decoder<bfloat16, float, cuda> holds in the 16-bit type T and to each
  // operand that a CUDA product converts to T (lm_loss: as lm_loss_mixed does), at the point
  // where the CUDA path does, e.g. rounding to bfloat16, including the roundings inside the CUDA
  // ops (attention probabilities and score gradients, the adapters' 16-bit products) through the
  // CPU ops' round_16bit. null: none.
  void (*emulate_rounding)(G* data, index_t count) = nullptr;

  const decoder_model<T, D>& model() const { return m_model; }
  // Every training pass draws a fresh dropout seed from (adapters' seed, pass count); this
  // rewinds the count, so that a later pass repeats the masks of an earlier one (tests).
  void reset_dropout(std::uint64_t calls = 0) {
    m_calls = calls;
    m_next_layer = -1;
  }
  const model_config& config() const { return m_model.config; }
  lora_adapters<G, D>* adapters() const { return m_ad; }

  // The frozen output embedding (V, C) as G (the tied embedding or lm_head; a one-time copy when
  // T != G), for lm_loss with a frozen head.
  tensor_view<const G, D> frozen_head() {
    if constexpr (std::is_same_v<T, G>) {
      return m_model.output_embedding().view();
    } else {
      if (m_head.empty()) m_head = convert(m_model.output_embedding());
      return m_head.view();
    }
  }

  // x (N, C) = token embeddings of batch.ids (+ learned position embeddings, GPT-2).
  void embed(const context<D>& ctx, const token_batch& batch, tensor_view<G, D> x) {
    bind(batch);
    const auto& c = config();
    require<shape_error>(x.shape == shape_t{batch.tokens(), c.hidden_size},
                         "lora_decoder::embed: x must be (B*T, C), got " + to_string(x.shape));
    embedding_forward(ctx, x, ids(), m_model.embed.view());
    if (c.kind == family::gpt2)
      embedding_forward(ctx, x, positions(), m_model.pos_embed.view(), true);
  }

  // Runs layers [first, last) on x (N, C) in place. training: adapter dropout on, and each
  // layer's input saved in `saved` for backward (else `saved` is untouched).
  void forward(const context<D>& ctx, const token_batch& batch, int first, int last,
               tensor_view<G, D> x, lora_activations<G, D>& saved, bool training) {
    check_range(first, last, x, batch);
    bind(batch);
    // One dropout seed per pass over the model: a call that continues where the previous
    // training call stopped (forward(0, k) then forward(k, L)) keeps its seed.
    if (training && (first == 0 || first != m_next_layer)) m_seed = next_seed();
    if (training) m_next_layer = last;
    const std::uint64_t seed = training ? m_seed : 0;
    if (training) {
      saved.inputs.resize(config().num_layers);
      saved.seeds.resize(config().num_layers);
      if (!saved.batch.same_inputs(batch)) saved.batch = batch;
    }
    for (int l = first; l < last; ++l) {
      if (training) {
        auto& in = saved.inputs[l];
        if (in.shape() != x.shape) in = tensor<G, D>(x.shape);
        device_traits<D>::copy(in.data(), x.data, sizeof(G) * x.size());
        saved.seeds[l] = seed;
      }
      layer_forward(ctx, l, x, x, seed, training);
    }
  }

  // dx (N, C): in, dL/d(output of layer last-1); out, dL/d(input of layer first). Adapter
  // gradients accumulate. Layers [first, last) must have run forward in training mode into saved.
  void backward(const context<D>& ctx, tensor_view<G, D> dx, int first, int last,
                lora_activations<G, D>& saved) {
    check_range(first, last, dx, saved.batch);
    bind(saved.batch);
    for (int l = last - 1; l >= first; --l) {
      require<value_error>(
          l < int(saved.inputs.size()) && !saved.inputs[l].empty(),
          "lora_decoder::backward: layer " + std::to_string(l) + " has no saved training forward");
      ensure(m_out, dx.shape);
      layer_forward(ctx, l, saved.inputs[l].view(), m_out.view(), saved.seeds[l], true);
      layer_backward(ctx, l, dx, saved.inputs[l].view(), saved.seeds[l]);
    }
  }

  // Teacher-forced cross-entropy of the final layer's output x (N, C) through the final norm and
  // head (V, C) against targets (N, host, -1 = no loss): returns the summed loss and token count.
  // head_grad (V, C) += and dx (N, C) = (zero on rows without a target) get the gradients of the
  // mean loss over the counted tokens times grad_scale, when they have data.
  lm_loss_result lm_loss(const context<D>& ctx, tensor_view<const G, D> x,
                         tensor_view<const G, D> head, const std::vector<std::int32_t>& targets,
                         tensor_view<G, D> head_grad, tensor_view<G, D> dx, double grad_scale = 1) {
    const index_t n = x.shape[0], c = config().hidden_size, v = head.shape[0];
    require<shape_error>(
        x.shape == shape_t{n, c} && head.shape == shape_t{v, c} && index_t(targets.size()) == n,
        "lm_loss: x " + to_string(x.shape) + ", head " + to_string(head.shape) + ", " +
            std::to_string(targets.size()) + " targets");
    std::vector<std::int32_t> rows, tgt;
    for (index_t i = 0; i < n; ++i)
      if (targets[i] >= 0) rows.push_back(std::int32_t(i)), tgt.push_back(targets[i]);
    lm_loss_result r;
    r.tokens = int(rows.size());
    if (dx.data) fill(ctx, dx, G(0));
    if (rows.empty()) return r;
    const index_t m = index_t(rows.size());
    ensure(m_rows, {m});
    ensure(m_tgt, {m});
    device_traits<D>::upload(m_rows.data(), rows.data(), sizeof(std::int32_t) * m);
    device_traits<D>::upload(m_tgt.data(), tgt.data(), sizeof(std::int32_t) * m);
    const bool grad = head_grad.data || dx.data;
    if constexpr (std::is_same_v<D, cpu>)
      if (emulate_rounding) {  // lm_loss_mixed's T copy of the head
        ensure(m_head_rounded, head.shape);
        copy_rows(ctx, m_head_rounded.view(), head);
        emulate(m_head_rounded);
        head = m_head_rounded.view();
      }
    // Chunks of rows bound the (rows, V) logits buffer.
    const index_t chunk = std::min(m, std::max<index_t>(1, loss_chunk_rows));
    for (index_t start = 0; start < m; start += chunk) {
      const index_t k = std::min(chunk, m - start);
      const tensor_view<const std::int32_t, D> rows_k(m_rows.data() + start, {k}),
          tgt_k(m_tgt.data() + start, {k});
      ensure(m_xc, {k, c});
      ensure(m_nc, {k, c});
      ensure(m_logits, {k, v});
      gather_rows(ctx, m_xc.view(), x, rows_k);
      frozen_norm(ctx, norm_type(), m_nc.view(), cv(m_xc.view()), m_final_w_view, m_final_b_view,
                  config().norm_eps);
      emulate(m_nc);
      gemm(ctx, m_logits.view(), cv(m_nc.view()), head, false, true);
      r.sum += softmax_xent(ctx, m_logits.view(), tgt_k, grad ? G(grad_scale / double(m)) : G(0));
      if (!grad) continue;
      emulate(m_logits);  // now the logit gradients, a product operand
      if (head_grad.data)
        gemm(ctx, head_grad, cv(m_logits.view()), cv(m_nc.view()), true, false, G(1), G(1));
      if (dx.data) {
        ensure(m_dnc, {k, c});
        ensure(m_dxc, {k, c});
        gemm(ctx, m_dnc.view(), cv(m_logits.view()), head, false, false);
        frozen_norm_backward(ctx, norm_type(), m_dxc.view(), cv(m_dnc.view()), cv(m_xc.view()),
                             m_final_w_view, config().norm_eps);
        scatter_rows(ctx, dx, cv(m_dxc.view()), rows_k);
      }
    }
    return r;
  }

  // One whole step: embed, all layers (training), lm_loss on batch.targets, backward. Adapter
  // gradients and head_grad (when it has data) accumulate; returns the loss.
  lm_loss_result loss_and_backward(const context<D>& ctx, const token_batch& batch,
                                   tensor_view<const G, D> head, tensor_view<G, D> head_grad = {},
                                   double grad_scale = 1) {
    const index_t n = batch.tokens(), c = config().hidden_size;
    ensure(m_x, {n, c});
    ensure(m_dx, {n, c});
    embed(ctx, batch, m_x.view());
    forward(ctx, batch, 0, config().num_layers, m_x.view(), m_saved, true);
    const auto r =
        lm_loss(ctx, cv(m_x.view()), head, batch.targets, head_grad, m_dx.view(), grad_scale);
    backward(ctx, m_dx.view(), 0, config().num_layers, m_saved);
    return r;
  }

  // logits (N, V) of the batch without dropout: embed, all layers, final norm, frozen head.
  void logits(const context<D>& ctx, const token_batch& batch, tensor_view<G, D> out) {
    const index_t n = batch.tokens(), c = config().hidden_size;
    ensure(m_x, {n, c});
    ensure(m_nc, {n, c});
    embed(ctx, batch, m_x.view());
    forward(ctx, batch, 0, config().num_layers, m_x.view(), m_saved, false);
    frozen_norm(ctx, norm_type(), m_nc.view(), cv(m_x.view()), m_final_w_view, m_final_b_view,
                config().norm_eps);
    gemm(ctx, out, cv(m_nc.view()), frozen_head(), false, true);
  }

 private:
  using cvT = tensor_view<const T, D>;
  template <class U>
  static tensor_view<const U, D> cv(tensor_view<U, D> v) {
    return v;
  }
  template <class U>
  static void ensure(tensor<U, D>& t, const shape_t& s) {
    if (t.shape() != s) t = tensor<U, D>(s);
  }
  template <class U>
  static tensor<G, D> convert(const tensor<U, D>& t) {
    const auto h = to_host(t);
    tensor<G> g(h.shape());
    for (index_t i = 0; i < h.size(); ++i) g.data()[i] = G(static_cast<float>(h.data()[i]));
    return to_device<D>(g);
  }
  // Runs call(emulate_rounding) on the CPU (the CPU ops' optional round_16bit argument), call()
  // on CUDA, whose ops round where they store 16-bit values anyway.
  template <class F>
  void with_emulation(F&& call) const {
    if constexpr (std::is_same_v<D, cpu>)
      call(emulate_rounding);
    else
      call();
  }
  // Applies emulate_rounding (CPU only) to a whole buffer.
  template <class U>
  void emulate(tensor<U, D>& t) const {
    if constexpr (std::is_same_v<D, cpu> && std::is_same_v<U, G>)
      if (emulate_rounding) emulate_rounding(t.data(), t.size());
  }

  norm_kind norm_type() const {
    return config().kind == family::gpt2 ? norm_kind::layer : norm_kind::rms;
  }

  std::uint64_t next_seed() {
    const std::uint64_t base = m_ad ? m_ad->config.seed : 0;
    return base * 0x9E3779B97F4A7C15ull + (++m_calls) * 0xBF58476D1CE4E5B9ull + 1;
  }

  void check_range(int first, int last, tensor_view<G, D> x, const token_batch& batch) const {
    const auto& c = config();
    require<value_error>(0 <= first && first <= last && last <= c.num_layers,
                         "lora_decoder: layers [" + std::to_string(first) + ", " +
                             std::to_string(last) + ") outside the model of " +
                             std::to_string(c.num_layers));
    require<shape_error>(x.shape == shape_t{batch.tokens(), c.hidden_size} && x.contiguous(),
                         "lora_decoder: x must be a contiguous (B*T, C) = (" +
                             std::to_string(batch.tokens()) + ", " + std::to_string(c.hidden_size) +
                             "), got " + to_string(x.shape));
  }

  // Uploads the batch's ids / valid / positions when they differ from the bound ones and sizes
  // the layer workspace.
  void bind(const token_batch& batch) {
    if (m_bound && m_batch.same_inputs(batch)) return;
    batch.validate(config());
    m_batch = batch;
    m_batch.targets.clear();
    const index_t n = batch.tokens();
    for (auto* t : {&m_ids, &m_valid, &m_positions}) ensure(*t, {n});
    device_traits<D>::upload(m_ids.data(), batch.ids.data(), sizeof(std::int32_t) * n);
    device_traits<D>::upload(m_valid.data(), batch.valid.data(), sizeof(std::int32_t) * n);
    device_traits<D>::upload(m_positions.data(), batch.positions.data(), sizeof(std::int32_t) * n);
    reserve(n);
    m_bound = true;
  }
  tensor_view<const std::int32_t, D> ids() const { return m_ids.view(); }
  tensor_view<const std::int32_t, D> valid() const { return m_valid.view(); }
  tensor_view<const std::int32_t, D> positions() const { return m_positions.view(); }

  // Per-layer scratch for N tokens (one layer's intermediates and gradients).
  void reserve(index_t n) {
    const auto& c = config();
    const index_t C = c.hidden_size, F = c.intermediate_size, H = c.num_heads, dh = c.head_dim,
                  qd = H * dh, width = (H + 2 * index_t(c.num_kv_heads)) * dh,
                  M = (c.kind == family::gpt2 ? 1 : 2) * F;
    for (auto* t : {&m_h1, &m_o, &m_h2, &m_d, &m_dd, &m_dh, &m_do}) ensure(*t, {n, C});
    ensure(m_qkv, {n, width});
    ensure(m_dqkv, {n, width});
    ensure(m_attn, {n, qd});
    ensure(m_dattn, {n, qd});
    ensure(m_mlp, {n, M});
    ensure(m_dmlp, {n, M});
    ensure(m_act, {n, F});
    ensure(m_dact, {n, F});
    ensure(m_x2, {n, C});
    ensure(m_dx2, {n, C});
    ensure(m_lse, {m_batch.batch, H, m_batch.length});
    if (m_ad) {
      const index_t r = m_ad->rank();
      index_t max_in = 0;
      for (int s = 0; s < lora_slot_count; ++s) {
        const auto sh = lora_shape(c, lora_slot(s));
        bool used = false;
        for (const auto& L : m_ad->layers) used |= L[s].active();
        if (!used) continue;
        ensure(m_xd[s], {n, sh.in});
        ensure(m_u[s], {n, r});
        max_in = std::max(max_in, sh.in);
      }
      ensure(m_du, {n, r});
      ensure(m_dxd, {n, max_in});
    }
  }

  // The (N, width) column block [offset, offset + width) of a (N, W) buffer.
  template <class U>
  static tensor_view<U, D> cols(tensor<U, D>& t, index_t offset, index_t width) {
    return tensor_view<U, D>(t.data() + offset, {t.dim(0), width}, {t.dim(1), 1});
  }
  // Where a slot's adapter output goes (and its gradient comes from), and its input.
  tensor_view<T, D> slot_out(tensor<T, D>& fused, lora_slot s) const {
    const auto sh = lora_shape(config(), s);
    if (s == lora_slot::q || s == lora_slot::k || s == lora_slot::v || s == lora_slot::qkv ||
        s == lora_slot::gate || s == lora_slot::up)
      return cols(fused, sh.offset, sh.out);
    return fused.view();
  }

  void adapter_forward(const context<D>& ctx, int l, lora_slot s, tensor_view<T, D> y,
                       tensor_view<const T, D> x, std::uint64_t seed, bool training) {
    if (!m_ad) return;
    const auto* m = m_ad->find(l, s);
    if (!m) return;
    const float p = training ? m_ad->config.dropout : 0.0f;
    with_emulation([&](auto... round) {
      lora_forward(ctx, y, x, m->a.view(), m->b.view(), m_ad->scale(), p, seed,
                   lora_stream(l, int(s)), m_xd[int(s)].view(), m_u[int(s)].view(), round...);
    });
  }
  void adapter_backward(const context<D>& ctx, int l, lora_slot s, tensor_view<T, D> dx,
                        tensor_view<const T, D> dy, std::uint64_t seed) {
    if (!m_ad) return;
    auto* m = m_ad->find(l, s);
    if (!m) return;
    const auto xd = cv(m_xd[int(s)].view()), u = cv(m_u[int(s)].view());
    const auto dxd = cols(m_dxd, 0, m->a.dim(1));
    const float p = m_ad->config.dropout, sc = m_ad->scale();
    with_emulation([&](auto... round) {
      lora_backward(ctx, m->da.view(), m->db.view(), dx, dy, xd, u, m->a.view(), m->b.view(), sc, p,
                    seed, lora_stream(l, int(s)), m_du.view(), dxd, round...);
    });
  }

  // Strided q (B, T, H, Dh), k, v (B, T, Hkv, Dh) views of a fused (N, width) buffer.
  tensor_view<T, D> head_part(tensor<T, D>& fused, index_t offset, index_t heads) const {
    const index_t b = m_batch.batch, t = m_batch.length, dh = config().head_dim,
                  width = fused.dim(1);
    return tensor_view<T, D>(fused.data() + offset, {b, t, heads, dh}, {t * width, width, dh, 1});
  }
  tensor_view<T, D> rope_view(tensor<T, D>& fused, index_t offset, index_t heads) const {
    const index_t dh = config().head_dim;
    return tensor_view<T, D>(fused.data() + offset, {fused.dim(0), heads, dh},
                             {fused.dim(1), dh, 1});
  }

  // Layer l: out = in + attn(norm1(in)) + mlp(norm2(...)); every intermediate stays in the
  // workspace (in and out may alias).
  void layer_forward(const context<D>& ctx, int l, tensor_view<const G, D> in,
                     tensor_view<G, D> out, std::uint64_t seed, bool training) {
    const auto& c = config();
    const auto& L = m_model.layers[l];
    const index_t H = c.num_heads, Hkv = c.num_kv_heads, dh = c.head_dim;
    norm_forward(ctx, norm_type(), m_h1.view(), in, L.norm1_w.view(), L.norm1_b.view(), c.norm_eps);
    emulate(m_h1);
    linear_forward(ctx, m_qkv.view(), cv(m_h1.view()), L.qkv_w.view(), L.qkv_b.view());
    emulate(m_qkv);
    for (lora_slot s : {lora_slot::q, lora_slot::k, lora_slot::v, lora_slot::qkv})
      adapter_forward(ctx, l, s, slot_out(m_qkv, s), cv(m_h1.view()), seed, training);
    emulate(m_qkv);
    if (c.uses_rope()) {
      rope_forward(ctx, rope_view(m_qkv, 0, H), positions(), m_model.inv_freq.view());
      rope_forward(ctx, rope_view(m_qkv, H * dh, Hkv), positions(), m_model.inv_freq.view());
      emulate(m_qkv);
    }
    const auto attn4 = m_attn.view().reshape({m_batch.batch, m_batch.length, H, dh});
    const auto q = cv(head_part(m_qkv, 0, H)), k = cv(head_part(m_qkv, H * dh, Hkv)),
               v = cv(head_part(m_qkv, (H + Hkv) * dh, Hkv));
    const float scale = 1.0f / std::sqrt(float(dh));
    with_emulation([&](auto... round) {
      attention_forward_train(ctx, attn4, m_lse.view(), q, k, v, valid(), scale, round...);
    });
    emulate(m_attn);
    linear_forward(ctx, m_o.view(), cv(m_attn.view()), L.o_w.view(), L.o_b.view());
    emulate(m_o);
    adapter_forward(ctx, l, lora_slot::o, m_o.view(), cv(m_attn.view()), seed, training);
    emulate(m_o);
    copy_rows(ctx, m_x2.view(), in);
    residual_add(ctx, m_x2.view(), cv(m_o.view()));
    norm_forward(ctx, norm_type(), m_h2.view(), cv(m_x2.view()), L.norm2_w.view(), L.norm2_b.view(),
                 c.norm_eps);
    emulate(m_h2);
    linear_forward(ctx, m_mlp.view(), cv(m_h2.view()), L.up_w.view(), L.up_b.view());
    emulate(m_mlp);
    for (lora_slot s : {lora_slot::gate, lora_slot::up})
      adapter_forward(ctx, l, s, slot_out(m_mlp, s), cv(m_h2.view()), seed, training);
    emulate(m_mlp);
    if (c.kind == family::gpt2)
      activation_forward(ctx, c.act, m_act.view(), cv(m_mlp.view()));
    else
      gated_activation_forward(ctx, c.act, m_act.view(), cv(m_mlp.view()));
    emulate(m_act);
    linear_forward(ctx, m_d.view(), cv(m_act.view()), L.down_w.view(), L.down_b.view());
    emulate(m_d);
    adapter_forward(ctx, l, lora_slot::down, m_d.view(), cv(m_act.view()), seed, training);
    emulate(m_d);
    copy_rows(ctx, out, cv(m_x2.view()));
    residual_add(ctx, out, cv(m_d.view()));
  }

  // The backward pass of layer l, whose intermediates layer_forward just left in the workspace:
  // dy (N, C) in: dL/d out; out: dL/d in.
  void layer_backward(const context<D>& ctx, int l, tensor_view<G, D> dy,
                      tensor_view<const G, D> in, std::uint64_t seed) {
    const auto& c = config();
    const auto& L = m_model.layers[l];
    const index_t H = c.num_heads, Hkv = c.num_kv_heads, dh = c.head_dim;
    // MLP branch: out = x2 + down(act(up(norm2(x2))))
    convert_rows(ctx, m_dd.view(), cv(dy));
    emulate(m_dd);
    linear_backward_input(ctx, m_dact.view(), cv(m_dd.view()), L.down_w.view());
    emulate(m_dact);
    adapter_backward(ctx, l, lora_slot::down, m_dact.view(), cv(m_dd.view()), seed);
    emulate(m_dact);
    if (c.kind == family::gpt2)
      activation_backward(ctx, c.act, m_dmlp.view(), cv(m_dact.view()), cv(m_mlp.view()));
    else
      gated_activation_backward(ctx, c.act, m_dmlp.view(), cv(m_dact.view()), cv(m_mlp.view()));
    emulate(m_dmlp);
    linear_backward_input(ctx, m_dh.view(), cv(m_dmlp.view()), L.up_w.view());
    emulate(m_dh);
    for (lora_slot s : {lora_slot::gate, lora_slot::up}) {
      adapter_backward(ctx, l, s, m_dh.view(), cv(slot_out(m_dmlp, s)), seed);
      emulate(m_dh);
    }
    copy_rows(ctx, m_dx2.view(), cv(dy));
    norm_backward(ctx, norm_type(), m_dx2.view(), cv(m_dh.view()), cv(m_x2.view()),
                  L.norm2_w.view(), c.norm_eps);
    // Attention branch: x2 = in + o(attn(rope(qkv(norm1(in)))))
    convert_rows(ctx, m_do.view(), cv(m_dx2.view()));
    emulate(m_do);
    linear_backward_input(ctx, m_dattn.view(), cv(m_do.view()), L.o_w.view());
    emulate(m_dattn);
    adapter_backward(ctx, l, lora_slot::o, m_dattn.view(), cv(m_do.view()), seed);
    emulate(m_dattn);
    const shape_t heads4 = {m_batch.batch, m_batch.length, H, dh};
    const auto dq = head_part(m_dqkv, 0, H), dk = head_part(m_dqkv, H * dh, Hkv),
               dv = head_part(m_dqkv, (H + Hkv) * dh, Hkv);
    const auto dattn4 = cv(m_dattn.view().reshape(heads4)),
               attn4 = cv(m_attn.view().reshape(heads4));
    const auto q = cv(head_part(m_qkv, 0, H)), k = cv(head_part(m_qkv, H * dh, Hkv)),
               v = cv(head_part(m_qkv, (H + Hkv) * dh, Hkv));
    const float scale = 1.0f / std::sqrt(float(dh));
    with_emulation([&](auto... round) {
      attention_backward(ctx, dq, dk, dv, dattn4, attn4, q, k, v, cv(m_lse.view()), valid(), scale,
                         round...);
    });
    emulate(m_dqkv);
    if (c.uses_rope()) {
      rope_backward(ctx, rope_view(m_dqkv, 0, H), positions(), m_model.inv_freq.view());
      rope_backward(ctx, rope_view(m_dqkv, H * dh, Hkv), positions(), m_model.inv_freq.view());
      emulate(m_dqkv);
    }
    linear_backward_input(ctx, m_dh.view(), cv(m_dqkv.view()), L.qkv_w.view());
    emulate(m_dh);
    for (lora_slot s : {lora_slot::q, lora_slot::k, lora_slot::v, lora_slot::qkv}) {
      adapter_backward(ctx, l, s, m_dh.view(), cv(slot_out(m_dqkv, s)), seed);
      emulate(m_dh);
    }
    copy_rows(ctx, dy, cv(m_dx2.view()));
    norm_backward(ctx, norm_type(), dy, cv(m_dh.view()), in, L.norm1_w.view(), c.norm_eps);
  }

  const decoder_model<T, D>& m_model;
  lora_adapters<G, D>* m_ad;
  std::uint64_t m_calls = 0, m_seed = 0;
  int m_next_layer = -1;
  bool m_bound = false;
  token_batch m_batch;
  tensor<std::int32_t, D> m_ids, m_valid, m_positions, m_rows, m_tgt;
  tensor<G, D> m_final_w, m_final_b, m_head;
  tensor_view<const G, D> m_final_w_view, m_final_b_view;
  // layer workspace: T activations and gradients, G residual and softmax statistics
  tensor<T, D> m_h1, m_qkv, m_attn, m_o, m_h2, m_mlp, m_act, m_d;
  tensor<T, D> m_dd, m_dact, m_dmlp, m_dh, m_do, m_dattn, m_dqkv;
  tensor<G, D> m_x2, m_dx2, m_lse, m_out;
  std::array<tensor<G, D>, lora_slot_count> m_xd, m_u;
  tensor<G, D> m_du, m_dxd;
  // whole-model helpers and lm_loss scratch
  tensor<G, D> m_x, m_dx, m_xc, m_dxc, m_nc, m_dnc, m_logits, m_head_rounded;
  lora_activations<G, D> m_saved;
};

}  // namespace crossbatch
