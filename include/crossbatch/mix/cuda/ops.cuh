// The CUDA ops of the cross-batch mixers, the same arithmetic and roundings as mix/cpu_ops.hpp
// (tests/cuda/test_mix.cu compares them): attention over the batch dimension (one block per
// sample and head), the combination with the cross term, the gate input, GELU and row copies.
// The projections are crossbatch::linear (GEMV for small batches, cuBLASLt otherwise).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "crossbatch/mix/config.hpp"
#include "crossbatch/mix/cpu_ops.hpp"
#include "crossbatch/ops/cuda/activation.cuh"
#include "crossbatch/ops/cuda/common.cuh"
#include "crossbatch/ops/cuda/linear.cuh"

namespace crossbatch {
namespace cuda_detail {

__device__ __forceinline__ bool mix_eligible_dev(const std::int32_t* g, int i, int j) {
  return i != j && g[i] >= 0 && g[j] == g[i];
}

// Block (i, h): scores of sample i against every j for head h in shared memory, softmax, then the
// weighted sum of the values. One warp per j for the dot products.
template <class T>
__global__ void cross_attend_kernel(T* x, index_t xs, float* probs, float* inv_norms,
                                    std::int32_t* partners, const T* q, const T* k, const T* v,
                                    index_t ps, const std::int32_t* groups, int b, int dh,
                                    float scale, bool cosine) {
  grid_dependency();
  extern __shared__ float s[];  // (b) scores, then probabilities
  __shared__ float red[32];
  __shared__ float qnorm;
  const int i = blockIdx.x, h = blockIdx.y, off = h * dh;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const T* qi = q + i * ps + off;
  if (cosine) {
    float ss = 0;
    for (int d = threadIdx.x; d < dh; d += blockDim.x) ss += to_f(qi[d]) * to_f(qi[d]);
    ss = block_sum(ss, red);
    if (threadIdx.x == 0) qnorm = 1.0f / fmaxf(sqrtf(ss), 1e-12f);
    __syncthreads();
  }
  for (int j = warp; j < b; j += warps) {
    float dot = 0, kk = 0;
    if (mix_eligible_dev(groups, i, j)) {
      const T* kj = (cosine ? q : k) + j * ps + off;
      for (int d = lane; d < dh; d += 32) {
        const float kv = to_f(kj[d]);
        dot += to_f(qi[d]) * kv;
        kk += kv * kv;
      }
      dot = warp_sum(dot);
      if (cosine) kk = warp_sum(kk);
      if (lane == 0) s[j] = dot * scale * (cosine ? qnorm / fmaxf(sqrtf(kk), 1e-12f) : 1.0f);
    } else if (lane == 0) {
      s[j] = -INFINITY;
    }
  }
  __syncthreads();
  float m = -INFINITY;
  for (int j = threadIdx.x; j < b; j += blockDim.x) m = fmaxf(m, s[j]);
  m = block_max(m, red);
  float sum = 0;
  int count = 0;
  for (int j = threadIdx.x; j < b; j += blockDim.x) {
    const float e = s[j] == -INFINITY ? 0.0f : expf(s[j] - m);
    count += s[j] != -INFINITY;
    sum += e;
  }
  sum = block_sum(sum, red);
  count = int(block_sum(float(count), red));
  __syncthreads();
  for (int j = threadIdx.x; j < b; j += blockDim.x) {
    const float p = s[j] == -INFINITY ? 0.0f : expf(s[j] - m) / sum;
    s[j] = p;
    probs[(index_t(h) * b + i) * b + j] = p;
  }
  if (threadIdx.x == 0 && h == 0) {
    partners[i] = count;
    if (cosine) inv_norms[i] = qnorm;
  }
  __syncthreads();
  for (int d = threadIdx.x; d < dh; d += blockDim.x) {
    float acc = 0;
    for (int j = 0; j < b; ++j)
      if (s[j] != 0.0f) acc += s[j] * to_f(v[j * ps + off + d]);
    x[i * xs + off + d] = from_f<T>(acc);
  }
}

template <class T>
__global__ void mix_combine_kernel(combine_mode mode, T* out, index_t os, const T* h, index_t hs,
                                   const T* info, index_t is, const T* mix, const T* gl, index_t gs,
                                   const std::int32_t* partners, int c) {
  grid_dependency();
  const int i = blockIdx.x;
  const bool alone = partners[i] == 0;
  const float m = mode == combine_mode::gate ? 0.0f : to_f(mix[0]);
  for (int j = threadIdx.x; j < c; j += blockDim.x) {
    const T hv = h[i * hs + j];
    if (alone) {
      out[i * os + j] = hv;
      continue;
    }
    const float hf = to_f(hv), iv = to_f(info[i * is + j]);
    float y;
    if (mode == combine_mode::alpha)
      y = hf + m * (iv - hf);
    else if (mode == combine_mode::scale)
      y = hf + m * iv;
    else
      y = hf + iv / (1.0f + expf(-to_f(gl[i * gs + j])));
    out[i * os + j] = from_f<T>(y);
  }
}

template <class T>
__global__ void gate_input_kernel(T* z, float* stats, const T* h, index_t hs, const T* info,
                                  index_t is, const T* hw, const T* hb, const T* aw, const T* ab,
                                  int c, float eps) {
  grid_dependency();
  __shared__ float red[32];
  const int i = blockIdx.x;
  const T* hr = h + i * hs;
  const T* ar = info + i * is;
  float sh = 0, sa = 0;
  for (int j = threadIdx.x; j < c; j += blockDim.x) sh += to_f(hr[j]), sa += to_f(ar[j]);
  const float mh = block_sum(sh, red) / c, ma = block_sum(sa, red) / c;
  float vh = 0, va = 0;
  for (int j = threadIdx.x; j < c; j += blockDim.x) {
    const float dh = to_f(hr[j]) - mh, da = to_f(ar[j]) - ma;
    vh += dh * dh;
    va += da * da;
  }
  const float ih = 1.0f / sqrtf(block_sum(vh, red) / c + eps),
              ia = 1.0f / sqrtf(block_sum(va, red) / c + eps);
  if (threadIdx.x == 0) {
    stats[i * 4 + 0] = mh, stats[i * 4 + 1] = ih, stats[i * 4 + 2] = ma, stats[i * 4 + 3] = ia;
  }
  T* zr = z + index_t(i) * 3 * c;
  for (int j = threadIdx.x; j < c; j += blockDim.x) {
    const float lh = (to_f(hr[j]) - mh) * ih * to_f(hw[j]) + to_f(hb[j]);
    const float la = (to_f(ar[j]) - ma) * ia * to_f(aw[j]) + to_f(ab[j]);
    zr[j] = from_f<T>(lh);
    zr[c + j] = from_f<T>(la);
    zr[2 * c + j] = from_f<T>(lh * la);
  }
}

template <class T>
__global__ void copy_rows_kernel(T* dst, index_t ds, const T* src, index_t ss, int c) {
  grid_dependency();
  const int i = blockIdx.x;
  for (int j = threadIdx.x; j < c; j += blockDim.x) dst[i * ds + j] = src[i * ss + j];
}

inline int mix_threads(index_t c) { return c >= 1024 ? 256 : 128; }

}  // namespace cuda_detail

template <class T>
void mix_linear(const context<cuda>& ctx, tensor_view<T, cuda> out, tensor_view<const T, cuda> x,
                tensor_view<const T, cuda> w, tensor_view<const T, cuda> b = {}) {
  linear(ctx, out, x, w, b);
}

// See the CPU op (mix/cpu_ops.hpp).
template <class T>
void cross_attend(const context<cuda>& ctx, tensor_view<T, cuda> x, tensor_view<float, cuda> probs,
                  tensor_view<float, cuda> inv_norms, tensor_view<std::int32_t, cuda> partners,
                  tensor_view<const T, cuda> q, tensor_view<const T, cuda> k,
                  tensor_view<const T, cuda> v, tensor_view<const std::int32_t, cuda> groups,
                  int heads, float scale, bool cosine) {
  const index_t b = q.shape[0], c = q.shape[1], dh = c / heads;
  using namespace cuda_detail;
  const index_t ps = row_stride(q, "cross_attend q");
  require<shape_error>(
      x.shape == shape_t{b, c} && v.shape == x.shape && (cosine || k.shape == x.shape) &&
          probs.shape == shape_t{heads, b, b} && partners.size() == b && groups.size() == b &&
          c % heads == 0 && (!cosine || (heads == 1 && inv_norms.size() == b)) &&
          row_stride(v, "cross_attend v") == ps &&
          (cosine || row_stride(k, "cross_attend k") == ps),
      "cross_attend: x " + to_string(x.shape) + ", q " + to_string(q.shape) + ", probs " +
          to_string(probs.shape) + " (q, k and v must share one row stride)");
  if (b == 0) return;
  launch(ctx, "cross_attend", cross_attend_kernel<cuda_t<T>>, dim3(unsigned(b), unsigned(heads)),
         dim3(128), sizeof(float) * b, dev(x.data), row_stride(x, "cross_attend x"), probs.data,
         inv_norms.data, partners.data, dev(q.data), dev(cosine ? q.data : k.data), dev(v.data), ps,
         groups.data, int(b), int(dh), scale, cosine);
}

template <class T>
void mix_combine(const context<cuda>& ctx, combine_mode mode, tensor_view<T, cuda> out,
                 tensor_view<const T, cuda> h, tensor_view<const T, cuda> info,
                 tensor_view<const T, cuda> mix, tensor_view<const T, cuda> gate_logits,
                 tensor_view<const std::int32_t, cuda> partners) {
  const index_t b = h.shape[0], c = h.shape[1];
  require<shape_error>(
      out.shape == h.shape && info.shape == h.shape && partners.size() == b &&
          (mode == combine_mode::gate ? gate_logits.shape == h.shape : mix.size() == 1),
      "mix_combine: h " + to_string(h.shape) + ", info " + to_string(info.shape));
  using namespace cuda_detail;
  const bool gate = mode == combine_mode::gate;
  launch(ctx, "mix_combine", mix_combine_kernel<cuda_t<T>>, dim3(unsigned(b)), dim3(mix_threads(c)),
         0, mode, dev(out.data), row_stride(out, "mix_combine out"), dev(h.data),
         row_stride(h, "mix_combine h"), dev(info.data), row_stride(info, "mix_combine info"),
         dev(gate ? nullptr : mix.data), dev(gate ? gate_logits.data : nullptr),
         gate ? row_stride(gate_logits, "mix_combine gate") : index_t(0), partners.data, int(c));
}

template <class T>
void gate_input(const context<cuda>& ctx, tensor_view<T, cuda> z, tensor_view<float, cuda> stats,
                tensor_view<const T, cuda> h, tensor_view<const T, cuda> info,
                tensor_view<const T, cuda> ln_h_w, tensor_view<const T, cuda> ln_h_b,
                tensor_view<const T, cuda> ln_a_w, tensor_view<const T, cuda> ln_a_b, float eps) {
  const index_t b = h.shape[0], c = h.shape[1];
  require<shape_error>(z.shape == shape_t{b, 3 * c} && z.contiguous() && info.shape == h.shape &&
                           stats.shape == shape_t{b, 4},
                       "gate_input: z " + to_string(z.shape) + ", h " + to_string(h.shape));
  using namespace cuda_detail;
  launch(ctx, "gate_input", gate_input_kernel<cuda_t<T>>, dim3(unsigned(b)), dim3(mix_threads(c)),
         0, dev(z.data), stats.data, dev(h.data), row_stride(h, "gate_input h"), dev(info.data),
         row_stride(info, "gate_input info"), dev(ln_h_w.data), dev(ln_h_b.data), dev(ln_a_w.data),
         dev(ln_a_b.data), int(c), eps);
}

template <class T>
void mix_gelu(const context<cuda>& ctx, tensor_view<T, cuda> out, tensor_view<const T, cuda> x) {
  activate(ctx, activation::gelu_erf, out, x);
}

template <class T>
void copy_rows(const context<cuda>& ctx, tensor_view<T, cuda> dst, tensor_view<const T, cuda> src) {
  require<shape_error>(
      dst.rank() == 2 && dst.shape == src.shape,
      "copy_rows: dst " + to_string(dst.shape) + " vs src " + to_string(src.shape));
  using namespace cuda_detail;
  launch(ctx, "copy_rows", copy_rows_kernel<cuda_t<T>>, dim3(unsigned(src.shape[0])),
         dim3(mix_threads(src.shape[1])), 0, dev(dst.data), row_stride(dst, "copy_rows dst"),
         dev(src.data), row_stride(src, "copy_rows src"), int(src.shape[1]));
}

}  // namespace crossbatch
