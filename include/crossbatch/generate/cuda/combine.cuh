// Logit combiners on the GPU (sample/logit_combiner.hpp has the CPU loop and the formulas): one
// block per row of logits (B, V); combiners that read log-probabilities first reduce each model's
// row to its log-sum-exp.
#pragma once

#include <span>
#include <string>

#include "crossbatch/ops/cuda/common.cuh"
#include "crossbatch/sample/logit_combiner.hpp"

namespace crossbatch {
namespace cuda_detail {

struct combine_inputs {
  const void* rows[max_combined_models];  // each (B, V) contiguous
};

template <class T, class C>
__global__ void __launch_bounds__(256)
    combine_logits_kernel(T* out, combine_inputs in, int models, int v, C combiner) {
  grid_dependency();
  __shared__ float red[32];
  __shared__ float lse[max_combined_models];
  const index_t row = index_t(blockIdx.x) * v;
  auto at = [&](int m, int j) { return to_f(static_cast<const T*>(in.rows[m])[row + j]); };
  if constexpr (C::needs_log_probs) {
    for (int m = 0; m < models; ++m) {
      float mx = -INFINITY;
      for (int j = threadIdx.x; j < v; j += blockDim.x) mx = fmaxf(mx, at(m, j));
      mx = block_max(mx, red);
      float s = 0.0f;
      if (mx != -INFINITY)
        for (int j = threadIdx.x; j < v; j += blockDim.x) s += expf(at(m, j) - mx);
      s = block_sum(s, red);
      if (threadIdx.x == 0) lse[m] = mx == -INFINITY ? mx : mx + logf(s);
    }
    __syncthreads();
  }
  float l[max_combined_models], lp[max_combined_models];
  for (int j = threadIdx.x; j < v; j += blockDim.x) {
    for (int m = 0; m < models; ++m) {
      l[m] = at(m, j);
      lp[m] = C::needs_log_probs ? l[m] - lse[m] : 0.0f;
    }
    out[row + j] = from_f<T>(combiner(l, lp, models));
  }
}

}  // namespace cuda_detail

// out (B, V) = combine(inputs[m] (B, V)) on the GPU; out may alias an input.
template <class T, logit_combiner C>
void combine_logits(const context<cuda>& ctx, const C& combiner, tensor_view<T, cuda> out,
                    std::span<const tensor_view<const T, cuda>> inputs) {
  const int m = static_cast<int>(inputs.size());
  require(m >= 1 && m <= max_combined_models, "combine_logits: 1.." +
                                                  std::to_string(max_combined_models) +
                                                  " models, got " + std::to_string(m));
  combiner.check(m);
  cuda_detail::combine_inputs in{};
  for (int i = 0; i < m; ++i) {
    require<shape_error>(inputs[i].shape == out.shape && inputs[i].contiguous() && out.contiguous(),
                         "combine_logits: every input must be " + to_string(out.shape));
    in.rows[i] = inputs[i].data;
  }
  cuda_detail::launch(ctx, "combine_logits", cuda_detail::combine_logits_kernel<cuda_t<T>, C>,
                      dim3(unsigned(out.shape[0])), dim3(256), 0, dev(out.data), in, m,
                      int(out.shape[1]), combiner);
}

}  // namespace crossbatch
