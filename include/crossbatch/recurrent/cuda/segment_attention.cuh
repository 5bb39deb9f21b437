// Causal self-attention of whole ARMT segments on tensor cores: every sequence of a group attends
// its own T rows (no cache), so attention is two batched matmuls per sequence and head through
// the pinned strided-batched matmul (ops/cuda/strided_batched_linear.cuh) with a causal softmax
// between them:
//   scores_g (T, T) = q_g k_g^T (float), P_g = causal softmax(scale * scores_g) (in T),
//   out_g (T, Dh) = P_g v_g,   g = (sequence, head); grouped-query heads read their KV head.
// The same code runs for the sequential executor (one member's sequences) and the diagonal one
// (a whole step's), in chunks of at most `chunk` sequences (the float scores of a chunk are
// bounded by scores_bytes); results do not depend on the chunking (pinned algorithms, row-wise
// softmax), so both executors compute the same bits. The masked half of the score matrix is
// computed and thrown away: 2x the causal FLOPs, on tensor cores instead of CUDA cores.
#pragma once

#include <cmath>

#include "crossbatch/core/cuda_type.cuh"
#include "crossbatch/model/config.hpp"
#include "crossbatch/ops/cuda/strided_batched_linear.cuh"

namespace crossbatch {

namespace armt_cuda {
using namespace cuda_detail;

// Per (sequence, head) contiguous copies: qh, kh (G, T, Dh), vt (G, Dh, T); g = s * H + h, the KV
// head of q head h is h / (H / Hkv).
template <class C>
__global__ void pack_heads_kernel(C* qh, C* kh, C* vt, const C* qkv, index_t width, index_t t,
                                  int h, int hkv, int dh, index_t total) {
  grid_dependency();
  const int group = h / hkv;
  for (index_t e = blockIdx.x * index_t(blockDim.x) + threadIdx.x; e < total;
       e += index_t(gridDim.x) * blockDim.x) {
    const int d = int(e % dh);
    const index_t i = (e / dh) % t;
    const index_t g = e / (dh * t);
    const int hh = int(g % h);
    const index_t s = g / h;
    const C* row = qkv + (s * t + i) * width;
    const int kvh = hh / group;
    qh[e] = row[hh * dh + d];
    kh[e] = row[(h + kvh) * dh + d];
    vt[(g * dh + d) * t + i] = row[(h + hkv + kvh) * dh + d];
  }
}

// One block per score row (g, i): P[g, i, j] = exp(scale s_j - max) / sum over j <= i, 0 after.
template <class C>
__global__ void causal_softmax_kernel(C* p, const float* scores, index_t t, float scale) {
  grid_dependency();
  __shared__ float red[32];
  const index_t row = blockIdx.x;
  const index_t i = row % t;
  const float* sr = scores + row * t;
  C* pr = p + row * t;
  float mx = -INFINITY;
  for (index_t j = threadIdx.x; j <= i; j += blockDim.x) mx = fmaxf(mx, scale * sr[j]);
  mx = block_max(mx, red);
  float sum = 0;
  for (index_t j = threadIdx.x; j <= i; j += blockDim.x) sum += expf(scale * sr[j] - mx);
  sum = block_sum(sum, red);
  const float inv = 1.0f / sum;
  for (index_t j = threadIdx.x; j < t; j += blockDim.x)
    pr[j] = from_f<C>(j <= i ? expf(scale * sr[j] - mx) * inv : 0.0f);
}

// attn (s, t, h, dh) = oh (G, T, Dh)
template <class C>
__global__ void unpack_heads_kernel(C* attn, const C* oh, index_t t, int h, int dh, index_t total) {
  grid_dependency();
  for (index_t e = blockIdx.x * index_t(blockDim.x) + threadIdx.x; e < total;
       e += index_t(gridDim.x) * blockDim.x) {
    const int d = int(e % dh);
    const index_t i = (e / dh) % t;
    const index_t g = e / (dh * t);
    const int hh = int(g % h);
    const index_t s = g / h;
    attn[((s * t + i) * h + hh) * dh + d] = oh[e];
  }
}
}  // namespace armt_cuda

// Buffers for chunks of up to `chunk` sequences of T rows.
template <class T>
struct segment_attention_workspace {
  index_t chunk = 0, t = 0;
  tensor<T, cuda> qh, kh, vt, oh, probs;
  tensor<float, cuda> scores;
  segment_attention_workspace() = default;
  segment_attention_workspace(const model_config& c, index_t t_, index_t sequences,
                              std::size_t scores_bytes = std::size_t(4) << 30)
      : t(t_) {
    const index_t per_seq = index_t(c.num_heads) * t * t * index_t(sizeof(float));
    chunk = std::max<index_t>(1, std::min<index_t>(sequences, index_t(scores_bytes) / per_seq));
    const index_t g = chunk * c.num_heads;
    qh = tensor<T, cuda>({g, t, c.head_dim}), kh = tensor<T, cuda>({g, t, c.head_dim});
    vt = tensor<T, cuda>({g, c.head_dim, t}), oh = tensor<T, cuda>({g, t, c.head_dim});
    probs = tensor<T, cuda>({g, t, t});
    scores = tensor<float, cuda>({g, t, t});
  }
};

// attn (seqs, T, H, Dh) contiguous = causal attention of the q, k, v parts of qkv (seqs * T,
// width) (q at column 0, k at H * Dh, v at (H + Hkv) * Dh).
template <class T>
void segment_attention(const context<cuda>& ctx, const model_config& c, T* attn, const T* qkv,
                       index_t width, index_t seqs, segment_attention_workspace<T>& ws) {
  using namespace armt_cuda;
  using C = cuda_t<T>;
  const index_t t = ws.t, h = c.num_heads, dh = c.head_dim;
  const float scale = 1.0f / std::sqrt(float(dh));
  for (index_t s0 = 0; s0 < seqs; s0 += ws.chunk) {
    const index_t cs = std::min(ws.chunk, seqs - s0), g = cs * h;
    const T* chunk_qkv = qkv + s0 * t * width;
    launch(ctx, "armt pack heads", pack_heads_kernel<C>, dim3(blocks_for(g * t * dh, 256, 8192)),
           dim3(256), 0, dev(ws.qh.data()), dev(ws.kh.data()), dev(ws.vt.data()), dev(chunk_qkv),
           width, t, int(h), int(c.num_kv_heads), int(dh), g * t * dh);
    pinned_batched_matmul<T, float>(ctx, ws.scores.data(), t, t * t, ws.qh.data(), dh, t * dh,
                                    ws.kh.data(), dh, t * dh, nullptr, 0, int(g), t, dh, t);
    launch(ctx, "armt causal softmax", causal_softmax_kernel<C>, dim3(unsigned(g * t)), dim3(256),
           0, dev(ws.probs.data()), static_cast<const float*>(ws.scores.data()), t, scale);
    pinned_batched_matmul<T>(ctx, ws.oh.data(), dh, t * dh, ws.probs.data(), t, t * t,
                             ws.vt.data(), t, dh * t, nullptr, 0, int(g), t, t, dh);
    launch(ctx, "armt unpack heads", unpack_heads_kernel<C>, dim3(blocks_for(g * t * dh, 256, 8192)),
           dim3(256), 0, dev(attn + s0 * t * h * dh), static_cast<const C*>(dev(ws.oh.data())), t,
           int(h), int(dh), g * t * dh);
  }
}

}  // namespace crossbatch
