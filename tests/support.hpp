// Shared helpers for the test suites: seeded random tensors, tolerance checks from dtype_traits,
// a scratch directory, and the location of committed test data.
#pragma once

#include <boost/test/unit_test.hpp>
#include <cmath>
#include <filesystem>
#include <random>
#include <string>

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

// Max |a - b| over two equally shaped CPU views.
template <class A, class B>
float max_abs_diff(tensor_view<A> a, tensor_view<B> b) {
  BOOST_REQUIRE(a.shape == b.shape);
  BOOST_REQUIRE(a.contiguous() && b.contiguous());
  float m = 0;
  for (index_t i = 0; i < a.size(); ++i) {
    const float d = std::fabs(static_cast<float>(a.data[i]) - static_cast<float>(b.data[i]));
    if (std::isnan(d)) return INFINITY;
    m = std::max(m, d);
  }
  return m;
}

// Elementwise |a - b| <= atol + rtol |b| with the tolerance of dtype T; reports the worst element.
template <class T, class A, class B>
void check_close(tensor_view<A> a, tensor_view<B> b, const std::string& what, float scale = 1.f) {
  BOOST_REQUIRE_MESSAGE(a.shape == b.shape,
                        what << ": shape " << to_string(a.shape) << " vs " << to_string(b.shape));
  float worst = 0;
  index_t worst_i = -1;
  for (index_t i = 0; i < a.size(); ++i) {
    const float x = static_cast<float>(a.data[i]), y = static_cast<float>(b.data[i]);
    const float excess =
        std::fabs(x - y) - scale * (dtype_traits<T>::atol + dtype_traits<T>::rtol * std::fabs(y));
    if (!(excess <= worst)) {
      worst = std::isnan(excess) ? INFINITY : excess;
      worst_i = i;
    }
  }
  BOOST_CHECK_MESSAGE(worst_i < 0,
                      what << ": element " << worst_i << " differs: "
                           << (worst_i >= 0 ? static_cast<float>(a.data[worst_i]) : 0.f) << " vs "
                           << (worst_i >= 0 ? static_cast<float>(b.data[worst_i]) : 0.f) << " ("
                           << dtype_traits<T>::name << " tolerance)");
}

}  // namespace cbtest
