// The CPU ops of training (float, or double for gradient checks): general matrix products,
// the backward passes of the mixer's parts (batch attention, combination, gate input, GELU, the
// frozen final norm), softmax cross-entropy, row gather/scatter, reductions and the AdamW update.
// The reference for train/cuda/ops.cuh. Parameters' gradients accumulate (+=); the input states
// come from the frozen model, so no gradient flows back into them.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "crossbatch/core/context.hpp"
#include "crossbatch/core/tensor.hpp"
#include "crossbatch/mix/config.hpp"
#include "crossbatch/mix/cpu_ops.hpp"
#include "crossbatch/ops/cpu/norm.hpp"

namespace crossbatch {
namespace train_detail {

template <class S>
using mat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class S>
using map = Eigen::Map<mat<S>, 0, Eigen::OuterStride<>>;
template <class S>
using cmap = Eigen::Map<const mat<S>, 0, Eigen::OuterStride<>>;

template <class S>
map<S> as_map(tensor_view<S> v) {
  require<shape_error>(v.rank() == 2 && (v.shape[1] <= 1 || v.strides[1] == 1),
                       "train op: need a 2-D row-major view, got " + to_string(v.shape));
  return {v.data, v.shape[0], v.shape[1],
          Eigen::OuterStride<>(v.shape[0] <= 1 ? v.shape[1] : v.strides[0])};
}
template <class S>
cmap<S> as_map(tensor_view<const S> v) {
  require<shape_error>(v.rank() == 2 && (v.shape[1] <= 1 || v.strides[1] == 1),
                       "train op: need a 2-D row-major view, got " + to_string(v.shape));
  return {v.data, v.shape[0], v.shape[1],
          Eigen::OuterStride<>(v.shape[0] <= 1 ? v.shape[1] : v.strides[0])};
}

template <class S>
S gelu_grad(S x) {
  const S cdf = S(0.5) * (S(1) + std::erf(x * S(0.70710678118654752440)));
  const S pdf = std::exp(S(-0.5) * x * x) * S(0.39894228040143267794);
  return cdf + x * pdf;
}

}  // namespace train_detail

// c (M, N) = alpha op(a) op(b) + beta c, op = transpose when ta / tb. Threads split the larger
// output dimension, each running a single-threaded Eigen product on its slice (Eigen's own
// parallel GEMM spins on barriers and collapses when the cores are shared; one barrier here).
template <class S>
void gemm(const context<cpu>& ctx, tensor_view<S> c, in_view<S> a, in_view<S> b, bool ta, bool tb,
          S alpha = S(1), S beta = S(0)) {
  using namespace train_detail;
  const index_t m = ta ? a.shape[1] : a.shape[0], k = ta ? a.shape[0] : a.shape[1];
  const index_t kb = tb ? b.shape[1] : b.shape[0], n = tb ? b.shape[0] : b.shape[1];
  require<shape_error>(k == kb && c.shape == shape_t{m, n},
                       "gemm: " + to_string(a.shape) + (ta ? "^T" : "") + " x " +
                           to_string(b.shape) + (tb ? "^T" : "") + " -> " + to_string(c.shape));
  Eigen::setNbThreads(1);
  auto cm = as_map(c);
  const auto am = as_map(a);
  const auto bm = as_map(b);
  if (beta == S(0))
    cm.setZero();
  else if (beta != S(1))
    cm *= beta;
  if (m == 0 || n == 0 || k == 0) return;
  // Slices of rows (split m) or of columns (split n) of the output.
  const bool split_rows = m >= n;
  const index_t extent = split_rows ? m : n;
  const index_t parts = std::max<index_t>(
      1, std::min<index_t>(ctx.threads, m * n * k >= (index_t(1) << 22) ? extent / 64 : 1));
  const index_t per = (extent + parts - 1) / parts;
#pragma omp parallel for num_threads(static_cast <int>(parts)) schedule(static) if (parts > 1)
  for (index_t p = 0; p < parts; ++p) {
    const index_t start = p * per, len = std::min(per, extent - start);
    if (len <= 0) continue;
    if (split_rows) {
      auto cs = cm.middleRows(start, len);
      if (!ta && !tb)
        cs.noalias() += alpha * am.middleRows(start, len) * bm;
      else if (ta && !tb)
        cs.noalias() += alpha * am.middleCols(start, len).transpose() * bm;
      else if (!ta && tb)
        cs.noalias() += alpha * am.middleRows(start, len) * bm.transpose();
      else
        cs.noalias() += alpha * am.middleCols(start, len).transpose() * bm.transpose();
    } else {
      auto cs = cm.middleCols(start, len);
      if (!ta && !tb)
        cs.noalias() += alpha * am * bm.middleCols(start, len);
      else if (ta && !tb)
        cs.noalias() += alpha * am.transpose() * bm.middleCols(start, len);
      else if (!ta && tb)
        cs.noalias() += alpha * am * bm.middleRows(start, len).transpose();
      else
        cs.noalias() += alpha * am.transpose() * bm.middleRows(start, len).transpose();
    }
  }
}

// Gradients of cross_attend (mix/cpu_ops.hpp) given dx (B, C): dq, dk, dv (B, C) are overwritten
// (dk unused when cosine: q plays both roles).
template <class S>
void cross_attend_backward(const context<cpu>&, tensor_view<S> dq, tensor_view<S> dk,
                           tensor_view<S> dv, in_view<S> dx, in_view<S> probs, in_view<S> inv_norms,
                           in_view<S> q, in_view<S> k, in_view<S> v, int heads, float scale,
                           bool cosine) {
  const index_t b = q.shape[0], c = q.shape[1], dh = c / heads;
  require<shape_error>(
      dx.shape == shape_t{b, c} && dq.shape == dx.shape && dv.shape == dx.shape &&
          probs.shape == shape_t{heads, b, b},
      "cross_attend_backward: dx " + to_string(dx.shape) + ", probs " + to_string(probs.shape));
  for (index_t i = 0; i < b; ++i)
    for (index_t d = 0; d < c; ++d) {
      dq(i, d) = S(0);
      dv(i, d) = S(0);
      if (!cosine) dk(i, d) = S(0);
    }
  std::vector<S> ds(b * b);
  std::vector<S> dn(cosine ? b * c : 0);
  for (int h = 0; h < heads; ++h) {
    const index_t off = h * dh;
    // dS_ij = P_ij (dP_ij - sum_l P_il dP_il), dP_ij = dx_i . v_j
    for (index_t i = 0; i < b; ++i) {
      S dot_pp = 0;
      for (index_t j = 0; j < b; ++j) {
        const S p = probs(h, i, j);
        S dp = 0;
        if (p != S(0))
          for (index_t d = 0; d < dh; ++d) dp += dx(i, off + d) * v(j, off + d);
        ds[i * b + j] = dp;
        dot_pp += p * dp;
      }
      for (index_t j = 0; j < b; ++j) ds[i * b + j] = probs(h, i, j) * (ds[i * b + j] - dot_pp);
    }
    for (index_t i = 0; i < b; ++i)
      for (index_t j = 0; j < b; ++j) {
        const S p = probs(h, i, j), g = ds[i * b + j] * S(scale);
        if (p != S(0))
          for (index_t d = 0; d < dh; ++d) dv(j, off + d) += p * dx(i, off + d);
        if (g == S(0)) continue;
        if (cosine) {
          // s_ij = scale n_i . n_j with n = q / |q|: dn_i += g n_j, dn_j += g n_i
          for (index_t d = 0; d < dh; ++d) {
            dn[i * c + off + d] += g * q(j, off + d) * inv_norms(j);
            dn[j * c + off + d] += g * q(i, off + d) * inv_norms(i);
          }
        } else {
          for (index_t d = 0; d < dh; ++d) {
            dq(i, off + d) += g * k(j, off + d);
            dk(j, off + d) += g * q(i, off + d);
          }
        }
      }
  }
  if (cosine) {
    // dq_i = (dn_i - n_i (n_i . dn_i)) / |q_i|
    for (index_t i = 0; i < b; ++i) {
      S nd = 0;
      for (index_t d = 0; d < c; ++d) nd += q(i, d) * inv_norms(i) * dn[i * c + d];
      for (index_t d = 0; d < c; ++d)
        dq(i, d) = (dn[i * c + d] - q(i, d) * inv_norms(i) * nd) * inv_norms(i);
    }
  }
}

// Gradients of mix_combine: dinfo (B, C) and, by mode, dmix (1,) += or dgate_logits (B, C).
template <class S>
void combine_backward(const context<cpu>&, combine_mode mode, tensor_view<S> dinfo,
                      tensor_view<S> dmix, tensor_view<S> dgate_logits, in_view<S> dy, in_view<S> h,
                      in_view<S> info, in_view<S> mix, in_view<S> gate_logits,
                      in_view<std::int32_t> partners) {
  const index_t b = h.shape[0], c = h.shape[1];
  require<shape_error>(dinfo.shape == h.shape && dy.shape == h.shape && info.shape == h.shape,
                       "combine_backward: h " + to_string(h.shape) + ", dy " + to_string(dy.shape));
  S acc = 0;
  for (index_t i = 0; i < b; ++i) {
    const bool alone = partners(i) == 0;
    for (index_t j = 0; j < c; ++j) {
      const S g = alone ? S(0) : dy(i, j);
      if (mode == combine_mode::gate) {
        const S sg = S(1) / (S(1) + std::exp(-gate_logits(i, j)));
        dinfo(i, j) = g * sg;
        dgate_logits(i, j) = g * info(i, j) * sg * (S(1) - sg);
      } else {
        dinfo(i, j) = g * mix.data[0];
        acc += g * (mode == combine_mode::alpha ? info(i, j) - h(i, j) : info(i, j));
      }
    }
  }
  if (mode != combine_mode::gate) dmix.data[0] += acc;
}

// Gradients of gate_input through its LayerNorm parameters (+=) and into the cross term (dinfo +=).
template <class S>
void gate_input_backward(const context<cpu>&, tensor_view<S> dinfo, tensor_view<S> d_ln_h_w,
                         tensor_view<S> d_ln_h_b, tensor_view<S> d_ln_a_w, tensor_view<S> d_ln_a_b,
                         in_view<S> dz, in_view<S> h, in_view<S> info, in_view<S> stats,
                         in_view<S> ln_h_w, in_view<S> ln_h_b, in_view<S> ln_a_w,
                         in_view<S> ln_a_b) {
  const index_t b = h.shape[0], c = h.shape[1];
  require<shape_error>(dz.shape == shape_t{b, 3 * c} && dinfo.shape == h.shape,
                       "gate_input_backward: dz " + to_string(dz.shape));
  std::vector<S> gx(c), xa(c);
  for (index_t i = 0; i < b; ++i) {
    const S mh = stats(i, 0), ih = stats(i, 1), ma = stats(i, 2), ia = stats(i, 3);
    S mean_g = 0, mean_gx = 0;
    for (index_t j = 0; j < c; ++j) {
      const S xh = (h(i, j) - mh) * ih;
      xa[j] = (info(i, j) - ma) * ia;
      const S lh = xh * ln_h_w(j) + ln_h_b(j), la = xa[j] * ln_a_w(j) + ln_a_b(j);
      const S dlh = dz(i, j) + dz(i, 2 * c + j) * la;
      const S dla = dz(i, c + j) + dz(i, 2 * c + j) * lh;
      d_ln_h_w(j) += dlh * xh;
      d_ln_h_b(j) += dlh;
      d_ln_a_w(j) += dla * xa[j];
      d_ln_a_b(j) += dla;
      gx[j] = dla * ln_a_w(j);
      mean_g += gx[j];
      mean_gx += gx[j] * xa[j];
    }
    mean_g /= S(c);
    mean_gx /= S(c);
    for (index_t j = 0; j < c; ++j) dinfo(i, j) += ia * (gx[j] - mean_g - xa[j] * mean_gx);
  }
}

// du = da * gelu'(u) (exact GELU); contiguous.
template <class S>
void gelu_backward(const context<cpu>&, tensor_view<S> du, in_view<S> da, in_view<S> u) {
  require<shape_error>(du.shape == u.shape && da.shape == u.shape, "gelu_backward: shapes differ");
  for (index_t i = 0; i < u.size(); ++i)
    du.data[i] = da.data[i] * train_detail::gelu_grad(u.data[i]);
}

// db (N) += sum over rows of dy (R, N).
template <class S>
void col_sum(const context<cpu>&, tensor_view<S> db, in_view<S> dy) {
  require<shape_error>(dy.rank() == 2 && db.size() == dy.shape[1],
                       "col_sum: db " + to_string(db.shape) + ", dy " + to_string(dy.shape));
  for (index_t i = 0; i < dy.shape[0]; ++i)
    for (index_t j = 0; j < dy.shape[1]; ++j) db.data[j] += dy(i, j);
}

// The model's final norm (frozen weights) in S precision: out (N, C) = norm(x).
template <class S>
void frozen_norm(const context<cpu>&, norm_kind kind, tensor_view<S> out, in_view<S> x,
                 in_view<S> w, in_view<S> b, float eps) {
  const index_t n = x.shape[0], c = x.shape[1];
  require<shape_error>(out.shape == x.shape && w.size() == c,
                       "frozen_norm: x " + to_string(x.shape));
  for (index_t i = 0; i < n; ++i) {
    S mean = 0, ss = 0;
    if (kind == norm_kind::layer)
      for (index_t j = 0; j < c; ++j) mean += x(i, j) / S(c);
    for (index_t j = 0; j < c; ++j) ss += (x(i, j) - mean) * (x(i, j) - mean);
    const S r = S(1) / std::sqrt(ss / S(c) + S(eps));
    for (index_t j = 0; j < c; ++j)
      out(i, j) = (x(i, j) - mean) * r * w(j) + (kind == norm_kind::layer ? b(j) : S(0));
  }
}

// dx (N, C) = gradient of frozen_norm's output dy with respect to its input x.
template <class S>
void frozen_norm_backward(const context<cpu>&, norm_kind kind, tensor_view<S> dx, in_view<S> dy,
                          in_view<S> x, in_view<S> w, float eps) {
  const index_t n = x.shape[0], c = x.shape[1];
  require<shape_error>(dx.shape == x.shape && dy.shape == x.shape,
                       "frozen_norm_backward: x " + to_string(x.shape));
  std::vector<S> g(c);
  for (index_t i = 0; i < n; ++i) {
    S mean = 0, ss = 0;
    if (kind == norm_kind::layer)
      for (index_t j = 0; j < c; ++j) mean += x(i, j) / S(c);
    for (index_t j = 0; j < c; ++j) ss += (x(i, j) - mean) * (x(i, j) - mean);
    const S r = S(1) / std::sqrt(ss / S(c) + S(eps));
    S mg = 0, mgx = 0;
    for (index_t j = 0; j < c; ++j) {
      g[j] = dy(i, j) * w(j);
      mg += g[j];
      mgx += g[j] * (x(i, j) - mean) * r;
    }
    mg /= S(c);
    mgx /= S(c);
    for (index_t j = 0; j < c; ++j)
      dx(i, j) = r * (g[j] - (kind == norm_kind::layer ? mg : S(0)) - (x(i, j) - mean) * r * mgx);
  }
}

// Softmax cross-entropy of logits (N, V) against targets (N): returns the summed loss and turns
// logits into their gradient times `grad_scale` ((softmax - onehot) * grad_scale) unless
// grad_scale is 0 (loss only). Target ids outside [0, V) are a value_error.
template <class S>
double softmax_xent(const context<cpu>&, tensor_view<S> logits, in_view<std::int32_t> targets,
                    S grad_scale) {
  const index_t n = logits.shape[0], v = logits.shape[1];
  require<shape_error>(logits.rank() == 2 && targets.size() == n,
                       "softmax_xent: logits " + to_string(logits.shape));
  double total = 0;
  for (index_t i = 0; i < n; ++i) {
    const std::int32_t t = targets.data[i];
    require(t >= 0 && t < v, "softmax_xent: target id " + std::to_string(t) +
                                 " outside the vocabulary of " + std::to_string(v));
    S* row = &logits(i, 0);
    const S m = *std::max_element(row, row + v);
    double sum = 0;
    for (index_t j = 0; j < v; ++j) sum += std::exp(double(row[j] - m));
    const double lse = double(m) + std::log(sum);
    total += lse - double(row[t]);
    if (grad_scale != S(0)) {
      for (index_t j = 0; j < v; ++j) row[j] = S(std::exp(double(row[j]) - lse)) * grad_scale;
      row[t] -= grad_scale;
    }
  }
  return total;
}

// dst (R, C) = src rows idx (R); idx < 0 gives a zero row.
template <class S>
void gather_rows(const context<cpu>&, tensor_view<S> dst, in_view<S> src,
                 in_view<std::int32_t> idx) {
  require<shape_error>(
      dst.rank() == 2 && dst.shape[0] == idx.size() && dst.shape[1] == src.shape[1],
      "gather_rows: shapes");
  for (index_t r = 0; r < idx.size(); ++r)
    for (index_t j = 0; j < dst.shape[1]; ++j)
      dst(r, j) = idx.data[r] < 0 ? S(0) : src(idx.data[r], j);
}

// dst rows idx (R) = src (R, C) (other rows untouched; idx < 0 skipped; indices distinct).
template <class S>
void scatter_rows(const context<cpu>&, tensor_view<S> dst, in_view<S> src,
                  in_view<std::int32_t> idx) {
  require<shape_error>(
      src.rank() == 2 && src.shape[0] == idx.size() && dst.shape[1] == src.shape[1],
      "scatter_rows: shapes");
  for (index_t r = 0; r < idx.size(); ++r)
    if (idx.data[r] >= 0)
      for (index_t j = 0; j < src.shape[1]; ++j) dst(idx.data[r], j) = src(r, j);
}

template <class S>
void fill(const context<cpu>&, tensor_view<S> x, S value) {
  require<shape_error>(x.contiguous(), "fill: needs a contiguous view");
  std::fill(x.data, x.data + x.size(), value);
}

// Sum of squares of a contiguous tensor (gradient clipping).
template <class S>
double sum_squares(const context<cpu>&, tensor_view<const S> x) {
  double s = 0;
  for (index_t i = 0; i < x.size(); ++i) s += double(x.data[i]) * double(x.data[i]);
  return s;
}

// One AdamW step (decoupled weight decay, bias-corrected moments) on a contiguous parameter:
// p -= lr (m_hat / (sqrt(v_hat) + eps) + wd p), with grad g scaled by grad_scale first (clipping).
template <class S>
void adamw_update(const context<cpu>&, tensor_view<S> p, in_view<S> g, tensor_view<S> m,
                  tensor_view<S> v, float lr, float beta1, float beta2, float eps, float wd,
                  int step, float grad_scale) {
  require<shape_error>(p.shape == g.shape && p.shape == m.shape && p.shape == v.shape,
                       "adamw_update: shapes differ");
  const double c1 = 1.0 - std::pow(double(beta1), step), c2 = 1.0 - std::pow(double(beta2), step);
  for (index_t i = 0; i < p.size(); ++i) {
    const S gi = g.data[i] * S(grad_scale);
    m.data[i] = S(beta1) * m.data[i] + S(1 - beta1) * gi;
    v.data[i] = S(beta2) * v.data[i] + S(1 - beta2) * gi * gi;
    const S mh = m.data[i] / S(c1), vh = v.data[i] / S(c2);
    p.data[i] -= S(lr) * (mh / (std::sqrt(vh) + S(eps)) + S(wd) * p.data[i]);
  }
}

}  // namespace crossbatch
