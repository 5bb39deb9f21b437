// Small host-side reshaping used while loading weights: transposing a matrix (GPT-2's Conv1D
// stores (in, out)), stacking matrices by rows (fused QKV and gate/up projections).
#pragma once

#include <algorithm>
#include <vector>

#include "crossbatch/core/tensor.hpp"

namespace crossbatch {

// (R, C) -> (C, R).
template <class T>
tensor<T> transposed(const tensor<T>& m) {
  require<shape_error>(m.rank() == 2, "transposed: need a matrix, got " + to_string(m.shape()));
  const index_t r = m.dim(0), c = m.dim(1);
  tensor<T> t({c, r});
  for (index_t i = 0; i < r; ++i)
    for (index_t j = 0; j < c; ++j) t.data()[j * r + i] = m.data()[i * c + j];
  return t;
}

// Stacks tensors along their first dimension; the other dimensions must agree.
template <class T>
tensor<T> concat_rows(const std::vector<const tensor<T>*>& parts) {
  shape_t s = parts.at(0)->shape();
  s[0] = 0;
  for (const auto* p : parts) {
    require<shape_error>(
        shape_t(p->shape().begin() + 1, p->shape().end()) == shape_t(s.begin() + 1, s.end()),
        "concat_rows: mismatched shapes");
    s[0] += p->dim(0);
  }
  tensor<T> out(s);
  T* dst = out.data();
  for (const auto* p : parts) dst = std::copy_n(p->data(), p->size(), dst);
  return out;
}

}  // namespace crossbatch
