// Element types: float, half and bfloat16, with the accumulate type (always float), a name
// and the tolerance tests use when comparing against a float32/float64 reference.
#pragma once

#include <Eigen/Core>
#include <string>
#include <string_view>

#include "crossbatch/core/error.hpp"

namespace crossbatch {

using half = Eigen::half;
using bfloat16 = Eigen::bfloat16;

template <class T>
struct dtype_traits;

// Tolerances: atol/rtol for |a-b| <= atol + rtol*|b| on outputs of O(1) magnitude. They follow
// the unit roundoff of the type (2^-24, 2^-11, 2^-8) times a small factor for accumulated error.
template <>
struct dtype_traits<float> {
  using accum = float;
  static constexpr const char* name = "float32";
  static constexpr float epsilon = 1.1920929e-07f;  // 2^-23
  static constexpr float atol = 1e-4f;
  static constexpr float rtol = 1e-4f;
};
template <>
struct dtype_traits<half> {
  using accum = float;
  static constexpr const char* name = "float16";
  static constexpr float epsilon = 9.765625e-04f;  // 2^-10
  static constexpr float atol = 1e-2f;
  static constexpr float rtol = 1e-2f;
};
template <>
struct dtype_traits<bfloat16> {
  using accum = float;
  static constexpr const char* name = "bfloat16";
  static constexpr float epsilon = 7.8125e-03f;  // 2^-7
  static constexpr float atol = 6e-2f;
  static constexpr float rtol = 6e-2f;
};

template <class T>
inline float to_float(T x) {
  return static_cast<float>(x);
}
template <class T>
inline T from_float(float x) {
  return static_cast<T>(x);
}

// Turns a run-time dtype name into a template argument, once, at the API edge:
//   dispatch_dtype(name, [&]<class T>() { run<T>(...); });
template <class F>
decltype(auto) dispatch_dtype(std::string_view name, F&& f) {
  if (name == "float32" || name == "float") return f.template operator()<float>();
  if (name == "float16" || name == "half") return f.template operator()<half>();
  if (name == "bfloat16" || name == "bf16") return f.template operator()<bfloat16>();
  throw value_error("unknown dtype '" + std::string(name) +
                    "' (expected float32, float16 or bfloat16)");
}

}  // namespace crossbatch
