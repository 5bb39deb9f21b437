// The CPU ops of training through the frozen decoder (S = float, or double for gradient checks):
// each forward op in S precision (the inference ops of ops/cpu compute in float, which would spoil
// float64 finite differences) and its backward. The reference for train/cuda/backward_ops.cuh,
// which has the same names and contracts for activations T = float | bfloat16 and gradients /
// adapters G = float (see .devrun/LORA_API.md). On the CPU every view of one call has the same S.
//
// Conventions: 2-D views are (rows, cols) with unit column stride and any row stride (the q, k, v
// column blocks of a fused projection are such views). Parameter gradients accumulate (+=); input
// gradients say "=" (overwritten) or "+=" per op. Frozen weights get no gradient unless a dw view
// is passed.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "crossbatch/core/context.hpp"
#include "crossbatch/core/tensor.hpp"
#include "crossbatch/mix/cpu_ops.hpp"  // copy_rows
#include "crossbatch/ops/activation_kind.hpp"
#include "crossbatch/ops/cpu/norm.hpp"  // norm_kind
#include "crossbatch/train/backward/dropout.hpp"
#include "crossbatch/train/ops.hpp"  // gemm, frozen_norm, train_detail

namespace crossbatch {
// An optional in-place rounding of a contiguous range (precision emulation: round_16bit applies
// it where the CUDA ops hold or multiply a 16-bit operand; null = none).
template <class S>
using rounding = std::type_identity_t<void (*)(S*, index_t)>;

namespace backward_detail {

template <class S>
using strided = Eigen::Map<train_detail::mat<S>, 0, Eigen::OuterStride<>>;
template <class S>
using cstrided = Eigen::Map<const train_detail::mat<S>, 0, Eigen::OuterStride<>>;

// The (rows, cols) matrix at p with row stride ld.
template <class S>
strided<S> rows_at(S* p, index_t rows, index_t cols, index_t ld) {
  return {p, rows, cols, Eigen::OuterStride<>(ld)};
}
template <class S>
cstrided<S> rows_at(const S* p, index_t rows, index_t cols, index_t ld) {
  return {p, rows, cols, Eigen::OuterStride<>(ld)};
}

// A contiguous copy of a 2-D view (unit column stride), rounded by round.
template <class S>
tensor<S> rounded(in_view<S> v, rounding<S> round) {
  tensor<S> t({v.shape[0], v.shape[1]});
  for (index_t i = 0; i < v.shape[0]; ++i)
    for (index_t j = 0; j < v.shape[1]; ++j) t.data()[i * v.shape[1] + j] = v(i, j);
  round(t.data(), t.size());
  return t;
}

template <class V>
void require_rows(const V& v, index_t rows, index_t cols, const char* op, const char* what) {
  require<shape_error>(
      v.rank() == 2 && v.shape[0] == rows && v.shape[1] == cols && (cols <= 1 || v.strides[1] == 1),
      std::string(op) + ": " + what + " must be (" + std::to_string(rows) + ", " +
          std::to_string(cols) + ") with unit column stride, got " + to_string(v.shape));
}

// act(x) and act'(x) in S.
template <class S>
S act_value(activation a, S x) {
  switch (a) {
    case activation::gelu_tanh: {
      const S k = S(0.7978845608028654), c = S(0.044715);
      return S(0.5) * x * (S(1) + std::tanh(k * (x + c * x * x * x)));
    }
    case activation::gelu_erf:
      return S(0.5) * x * (S(1) + std::erf(x * S(0.70710678118654752440)));
    case activation::silu:
      return x / (S(1) + std::exp(-x));
    case activation::relu:
      return x > S(0) ? x : S(0);
    case activation::tanh:
      return std::tanh(x);
  }
  return x;
}
template <class S>
S act_grad(activation a, S x) {
  switch (a) {
    case activation::gelu_tanh: {
      const S k = S(0.7978845608028654), c = S(0.044715);
      const S t = std::tanh(k * (x + c * x * x * x));
      return S(0.5) * (S(1) + t) + S(0.5) * x * (S(1) - t * t) * k * (S(1) + S(3) * c * x * x);
    }
    case activation::gelu_erf:
      return train_detail::gelu_grad(x);
    case activation::silu: {
      const S s = S(1) / (S(1) + std::exp(-x));
      return s * (S(1) + x * (S(1) - s));
    }
    case activation::relu:
      return x > S(0) ? S(1) : S(0);
    case activation::tanh: {
      const S t = std::tanh(x);
      return S(1) - t * t;
    }
  }
  return S(1);
}

}  // namespace backward_detail

// ---- linear layers (frozen W in the (out, in) layout) ----

// y (N, O) = x (N, I) W^T (+ b (O) when b has data).
template <class S>
void linear_forward(const context<cpu>& ctx, tensor_view<S> y, in_view<S> x, in_view<S> w,
                    in_view<S> b = {}) {
  gemm(ctx, y, x, w, false, true);
  if (b.data) {
    require<shape_error>(b.size() == y.shape[1], "linear_forward: bias " + to_string(b.shape) +
                                                     " for output " + to_string(y.shape));
    for (index_t i = 0; i < y.shape[0]; ++i)
      for (index_t j = 0; j < y.shape[1]; ++j) y(i, j) += b.data[j];
  }
}

// dx (N, I) = dy (N, O) W (O, I), or += when accumulate.
template <class S>
void linear_backward_input(const context<cpu>& ctx, tensor_view<S> dx, in_view<S> dy, in_view<S> w,
                           bool accumulate = false) {
  gemm(ctx, dx, dy, w, false, false, S(1), accumulate ? S(1) : S(0));
}

// ---- LoRA adapter: y += scale * B (A (dropout(x))) ----

// y (N, O) += scale * xd A^T B^T with xd (N, I) = dropout(x) (written: kept for the backward
// pass) and u (N, r) = xd A^T (written). A (r, I), B (O, r). The dropout mask is
// lora_dropout_factor(seed, stream, row * I + col, p). round_16bit (emulation): applied to the
// operands u and B of the output product, as the CUDA op multiplies them in y's 16-bit type.
template <class S>
void lora_forward(const context<cpu>& ctx, tensor_view<S> y, in_view<S> x, in_view<S> a,
                  in_view<S> b, float scale, float p, std::uint64_t seed, std::uint64_t stream,
                  tensor_view<S> xd, tensor_view<S> u, rounding<S> round_16bit = nullptr) {
  using namespace backward_detail;
  const index_t n = x.shape[0], in = x.shape[1], r = a.shape[0], out = b.shape[0];
  require_rows(a, r, in, "lora_forward", "A");
  require_rows(b, out, r, "lora_forward", "B");
  require_rows(y, n, out, "lora_forward", "y");
  require_rows(xd, n, in, "lora_forward", "xd");
  require_rows(u, n, r, "lora_forward", "u");
  std::vector<float> keep(in);
  for (index_t i = 0; i < n; ++i) {
    lora_dropout_factors(seed, stream, std::uint64_t(i * in), std::uint64_t(in), p, keep.data());
    for (index_t j = 0; j < in; ++j) xd(i, j) = x(i, j) * S(keep[j]);
  }
  gemm(ctx, u, in_view<S>(xd), a, false, true);
  if (round_16bit) {
    const auto ur = backward_detail::rounded<S>(in_view<S>(u), round_16bit);
    const auto br = backward_detail::rounded<S>(b, round_16bit);
    gemm(ctx, y, ur.view(), br.view(), false, true, S(scale), S(1));
    return;
  }
  gemm(ctx, y, in_view<S>(u), b, false, true, S(scale), S(1));
}

// The backward pass of lora_forward given dy (N, O): dA (r, I) +=, dB (O, r) +=, dx (N, I) +=
// (the adapter's share of the input gradient). du (N, r) and dxd (N, I) are scratch.
// round_16bit (emulation of a 16-bit dy and dx): applied to the float operands of the products
// with dy (u, B) and, without dropout, of the product into dx (du, A), as the CUDA op does.
template <class S>
void lora_backward(const context<cpu>& ctx, tensor_view<S> da, tensor_view<S> db, tensor_view<S> dx,
                   in_view<S> dy, in_view<S> xd, in_view<S> u, in_view<S> a, in_view<S> b,
                   float scale, float p, std::uint64_t seed, std::uint64_t stream,
                   tensor_view<S> du, tensor_view<S> dxd, rounding<S> round_16bit = nullptr) {
  using namespace backward_detail;
  const index_t n = xd.shape[0], in = xd.shape[1], r = a.shape[0], out = b.shape[0];
  require_rows(dy, n, out, "lora_backward", "dy");
  require_rows(dx, n, in, "lora_backward", "dx");
  require_rows(du, n, r, "lora_backward", "du");
  if (round_16bit) {
    const auto ur = rounded<S>(u, round_16bit), br = rounded<S>(b, round_16bit);
    gemm(ctx, db, dy, ur.view(), true, false, S(scale), S(1));
    gemm(ctx, du, dy, br.view(), false, false, S(scale));
  } else {
    gemm(ctx, db, dy, u, true, false, S(scale), S(1));  // dB += s dy^T u
    gemm(ctx, du, dy, b, false, false, S(scale));       // du = s dy B
  }
  gemm(ctx, da, in_view<S>(du), xd, true, false, S(1), S(1));
  if (p <= 0.0f) {
    if (round_16bit) {
      const auto dur = rounded<S>(in_view<S>(du), round_16bit), ar = rounded<S>(a, round_16bit);
      gemm(ctx, dx, dur.view(), ar.view(), false, false, S(1), S(1));
      return;
    }
    gemm(ctx, dx, in_view<S>(du), a, false, false, S(1), S(1));
    return;
  }
  require_rows(dxd, n, in, "lora_backward", "dxd");
  gemm(ctx, dxd, in_view<S>(du), a, false, false);
  std::vector<float> keep(in);
  for (index_t i = 0; i < n; ++i) {
    lora_dropout_factors(seed, stream, std::uint64_t(i * in), std::uint64_t(in), p, keep.data());
    for (index_t j = 0; j < in; ++j) dx(i, j) += dxd(i, j) * S(keep[j]);
  }
}

// ---- normalisation with frozen weights ----

// out (N, C) = norm(x) * w (+ b for LayerNorm), computed in S (RMSNorm: x / sqrt(mean x^2 + eps)).
template <class S>
void norm_forward(const context<cpu>& ctx, norm_kind kind, tensor_view<S> out, in_view<S> x,
                  in_view<S> w, in_view<S> b, float eps) {
  frozen_norm(ctx, kind, out, x, w, b, eps);
}

// dx (N, C) += d norm(x) / dx applied to dy (N, C); dw, db (C) += when they have data.
template <class S>
void norm_backward(const context<cpu>&, norm_kind kind, tensor_view<S> dx, in_view<S> dy,
                   in_view<S> x, in_view<S> w, float eps, tensor_view<S> dw = {},
                   tensor_view<S> db = {}) {
  const index_t n = x.shape[0], c = x.shape[1];
  require<shape_error>(dx.shape == x.shape && dy.shape == x.shape && w.size() == c,
                       "norm_backward: x " + to_string(x.shape) + ", dy " + to_string(dy.shape) +
                           ", dx " + to_string(dx.shape));
  const bool layer = kind == norm_kind::layer;
  std::vector<S> g(c);
  for (index_t i = 0; i < n; ++i) {
    S mean = 0, ss = 0;
    if (layer)
      for (index_t j = 0; j < c; ++j) mean += x(i, j) / S(c);
    for (index_t j = 0; j < c; ++j) ss += (x(i, j) - mean) * (x(i, j) - mean);
    const S r = S(1) / std::sqrt(ss / S(c) + S(eps));
    S mg = 0, mgx = 0;
    for (index_t j = 0; j < c; ++j) {
      const S xh = (x(i, j) - mean) * r;
      if (dw.data) dw.data[j] += dy(i, j) * xh;
      if (db.data && layer) db.data[j] += dy(i, j);
      g[j] = dy(i, j) * w.data[j];
      mg += g[j];
      mgx += g[j] * xh;
    }
    mg /= S(c);
    mgx /= S(c);
    for (index_t j = 0; j < c; ++j)
      dx(i, j) += r * (g[j] - (layer ? mg : S(0)) - (x(i, j) - mean) * r * mgx);
  }
}

// ---- rotary position embedding (rotate-half layout of ops/cpu/rope.hpp) ----

namespace backward_detail {
template <class S>
void rotate(tensor_view<S> x, in_view<std::int32_t> positions, in_view<float> inv_freq, S sign) {
  require<shape_error>(x.rank() == 3 && x.shape[0] == positions.size() &&
                           x.shape[2] == 2 * inv_freq.size() && x.strides[2] == 1,
                       "rope: x " + to_string(x.shape) + " does not fit positions / inv_freq");
  const index_t n = x.shape[0], h = x.shape[1], half = x.shape[2] / 2;
  std::vector<S> cs(half), sn(half);
  for (index_t t = 0; t < n; ++t) {
    for (index_t i = 0; i < half; ++i) {
      // float angle as transformers computes it; cos/sin in S
      const S angle = S(float(positions.data[t]) * inv_freq.data[i]);
      cs[i] = std::cos(angle);
      sn[i] = sign * std::sin(angle);
    }
    for (index_t hh = 0; hh < h; ++hh) {
      S* v = &x(t, hh, 0);
      for (index_t i = 0; i < half; ++i) {
        const S a = v[i], b = v[i + half];
        v[i] = a * cs[i] - b * sn[i];
        v[i + half] = b * cs[i] + a * sn[i];
      }
    }
  }
}
}  // namespace backward_detail

// x (N, H, Dh) rotated in place by positions (N) * inv_freq (Dh/2); x may be strided.
template <class S>
void rope_forward(const context<cpu>&, tensor_view<S> x, in_view<std::int32_t> positions,
                  in_view<float> inv_freq) {
  backward_detail::rotate(x, positions, inv_freq, S(1));
}

// dx (N, H, Dh) in place: the gradient of rope_forward's input (the inverse rotation).
template <class S>
void rope_backward(const context<cpu>&, tensor_view<S> dx, in_view<std::int32_t> positions,
                   in_view<float> inv_freq) {
  backward_detail::rotate(dx, positions, inv_freq, S(-1));
}

// ---- attention: causal within a row, keys masked by valid, grouped-query heads ----

// out (B, T, H, Dh) = softmax(q k^T * scale + mask) v per row b and head h, where query t sees key
// j when j <= t and valid[b * T + j] != 0 (a query seeing no key gets zeros and lse -inf).
// q (B, T, H, Dh), k, v (B, T, Hkv, Dh): any strides with unit last stride (views into a fused
// projection). lse (B, H, T) receives each query's log-sum-exp of the scaled scores.
// round_16bit (emulation): applied to the probabilities, which the CUDA op multiplies with v in
// the 16-bit type.
template <class S>
void attention_forward_train(const context<cpu>& ctx, tensor_view<S> out, tensor_view<S> lse,
                             in_view<S> q, in_view<S> k, in_view<S> v, in_view<std::int32_t> valid,
                             float scale, rounding<S> round_16bit = nullptr) {
  using namespace backward_detail;
  const index_t b = q.shape[0], t = q.shape[1], h = q.shape[2], d = q.shape[3], hkv = k.shape[2];
  require<shape_error>(
      q.rank() == 4 && k.rank() == 4 && k.shape == v.shape && k.shape[0] == b && k.shape[1] == t &&
          k.shape[3] == d && h % hkv == 0 && out.shape == q.shape &&
          lse.shape == shape_t{b, h, t} && valid.size() == b * t && q.strides[3] == 1 &&
          k.strides[3] == 1 && v.strides[3] == 1 && out.strides[3] == 1,
      "attention_forward_train: q " + to_string(q.shape) + ", k " + to_string(k.shape) + ", out " +
          to_string(out.shape) + ", lse " + to_string(lse.shape));
  const index_t group = h / hkv;
  const S ninf = -std::numeric_limits<S>::infinity();
  Eigen::setNbThreads(1);
  const int threads = int(std::max<index_t>(1, std::min<index_t>(ctx.threads, b * h)));
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && t >= 32)
  for (index_t bh = 0; bh < b * h; ++bh) {
    const index_t bi = bh / h, hi = bh % h;
    train_detail::mat<S> scores(t, t);
    const index_t kh = hi / group;
    const auto qm = rows_at(&q(bi, 0, hi, 0), t, d, q.strides[1]);
    const auto km = rows_at(&k(bi, 0, kh, 0), t, d, k.strides[1]);
    const auto vm = rows_at(&v(bi, 0, kh, 0), t, d, v.strides[1]);
    auto om = rows_at(&out(bi, 0, hi, 0), t, d, out.strides[1]);
    scores.noalias() = S(scale) * qm * km.transpose();
    for (index_t i = 0; i < t; ++i) {
      S m = ninf;
      for (index_t j = 0; j < t; ++j) {
        if (j > i || !valid.data[bi * t + j]) scores(i, j) = ninf;
        m = std::max(m, scores(i, j));
      }
      if (m == ninf) {
        scores.row(i).setZero();
        lse(bi, hi, i) = ninf;
        continue;
      }
      S sum = 0;
      for (index_t j = 0; j < t; ++j) sum += (scores(i, j) = std::exp(scores(i, j) - m));
      for (index_t j = 0; j < t; ++j) scores(i, j) /= sum;
      lse(bi, hi, i) = m + std::log(sum);
    }
    if (round_16bit) round_16bit(scores.data(), scores.size());
    om.noalias() = scores * vm;
  }
}

// The backward pass of attention_forward_train given dout (B, T, H, Dh) and its out and lse:
// dq (B, T, H, Dh) =, dk, dv (B, T, Hkv, Dh) = (a kv head sums over its query heads). The
// probabilities are recomputed from q, k and lse. round_16bit (emulation of the CUDA op in a
// 16-bit type): applied to the probabilities and to the score gradients, which it holds in that
// type, and the row sums of p dp then stand for dout . out, as there.
template <class S>
void attention_backward(const context<cpu>& ctx, tensor_view<S> dq, tensor_view<S> dk,
                        tensor_view<S> dv, in_view<S> dout, in_view<S> out, in_view<S> q,
                        in_view<S> k, in_view<S> v, in_view<S> lse, in_view<std::int32_t> valid,
                        float scale, rounding<S> round_16bit = nullptr) {
  using namespace backward_detail;
  const index_t b = q.shape[0], t = q.shape[1], h = q.shape[2], d = q.shape[3], hkv = k.shape[2];
  require<shape_error>(dq.shape == q.shape && dout.shape == q.shape && out.shape == q.shape &&
                           dk.shape == k.shape && dv.shape == v.shape && k.shape == v.shape &&
                           lse.shape == shape_t{b, h, t} && valid.size() == b * t &&
                           dq.strides[3] == 1 && dk.strides[3] == 1 && dv.strides[3] == 1 &&
                           dout.strides[3] == 1,
                       "attention_backward: q " + to_string(q.shape) + ", dq " +
                           to_string(dq.shape) + ", dk " + to_string(dk.shape));
  const index_t group = h / hkv;
  const S ninf = -std::numeric_limits<S>::infinity();
  Eigen::setNbThreads(1);
  const int threads = int(std::max<index_t>(1, std::min<index_t>(ctx.threads, b * hkv)));
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && t >= 32)
  for (index_t bk = 0; bk < b * hkv; ++bk) {
    const index_t bi = bk / hkv, kh = bk % hkv;
    train_detail::mat<S> p(t, t), dp(t, t);
    std::vector<S> delta(t);
    auto dkm = rows_at(&dk(bi, 0, kh, 0), t, d, dk.strides[1]);
    auto dvm = rows_at(&dv(bi, 0, kh, 0), t, d, dv.strides[1]);
    dkm.setZero();
    dvm.setZero();
    const auto km = rows_at(&k(bi, 0, kh, 0), t, d, k.strides[1]);
    const auto vm = rows_at(&v(bi, 0, kh, 0), t, d, v.strides[1]);
    for (index_t hi = kh * group; hi < (kh + 1) * group; ++hi) {
      const auto qm = rows_at(&q(bi, 0, hi, 0), t, d, q.strides[1]);
      const auto om = rows_at(&out(bi, 0, hi, 0), t, d, out.strides[1]);
      const auto dom = rows_at(&dout(bi, 0, hi, 0), t, d, dout.strides[1]);
      auto dqm = rows_at(&dq(bi, 0, hi, 0), t, d, dq.strides[1]);
      p.noalias() = S(scale) * qm * km.transpose();
      for (index_t i = 0; i < t; ++i) {
        const S l = lse(bi, hi, i);
        for (index_t j = 0; j < t; ++j)
          p(i, j) = (l == ninf || j > i || !valid.data[bi * t + j]) ? S(0) : std::exp(p(i, j) - l);
        delta[i] = dom.row(i).dot(om.row(i));
      }
      if (round_16bit) round_16bit(p.data(), p.size());
      dvm.noalias() += p.transpose() * dom;
      dp.noalias() = dom * vm.transpose();
      if (round_16bit)
        for (index_t i = 0; i < t; ++i) delta[i] = p.row(i).dot(dp.row(i));
      for (index_t i = 0; i < t; ++i)
        for (index_t j = 0; j < t; ++j) dp(i, j) = p(i, j) * (dp(i, j) - delta[i]) * S(scale);
      if (round_16bit) round_16bit(dp.data(), dp.size());
      dqm.noalias() = dp * km;
      dkm.noalias() += dp.transpose() * qm;
    }
  }
}

// ---- MLP activations ----

// out = act(x), elementwise (GPT-2's MLP; gelu_tanh is gelu_new). Contiguous, equal sizes.
template <class S>
void activation_forward(const context<cpu>&, activation a, tensor_view<S> out, in_view<S> x) {
  require<shape_error>(out.size() == x.size() && out.contiguous() && x.contiguous(),
                       "activation_forward: shapes differ");
  for (index_t i = 0; i < x.size(); ++i) out.data[i] = backward_detail::act_value(a, x.data[i]);
}

// dx = dy * act'(x) (=).
template <class S>
void activation_backward(const context<cpu>&, activation a, tensor_view<S> dx, in_view<S> dy,
                         in_view<S> x) {
  require<shape_error>(dx.size() == x.size() && dy.size() == x.size() && dx.contiguous() &&
                           dy.contiguous() && x.contiguous(),
                       "activation_backward: shapes differ");
  for (index_t i = 0; i < x.size(); ++i)
    dx.data[i] = dy.data[i] * backward_detail::act_grad(a, x.data[i]);
}

// out (N, F) = act(gate) * up with gate_up (N, 2F) = [gate | up] (SwiGLU for SiLU).
template <class S>
void gated_activation_forward(const context<cpu>&, activation a, tensor_view<S> out,
                              in_view<S> gate_up) {
  const index_t n = out.shape[0], f = out.shape[1];
  require<shape_error>(out.rank() == 2 && gate_up.shape == shape_t{n, 2 * f} && out.contiguous() &&
                           gate_up.contiguous(),
                       "gated_activation_forward: out " + to_string(out.shape) + ", gate_up " +
                           to_string(gate_up.shape));
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < f; ++j)
      out(i, j) = backward_detail::act_value(a, gate_up(i, j)) * gate_up(i, f + j);
}

// dgate_up (N, 2F) = the gradient of gated_activation_forward given dout (N, F) (=).
template <class S>
void gated_activation_backward(const context<cpu>&, activation a, tensor_view<S> dgate_up,
                               in_view<S> dout, in_view<S> gate_up) {
  const index_t n = dout.shape[0], f = dout.shape[1];
  require<shape_error>(dgate_up.shape == shape_t{n, 2 * f} && gate_up.shape == dgate_up.shape &&
                           dgate_up.contiguous() && gate_up.contiguous() && dout.contiguous(),
                       "gated_activation_backward: dout " + to_string(dout.shape) + ", gate_up " +
                           to_string(gate_up.shape));
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < f; ++j) {
      const S g = gate_up(i, j), u = gate_up(i, f + j), d = dout(i, j);
      dgate_up(i, j) = d * u * backward_detail::act_grad(a, g);
      dgate_up(i, f + j) = d * backward_detail::act_value(a, g);
    }
}

// ---- embeddings and the residual stream ----

// x (N, C) (+)= table[ids[n]] (V, C); an id outside [0, V) is a value_error naming it.
template <class S>
void embedding_forward(const context<cpu>&, tensor_view<S> x, in_view<std::int32_t> ids,
                       in_view<S> table, bool accumulate = false) {
  const index_t n = ids.size(), vocab = table.shape[0], c = table.shape[1];
  require<shape_error>(x.shape == shape_t{n, c}, "embedding_forward: x " + to_string(x.shape) +
                                                     " for " + std::to_string(n) +
                                                     " ids of a table " + to_string(table.shape));
  for (index_t i = 0; i < n; ++i) {
    const std::int32_t id = ids.data[i];
    require(id >= 0 && id < vocab, "embedding_forward: id " + std::to_string(id) + " at position " +
                                       std::to_string(i) + " is outside the table of " +
                                       std::to_string(vocab) + " rows");
    for (index_t j = 0; j < c; ++j) x(i, j) = (accumulate ? x(i, j) : S(0)) + table(id, j);
  }
}

// dtable (V, C) += scatter-add of dx (N, C) by ids (N).
template <class S>
void embedding_backward(const context<cpu>&, tensor_view<S> dtable, in_view<S> dx,
                        in_view<std::int32_t> ids) {
  const index_t n = ids.size(), c = dtable.shape[1];
  require<shape_error>(dx.shape == shape_t{n, c}, "embedding_backward: dx " + to_string(dx.shape) +
                                                      ", table " + to_string(dtable.shape));
  for (index_t i = 0; i < n; ++i) {
    const std::int32_t id = ids.data[i];
    require(id >= 0 && id < dtable.shape[0],
            "embedding_backward: id " + std::to_string(id) + " outside the table");
    for (index_t j = 0; j < c; ++j) dtable(id, j) += dx(i, j);
  }
}

// x (N, C) += y (N, C) (the residual connection; also accumulates gradients).
template <class S>
void residual_add(const context<cpu>&, tensor_view<S> x, in_view<S> y) {
  require<shape_error>(x.shape == y.shape && x.rank() == 2,
                       "residual_add: " + to_string(x.shape) + " vs " + to_string(y.shape));
  for (index_t i = 0; i < x.shape[0]; ++i)
    for (index_t j = 0; j < x.shape[1]; ++j) x(i, j) += y(i, j);
}

// dst (N, C) = src (N, C) converted to dst's element type (on the CPU both are S: a copy; the
// CUDA overload converts float <-> bfloat16). Same-type copies use mix/cpu_ops.hpp's copy_rows.
template <class S>
void convert_rows(const context<cpu>& ctx, tensor_view<S> dst, in_view<S> src) {
  copy_rows(ctx, dst, src);
}

}  // namespace crossbatch
