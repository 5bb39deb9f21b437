// Shared helpers for the test suites: seeded random tensors, tolerance checks from dtype_traits
// (on the NaN-aware diff_stats of compare.hpp), a scratch directory, and the location of committed
// test data.
#pragma once

#include <boost/test/unit_test.hpp>
#include <cmath>
#include <filesystem>
#include <random>
#include <string>

#include "compare.hpp"
#include "crossbatch/core/dtype.hpp"
#include "crossbatch/core/tensor.hpp"

namespace cbtest {

using namespace crossbatch;

inline std::string data_dir() { return CROSSBATCH_TEST_DATA; }

// A fresh scratch directory under the system temp dir, unique per call.
inline std::filesystem::path scratch_dir(const std::string& name) {
  static int counter = 0;
  auto p = std::filesystem::temp_directory_path() /
           ("crossbatch_test_" + name + "_" + std::to_string(::getpid()) + "_" +
            std::to_string(counter++));
  std::filesystem::create_directories(p);
  return p;
}

// Uniform values in [lo, hi), seeded.
template <class T>
tensor<T> random_tensor(shape_t shape, unsigned seed, float lo = -1.f, float hi = 1.f) {
  tensor<T> t(std::move(shape));
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = static_cast<T>(dist(gen));
  return t;
}

// The comparison statistics (compare.hpp) of two equally shaped contiguous CPU views under the
// tolerance atol + rtol |b|.
template <class A, class B>
diff_stats compare_views(tensor_view<A> a, tensor_view<B> b, double atol = 0, double rtol = 0) {
  diff_stats st(atol, rtol);
  if (a.shape != b.shape) {
    st.size_mismatch = true;
    st.max_abs = INFINITY;
    return st;
  }
  BOOST_REQUIRE(a.contiguous() && b.contiguous());
  st.add(a.data, b.data, static_cast<std::size_t>(a.size()));
  return st;
}

// Max |a - b| over two equally shaped CPU views; +infinity when either holds a NaN (or an
// infinity the other does not equal).
template <class A, class B>
float max_abs_diff(tensor_view<A> a, tensor_view<B> b) {
  BOOST_REQUIRE(a.shape == b.shape);
  return static_cast<float>(compare_views(a, b).max_abs);
}

// compare_views with the tolerance of dtype T, scaled: |a - b| <= scale (atol + rtol |b|).
template <class T, class A, class B>
diff_stats close_stats(tensor_view<A> a, tensor_view<B> b, float scale = 1.f) {
  return compare_views(a, b, scale * dtype_traits<T>::atol, scale * dtype_traits<T>::rtol);
}

// Elementwise |a - b| <= scale (atol + rtol |b|) with the tolerance of dtype T; a NaN on either
// side fails. Reports the worst element.
template <class T, class A, class B>
void check_close(tensor_view<A> a, tensor_view<B> b, const std::string& what, float scale = 1.f) {
  BOOST_REQUIRE_MESSAGE(a.shape == b.shape,
                        what << ": shape " << to_string(a.shape) << " vs " << to_string(b.shape));
  const diff_stats st = close_stats<T>(a, b, scale);
  BOOST_CHECK_MESSAGE(st.ok(), what << ": " << st.summary() << " (" << dtype_traits<T>::name
                                    << " tolerance x" << scale << ")");
}

}  // namespace cbtest
