// Causal self-attention of whole ARMT segments: every sequence of a group attends its own T rows
// (no cache), which is the engine's attention op with the group's sequences as the batch and the
// fused projection read in place:
//   q (seqs, T, H, Dh)   = qkv[:, 0 : H Dh]                 (row stride width)
//   k (seqs, Hkv, T, Dh) = qkv[:, H Dh : (H + Hkv) Dh]      (a strided "cache" view, no copy)
//   v (seqs, Hkv, T, Dh) = qkv[:, (H + Hkv) Dh : width]
//   attn (seqs, T, H, Dh) = softmax(q k^T / sqrt(Dh) + causal) v
// For 16-bit types with Dh 64 or 128 this is the tensor-core prefill kernel
// (attention/cuda/prefill_tc.cuh: online softmax, the empty upper tiles of the causal mask never
// loaded, no score matrix in memory); other shapes take the CUDA-core prefill kernel. Each block
// owns (query tile, head, sequence), so a sequence's bits do not depend on which other sequences
// share the call: the sequential and diagonal executors compute the same attention.
#pragma once

#include <cmath>

#include "crossbatch/attention/attention.hpp"
#include "crossbatch/attention/cuda/attention.cuh"
#include "crossbatch/attention/mask.hpp"
#include "crossbatch/model/config.hpp"

namespace crossbatch {

// attn (seqs, T, H, Dh) contiguous = causal attention of the q, k, v parts of qkv (seqs * T,
// width) (q at column 0, k at H * Dh, v at (H + Hkv) * Dh).
template <class T>
void segment_attention(const context<cuda>& ctx, const model_config& c, T* attn, const T* qkv,
                       index_t width, index_t seqs, index_t t) {
  const index_t h = c.num_heads, hkv = c.num_kv_heads, dh = c.head_dim;
  const tensor_view<const T, cuda> q(qkv, {seqs, t, h, dh}, {t * width, width, dh, 1});
  auto kv = [&](index_t offset) {
    return tensor_view<const T, cuda>(qkv + offset, {seqs, hkv, t, dh}, {t * width, dh, width, 1});
  };
  const attention_shape shape{0, int(t), 1.0f / std::sqrt(float(dh))};
  attention(ctx, tensor_view<T, cuda>(attn, {seqs, t, h, dh}), q, kv(h * dh), kv((h + hkv) * dh),
            causal{}, shape);
}

}  // namespace crossbatch
