// Linear layers on the CPU: out = x W^T (+ b), W in the Hugging Face (out, in) layout.
// float uses Eigen's GEMM/GEMV directly, threaded with OpenMP when the program is built with it
// (context<cpu>::threads); half and bfloat16 are widened to float first (a reference path).
#pragma once

#include <algorithm>
#include <optional>

#include "crossbatch/core/context.hpp"
#include "crossbatch/ops/cpu/eigen_map.hpp"

namespace crossbatch {

// out (N, O) = x (N, I) @ w (O, I)^T + bias (O) when bias has data.
template <class T>
void linear(const context<cpu>& ctx, tensor_view<T> out, in_view<T> x, in_view<T> w,
            in_view<T> bias = {}) {
  require<shape_error>(x.rank() == 2 && w.rank() == 2 && out.rank() == 2, "linear: x, w and out must be 2-D");
  const index_t n = x.shape[0], in = x.shape[1], o = w.shape[0];
  require<shape_error>(w.shape[1] == in && out.shape[0] == n && out.shape[1] == o,
                       "linear: x " + to_string(x.shape) + ", w " + to_string(w.shape) + ", out " + to_string(out.shape) + " do not fit");
  require<shape_error>(!bias.data || bias.shape == shape_t{o}, "linear: bias must be (" + std::to_string(o) + ",)");
  using namespace cpu_detail;
  if constexpr (std::is_same_v<T, float>) {
    auto y = as_matrix(out);
    const auto xm = as_matrix(x);
    const auto wm = as_matrix(w);
    if (n <= 16) {
      // Few rows (decode): memory-bound on W, so split W's rows (the outputs) across threads;
      // each thread streams its own slice of W once.
      const index_t chunks = std::max<index_t>(1, std::min<index_t>(ctx.threads, o / 64));
      const index_t per = (o + chunks - 1) / chunks;
#pragma omp parallel for num_threads(static_cast<int>(chunks)) schedule(static) if (chunks > 1)
      for (index_t c = 0; c < chunks; ++c) {
        const index_t begin = c * per, len = std::min(per, o - begin);
        if (len <= 0) continue;
        y.middleCols(begin, len).noalias() = xm * wm.middleRows(begin, len).transpose();
      }
    } else {
      Eigen::setNbThreads(ctx.threads);  // Eigen's GEMM is parallel when built with OpenMP
      y.noalias() = xm * wm.transpose();
    }
    if (bias.data) y.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(bias.data, o);
  } else {
    row_matrix y = widen<T>(x) * widen<T>(w).transpose();
    if (bias.data) {
      for (index_t j = 0; j < o; ++j) y.col(j).array() += static_cast<float>(bias.data[j]);
    }
    narrow_into(out, y);
  }
}

}  // namespace crossbatch
