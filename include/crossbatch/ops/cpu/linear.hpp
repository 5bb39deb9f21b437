// Linear layers on the CPU: out = x W^T (+ b), W in the Hugging Face (out, in) layout.
// Decode-sized calls (N <= 16 rows) stream W once through the GEMV of ops/cpu/gemv.hpp, for float,
// half and bfloat16 weights alike (16-bit rows are widened in registers, x and the sums are float),
// split across context<cpu>::threads by parallel_chunks (ops/cpu/parallel.hpp: no spin barriers).
// Larger calls (prefill) split W into row blocks on the same threads, each a single-threaded Eigen
// GEMM in float (16-bit blocks widened first). No OpenMP: its spinning barriers collapse when the
// cores are shared.
#pragma once

#include <algorithm>
#include <optional>
#include <vector>

#include "crossbatch/core/context.hpp"
#include "crossbatch/ops/cpu/eigen_map.hpp"
#include "crossbatch/ops/cpu/gemv.hpp"
#include "crossbatch/ops/cpu/parallel.hpp"

namespace crossbatch {

namespace cpu_detail {
// Calls with at most this many rows of x take the streaming GEMV.
inline constexpr index_t gemv_max_rows = 16;
// Rows of W per work chunk: about 64 KiB of weights, so that two threads share the work evenly
// and one claim per chunk costs little.
inline index_t gemv_chunk_rows(index_t in, std::size_t elem) {
  return std::max<index_t>(4, index_t(65536 / std::max<std::size_t>(1, in * elem)));
}

// The GEMV path of linear(): x (N, I), w (O, I), out (N, O), N <= gemv_max_rows.
template <class T>
void linear_gemv(const context<cpu>& ctx, tensor_view<T> out, in_view<T> x, in_view<T> w,
                 in_view<T> bias) {
  const index_t n = x.shape[0], in = x.shape[1], o = w.shape[0];
  require<shape_error>(w.strides[1] == 1 && x.strides[1] == 1 && out.strides[1] == 1,
                       "linear: x, w and out need unit column strides");
  // Float copies of x (unless the kernel takes T's own x: gemv_native_x) and of the result for
  // 16-bit T (thread-local: no allocation per step).
  using X = std::conditional_t<gemv_native_x<T>, T, float>;
  thread_local std::vector<float> x_buf, y_buf;
  const X* xf;
  float* yf;
  index_t x_stride, y_stride;
  if constexpr (std::is_same_v<T, X>) {
    xf = x.data, x_stride = x.strides[0];
  } else {
    x_buf.resize(std::size_t(n * in));
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < in; ++j) x_buf[i * in + j] = static_cast<float>(x(i, j));
    xf = x_buf.data(), x_stride = in;
  }
  if constexpr (std::is_same_v<T, float>) {
    yf = out.data, y_stride = out.strides[0];
  } else {
    y_buf.resize(std::size_t(n * o));
    yf = y_buf.data(), y_stride = o;
  }
  const index_t rows = gemv_chunk_rows(in, sizeof(T)), chunks = (o + rows - 1) / rows;
  parallel_chunks(ctx.threads, chunks, [&](index_t c) {
    gemv_rows(w.data, w.strides[0], in, xf, x_stride, n, yf, y_stride, c * rows,
              std::min(o, (c + 1) * rows));
  });
  for (index_t i = 0; i < n; ++i) {
    float* yi = yf + i * y_stride;
    if (bias.data)
      for (index_t j = 0; j < o; ++j) yi[j] += static_cast<float>(bias.data[j]);
    if constexpr (!std::is_same_v<T, float>)
      for (index_t j = 0; j < o; ++j) out(i, j) = static_cast<T>(yi[j]);
  }
}

// The GEMM path of linear() (prefill): W is split into blocks of gemm_block_rows rows shared out
// to the threads, each block a single-threaded Eigen GEMM; 16-bit blocks are widened to float
// first (per block, into a thread-local buffer).
inline constexpr index_t gemm_block_rows = 128;
template <class T>
void linear_gemm(const context<cpu>& ctx, tensor_view<T> out, in_view<T> x, in_view<T> w,
                 in_view<T> bias) {
  const index_t n = x.shape[0], in = x.shape[1], o = w.shape[0];
  Eigen::setNbThreads(1);  // the threads split W here; Eigen must not start OpenMP ones
  const auto xm = [&] {
    if constexpr (std::is_same_v<T, float>)
      return as_matrix(x);
    else
      return widen<T>(x);
  }();
  // Fixed blocks, whatever the thread count: each output element comes from the same GEMM
  // call, so results do not depend on ctx.threads.
  const index_t block = gemm_block_rows, chunks = (o + block - 1) / block;
  auto y = [&] {
    if constexpr (std::is_same_v<T, float>)
      return as_matrix(out);
    else
      return row_matrix(n, o);
  }();
  parallel_chunks(ctx.threads, chunks, [&](index_t c) {
    const index_t r0 = c * block, r = std::min(o, r0 + block) - r0;
    if constexpr (std::is_same_v<T, float>) {
      const auto wm = as_matrix(w);
      y.middleCols(r0, r).noalias() = xm * wm.middleRows(r0, r).transpose();
    } else {
      thread_local row_matrix wf;
      wf.resize(r, in);
      for (index_t i = 0; i < r; ++i)
        for (index_t j = 0; j < in; ++j) wf(i, j) = static_cast<float>(w(r0 + i, j));
      y.middleCols(r0, r).noalias() = xm * wf.transpose();
    }
  });
  if (bias.data) {
    Eigen::RowVectorXf b(o);
    for (index_t j = 0; j < o; ++j) b[j] = static_cast<float>(bias.data[j]);
    y.rowwise() += b;
  }
  if constexpr (!std::is_same_v<T, float>) narrow_into(out, y);
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
  if (n <= gemv_max_rows)
    linear_gemv(ctx, out, x, w, bias);  // decode: memory-bound on W, which is streamed once
  else
    linear_gemm(ctx, out, x, w, bias);
}

}  // namespace crossbatch
