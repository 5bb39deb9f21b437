// CPU attention against a float64 brute-force softmax(q k^T / sqrt(D) + mask) v on random inputs:
// grouped-query heads, strided queries, every mask policy, probabilities output, and fully masked
// query rows (padding) giving zeros. Also write_kv placing keys at the right slots.
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
