// Normalisations on the GPU, one block per row, computed in float with the CPU op's intermediate
// roundings: LayerNorm, RMSNorm and the fused residual step x += delta; out = norm(x).
#pragma once

#include "crossbatch/ops/cpu/norm.hpp"  // norm_kind
#include "crossbatch/ops/cuda/common.cuh"

namespace crossbatch {
namespace cuda_detail {

// One row of x (already in memory) normalised into out. Reads x twice or three times; the row is
// small and stays in L1.
template <class T>
__device__ __forceinline__ void norm_row(norm_kind kind, T* out, const T* x, const T* w, const T* b,
                                         int c, float eps, float* red) {
  if (kind == norm_kind::layer) {
    float s = 0;
    for (int j = threadIdx.x; j < c; j += blockDim.x) s += to_f(x[j]);
    const float mean = block_sum(s, red) / c;
    float v = 0;
    for (int j = threadIdx.x; j < c; j += blockDim.x) {
      const float d = to_f(x[j]) - mean;
      v += d * d;
    }
    const float inv = 1.0f / sqrtf(block_sum(v, red) / c + eps);
    for (int j = threadIdx.x; j < c; j += blockDim.x)
      out[j] = from_f<T>((to_f(x[j]) - mean) * inv * to_f(w[j]) + to_f(b[j]));
  } else {
    float s = 0;
    for (int j = threadIdx.x; j < c; j += blockDim.x) {
      const float v = to_f(x[j]);
      s += v * v;
    }
    const float inv = 1.0f / sqrtf(block_sum(s, red) / c + eps);
    for (int j = threadIdx.x; j < c; j += blockDim.x)
      out[j] = from_f<T>(to_f(w[j]) * round_to<T>(to_f(x[j]) * inv));
  }
}

template <class T>
__global__ void norm_kernel(norm_kind kind, T* out, index_t out_stride, const T* x,
                            index_t x_stride, const T* w, const T* b, int c, float eps) {
  grid_dependency();
  __shared__ float red[32];
  norm_row(kind, out + blockIdx.x * out_stride, x + blockIdx.x * x_stride, w, b, c, eps, red);
}

template <class T>
__global__ void residual_norm_kernel(norm_kind kind, T* x, const T* delta, T* out,
                                     index_t out_stride, const T* w, const T* b, int c, float eps) {
  grid_dependency();
  __shared__ float red[32];
  T* xr = x + blockIdx.x * index_t(c);
  const T* dr = delta + blockIdx.x * index_t(c);
  // Each thread later reads back only the elements it wrote here (same j stride).
  for (int j = threadIdx.x; j < c; j += blockDim.x) xr[j] = from_f<T>(to_f(xr[j]) + to_f(dr[j]));
  norm_row(kind, out + blockIdx.x * out_stride, xr, w, b, c, eps, red);
}

inline int norm_threads(index_t c) { return c >= 1024 ? 512 : c >= 256 ? 256 : 128; }

}  // namespace cuda_detail

// out (N, C) = (x - mean) / sqrt(var + eps) * w + b, per row.
template <class T>
void layer_norm(const context<cuda>& ctx, tensor_view<T, cuda> out, tensor_view<const T, cuda> x,
                tensor_view<const T, cuda> w, tensor_view<const T, cuda> b, float eps) {
  const index_t n = x.shape[0], c = x.shape[1];
  require<shape_error>(out.shape == x.shape && w.shape == shape_t{c} && b.shape == shape_t{c},
                       "layer_norm: x " + to_string(x.shape) + ", w " + to_string(w.shape) +
                           ", b " + to_string(b.shape));
  using namespace cuda_detail;
  launch(ctx, "layer_norm", norm_kernel<cuda_t<T>>, dim3(unsigned(n)), dim3(norm_threads(c)), 0,
         norm_kind::layer, dev(out.data), row_stride(out, "layer_norm out"), dev(x.data),
         row_stride(x, "layer_norm x"), dev(w.data), dev(b.data), int(c), eps);
}

// out (N, C) = x / sqrt(mean(x^2) + eps) * w, per row.
template <class T>
void rms_norm(const context<cuda>& ctx, tensor_view<T, cuda> out, tensor_view<const T, cuda> x,
              tensor_view<const T, cuda> w, float eps) {
  const index_t n = x.shape[0], c = x.shape[1];
  require<shape_error>(out.shape == x.shape && w.shape == shape_t{c},
                       "rms_norm: x " + to_string(x.shape) + ", w " + to_string(w.shape));
  using namespace cuda_detail;
  launch(ctx, "rms_norm", norm_kernel<cuda_t<T>>, dim3(unsigned(n)), dim3(norm_threads(c)), 0,
         norm_kind::rms, dev(out.data), row_stride(out, "rms_norm out"), dev(x.data),
         row_stride(x, "rms_norm x"), dev(w.data), static_cast<const cuda_t<T>*>(nullptr), int(c),
         eps);
}

// x (N, C) += delta; out = norm(x). b is ignored for RMSNorm.
template <class T>
void residual_norm(const context<cuda>& ctx, norm_kind kind, tensor_view<T, cuda> x,
                   tensor_view<const T, cuda> delta, tensor_view<T, cuda> out,
                   tensor_view<const T, cuda> w, tensor_view<const T, cuda> b, float eps) {
  require<shape_error>(
      x.shape == delta.shape && x.contiguous() && delta.contiguous() && x.rank() == 2,
      "residual_norm: x " + to_string(x.shape) + " vs delta " + to_string(delta.shape));
  const index_t n = x.shape[0], c = x.shape[1];
  require<shape_error>(out.shape == x.shape && w.shape == shape_t{c} &&
                           (kind == norm_kind::rms || b.shape == shape_t{c}),
                       "residual_norm: out " + to_string(out.shape) + ", w " + to_string(w.shape));
  using namespace cuda_detail;
  launch(ctx, "residual_norm", residual_norm_kernel<cuda_t<T>>, dim3(unsigned(n)),
         dim3(norm_threads(c)), 0, kind, dev(x.data), dev(delta.data), dev(out.data),
         row_stride(out, "residual_norm out"), dev(w.data),
         dev(kind == norm_kind::layer ? b.data : nullptr), int(c), eps);
}

}  // namespace crossbatch
