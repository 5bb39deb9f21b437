// The CPU ops of the cross-batch mixers, the reference for the CUDA kernels: attention over the
// batch dimension with self exclusion and group masks, the combination of a sample's state with
// its cross term, the gate's input (two LayerNorms and their product), GELU, and a linear layer
// that keeps double precision for double tensors. Arithmetic in mix_accum_t<T> (float, or double).
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "crossbatch/core/context.hpp"
#include "crossbatch/core/tensor.hpp"
#include "crossbatch/mix/config.hpp"
#include "crossbatch/ops/cpu/linear.hpp"

namespace crossbatch {

// Whether sample j may give to sample i: another sample of the same group; a negative group id
// takes a sample out of mixing altogether (it neither gives nor receives).
inline bool mix_eligible(const std::int32_t* groups, index_t i, index_t j) {
  return i != j && groups[i] >= 0 && groups[j] == groups[i];
}

// out (N, O) = x (N, I) @ w (O, I)^T (+ b (O)). float/half/bfloat16 go through crossbatch::linear;
// double is computed in double (the gradient checks need it).
template <class T>
void mix_linear(const context<cpu>& ctx, tensor_view<T> out, in_view<T> x, in_view<T> w,
                in_view<T> b = {}) {
  if constexpr (std::is_same_v<T, double>) {
    require<shape_error>(x.rank() == 2 && w.rank() == 2 && out.rank() == 2 &&
                             w.shape[1] == x.shape[1] &&
                             out.shape == shape_t{x.shape[0], w.shape[0]},
                         "mix_linear: x " + to_string(x.shape) + ", w " + to_string(w.shape) +
                             ", out " + to_string(out.shape));
    using mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    using cmap = Eigen::Map<const mat, 0, Eigen::OuterStride<>>;
    Eigen::Map<mat, 0, Eigen::OuterStride<>> y(out.data, out.shape[0], out.shape[1],
                                               Eigen::OuterStride<>(out.strides[0]));
    y.noalias() =
        cmap(x.data, x.shape[0], x.shape[1], Eigen::OuterStride<>(x.strides[0])) *
        cmap(w.data, w.shape[0], w.shape[1], Eigen::OuterStride<>(w.strides[0])).transpose();
    if (b.data) y.rowwise() += Eigen::Map<const Eigen::RowVectorXd>(b.data, b.size());
  } else {
    linear(ctx, out, x, w, b);
  }
}

// Attention of every sample over the eligible others, per head. q, k, v (B, C) may be strided
// column slices of one projection; heads split C into H slices of D = C / H.
//   s_ij = scale * q_i . k_j                       (cosine: scale * q_i . q_j / (|q_i| |q_j|))
//   p_i  = softmax over eligible j of s_ij         (all zero when sample i has no eligible partner)
//   x_i  = sum_j p_ij v_j
// Writes x (B, C), probs (H, B, B), partners (B) = eligible count, inv_norms (B) = 1/max(|q_i|,
// 1e-12) when cosine (then k is ignored and H must be 1).
template <class T>
void cross_attend(const context<cpu>&, tensor_view<T> x, tensor_view<mix_accum_t<T>> probs,
                  tensor_view<mix_accum_t<T>> inv_norms, tensor_view<std::int32_t> partners,
                  in_view<T> q, in_view<T> k, in_view<T> v, in_view<std::int32_t> groups, int heads,
                  float scale, bool cosine) {
  using A = mix_accum_t<T>;
  const index_t b = q.shape[0], c = q.shape[1], dh = c / heads;
  require<shape_error>(x.shape == shape_t{b, c} && v.shape == x.shape &&
                           (cosine || k.shape == x.shape) && probs.shape == shape_t{heads, b, b} &&
                           partners.size() == b && groups.size() == b && c % heads == 0 &&
                           (!cosine || (heads == 1 && inv_norms.size() == b)),
                       "cross_attend: x " + to_string(x.shape) + ", q " + to_string(q.shape) +
                           ", probs " + to_string(probs.shape));
  const std::int32_t* g = groups.data;
  if (cosine) {
    for (index_t i = 0; i < b; ++i) {
      A ss = 0;
      for (index_t d = 0; d < c; ++d) ss += A(q(i, d)) * A(q(i, d));
      inv_norms(i) = A(1) / std::max<A>(std::sqrt(ss), A(1e-12));
    }
  }
  std::vector<A> s(b), acc(dh);
  for (index_t i = 0; i < b; ++i) {
    index_t count = 0;
    for (index_t j = 0; j < b; ++j) count += mix_eligible(g, i, j);
    partners(i) = static_cast<std::int32_t>(count);
    for (int h = 0; h < heads; ++h) {
      const index_t off = h * dh;
      A m = -std::numeric_limits<A>::infinity();
      for (index_t j = 0; j < b; ++j) {
        if (!mix_eligible(g, i, j)) continue;
        A dot = 0;
        for (index_t d = 0; d < dh; ++d)
          dot += A(q(i, off + d)) * A(cosine ? q(j, off + d) : k(j, off + d));
        s[j] = dot * A(scale) * (cosine ? inv_norms(i) * inv_norms(j) : A(1));
        m = std::max(m, s[j]);
      }
      A sum = 0;
      for (index_t j = 0; j < b; ++j)
        sum += mix_eligible(g, i, j) ? (s[j] = std::exp(s[j] - m)) : A(0);
      std::fill(acc.begin(), acc.end(), A(0));
      for (index_t j = 0; j < b; ++j) {
        const A p = mix_eligible(g, i, j) ? s[j] / sum : A(0);
        probs(h, i, j) = p;
        if (p != A(0))
          for (index_t d = 0; d < dh; ++d) acc[d] += p * A(v(j, off + d));
      }
      for (index_t d = 0; d < dh; ++d) x(i, off + d) = static_cast<T>(acc[d]);
    }
  }
}

// out (B, C) = H + the combination of the cross term I (B, C) (config.hpp, combine_mode); rows with
// no partner get H exactly. mix (1,) is alpha or scale; gate_logits (B, C) the gate before sigmoid.
template <class T>
void mix_combine(const context<cpu>&, combine_mode mode, tensor_view<T> out, in_view<T> h,
                 in_view<T> info, in_view<T> mix, in_view<T> gate_logits,
                 in_view<std::int32_t> partners) {
  using A = mix_accum_t<T>;
  const index_t b = h.shape[0], c = h.shape[1];
  require<shape_error>(
      out.shape == h.shape && info.shape == h.shape && partners.size() == b &&
          (mode == combine_mode::gate ? gate_logits.shape == h.shape : mix.size() == 1),
      "mix_combine: h " + to_string(h.shape) + ", info " + to_string(info.shape));
  const A m = mode == combine_mode::gate ? A(0) : A(mix.data[0]);
  for (index_t i = 0; i < b; ++i) {
    if (partners(i) == 0) {
      for (index_t j = 0; j < c; ++j) out(i, j) = h(i, j);
      continue;
    }
    for (index_t j = 0; j < c; ++j) {
      const A hv = A(h(i, j)), iv = A(info(i, j));
      A y;
      if (mode == combine_mode::alpha)
        y = hv + m * (iv - hv);
      else if (mode == combine_mode::scale)
        y = hv + m * iv;
      else
        y = hv + iv / (A(1) + std::exp(-A(gate_logits(i, j))));
      out(i, j) = static_cast<T>(y);
    }
  }
}

// The gate's input z (B, 3C) = [LN_h(H); LN_a(I); LN_h(H) * LN_a(I)] with LayerNorms of weight w
// and bias b; stats (B, 4) = mean and 1/std of H and of I per row (for the backward pass).
template <class T>
void gate_input(const context<cpu>&, tensor_view<T> z, tensor_view<mix_accum_t<T>> stats,
                in_view<T> h, in_view<T> info, in_view<T> ln_h_w, in_view<T> ln_h_b,
                in_view<T> ln_a_w, in_view<T> ln_a_b, float eps) {
  using A = mix_accum_t<T>;
  const index_t b = h.shape[0], c = h.shape[1];
  require<shape_error>(
      z.shape == shape_t{b, 3 * c} && info.shape == h.shape && stats.shape == shape_t{b, 4},
      "gate_input: z " + to_string(z.shape) + ", h " + to_string(h.shape));
  std::vector<A> nh(c);
  auto moments = [&](in_view<T> x, index_t i, A& mean, A& inv) {
    A s = 0;
    for (index_t j = 0; j < c; ++j) s += A(x(i, j));
    mean = s / A(c);
    A var = 0;
    for (index_t j = 0; j < c; ++j) var += (A(x(i, j)) - mean) * (A(x(i, j)) - mean);
    inv = A(1) / std::sqrt(var / A(c) + A(eps));
  };
  for (index_t i = 0; i < b; ++i) {
    A mh, ih, ma, ia;
    moments(h, i, mh, ih);
    moments(info, i, ma, ia);
    stats(i, 0) = mh, stats(i, 1) = ih, stats(i, 2) = ma, stats(i, 3) = ia;
    for (index_t j = 0; j < c; ++j) {
      const A lh = (A(h(i, j)) - mh) * ih * A(ln_h_w(j)) + A(ln_h_b(j));
      const A la = (A(info(i, j)) - ma) * ia * A(ln_a_w(j)) + A(ln_a_b(j));
      z(i, j) = static_cast<T>(lh);
      z(i, c + j) = static_cast<T>(la);
      z(i, 2 * c + j) = static_cast<T>(lh * la);
    }
  }
}

// out = gelu(x) with the exact (erf) form, as torch.nn.GELU(); same shapes, contiguous.
template <class T>
void mix_gelu(const context<cpu>&, tensor_view<T> out, in_view<T> x) {
  using A = mix_accum_t<T>;
  require<shape_error>(out.shape == x.shape && out.contiguous() && x.contiguous(),
                       "mix_gelu: shapes differ");
  for (index_t i = 0; i < x.size(); ++i) {
    const A v = A(x.data[i]);
    out.data[i] = static_cast<T>(A(0.5) * v * (A(1) + std::erf(v * A(0.70710678118654752440))));
  }
}

// dst (N, C) = src (N, C); either may have a row stride.
template <class T>
void copy_rows(const context<cpu>&, tensor_view<T> dst, in_view<T> src) {
  require<shape_error>(
      dst.rank() == 2 && dst.shape == src.shape && dst.strides[1] == 1 && src.strides[1] == 1,
      "copy_rows: dst " + to_string(dst.shape) + " vs src " + to_string(src.shape));
  for (index_t i = 0; i < src.shape[0]; ++i) std::copy_n(&src(i, 0), src.shape[1], &dst(i, 0));
}

}  // namespace crossbatch
