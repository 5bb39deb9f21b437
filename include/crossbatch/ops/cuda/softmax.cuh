// Row softmax and log-softmax on the GPU, one block per row, in float (max subtracted).
// An all -inf row gives zeros under softmax, as on the CPU.
#pragma once

#include "crossbatch/ops/cuda/common.cuh"

namespace crossbatch {
namespace cuda_detail {

template <class T, bool Log>
__global__ void softmax_kernel(float* out, index_t out_stride, const T* x, index_t x_stride,
                               int v) {
  grid_dependency();
  __shared__ float red[32];
  const T* xr = x + blockIdx.x * x_stride;
  float* o = out + blockIdx.x * out_stride;
  float m = -INFINITY;
  for (int j = threadIdx.x; j < v; j += blockDim.x) m = fmaxf(m, to_f(xr[j]));
  m = block_max(m, red);
  if (m == -INFINITY && !Log) {
    for (int j = threadIdx.x; j < v; j += blockDim.x) o[j] = 0.0f;
    return;
  }
  float s = 0;
  for (int j = threadIdx.x; j < v; j += blockDim.x) s += expf(to_f(xr[j]) - m);
  s = block_sum(s, red);
  if (Log) {
    const float lse = m + logf(s);
    for (int j = threadIdx.x; j < v; j += blockDim.x) o[j] = to_f(xr[j]) - lse;
  } else {
    const float inv = 1.0f / s;
    for (int j = threadIdx.x; j < v; j += blockDim.x) o[j] = expf(to_f(xr[j]) - m) * inv;
  }
}

}  // namespace cuda_detail

// out (N, V) = softmax(x) along V.
template <class T>
void softmax(const context<cuda>& ctx, tensor_view<float, cuda> out, tensor_view<const T, cuda> x) {
  require<shape_error>(out.shape == x.shape && x.rank() == 2,
                       "softmax: out and x must both be (N, V)");
  using namespace cuda_detail;
  launch(ctx, "softmax", softmax_kernel<cuda_t<T>, false>, dim3(unsigned(x.shape[0])), dim3(1024),
         0, out.data, row_stride(out, "softmax out"), dev(x.data), row_stride(x, "softmax x"),
         int(x.shape[1]));
}

// out (N, V) = log_softmax(x) along V.
template <class T>
void log_softmax(const context<cuda>& ctx, tensor_view<float, cuda> out,
                 tensor_view<const T, cuda> x) {
  require<shape_error>(out.shape == x.shape && x.rank() == 2,
                       "log_softmax: out and x must both be (N, V)");
  using namespace cuda_detail;
  launch(ctx, "log_softmax", softmax_kernel<cuda_t<T>, true>, dim3(unsigned(x.shape[0])),
         dim3(1024), 0, out.data, row_stride(out, "log_softmax out"), dev(x.data),
         row_stride(x, "log_softmax x"), int(x.shape[1]));
}

}  // namespace crossbatch
