// BERT encoders (all-MiniLM, bert-base...): embeddings (word + position + token type, LayerNorm),
// post-LayerNorm blocks with bidirectional attention over right-padded batches, and the tanh
// pooler. On request it returns the attention probabilities of one layer or of all layers (a
// strategy reads them to order questions) and every layer's hidden states.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "crossbatch/attention/kv_cache.hpp"
#include "crossbatch/attention/mask.hpp"
#include "crossbatch/core/transfer.hpp"
#include "crossbatch/model/config.hpp"
#include "crossbatch/model/host_tensor_ops.hpp"
#include "crossbatch/model/weights.hpp"
#include "crossbatch/ops/cpu.hpp"

namespace crossbatch {

template <class T, class D = cpu>
struct bert_layer {
  tensor<T, D> qkv_w, qkv_b;  // (3C, C), (3C)
  tensor<T, D> o_w, o_b;      // (C, C), (C)
  tensor<T, D> ln1_w, ln1_b;  // attention.output.LayerNorm
  tensor<T, D> up_w, up_b;    // intermediate.dense (F, C), (F)
  tensor<T, D> down_w, down_b;
  tensor<T, D> ln2_w, ln2_b;  // output.LayerNorm
};

struct bert_request {
  int attention_layer = -1;    // layer whose attention probabilities to return; -1: none
  bool hidden_states = false;  // return the embedding output and every layer's output
  bool all_attentions = false;  // return every layer's attention probabilities (layer_attentions)
};

template <class T, class D = cpu>
struct bert_output {
  tensor<T, D> last_hidden_state;           // (B, T, C)
  tensor<T, D> pooler_output;               // (B, C)
  tensor<float, D> attentions;              // (B, H, T, T) of the requested layer
  std::vector<tensor<T, D>> hidden_states;  // L+1 of (B, T, C) when requested
  std::vector<int> lengths;                 // real tokens per sequence (the rest is right padding)
  std::vector<tensor<float, D>> layer_attentions;  // L of (B, H, T, T) when all_attentions
};

template <class T, class D = cpu>
class bert_model {
 public:
  model_config config;
  tensor<T, D> word, position, token_type, emb_ln_w, emb_ln_b;
  tensor<T, D> pool_w, pool_b;  // empty when the checkpoint has no pooler
  std::vector<bert_layer<T, D>> layers;

  static bert_model load(const std::string& dir) {
    bert_model m;
    m.config = load_config(dir + "/config.json");
    if (m.config.kind != family::bert)
      throw config_error(dir + ": model_type '" + m.config.model_type + "' is not a BERT encoder");
    m.load_weights(weight_dir(dir));
    return m;
  }

  // Encodes a batch of id sequences (and token type ids, or all zeros when `types` is empty).
  bert_output<T, D> encode(const context<D>& ctx, const std::vector<std::vector<int>>& ids,
                           const std::vector<std::vector<int>>& types = {},
                           const bert_request& req = {}) const {
    const auto& c = config;
    require(!ids.empty(), "bert: empty batch");
    require(types.empty() || types.size() == ids.size(),
            "bert: token type ids must match the batch");
    require(req.attention_layer < c.num_layers,
            "bert: attention_layer " + std::to_string(req.attention_layer) + " >= layers");
    const int b = static_cast<int>(ids.size());
    int t = 0;
    for (const auto& s : ids) t = std::max(t, static_cast<int>(s.size()));
    require(t > 0, "bert: all sequences are empty");
    require(t <= c.max_positions, "bert: sequence of " + std::to_string(t) +
                                      " tokens exceeds max_position_embeddings " +
                                      std::to_string(c.max_positions));
    const index_t n = index_t(b) * t, C = c.hidden_size, h = c.num_heads, dh = c.head_dim;
    tensor<std::int32_t> hid({n}), hpos({n}), htype({n}), hlen({b});
    bert_output<T, D> out;
    for (int s = 0; s < b; ++s) {
      const int len = static_cast<int>(ids[s].size());
      require(types.empty() || static_cast<int>(types[s].size()) == len,
              "bert: token type ids of sequence " + std::to_string(s) + " differ in length");
      hlen(s) = len;
      out.lengths.push_back(len);
      for (int i = 0; i < t; ++i) {
        hid(s * t + i) = i < len ? ids[s][i] : 0;
        htype(s * t + i) = i < len && !types.empty() ? types[s][i] : 0;
        require(htype(s * t + i) >= 0 && htype(s * t + i) < c.type_vocab_size,
                "bert: token type id outside type_vocab_size");
        hpos(s * t + i) = i;
      }
    }
    auto did = to_device<D>(hid), dpos = to_device<D>(hpos), dtype = to_device<D>(htype),
         dlen = to_device<D>(hlen);
    tensor<T, D> x({b, t, C}), tmp({n, C}), qkv({n, 3 * C}), attn({n, C}),
        mlp({n, index_t(c.intermediate_size)});
    auto x2 = x.view().reshape({n, C});
    embedding(ctx, tmp.view(), cv(did), word.view());
    embedding(ctx, tmp.view(), cv(dpos), position.view(), true);
    embedding(ctx, tmp.view(), cv(dtype), token_type.view(), true);
    layer_norm(ctx, x2, cv(tmp), emb_ln_w.view(), emb_ln_b.view(), c.norm_eps);
    if (req.hidden_states) out.hidden_states.push_back(copy(x));
    kv_cache<T, D> kv(1, b, static_cast<int>(h), t, static_cast<int>(dh));
    const right_padding mask{dlen.data()};
    const attention_shape shape{0, t, 1.0f / std::sqrt(float(dh))};
    const index_t w3 = 3 * C;
    auto part = [&](index_t off) {
      return tensor_view<const T, D>(qkv.data() + off, {b, t, h, dh}, {t * w3, w3, dh, 1});
    };
    for (int l = 0; l < c.num_layers; ++l) {
      const auto& L = layers[l];
      linear(ctx, qkv.view(), cv(x2), L.qkv_w.view(), L.qkv_b.view());
      write_kv(ctx, kv.keys(0), part(C), 0);
      write_kv(ctx, kv.values(0), part(2 * C), 0);
      tensor_view<float, D> probs;
      if (req.all_attentions) {
        out.layer_attentions.push_back(tensor<float, D>({b, h, t, t}));
        probs = out.layer_attentions.back().view();
      } else if (l == req.attention_layer) {
        out.attentions = tensor<float, D>({b, h, t, t});
        probs = out.attentions.view();
      }
      attention(ctx, attn.view().reshape({b, t, h, dh}), part(0), cv(kv.keys(0)), cv(kv.values(0)),
                mask, shape, probs);
      linear(ctx, tmp.view(), cv(attn.view()), L.o_w.view(), L.o_b.view());
      // Post-LN: x = LN(x + attn); x = LN(x + mlp(x)).
      residual_norm(ctx, norm_kind::layer, tmp.view(), cv(x2), x2, L.ln1_w.view(), L.ln1_b.view(),
                    c.norm_eps);
      linear(ctx, mlp.view(), cv(x2), L.up_w.view(), L.up_b.view());
      activate(ctx, c.act, mlp.view(), cv(mlp.view()));
      linear(ctx, tmp.view(), cv(mlp.view()), L.down_w.view(), L.down_b.view());
      residual_norm(ctx, norm_kind::layer, tmp.view(), cv(x2), x2, L.ln2_w.view(), L.ln2_b.view(),
                    c.norm_eps);
      if (req.hidden_states) out.hidden_states.push_back(copy(x));
    }
    if (!pool_w.empty()) {
      tensor<T, D> cls({b, C});
      for (int s = 0; s < b; ++s)
        device_traits<D>::copy(cls.data() + s * C, x.data() + s * t * C, sizeof(T) * C);
      out.pooler_output = tensor<T, D>({b, C});
      linear(ctx, out.pooler_output.view(), cv(cls.view()), pool_w.view(), pool_b.view());
      activate(ctx, activation::tanh, out.pooler_output.view(), cv(out.pooler_output.view()));
    }
    if (req.all_attentions && req.attention_layer >= 0)
      out.attentions = out.layer_attentions[req.attention_layer].clone();
    out.last_hidden_state = std::move(x);
    return out;
  }

 private:
  template <class U>
  static tensor_view<const U, D> cv(const tensor<U, D>& t) {
    return t.view();
  }
  template <class U>
  static tensor_view<const U, D> cv(tensor_view<U, D> v) {
    return v;
  }
  static tensor<T, D> copy(const tensor<T, D>& t) { return t.clone(); }
  static tensor<T, D> up(const tensor<T>& h) { return to_device<D>(h); }

  void load_weights(const weight_dir& w) {
    const auto& c = config;
    const index_t C = c.hidden_size, F = c.intermediate_size;
    const std::string p = w.has("bert.embeddings.word_embeddings.weight") ? "bert." : "";
    word = up(w.load<T>(p + "embeddings.word_embeddings.weight", {c.vocab_size, C}));
    position = up(w.load<T>(p + "embeddings.position_embeddings.weight", {c.max_positions, C}));
    token_type =
        up(w.load<T>(p + "embeddings.token_type_embeddings.weight", {c.type_vocab_size, C}));
    emb_ln_w = up(w.load<T>(p + "embeddings.LayerNorm.weight", {C}));
    emb_ln_b = up(w.load<T>(p + "embeddings.LayerNorm.bias", {C}));
    for (int i = 0; i < c.num_layers; ++i) {
      const std::string l = p + "encoder.layer." + std::to_string(i) + ".";
      bert_layer<T, D> L;
      const auto q = w.load<T>(l + "attention.self.query.weight", {C, C});
      const auto k = w.load<T>(l + "attention.self.key.weight", {C, C});
      const auto v = w.load<T>(l + "attention.self.value.weight", {C, C});
      const auto qb = w.load<T>(l + "attention.self.query.bias", {C});
      const auto kb = w.load<T>(l + "attention.self.key.bias", {C});
      const auto vb = w.load<T>(l + "attention.self.value.bias", {C});
      L.qkv_w = up(concat_rows<T>({&q, &k, &v}));
      L.qkv_b = up(concat_rows<T>({&qb, &kb, &vb}));
      L.o_w = up(w.load<T>(l + "attention.output.dense.weight", {C, C}));
      L.o_b = up(w.load<T>(l + "attention.output.dense.bias", {C}));
      L.ln1_w = up(w.load<T>(l + "attention.output.LayerNorm.weight", {C}));
      L.ln1_b = up(w.load<T>(l + "attention.output.LayerNorm.bias", {C}));
      L.up_w = up(w.load<T>(l + "intermediate.dense.weight", {F, C}));
      L.up_b = up(w.load<T>(l + "intermediate.dense.bias", {F}));
      L.down_w = up(w.load<T>(l + "output.dense.weight", {C, F}));
      L.down_b = up(w.load<T>(l + "output.dense.bias", {C}));
      L.ln2_w = up(w.load<T>(l + "output.LayerNorm.weight", {C}));
      L.ln2_b = up(w.load<T>(l + "output.LayerNorm.bias", {C}));
      layers.push_back(std::move(L));
    }
    if (w.has(p + "pooler.dense.weight")) {
      pool_w = up(w.load<T>(p + "pooler.dense.weight", {C, C}));
      pool_b = up(w.load<T>(p + "pooler.dense.bias", {C}));
    }
  }
};

}  // namespace crossbatch
