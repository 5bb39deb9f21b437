// One step of the diagonal schedule on the CPU: G cells, each at its own layer, run as one grouped
// decoder layer. The members' rows lie back to back in one workspace (member g's b_g sequences of
// T rows from row offset_g on), so every op without weights runs once over the whole group (RoPE,
// batched causal attention over all sequences of the group, the MLP activation), and every op
// with weights runs once per member with that member's layer (norms, the four projections: on the
// CPU one Eigen GEMM per member; the CUDA form is one strided-batched GEMM over weights stacked per
// layer). The ops and their order are those of decoder_model::decoder_block, call for call, so a
// cell computes exactly what the sequential executor computes for it.
#pragma once

#include <cmath>
#include <span>
#include <vector>

#include "crossbatch/model/decoder.hpp"

namespace crossbatch {

template <class T>
struct group_member {
  int layer = 0;
  tensor_view<T> x;  // (b, T, C): the member's residual stream, in place
};

// Buffers for up to `sequences` sequences of `rows` rows per step, allocated once.
template <class T>
struct grouped_workspace {
  decoder_workspace<T> block;
  kv_cache<T> kv;  // one layer, (sequences, Hkv, rows, Dh)
  tensor<std::int32_t> positions;
  index_t sequences = 0, rows = 0;

  grouped_workspace() = default;
  grouped_workspace(const model_config& c, index_t sequences_, index_t rows_)
      : block(c, sequences_ * rows_),
        kv(1, int(sequences_), c.num_kv_heads, int(rows_), c.head_dim),
        positions({sequences_ * rows_}),
        sequences(sequences_),
        rows(rows_) {}
};

namespace armt_detail {
template <class T>
void layer_norm_of(const context<cpu>& ctx, const model_config& c, tensor_view<T> out,
                   tensor_view<const T> x, const tensor<T>& w, const tensor<T>& b) {
  if (c.kind == family::gpt2)
    layer_norm(ctx, out, x, w.view(), b.view(), c.norm_eps);
  else
    rms_norm(ctx, out, x, w.view(), c.norm_eps);
}
}  // namespace armt_detail

// Runs every member's layer on its x; positions (sum b_g * T) in member order.
template <class T>
void grouped_decoder_layer(const context<cpu>& ctx, const decoder_model<T>& m,
                           std::span<const group_member<T>> members,
                           tensor_view<const std::int32_t> positions, grouped_workspace<T>& ws) {
  const auto& c = m.config;
  const index_t t = ws.rows, cd = c.hidden_size;
  const index_t h = c.num_heads, hkv = c.num_kv_heads, dh = c.head_dim;
  std::vector<index_t> offset;  // first workspace row of each member
  index_t seqs = 0;
  for (const auto& g : members) {
    require<shape_error>(g.x.rank() == 3 && g.x.shape[1] == t && g.x.shape[2] == cd,
                         "grouped_decoder_layer: member x must be (b, T, C), got " +
                             to_string(g.x.shape));
    offset.push_back(seqs * t);
    seqs += g.x.shape[0];
  }
  require(seqs <= ws.sequences, "grouped_decoder_layer: the group holds " + std::to_string(seqs) +
                                    " sequences, the workspace " + std::to_string(ws.sequences));
  const index_t n = seqs * t;
  require<shape_error>(positions.size() == n, "grouped_decoder_layer: positions must be (rows)");
  auto rows = [&](tensor<T>& buf, std::size_t g) {
    return tensor_view<T>(buf.data() + offset[g] * buf.dim(1),
                          {members[g].x.shape[0] * t, buf.dim(1)});
  };
  auto x2 = [&](std::size_t g) { return members[g].x.reshape({members[g].x.shape[0] * t, cd}); };
  auto& w = ws.block;
  const index_t width = w.qkv.dim(1);
  auto part = [&](index_t off, index_t heads) {
    return tensor_view<T>(w.qkv.data() + off, {seqs, t, heads, dh}, {t * width, width, dh, 1});
  };
  auto q = part(0, h), k = part(h * dh, hkv), v = part((h + hkv) * dh, hkv);
  for (std::size_t g = 0; g < members.size(); ++g) {
    const auto& L = m.layers[members[g].layer];
    armt_detail::layer_norm_of(ctx, c, rows(w.h, g), tensor_view<const T>(x2(g)), L.norm1_w,
                               L.norm1_b);
    linear(ctx, rows(w.qkv, g), tensor_view<const T>(rows(w.h, g)), L.qkv_w.view(),
           L.qkv_b.view());
  }
  if (c.uses_rope()) {
    apply_rope(ctx, tensor_view<T>(q.data, {n, h, dh}, {width, dh, 1}), positions,
               m.inv_freq.view());
    apply_rope(ctx, tensor_view<T>(k.data, {n, hkv, dh}, {width, dh, 1}), positions,
               m.inv_freq.view());
  }
  auto keys = ws.kv.keys(0).narrow(0, 0, seqs), values = ws.kv.values(0).narrow(0, 0, seqs);
  write_kv(ctx, keys, tensor_view<const T>(k), 0);
  write_kv(ctx, values, tensor_view<const T>(v), 0);
  const attention_shape shape{0, int(t), 1.0f / std::sqrt(float(dh))};
  auto attn = tensor_view<T>(w.attn.data(), {seqs, t, h, dh});
  attention(ctx, attn, tensor_view<const T>(q), tensor_view<const T>(keys),
            tensor_view<const T>(values), causal{}, shape);
  for (std::size_t g = 0; g < members.size(); ++g) {
    const auto& L = m.layers[members[g].layer];
    linear(ctx, rows(w.o, g), tensor_view<const T>(rows(w.attn, g)), L.o_w.view(), L.o_b.view());
    residual_norm(ctx, c.kind == family::gpt2 ? norm_kind::layer : norm_kind::rms, x2(g),
                  tensor_view<const T>(rows(w.o, g)), rows(w.h, g), L.norm2_w.view(),
                  L.norm2_b.view(), c.norm_eps);
    linear(ctx, rows(w.mlp, g), tensor_view<const T>(rows(w.h, g)), L.up_w.view(), L.up_b.view());
  }
  auto mlp = tensor_view<T>(w.mlp.data(), {n, w.mlp.dim(1)});
  auto act = tensor_view<T>(w.act.data(), {n, w.act.dim(1)});
  if (c.kind == family::gpt2)
    activate(ctx, c.act, act, tensor_view<const T>(mlp));
  else
    gated_activation(ctx, c.act, act, tensor_view<const T>(mlp));
  for (std::size_t g = 0; g < members.size(); ++g) {
    const auto& L = m.layers[members[g].layer];
    linear(ctx, rows(w.h, g), tensor_view<const T>(rows(w.act, g)), L.down_w.view(),
           L.down_b.view());
    add_inplace(ctx, x2(g), tensor_view<const T>(rows(w.h, g)));
  }
}

}  // namespace crossbatch
