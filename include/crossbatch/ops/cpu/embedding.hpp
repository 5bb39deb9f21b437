// Embedding lookup on the CPU: rows of a (V, C) table gathered by token id, optionally summed
// into the output (GPT-2 adds position embeddings, BERT token-type embeddings).
#pragma once

#include <cstdint>

#include "crossbatch/core/context.hpp"
#include "crossbatch/core/tensor.hpp"

namespace crossbatch {

// out (N, C) (+)= table[ids[n]]; ids (N). An id outside [0, V) is a value_error naming it.
template <class T>
void embedding(const context<cpu>&, tensor_view<T> out, in_view<std::int32_t> ids, in_view<T> table,
               bool accumulate = false) {
  const index_t n = ids.size(), v = table.shape[0], c = table.shape[1];
  require<shape_error>(out.shape == shape_t{n, c}, "embedding: out " + to_string(out.shape) +
                                                       " should be " + to_string({n, c}));
  for (index_t i = 0; i < n; ++i) {
    const std::int32_t id = ids.data[i];
    require(id >= 0 && id < v, "embedding: id " + std::to_string(id) + " at position " +
                                   std::to_string(i) + " is outside the table of " +
                                   std::to_string(v) + " rows");
    const T* row = table.data + id * table.strides[0];
    T* dst = out.data + i * out.strides[0];
    for (index_t j = 0; j < c; ++j)
      dst[j] = accumulate ? static_cast<T>(static_cast<float>(dst[j]) + static_cast<float>(row[j]))
                          : row[j];
  }
}

// positions (B) += 1: the next decode step's positions.
inline void advance_positions(const context<cpu>&, tensor_view<std::int32_t> positions) {
  for (index_t i = 0; i < positions.size(); ++i) ++positions.data[i];
}

}  // namespace crossbatch
