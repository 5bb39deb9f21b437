// The shared comparison helper (tests/compare.hpp, and check_close / max_abs_diff of support.hpp on
// top of it) can fail: a NaN on either side, an unmatched infinity, a size mismatch and a planted
// difference beyond the tolerance are each reported, with the index of the worst element; equal
// inputs and differences inside the tolerance pass.
#define BOOST_TEST_MODULE compare
#include <cmath>
#include <limits>
#include <vector>

#include "support.hpp"

using namespace crossbatch;

namespace {

const float nan_f = std::numeric_limits<float>::quiet_NaN();
const float inf_f = std::numeric_limits<float>::infinity();

}  // namespace

BOOST_AUTO_TEST_CASE(within_treats_nan_as_failure) {
  BOOST_TEST(cbtest::within(1.0, 1.0, 0.0));
  BOOST_TEST(cbtest::within(1.05, 1.0, 0.06));
  BOOST_TEST(!cbtest::within(1.2, 1.0, 0.06, 0.06));
  BOOST_TEST(cbtest::within(1.11, 1.0, 0.06, 0.06));  // 0.11 <= 0.06 + 0.06 * 1
  BOOST_TEST(!cbtest::within(nan_f, 1.0, 1e9, 1e9));
  BOOST_TEST(!cbtest::within(1.0, nan_f, 1e9, 1e9));
  BOOST_TEST(!cbtest::within(nan_f, nan_f, 1e9, 1e9));
  BOOST_TEST(cbtest::within(-inf_f, -inf_f, 0.0));  // masked scores: the same infinity
  BOOST_TEST(!cbtest::within(inf_f, -inf_f, 1e9, 1e9));
  BOOST_TEST(!cbtest::within(inf_f, 1e30, 1e9, 1e9));
  BOOST_TEST(!cbtest::within(1.0, inf_f, 1e9, 1e9));
}

BOOST_AUTO_TEST_CASE(nan_in_either_operand_fails) {
  const std::vector<float> ref = {0.5f, -1.0f, 2.0f, 3.0f};
  for (int side : {0, 1})
    for (std::size_t at = 0; at < ref.size(); ++at) {
      std::vector<float> a = ref, b = ref;
      (side == 0 ? a : b)[at] = nan_f;
      const auto st = cbtest::compare(a, b, 1e6, 1e6);  // any finite difference would pass
      BOOST_TEST(!st.ok(), "NaN in operand " << side << " at " << at);
      BOOST_TEST(st.has_nonfinite());
      BOOST_TEST(st.nonfinite == 1);
      BOOST_TEST(st.failures == 1);
      BOOST_TEST(st.worst == std::int64_t(at));
      BOOST_TEST(std::isinf(st.max_abs));  // so `max_abs <= bound` fails too
      BOOST_TEST(std::isinf(st.rel_l2()));
      BOOST_TEST(!(st.max_abs <= 1e30));
      // The same through the tensor helpers of support.hpp.
      tensor<float> ta({2, 2}), tb({2, 2});
      std::copy(a.begin(), a.end(), ta.data());
      std::copy(b.begin(), b.end(), tb.data());
      BOOST_TEST(!cbtest::close_stats<bfloat16>(ta.view(), tb.view(), 1e6f).ok());
      BOOST_TEST(std::isinf(cbtest::max_abs_diff(ta.view(), tb.view())));
    }
}

BOOST_AUTO_TEST_CASE(nan_at_the_start_is_not_skipped_by_later_elements) {
  // The failure of `worst = std::max(worst, |a - b|)`: a NaN anywhere, then larger finite
  // differences. The NaN stays the worst element.
  std::vector<double> a = {nan_f, 0.0, 5.0}, b = {0.0, 0.0, 0.0};
  auto st = cbtest::compare(a, b);
  BOOST_TEST(!st.ok());
  BOOST_TEST(st.worst == 0);
  BOOST_TEST(st.failures == 2);
  BOOST_TEST(std::isinf(st.max_abs));
}

BOOST_AUTO_TEST_CASE(planted_difference_beyond_tolerance_is_reported) {
  auto want = cbtest::random_tensor<float>({64, 33}, 5);
  auto got = want.clone();
  // Inside the float tolerance everywhere: passes.
  for (index_t i = 0; i < got.size(); ++i) got.data()[i] += 0.5f * dtype_traits<float>::atol;
  auto st = cbtest::close_stats<float>(got.view(), want.view());
  BOOST_TEST(st.ok(), st.summary());
  BOOST_TEST(st.failures == 0);
  BOOST_TEST(st.max_abs == 0.5 * dtype_traits<float>::atol, boost::test_tools::tolerance(1e-2));
  // One element 3x the tolerance beyond: fails there, and only there.
  const index_t at = 1000;
  got.data()[at] = want.data()[at] + 3 * (dtype_traits<float>::atol +
                                          dtype_traits<float>::rtol * std::fabs(want.data()[at]));
  st = cbtest::close_stats<float>(got.view(), want.view());
  BOOST_TEST(!st.ok());
  BOOST_TEST(st.failures == 1);
  BOOST_TEST(st.nonfinite == 0);
  BOOST_TEST(st.worst == at);
  BOOST_TEST(st.worst_got == double(got.data()[at]));
  BOOST_TEST(st.worst_want == double(want.data()[at]));
  BOOST_TEST(st.summary().find("1 beyond") != std::string::npos, st.summary());
  // The looser bfloat16 tolerance (or a scale) accepts it; a larger planted error fails again.
  BOOST_TEST(cbtest::close_stats<bfloat16>(got.view(), want.view()).ok());
  BOOST_TEST(cbtest::close_stats<float>(got.view(), want.view(), 4.f).ok());
  got.data()[at] = want.data()[at] + 1.0f;
  BOOST_TEST(!cbtest::close_stats<bfloat16>(got.view(), want.view()).ok());
  BOOST_TEST(cbtest::max_abs_diff(got.view(), want.view()) == 1.0f,
             boost::test_tools::tolerance(1e-5f));
}

BOOST_AUTO_TEST_CASE(infinities_and_sizes) {
  const std::vector<float> masked = {-inf_f, 0.25f, -inf_f};
  BOOST_TEST(cbtest::compare(masked, masked).ok());
  BOOST_TEST(cbtest::compare(masked, masked).max_abs == 0.0);
  std::vector<float> other = masked;
  other[2] = -1e30f;
  auto st = cbtest::compare(other, masked, 1e9, 1e9);
  BOOST_TEST(!st.ok());
  BOOST_TEST(st.worst == 2);
  other[2] = inf_f;
  BOOST_TEST(!cbtest::compare(other, masked, 1e9, 1e9).ok());
  // Different lengths never compare equal, even when the common prefix does.
  const std::vector<float> longer = {-inf_f, 0.25f, -inf_f, 1.0f};
  st = cbtest::compare(longer, masked);
  BOOST_TEST(!st.ok());
  BOOST_TEST(st.size_mismatch);
  BOOST_TEST(std::isinf(st.max_abs));
  BOOST_TEST(!cbtest::compare_views(tensor_view<const float>(longer.data(), {4}),
                                    tensor_view<const float>(longer.data(), {2, 2}))
                  .ok());
}

BOOST_AUTO_TEST_CASE(mixed_element_types_and_relative_l2) {
  // half / bfloat16 against float, element by element and through pointers.
  std::vector<float> f = {1.0f, -2.0f, 0.5f};
  std::vector<bfloat16> h = {bfloat16(1.0f), bfloat16(-2.0f), bfloat16(0.5f)};
  BOOST_TEST(cbtest::compare(h, f).ok());
  BOOST_TEST(cbtest::compare(h.data(), f.data(), 3).max_abs == 0.0);
  std::vector<half> hh = {half(1.0f), half(nan_f), half(0.5f)};
  BOOST_TEST(!cbtest::compare(hh, f, 10, 10).ok());
  // rel_l2: sqrt(sum d^2 / sum want^2).
  const std::vector<double> want = {3.0, 4.0}, got = {3.0, 4.5};
  BOOST_TEST(cbtest::compare(got, want).rel_l2() == 0.1, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(cbtest::compare(got, want).max_ref == 4.0);
}
