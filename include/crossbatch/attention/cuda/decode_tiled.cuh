// Decode attention (Tq <= 4 query rows a sequence) for head sizes of exactly 64 or 128 with 16-byte
// aligned K/V rows: the fast form of attention_decode_kernel, same grid, same partials, same
// semantics. Each key is shared by cpk = D / vec threads that own one 16-byte chunk of it; the
// block's 128 / cpk key groups each walk keys g, g + groups, ... in tiles of J keys whose K and V
// chunks are all loaded before any arithmetic (one memory latency a tile instead of one a key).
// A tile's scores come first (a dot product over the chunk, reduced across the key's threads by
// shuffles), then one online-softmax rescale per tile; at the end the groups merge through shared
// memory. Mask tiles as the other kernels: an empty tile is never loaded, a full one skips
// allowed(). With bf16 and D 64 a tile is 128 keys, so a 256-slot cache takes two latencies (the
// lane-per-key kernel chained one per key a lane: ~20 us at batch 64 against ~4).
#pragma once

#include <cmath>

#include "crossbatch/attention/cuda/geometry.cuh"
#include "crossbatch/attention/mask.hpp"
#include "crossbatch/ops/cuda/common.cuh"

namespace crossbatch::cuda_detail {

constexpr int decode_tiled_threads = 128, decode_tiled_keys = 8;

template <class T>
__device__ __forceinline__ void chunk_to_float(const uint4& v, float* f) {
  const T* e = reinterpret_cast<const T*>(&v);
#pragma unroll
  for (int i = 0; i < int(16 / sizeof(T)); ++i) f[i] = to_f(e[i]);
}

// Grid (rows = B * Tq * H, splits); split s covers keys [s * chunk, min(kv_len, (s + 1) * chunk)).
// One split: out row = softmax-weighted values. Several: partial[(row * splits + s) * (D + 2)] =
// (block max, sum of exps at that max, D unnormalised sums), merged by attention_combine_kernel.
template <class T, class M, int D>
__global__ void __launch_bounds__(decode_tiled_threads)
    attention_decode_tiled_kernel(T* out, float* partial, const T* q, const T* keys,
                                  const T* values, M mask, attn_geometry g, const int* shift,
                                  int chunk) {
  grid_dependency();
  constexpr int vec = 16 / sizeof(T), cpk = D / vec, threads = decode_tiled_threads;
  constexpr int groups = threads / cpk, J = decode_tiled_keys, span = groups * J;
  static_assert(cpk <= 32 && (cpk & (cpk - 1)) == 0 && groups >= 1, "a key's threads share a warp");
  __shared__ float gm[groups], gl[groups];
  __shared__ float red[groups][D];
  const int row = blockIdx.x, split = blockIdx.y, splits = gridDim.y;
  const int hi = row % g.h, t = (row / g.h) % g.tq, b = row / (g.h * g.tq);
  const int kvh = hi / (g.h / g.hkv);
  const int grp = threadIdx.x / cpk, sub = threadIdx.x % cpk;
  const int qslot = shifted(g.q_start, shift) + t, kv_len = shifted(g.kv_len, shift);
  const int s0 = split * chunk, s1 = min(kv_len, s0 + chunk);
  const T* kbase = keys + b * g.kb + kvh * g.kh;
  const T* vbase = values + b * g.vb + kvh * g.vh;
  float qf[vec];
  {
    const T* qr = q + b * g.qb + t * g.qt + hi * g.qh + sub * vec;
#pragma unroll
    for (int e = 0; e < vec; ++e) qf[e] = to_f(qr[e]) * g.scale;
  }
  float m = -INFINITY, l = 0.0f, acc[vec];
#pragma unroll
  for (int e = 0; e < vec; ++e) acc[e] = 0.0f;
  for (int base = s0; base < s1; base += span) {
    const tile kind = mask.tile_kind(b, qslot, qslot + 1, base, min(s1, base + span));
    if (kind == tile::empty) continue;  // the same for every thread of the block
    uint4 kr[J], vr[J];
#pragma unroll
    for (int j = 0; j < J; ++j) {
      const int k = base + grp + groups * j;
      const bool ok = k < s1;
      kr[j] = ok ? __ldcg(reinterpret_cast<const uint4*>(kbase + k * g.ks) + sub)
                 : make_uint4(0, 0, 0, 0);
      vr[j] = ok ? __ldcg(reinterpret_cast<const uint4*>(vbase + k * g.vs) + sub)
                 : make_uint4(0, 0, 0, 0);
    }
    float sj[J];
#pragma unroll
    for (int j = 0; j < J; ++j) {
      const int k = base + grp + groups * j;
      float kf[vec];
      chunk_to_float<T>(kr[j], kf);
      float dot = 0.0f;
#pragma unroll
      for (int e = 0; e < vec; ++e) dot += qf[e] * kf[e];
#pragma unroll
      for (int o = 1; o < cpk; o <<= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
      const bool visible = k < s1 && (kind == tile::full || mask.allowed(b, qslot, k));
      sj[j] = visible ? dot : -INFINITY;
    }
    float mt = m;
#pragma unroll
    for (int j = 0; j < J; ++j) mt = fmaxf(mt, sj[j]);
    if (mt == -INFINITY) continue;  // nothing visible to this key group in the tile
    const float corr = expf(m - mt);
    l *= corr;
#pragma unroll
    for (int e = 0; e < vec; ++e) acc[e] *= corr;
    m = mt;
#pragma unroll
    for (int j = 0; j < J; ++j) {
      const float p = expf(sj[j] - m);
      l += p;
      float vf[vec];
      chunk_to_float<T>(vr[j], vf);
#pragma unroll
      for (int e = 0; e < vec; ++e) acc[e] += p * vf[e];
    }
  }
  // Key groups -> block: each group's sum and accumulator rescaled to the block maximum.
  if (sub == 0) gm[grp] = m;
  __syncthreads();
  float mb = -INFINITY;
#pragma unroll
  for (int i = 0; i < groups; ++i) mb = fmaxf(mb, gm[i]);
  const float sc = m == -INFINITY ? 0.0f : expf(m - mb);
  if (sub == 0) gl[grp] = l * sc;
#pragma unroll
  for (int e = 0; e < vec; ++e) red[grp][sub * vec + e] = acc[e] * sc;
  __syncthreads();
  for (int j = threadIdx.x; j < D; j += threads) {
    float lb = 0.0f, a = 0.0f;
#pragma unroll
    for (int i = 0; i < groups; ++i) {
      lb += gl[i];
      a += red[i][j];
    }
    if (splits == 1) {
      out[b * g.ob + t * g.ot + hi * g.oh + j] = from_f<T>(lb > 0.0f ? a / lb : 0.0f);
    } else {
      float* p = partial + (index_t(row) * splits + split) * (D + 2);
      p[2 + j] = a;
      if (j == 0) {
        p[0] = mb;
        p[1] = lb;
      }
    }
  }
}

}  // namespace crossbatch::cuda_detail
