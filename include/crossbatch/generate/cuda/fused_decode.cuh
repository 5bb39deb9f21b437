// The decode step (one token per sequence; up to 64 sequences with 16-bit weights, 16 in float32)
// of a decoder_model<T, cuda> in five kernels per layer instead of thirteen: the CUDA fast path of
// batch_session::step without hooks (generate/fast_path.hpp). Same arithmetic and rounding points
// as decoder_model::run_layers with the CUDA ops, summed in another order
// (tests/cuda/test_fused_decode.cu bounds the logits difference at real model shapes):
//   qkv   = norm1(x) W_qkv^T + b       GEMV, the norm computed per block into shared memory
//   attn  = attention(rope(q), cache)  rope on q and k, k and v written to the cache slot
//                                      (start + *shift), attention over the cache: one kernel
//   x    += attn W_o^T + b             GEMV, residual added in the epilogue
//   act   = act(gate) * up, or act(h)  GEMV on norm2(x), gated pairs of rows in one warp
//   x    += act W_down^T + b           GEMV, residual epilogue
// and the final norm fused into the LM head GEMV (with the greedy argmax folded in when asked).
// The GEMVs run on CUDA cores at batch 1 (fused_gemv_kernel, x rows unpacked per weight chunk)
// and on tensor cores from fused_decode_options::tensor_core_min_batch (2) on
// (generate/cuda/fused_gemv_tc.cuh: every weight read once per step for all rows, so a batch-16
// step streams the same bytes as a batch-1 step); float32, or tensor_cores off, keeps the
// CUDA-core GEMV up to batch 16. Launch shapes and shared memory come from
// generate/fused_launch_config.hpp, checked against the device's limits before each launch.
// Decode at small batches is bound by latency more than by bytes: every kernel fetches what no
// earlier kernel of the step writes (weights; KV slots of earlier steps) before its grid-dependency
// wait, so under programmatic dependent launch those loads overlap the preceding kernel. Long
// caches and shapes outside the attention kernel's limits use rope_write_kv + the attention op;
// shapes outside the step's limits fall back to run_layers.
#pragma once

#include <cstdint>
#include <type_traits>

#include "crossbatch/attention/cuda/attention.cuh"
#include "crossbatch/generate/cuda/fused_gemv_common.cuh"
#include "crossbatch/generate/cuda/fused_gemv_tc.cuh"
#include "crossbatch/generate/fast_path.hpp"
#include "crossbatch/generate/fused_launch_config.hpp"
#include "crossbatch/model/decoder.hpp"
#include "crossbatch/ops/cuda/common.cuh"
#include "crossbatch/ops/cuda/linear.cuh"
#include "crossbatch/sample/cuda/sample.cuh"

namespace crossbatch {

namespace cuda_detail {

// Normalises row `row` of x (n, in) into xn (n, in) in shared memory, as norm() does, with one
// warp. Rows of up to 128 16-byte chunks are read once, every load in flight together (one memory
// latency); longer rows are re-read from L1 for each pass.
template <class T, prologue P>
__device__ __forceinline__ void norm_row(T* xn, int row, const fused_gemv_args& a) {
  constexpr int vec = 16 / sizeof(T), XC = 4;
  const int lane = threadIdx.x & 31, nvec = a.in / vec;
  const uint4* xr = reinterpret_cast<const uint4*>(static_cast<const T*>(a.x) + row * a.xs);
  const uint4* nw = static_cast<const uint4*>(a.nw);
  const uint4* nb = static_cast<const uint4*>(a.nb);
  uint4* dst = reinterpret_cast<uint4*>(xn + row * a.in);
  auto normalise = [&](const uint4& xv, const uint4& gv, const uint4& bv, float mean, float inv) {
    float f[vec], g[vec], o[vec];
    unpack<T>(xv, f);
    unpack<T>(gv, g);
    if constexpr (P == prologue::rms) {
#pragma unroll
      for (int e = 0; e < vec; ++e) o[e] = g[e] * round_to<T>(f[e] * inv);
    } else {
      float bb[vec];
      unpack<T>(bv, bb);
#pragma unroll
      for (int e = 0; e < vec; ++e) o[e] = (f[e] - mean) * inv * g[e] + bb[e];
    }
    return pack<T>(o);
  };
  if (nvec <= 32 * XC) {
    uint4 xv[XC], gv[XC], bv[XC];
#pragma unroll
    for (int i = 0; i < XC; ++i) {
      const int c = lane + 32 * i;
      const bool ok = c < nvec;
      xv[i] = ok ? xr[c] : make_uint4(0, 0, 0, 0);
      gv[i] = ok ? nw[c] : make_uint4(0, 0, 0, 0);
      bv[i] = ok && P == prologue::layer ? nb[c] : make_uint4(0, 0, 0, 0);
    }
    float mean = 0.0f;
    if constexpr (P == prologue::layer) {
      float s = 0.0f;
#pragma unroll
      for (int i = 0; i < XC; ++i) {
        float f[vec];
        unpack<T>(xv[i], f);
#pragma unroll
        for (int e = 0; e < vec; ++e) s += f[e];
      }
      mean = warp_sum(s) / a.in;
    }
    float ss = 0.0f;
#pragma unroll
    for (int i = 0; i < XC; ++i) {
      if (lane + 32 * i < nvec) {
        float f[vec];
        unpack<T>(xv[i], f);
#pragma unroll
        for (int e = 0; e < vec; ++e) ss += (f[e] - mean) * (f[e] - mean);
      }
    }
    const float inv = 1.0f / sqrtf(warp_sum(ss) / a.in + a.eps);
#pragma unroll
    for (int i = 0; i < XC; ++i)
      if (lane + 32 * i < nvec) dst[lane + 32 * i] = normalise(xv[i], gv[i], bv[i], mean, inv);
    return;
  }
  float mean = 0.0f;
  if constexpr (P == prologue::layer) {
    float s = 0.0f;
#pragma unroll 4
    for (int c = lane; c < nvec; c += 32) {
      float f[vec];
      unpack<T>(xr[c], f);
#pragma unroll
      for (int e = 0; e < vec; ++e) s += f[e];
    }
    mean = warp_sum(s) / a.in;
  }
  float ss = 0.0f;
#pragma unroll 4
  for (int c = lane; c < nvec; c += 32) {
    float f[vec];
    unpack<T>(xr[c], f);
#pragma unroll
    for (int e = 0; e < vec; ++e) ss += (f[e] - mean) * (f[e] - mean);
  }
  const float inv = 1.0f / sqrtf(warp_sum(ss) / a.in + a.eps);
#pragma unroll 4
  for (int c = lane; c < nvec; c += 32)
    dst[c] =
        normalise(xr[c], nw[c], P == prologue::layer ? nb[c] : make_uint4(0, 0, 0, 0), mean, inv);
}

// Rows [0, n) of x normalised into xn: warp w handles rows w, w + 8, ...
template <class T, prologue P>
__device__ __forceinline__ void norm_rows(T* xn, const fused_gemv_args& a) {
  for (int row = int(threadIdx.x >> 5); row < a.n; row += 8) norm_row<T, P>(xn, row, a);
}

// 16-byte weight loads a lane keeps in flight per row (pairs for gated rows; see
// fused_launch_config.hpp).
template <prologue P, epilogue E>
constexpr int gemv_loads() {
  return launch_detail::cuda_core_loads(P != prologue::none);
}

// out = epilogue(prologue(x) W^T + b) for n <= NT rows of x. A block covers rows_per_block =
// 8 / warps_per_row output rows (a row's warps split its 16-byte chunks) and strides over the row
// groups by gridDim.x; each lane keeps U weight loads in flight (U pairs for gated rows), the first
// of them issued before the grid-dependency wait.
template <class T, int NT, prologue P, epilogue E>
__global__ void __launch_bounds__(256) fused_gemv_kernel(fused_gemv_args a) {
  constexpr int vec = 16 / sizeof(T);
  constexpr int rows2 = E == epilogue::gated ? 2 : 1;
  constexpr int U = gemv_loads<P, E>();
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ float red[8][NT * rows2];
  __shared__ unsigned long long top[8][NT];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int wpr = a.warps_per_row, rows_per_block = 8 / wpr, part = warp % wpr;
  const int nvec = a.in / vec, step = 32 * wpr * U, passes = (nvec + step - 1) / step;
  const int groups = (a.o + rows_per_block - 1) / rows_per_block;
  const int first = part * 32 + lane;  // this lane's chunks in a pass: first + 32 * wpr * u
  const T* w = static_cast<const T*>(a.w);
  int group = blockIdx.x, pass = 0;
  int row = group * rows_per_block + warp / wpr;
  const T* bias = static_cast<const T*>(a.bias);
  T* out = static_cast<T*>(a.out);
  uint4 wv[rows2][U];
  float bv[rows2];  // the row's bias, fetched with its weights
  auto fetch = [&]() {
#pragma unroll
    for (int r = 0; r < rows2; ++r)
      bv[r] = bias && row < a.o ? to_f(bias[row + r * index_t(a.o)]) : 0.0f;
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = pass * step + first + 32 * wpr * u;
      const bool ok = row < a.o && c < nvec;
#pragma unroll
      for (int r = 0; r < rows2; ++r)
        wv[r][u] =
            ok ? __ldcs(reinterpret_cast<const uint4*>(w + (row + r * index_t(a.o)) * a.ws) + c)
               : make_uint4(0, 0, 0, 0);
    }
  };
  // No kernel of the step writes the weights: start fetching before waiting for the previous one.
  fetch();
  grid_dependency();
  T* xn = reinterpret_cast<T*>(smem_raw);  // (NT, in) normalised rows when P != none
  if constexpr (P != prologue::none) {
    norm_rows<T, P>(xn, a);
    __syncthreads();
  }
  const T* xg = static_cast<const T*>(a.x);
  // The residual epilogue's old value, loaded long before it is needed (lane t: batch row t).
  const bool writer = part == 0 && lane < a.n;
  auto residual = [&]() {
    return E == epilogue::residual && writer && row < a.o ? out[lane * a.os + row]
                                                          : from_f<T>(0.0f);
  };
  T old = residual();
  float acc[rows2][NT];
#pragma unroll
  for (int r = 0; r < rows2; ++r)
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[r][t] = 0.0f;
  unsigned long long best = 0;  // lane t: the best key of batch row t so far (argmax)
  for (;;) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = pass * step + first + 32 * wpr * u;
      if (c < nvec) {
        float wf[rows2][vec];
#pragma unroll
        for (int r = 0; r < rows2; ++r) unpack<T>(wv[r][u], wf[r]);
#pragma unroll
        for (int t = 0; t < NT; ++t) {
          if (t < a.n) {
            float xf[vec];
            if constexpr (P == prologue::none)
              unpack<T>(reinterpret_cast<const uint4*>(xg + t * a.xs)[c], xf);
            else
              unpack<T>(reinterpret_cast<const uint4*>(xn + t * a.in)[c], xf);
#pragma unroll
            for (int r = 0; r < rows2; ++r) {
              float s = 0.0f;
#pragma unroll
              for (int e = 0; e < vec; ++e) s += wf[r][e] * xf[e];
              acc[r][t] += s;
            }
          }
        }
      }
    }
    const int done_row = row;
    const T done_old = old;
    float done_bias[rows2];
#pragma unroll
    for (int r = 0; r < rows2; ++r) done_bias[r] = bv[r];
    const bool row_done = ++pass == passes;
    if (row_done) {
      pass = 0;
      group += gridDim.x;
      row = group * rows_per_block + warp / wpr;
    }
    const bool more = group < groups;
    if (more) {
      fetch();  // the next pass's loads fly while this row is reduced and stored
      if (row_done) old = residual();
    }
    if (row_done) {
#pragma unroll
      for (int r = 0; r < rows2; ++r)
#pragma unroll
        for (int t = 0; t < NT; ++t) acc[r][t] = warp_sum(acc[r][t]);
      if (wpr > 1) {
        if (lane == 0)
#pragma unroll
          for (int r = 0; r < rows2; ++r)
#pragma unroll
            for (int t = 0; t < NT; ++t) red[warp][r * NT + t] = acc[r][t];
        __syncthreads();
        if (part == 0)
#pragma unroll
          for (int r = 0; r < rows2; ++r)
#pragma unroll
            for (int t = 0; t < NT; ++t) {
              float s = 0;
              for (int p = 0; p < wpr; ++p) s += red[warp + p][r * NT + t];
              acc[r][t] = s;
            }
        __syncthreads();  // red is written again for the next row
      }
      if (writer && done_row < a.o) {
        // Lane t writes row t's output (t < n <= NT): pick acc[.][lane] with constant indices.
        float v[rows2];
#pragma unroll
        for (int r = 0; r < rows2; ++r) {
          v[r] = 0.0f;
#pragma unroll
          for (int t = 0; t < NT; ++t)
            if (t == lane) v[r] = acc[r][t];
          v[r] = round_to<T>(v[r] + done_bias[r]);
        }
        T* dst = out + lane * a.os + done_row;
        if constexpr (E == epilogue::store || E == epilogue::argmax)
          *dst = from_f<T>(v[0]);
        else if constexpr (E == epilogue::act)
          *dst = from_f<T>(apply_activation(a.act, v[0]));
        else if constexpr (E == epilogue::gated)
          *dst = from_f<T>(round_to<T>(apply_activation(a.act, v[0])) * v[1]);
        else
          *dst = from_f<T>(to_f(done_old) + v[0]);
        if constexpr (E == epilogue::argmax)
          if (v[0] == v[0]) best = max(best, argmax_key(v[0], done_row));
      }
#pragma unroll
      for (int r = 0; r < rows2; ++r)
#pragma unroll
        for (int t = 0; t < NT; ++t) acc[r][t] = 0.0f;
    }
    if (!more) break;
  }
  if constexpr (E == epilogue::argmax) {
    if (lane < NT) top[warp][lane] = best;
    __syncthreads();
    if (threadIdx.x < a.n) {
      unsigned long long m = 0;
#pragma unroll
      for (int k = 0; k < 8; ++k) m = max(m, top[k][threadIdx.x]);
      if (m) atomicMax(a.best + threadIdx.x, m);
    }
  }
}

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
      unpack<T>(k == slot ? kn : kr[j], kf);
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
        unpack<T>(base + g + groups * j == slot ? vn : vr[j], vf);
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

// One GEMV of the step with its launch from fused_launch_config.hpp (gemv_launch_for): on tensor
// cores for 16-bit T from opt.tensor_core_min_batch rows on, else on CUDA cores (NT = 1, 2, 4, 8
// or 16 rows). At most one wave of blocks: when the row groups need more, the blocks stride over
// them (one prologue per block, the next group's loads in flight while a row is reduced) instead
// of waiting for a second wave that starts behind the first one's whole latency chain.
template <class T, prologue P, epilogue E>
void fused_gemv(const context<cuda>& ctx, const fused_gemv_args& a,
                const fused_decode_options& opt) {
  gemv_shape s;
  s.name = "fused gemv";
  s.n = a.n;
  s.in = a.in;
  s.o = a.o;
  s.elem_bytes = int(sizeof(T));
  s.prologue = P != prologue::none;
  s.gated = E == epilogue::gated;
  const gemv_launch l = gemv_launch_for(s, opt, ctx.sm_count);
  const int bps = opt.gemv_blocks_per_sm;
  if constexpr (sizeof(T) == 2) {
    if (l.tensor_cores) {
      fused_gemv_tc<T, P, E>(ctx, a, l, bps);
      return;
    }
  }
  const char* name = "fused gemv";
  switch (l.rows) {
    case 1:
      return launch_gemv<fused_gemv_kernel<T, 1, P, E>>(ctx, name, l, bps, a);
    case 2:
      return launch_gemv<fused_gemv_kernel<T, 2, P, E>>(ctx, name, l, bps, a);
    case 4:
      return launch_gemv<fused_gemv_kernel<T, 4, P, E>>(ctx, name, l, bps, a);
    case 8:
      return launch_gemv<fused_gemv_kernel<T, 8, P, E>>(ctx, name, l, bps, a);
    default:
      return launch_gemv<fused_gemv_kernel<T, 16, P, E>>(ctx, name, l, bps, a);
  }
}

}  // namespace cuda_detail

// Whether fused_decode_step handles this model and batch under these options: up to
// opt.max_batch rows (and never above 64 with the tensor-core GEMV, 16 with the CUDA-core one),
// every GEMV launch valid on the current device (fused_launch_config.hpp).
template <class T>
bool fused_decode_supported(const decoder_model<T, cuda>& m, int batch,
                            const fused_decode_options& opt = {}) {
  const auto& c = m.config;
  constexpr int vec = 16 / sizeof(T);
  const index_t qd = index_t(c.num_heads) * c.head_dim;
  if (!(c.is_decoder() && batch >= 1 && c.hidden_size % vec == 0 &&
        c.intermediate_size % vec == 0 && qd % vec == 0 && c.head_dim % 2 == 0))
    return false;
  if (batch > opt.max_batch) return false;
  if (batch > (gemv_on_tensor_cores(int(sizeof(T)), batch, opt) ? 64 : 16)) return false;
  int device = 0, sm_count = 1;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return fused_step_problem(c, batch, int(sizeof(T)), opt, sm_count,
                            cuda_detail::device_launch_limits())
      .empty();
}

// What a decode step of this model and batch runs under these options, in words (benchmarks and
// tests print it).
template <class T>
const char* fused_decode_route(const decoder_model<T, cuda>& m, int batch,
                               const fused_decode_options& opt = {}) {
  if (!opt.enabled || !fused_decode_supported(m, batch, opt)) return "plain layers";
  return gemv_on_tensor_cores(int(sizeof(T)), batch, opt) ? "fused, tensor-core GEMV"
                                                          : "fused, CUDA-core GEMV";
}

// Whether the one-kernel rope + KV write + attention handles this model and cache.
template <class T>
bool rope_attention_supported(const decoder_model<T, cuda>& m, int capacity,
                              const fused_decode_options& opt) {
  const auto& c = m.config;
  constexpr int vec = 16 / sizeof(T);
  const int cpk = c.head_dim / vec;
  return opt.fused_attention && capacity <= opt.fused_attention_max_len && c.head_dim % vec == 0 &&
         c.head_dim <= 256 && cpk >= 1 && cpk <= 32 && (cpk & (cpk - 1)) == 0 &&
         c.num_heads % c.num_kv_heads == 0;
}

// One decode step: x (B, C) holds the token embeddings on entry and the final residual stream on
// exit; logits (B, V) receive the LM head output. start is the cache slot (plus *ctx.slot_shift).
// With greedy_best (B) (zero on entry), the LM head also folds each row's argmax into it as
// argmax_key(logit, id) (the graph driver's advance kernel turns it into ids and zeroes it again).
template <class T, mask_policy M>
void fused_decode_step(const context<cuda>& ctx, const decoder_model<T, cuda>& m,
                       tensor_view<T, cuda> x, tensor_view<const std::int32_t, cuda> positions,
                       kv_cache<T, cuda>& cache, int start, const M& mask,
                       decoder_workspace<T, cuda>& ws, tensor_view<T, cuda> logits,
                       std::uint64_t* greedy_best = nullptr, const fused_decode_options& opt = {}) {
  using namespace cuda_detail;
  using C = cuda_t<T>;
  const auto& c = m.config;
  const int b = int(x.shape[0]);
  const index_t cdim = c.hidden_size, h = c.num_heads, hkv = c.num_kv_heads, dh = c.head_dim;
  const index_t width = (h + 2 * hkv) * dh, f = c.intermediate_size;
  require<value_error>(
      fused_decode_supported(m, b, opt) && b <= ws.tokens && start + 1 <= cache.capacity(),
      "fused_decode_step: unsupported shape");
  const bool layer = c.kind == family::gpt2, gated = !layer;
  const bool one_kernel_attention = rope_attention_supported(m, cache.capacity(), opt);
  const attention_shape shape{start, start + 1, 1.0f / std::sqrt(float(dh))};
  auto args = [&](const void* in, index_t in_stride, int in_dim, const tensor<T, cuda>& w,
                  const tensor<T, cuda>& bias, void* out, index_t out_stride, int o,
                  const tensor<T, cuda>* nw, const tensor<T, cuda>* nb) {
    fused_gemv_args a{};
    a.x = in;
    a.xs = in_stride;
    a.w = w.data();
    a.ws = w.dim(1);
    a.bias = bias.empty() ? nullptr : bias.data();
    a.out = out;
    a.os = out_stride;
    a.nw = nw ? nw->data() : nullptr;
    a.nb = nb && !nb->empty() ? nb->data() : nullptr;
    a.eps = c.norm_eps;
    a.act = c.act;
    a.n = b;
    a.in = in_dim;
    a.o = o;
    return a;
  };
  for (int l = 0; l < c.num_layers; ++l) {
    const auto& L = m.layers[l];
    const auto qa = args(x.data, cdim, int(cdim), L.qkv_w, L.qkv_b, ws.qkv.data(), width,
                         int(width), &L.norm1_w, &L.norm1_b);
    if (layer)
      fused_gemv<C, prologue::layer, epilogue::store>(ctx, qa, opt);
    else
      fused_gemv<C, prologue::rms, epilogue::store>(ctx, qa, opt);
    auto kc = cache.keys(l), vc = cache.values(l);
    const float* inv_freq = c.uses_rope() ? m.inv_freq.data() : nullptr;
    if (one_kernel_attention) {
      rope_attention_args ra{};
      ra.qkv = ws.qkv.data();
      ra.width = width;
      ra.positions = positions.data;
      ra.inv_freq = inv_freq;
      ra.kc = kc.data;
      ra.vc = vc.data;
      ra.cb = kc.strides[0];
      ra.ch = kc.strides[1];
      ra.cs = kc.strides[2];
      ra.out = ws.attn.data();
      ra.h = int(h);
      ra.hkv = int(hkv);
      ra.d = int(dh);
      ra.start = start;
      ra.shift = ctx.slot_shift;
      ra.scale = shape.scale;
      launch(ctx, "rope + attention (decode)", rope_attention_kernel<C, M>, dim3(unsigned(b * h)),
             dim3(rope_attention_threads), 0, ra, mask);
    } else {
      rope_write_kv(ctx, tensor_view<T, cuda>(ws.qkv.data(), {b, width}), 1, int(h), int(hkv),
                    positions, c.uses_rope() ? m.inv_freq.view() : tensor_view<const float, cuda>{},
                    kc, vc, start);
      const tensor_view<const T, cuda> q(ws.qkv.data(), {b, 1, h, dh}, {width, width, dh, 1});
      attention(ctx, tensor_view<T, cuda>(ws.attn.data(), {b, 1, h, dh}), q,
                tensor_view<const T, cuda>(kc), tensor_view<const T, cuda>(vc), mask, shape);
    }
    fused_gemv<C, prologue::none, epilogue::residual>(
        ctx,
        args(ws.attn.data(), h * dh, int(h * dh), L.o_w, L.o_b, x.data, cdim, int(cdim), nullptr,
             nullptr),
        opt);
    const auto ua = args(x.data, cdim, int(cdim), L.up_w, L.up_b, ws.act.data(), f, int(f),
                         &L.norm2_w, &L.norm2_b);
    if (gated)
      fused_gemv<C, prologue::rms, epilogue::gated>(ctx, ua, opt);
    else
      fused_gemv<C, prologue::layer, epilogue::act>(ctx, ua, opt);
    fused_gemv<C, prologue::none, epilogue::residual>(
        ctx,
        args(ws.act.data(), f, int(f), L.down_w, L.down_b, x.data, cdim, int(cdim), nullptr,
             nullptr),
        opt);
  }
  const auto& head = m.output_embedding();
  static const tensor<T, cuda> none;
  auto la = args(x.data, cdim, int(cdim), head, none, logits.data, c.vocab_size, c.vocab_size,
                 &m.final_w, &m.final_b);
  la.best = reinterpret_cast<unsigned long long*>(greedy_best);
  if (greedy_best) {
    if (layer)
      fused_gemv<C, prologue::layer, epilogue::argmax>(ctx, la, opt);
    else
      fused_gemv<C, prologue::rms, epilogue::argmax>(ctx, la, opt);
  } else {
    if (layer)
      fused_gemv<C, prologue::layer, epilogue::store>(ctx, la, opt);
    else
      fused_gemv<C, prologue::rms, epilogue::store>(ctx, la, opt);
  }
}

// The session's fast path on CUDA (generate/fast_path.hpp): the fused step where the options and
// the shape allow it. greedy_best as in fused_decode_step (null: no argmax folding).
template <class T, class M>
bool fused_decode(const context<cuda>& ctx, const decoder_model<T, cuda>& m, tensor_view<T, cuda> x,
                  tensor_view<const std::int32_t, cuda> positions, kv_cache<T, cuda>& cache,
                  int start, const M& mask, decoder_workspace<T, cuda>& ws,
                  tensor_view<T, cuda> logits, std::uint64_t* greedy_best,
                  const fused_decode_options& opt) {
  if (!opt.enabled || !fused_decode_supported(m, int(x.shape[0]), opt)) return false;
  fused_decode_step(ctx, m, x, positions, cache, start, mask, ws, logits, greedy_best, opt);
  return true;
}

}  // namespace crossbatch
