// An owning, contiguous, row-major tensor and a non-owning strided view of one.
// Both are tagged with the device whose memory they point to; ops take views.
#pragma once

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <numeric>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "crossbatch/core/device.hpp"
#include "crossbatch/core/error.hpp"

namespace crossbatch {

using index_t = std::int64_t;
using shape_t = std::vector<index_t>;

inline std::string to_string(const shape_t& s) {
  std::string out = "(";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

inline index_t numel(const shape_t& s) {
  return std::accumulate(s.begin(), s.end(), index_t{1}, std::multiplies<>());
}

inline shape_t contiguous_strides(const shape_t& s) {
  shape_t st(s.size());
  index_t acc = 1;
  for (std::size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}

// Non-owning window on memory of device D: pointer, shape and strides (in elements).
template <class T, class D = cpu>
struct tensor_view {
  T* data = nullptr;
  shape_t shape;
  shape_t strides;

  tensor_view() = default;
  tensor_view(T* p, shape_t s) : data(p), shape(std::move(s)), strides(contiguous_strides(shape)) {}
  tensor_view(T* p, shape_t s, shape_t st) : data(p), shape(std::move(s)), strides(std::move(st)) {}
  // A view of T converts to a view of const T.
  template <class U>
  requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
      tensor_view(const tensor_view<U, D>& v)
      : data(v.data), shape(v.shape), strides(v.strides) {}

  int rank() const { return static_cast<int>(shape.size()); }
  index_t size() const { return numel(shape); }
  index_t dim(int i) const { return shape[i < 0 ? i + rank() : i]; }
  bool contiguous() const { return strides == contiguous_strides(shape); }

  // Element access (CPU memory only).
  template <class... I>
  T& operator()(I... idx) const {
    const index_t ii[] = {static_cast<index_t>(idx)...};
    index_t off = 0;
    for (std::size_t k = 0; k < sizeof...(I); ++k) off += ii[k] * strides[k];
    return data[off];
  }

  // The sub-view at index i of the first dimension (rank drops by one).
  tensor_view select(index_t i) const {
    return {data + i * strides[0], shape_t(shape.begin() + 1, shape.end()),
            shape_t(strides.begin() + 1, strides.end())};
  }
  // Elements [start, start+len) along dimension d.
  tensor_view narrow(int d, index_t start, index_t len) const {
    tensor_view v = *this;
    v.data += start * strides[d];
    v.shape[d] = len;
    return v;
  }
  // Same memory, new shape; only for contiguous views.
  tensor_view reshape(shape_t s) const {
    require<shape_error>(contiguous() && numel(s) == size(),
                         "reshape " + to_string(shape) + " -> " + to_string(s) +
                             " needs a contiguous view of equal size");
    return {data, std::move(s)};
  }
};

// A read-only input parameter of an op: T is deduced from the op's output view only, so callers may
// pass mutable views (or tensors) where a const view is expected.
template <class T, class D = cpu>
using in_view = std::type_identity_t<tensor_view<const T, D>>;

// Owning contiguous tensor in the memory of device D.
template <class T, class D = cpu>
class tensor {
 public:
  tensor() = default;
  explicit tensor(shape_t s) : m_shape(std::move(s)) {
    for (index_t d : m_shape)
      require<shape_error>(d >= 0, "negative dimension in " + to_string(m_shape));
    m_data = static_cast<T*>(device_traits<D>::allocate(sizeof(T) * size()));
  }
  tensor(std::initializer_list<index_t> s) : tensor(shape_t(s)) {}
  ~tensor() { device_traits<D>::free(m_data); }
  tensor(tensor&& o) noexcept
      : m_data(std::exchange(o.m_data, nullptr)), m_shape(std::move(o.m_shape)) {}
  tensor& operator=(tensor&& o) noexcept {
    if (this != &o) {
      device_traits<D>::free(m_data);
      m_data = std::exchange(o.m_data, nullptr);
      m_shape = std::move(o.m_shape);
    }
    return *this;
  }
  tensor(const tensor&) = delete;
  tensor& operator=(const tensor&) = delete;

  // Deep copy (same device).
  tensor clone() const {
    tensor t(m_shape);
    device_traits<D>::copy(t.m_data, m_data, sizeof(T) * size());
    return t;
  }

  T* data() { return m_data; }
  const T* data() const { return m_data; }
  const shape_t& shape() const { return m_shape; }
  int rank() const { return static_cast<int>(m_shape.size()); }
  index_t size() const { return numel(m_shape); }
  index_t dim(int i) const { return m_shape[i < 0 ? i + rank() : i]; }
  bool empty() const { return m_data == nullptr; }  // default-constructed or zero elements

  tensor_view<T, D> view() { return {m_data, m_shape}; }
  tensor_view<const T, D> view() const { return {m_data, m_shape}; }
  operator tensor_view<T, D>() { return view(); }
  operator tensor_view<const T, D>() const { return view(); }

  // Reinterprets the same elements with another shape of equal size.
  void reshape(shape_t s) {
    require<shape_error>(numel(s) == size(),
                         "reshape " + to_string(m_shape) + " -> " + to_string(s));
    m_shape = std::move(s);
  }

  // CPU element access.
  template <class... I>
  T& operator()(I... idx) {
    return view()(idx...);
  }
  template <class... I>
  const T& operator()(I... idx) const {
    return view()(idx...);
  }

 private:
  T* m_data = nullptr;
  shape_t m_shape;
};

// A CPU tensor filled with one value.
template <class T>
tensor<T> full(shape_t s, T value) {
  tensor<T> t(std::move(s));
  std::fill(t.data(), t.data() + t.size(), value);
  return t;
}

// Checks that v has exactly the expected shape; `what` names the tensor in the error.
template <class V>
void expect_shape(const V& v, const shape_t& expected, const std::string& what) {
  if (v.shape != expected)
    throw shape_error(what + ": expected shape " + to_string(expected) + ", got " +
                      to_string(v.shape));
}

}  // namespace crossbatch
