// ARMT's associative memory on the CPU: the DPFP feature map, the per-sequence state (A, z of every
// layer, float32), the read that adds the memory's answer to a layer's input and the write from
// the block output at the memory rows (../shared/reference/armt_diagonal_batching_spec.md):
//   read:  q = phi(h W_mq^T);  h += (q A) / (q . z + 1e-5)
//   write: k = phi(m W_mk^T), v = m W_mv^T, beta = sigmoid(m W_mb^T + b)
//          first segment: vbar = 0, gamma = 1; later: den = k . z + 1e-5, vbar = k A / den,
//          gamma = clip(1 - den / (|k|^2 + 1e-5), 0, 1) (1 without correction)
//          A += sum_j beta_j k_j^T (v_j - vbar_j);  z += sum_j gamma_j k_j
// Everything is computed in float32 from the model's dtype. The first-segment rule is applied by
// segment index (the caller says `first`), never by a window position, so that every executor
// associates the same terms in the same order.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>

#include "crossbatch/core/context.hpp"
#include "crossbatch/ops/cpu/eigen_map.hpp"
#include "crossbatch/recurrent/armt_weights.hpp"

namespace crossbatch {

inline constexpr float armt_eps = 1e-5f;

// Every layer's memory of one sequence: A (L, d_key, C) and z (L, d_key), zero at the start.
struct memory_state {
  tensor<float> A;  // (L, d_key, C)
  tensor<float> z;  // (L, d_key)

  memory_state() = default;
  memory_state(int layers, int d_key, int hidden)
      : A(full<float>({layers, d_key, hidden}, 0.0f)), z(full<float>({layers, d_key}, 0.0f)) {}

  int layers() const { return static_cast<int>(A.dim(0)); }
  void clear() {
    std::fill(A.data(), A.data() + A.size(), 0.0f);
    std::fill(z.data(), z.data() + z.size(), 0.0f);
  }
};

namespace armt_detail {
using cpu_detail::row_matrix;
using matrix_map = Eigen::Map<row_matrix>;
using const_matrix_map = Eigen::Map<const row_matrix>;
using vector_map = Eigen::Map<Eigen::VectorXf>;
using const_vector_map = Eigen::Map<const Eigen::VectorXf>;

inline const_matrix_map as_map(const tensor<float>& t) { return {t.data(), t.dim(0), t.dim(1)}; }
inline matrix_map layer_A(memory_state& s, int l) {
  return {s.A.data() + index_t(l) * s.A.dim(1) * s.A.dim(2), s.A.dim(1), s.A.dim(2)};
}
inline vector_map layer_z(memory_state& s, int l) {
  return {s.z.data() + index_t(l) * s.z.dim(1), s.z.dim(1)};
}
}  // namespace armt_detail

// phi (n, 2 nu d) of x (n, d): x' = [relu(x), relu(-x)]; phi[(j-1) 2d + i] = x'[i] x'[(i-j) mod 2d].
inline cpu_detail::row_matrix dpfp(const cpu_detail::row_matrix& x, int nu) {
  const index_t n = x.rows(), d = x.cols(), w = 2 * d;
  cpu_detail::row_matrix xp(n, w), phi(n, w * nu);
  xp.leftCols(d) = x.cwiseMax(0.0f);
  xp.rightCols(d) = (-x).cwiseMax(0.0f);
  for (index_t r = 0; r < n; ++r)
    for (int j = 1; j <= nu; ++j)
      for (index_t i = 0; i < w; ++i)
        phi(r, (j - 1) * w + i) = xp(r, i) * xp(r, ((i - j) % w + w) % w);
  return phi;
}

// h (rows, C) += (q A_l) / (q . z_l + eps) with q = phi(h W_mq^T): layer l's read, in place.
template <class T>
void memory_read(const context<cpu>&, tensor_view<T> h, const armt_layer_weights& w,
                 memory_state& s, int l, int nu) {
  using namespace armt_detail;
  const auto x = cpu_detail::widen<T>(tensor_view<const T>(h));
  const row_matrix q = dpfp(x * as_map(w.w_q).transpose(), nu);  // (rows, d_key)
  const row_matrix num = q * layer_A(s, l);                       // (rows, C)
  const Eigen::VectorXf den = (q * layer_z(s, l)).array() + armt_eps;
  for (index_t i = 0; i < h.shape[0]; ++i)
    for (index_t j = 0; j < h.shape[1]; ++j)
      h(i, j) = static_cast<T>(x(i, j) + num(i, j) / den(i));
}

// Layer l's write from the block output at the memory rows m (M, C); `first`: segment 0 of the
// sequence (vbar = 0, gamma = 1).
template <class T>
void memory_write(const context<cpu>&, tensor_view<const T> m, const armt_layer_weights& w,
                  memory_state& s, int l, bool first, int nu, bool correction) {
  using namespace armt_detail;
  const auto x = cpu_detail::widen<T>(m);
  const index_t rows = x.rows();
  const row_matrix k = dpfp(x * as_map(w.w_k).transpose(), nu);  // (M, d_key)
  row_matrix v = x * as_map(w.w_v).transpose();                   // (M, C)
  const Eigen::VectorXf logit = x * Eigen::Map<const Eigen::VectorXf>(w.w_b.data(), w.w_b.size());
  auto A = layer_A(s, l);
  auto z = layer_z(s, l);
  Eigen::VectorXf gamma = Eigen::VectorXf::Ones(rows);
  if (!first) {
    const Eigen::VectorXf den = (k * z).array() + armt_eps;
    const row_matrix vbar = (k * A).array().colwise() / den.array();
    v -= vbar;
    if (correction)
      for (index_t j = 0; j < rows; ++j)
        gamma(j) = std::clamp(1.0f - den(j) / (k.row(j).squaredNorm() + armt_eps), 0.0f, 1.0f);
  }
  for (index_t j = 0; j < rows; ++j) v.row(j) *= 1.0f / (1.0f + std::exp(-(logit(j) + w.b_b)));
  const row_matrix delta = k.transpose() * v;  // (d_key, C) = sum_j beta_j k_j^T (v_j - vbar_j)
  A += delta;
  const Eigen::VectorXf dz = k.transpose() * gamma;
  z += dz;
}

}  // namespace crossbatch
