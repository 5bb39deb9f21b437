// Normalisations on the CPU, computed in float: LayerNorm (GPT-2, BERT) and RMSNorm (Llama, Qwen2).
// Both act on the last dimension of a (N, C) view; out may alias x.
#pragma once

#include <cmath>

#include "crossbatch/core/context.hpp"
#include "crossbatch/core/tensor.hpp"

namespace crossbatch {

// out (N, C) = (x - mean) / sqrt(var + eps) * w + b, per row.
template <class T>
void layer_norm(const context<cpu>&, tensor_view<T> out, in_view<T> x, in_view<T> w, in_view<T> b,
                float eps) {
  const index_t n = x.shape[0], c = x.shape[1];
  require<shape_error>(out.shape == x.shape && w.shape == shape_t{c} && b.shape == shape_t{c},
                       "layer_norm: x " + to_string(x.shape) + ", w " + to_string(w.shape) +
                           ", b " + to_string(b.shape));
  for (index_t i = 0; i < n; ++i) {
    float mean = 0;
    for (index_t j = 0; j < c; ++j) mean += static_cast<float>(x(i, j));
    mean /= c;
    float var = 0;
    for (index_t j = 0; j < c; ++j) {
      const float d = static_cast<float>(x(i, j)) - mean;
      var += d * d;
    }
    const float inv = 1.0f / std::sqrt(var / c + eps);
    for (index_t j = 0; j < c; ++j)
      out(i, j) =
          static_cast<T>((static_cast<float>(x(i, j)) - mean) * inv * static_cast<float>(w(j)) +
                         static_cast<float>(b(j)));
  }
}

// out (N, C) = x / sqrt(mean(x^2) + eps) * w, per row (HF LlamaRMSNorm: normalise in float,
// cast back to T, then multiply by w).
template <class T>
void rms_norm(const context<cpu>&, tensor_view<T> out, in_view<T> x, in_view<T> w, float eps) {
  const index_t n = x.shape[0], c = x.shape[1];
  require<shape_error>(out.shape == x.shape && w.shape == shape_t{c},
                       "rms_norm: x " + to_string(x.shape) + ", w " + to_string(w.shape));
  for (index_t i = 0; i < n; ++i) {
    float ss = 0;
    for (index_t j = 0; j < c; ++j) {
      const float v = static_cast<float>(x(i, j));
      ss += v * v;
    }
    const float inv = 1.0f / std::sqrt(ss / c + eps);
    for (index_t j = 0; j < c; ++j) {
      const T normed = static_cast<T>(static_cast<float>(x(i, j)) * inv);
      out(i, j) = static_cast<T>(static_cast<float>(w(j)) * static_cast<float>(normed));
    }
  }
}

}  // namespace crossbatch

namespace crossbatch {

enum class norm_kind { layer, rms };

// The residual step fused with the next normalisation: x (N, C) += delta; out = norm(x).
// b is ignored for RMSNorm.
template <class T>
void residual_norm(const context<cpu>& ctx, norm_kind kind, tensor_view<T> x, in_view<T> delta,
                   tensor_view<T> out, in_view<T> w, in_view<T> b, float eps) {
  require<shape_error>(
      x.shape == delta.shape && x.contiguous() && delta.contiguous(),
      "residual_norm: x " + to_string(x.shape) + " vs delta " + to_string(delta.shape));
  for (index_t i = 0; i < x.size(); ++i)
    x.data[i] = static_cast<T>(static_cast<float>(x.data[i]) + static_cast<float>(delta.data[i]));
  if (kind == norm_kind::layer)
    layer_norm(ctx, out, tensor_view<const T>(x), w, b, eps);
  else
    rms_norm(ctx, out, tensor_view<const T>(x), w, eps);
}

}  // namespace crossbatch
