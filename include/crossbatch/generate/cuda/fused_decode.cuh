// The decode step (one token per sequence, up to 8 sequences) of a decoder_model<T, cuda> in six
// kernels per layer instead of thirteen, for graph_generator. Same arithmetic and roundings as
// decoder_model::run_layers with the CUDA ops (tests compare the tokens with the CPU's):
//   qkv   = norm1(x) W_qkv^T + b       GEMV, the norm computed per block into shared memory
//   rope on q and k, k and v written to the cache slot (start + *shift)
//   attn  = attention(q, cache)        the CUDA attention op
//   x    += attn W_o^T + b             GEMV, residual added in the epilogue
//   act   = act(gate) * up, or act(h)  GEMV on norm2(x), gated pairs of rows in one warp
//   x    += act W_down^T + b           GEMV, residual epilogue
// and the final norm fused into the LM head GEMV. Small outputs get several warps per row so that
// the GPU has enough loads in flight. Shapes outside its limits fall back to run_layers.
#pragma once

#include <cstdint>

#include "crossbatch/attention/cuda/attention.cuh"
#include "crossbatch/model/decoder.hpp"
#include "crossbatch/ops/cuda/common.cuh"
#include "crossbatch/ops/cuda/linear.cuh"

namespace crossbatch {
namespace cuda_detail {

enum class prologue { none, rms, layer };
enum class epilogue { store, act, gated, residual };

struct fused_gemv_args {
  const void* x;      // (n, in), row stride xs
  index_t xs;
  const void* w;      // (o or 2o for gated, in), row stride ws
  index_t ws;
  const void* bias;   // (o or 2o) or null
  void* out;          // (n, o), row stride os; the residual stream for epilogue::residual
  index_t os;
  const void* nw;     // norm weight / bias (in) for the prologue
  const void* nb;
  float eps;
  activation act;
  int n, in, o, warps_per_row;
};

// out = epilogue(prologue(x) W^T + b) for n <= NT rows of x.
template <class T, int NT, prologue P, epilogue E>
__global__ void __launch_bounds__(256) fused_gemv_kernel(fused_gemv_args a) {
  grid_dependency();
  constexpr int vec = 16 / sizeof(T), unroll = 4;
  constexpr int rows2 = E == epilogue::gated ? 2 : 1;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ float red[8][NT * rows2];
  __shared__ float stat[NT][2];
  T* xn = reinterpret_cast<T*>(smem_raw);  // (NT, in) normalised rows when P != none
  const T* x = static_cast<const T*>(a.x);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if constexpr (P != prologue::none) {
    const T* nw = static_cast<const T*>(a.nw);
    const T* nb = static_cast<const T*>(a.nb);
    // Per-row statistics: warp t handles row t (NT <= 8 warps).
    if (warp < a.n) {
      const T* xr = x + warp * a.xs;
      float s = 0, ss = 0;
      for (int j = lane; j < a.in; j += 32) {
        const float v = to_f(xr[j]);
        s += v;
      }
      s = warp_sum(s);
      const float mean = s / a.in;
      for (int j = lane; j < a.in; j += 32) {
        const float v = to_f(xr[j]);
        ss += P == prologue::rms ? v * v : (v - mean) * (v - mean);
      }
      ss = warp_sum(ss);
      if (lane == 0) {
        stat[warp][0] = mean;
        stat[warp][1] = 1.0f / sqrtf(ss / a.in + a.eps);
      }
    }
    __syncthreads();
    for (int e = threadIdx.x; e < a.n * a.in; e += blockDim.x) {
      const int t = e / a.in, j = e - t * a.in;
      const float v = to_f(x[t * a.xs + j]), inv = stat[t][1];
      if constexpr (P == prologue::rms) xn[t * a.in + j] = from_f<T>(to_f(nw[j]) * round_to<T>(v * inv));
      else xn[t * a.in + j] = from_f<T>((v - stat[t][0]) * inv * to_f(nw[j]) + to_f(nb[j]));
    }
    __syncthreads();
  }
  const T* xsrc = P == prologue::none ? x : xn;
  const index_t xstride = P == prologue::none ? a.xs : a.in;
  const int wpr = a.warps_per_row, rows_per_block = 8 / wpr;
  const int row = blockIdx.x * rows_per_block + warp / wpr, part = warp % wpr;
  const T* w = static_cast<const T*>(a.w);
  const int nvec = a.in / vec;
  float acc[rows2][NT];
#pragma unroll
  for (int r = 0; r < rows2; ++r)
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[r][t] = 0.0f;
  if (row < a.o) {
    const uint4* wr[rows2];
#pragma unroll
    for (int r = 0; r < rows2; ++r) wr[r] = reinterpret_cast<const uint4*>(w + (row + r * index_t(a.o)) * a.ws);
    for (int c0 = part * 32 + lane; c0 < nvec; c0 += 32 * wpr * unroll) {
      uint4 wv[rows2][unroll];
#pragma unroll
      for (int u = 0; u < unroll; ++u) {
        const int c = c0 + 32 * wpr * u;
#pragma unroll
        for (int r = 0; r < rows2; ++r) wv[r][u] = c < nvec ? __ldcs(wr[r] + c) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int u = 0; u < unroll; ++u) {
        const int c = c0 + 32 * wpr * u;
        if (c < nvec) {
#pragma unroll
          for (int t = 0; t < NT; ++t) {
            if (t < a.n) {
              const uint4 xv = reinterpret_cast<const uint4*>(xsrc + t * xstride)[c];
#pragma unroll
              for (int r = 0; r < rows2; ++r) acc[r][t] += dot16<T>(wv[r][u], xv);
            }
          }
        }
      }
    }
  }
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
    if (part != 0) return;
#pragma unroll
    for (int r = 0; r < rows2; ++r)
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        float s = 0;
        for (int p = 0; p < wpr; ++p) s += red[warp + p][r * NT + t];
        acc[r][t] = s;
      }
  }
  if (row >= a.o || lane >= a.n) return;
  // Lane t writes row t's output (t < n <= NT): pick acc[.][lane] with constant indices.
  const T* bias = static_cast<const T*>(a.bias);
  T* out = static_cast<T*>(a.out);
  float v[rows2];
#pragma unroll
  for (int r = 0; r < rows2; ++r) {
    v[r] = 0.0f;
#pragma unroll
    for (int t = 0; t < NT; ++t)
      if (t == lane) v[r] = acc[r][t];
    v[r] = round_to<T>(v[r] + (bias ? to_f(bias[row + r * index_t(a.o)]) : 0.0f));
  }
  T* dst = out + lane * a.os + row;
  if constexpr (E == epilogue::store) *dst = from_f<T>(v[0]);
  else if constexpr (E == epilogue::act) *dst = from_f<T>(apply_activation(a.act, v[0]));
  else if constexpr (E == epilogue::gated) *dst = from_f<T>(round_to<T>(apply_activation(a.act, v[0])) * v[1]);
  else *dst = from_f<T>(to_f(*dst) + v[0]);
}

// q (B, H, D) rotated in place, k rotated and written with v into cache slot start + *shift.
template <class T>
__global__ void rope_kv_kernel(T* qkv, index_t width, const std::int32_t* positions, const float* inv_freq, T* kc,
                               T* vc, index_t cb, index_t ch, index_t cs, int h, int hkv, int d, int start,
                               const int* shift, int batch) {
  grid_dependency();
  const int half_d = d / 2, heads = h + 2 * hkv;
  const int slot = start + (shift ? *shift : 0);
  const index_t total = index_t(batch) * heads * half_d;
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < total; i += index_t(gridDim.x) * blockDim.x) {
    const int k = int(i % half_d);
    const int hh = int((i / half_d) % heads);
    const int b = int(i / (index_t(half_d) * heads));
    T* v = qkv + b * width + index_t(hh) * d;
    float a0 = to_f(v[k]), a1 = to_f(v[k + half_d]);
    if (hh < h + hkv && inv_freq) {
      float s, c;
      sincosf(float(positions[b]) * inv_freq[k], &s, &c);
      const float r0 = a0 * c - a1 * s, r1 = a1 * c + a0 * s;
      a0 = round_to<T>(r0);
      a1 = round_to<T>(r1);
    }
    if (hh < h) {
      v[k] = from_f<T>(a0);
      v[k + half_d] = from_f<T>(a1);
    } else {
      const bool is_k = hh < h + hkv;
      T* dst = (is_k ? kc : vc) + b * cb + (is_k ? hh - h : hh - h - hkv) * ch + index_t(slot) * cs;
      dst[k] = from_f<T>(a0);
      dst[k + half_d] = from_f<T>(a1);
    }
  }
}

template <class T, int NT, prologue P, epilogue E>
void fused_gemv_nt(const context<cuda>& ctx, const fused_gemv_args& a) {
  const int rows_per_block = 8 / a.warps_per_row;
  const std::size_t smem = P == prologue::none ? 0 : std::size_t(NT) * a.in * sizeof(T);
  launch(ctx, "fused gemv", fused_gemv_kernel<T, NT, P, E>, dim3(unsigned((a.o + rows_per_block - 1) / rows_per_block)),
         dim3(256), smem, a);
}

template <class T, prologue P, epilogue E>
void fused_gemv(const context<cuda>& ctx, fused_gemv_args a) {
  // Several warps per output row when the rows alone give fewer than ~16 warps per SM.
  const int want = 16 * ctx.sm_count;
  a.warps_per_row = 1;
  while (a.warps_per_row < 8 && index_t(a.o) * a.warps_per_row < want &&
         a.in / (16 / int(sizeof(T))) >= 64 * a.warps_per_row)
    a.warps_per_row *= 2;
  if (a.n == 1) fused_gemv_nt<T, 1, P, E>(ctx, a);
  else if (a.n == 2) fused_gemv_nt<T, 2, P, E>(ctx, a);
  else if (a.n <= 4) fused_gemv_nt<T, 4, P, E>(ctx, a);
  else fused_gemv_nt<T, 8, P, E>(ctx, a);
}

}  // namespace cuda_detail

// Whether fused_decode_step handles this model and batch.
template <class T>
bool fused_decode_supported(const decoder_model<T, cuda>& m, int batch) {
  const auto& c = m.config;
  constexpr int vec = 16 / sizeof(T);
  const index_t qd = index_t(c.num_heads) * c.head_dim;
  return c.is_decoder() && batch >= 1 && batch <= 8 && c.hidden_size % vec == 0 && c.intermediate_size % vec == 0 &&
         qd % vec == 0 && c.head_dim % 2 == 0 && std::size_t(8) * c.hidden_size * sizeof(T) <= 48 * 1024;
}

// One decode step: x (B, C) holds the token embeddings on entry and the final residual stream on
// exit; logits (B, V) receive the LM head output. start is the cache slot (plus *ctx.slot_shift).
template <class T, mask_policy M>
void fused_decode_step(const context<cuda>& ctx, const decoder_model<T, cuda>& m, tensor_view<T, cuda> x,
                       tensor_view<const std::int32_t, cuda> positions, kv_cache<T, cuda>& cache, int start,
                       const M& mask, decoder_workspace<T, cuda>& ws, tensor_view<T, cuda> logits) {
  using namespace cuda_detail;
  using C = cuda_t<T>;
  const auto& c = m.config;
  const int b = int(x.shape[0]);
  const index_t cdim = c.hidden_size, h = c.num_heads, hkv = c.num_kv_heads, dh = c.head_dim;
  const index_t width = (h + 2 * hkv) * dh, f = c.intermediate_size;
  require<value_error>(fused_decode_supported(m, b) && b <= ws.tokens && start + 1 <= cache.capacity(),
                       "fused_decode_step: unsupported shape");
  const bool layer = c.kind == family::gpt2, gated = !layer;
  const attention_shape shape{start, start + 1, 1.0f / std::sqrt(float(dh))};
  auto args = [&](const void* in, index_t in_stride, int in_dim, const tensor<T, cuda>& w, const tensor<T, cuda>& bias,
                  void* out, index_t out_stride, int o, const tensor<T, cuda>* nw, const tensor<T, cuda>* nb) {
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
    const auto qa = args(x.data, cdim, int(cdim), L.qkv_w, L.qkv_b, ws.qkv.data(), width, int(width), &L.norm1_w, &L.norm1_b);
    if (layer) fused_gemv<C, prologue::layer, epilogue::store>(ctx, qa);
    else fused_gemv<C, prologue::rms, epilogue::store>(ctx, qa);
    auto kc = cache.keys(l), vc = cache.values(l);
    launch(ctx, "rope_kv", rope_kv_kernel<C>, dim3(blocks_for(index_t(b) * (h + 2 * hkv) * (dh / 2), 256, 1024)),
           dim3(256), 0, dev(ws.qkv.data()), width, positions.data, c.uses_rope() ? m.inv_freq.data() : nullptr,
           dev(kc.data), dev(vc.data), kc.strides[0], kc.strides[1], kc.strides[2], int(h), int(hkv), int(dh), start,
           ctx.slot_shift, b);
    const tensor_view<const T, cuda> q(ws.qkv.data(), {b, 1, h, dh}, {width, width, dh, 1});
    attention(ctx, tensor_view<T, cuda>(ws.attn.data(), {b, 1, h, dh}), q, tensor_view<const T, cuda>(kc),
              tensor_view<const T, cuda>(vc), mask, shape);
    fused_gemv<C, prologue::none, epilogue::residual>(
        ctx, args(ws.attn.data(), h * dh, int(h * dh), L.o_w, L.o_b, x.data, cdim, int(cdim), nullptr, nullptr));
    const auto ua = args(x.data, cdim, int(cdim), L.up_w, L.up_b, ws.act.data(), f, int(f), &L.norm2_w, &L.norm2_b);
    if (gated) fused_gemv<C, prologue::rms, epilogue::gated>(ctx, ua);
    else fused_gemv<C, prologue::layer, epilogue::act>(ctx, ua);
    fused_gemv<C, prologue::none, epilogue::residual>(
        ctx, args(ws.act.data(), f, int(f), L.down_w, L.down_b, x.data, cdim, int(cdim), nullptr, nullptr));
  }
  const auto& head = m.output_embedding();
  static const tensor<T, cuda> none;
  const auto la = args(x.data, cdim, int(cdim), head, none, logits.data, c.vocab_size, c.vocab_size, &m.final_w, &m.final_b);
  if (layer) fused_gemv<C, prologue::layer, epilogue::store>(ctx, la);
  else fused_gemv<C, prologue::rms, epilogue::store>(ctx, la);
}

}  // namespace crossbatch
