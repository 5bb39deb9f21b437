// The CUDA ops of training (float32), the same contracts as train/ops.hpp so that the
// device-generic objective, mixer backward and AdamW run unchanged on the GPU
// (tests/cuda/test_mix_train.cu compares them with the CPU): a tiled SGEMM with either operand
// transposed, the backward passes of the mixer's parts, the frozen final norm and its backward,
// softmax cross-entropy, row gather/scatter, reductions and the AdamW update. Reductions over rows
// are deterministic (no float atomics).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "crossbatch/mix/config.hpp"
#include "crossbatch/mix/cuda/ops.cuh"
#include "crossbatch/ops/cpu/norm.hpp"  // norm_kind
#include "crossbatch/ops/cuda/common.cuh"
#include "crossbatch/train/ops.hpp"

namespace crossbatch {
namespace cuda_detail {

constexpr int gemm_tile = 64, gemm_k = 16;

// c (m, n) = alpha op(a) op(b) + beta c; 16 x 16 threads, each 4 x 4 outputs of a 64 x 64 tile.
template <bool TA, bool TB>
__global__ void __launch_bounds__(256)
    sgemm_kernel(float* c, index_t ldc, const float* a, index_t lda, const float* b, index_t ldb,
                 int m, int n, int k, float alpha, float beta) {
  grid_dependency();
  __shared__ float as[gemm_k][gemm_tile + 1];
  __shared__ float bs[gemm_k][gemm_tile + 1];
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 16 + tx;
  const int row0 = blockIdx.y * gemm_tile, col0 = blockIdx.x * gemm_tile;
  float acc[4][4] = {};
  for (int k0 = 0; k0 < k; k0 += gemm_k) {
    for (int l = tid; l < gemm_tile * gemm_k; l += 256) {
      int mm, kk;
      if (TA)
        kk = l / gemm_tile, mm = l % gemm_tile;  // a[k][m]: consecutive m
      else
        mm = l / gemm_k, kk = l % gemm_k;  // a[m][k]: consecutive k
      const int r = row0 + mm, q = k0 + kk;
      as[kk][mm] = r < m && q < k ? (TA ? a[index_t(q) * lda + r] : a[index_t(r) * lda + q]) : 0.0f;
      int nn, kb;
      if (TB)
        nn = l / gemm_k, kb = l % gemm_k;  // b[n][k]
      else
        kb = l / gemm_tile, nn = l % gemm_tile;  // b[k][n]
      const int col = col0 + nn, qb = k0 + kb;
      bs[kb][nn] =
          col < n && qb < k ? (TB ? b[index_t(col) * ldb + qb] : b[index_t(qb) * ldb + col]) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < gemm_k; ++kk) {
      float af[4], bf[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) af[i] = as[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) bf[j] = bs[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += af[i] * bf[j];
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int r = row0 + ty + 16 * i;
    if (r >= m) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int col = col0 + tx + 16 * j;
      if (col >= n) continue;
      float* p = c + index_t(r) * ldc + col;
      *p = alpha * acc[i][j] + (beta == 0.0f ? 0.0f : beta * *p);
    }
  }
}

// Block (i, h): G[h, i, j] = scale * P_ij (dP_ij - sum_l P_il dP_il), dP_ij = dx_i . v_j.
static __global__ void attend_dscores_kernel(float* g, const float* probs, const float* dx,
                                             index_t dxs, const float* v, index_t vs, int b, int dh,
                                             float scale) {
  grid_dependency();
  extern __shared__ float dp[];
  __shared__ float red[32];
  const int i = blockIdx.x, h = blockIdx.y, off = h * dh;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const float* p = probs + (index_t(h) * b + i) * b;
  for (int j = warp; j < b; j += warps) {
    float s = 0;
    if (p[j] != 0.0f)
      for (int d = lane; d < dh; d += 32) s += dx[i * dxs + off + d] * v[j * vs + off + d];
    s = warp_sum(s);
    if (lane == 0) dp[j] = s;
  }
  __syncthreads();
  float pp = 0;
  for (int j = threadIdx.x; j < b; j += blockDim.x) pp += p[j] * dp[j];
  pp = block_sum(pp, red);
  for (int j = threadIdx.x; j < b; j += blockDim.x)
    g[(index_t(h) * b + i) * b + j] = scale * p[j] * (dp[j] - pp);
}

// Block (r, h): dq_r, dk_r, dv_r of head h from G and P (see cross_attend_backward).
static __global__ void attend_grads_kernel(float* dq, float* dk, float* dv, index_t gs,
                                           const float* g, const float* probs, const float* dx,
                                           index_t dxs, const float* q, const float* k, index_t ps,
                                           const float* inv_norms, int b, int dh, bool cosine) {
  grid_dependency();
  extern __shared__ float dn[];  // (dh) cosine only
  __shared__ float red[32];
  const int r = blockIdx.x, h = blockIdx.y, off = h * dh;
  const float* gh = g + index_t(h) * b * b;
  const float* ph = probs + index_t(h) * b * b;
  float nd = 0;
  for (int d = threadIdx.x; d < dh; d += blockDim.x) {
    float aq = 0, ak = 0, av = 0;
    for (int j = 0; j < b; ++j) {
      const float grj = gh[index_t(r) * b + j], gjr = gh[index_t(j) * b + r];
      if (cosine) {
        aq += (grj + gjr) * q[j * ps + off + d] * inv_norms[j];
      } else {
        aq += grj * k[j * ps + off + d];
        ak += gjr * q[j * ps + off + d];
      }
      av += ph[index_t(j) * b + r] * dx[j * dxs + off + d];
    }
    dv[r * gs + off + d] = av;
    if (cosine) {
      dn[d] = aq;
      nd += q[r * ps + off + d] * inv_norms[r] * aq;
    } else {
      dq[r * gs + off + d] = aq;
      dk[r * gs + off + d] = ak;
    }
  }
  if (!cosine) return;
  nd = block_sum(nd, red);
  const float inv = inv_norms[r];
  for (int d = threadIdx.x; d < dh; d += blockDim.x)
    dq[r * gs + off + d] = (dn[d] - q[r * ps + off + d] * inv * nd) * inv;
}

// Per row: dinfo, dgate_logits and (alpha/scale) the row's share of dmix in part[i].
static __global__ void combine_backward_kernel(combine_mode mode, float* dinfo, float* dgl,
                                               float* part, const float* dy, index_t dys,
                                               const float* h, index_t hs, const float* info,
                                               index_t is, const float* mix, const float* gl,
                                               const std::int32_t* partners, int c) {
  grid_dependency();
  __shared__ float red[32];
  const int i = blockIdx.x;
  const bool alone = partners[i] == 0;
  const float m = mode == combine_mode::gate ? 0.0f : mix[0];
  float acc = 0;
  for (int j = threadIdx.x; j < c; j += blockDim.x) {
    const float g = alone ? 0.0f : dy[i * dys + j], iv = info[i * is + j];
    if (mode == combine_mode::gate) {
      const float s = 1.0f / (1.0f + expf(-gl[index_t(i) * c + j]));
      dinfo[index_t(i) * c + j] = g * s;
      dgl[index_t(i) * c + j] = g * iv * s * (1.0f - s);
    } else {
      dinfo[index_t(i) * c + j] = g * m;
      acc += g * (mode == combine_mode::alpha ? iv - h[i * hs + j] : iv);
    }
  }
  if (mode == combine_mode::gate) return;
  acc = block_sum(acc, red);
  if (threadIdx.x == 0) part[i] = acc;
}

// out[0] += sum of part (n); one block.
static __global__ void add_sum_kernel(float* out, const float* part, int n) {
  grid_dependency();
  __shared__ float red[32];
  float s = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += part[i];
  s = block_sum(s, red);
  if (threadIdx.x == 0) out[0] += s;
}

// Per row of gate_input_backward: dinfo += and the four per-row parameter contributions.
static __global__ void gate_input_backward_kernel(float* dinfo, float* t_hw, float* t_hb,
                                                  float* t_aw, float* t_ab, const float* dz,
                                                  const float* h, index_t hs, const float* info,
                                                  index_t is, const float* stats, const float* hw,
                                                  const float* hb, const float* aw, const float* ab,
                                                  int c) {
  grid_dependency();
  __shared__ float red[32];
  const int i = blockIdx.x;
  const float mh = stats[i * 4], ih = stats[i * 4 + 1], ma = stats[i * 4 + 2],
              ia = stats[i * 4 + 3];
  const float* dzr = dz + index_t(i) * 3 * c;
  float sg = 0, sgx = 0;
  for (int j = threadIdx.x; j < c; j += blockDim.x) {
    const float xh = (h[i * hs + j] - mh) * ih, xa = (info[i * is + j] - ma) * ia;
    const float lh = xh * hw[j] + hb[j], la = xa * aw[j] + ab[j];
    const float dlh = dzr[j] + dzr[2 * c + j] * la, dla = dzr[c + j] + dzr[2 * c + j] * lh;
    const index_t o = index_t(i) * c + j;
    t_hw[o] = dlh * xh;
    t_hb[o] = dlh;
    t_aw[o] = dla * xa;
    t_ab[o] = dla;
    const float gx = dla * aw[j];
    sg += gx;
    sgx += gx * xa;
  }
  const float mg = block_sum(sg, red) / c, mgx = block_sum(sgx, red) / c;
  for (int j = threadIdx.x; j < c; j += blockDim.x) {
    const float xa = (info[i * is + j] - ma) * ia;
    const float gx = t_ab[index_t(i) * c + j] * aw[j];
    dinfo[index_t(i) * c + j] += ia * (gx - mg - xa * mgx);
  }
}

static __global__ void gelu_backward_kernel(float* du, const float* da, const float* u, index_t n) {
  grid_dependency();
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
       i += index_t(gridDim.x) * blockDim.x) {
    const float x = u[i];
    const float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
    const float pdf = expf(-0.5f * x * x) * 0.39894228040143268f;
    du[i] = da[i] * (cdf + x * pdf);
  }
}

// db[j] += sum_i dy[i][j]; one thread per column (rows are few: a batch).
static __global__ void col_sum_kernel(float* db, const float* dy, index_t dys, int rows, int cols) {
  grid_dependency();
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= cols) return;
  float s = 0;
  for (int i = 0; i < rows; ++i) s += dy[index_t(i) * dys + j];
  db[j] += s;
}

static __global__ void frozen_norm_kernel(bool layer, float* out, const float* x, index_t xs,
                                          const float* w, const float* b, int c, float eps) {
  grid_dependency();
  __shared__ float red[32];
  const int i = blockIdx.x;
  const float* xr = x + i * xs;
  float mean = 0;
  if (layer) {
    float s = 0;
    for (int j = threadIdx.x; j < c; j += blockDim.x) s += xr[j];
    mean = block_sum(s, red) / c;
  }
  float ss = 0;
  for (int j = threadIdx.x; j < c; j += blockDim.x) ss += (xr[j] - mean) * (xr[j] - mean);
  const float r = 1.0f / sqrtf(block_sum(ss, red) / c + eps);
  for (int j = threadIdx.x; j < c; j += blockDim.x)
    out[index_t(i) * c + j] = (xr[j] - mean) * r * w[j] + (layer ? b[j] : 0.0f);
}

static __global__ void frozen_norm_backward_kernel(bool layer, float* dx, const float* dy,
                                                   const float* x, const float* w, int c,
                                                   float eps) {
  grid_dependency();
  __shared__ float red[32];
  const index_t o = index_t(blockIdx.x) * c;
  float mean = 0;
  if (layer) {
    float s = 0;
    for (int j = threadIdx.x; j < c; j += blockDim.x) s += x[o + j];
    mean = block_sum(s, red) / c;
  }
  float ss = 0;
  for (int j = threadIdx.x; j < c; j += blockDim.x) ss += (x[o + j] - mean) * (x[o + j] - mean);
  const float r = 1.0f / sqrtf(block_sum(ss, red) / c + eps);
  float sg = 0, sgx = 0;
  for (int j = threadIdx.x; j < c; j += blockDim.x) {
    const float g = dy[o + j] * w[j];
    sg += g;
    sgx += g * (x[o + j] - mean) * r;
  }
  const float mg = block_sum(sg, red) / c, mgx = block_sum(sgx, red) / c;
  for (int j = threadIdx.x; j < c; j += blockDim.x)
    dx[o + j] = r * (dy[o + j] * w[j] - (layer ? mg : 0.0f) - (x[o + j] - mean) * r * mgx);
}

// Per row: loss[i] = logsumexp - logit[target]; logits become (softmax - onehot) * scale if scale
// != 0.
static __global__ void softmax_xent_kernel(float* logits, float* loss, const std::int32_t* targets,
                                           int v, float scale) {
  grid_dependency();
  __shared__ float red[32];
  float* row = logits + index_t(blockIdx.x) * v;
  const int t = targets[blockIdx.x];
  float m = -INFINITY;
  for (int j = threadIdx.x; j < v; j += blockDim.x) m = fmaxf(m, row[j]);
  m = block_max(m, red);
  float s = 0;
  for (int j = threadIdx.x; j < v; j += blockDim.x) s += expf(row[j] - m);
  const float lse = m + logf(block_sum(s, red));
  const float target_logit = row[t];
  __syncthreads();
  if (threadIdx.x == 0) loss[blockIdx.x] = lse - target_logit;
  if (scale == 0.0f) return;
  for (int j = threadIdx.x; j < v; j += blockDim.x)
    row[j] = expf(row[j] - lse) * scale - (j == t ? scale : 0.0f);
}

static __global__ void gather_rows_kernel(float* dst, index_t ds, const float* src, index_t ss,
                                          const std::int32_t* idx, int c) {
  grid_dependency();
  const int r = blockIdx.x, s = idx[r];
  for (int j = threadIdx.x; j < c; j += blockDim.x)
    dst[r * ds + j] = s < 0 ? 0.0f : src[index_t(s) * ss + j];
}

static __global__ void scatter_rows_kernel(float* dst, index_t ds, const float* src, index_t ss,
                                           const std::int32_t* idx, int c) {
  grid_dependency();
  const int r = blockIdx.x, d = idx[r];
  if (d < 0) return;
  for (int j = threadIdx.x; j < c; j += blockDim.x) dst[index_t(d) * ds + j] = src[r * ss + j];
}

static __global__ void fill_kernel(float* x, index_t n, float value) {
  grid_dependency();
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
       i += index_t(gridDim.x) * blockDim.x)
    x[i] = value;
}

// Per block: part[block] = sum of squares of its grid-stride slice.
static __global__ void sum_squares_kernel(float* part, const float* x, index_t n) {
  grid_dependency();
  __shared__ float red[32];
  float s = 0;
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
       i += index_t(gridDim.x) * blockDim.x)
    s += x[i] * x[i];
  s = block_sum(s, red);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}

static __global__ void adamw_kernel(float* p, const float* g, float* m, float* v, index_t n,
                                    float lr, float b1, float b2, float eps, float wd, float c1,
                                    float c2, float gscale) {
  grid_dependency();
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
       i += index_t(gridDim.x) * blockDim.x) {
    const float gi = g[i] * gscale;
    const float mi = b1 * m[i] + (1.0f - b1) * gi, vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] -= lr * ((mi / c1) / (sqrtf(vi / c2) + eps) + wd * p[i]);
  }
}

inline tensor<float, cuda> scratch_floats(index_t n) {
  return tensor<float, cuda>({n > 0 ? n : 1});
}

}  // namespace cuda_detail

template <class S>
requires std::is_same_v<S, float>
void gemm(const context<cuda>& ctx, tensor_view<S, cuda> c, tensor_view<const S, cuda> a,
          tensor_view<const S, cuda> b, bool ta, bool tb, S alpha = S(1), S beta = S(0)) {
  using namespace cuda_detail;
  const index_t m = ta ? a.shape[1] : a.shape[0], k = ta ? a.shape[0] : a.shape[1];
  const index_t kb = tb ? b.shape[1] : b.shape[0], n = tb ? b.shape[0] : b.shape[1];
  require<shape_error>(k == kb && c.shape == shape_t{m, n},
                       "gemm: " + to_string(a.shape) + (ta ? "^T" : "") + " x " +
                           to_string(b.shape) + (tb ? "^T" : "") + " -> " + to_string(c.shape));
  if (m == 0 || n == 0) return;
  const index_t ldc = row_stride(c, "gemm c"), lda = row_stride(a, "gemm a"),
                ldb = row_stride(b, "gemm b");
  const dim3 grid(unsigned((n + gemm_tile - 1) / gemm_tile),
                  unsigned((m + gemm_tile - 1) / gemm_tile)),
      block(16, 16);
  auto run = [&](auto kernel) {
    launch(ctx, "gemm", kernel, grid, block, 0, c.data, ldc, a.data, lda, b.data, ldb, int(m),
           int(n), int(k), alpha, beta);
  };
  if (!ta && !tb)
    run(sgemm_kernel<false, false>);
  else if (ta && !tb)
    run(sgemm_kernel<true, false>);
  else if (!ta && tb)
    run(sgemm_kernel<false, true>);
  else
    run(sgemm_kernel<true, true>);
}

template <class S>
void cross_attend_backward(const context<cuda>& ctx, tensor_view<S, cuda> dq,
                           tensor_view<S, cuda> dk, tensor_view<S, cuda> dv,
                           tensor_view<const S, cuda> dx, tensor_view<const S, cuda> probs,
                           tensor_view<const S, cuda> inv_norms, tensor_view<const S, cuda> q,
                           tensor_view<const S, cuda> k, tensor_view<const S, cuda> v, int heads,
                           float scale, bool cosine) {
  static_assert(std::is_same_v<S, float>, "training on CUDA is float32");
  using namespace cuda_detail;
  const index_t b = q.shape[0], c = q.shape[1], dh = c / heads;
  require<shape_error>(
      dx.shape == shape_t{b, c} && dq.shape == dx.shape && dv.shape == dx.shape &&
          probs.shape == shape_t{heads, b, b},
      "cross_attend_backward: dx " + to_string(dx.shape) + ", probs " + to_string(probs.shape));
  const index_t gs = row_stride(dq, "cross_attend_backward dq"),
                ps = row_stride(q, "cross_attend_backward q");
  require<shape_error>(row_stride(dv, "dv") == gs && (cosine || row_stride(dk, "dk") == gs) &&
                           row_stride(v, "v") == ps && (cosine || row_stride(k, "k") == ps),
                       "cross_attend_backward: q, k, v (and dq, dk, dv) must share one row stride");
  if (b == 0) return;
  auto g = scratch_floats(heads * b * b);
  launch(ctx, "attend_dscores", attend_dscores_kernel, dim3(unsigned(b), unsigned(heads)),
         dim3(128), sizeof(float) * b, g.data(), probs.data, dx.data, row_stride(dx, "dx"), v.data,
         ps, int(b), int(dh), scale);
  launch(ctx, "attend_grads", attend_grads_kernel, dim3(unsigned(b), unsigned(heads)), dim3(128),
         cosine ? sizeof(float) * dh : 0, dq.data, cosine ? dq.data : dk.data, dv.data, gs,
         static_cast<const float*>(g.data()), probs.data, dx.data, row_stride(dx, "dx"), q.data,
         cosine ? q.data : k.data, ps, inv_norms.data, int(b), int(dh), cosine);
  ctx.synchronize();  // g is freed on return
}

template <class S>
void combine_backward(const context<cuda>& ctx, combine_mode mode, tensor_view<S, cuda> dinfo,
                      tensor_view<S, cuda> dmix, tensor_view<S, cuda> dgate_logits,
                      tensor_view<const S, cuda> dy, tensor_view<const S, cuda> h,
                      tensor_view<const S, cuda> info, tensor_view<const S, cuda> mix,
                      tensor_view<const S, cuda> gate_logits,
                      tensor_view<const std::int32_t, cuda> partners) {
  static_assert(std::is_same_v<S, float>, "training on CUDA is float32");
  using namespace cuda_detail;
  const index_t b = h.shape[0], c = h.shape[1];
  require<shape_error>(
      dinfo.shape == h.shape && dinfo.contiguous() && dy.shape == h.shape &&
          info.shape == h.shape &&
          (mode != combine_mode::gate || (dgate_logits.contiguous() && gate_logits.contiguous())),
      "combine_backward: h " + to_string(h.shape) + ", dy " + to_string(dy.shape));
  auto part = scratch_floats(b);
  const bool gate = mode == combine_mode::gate;
  launch(ctx, "combine_backward", combine_backward_kernel, dim3(unsigned(b)), dim3(mix_threads(c)),
         0, mode, dinfo.data, gate ? dgate_logits.data : nullptr, part.data(), dy.data,
         row_stride(dy, "dy"), h.data, row_stride(h, "h"), info.data, row_stride(info, "info"),
         gate ? nullptr : mix.data, gate ? gate_logits.data : nullptr, partners.data, int(c));
  if (!gate)
    launch(ctx, "add_sum", add_sum_kernel, dim3(1), dim3(256), 0, dmix.data,
           static_cast<const float*>(part.data()), int(b));
  ctx.synchronize();
}

template <class S>
void gate_input_backward(const context<cuda>& ctx, tensor_view<S, cuda> dinfo,
                         tensor_view<S, cuda> d_ln_h_w, tensor_view<S, cuda> d_ln_h_b,
                         tensor_view<S, cuda> d_ln_a_w, tensor_view<S, cuda> d_ln_a_b,
                         tensor_view<const S, cuda> dz, tensor_view<const S, cuda> h,
                         tensor_view<const S, cuda> info, tensor_view<const S, cuda> stats,
                         tensor_view<const S, cuda> ln_h_w, tensor_view<const S, cuda> ln_h_b,
                         tensor_view<const S, cuda> ln_a_w, tensor_view<const S, cuda> ln_a_b) {
  static_assert(std::is_same_v<S, float>, "training on CUDA is float32");
  using namespace cuda_detail;
  const index_t b = h.shape[0], c = h.shape[1];
  require<shape_error>(dz.shape == shape_t{b, 3 * c} && dz.contiguous() && dinfo.shape == h.shape &&
                           dinfo.contiguous(),
                       "gate_input_backward: dz " + to_string(dz.shape));
  tensor<float, cuda> t({4, b, c});
  float* tp = t.data();
  launch(ctx, "gate_input_backward", gate_input_backward_kernel, dim3(unsigned(b)),
         dim3(mix_threads(c)), 0, dinfo.data, tp, tp + b * c, tp + 2 * b * c, tp + 3 * b * c,
         dz.data, h.data, row_stride(h, "h"), info.data, row_stride(info, "info"), stats.data,
         ln_h_w.data, ln_h_b.data, ln_a_w.data, ln_a_b.data, int(c));
  float* outs[4] = {d_ln_h_w.data, d_ln_h_b.data, d_ln_a_w.data, d_ln_a_b.data};
  for (int i = 0; i < 4; ++i)
    launch(ctx, "col_sum", col_sum_kernel, dim3(blocks_for(c, 128)), dim3(128), 0, outs[i],
           static_cast<const float*>(tp + i * b * c), c, int(b), int(c));
  ctx.synchronize();
}

template <class S>
void gelu_backward(const context<cuda>& ctx, tensor_view<S, cuda> du, tensor_view<const S, cuda> da,
                   tensor_view<const S, cuda> u) {
  static_assert(std::is_same_v<S, float>, "training on CUDA is float32");
  require<shape_error>(du.shape == u.shape && da.shape == u.shape && du.contiguous() &&
                           da.contiguous() && u.contiguous(),
                       "gelu_backward: shapes differ");
  using namespace cuda_detail;
  launch(ctx, "gelu_backward", gelu_backward_kernel, dim3(blocks_for(u.size(), 256, 4096)),
         dim3(256), 0, du.data, da.data, u.data, u.size());
}

template <class S>
void col_sum(const context<cuda>& ctx, tensor_view<S, cuda> db, tensor_view<const S, cuda> dy) {
  static_assert(std::is_same_v<S, float>, "training on CUDA is float32");
  using namespace cuda_detail;
  require<shape_error>(dy.rank() == 2 && db.size() == dy.shape[1],
                       "col_sum: db " + to_string(db.shape) + ", dy " + to_string(dy.shape));
  launch(ctx, "col_sum", col_sum_kernel, dim3(blocks_for(dy.shape[1], 128)), dim3(128), 0, db.data,
         dy.data, row_stride(dy, "dy"), int(dy.shape[0]), int(dy.shape[1]));
}

template <class S>
void frozen_norm(const context<cuda>& ctx, norm_kind kind, tensor_view<S, cuda> out,
                 tensor_view<const S, cuda> x, tensor_view<const S, cuda> w,
                 tensor_view<const S, cuda> b, float eps) {
  static_assert(std::is_same_v<S, float>, "training on CUDA is float32");
  using namespace cuda_detail;
  const index_t n = x.shape[0], c = x.shape[1];
  require<shape_error>(out.shape == x.shape && out.contiguous() && w.size() == c,
                       "frozen_norm: x " + to_string(x.shape));
  launch(ctx, "frozen_norm", frozen_norm_kernel, dim3(unsigned(n)), dim3(mix_threads(c)), 0,
         kind == norm_kind::layer, out.data, x.data, row_stride(x, "x"), w.data,
         kind == norm_kind::layer ? b.data : nullptr, int(c), eps);
}

template <class S>
void frozen_norm_backward(const context<cuda>& ctx, norm_kind kind, tensor_view<S, cuda> dx,
                          tensor_view<const S, cuda> dy, tensor_view<const S, cuda> x,
                          tensor_view<const S, cuda> w, float eps) {
  static_assert(std::is_same_v<S, float>, "training on CUDA is float32");
  using namespace cuda_detail;
  const index_t n = x.shape[0], c = x.shape[1];
  require<shape_error>(dx.shape == x.shape && dy.shape == x.shape && dx.contiguous() &&
                           dy.contiguous() && x.contiguous(),
                       "frozen_norm_backward: x " + to_string(x.shape));
  launch(ctx, "frozen_norm_backward", frozen_norm_backward_kernel, dim3(unsigned(n)),
         dim3(mix_threads(c)), 0, kind == norm_kind::layer, dx.data, dy.data, x.data, w.data,
         int(c), eps);
}

template <class S>
double softmax_xent(const context<cuda>& ctx, tensor_view<S, cuda> logits,
                    tensor_view<const std::int32_t, cuda> targets, S grad_scale) {
  static_assert(std::is_same_v<S, float>, "training on CUDA is float32");
  using namespace cuda_detail;
  const index_t n = logits.shape[0], v = logits.shape[1];
  require<shape_error>(logits.rank() == 2 && logits.contiguous() && targets.size() == n,
                       "softmax_xent: logits " + to_string(logits.shape));
  std::vector<std::int32_t> ht(n);
  device_traits<cuda>::download(ht.data(), targets.data, sizeof(std::int32_t) * n);
  for (auto t : ht)
    require(t >= 0 && t < v, "softmax_xent: target id " + std::to_string(t) +
                                 " outside the vocabulary of " + std::to_string(v));
  auto loss = scratch_floats(n);
  launch(ctx, "softmax_xent", softmax_xent_kernel, dim3(unsigned(n)), dim3(512), 0, logits.data,
         loss.data(), targets.data, int(v), float(grad_scale));
  ctx.synchronize();
  std::vector<float> h(n);
  device_traits<cuda>::download(h.data(), loss.data(), sizeof(float) * n);
  double total = 0;
  for (float x : h) total += x;
  return total;
}

template <class S>
void gather_rows(const context<cuda>& ctx, tensor_view<S, cuda> dst, tensor_view<const S, cuda> src,
                 tensor_view<const std::int32_t, cuda> idx) {
  static_assert(std::is_same_v<S, float>, "training on CUDA is float32");
  using namespace cuda_detail;
  require<shape_error>(
      dst.rank() == 2 && dst.shape[0] == idx.size() && dst.shape[1] == src.shape[1],
      "gather_rows: shapes");
  launch(ctx, "gather_rows", gather_rows_kernel, dim3(unsigned(idx.size())),
         dim3(mix_threads(dst.shape[1])), 0, dst.data, row_stride(dst, "dst"), src.data,
         row_stride(src, "src"), idx.data, int(dst.shape[1]));
}

template <class S>
void scatter_rows(const context<cuda>& ctx, tensor_view<S, cuda> dst,
                  tensor_view<const S, cuda> src, tensor_view<const std::int32_t, cuda> idx) {
  static_assert(std::is_same_v<S, float>, "training on CUDA is float32");
  using namespace cuda_detail;
  require<shape_error>(
      src.rank() == 2 && src.shape[0] == idx.size() && dst.shape[1] == src.shape[1],
      "scatter_rows: shapes");
  launch(ctx, "scatter_rows", scatter_rows_kernel, dim3(unsigned(idx.size())),
         dim3(mix_threads(src.shape[1])), 0, dst.data, row_stride(dst, "dst"), src.data,
         row_stride(src, "src"), idx.data, int(src.shape[1]));
}

template <class S>
void fill(const context<cuda>& ctx, tensor_view<S, cuda> x, S value) {
  static_assert(std::is_same_v<S, float>, "training on CUDA is float32");
  require<shape_error>(x.contiguous(), "fill: needs a contiguous view");
  using namespace cuda_detail;
  launch(ctx, "fill", fill_kernel, dim3(blocks_for(x.size(), 256, 4096)), dim3(256), 0, x.data,
         x.size(), float(value));
}

template <class S>
double sum_squares(const context<cuda>& ctx, tensor_view<const S, cuda> x) {
  static_assert(std::is_same_v<S, float>, "training on CUDA is float32");
  require<shape_error>(x.contiguous(), "sum_squares: needs a contiguous view");
  using namespace cuda_detail;
  const unsigned blocks = blocks_for(x.size(), 256, 1024);
  auto part = scratch_floats(blocks);
  launch(ctx, "sum_squares", sum_squares_kernel, dim3(blocks), dim3(256), 0, part.data(), x.data,
         x.size());
  ctx.synchronize();
  std::vector<float> h(blocks);
  device_traits<cuda>::download(h.data(), part.data(), sizeof(float) * blocks);
  double s = 0;
  for (float v : h) s += v;
  return s;
}

template <class S>
void adamw_update(const context<cuda>& ctx, tensor_view<S, cuda> p, tensor_view<const S, cuda> g,
                  tensor_view<S, cuda> m, tensor_view<S, cuda> v, float lr, float beta1,
                  float beta2, float eps, float wd, int step, float grad_scale) {
  static_assert(std::is_same_v<S, float>, "training on CUDA is float32");
  require<shape_error>(
      p.shape == g.shape && p.shape == m.shape && p.shape == v.shape && p.contiguous(),
      "adamw_update: shapes differ");
  using namespace cuda_detail;
  const double c1 = 1.0 - std::pow(double(beta1), step), c2 = 1.0 - std::pow(double(beta2), step);
  launch(ctx, "adamw", adamw_kernel, dim3(blocks_for(p.size(), 256, 4096)), dim3(256), 0, p.data,
         g.data, m.data, v.data, p.size(), lr, beta1, beta2, eps, wd, float(c1), float(c2),
         grad_scale);
}

}  // namespace crossbatch
