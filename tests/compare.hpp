// The one comparison helper of the test suites (CPU and CUDA): elementwise got-vs-want statistics
// that treat NaN as a failure. Boost-free (the CUDA suites configure Boost.Test themselves in
// tests/cuda/gpu_main.hpp); tests/support.hpp builds check_close / max_abs_diff on it.
//
// Why not `worst = std::max(worst, |a - b|)`: std::max(worst, NaN) returns worst, so such a loop
// skips NaN and a kernel writing NaN passes. Here every NaN (on either side) and every infinity
// that the other side does not equal makes the element a failure and max_abs +infinity, so both
// `st.ok()` and a hand-written bound `st.max_abs <= bound` fail.
//
//   auto st = cbtest::compare(got, want, atol, rtol);   // got/want: anything with data(), size()
//   BOOST_TEST(st.ok(), what << ": " << st.summary());
//   cbtest::diff_stats st;  st.add(g, w);  ...           // or accumulate element by element
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <type_traits>

namespace cbtest {

// An element as double: arithmetic types directly, others (half, bfloat16) through float.
template <class T>
double to_double(const T& x) {
  if constexpr (std::is_arithmetic_v<T>)
    return static_cast<double>(x);
  else
    return static_cast<double>(static_cast<float>(x));
}

// True when x is not NaN and either is finite or equals want exactly (same infinity).
inline bool finite_match(double got, double want) {
  if (std::isnan(got) || std::isnan(want)) return false;
  if (std::isinf(got) || std::isinf(want)) return got == want;
  return true;
}

// |got - want| <= atol + rtol |want|. A NaN on either side fails; infinities pass only when both
// sides are the same infinity.
inline bool within(double got, double want, double atol, double rtol = 0) {
  if (!finite_match(got, want)) return false;
  if (std::isinf(want)) return true;  // equal infinities
  return std::fabs(got - want) <= atol + rtol * std::fabs(want);
}

// Elementwise statistics of got against want under the tolerance atol + rtol |want|.
struct diff_stats {
  double atol = 0, rtol = 0;   // the tolerance of ok() (0, 0: exact equality)
  std::int64_t count = 0;      // elements compared
  std::int64_t failures = 0;   // elements not within() the tolerance (non-finite ones included)
  std::int64_t nonfinite = 0;  // elements with a NaN, or an infinity the other side does not equal
  bool size_mismatch = false;  // set by compare() of ranges of different lengths: never ok()
  double max_abs = 0;          // max |got - want|; +infinity once any element is non-finite
  double max_ref = 0;          // max |want| over finite want (a scale for relative bounds)
  double sum_sq_diff = 0, sum_sq_ref = 0;  // for rel_l2()
  std::int64_t worst = -1;  // the element furthest beyond (or closest to) the tolerance
  double worst_got = 0, worst_want = 0;
  double worst_excess = -std::numeric_limits<double>::infinity();  // |d| - (atol + rtol |want|)

  diff_stats() = default;
  diff_stats(double atol_, double rtol_) : atol(atol_), rtol(rtol_) {}

  // Adds one element; its index is the number of elements added before it.
  void add(double got, double want) {
    const std::int64_t i = count++;
    double excess;
    if (!finite_match(got, want)) {
      ++nonfinite;
      max_abs = std::numeric_limits<double>::infinity();
      excess = std::numeric_limits<double>::infinity();
    } else if (std::isinf(want)) {
      excess = -atol;  // equal infinities: no difference
    } else {
      const double d = std::fabs(got - want);
      if (d > max_abs) max_abs = d;
      if (std::fabs(want) > max_ref) max_ref = std::fabs(want);
      sum_sq_diff += d * d;
      sum_sq_ref += want * want;
      excess = d - (atol + rtol * std::fabs(want));
    }
    if (!within(got, want, atol, rtol)) ++failures;
    if (excess > worst_excess) {  // strict: the first non-finite element stays the worst
      worst_excess = excess;
      worst = i;
      worst_got = got;
      worst_want = want;
    }
  }
  template <class A, class B>
  diff_stats& add(const A* got, const B* want, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) add(to_double(got[i]), to_double(want[i]));
    return *this;
  }

  // Every element within the tolerance and none non-finite (vacuously true for no elements).
  bool ok() const { return failures == 0 && nonfinite == 0 && !size_mismatch; }
  bool has_nonfinite() const { return nonfinite > 0; }
  // sqrt(sum (got - want)^2 / sum want^2); +infinity when an element is non-finite (and NaN never).
  double rel_l2() const {
    if (nonfinite || size_mismatch) return std::numeric_limits<double>::infinity();
    if (sum_sq_ref == 0) return sum_sq_diff == 0 ? 0.0 : std::numeric_limits<double>::infinity();
    return std::sqrt(sum_sq_diff / sum_sq_ref);
  }

  // "N elements, F beyond atol A + rtol R |want|, K non-finite; max |diff| M; worst element I: G vs
  // W"
  std::string summary() const {
    std::ostringstream o;
    o << count << " elements";
    if (size_mismatch) o << " (sizes differ)";
    o << ", " << failures << " beyond atol " << atol << " + rtol " << rtol << " |want|, "
      << nonfinite << " non-finite; max |diff| " << max_abs;
    if (worst >= 0) o << "; worst element " << worst << ": " << worst_got << " vs " << worst_want;
    return o.str();
  }
};

// got and want: contiguous host ranges with data() and size() (std::vector, crossbatch::tensor).
template <class G, class W>
requires requires(const G& g, const W& w) {
  g.data();
  g.size();
  w.data();
  w.size();
}
diff_stats compare(const G& got, const W& want, double atol = 0, double rtol = 0) {
  diff_stats st(atol, rtol);
  const auto n = static_cast<std::size_t>(got.size());
  if (n != static_cast<std::size_t>(want.size())) {
    st.size_mismatch = true;
    st.max_abs = std::numeric_limits<double>::infinity();
    return st;
  }
  st.add(got.data(), want.data(), n);
  return st;
}

template <class A, class B>
diff_stats compare(const A* got, const B* want, std::size_t n, double atol = 0, double rtol = 0) {
  diff_stats st(atol, rtol);
  st.add(got, want, n);
  return st;
}

}  // namespace cbtest
