// Decode attention with the new token's RoPE and KV write in the same kernel: for one query a
// sequence (T = 1), rope_write_kv + attention as one launch. One block per (b, q head) rotates the
// new q and k (rounded to T as rope_write_kv rounds them), the first q head of each KV group
// writes k and v into the cache slot, then the block attends over slots [0, slot] with the new
// slot's k and v from shared memory: cpk = D / vec threads share a key (one 16-byte chunk each),
// the 256 / cpk key groups each run an online softmax over J keys a tile in registers, and merge
// through shared memory. Before its grid-dependency wait the block reads only what earlier steps
// wrote (the first tile of cached keys and values, the positions, the rotation angles, the first
// tile's mask), so under programmatic dependent launch those loads overlap the qkv projection.
// It has no split along the keys: rope_attention() takes it up to one_kernel_max_len cache slots
// (1024 by default) and composes rope_write_kv + attention beyond, for T > 1 and for shapes it
// does not fit (the decode step of generate/cuda/fused_decode.cuh and decoder_model's blocks).
#pragma once

#include <cmath>
#include <cstdint>

#include "crossbatch/attention/cuda/attention.cuh"
#include "crossbatch/attention/cuda/decode_tiled.cuh"

namespace crossbatch {
namespace cuda_detail {

struct rope_attention_args {
  const void* qkv;  // (B, width): H q heads, Hkv k heads, Hkv v heads of D
  index_t width;
  const std::int32_t* positions;  // (B)
  const float* inv_freq;          // (D / 2), null without rope
  void* kc;                       // cache layer (B, Hkv, S, D), strides cb, ch, cs
  void* vc;
  index_t cb, ch, cs;
  void* out;  // (B, H, D) contiguous
  int h, hkv, d, start;
  const int* shift;
  float scale;
};

constexpr int rope_attention_threads = 256, rope_attention_keys = 8;

// One block per (b, q head): rope on the new q and k (as rope_write_kv), the first q head of each
// KV group writes k and v into the cache slot, then attention over slots [0, slot] (as
// attention_decode_kernel). cpk = D / vec threads share a key (one 16-byte chunk each); the
// 256 / cpk key groups each run an online softmax over keys g, g + groups, ... (J keys a tile in
// registers), then the groups are merged through shared memory. The new slot's k and v come from
// shared memory. Before the grid-dependency wait, the block reads only what was written before
// the step's qkv GEMV (its predecessor): the first tile of cached keys and values (earlier steps),
// the positions and the mask (the rotation angles and the first tile's visibility).
template <class T, class M>
__global__ void __launch_bounds__(rope_attention_threads)
    rope_attention_kernel(rope_attention_args a, M mask) {
  constexpr int vec = 16 / sizeof(T), J = rope_attention_keys, threads = rope_attention_threads;
  __shared__ float qs[256];
  __shared__ __align__(16) T knew[256];
  __shared__ __align__(16) T vnew[256];
  __shared__ float gm[threads], gl[threads];
  __shared__ float red[threads * vec];  // (groups, D)
  const int row = blockIdx.x, hi = row % a.h, b = row / a.h, per_kv = a.h / a.hkv,
            kvh = hi / per_kv;
  const int d = a.d, cpk = d / vec, groups = threads / cpk, tile = groups * J;
  const int g = threadIdx.x / cpk, sub = threadIdx.x % cpk;
  const int slot = a.start + (a.shift ? *a.shift : 0);  // the new token's slot; keys [0, slot]
  T* kb = static_cast<T*>(a.kc) + b * a.cb + kvh * a.ch;
  T* vb = static_cast<T*>(a.vc) + b * a.cb + kvh * a.ch;
  uint4 kr[J], vr[J];
  auto fetch = [&](int base) {
#pragma unroll
    for (int j = 0; j < J; ++j) {
      const int k = base + g + groups * j;
      const bool ok = k < slot;
      kr[j] =
          ok ? __ldcg(reinterpret_cast<const uint4*>(kb + k * a.cs) + sub) : make_uint4(0, 0, 0, 0);
      vr[j] =
          ok ? __ldcg(reinterpret_cast<const uint4*>(vb + k * a.cs) + sub) : make_uint4(0, 0, 0, 0);
    }
  };
  fetch(0);
  // Also written before the step, not by the qkv GEMV just before: the rotation angle of this
  // thread's pair (half_d <= 128 threads) and the first tile's mask.
  const int half_d = d / 2, kv_len = slot + 1;
  float sin_a = 0.0f, cos_a = 1.0f;
  if (a.inv_freq && threadIdx.x < half_d)
    sincosf(float(a.positions[b]) * a.inv_freq[threadIdx.x], &sin_a, &cos_a);
  unsigned allowed0 = 0;  // bit j: key g + groups * j of the first tile is visible
#pragma unroll
  for (int j = 0; j < J; ++j) {
    const int k = g + groups * j;
    if (k < kv_len && mask.allowed(b, slot, k)) allowed0 |= 1u << j;
  }
  grid_dependency();
  const T* src = static_cast<const T*>(a.qkv) + b * a.width;
  if (threadIdx.x < half_d) {
    const int i = threadIdx.x;
    float q0 = to_f(src[hi * d + i]), q1 = to_f(src[hi * d + i + half_d]);
    float k0 = to_f(src[(a.h + kvh) * d + i]), k1 = to_f(src[(a.h + kvh) * d + i + half_d]);
    if (a.inv_freq) {
      const float rq0 = q0 * cos_a - q1 * sin_a, rq1 = q1 * cos_a + q0 * sin_a;
      const float rk0 = k0 * cos_a - k1 * sin_a, rk1 = k1 * cos_a + k0 * sin_a;
      q0 = round_to<T>(rq0);
      q1 = round_to<T>(rq1);
      k0 = round_to<T>(rk0);
      k1 = round_to<T>(rk1);
    }
    qs[i] = q0 * a.scale;
    qs[i + half_d] = q1 * a.scale;
    knew[i] = from_f<T>(k0);
    knew[i + half_d] = from_f<T>(k1);
  }
  for (int i = threadIdx.x; i < d; i += threads) vnew[i] = src[(a.h + a.hkv + kvh) * d + i];
  __syncthreads();
  if (hi % per_kv == 0)
    for (int i = threadIdx.x; i < d; i += threads) {
      kb[index_t(slot) * a.cs + i] = knew[i];
      vb[index_t(slot) * a.cs + i] = vnew[i];
    }
  float qf[vec];
#pragma unroll
  for (int e = 0; e < vec; ++e) qf[e] = qs[sub * vec + e];
  const uint4 kn = reinterpret_cast<const uint4*>(knew)[sub],
              vn = reinterpret_cast<const uint4*>(vnew)[sub];
  float m = -INFINITY, l = 0.0f, acc[vec];
#pragma unroll
  for (int e = 0; e < vec; ++e) acc[e] = 0.0f;
  for (int base = 0; base < kv_len; base += tile) {
    if (base > 0) fetch(base);
    // The tile's scores first (independent), then one rescale of the running sums.
    float sj[J];
#pragma unroll
    for (int j = 0; j < J; ++j) {
      const int k = base + g + groups * j;
      float kf[vec];
      chunk_to_float<T>(k == slot ? kn : kr[j], kf);
      float dot = 0.0f;
#pragma unroll
      for (int e = 0; e < vec; ++e) dot += qf[e] * kf[e];
      for (int o = 1; o < cpk; o <<= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
      const bool visible =
          base == 0 ? (allowed0 >> j) & 1u : k < kv_len && mask.allowed(b, slot, k);
      sj[j] = visible ? dot : -INFINITY;
    }
    float mt = m;
#pragma unroll
    for (int j = 0; j < J; ++j) mt = fmaxf(mt, sj[j]);
    if (mt != -INFINITY) {
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
        chunk_to_float<T>(base + g + groups * j == slot ? vn : vr[j], vf);
#pragma unroll
        for (int e = 0; e < vec; ++e) acc[e] += p * vf[e];
      }
    }
  }
  // Key groups -> block: each group's sum and accumulator rescaled to the block maximum.
  if (sub == 0) gm[g] = m;
  __syncthreads();
  float mb = -INFINITY;
  for (int i = 0; i < groups; ++i) mb = fmaxf(mb, gm[i]);
  const float sc = m == -INFINITY ? 0.0f : expf(m - mb);
  if (sub == 0) gl[g] = l * sc;
#pragma unroll
  for (int e = 0; e < vec; ++e) red[g * d + sub * vec + e] = acc[e] * sc;
  __syncthreads();
  T* out = static_cast<T*>(a.out) + (index_t(b) * a.h + hi) * d;
  for (int j = threadIdx.x; j < d; j += threads) {
    float lb = 0.0f, s = 0.0f;
    for (int i = 0; i < groups; ++i) {
      lb += gl[i];
      s += red[i * d + j];
    }
    out[j] = from_f<T>(lb > 0.0f ? s / lb : 0.0f);
  }
}

}  // namespace cuda_detail

constexpr int rope_attention_max_len = 1024;

// out (B, 1, H, D) contiguous = attention of the rotated q over the cache after the new token's k
// and v are written at slot start (+ *ctx.slot_shift): rope_write_kv + attention in one kernel
// when T = 1, the cache holds at most one_kernel_max_len slots and the shape fits (head size a
// multiple of the 16-byte vector, at most 256, 16-byte aligned cache rows); otherwise the two ops.
// q's part of qkv is rotated in place only on the two-op path (the one kernel keeps q to itself).
template <class T, mask_policy M>
void rope_attention(const context<cuda>& ctx, tensor_view<T, cuda> out, tensor_view<T, cuda> qkv,
                    index_t t, int h, int hkv, tensor_view<const std::int32_t, cuda> positions,
                    tensor_view<const float, cuda> inv_freq, tensor_view<T, cuda> kcache,
                    tensor_view<T, cuda> vcache, int start, const M& mask, float scale,
                    int one_kernel_max_len = rope_attention_max_len) {
  using namespace cuda_detail;
  using C = cuda_t<T>;
  constexpr int vec = 16 / sizeof(T);
  const index_t n = qkv.rank() == 2 ? qkv.shape[0] : 0,
                d = kcache.rank() == 4 ? kcache.shape[3] : 0;
  const int cpk = int(d) / vec;
  const bool one_kernel =
      t == 1 && n > 0 && int(kcache.shape[2]) <= one_kernel_max_len && d % vec == 0 && d <= 256 &&
      cpk >= 1 && cpk <= 32 && (cpk & (cpk - 1)) == 0 && h % hkv == 0 && out.contiguous() &&
      out.size() == n * h * d && kcache.shape[0] == n && kcache.shape[1] == hkv &&
      kcache.strides == vcache.strides && kcache.shape == vcache.shape && kcache.strides[3] == 1 &&
      kcache.strides[2] % vec == 0 && kcache.strides[1] % vec == 0 &&
      kcache.strides[0] % vec == 0 && pointer_alignment(kcache.data) >= 16 &&
      pointer_alignment(vcache.data) >= 16 && (qkv.shape[1] <= 1 || qkv.strides[1] == 1) &&
      qkv.shape[1] >= (h + 2 * hkv) * d &&
      (!inv_freq.data || (inv_freq.size() == d / 2 && positions.size() == n)) &&
      start + 1 <= kcache.shape[2];
  if (!one_kernel) {
    rope_write_kv(ctx, qkv, t, h, hkv, positions, inv_freq, kcache, vcache, start);
    const index_t width = n <= 1 ? qkv.shape[1] : qkv.strides[0], b = t > 0 ? n / t : 0;
    const tensor_view<const T, cuda> q(qkv.data, {b, t, h, d}, {t * width, width, d, 1});
    attention(ctx, out, q, tensor_view<const T, cuda>(kcache), tensor_view<const T, cuda>(vcache),
              mask, attention_shape{start, int(start + t), scale});
    return;
  }
  rope_attention_args ra{};
  ra.qkv = qkv.data;
  ra.width = n <= 1 ? qkv.shape[1] : qkv.strides[0];
  ra.positions = positions.data;
  ra.inv_freq = inv_freq.data;
  ra.kc = kcache.data;
  ra.vc = vcache.data;
  ra.cb = kcache.strides[0];
  ra.ch = kcache.strides[1];
  ra.cs = kcache.strides[2];
  ra.out = out.data;
  ra.h = h;
  ra.hkv = hkv;
  ra.d = int(d);
  ra.start = start;
  ra.shift = ctx.slot_shift;
  ra.scale = scale;
  launch(ctx, "rope + attention (decode)", rope_attention_kernel<C, M>, dim3(unsigned(n * h)),
         dim3(rope_attention_threads), 0, ra, mask);
}

}  // namespace crossbatch
