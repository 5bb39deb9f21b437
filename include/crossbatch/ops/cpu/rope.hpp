// Rotary position embedding applied in place on the CPU, in the Hugging Face "rotate_half"
// layout: the first and second halves of each head form the (real, imaginary) pairs.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "crossbatch/core/context.hpp"
#include "crossbatch/core/tensor.hpp"

namespace crossbatch {

// x (N, H, D) rotated by angle positions[n] * inv_freq.data[i]; positions (N); inv_freq (D/2).
// x may be a strided view (e.g. the query part of a fused QKV projection).
template <class T>
void apply_rope(const context<cpu>&, tensor_view<T> x, in_view<std::int32_t> positions,
                in_view<float> inv_freq) {
  require<shape_error>(
      x.rank() == 3 && x.shape[0] == positions.size() && x.shape[2] == 2 * inv_freq.size(),
      "apply_rope: x " + to_string(x.shape) + " does not fit positions/inv_freq");
  const index_t n = x.shape[0], h = x.shape[1], half_d = x.shape[2] / 2;
  std::vector<float> cos_(half_d), sin_(half_d);
  for (index_t t = 0; t < n; ++t) {
    const float pos = static_cast<float>(positions.data[t]);
    for (index_t i = 0; i < half_d; ++i) {
      const float angle = pos * inv_freq.data[i];
      cos_[i] = std::cos(angle);
      sin_[i] = std::sin(angle);
    }
    for (index_t head = 0; head < h; ++head) {
      T* v = &x(t, head, 0);
      for (index_t i = 0; i < half_d; ++i) {
        const float a = static_cast<float>(v[i]), b = static_cast<float>(v[i + half_d]);
        v[i] = static_cast<T>(a * cos_[i] - b * sin_[i]);
        v[i + half_d] = static_cast<T>(b * cos_[i] + a * sin_[i]);
      }
    }
  }
}

}  // namespace crossbatch
