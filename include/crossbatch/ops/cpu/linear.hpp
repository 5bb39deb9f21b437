// Linear layers on the CPU: out = x W^T (+ b), W in the Hugging Face (out, in) layout.
// float uses Eigen's GEMM/GEMV directly, threaded with OpenMP when the program is built with it
// (context<cpu>::threads); half and bfloat16 are widened to float first (a reference path).
#pragma once

#include <algorithm>
#include <optional>

#include "crossbatch/core/context.hpp"
#include "crossbatch/ops/cpu/eigen_map.hpp"

namespace crossbatch {

namespace cpu_detail {
// y(i, r0 + j) = w_j . x_i for the four rows w_j = w + j * stride and every row x_i of x.
inline void dot_four_rows(const float* w, index_t stride, const const_matrix_map& x, matrix_map& y,
                          index_t r0) {
  const index_t in = x.cols();
  const float *w0 = w, *w1 = w0 + stride, *w2 = w1 + stride, *w3 = w2 + stride;
  for (index_t i = 0; i < x.rows(); ++i) {
    const float* xi = x.data() + i * x.outerStride();
    float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
#pragma omp simd reduction(+ : a0, a1, a2, a3)
    for (index_t k = 0; k < in; ++k) {
      a0 += w0[k] * xi[k];
      a1 += w1[k] * xi[k];
      a2 += w2[k] * xi[k];
      a3 += w3[k] * xi[k];
    }
    y(i, r0) = a0, y(i, r0 + 1) = a1, y(i, r0 + 2) = a2, y(i, r0 + 3) = a3;
  }
}
}  // namespace cpu_detail

// out (N, O) = x (N, I) @ w (O, I)^T + bias (O) when bias has data.
template <class T>
void linear(const context<cpu>& ctx, tensor_view<T> out, in_view<T> x, in_view<T> w,
            in_view<T> bias = {}) {
  require<shape_error>(x.rank() == 2 && w.rank() == 2 && out.rank() == 2,
                       "linear: x, w and out must be 2-D");
  const index_t n = x.shape[0], in = x.shape[1], o = w.shape[0];
  require<shape_error>(w.shape[1] == in && out.shape[0] == n && out.shape[1] == o,
                       "linear: x " + to_string(x.shape) + ", w " + to_string(w.shape) + ", out " +
                           to_string(out.shape) + " do not fit");
  require<shape_error>(!bias.data || bias.shape == shape_t{o},
                       "linear: bias must be (" + std::to_string(o) + ",)");
  using namespace cpu_detail;
  if constexpr (std::is_same_v<T, float>) {
    auto y = as_matrix(out);
    const auto xm = as_matrix(x);
    const auto wm = as_matrix(w);
    if (n <= 16) {
      // Few rows (decode): memory-bound on W, so stream each row of W once. Blocks of four W rows
      // are dotted with every x row while they sit in L1 (a GEMM would first pack all of W); the
      // blocks are split across threads.
      const index_t blocks = (o + 3) / 4;
      const int threads =
          static_cast<int>(std::max<index_t>(1, std::min<index_t>(ctx.threads, blocks / 16)));
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
      for (index_t blk = 0; blk < blocks; ++blk) {
        const index_t r0 = blk * 4, rows = std::min<index_t>(4, o - r0);
        if (rows == 4) {
          dot_four_rows(wm.data() + r0 * wm.outerStride(), wm.outerStride(), xm, y, r0);
        } else {
          for (index_t r = r0; r < r0 + rows; ++r)
            for (index_t i = 0; i < n; ++i) y(i, r) = wm.row(r).dot(xm.row(i));
        }
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
