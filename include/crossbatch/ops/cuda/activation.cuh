// Elementwise ops on the GPU, in float with the CPU op's roundings: activations, the gated
// product act(gate) * up, and the residual add. Views must be contiguous; out may alias an input.
#pragma once

#include "crossbatch/ops/activation_kind.hpp"
#include "crossbatch/ops/cuda/common.cuh"

namespace crossbatch {
namespace cuda_detail {

template <class T>
__global__ void activate_kernel(activation a, T* out, const T* x, index_t n) {
  grid_dependency();
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
       i += index_t(gridDim.x) * blockDim.x)
    out[i] = from_f<T>(apply_activation(a, to_f(x[i])));
}

template <class T>
__global__ void gated_activation_kernel(activation a, T* out, const T* gate_up, index_t rows,
                                        index_t f) {
  grid_dependency();
  const index_t n = rows * f;
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
       i += index_t(gridDim.x) * blockDim.x) {
    const index_t r = i / f, j = i - r * f;
    const T* gate = gate_up + r * 2 * f;
    const float g = round_to<T>(apply_activation(a, to_f(gate[j])));
    out[i] = from_f<T>(g * to_f(gate[j + f]));
  }
}

template <class T>
__global__ void add_kernel(T* x, const T* y, index_t n) {
  grid_dependency();
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
       i += index_t(gridDim.x) * blockDim.x)
    x[i] = from_f<T>(to_f(x[i]) + to_f(y[i]));
}

}  // namespace cuda_detail

// out = act(x), elementwise.
template <class T>
void activate(const context<cuda>& ctx, activation a, tensor_view<T, cuda> out,
              tensor_view<const T, cuda> x) {
  require<shape_error>(out.size() == x.size() && out.contiguous() && x.contiguous(),
                       "activate: shapes differ");
  using namespace cuda_detail;
  launch(ctx, "activate", activate_kernel<cuda_t<T>>, dim3(blocks_for(x.size(), 256, 4096)),
         dim3(256), 0, a, dev(out.data), dev(x.data), x.size());
}

// out (N, F) = act(gate) * up with gate_up (N, 2F) = [gate | up].
template <class T>
void gated_activation(const context<cuda>& ctx, activation a, tensor_view<T, cuda> out,
                      tensor_view<const T, cuda> gate_up) {
  const index_t n = out.shape[0], f = out.shape[1];
  require<shape_error>(out.rank() == 2 && gate_up.shape == shape_t{n, 2 * f} && out.contiguous() &&
                           gate_up.contiguous(),
                       "gated_activation: out " + to_string(out.shape) +
                           " needs gate_up (N, 2F), got " + to_string(gate_up.shape));
  using namespace cuda_detail;
  launch(ctx, "gated_activation", gated_activation_kernel<cuda_t<T>>,
         dim3(blocks_for(n * f, 256, 4096)), dim3(256), 0, a, dev(out.data), dev(gate_up.data), n,
         f);
}

// x += y, elementwise.
template <class T>
void add_inplace(const context<cuda>& ctx, tensor_view<T, cuda> x, tensor_view<const T, cuda> y) {
  require<shape_error>(x.size() == y.size() && x.contiguous() && y.contiguous(),
                       "add_inplace: " + to_string(x.shape) + " vs " + to_string(y.shape));
  using namespace cuda_detail;
  launch(ctx, "add_inplace", add_kernel<cuda_t<T>>, dim3(blocks_for(x.size(), 256, 4096)),
         dim3(256), 0, dev(x.data), dev(y.data), x.size());
}

}  // namespace crossbatch
