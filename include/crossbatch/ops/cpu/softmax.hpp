// Row softmax and log-softmax on the CPU, in float, numerically stable (max subtracted).
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include "crossbatch/core/context.hpp"
#include "crossbatch/core/tensor.hpp"

namespace crossbatch {

// Softmax of one row in place; -inf entries get probability 0; an all -inf row becomes zeros.
inline void softmax_row(float* x, index_t n) {
  float m = -std::numeric_limits<float>::infinity();
  for (index_t i = 0; i < n; ++i) m = std::max(m, x[i]);
  if (m == -std::numeric_limits<float>::infinity()) {
    std::fill(x, x + n, 0.0f);
    return;
  }
  float s = 0;
  for (index_t i = 0; i < n; ++i) s += (x[i] = std::exp(x[i] - m));
  const float inv = 1.0f / s;
  for (index_t i = 0; i < n; ++i) x[i] *= inv;
}

// out (N, V) = softmax(x) along V.
template <class U>
void softmax(const context<cpu>&, tensor_view<float> out, tensor_view<U> x) {
  require<shape_error>(out.shape == x.shape && x.rank() == 2,
                       "softmax: out and x must both be (N, V)");
  for (index_t i = 0; i < x.shape[0]; ++i) {
    float* o = out.data + i * out.strides[0];
    for (index_t j = 0; j < x.shape[1]; ++j) o[j] = static_cast<float>(x(i, j));
    softmax_row(o, x.shape[1]);
  }
}

// out (N, V) = log_softmax(x) along V.
template <class U>
void log_softmax(const context<cpu>&, tensor_view<float> out, tensor_view<U> x) {
  require<shape_error>(out.shape == x.shape && x.rank() == 2,
                       "log_softmax: out and x must both be (N, V)");
  for (index_t i = 0; i < x.shape[0]; ++i) {
    float m = -std::numeric_limits<float>::infinity();
    for (index_t j = 0; j < x.shape[1]; ++j) m = std::max(m, static_cast<float>(x(i, j)));
    double s = 0;
    for (index_t j = 0; j < x.shape[1]; ++j) s += std::exp(static_cast<float>(x(i, j)) - m);
    const float lse = m + static_cast<float>(std::log(s));
    for (index_t j = 0; j < x.shape[1]; ++j) out(i, j) = static_cast<float>(x(i, j)) - lse;
  }
}

}  // namespace crossbatch
