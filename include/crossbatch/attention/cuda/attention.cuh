// Attention on the GPU over a KV cache laid out (B, Hkv, S, D), under any mask policy evaluated in
// device code. Four kernels, one semantics (the CPU attention's):
//  - prefill on tensor cores (attention/cuda/prefill_tc.cuh): 16-bit elements, D 64 or 128;
//  - prefill on CUDA cores (every other case): tiles of 64 queries x 32 keys, online softmax in
//    float, 4 threads per query; a key tile whose mask tile_kind() is empty for the block's queries
//    is skipped before it is loaded, a full tile skips the per-element mask test. When the head
//    size is the kernel's DMAX and the rows are 16-byte aligned, a tile's keys and values arrive
//    as 16-byte loads all in flight and the next non-empty tile's loads are issued before the
//    current tile's arithmetic.
//  - decode (Tq <= 4): one query row per block, split along the KV length when the rows alone do
//    not fill the GPU; each lane owns keys, 16-byte K/V loads, grouped-query heads read their
//    shared KV head; partial (max, sum, acc) per split merged by a second kernel.
//  - probs: a simple row-at-a-time kernel, used only when the caller asks for the probabilities.
// Under graph replay (context<cuda>::slot_shift set) q_start and kv_len are shifted by the device
// int, and grids are sized for the cache capacity instead of kv_len.
#pragma once

#include <algorithm>
#include <cmath>

#include "crossbatch/attention/attention.hpp"  // attention_shape, the CPU reference
#include "crossbatch/attention/cuda/geometry.cuh"
#include "crossbatch/attention/cuda/prefill_tc.cuh"
#include "crossbatch/attention/mask.hpp"
#include "crossbatch/ops/cuda/common.cuh"

namespace crossbatch {
namespace cuda_detail {

template <class T>
__global__ void write_kv_kernel(T* cache, index_t cb, index_t ch, index_t cs, const T* fresh,
                                index_t fb, index_t ft, index_t fh, int t, int h, int d, int start,
                                const int* shift, index_t total) {
  grid_dependency();
  const int s0 = shifted(start, shift);
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < total;
       i += index_t(gridDim.x) * blockDim.x) {
    const int j = int(i % d);
    index_t r = i / d;
    const int k = int(r % h);
    r /= h;
    const int tt = int(r % t);
    const index_t b = r / t;
    cache[b * cb + k * ch + (s0 + tt) * cs + j] = fresh[b * fb + tt * ft + k * fh + j];
  }
}

// Rows r = b * t + tt (row stride width) of a fused projection, H q heads then Hkv k heads then
// Hkv v heads of d: q and k rotated by positions[r] (when inv_freq is given) and rounded to T, q in
// place; k and v written to cache slot start + *shift + tt of sequence b.
template <class T>
__global__ void rope_write_kv_kernel(T* qkv, index_t width, int t, const std::int32_t* positions,
                                     const float* inv_freq, T* kc, T* vc, index_t cb, index_t ch,
                                     index_t cs, int h, int hkv, int d, int start, const int* shift,
                                     index_t rows) {
  grid_dependency();
  const int half_d = d / 2, heads = h + 2 * hkv;
  const int s0 = shifted(start, shift);
  const index_t total = rows * heads * half_d;
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < total;
       i += index_t(gridDim.x) * blockDim.x) {
    const int k = int(i % half_d);
    const int hh = int((i / half_d) % heads);
    const index_t r = i / (index_t(half_d) * heads);
    T* v = qkv + r * width + index_t(hh) * d;
    float a0 = to_f(v[k]), a1 = to_f(v[k + half_d]);
    if (hh < h + hkv && inv_freq) {
      float sn, cs_;
      sincosf(float(positions[r]) * inv_freq[k], &sn, &cs_);
      const float r0 = a0 * cs_ - a1 * sn, r1 = a1 * cs_ + a0 * sn;
      a0 = round_to<T>(r0);
      a1 = round_to<T>(r1);
    }
    if (hh < h) {
      if (inv_freq) {
        v[k] = from_f<T>(a0);
        v[k + half_d] = from_f<T>(a1);
      }
    } else {
      const bool is_k = hh < h + hkv;
      const index_t b = r / t, slot = s0 + r % t;
      T* dst = (is_k ? kc : vc) + b * cb + (is_k ? hh - h : hh - h - hkv) * ch + slot * cs;
      dst[k] = from_f<T>(a0);
      dst[k + half_d] = from_f<T>(a1);
    }
  }
}

constexpr int prefill_bq = 64, prefill_bk = 32;

template <class T, class M, int DMAX>
__global__ void __launch_bounds__(256)
    attention_prefill_kernel(T* out, const T* q, const T* keys, const T* values, M mask,
                             attn_geometry g, const int* shift, bool vec_kv) {
  grid_dependency();
  constexpr int per = DMAX / 4;
  __shared__ float ks[prefill_bk][DMAX];
  __shared__ float vs[prefill_bk][DMAX];
  const int b = blockIdx.z, hi = blockIdx.y, qt = blockIdx.x;
  const int kvh = hi / (g.h / g.hkv);
  const int sub = threadIdx.x & 3, qi = qt * prefill_bq + (threadIdx.x >> 2);
  const bool qvalid = qi < g.tq;
  const int q_start = shifted(g.q_start, shift), kv_len = shifted(g.kv_len, shift);
  const int qslot = q_start + qi;
  const int qa = q_start + qt * prefill_bq, qb = q_start + min(g.tq, (qt + 1) * prefill_bq);

  float qv[per], acc[per];
#pragma unroll
  for (int i = 0; i < per; ++i) {
    const int j = sub + 4 * i;
    qv[i] = (qvalid && j < g.d) ? to_f(q[b * g.qb + qi * g.qt + hi * g.qh + j]) * g.scale : 0.0f;
    acc[i] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  const T* kbase = keys + b * g.kb + kvh * g.kh;
  const T* vbase = values + b * g.vb + kvh * g.vh;

  // One key tile [k0, k1) (in ks / vs) into the running softmax of this thread's query.
  auto process = [&](int k0, int k1, tile kind) {
    float s[prefill_bk];
    float mt = -INFINITY;
#pragma unroll
    for (int kk = 0; kk < prefill_bk; ++kk) {
      float dot = 0.0f;
#pragma unroll
      for (int i = 0; i < per; ++i) dot += qv[i] * ks[kk][sub + 4 * i];
      dot += __shfl_xor_sync(0xffffffffu, dot, 1);
      dot += __shfl_xor_sync(0xffffffffu, dot, 2);
      const int k = k0 + kk;
      const bool ok = qvalid && k < k1 && (kind == tile::full || mask.allowed(b, qslot, k));
      s[kk] = ok ? dot : -INFINITY;
      mt = fmaxf(mt, s[kk]);
    }
    const float mn = fmaxf(m, mt);
    if (mn == -INFINITY) return;
    const float corr = expf(m - mn);
    l *= corr;
#pragma unroll
    for (int i = 0; i < per; ++i) acc[i] *= corr;
#pragma unroll
    for (int kk = 0; kk < prefill_bk; ++kk) {
      const float p = expf(s[kk] - mn);
      l += p;
#pragma unroll
      for (int i = 0; i < per; ++i) acc[i] += p * vs[kk][sub + 4 * i];
    }
    m = mn;
  };

  if (vec_kv) {
    // d == DMAX, 16-byte aligned rows: each thread loads `chunks` 16-byte pieces of the tile's
    // keys and values, all in flight at once, and the next non-empty tile's loads are issued
    // before this tile's scores (one memory latency a tile, hidden behind the arithmetic).
    constexpr int vec = 16 / sizeof(T), cpr = DMAX / vec;
    constexpr int chunks = (prefill_bk * cpr + 255) / 256;
    uint4 kr[chunks], vr[chunks];
    auto next_tile = [&](int k0) {  // the first tile at or after k0 that the mask does not empty
      while (k0 < kv_len &&
             mask.tile_kind(b, qa, qb, k0, min(kv_len, k0 + prefill_bk)) == tile::empty)
        k0 += prefill_bk;
      return k0;
    };
    auto fetch = [&](int k0) {
      const int k1 = min(kv_len, k0 + prefill_bk);
#pragma unroll
      for (int p = 0; p < chunks; ++p) {
        const int e = threadIdx.x + 256 * p, kk = e / cpr, c = e % cpr;
        const bool ok = e < prefill_bk * cpr && k0 + kk < k1;
        kr[p] = ok ? __ldg(reinterpret_cast<const uint4*>(kbase + (k0 + kk) * g.ks) + c)
                   : make_uint4(0, 0, 0, 0);
        vr[p] = ok ? __ldg(reinterpret_cast<const uint4*>(vbase + (k0 + kk) * g.vs) + c)
                   : make_uint4(0, 0, 0, 0);
      }
    };
    int k0 = next_tile(0);
    if (k0 < kv_len) fetch(k0);
    while (k0 < kv_len) {
      const int k1 = min(kv_len, k0 + prefill_bk);
      const tile kind = mask.tile_kind(b, qa, qb, k0, k1);
      __syncthreads();  // the previous tile's readers are done
#pragma unroll
      for (int p = 0; p < chunks; ++p) {
        const int e = threadIdx.x + 256 * p, kk = e / cpr, c = e % cpr;
        if (e < prefill_bk * cpr) {
          const T* kt = reinterpret_cast<const T*>(&kr[p]);
          const T* vt = reinterpret_cast<const T*>(&vr[p]);
#pragma unroll
          for (int i = 0; i < vec; ++i) {
            ks[kk][c * vec + i] = to_f(kt[i]);
            vs[kk][c * vec + i] = to_f(vt[i]);
          }
        }
      }
      __syncthreads();
      const int next = next_tile(k0 + prefill_bk);
      if (next < kv_len) fetch(next);
      process(k0, k1, kind);
      k0 = next;
    }
  } else {
    for (int k0 = 0; k0 < kv_len; k0 += prefill_bk) {
      const int k1 = min(kv_len, k0 + prefill_bk);
      const tile kind = mask.tile_kind(b, qa, qb, k0, k1);
      if (kind == tile::empty) continue;
      __syncthreads();
      for (int e = threadIdx.x; e < prefill_bk * DMAX; e += blockDim.x) {
        const int kk = e / DMAX, j = e % DMAX;
        const bool in = k0 + kk < k1 && j < g.d;
        ks[kk][j] = in ? to_f(kbase[(k0 + kk) * g.ks + j]) : 0.0f;
        vs[kk][j] = in ? to_f(vbase[(k0 + kk) * g.vs + j]) : 0.0f;
      }
      __syncthreads();
      process(k0, k1, kind);
    }
  }
  if (!qvalid) return;
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  T* o = out + b * g.ob + qi * g.ot + hi * g.oh;
#pragma unroll
  for (int i = 0; i < per; ++i) {
    const int j = sub + 4 * i;
    if (j < g.d) o[j] = from_f<T>(acc[i] * inv);
  }
}

constexpr int decode_warps = 4;

// One query row (b, t, h) and one split of the keys per block; lanes own keys.
template <class T, class M, int DMAX>
__global__ void __launch_bounds__(128)
    attention_decode_kernel(T* out, float* partial, const T* q, const T* keys, const T* values,
                            M mask, attn_geometry g, const int* shift, int chunk) {
  grid_dependency();
  constexpr int vec = 16 / sizeof(T), nvec = DMAX / vec;
  __shared__ float qs[DMAX];
  __shared__ float wm[decode_warps], wl[decode_warps];
  __shared__ float wacc[decode_warps][DMAX];
  __shared__ float tr[decode_warps][32][33];  // lane x column transpose for the warp reduction
  const int row = blockIdx.x, split = blockIdx.y, splits = gridDim.y;
  const int hi = row % g.h, t = (row / g.h) % g.tq, b = row / (g.h * g.tq);
  const int kvh = hi / (g.h / g.hkv);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int q_start = shifted(g.q_start, shift), kv_len = shifted(g.kv_len, shift);
  const int qslot = q_start + t;
  for (int j = threadIdx.x; j < DMAX; j += blockDim.x)
    qs[j] = j < g.d ? to_f(q[b * g.qb + t * g.qt + hi * g.qh + j]) * g.scale : 0.0f;
  __syncthreads();

  const int s0 = split * chunk, s1 = min(kv_len, s0 + chunk);
  const T* kbase = keys + b * g.kb + kvh * g.kh;
  const T* vbase = values + b * g.vb + kvh * g.vh;
  float m = -INFINITY, l = 0.0f, acc[DMAX];
#pragma unroll
  for (int j = 0; j < DMAX; ++j) acc[j] = 0.0f;
  for (int base = s0 + warp * 32; base < s1; base += 32 * decode_warps) {
    const tile kind = mask.tile_kind(b, qslot, qslot + 1, base, min(s1, base + 32));
    if (kind == tile::empty) continue;
    const int k = base + lane;
    if (k >= s1 || (kind == tile::partial && !mask.allowed(b, qslot, k))) continue;
    const uint4* kr = reinterpret_cast<const uint4*>(kbase + k * g.ks);
    float dot = 0.0f;
#pragma unroll
    for (int c = 0; c < nvec; ++c) {
      if (c * vec < g.d) {
        const uint4 kv4 = kr[c];
        const T* e = reinterpret_cast<const T*>(&kv4);
#pragma unroll
        for (int i = 0; i < vec; ++i) dot += qs[c * vec + i] * to_f(e[i]);
      }
    }
    if (dot > m) {
      const float corr = expf(m - dot);
      l *= corr;
#pragma unroll
      for (int j = 0; j < DMAX; ++j) acc[j] *= corr;
      m = dot;
    }
    const float p = expf(dot - m);
    l += p;
    const uint4* vr = reinterpret_cast<const uint4*>(vbase + k * g.vs);
#pragma unroll
    for (int c = 0; c < nvec; ++c) {
      if (c * vec < g.d) {
        const uint4 vv4 = vr[c];
        const T* e = reinterpret_cast<const T*>(&vv4);
#pragma unroll
        for (int i = 0; i < vec; ++i) acc[c * vec + i] += p * to_f(e[i]);
      }
    }
  }
  // Lanes -> warp.
  const float mw = warp_max(m);
  const float sc = m == -INFINITY ? 0.0f : expf(m - mw);
  const float lw = warp_sum(l * sc);
  // acc over the lanes, 32 columns at a time through shared memory (cheaper than DMAX shuffles).
#pragma unroll
  for (int c0 = 0; c0 < DMAX; c0 += 32) {
#pragma unroll
    for (int j = 0; j < 32; ++j) tr[warp][lane][j] = acc[c0 + j] * sc;
    __syncwarp();
    float a = 0.0f;
#pragma unroll 8
    for (int i = 0; i < 32; ++i) a += tr[warp][i][lane];
    wacc[warp][c0 + lane] = a;
    __syncwarp();
  }
  if (lane == 0) {
    wm[warp] = mw;
    wl[warp] = lw;
  }
  __syncthreads();
  // Warps -> block.
  float mb = -INFINITY;
#pragma unroll
  for (int w = 0; w < decode_warps; ++w) mb = fmaxf(mb, wm[w]);
  float lb = 0.0f;
#pragma unroll
  for (int w = 0; w < decode_warps; ++w) lb += wm[w] == -INFINITY ? 0.0f : wl[w] * expf(wm[w] - mb);
  for (int j = threadIdx.x; j < g.d; j += blockDim.x) {
    float a = 0.0f;
#pragma unroll
    for (int w = 0; w < decode_warps; ++w)
      a += wm[w] == -INFINITY ? 0.0f : wacc[w][j] * expf(wm[w] - mb);
    if (splits == 1) {
      out[b * g.ob + t * g.ot + hi * g.oh + j] = from_f<T>(lb > 0.0f ? a / lb : 0.0f);
    } else {
      float* p = partial + (index_t(row) * splits + split) * (DMAX + 2);
      p[2 + j] = a;
      if (j == 0) {
        p[0] = mb;
        p[1] = lb;
      }
    }
  }
}

template <class T, int DMAX>
__global__ void attention_combine_kernel(T* out, const float* partial, attn_geometry g,
                                         int splits) {
  grid_dependency();
  const int row = blockIdx.x;
  const int hi = row % g.h, t = (row / g.h) % g.tq, b = row / (g.h * g.tq);
  const float* p = partial + index_t(row) * splits * (DMAX + 2);
  float mb = -INFINITY;
  for (int s = 0; s < splits; ++s) mb = fmaxf(mb, p[s * (DMAX + 2)]);
  float lb = 0.0f;
  for (int s = 0; s < splits; ++s) {
    const float ms = p[s * (DMAX + 2)];
    if (ms != -INFINITY) lb += p[s * (DMAX + 2) + 1] * expf(ms - mb);
  }
  for (int j = threadIdx.x; j < g.d; j += blockDim.x) {
    float a = 0.0f;
    for (int s = 0; s < splits; ++s) {
      const float ms = p[s * (DMAX + 2)];
      if (ms != -INFINITY) a += p[s * (DMAX + 2) + 2 + j] * expf(ms - mb);
    }
    out[b * g.ob + t * g.ot + hi * g.oh + j] = from_f<T>(lb > 0.0f ? a / lb : 0.0f);
  }
}

// The simple path: one block per query row; probs (B, H, Tq, kv_len) receives the probabilities.
template <class T, class M>
__global__ void attention_probs_kernel(T* out, float* probs, const T* q, const T* keys,
                                       const T* values, M mask, attn_geometry g, const int* shift) {
  grid_dependency();
  __shared__ float red[32];
  const int row = blockIdx.x;
  const int hi = row % g.h, t = (row / g.h) % g.tq, b = row / (g.h * g.tq);
  const int kvh = hi / (g.h / g.hkv);
  const int kv_len = g.kv_len;  // probs is sized by the host's kv_len
  const int qslot = shifted(g.q_start, shift) + t;
  float* pr = probs + ((index_t(b) * g.h + hi) * g.tq + t) * kv_len;
  const T* qr = q + b * g.qb + t * g.qt + hi * g.qh;
  float m = -INFINITY;
  for (int k = threadIdx.x; k < kv_len; k += blockDim.x) {
    float s = -INFINITY;
    if (mask.allowed(b, qslot, k)) {
      const T* kr = keys + b * g.kb + kvh * g.kh + k * g.ks;
      float dot = 0.0f;
      for (int j = 0; j < g.d; ++j) dot += to_f(qr[j]) * to_f(kr[j]);
      s = dot * g.scale;
    }
    pr[k] = s;
    m = fmaxf(m, s);
  }
  m = block_max(m, red);
  float sum = 0.0f;
  for (int k = threadIdx.x; k < kv_len; k += blockDim.x) {
    const float e = m == -INFINITY ? 0.0f : expf(pr[k] - m);
    pr[k] = e;
    sum += e;
  }
  sum = block_sum(sum, red);
  const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  for (int k = threadIdx.x; k < kv_len; k += blockDim.x) pr[k] *= inv;
  __syncthreads();
  for (int j = threadIdx.x; j < g.d; j += blockDim.x) {
    float a = 0.0f;
    const T* vb = values + b * g.vb + kvh * g.vh + j;
    for (int k = 0; k < kv_len; ++k) a += pr[k] * to_f(vb[k * g.vs]);
    out[b * g.ob + t * g.ot + hi * g.oh + j] = from_f<T>(a);
  }
}

template <int DMAX, class T, class M>
void launch_decode(const context<cuda>& ctx, T* out, const T* q, const T* keys, const T* values,
                   const M& mask, const attn_geometry& g, int max_len) {
  const int rows = g.b * g.tq * g.h;
  // Split only long caches (>= 512 keys a split: a short cache costs less than the extra combine
  // launch), up to two waves of blocks, the partials within the scratch.
  int splits = std::max(1, std::min((2 * ctx.sm_count + rows - 1) / rows, max_len / 512));
  const std::size_t per_split = std::size_t(rows) * (DMAX + 2) * sizeof(float);
  splits = std::max(1, std::min<int>(splits, int(ctx.scratch_bytes / per_split)));
  const int chunk = ((max_len + splits - 1) / splits + 31) / 32 * 32;
  auto* partial = static_cast<float*>(ctx.scratch);
  launch(ctx, "attention (decode)", attention_decode_kernel<T, M, DMAX>,
         dim3(unsigned(rows), unsigned(splits)), dim3(32 * decode_warps), 0, out, partial, q, keys,
         values, mask, g, ctx.slot_shift, chunk);
  if (splits > 1)
    launch(ctx, "attention (combine)", attention_combine_kernel<T, DMAX>, dim3(unsigned(rows)),
           dim3(DMAX), 0, out, static_cast<const float*>(partial), g, splits);
}

template <int DMAX, class T, class M>
void launch_prefill(const context<cuda>& ctx, T* out, const T* q, const T* keys, const T* values,
                    const M& mask, const attn_geometry& g, bool vec_ok) {
  launch(ctx, "attention (prefill)", attention_prefill_kernel<T, M, DMAX>,
         dim3(unsigned((g.tq + prefill_bq - 1) / prefill_bq), unsigned(g.h), unsigned(g.b)),
         dim3(256), 0, out, q, keys, values, mask, g, ctx.slot_shift, vec_ok && g.d == DMAX);
}

}  // namespace cuda_detail

// Copies new keys/values (B, T, Hkv, D), possibly strided, into slots [start, start+T) of a cache
// layer (B, Hkv, S, D).
template <class T>
void write_kv(const context<cuda>& ctx, tensor_view<T, cuda> cache,
              tensor_view<const T, cuda> fresh, int start) {
  const index_t b = fresh.shape[0], t = fresh.shape[1], h = fresh.shape[2], d = fresh.shape[3];
  require<shape_error>(
      cache.rank() == 4 && fresh.rank() == 4 && cache.shape[0] == b && cache.shape[1] == h &&
          cache.shape[3] == d && cache.strides[3] == 1 && fresh.strides[3] == 1,
      "write_kv: cache " + to_string(cache.shape) + " vs new " + to_string(fresh.shape));
  require<value_error>(start + t <= cache.shape[2],
                       "write_kv: slots " + std::to_string(start) + "+" + std::to_string(t) +
                           " exceed the cache capacity " + std::to_string(cache.shape[2]));
  const index_t total = b * t * h * d;
  using namespace cuda_detail;
  launch(ctx, "write_kv", write_kv_kernel<cuda_t<T>>, dim3(blocks_for(total, 256, 4096)), dim3(256),
         0, dev(cache.data), cache.strides[0], cache.strides[1], cache.strides[2], dev(fresh.data),
         fresh.strides[0], fresh.strides[1], fresh.strides[2], int(t), int(h), int(d), start,
         ctx.slot_shift, total);
}

// qkv (B * T, width) rows of a fused projection (H q heads, then Hkv k heads, then Hkv v heads
// of D): q and k rotated by positions (B * T) when inv_freq (D / 2) has data, q in place (k's and
// v's parts of qkv are left as they are); k and v written into slots [start, start + T) of the
// cache layers (B, Hkv, S, D), k rotated there. One kernel for apply_rope + write_kv + write_kv.
template <class T>
void rope_write_kv(const context<cuda>& ctx, tensor_view<T, cuda> qkv, index_t t, int h, int hkv,
                   tensor_view<const std::int32_t, cuda> positions,
                   tensor_view<const float, cuda> inv_freq, tensor_view<T, cuda> kcache,
                   tensor_view<T, cuda> vcache, int start) {
  const index_t n = qkv.rank() == 2 ? qkv.shape[0] : 0,
                d = kcache.rank() == 4 ? kcache.shape[3] : 0;
  require<shape_error>(
      qkv.rank() == 2 && t > 0 && n % t == 0 && qkv.shape[1] >= (h + 2 * hkv) * d &&
          (qkv.shape[1] <= 1 || qkv.strides[1] == 1) && kcache.shape == vcache.shape &&
          kcache.shape[0] == n / t && kcache.shape[1] == hkv && d % 2 == 0 &&
          kcache.strides[3] == 1 && vcache.strides == kcache.strides,
      "rope_write_kv: qkv " + to_string(qkv.shape) + " with T " + std::to_string(t) +
          " does not fit the cache " + to_string(kcache.shape));
  require<shape_error>(
      !inv_freq.data || (inv_freq.size() == d / 2 && positions.size() == n),
      "rope_write_kv: positions / inv_freq do not fit qkv " + to_string(qkv.shape));
  require<value_error>(start + t <= kcache.shape[2],
                       "rope_write_kv: slots " + std::to_string(start) + "+" + std::to_string(t) +
                           " exceed the cache capacity " + std::to_string(kcache.shape[2]));
  if (n == 0) return;
  using namespace cuda_detail;
  const index_t total = n * (h + 2 * hkv) * (d / 2);
  launch(ctx, "rope_write_kv", rope_write_kv_kernel<cuda_t<T>>, dim3(blocks_for(total, 256, 4096)),
         dim3(256), 0, dev(qkv.data), row_stride(qkv, "rope_write_kv qkv"), int(t), positions.data,
         inv_freq.data, dev(kcache.data), dev(vcache.data), kcache.strides[0], kcache.strides[1],
         kcache.strides[2], h, hkv, int(d), start, ctx.slot_shift, n);
}

// out (B, Tq, H, D) = softmax(q k^T * scale + mask) v; q (B, Tq, H, D) may be strided, keys and
// values (B, Hkv, S, D). probs, when given (B, H, Tq, kv_len), receives the probabilities (simple
// path). The mask's pointers must be device pointers.
template <class T, mask_policy M>
void attention(const context<cuda>& ctx, tensor_view<T, cuda> out, tensor_view<const T, cuda> q,
               tensor_view<const T, cuda> keys, tensor_view<const T, cuda> values, const M& mask,
               const attention_shape& a, tensor_view<float, cuda> probs = {}) {
  const index_t b = q.shape[0], tq = q.shape[1], h = q.shape[2], d = q.shape[3],
                hkv = keys.shape[1];
  require<shape_error>(q.rank() == 4 && keys.rank() == 4 && keys.shape == values.shape &&
                           keys.shape[0] == b && keys.shape[3] == d && h % hkv == 0 &&
                           out.shape == q.shape,
                       "attention: q " + to_string(q.shape) + ", keys " + to_string(keys.shape) +
                           ", out " + to_string(out.shape));
  require<shape_error>(
      q.strides[3] == 1 && out.strides[3] == 1 && keys.strides[3] == 1 && values.strides[3] == 1,
      "attention: the head dimension must be contiguous");
  require<value_error>(a.kv_len <= keys.shape[2], "attention: kv_len beyond the cache");
  require<shape_error>(
      !probs.data || (probs.shape == shape_t{b, h, tq, a.kv_len} && probs.contiguous()),
      "attention: probs must be (B, H, Tq, kv_len)");
  if (b == 0 || tq == 0 || h == 0) return;
  using namespace cuda_detail;
  using C = cuda_t<T>;
  const attn_geometry g{int(b),
                        int(tq),
                        int(h),
                        int(hkv),
                        int(d),
                        q.strides[0],
                        q.strides[1],
                        q.strides[2],
                        out.strides[0],
                        out.strides[1],
                        out.strides[2],
                        keys.strides[0],
                        keys.strides[1],
                        keys.strides[2],
                        values.strides[0],
                        values.strides[1],
                        values.strides[2],
                        a.q_start,
                        a.kv_len,
                        a.scale};
  C* op = dev(out.data);
  const C *qp = dev(q.data), *kp = dev(keys.data), *vp = dev(values.data);
  if (probs.data) {
    require<value_error>(!ctx.slot_shift,
                         "attention: probs cannot be combined with a device slot shift");
    launch(ctx, "attention (probs)", attention_probs_kernel<C, M>, dim3(unsigned(b * tq * h)),
           dim3(256), 0, op, probs.data, qp, kp, vp, mask, g, ctx.slot_shift);
    return;
  }
  // Under graph replay kv_len grows past the host value: plan for the capacity.
  const int max_len = ctx.slot_shift ? int(keys.shape[2]) : a.kv_len;
  constexpr index_t vec = 16 / sizeof(C);
  const bool vec_ok = d % vec == 0 && keys.strides[2] % vec == 0 && values.strides[2] % vec == 0 &&
                      keys.strides[1] % vec == 0 && values.strides[1] % vec == 0 &&
                      keys.strides[0] % vec == 0 && values.strides[0] % vec == 0 &&
                      pointer_alignment(kp) >= 16 && pointer_alignment(vp) >= 16;
  if (tq <= 4 && vec_ok && d <= 128) {
    if (d <= 64)
      launch_decode<64>(ctx, op, qp, kp, vp, mask, g, max_len);
    else
      launch_decode<128>(ctx, op, qp, kp, vp, mask, g, max_len);
    return;
  }
  require<value_error>(d <= 128 || !ctx.slot_shift,
                       "attention: head_dim > 128 needs the probs path");
  if (ctx.tensor_core_attention && prefill_tc_fits<C>(g, vec_ok, qp, op)) {
    launch_prefill_tc(ctx, op, qp, kp, vp, mask, g);
    return;
  }
  if (d <= 32)
    launch_prefill<32>(ctx, op, qp, kp, vp, mask, g, vec_ok);
  else if (d <= 64)
    launch_prefill<64>(ctx, op, qp, kp, vp, mask, g, vec_ok);
  else if (d <= 128)
    launch_prefill<128>(ctx, op, qp, kp, vp, mask, g, vec_ok);
  else {
    tensor<float, cuda> p({b, h, tq, a.kv_len});
    attention(ctx, out, q, keys, values, mask, a, p.view());
    ctx.synchronize();  // p is freed on return
  }
}

}  // namespace crossbatch
