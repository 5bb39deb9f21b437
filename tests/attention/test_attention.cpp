// CPU attention against a float64 brute-force softmax(q k^T / sqrt(D) + mask) v on random inputs:
// grouped-query heads, strided queries, every mask policy, probabilities output, and fully masked
// query rows (padding) giving zeros. Also write_kv placing keys at the right slots, and
// rope_write_kv against a float64 rotation written out here.
#define BOOST_TEST_MODULE attention
#include <cmath>
#include <random>

#include "crossbatch/attention/attention.hpp"
#include "reference_attention.hpp"
#include "support.hpp"

using namespace crossbatch;

namespace {

template <class M>
void check_against_brute(const M& mask, int b, int tq, int h, int hkv, int d, int q_start,
                         int kv_len, unsigned seed) {
  context<cpu> ctx;
  auto q = cbtest::random_tensor<float>({b, tq, h, d}, seed);
  auto k = cbtest::random_tensor<float>({b, hkv, kv_len + 3, d}, seed + 1);
  auto v = cbtest::random_tensor<float>({b, hkv, kv_len + 3, d}, seed + 2);
  tensor<float> out({b, tq, h, d});
  tensor<float> probs({b, h, tq, kv_len});
  const float scale = 1.0f / std::sqrt(float(d));
  attention(ctx, out.view(), q.view(), k.view(), v.view(), mask, {q_start, kv_len, scale, 7},
            probs.view());
  std::vector<double> want_out, want_probs;
  cbtest::reference_attention<float>(q.view(), k.view(), v.view(), mask, q_start, kv_len, scale,
                                     want_out, want_probs);
  cbtest::diff_stats st;  // outputs and probabilities (got) against the brute force (want)
  for (index_t i = 0; i < out.size(); ++i) st.add(out.data()[i], want_out[std::size_t(i)]);
  for (index_t i = 0; i < probs.size(); ++i) st.add(probs.data()[i], want_probs[std::size_t(i)]);
  BOOST_TEST(st.max_abs <= dtype_traits<float>::atol, st.summary());
}

}  // namespace

BOOST_AUTO_TEST_CASE(gqa_causal_left_padding) {
  std::vector<int> pad = {0, 4, 9};
  const left_padding lp{pad.data()};
  check_against_brute(all_of<causal, left_padding>(causal{}, lp), 3, 12, 4, 2, 8, 0, 12,
                      11);  // prefill
  check_against_brute(all_of<causal, left_padding>(causal{}, lp), 3, 1, 4, 2, 8, 15, 16,
                      12);  // decode step
  check_against_brute(all_of<causal, left_padding>(causal{}, lp), 3, 1, 6, 1, 16, 40, 41,
                      13);  // MQA
}

BOOST_AUTO_TEST_CASE(other_policies) {
  std::vector<int> len = {5, 20};
  check_against_brute(right_padding{len.data()}, 2, 20, 2, 2, 4, 0, 20, 21);
  check_against_brute(no_mask{}, 2, 9, 3, 3, 5, 0, 9, 22);
  check_against_brute(all_of<causal, sliding_window>(causal{}, sliding_window{5}), 2, 30, 2, 1, 8,
                      0, 30, 23);
  std::vector<int> seg(2 * 40), gs = {30, 24};
  for (int s = 0; s < 2; ++s)
    for (int i = 0; i < 40; ++i) seg[s * 40 + i] = i < 4 ? 0 : i < gs[s] ? 1 + (i - 4) / 7 : -1;
  segment_isolation si{seg.data(), gs.data(), 40};
  check_against_brute(all_of<causal, segment_isolation>(causal{}, si), 2, 40, 2, 2, 8, 0, 40, 24);
}

BOOST_AUTO_TEST_CASE(fully_masked_rows_are_zero) {
  context<cpu> ctx;
  std::vector<int> pad = {6};
  auto q = cbtest::random_tensor<float>({1, 8, 1, 4}, 1);
  auto k = cbtest::random_tensor<float>({1, 1, 8, 4}, 2);
  tensor<float> out({1, 8, 1, 4});
  attention(ctx, out.view(), q.view(), k.view(), k.view(),
            all_of<causal, left_padding>(causal{}, left_padding{pad.data()}), {0, 8, 0.5f});
  for (int t = 0; t < 6; ++t)
    for (int j = 0; j < 4; ++j) BOOST_TEST(out(0, t, 0, j) == 0.0f);
  BOOST_TEST(out(0, 6, 0, 0) != 0.0f);
}

BOOST_AUTO_TEST_CASE(write_kv_slots_and_capacity) {
  context<cpu> ctx;
  tensor<float> cache = full<float>({2, 3, 10, 4}, -1.f);
  auto fresh = cbtest::random_tensor<float>({2, 2, 3, 4}, 5);
  write_kv(ctx, cache.view(), fresh.view(), 7);
  BOOST_TEST(cache(1, 2, 8, 3) == fresh(1, 1, 2, 3));
  BOOST_TEST(cache(0, 0, 6, 0) == -1.f);
  BOOST_CHECK_THROW(write_kv(ctx, cache.view(), fresh.view(), 9), value_error);
}

BOOST_AUTO_TEST_CASE(rope_write_kv_rotates_q_and_the_cached_keys) {
  // B 2 x T 3 rows (H 3 q heads, Hkv 1 k and 1 v head of D 8, row width 48 with a gap), slots
  // [4, 7) of caches with capacity 9.
  context<cpu> ctx;
  const int b = 2, t = 3, h = 3, hkv = 1, d = 8, cap = 9, width = 48, start = 4;
  auto qkv = cbtest::random_tensor<float>({b * t, width}, 11);
  const auto before = qkv.clone();
  tensor<float> kc = full<float>({b, hkv, cap, d}, -7.f), vc = full<float>({b, hkv, cap, d}, -7.f);
  tensor<std::int32_t> pos({b * t});
  for (int r = 0; r < b * t; ++r) pos(r) = 3 * r + (r == 5 ? 1000 : 0);
  tensor<float> inv({d / 2});
  for (int i = 0; i < d / 2; ++i) inv(i) = std::pow(10000.0f, -2.0f * i / d);
  rope_write_kv(ctx, qkv.view(), t, h, hkv, pos.view(), inv.view(), kc.view(), vc.view(), start);
  auto rotated = [&](int r, int col0, int i) {  // (first, second half) of head starting at col0
    const double a = before(r, col0 + i), c = before(r, col0 + i + d / 2);
    const double angle = float(pos(r)) * inv(i);  // the angle in float, as transformers has it
    return std::pair{a * std::cos(angle) - c * std::sin(angle),
                     c * std::cos(angle) + a * std::sin(angle)};
  };
  double worst = 0;
  for (int r = 0; r < b * t; ++r) {
    const int s = r / t, slot = start + r % t;
    for (int i = 0; i < d / 2; ++i) {
      for (int head = 0; head < h; ++head) {
        const auto [x0, x1] = rotated(r, head * d, i);
        worst = std::max({worst, std::fabs(qkv(r, head * d + i) - x0),
                          std::fabs(qkv(r, head * d + i + d / 2) - x1)});
      }
      const auto [k0, k1] = rotated(r, h * d, i);
      worst = std::max(
          {worst, std::fabs(kc(s, 0, slot, i) - k0), std::fabs(kc(s, 0, slot, i + d / 2) - k1)});
    }
    for (int j = 0; j < d; ++j) BOOST_TEST(vc(s, 0, slot, j) == before(r, (h + hkv) * d + j));
    for (int col = h * d; col < width; ++col) BOOST_TEST(qkv(r, col) == before(r, col));
  }
  BOOST_TEST(worst <= 4 * dtype_traits<float>::epsilon, "max |rotated - float64| = " << worst);
  BOOST_TEST(kc(0, 0, 3, 0) == -7.f);  // slots outside [4, 7) untouched
  BOOST_TEST(vc(1, 0, 7, 2) == -7.f);
  BOOST_CHECK_THROW(
      rope_write_kv(ctx, qkv.view(), t, h, hkv, pos.view(), inv.view(), kc.view(), vc.view(), 7),
      value_error);  // slots beyond the capacity
  BOOST_CHECK_THROW(
      rope_write_kv(ctx, qkv.view(), 4, h, hkv, pos.view(), inv.view(), kc.view(), vc.view(), 0),
      shape_error);  // 6 rows are not whole sequences of 4
}
