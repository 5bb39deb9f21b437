// Rotary position embedding applied in place on the GPU (Hugging Face rotate_half layout), on a
// strided (N, H, D) view such as the query part of a fused QKV projection.
#pragma once

#include <cstdint>

#include "crossbatch/ops/cuda/common.cuh"

namespace crossbatch {
namespace cuda_detail {

template <class T>
__global__ void rope_kernel(T* x, index_t sn, index_t sh, index_t sd, const std::int32_t* positions,
                            const float* inv_freq, int heads, int half_d, index_t total) {
  grid_dependency();
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < total;
       i += index_t(gridDim.x) * blockDim.x) {
    const int k = int(i % half_d);
    const index_t nh = i / half_d;
    const int h = int(nh % heads);
    const index_t n = nh / heads;
    const float angle = float(positions[n]) * inv_freq[k];
    float s, c;
    sincosf(angle, &s, &c);
    T* v = x + n * sn + h * sh;
    const float a = to_f(v[k * sd]), b = to_f(v[(k + half_d) * sd]);
    v[k * sd] = from_f<T>(a * c - b * s);
    v[(k + half_d) * sd] = from_f<T>(b * c + a * s);
  }
}

}  // namespace cuda_detail

// x (N, H, D) rotated by positions[n] * inv_freq[i]; positions (N) and inv_freq (D/2) on device.
template <class T>
void apply_rope(const context<cuda>& ctx, tensor_view<T, cuda> x,
                tensor_view<const std::int32_t, cuda> positions,
                tensor_view<const float, cuda> inv_freq) {
  require<shape_error>(
      x.rank() == 3 && x.shape[0] == positions.size() && x.shape[2] == 2 * inv_freq.size(),
      "apply_rope: x " + to_string(x.shape) + " does not fit positions/inv_freq");
  const index_t total = x.shape[0] * x.shape[1] * (x.shape[2] / 2);
  using namespace cuda_detail;
  launch(ctx, "apply_rope", rope_kernel<cuda_t<T>>, dim3(blocks_for(total, 256, 4096)), dim3(256),
         0, dev(x.data), x.strides[0], x.strides[1], x.strides[2], positions.data, inv_freq.data,
         int(x.shape[1]), int(x.shape[2] / 2), total);
}

}  // namespace crossbatch
