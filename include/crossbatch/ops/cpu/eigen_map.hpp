// Eigen maps over crossbatch views, and float conversion helpers for half/bfloat16 inputs.
// The CPU ops compute in float: a half or bfloat16 view is widened once, computed, and narrowed.
#pragma once

#include <Eigen/Core>
#include <type_traits>
#include <vector>

#include "crossbatch/core/dtype.hpp"
#include "crossbatch/core/tensor.hpp"

namespace crossbatch::cpu_detail {

using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using matrix_map = Eigen::Map<row_matrix, 0, Eigen::OuterStride<>>;
using const_matrix_map = Eigen::Map<const row_matrix, 0, Eigen::OuterStride<>>;

// A 2-D view whose rows are contiguous, as an Eigen row-major map (float only).
inline matrix_map as_matrix(tensor_view<float> v) {
  require<shape_error>(
      v.rank() == 2 && v.strides[1] == 1,
      "as_matrix: need a 2-D view with unit column stride, got " + to_string(v.shape));
  return {v.data, v.shape[0], v.shape[1], Eigen::OuterStride<>(v.strides[0])};
}
inline const_matrix_map as_matrix(tensor_view<const float> v) {
  require<shape_error>(
      v.rank() == 2 && v.strides[1] == 1,
      "as_matrix: need a 2-D view with unit column stride, got " + to_string(v.shape));
  return {v.data, v.shape[0], v.shape[1], Eigen::OuterStride<>(v.strides[0])};
}

// Float copy of a 2-D view of any element type (row-major, contiguous).
template <class T>
row_matrix widen(tensor_view<const T> v) {
  require<shape_error>(v.rank() == 2, "widen: need a 2-D view, got " + to_string(v.shape));
  row_matrix m(v.shape[0], v.shape[1]);
  for (index_t i = 0; i < v.shape[0]; ++i)
    for (index_t j = 0; j < v.shape[1]; ++j) m(i, j) = static_cast<float>(v(i, j));
  return m;
}

template <class T>
void narrow_into(tensor_view<T> out, const row_matrix& m) {
  for (index_t i = 0; i < out.shape[0]; ++i)
    for (index_t j = 0; j < out.shape[1]; ++j) out(i, j) = static_cast<T>(m(i, j));
}

// Views of rank >= 2 flattened to (rows, last dim); must be contiguous.
template <class T>
tensor_view<T> rows_of(tensor_view<T> v) {
  require<shape_error>(v.contiguous() && v.rank() >= 1,
                       "expected a contiguous tensor, got " + to_string(v.shape));
  const index_t c = v.rank() ? v.shape.back() : 1;
  return v.reshape({v.size() / c, c});
}

}  // namespace crossbatch::cpu_detail
