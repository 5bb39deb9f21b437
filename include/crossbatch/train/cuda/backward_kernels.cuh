// The kernels behind train/cuda/backward_ops.cuh: element type conversion (with the LoRA dropout
// mask), norm / rope / activation backward passes, embedding scatter-add, and the pieces of
// attention with materialised scores (pack/unpack between (N, H, Dh) and per-kv-head blocks, the
// masked softmax that keeps the log-sum-exp, the softmax backward). Everything computes in float;
// K* / V* template parameters are the kernel-side element types (float, __half, __nv_bfloat16).
#pragma once

#include <cstdint>

#include "crossbatch/ops/activation_kind.hpp"
#include "crossbatch/ops/cuda/common.cuh"
#include "crossbatch/train/backward/dropout.hpp"

namespace crossbatch::cuda_detail {

// d act(x) / dx for every activation kind (the CPU's train_detail::gelu_grad for gelu_erf).
__device__ __forceinline__ float activation_grad(activation a, float x) {
  switch (a) {
    case activation::gelu_tanh: {
      const float k = 0.7978845608028654f, u = k * (x + 0.044715f * x * x * x);
      const float t = tanhf(u);
      return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * k * (1.0f + 3.0f * 0.044715f * x * x);
    }
    case activation::gelu_erf:
      return 0.5f * (1.0f + erff(x * 0.7071067811865476f)) +
             x * expf(-0.5f * x * x) * 0.3989422804014327f;
    case activation::silu: {
      const float s = 1.0f / (1.0f + expf(-x));
      return s * (1.0f + x * (1.0f - s));
    }
    case activation::relu:
      return x > 0 ? 1.0f : 0.0f;
    case activation::tanh: {
      const float t = tanhf(x);
      return 1.0f - t * t;
    }
  }
  return 1.0f;
}

// out (rows, cols) = scale * in (rows, cols), row strides os / is; element types may differ.
template <class O, class I>
__global__ void convert_kernel(O* out, index_t os, const I* in, index_t is, index_t rows,
                               index_t cols, float scale) {
  grid_dependency();
  const index_t n = rows * cols;
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
       i += index_t(gridDim.x) * blockDim.x) {
    const index_t r = i / cols, j = i - r * cols;
    out[r * os + j] = from_f<O>(scale * to_f(in[r * is + j]));
  }
}

// out (rows, cols) = in * lora_dropout_factor(seed, stream, r * cols + j, p) (the adapter input).
template <class O, class I>
__global__ void dropout_kernel(O* out, const I* in, index_t is, index_t rows, index_t cols,
                               std::uint64_t seed, std::uint64_t stream, float p) {
  grid_dependency();
  const index_t n = rows * cols;
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
       i += index_t(gridDim.x) * blockDim.x) {
    const index_t r = i / cols, j = i - r * cols;
    out[i] =
        from_f<O>(to_f(in[r * is + j]) * lora_dropout_factor(seed, stream, std::uint64_t(i), p));
  }
}

// dx (rows, cols) (+)= dxd * the same dropout factors (the backward of dropout_kernel).
template <class G>
__global__ void dropout_backward_kernel(G* dx, index_t ds, const float* dxd, index_t dxds,
                                        index_t rows, index_t cols, std::uint64_t seed,
                                        std::uint64_t stream, float p, bool accumulate) {
  grid_dependency();
  const index_t n = rows * cols;
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
       i += index_t(gridDim.x) * blockDim.x) {
    const index_t r = i / cols, j = i - r * cols;
    const float g = dxd[r * dxds + j] * lora_dropout_factor(seed, stream, std::uint64_t(i), p);
    G* o = dx + r * ds + j;
    *o = from_f<G>(accumulate ? to_f(*o) + g : g);
  }
}

// y (rows, cols) += scale * u (rows, cols, contiguous), y strided.
template <class Y>
__global__ void add_scaled_kernel(Y* y, index_t ys, const float* u, index_t rows, index_t cols,
                                  float scale) {
  grid_dependency();
  const index_t n = rows * cols;
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
       i += index_t(gridDim.x) * blockDim.x) {
    const index_t r = i / cols, j = i - r * cols;
    Y* o = y + r * ys + j;
    *o = from_f<Y>(to_f(*o) + scale * u[i]);
  }
}

// One block per row: dx = d norm(x) / dx applied to dy, weights w frozen; optional dw, db
// per-row partials (rows, C) summed afterwards (deterministic). layer: LayerNorm, else RMSNorm.
template <class G, class DY, class X, class W>
__global__ void norm_backward_kernel(bool layer, G* dx, const DY* dy, const X* x, index_t xs,
                                     const W* w, float* dw_part, float* db_part, int c, float eps,
                                     bool accumulate) {
  grid_dependency();
  __shared__ float red[32];
  const index_t row = blockIdx.x;
  const X* xr = x + row * xs;
  const DY* gr = dy + row * index_t(c);
  G* dr = dx + row * index_t(c);
  float s = 0;
  if (layer)
    for (int j = threadIdx.x; j < c; j += blockDim.x) s += to_f(xr[j]);
  const float mean = layer ? block_sum(s, red) / c : 0.0f;
  float v = 0;
  for (int j = threadIdx.x; j < c; j += blockDim.x) {
    const float d = to_f(xr[j]) - mean;
    v += d * d;
  }
  const float r = rsqrtf(block_sum(v, red) / c + eps);
  float mg = 0, mgx = 0;
  for (int j = threadIdx.x; j < c; j += blockDim.x) {
    const float g = to_f(gr[j]) * to_f(w[j]), xh = (to_f(xr[j]) - mean) * r;
    mg += g;
    mgx += g * xh;
    if (dw_part) dw_part[row * c + j] = to_f(gr[j]) * xh;
    if (db_part) db_part[row * c + j] = to_f(gr[j]);
  }
  mg = block_sum(mg, red) / c;
  mgx = block_sum(mgx, red) / c;
  for (int j = threadIdx.x; j < c; j += blockDim.x) {
    const float xh = (to_f(xr[j]) - mean) * r;
    const float g = r * (to_f(gr[j]) * to_f(w[j]) - (layer ? mg : 0.0f) - xh * mgx);
    dr[j] = from_f<G>(accumulate ? to_f(dr[j]) + g : g);
  }
}

// out (cols) += sum over rows of part (rows, cols) (fixed order).
static __global__ void column_sum_kernel(float* out, const float* part, int rows, int cols) {
  grid_dependency();
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= cols) return;
  float s = 0;
  for (int r = 0; r < rows; ++r) s += part[index_t(r) * cols + j];
  out[j] += s;
}

// The inverse rotation of rope_kernel on a strided (N, H, D) gradient, in place.
template <class G>
__global__ void rope_backward_kernel(G* x, index_t sn, index_t sh, index_t sd,
                                     const std::int32_t* positions, const float* inv_freq,
                                     int heads, int half_d, index_t total) {
  grid_dependency();
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < total;
       i += index_t(gridDim.x) * blockDim.x) {
    const int k = int(i % half_d);
    const index_t nh = i / half_d;
    const int h = int(nh % heads);
    const index_t n = nh / heads;
    float s, c;
    sincosf(float(positions[n]) * inv_freq[k], &s, &c);
    G* v = x + n * sn + h * sh;
    const float a = to_f(v[k * sd]), b = to_f(v[(k + half_d) * sd]);
    v[k * sd] = from_f<G>(a * c + b * s);
    v[(k + half_d) * sd] = from_f<G>(b * c - a * s);
  }
}

// Gated MLP: a = act(gate) * up with gate_up (N, 2F) = [gate | up]; d gate_up (N, 2F) from da.
template <class G, class DO, class X>
__global__ void gated_backward_kernel(activation act, G* dgu, const DO* da, const X* gu,
                                      index_t rows, index_t f) {
  grid_dependency();
  const index_t n = rows * f;
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
       i += index_t(gridDim.x) * blockDim.x) {
    const index_t r = i / f, j = i - r * f;
    const float g = to_f(gu[r * 2 * f + j]), u = to_f(gu[r * 2 * f + f + j]), d = to_f(da[i]);
    dgu[r * 2 * f + j] = from_f<G>(d * u * activation_grad(act, g));
    dgu[r * 2 * f + f + j] = from_f<G>(d * apply_activation(act, g));
  }
}

// Plain MLP: a = act(u); du = da * act'(u).
template <class G, class DY, class X>
__global__ void activation_backward_kernel(activation act, G* du, const DY* da, const X* u,
                                           index_t n) {
  grid_dependency();
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
       i += index_t(gridDim.x) * blockDim.x)
    du[i] = from_f<G>(to_f(da[i]) * activation_grad(act, to_f(u[i])));
}

// table (V, C) rows ids[n] += dx (N, C) row n (ids outside [0, V) skipped). Float atomics.
template <class G>
__global__ void embedding_backward_kernel(float* table, index_t ts, const G* dx, index_t xs,
                                          const std::int32_t* ids, int v, int c) {
  grid_dependency();
  const std::int32_t id = ids[blockIdx.x];
  if (id < 0 || id >= v) return;
  for (int j = threadIdx.x; j < c; j += blockDim.x)
    atomicAdd(table + id * ts + j, to_f(dx[blockIdx.x * xs + j]));
}

// ---- attention with materialised scores ----
// Packed layouts: q, dq, o, do: (B, Hkv, g, T, Dh) = (B, H, T, Dh) (the g = H / Hkv query heads
// of one kv head stacked, so one batched product per kv head sums GQA gradients); k, v:
// (B, Hkv, T, Dh). Strided side: (B, T, heads, Dh) with strides (sb, st, sh, 1).

// packed (B, heads, T, Dh) = x (B, T, heads, Dh) with strides (sb, st, sh, 1), times scale.
template <class O, class I>
__global__ void pack_heads_kernel(O* packed, const I* x, index_t sb, index_t st, index_t sh, int b,
                                  int t, int heads, int dh, float scale) {
  grid_dependency();
  const index_t n = index_t(b) * heads * t * dh;
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
       i += index_t(gridDim.x) * blockDim.x) {
    const int d = int(i % dh);
    index_t r = i / dh;
    const int tt = int(r % t);
    r /= t;
    const int h = int(r % heads);
    const index_t bb = r / heads;
    packed[i] = from_f<O>(scale * to_f(x[bb * sb + tt * st + h * sh + d]));
  }
}

// x (B, T, heads, Dh) strided (+)= packed (B, heads, T, Dh) (float or the packed type).
template <class O, class I>
__global__ void unpack_heads_kernel(O* x, index_t sb, index_t st, index_t sh, const I* packed,
                                    int b, int t, int heads, int dh, bool accumulate) {
  grid_dependency();
  const index_t n = index_t(b) * heads * t * dh;
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
       i += index_t(gridDim.x) * blockDim.x) {
    const int d = int(i % dh);
    index_t r = i / dh;
    const int tt = int(r % t);
    r /= t;
    const int h = int(r % heads);
    const index_t bb = r / heads;
    O* o = x + bb * sb + tt * st + h * sh + d;
    const float v = to_f(packed[i]);
    *o = from_f<O>(accumulate ? to_f(*o) + v : v);
  }
}

// Row (bh, i) of scores s (B*H, T, T), already scaled: p = softmax over keys j <= i with
// valid[b, j] (zero elsewhere), lse[bh, i] = log sum exp (-inf when no key is visible).
// With `recompute`, p = exp(s - lse) from the stored lse instead.
template <class P>
__global__ void masked_softmax_kernel(P* p, float* lse, const float* s, const std::int32_t* valid,
                                      int h, int t, bool recompute) {
  grid_dependency();
  __shared__ float red[32];
  const index_t row = blockIdx.x;  // (b * h + head) * t + i
  const int i = int(row % t);
  const int b = int(row / (index_t(t) * h));
  const float* sr = s + row * t;
  P* pr = p + row * t;
  const std::int32_t* vr = valid + index_t(b) * t;
  float l;
  if (recompute) {
    l = lse[row];
  } else {
    float m = -INFINITY;
    for (int j = threadIdx.x; j <= i; j += blockDim.x)
      if (vr[j]) m = fmaxf(m, sr[j]);
    m = block_max(m, red);
    float sum = 0;
    if (m != -INFINITY)
      for (int j = threadIdx.x; j <= i; j += blockDim.x)
        if (vr[j]) sum += expf(sr[j] - m);
    sum = block_sum(sum, red);
    l = m == -INFINITY ? -INFINITY : m + logf(sum);
    if (threadIdx.x == 0) lse[row] = l;
  }
  for (int j = threadIdx.x; j < t; j += blockDim.x)
    pr[j] = from_f<P>(j <= i && vr[j] && l != -INFINITY ? expf(sr[j] - l) : 0.0f);
}

// Row (bh, i): ds = p (dp - sum_j p dp) written over p (same element type), times scale.
template <class P>
__global__ void softmax_backward_kernel(P* p_ds, const float* dp, int t, float scale) {
  grid_dependency();
  __shared__ float red[32];
  const index_t row = blockIdx.x;
  P* pr = p_ds + row * t;
  const float* dr = dp + row * t;
  float s = 0;
  for (int j = threadIdx.x; j < t; j += blockDim.x) s += to_f(pr[j]) * dr[j];
  s = block_sum(s, red);
  for (int j = threadIdx.x; j < t; j += blockDim.x) {
    const float pj = to_f(pr[j]);
    pr[j] = from_f<P>(scale * pj * (dr[j] - s));
  }
}

// ---- forward pieces with mixed element types ----

// One block per row: out = norm(x) * w (+ b), in float without intermediate roundings.
template <class O, class X, class W>
__global__ void norm_forward_kernel(bool layer, O* out, index_t os, const X* x, index_t xs,
                                    const W* w, const W* b, int c, float eps) {
  grid_dependency();
  __shared__ float red[32];
  const X* xr = x + blockIdx.x * xs;
  O* orow = out + blockIdx.x * os;
  float s = 0;
  if (layer)
    for (int j = threadIdx.x; j < c; j += blockDim.x) s += to_f(xr[j]);
  const float mean = layer ? block_sum(s, red) / c : 0.0f;
  float v = 0;
  for (int j = threadIdx.x; j < c; j += blockDim.x) {
    const float d = to_f(xr[j]) - mean;
    v += d * d;
  }
  const float r = rsqrtf(block_sum(v, red) / c + eps);
  for (int j = threadIdx.x; j < c; j += blockDim.x)
    orow[j] = from_f<O>((to_f(xr[j]) - mean) * r * to_f(w[j]) + (b ? to_f(b[j]) : 0.0f));
}

// y (rows, cols) strided += x (rows, cols) strided.
template <class Y, class X>
__global__ void add_rows_kernel(Y* y, index_t ys, const X* x, index_t xs, index_t rows,
                                index_t cols) {
  grid_dependency();
  const index_t n = rows * cols;
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
       i += index_t(gridDim.x) * blockDim.x) {
    const index_t r = i / cols, j = i - r * cols;
    Y* o = y + r * ys + j;
    *o = from_f<Y>(to_f(*o) + to_f(x[r * xs + j]));
  }
}

// y (rows, cols) strided += bias (cols).
template <class Y, class B>
__global__ void bias_add_kernel(Y* y, index_t ys, const B* bias, index_t rows, index_t cols) {
  grid_dependency();
  const index_t n = rows * cols;
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
       i += index_t(gridDim.x) * blockDim.x) {
    const index_t r = i / cols, j = i - r * cols;
    Y* o = y + r * ys + j;
    *o = from_f<Y>(to_f(*o) + to_f(bias[j]));
  }
}

template <class O, class X>
__global__ void activation_forward_kernel(activation act, O* out, const X* x, index_t n) {
  grid_dependency();
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
       i += index_t(gridDim.x) * blockDim.x)
    out[i] = from_f<O>(apply_activation(act, to_f(x[i])));
}

// out (N, F) = act(gate) * up, gate_up (N, 2F), without rounding act(gate).
template <class O, class X>
__global__ void gated_forward_kernel(activation act, O* out, const X* gu, index_t rows, index_t f) {
  grid_dependency();
  const index_t n = rows * f;
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
       i += index_t(gridDim.x) * blockDim.x) {
    const index_t r = i / f, j = i - r * f;
    out[i] =
        from_f<O>(apply_activation(act, to_f(gu[r * 2 * f + j])) * to_f(gu[r * 2 * f + f + j]));
  }
}

// x (N, C) (+)= table[ids[n]] (ids checked on the host before the launch).
template <class O, class W>
__global__ void embedding_forward_kernel(O* x, index_t xs, const std::int32_t* ids, const W* table,
                                         index_t ts, int c, bool accumulate) {
  grid_dependency();
  const std::int32_t id = ids[blockIdx.x];
  O* o = x + blockIdx.x * xs;
  const W* w = table + id * ts;
  for (int j = threadIdx.x; j < c; j += blockDim.x)
    o[j] = from_f<O>((accumulate ? to_f(o[j]) : 0.0f) + to_f(w[j]));
}

}  // namespace crossbatch::cuda_detail
