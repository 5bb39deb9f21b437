// Decoder-only transformers (gpt2, llama, qwen2) as one template over element type T and device D.
// Family differences are data, read from the config at load: LayerNorm or RMSNorm, learned or
// rotary positions, plain or gated MLP, which projections carry biases, tied or separate LM head.
// The forward pass is split into embed / run_layers (a loop over decoder_block, with hooks) /
// final_norm / logits so that callers (the cross-batch mixer, LDA, diagonal batching) can act
// between and inside layers.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "crossbatch/attention/kv_cache.hpp"
#include "crossbatch/attention/mask.hpp"
#include "crossbatch/core/context.hpp"
#include "crossbatch/core/transfer.hpp"
#include "crossbatch/model/block_hooks.hpp"
#include "crossbatch/model/config.hpp"
#include "crossbatch/model/host_tensor_ops.hpp"
#include "crossbatch/model/weights.hpp"
#include "crossbatch/ops/cpu.hpp"

namespace crossbatch {

template <class T, class D = cpu>
struct decoder_layer {
  tensor<T, D> norm1_w, norm1_b;  // (C); biases only for LayerNorm
  tensor<T, D> qkv_w, qkv_b;      // (H*Dh + 2*Hkv*Dh, C), (same) or empty
  tensor<T, D> o_w, o_b;          // (C, H*Dh), (C) or empty
  tensor<T, D> norm2_w, norm2_b;  // (C)
  tensor<T, D> up_w, up_b;        // (F, C) or, gated, (2F, C) = [gate; up]
  tensor<T, D> down_w, down_b;    // (C, F), (C) or empty
};

// Scratch buffers for up to `tokens` tokens per call, allocated once (no allocation in decode).
template <class T, class D = cpu>
struct decoder_workspace {
  tensor<T, D> h, qkv, attn, o, mlp, act;
  index_t tokens = 0;

  decoder_workspace() = default;
  decoder_workspace(const model_config& c, index_t n)
      : h({n, c.hidden_size}),
        qkv({n, index_t(c.num_heads + 2 * c.num_kv_heads) * c.head_dim}),
        attn({n, index_t(c.num_heads) * c.head_dim}),
        o({n, c.hidden_size}),
        mlp({n, (c.kind == family::gpt2 ? 1 : 2) * index_t(c.intermediate_size)}),
        act({n, c.intermediate_size}),
        tokens(n) {}
};

namespace detail {
// The first n rows of a (rows, cols) buffer as a contiguous view.
template <class T, class D>
tensor_view<T, D> first_rows(tensor<T, D>& t, index_t n) {
  return {t.data(), {n, t.dim(1)}};
}
}  // namespace detail

template <class T, class D = cpu>
class decoder_model {
 public:
  model_config config;
  tensor<T, D> embed;      // (V, C)
  tensor<T, D> pos_embed;  // (P, C), gpt2 only
  tensor<T, D> final_w, final_b;
  tensor<T, D> lm_head;       // (V, C); empty when tied to embed
  tensor<float, D> inv_freq;  // (Dh/2), rotary families
  std::vector<decoder_layer<T, D>> layers;

  // Loads `dir/config.json` and the npy weights; `config_file` overrides the config path.
  static decoder_model load(const std::string& dir, const std::string& config_file = "") {
    decoder_model m;
    m.config = load_config(config_file.empty() ? dir + "/config.json" : config_file);
    if (!m.config.is_decoder())
      throw config_error(dir + ": model_type '" + m.config.model_type +
                         "' is not a decoder-only model");
    weight_dir w(dir);
    m.config.kind == family::gpt2 ? m.load_gpt2(w) : m.load_llama(w);
    if (m.config.uses_rope()) {
      const auto f = rope_inv_freq(m.config.rope, m.config.head_dim);
      tensor<float> host({index_t(f.size())});
      std::copy(f.begin(), f.end(), host.data());
      m.inv_freq = to_device<D>(host);
    }
    return m;
  }

  const tensor<T, D>& output_embedding() const { return lm_head.empty() ? embed : lm_head; }

  kv_cache<T, D> make_cache(int batch, int slots) const {
    return kv_cache<T, D>(config.num_layers, batch, config.num_kv_heads, slots, config.head_dim);
  }

  // x (N, C) = token embeddings of ids (N) (+ learned position embeddings at positions (N)).
  void embed_tokens(const context<D>& ctx, tensor_view<T, D> x,
                    tensor_view<const std::int32_t, D> ids,
                    tensor_view<const std::int32_t, D> positions) const {
    embedding(ctx, x, ids, embed.view());
    if (config.kind == family::gpt2)
      embedding(ctx, x, positions, pos_embed.view(), /*accumulate=*/true);
  }

  // Runs layers [first, last) on x (B, T, C) in place: the tokens occupy cache slots
  // [start, start + T) and sit at the given positions (B*T); mask says which slots each may see.
  // hooks (model/block_hooks.hpp) run before each block, after its attention and after it.
  template <mask_policy M, class Hooks = no_hooks>
  void run_layers(const context<D>& ctx, tensor_view<T, D> x,
                  tensor_view<const std::int32_t, D> positions, kv_cache<T, D>& cache, int start,
                  const M& mask, int first, int last, decoder_workspace<T, D>& ws,
                  Hooks&& hooks = {}) const {
    const index_t n = x.shape[0] * x.shape[1];
    require<shape_error>(x.rank() == 3 && x.shape[2] == config.hidden_size,
                         "run_layers: x must be (B, T, C), got " + to_string(x.shape));
    require<value_error>(n <= ws.tokens, "run_layers: workspace holds " +
                                             std::to_string(ws.tokens) + " tokens, call has " +
                                             std::to_string(n));
    require<value_error>(start + x.shape[1] <= cache.capacity(),
                         "run_layers: slots beyond the KV cache capacity");
    require<value_error>(0 <= first && first <= last && last <= config.num_layers,
                         "run_layers: layers [" + std::to_string(first) + ", " +
                             std::to_string(last) + ") outside the model");
    for (int l = first; l < last; ++l) {
      // Without hooks nothing touches x between two blocks, so each block but the last adds its
      // MLP output and norms the sum for the next one in one residual_norm (same roundings as
      // add_inplace + norm); the next block starts from that norm.
      const bool chained = is_no_hooks<Hooks>;
      block(ctx, l, x, positions, cache, start, mask, ws, hooks, chained && l > first,
            chained && l + 1 < last);
    }
  }

  // Layer l on x (B, T, C) in place (pre-norm attention, then pre-norm MLP, each added to the
  // residual stream), with the hooks around it.
  template <mask_policy M, class Hooks = no_hooks>
  void decoder_block(const context<D>& ctx, int l, tensor_view<T, D> x,
                     tensor_view<const std::int32_t, D> positions, kv_cache<T, D>& cache, int start,
                     const M& mask, decoder_workspace<T, D>& ws, Hooks&& hooks = {}) const {
    block(ctx, l, x, positions, cache, start, mask, ws, hooks, false, false);
  }

  // out (N, C) = final norm of x (N, C).
  void final_norm(const context<D>& ctx, tensor_view<T, D> out, tensor_view<const T, D> x) const {
    norm(ctx, out, x, final_w, final_b);
  }

  // logits (N, V) = h (N, C) @ output_embedding^T.
  void logits(const context<D>& ctx, tensor_view<T, D> out, tensor_view<const T, D> h) const {
    linear(ctx, out, h, output_embedding().view());
  }

 private:
  // decoder_block; input_normed: ws.h already holds norm1(x) of this layer (left by the previous
  // block); norm_next: leave norm1 of layer l + 1 of the new x in ws.h (no hooks only).
  template <mask_policy M, class Hooks>
  void block(const context<D>& ctx, int l, tensor_view<T, D> x,
             tensor_view<const std::int32_t, D> positions, kv_cache<T, D>& cache, int start,
             const M& mask, decoder_workspace<T, D>& ws, Hooks&& hooks, bool input_normed,
             bool norm_next) const {
    const index_t b = x.shape[0], t = x.shape[1], n = b * t, c = config.hidden_size;
    const index_t h = config.num_heads, hkv = config.num_kv_heads, dh = config.head_dim;
    auto x2 = x.reshape({n, c});
    auto hbuf = detail::first_rows(ws.h, n);
    auto qkv = detail::first_rows(ws.qkv, n);
    auto attn = detail::first_rows(ws.attn, n);
    const index_t width = qkv.shape[1];
    // q (B,T,H,Dh): a strided view into the fused projection (then k and v, Hkv heads each).
    const tensor_view<T, D> q(qkv.data, {b, t, h, dh}, {t * width, width, dh, 1});
    const attention_shape shape{start, int(start + t), 1.0f / std::sqrt(float(dh))};
    const auto& L = layers[l];
    hooks.before_block(ctx, l, x);
    if (!input_normed) norm(ctx, hbuf, x2, L.norm1_w, L.norm1_b);
    linear(ctx, qkv, cview(hbuf), L.qkv_w.view(), L.qkv_b.view());
    // q and k rotated (rotary families), k and v into the cache.
    rope_write_kv(ctx, qkv, t, int(h), int(hkv), positions,
                  config.uses_rope() ? inv_freq.view() : tensor_view<const float, D>{},
                  cache.keys(l), cache.values(l), start);
    attention(ctx, attn.reshape({b, t, h, dh}), cview(q), cview(cache.keys(l)),
              cview(cache.values(l)), mask, shape);
    auto o = detail::first_rows(ws.o, n);
    linear(ctx, o, cview(attn), L.o_w.view(), L.o_b.view());
    // x += o; hbuf = norm2(x)
    residual_norm(ctx, norm_type(), x2, cview(o), hbuf, L.norm2_w.view(), L.norm2_b.view(),
                  config.norm_eps);
    if constexpr (!is_no_hooks<Hooks>) {
      hooks.after_attention(ctx, l, x);
      if constexpr (std::remove_cvref_t<Hooks>::edits_after_attention)
        norm(ctx, hbuf, x2, L.norm2_w, L.norm2_b);
    }
    auto mlp = detail::first_rows(ws.mlp, n);
    linear(ctx, mlp, cview(hbuf), L.up_w.view(), L.up_b.view());
    auto act = detail::first_rows(ws.act, n);
    if (config.kind == family::gpt2)
      activate(ctx, config.act, act, cview(mlp));
    else
      gated_activation(ctx, config.act, act, cview(mlp));
    if (norm_next) {  // x += down(act); hbuf = norm1 of layer l + 1 (x)
      linear(ctx, o, cview(act), L.down_w.view(), L.down_b.view());
      const auto& next = layers[l + 1];
      residual_norm(ctx, norm_type(), x2, cview(o), hbuf, next.norm1_w.view(), next.norm1_b.view(),
                    config.norm_eps);
    } else {
      linear(ctx, hbuf, cview(act), L.down_w.view(), L.down_b.view());
      add_inplace(ctx, x2, cview(hbuf));
    }
    hooks.after_block(ctx, l, x);
  }

  static tensor_view<const T, D> cview(tensor_view<T, D> v) { return v; }

  norm_kind norm_type() const {
    return config.kind == family::gpt2 ? norm_kind::layer : norm_kind::rms;
  }

  void norm(const context<D>& ctx, tensor_view<T, D> out, tensor_view<const T, D> x,
            const tensor<T, D>& w, const tensor<T, D>& b) const {
    if (norm_type() == norm_kind::layer)
      layer_norm(ctx, out, x, w.view(), b.view(), config.norm_eps);
    else
      rms_norm(ctx, out, x, w.view(), config.norm_eps);
  }

  static tensor<T, D> up(const tensor<T>& host) { return to_device<D>(host); }

  void load_gpt2(const weight_dir& w) {
    const auto& c = config;
    const index_t C = c.hidden_size, F = c.intermediate_size;
    const std::string p = w.has("transformer.wte.weight") ? "transformer." : "";
    embed = up(w.load<T>(p + "wte.weight", {c.vocab_size, C}));
    pos_embed = up(w.load<T>(p + "wpe.weight", {c.max_positions, C}));
    for (int i = 0; i < c.num_layers; ++i) {
      const std::string l = p + "h." + std::to_string(i) + ".";
      decoder_layer<T, D> L;
      L.norm1_w = up(w.load<T>(l + "ln_1.weight", {C}));
      L.norm1_b = up(w.load<T>(l + "ln_1.bias", {C}));
      // Conv1D weights are stored (in, out); ours are (out, in).
      L.qkv_w = up(transposed(w.load<T>(l + "attn.c_attn.weight", {C, 3 * C})));
      L.qkv_b = up(w.load<T>(l + "attn.c_attn.bias", {3 * C}));
      L.o_w = up(transposed(w.load<T>(l + "attn.c_proj.weight", {C, C})));
      L.o_b = up(w.load<T>(l + "attn.c_proj.bias", {C}));
      L.norm2_w = up(w.load<T>(l + "ln_2.weight", {C}));
      L.norm2_b = up(w.load<T>(l + "ln_2.bias", {C}));
      L.up_w = up(transposed(w.load<T>(l + "mlp.c_fc.weight", {C, F})));
      L.up_b = up(w.load<T>(l + "mlp.c_fc.bias", {F}));
      L.down_w = up(transposed(w.load<T>(l + "mlp.c_proj.weight", {F, C})));
      L.down_b = up(w.load<T>(l + "mlp.c_proj.bias", {C}));
      layers.push_back(std::move(L));
    }
    final_w = up(w.load<T>(p + "ln_f.weight", {C}));
    final_b = up(w.load<T>(p + "ln_f.bias", {C}));
    if (!c.tie_word_embeddings) lm_head = up(w.load<T>("lm_head.weight", {c.vocab_size, C}));
  }

  void load_llama(const weight_dir& w) {
    const auto& c = config;
    const index_t C = c.hidden_size, F = c.intermediate_size, dh = c.head_dim;
    const index_t qd = c.num_heads * dh, kd = c.num_kv_heads * dh;
    embed = up(w.load<T>("model.embed_tokens.weight", {c.vocab_size, C}));
    for (int i = 0; i < c.num_layers; ++i) {
      const std::string l = "model.layers." + std::to_string(i) + ".";
      decoder_layer<T, D> L;
      L.norm1_w = up(w.load<T>(l + "input_layernorm.weight", {C}));
      const auto q = w.load<T>(l + "self_attn.q_proj.weight", {qd, C});
      const auto k = w.load<T>(l + "self_attn.k_proj.weight", {kd, C});
      const auto v = w.load<T>(l + "self_attn.v_proj.weight", {kd, C});
      L.qkv_w = up(concat_rows<T>({&q, &k, &v}));
      if (c.qkv_bias) {
        const auto qb = w.load<T>(l + "self_attn.q_proj.bias", {qd});
        const auto kb = w.load<T>(l + "self_attn.k_proj.bias", {kd});
        const auto vb = w.load<T>(l + "self_attn.v_proj.bias", {kd});
        L.qkv_b = up(concat_rows<T>({&qb, &kb, &vb}));
      }
      L.o_w = up(w.load<T>(l + "self_attn.o_proj.weight", {C, qd}));
      if (c.o_bias) L.o_b = up(w.load<T>(l + "self_attn.o_proj.bias", {C}));
      L.norm2_w = up(w.load<T>(l + "post_attention_layernorm.weight", {C}));
      const auto gate = w.load<T>(l + "mlp.gate_proj.weight", {F, C});
      const auto upw = w.load<T>(l + "mlp.up_proj.weight", {F, C});
      L.up_w = up(concat_rows<T>({&gate, &upw}));
      L.down_w = up(w.load<T>(l + "mlp.down_proj.weight", {C, F}));
      if (c.mlp_bias) {
        const auto gb = w.load<T>(l + "mlp.gate_proj.bias", {F});
        const auto ub = w.load<T>(l + "mlp.up_proj.bias", {F});
        L.up_b = up(concat_rows<T>({&gb, &ub}));
        L.down_b = up(w.load<T>(l + "mlp.down_proj.bias", {C}));
      }
      layers.push_back(std::move(L));
    }
    final_w = up(w.load<T>("model.norm.weight", {C}));
    if (!c.tie_word_embeddings) lm_head = up(w.load<T>("lm_head.weight", {c.vocab_size, C}));
  }
};

}  // namespace crossbatch
