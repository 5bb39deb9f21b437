// Elementwise ops on the CPU, in float: activations (GELU tanh/erf, SiLU, ReLU), the gated
// product act(gate) * up, and the residual add. Views must be contiguous; out may alias an input.
#pragma once

#include <cmath>

#include "crossbatch/core/context.hpp"
#include "crossbatch/core/tensor.hpp"
#include "crossbatch/ops/activation_kind.hpp"

namespace crossbatch {

// out = act(x), elementwise.
template <class T>
void activate(const context<cpu>&, activation a, tensor_view<T> out, in_view<T> x) {
  require<shape_error>(out.size() == x.size() && out.contiguous() && x.contiguous(),
                       "activate: shapes differ");
  for (index_t i = 0; i < x.size(); ++i)
    out.data[i] = static_cast<T>(apply_activation(a, static_cast<float>(x.data[i])));
}

// out (N, F) = act(gate) * up with gate_up (N, 2F) = [gate | up], the fused projections of the
// gated MLP of Llama/Qwen2 (SwiGLU when act is SiLU).
template <class T>
void gated_activation(const context<cpu>&, activation a, tensor_view<T> out, in_view<T> gate_up) {
  const index_t n = out.shape[0], f = out.shape[1];
  require<shape_error>(out.rank() == 2 && gate_up.shape == shape_t{n, 2 * f} && out.contiguous() &&
                           gate_up.contiguous(),
                       "gated_activation: out " + to_string(out.shape) +
                           " needs gate_up (N, 2F), got " + to_string(gate_up.shape));
  for (index_t i = 0; i < n; ++i) {
    const T* gate = gate_up.data + i * 2 * f;
    const T* up = gate + f;
    for (index_t j = 0; j < f; ++j) {
      // HF computes act(gate) in T, then the product in T.
      const T g = static_cast<T>(apply_activation(a, static_cast<float>(gate[j])));
      out.data[i * f + j] = static_cast<T>(static_cast<float>(g) * static_cast<float>(up[j]));
    }
  }
}

// x += y, elementwise (the residual connection).
template <class T>
void add_inplace(const context<cpu>&, tensor_view<T> x, in_view<T> y) {
  require<shape_error>(x.size() == y.size() && x.contiguous() && y.contiguous(),
                       "add_inplace: " + to_string(x.shape) + " vs " + to_string(y.shape));
  for (index_t i = 0; i < x.size(); ++i)
    x.data[i] = static_cast<T>(static_cast<float>(x.data[i]) + static_cast<float>(y.data[i]));
}

}  // namespace crossbatch
