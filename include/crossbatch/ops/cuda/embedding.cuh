// Embedding lookup on the GPU: rows of a (V, C) table gathered by token id, optionally summed into
// the output. Same signature as the CPU op. An id outside [0, V) cannot throw from device code:
// its row is written as zeros (the CPU op throws value_error; tests feed valid ids).
#pragma once

#include <cstdint>

#include "crossbatch/ops/cuda/common.cuh"

namespace crossbatch {
namespace cuda_detail {

template <class T>
__global__ void embedding_kernel(T* out, index_t out_stride, const std::int32_t* ids,
                                 const T* table, index_t table_stride, int v, int c,
                                 bool accumulate) {
  grid_dependency();
  const int row = blockIdx.x;
  const std::int32_t id = ids[row];
  const bool ok = id >= 0 && id < v;
  T* dst = out + row * out_stride;
  const T* src = table + (ok ? id : 0) * table_stride;
  for (int j = threadIdx.x; j < c; j += blockDim.x) {
    const float x = ok ? to_f(src[j]) : 0.0f;
    dst[j] = accumulate ? from_f<T>(to_f(dst[j]) + x) : from_f<T>(x);
  }
}

static __global__ void advance_positions_kernel(std::int32_t* positions, int n) {
  grid_dependency();
  for (int i = threadIdx.x; i < n; i += blockDim.x) ++positions[i];
}

}  // namespace cuda_detail

// positions (B) += 1 on the device: the next decode step's positions.
inline void advance_positions(const context<cuda>& ctx, tensor_view<std::int32_t, cuda> positions) {
  cuda_detail::launch(ctx, "advance_positions", cuda_detail::advance_positions_kernel, dim3(1),
                      dim3(128), 0, positions.data, int(positions.size()));
}

// out (N, C) (+)= table[ids[n]]; ids (N) in device memory.
template <class T>
void embedding(const context<cuda>& ctx, tensor_view<T, cuda> out,
               tensor_view<const std::int32_t, cuda> ids, tensor_view<const T, cuda> table,
               bool accumulate = false) {
  const index_t n = ids.size(), c = table.shape[1];
  require<shape_error>(out.shape == shape_t{n, c}, "embedding: out " + to_string(out.shape) +
                                                       " should be " + to_string({n, c}));
  require<shape_error>(ids.contiguous(), "embedding: ids must be contiguous");
  const index_t os = cuda_detail::row_stride(out, "embedding out"),
                ts = cuda_detail::row_stride(table, "embedding table");
  const int threads = c >= 256 ? 256 : 128;
  cuda_detail::launch(ctx, "embedding", cuda_detail::embedding_kernel<cuda_t<T>>, dim3(unsigned(n)),
                      dim3(threads), 0, dev(out.data), os, ids.data, dev(table.data), ts,
                      int(table.shape[0]), int(c), accumulate);
}

}  // namespace crossbatch
