// The CUDA forms of fusion/grouped_combine.hpp: one block per question combines its rows of
// logits (same formulas as the CPU loop, one combiner per question read from device memory), and
// a small kernel spreads each question's token to its rows. Both take device pointers only, so a
// CUDA graph can capture them.
#pragma once

#include "crossbatch/fusion/grouped_combine.hpp"
#include "crossbatch/ops/cuda/common.cuh"

namespace crossbatch {
namespace cuda_detail {

template <class T, class C>
__global__ void __launch_bounds__(256)
    combine_groups_kernel(T* out, const T* in, const C* combiners, const int* offsets, int v) {
  grid_dependency();
  __shared__ float red[32];
  __shared__ float lse[max_combined_models];
  const int q = blockIdx.x, first = offsets[q], m = offsets[q + 1] - first;
  const C combiner = combiners[q];
  auto at = [&](int i, int j) { return to_f(in[index_t(first + i) * v + j]); };
  if constexpr (C::needs_log_probs) {
    for (int i = 0; i < m; ++i) {
      float mx = -INFINITY;
      for (int j = threadIdx.x; j < v; j += blockDim.x) mx = fmaxf(mx, at(i, j));
      mx = block_max(mx, red);
      float s = 0.0f;
      if (mx != -INFINITY)
        for (int j = threadIdx.x; j < v; j += blockDim.x) s += expf(at(i, j) - mx);
      s = block_sum(s, red);
      if (threadIdx.x == 0) lse[i] = mx == -INFINITY ? mx : mx + logf(s);
    }
    __syncthreads();
  }
  float l[max_combined_models], lp[max_combined_models];
  for (int j = threadIdx.x; j < v; j += blockDim.x) {
    for (int i = 0; i < m; ++i) {
      l[i] = at(i, j);
      lp[i] = C::needs_log_probs ? l[i] - lse[i] : 0.0f;
    }
    out[index_t(q) * v + j] = from_f<T>(combiner(l, lp, m));
  }
}

static __global__ void expand_group_ids_kernel(std::int32_t* rows, const std::int32_t* ids,
                                               const std::int32_t* row_group, int n) {
  grid_dependency();
  for (int r = blockIdx.x * blockDim.x + threadIdx.x; r < n; r += gridDim.x * blockDim.x)
    rows[r] = ids[row_group[r]];
}

}  // namespace cuda_detail

// out (Q, V) row q = combiners[q] over rows offsets[q] .. offsets[q + 1] - 1 of in (P, V);
// combiners and offsets in device memory.
template <class T, logit_combiner C>
void combine_groups(const context<cuda>& ctx, const C* combiners, const int* offsets,
                    tensor_view<T, cuda> out, tensor_view<const T, cuda> in) {
  require<shape_error>(
      in.shape.size() == 2 && in.shape[1] == out.shape[1] && in.contiguous() && out.contiguous(),
      "combine_groups: in (P, V) and out (Q, V) disagree");
  cuda_detail::launch(ctx, "combine_groups", cuda_detail::combine_groups_kernel<cuda_t<T>, C>,
                      dim3(unsigned(out.shape[0])), dim3(256), 0, dev(out.data), dev(in.data),
                      combiners, offsets, int(out.shape[1]));
}

inline void expand_group_ids(const context<cuda>& ctx, const std::int32_t* row_group,
                             tensor_view<const std::int32_t, cuda> ids,
                             tensor_view<std::int32_t, cuda> rows) {
  const int n = int(rows.shape[0]);
  cuda_detail::launch(ctx, "expand_group_ids", cuda_detail::expand_group_ids_kernel,
                      dim3(unsigned((n + 255) / 256)), dim3(256), 0, rows.data, ids.data, row_group,
                      n);
}

}  // namespace crossbatch
