// The manual backward pass of the training objective against central finite differences in
// float64: every parameter of every mixer variant (attention / embedding x alpha / scale / gate)
// and of the LM head, with the head reading the mixed state directly or through a frozen RMSNorm or
// LayerNorm, on a batch with uneven answer lengths, two groups and a sample alone in its group.
// Also: float32 gradients agree with float64 ones, and the "baseline" (no mixer) loss equals the
// mixed loss with alpha/scale zero.
#define BOOST_TEST_MODULE train_gradients
#include <random>

#include "crossbatch/train/objective.hpp"
#include "mix/mix_helpers.hpp"

using namespace crossbatch;

namespace {

constexpr int C = 8, V = 13;
context<cpu> ctx;

answer_batch test_batch(unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-1.5f, 1.5f);
  const std::vector<int> lengths = {3, 1, 2, 3, 2};
  const std::vector<int> groups = {0, 0, 1, 0, 2};  // sample 4 alone in group 2
  std::vector<std::vector<float>> states;
  std::vector<std::vector<std::int32_t>> targets;
  std::vector<const float*> ptrs;
  for (int len : lengths) {
    states.emplace_back(len * C);
    for (auto& x : states.back()) x = u(gen);
    targets.emplace_back();
    for (int t = 0; t < len; ++t) targets.back().push_back(static_cast<std::int32_t>(gen() % V));
  }
  for (auto& s : states) ptrs.push_back(s.data());
  return make_answer_batch(ptrs, targets, groups, C);
}

template <class S>
tensor<S> random_head(unsigned seed) {
  return cbtest::random_tensor<S>({V, C}, seed, -0.8f, 0.8f);
}

template <class S>
head_input<S> make_norm(int mode) {
  head_input<S> n;
  n.normalize = mode > 0;
  n.kind = mode == 2 ? norm_kind::layer : norm_kind::rms;
  n.weight = cbtest::random_tensor<S>({C}, 77, 0.5f, 1.5f);
  n.bias = cbtest::random_tensor<S>({C}, 78, -0.2f, 0.2f);
  return n;
}

double mean_loss(answer_objective<double>& obj, const answer_batch& b,
                 const mixer_weights<double>& w, const tensor<double>& head,
                 const head_input<double>& norm) {
  const auto r = obj.run(ctx, b, &w, head.view(), norm, nullptr, {}, false);
  return r.loss / r.tokens;
}

}  // namespace

BOOST_AUTO_TEST_CASE(backward_matches_finite_differences) {
  const auto batch = test_batch(1);
  answer_objective<double> obj;
  for (const auto& v : cbtest::all_variants())
    for (int norm_mode : {0, 1, 2}) {
      const std::string what = v.name() + (norm_mode == 0   ? " raw"
                                           : norm_mode == 1 ? " rms"
                                                            : " layernorm");
      auto w = cbtest::random_mixer<double>(cbtest::variant_config(v, C, 2, 3), 5);
      auto head = random_head<double>(6);
      const auto norm = make_norm<double>(norm_mode);
      auto grads = zeros_like_config<double>(w.config);
      tensor<double> head_grad = full<double>({V, C}, 0.0);
      const auto r = obj.run(ctx, batch, &w, head.view(), norm, &grads, head_grad.view());
      BOOST_REQUIRE(r.tokens == 11);
      BOOST_TEST(std::fabs(r.loss - r.baseline_loss) > 1e-6,
                 what << ": mixing should change the loss");
      const double eps = 1e-6;
      auto check = [&](tensor<double>& param, const tensor<double>& grad, const std::string& name) {
        cbtest::diff_stats st;  // finite differences (got) against the analytic gradient (want)
        for (index_t i = 0; i < param.size(); ++i) {
          const double keep = param.data()[i];
          param.data()[i] = keep + eps;
          const double up = mean_loss(obj, batch, w, head, norm);
          param.data()[i] = keep - eps;
          const double down = mean_loss(obj, batch, w, head, norm);
          param.data()[i] = keep;
          st.add((up - down) / (2 * eps), grad.data()[i]);
        }
        const double scale = std::max(1e-3, st.max_ref);  // max |analytic|, at least 1e-3
        BOOST_TEST(st.max_abs < 1e-6 * scale + 1e-8, what << " " << name
                                                          << ": |fd - analytic|: " << st.summary()
                                                          << " (scale " << scale << ")");
      };
      for (auto& [name, t] : w.parameters()) check(*t, *grads.slot(name), name);
      check(head, head_grad, "lm_head");
    }
}

BOOST_AUTO_TEST_CASE(float32_gradients_agree_with_float64) {
  const auto batch = test_batch(2);
  for (const auto& v : cbtest::all_variants()) {
    const auto w64 = cbtest::random_mixer<double>(cbtest::variant_config(v, C, 2, 3), 9);
    const auto w32 = w64.cast<float>();
    const auto head64 = random_head<double>(10);
    tensor<float> head32({V, C});
    for (index_t i = 0; i < head32.size(); ++i) head32.data()[i] = float(head64.data()[i]);
    auto g64 = zeros_like_config<double>(w64.config);
    auto g32 = zeros_like_config<float>(w64.config);
    answer_objective<double> o64;
    answer_objective<float> o32;
    const auto r64 = o64.run(ctx, batch, &w64, head64.view(), make_norm<double>(1), &g64, {});
    const auto r32 = o32.run(ctx, batch, &w32, head32.view(), make_norm<float>(1), &g32, {});
    BOOST_TEST(std::fabs(r64.loss - r32.loss) < 1e-4 * r64.loss);
    for (auto& [name, t] : g64.parameters()) {
      const auto& t32 = *g32.slot(name);
      const auto st = cbtest::compare(t32, *t);
      const double scale = std::max(1e-3, st.max_ref);  // max |float64 gradient|, at least 1e-3
      // float32 keeps ~7 digits; the backward pass is a few dozen operations deep.
      BOOST_TEST(st.max_abs < 1e-4 * scale, v.name() << " " << name << ": " << st.summary());
    }
  }
}

BOOST_AUTO_TEST_CASE(baseline_is_the_unmixed_loss) {
  const auto batch = test_batch(3);
  auto w = cbtest::random_mixer<double>(
      cbtest::variant_config({mixer_kind::attention, combine_mode::scale}, C, 2), 11);
  const auto head = random_head<double>(12);
  answer_objective<double> obj;
  const auto none = obj.run(ctx, batch, nullptr, head.view(), make_norm<double>(1), nullptr, {});
  BOOST_TEST(none.loss == none.baseline_loss);
  const auto mixed = obj.run(ctx, batch, &w, head.view(), make_norm<double>(1), nullptr, {});
  BOOST_TEST(mixed.baseline_loss == none.loss);
  BOOST_TEST(mixed.loss != none.loss);
  w.mix(0) = 0.0;
  BOOST_TEST(obj.run(ctx, batch, &w, head.view(), make_norm<double>(1), nullptr, {}).loss ==
             none.loss);
}

BOOST_AUTO_TEST_CASE(gemm_matches_naive_products) {
  context<cpu> two;
  two.threads = 2;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (auto [m, n, k] :
           {std::tuple{3, 2, 5}, std::tuple{256, 130, 128}, std::tuple{64, 520, 128}}) {
        const auto a = cbtest::random_tensor<double>(ta ? shape_t{k, m} : shape_t{m, k}, 1);
        const auto b = cbtest::random_tensor<double>(tb ? shape_t{n, k} : shape_t{k, n}, 2);
        const auto c0 = cbtest::random_tensor<double>({m, n}, 3);
        auto c = c0.clone();
        gemm(two, c.view(), a.view(), b.view(), ta, tb, 0.5, 2.0);
        cbtest::diff_stats st;
        const double *pa = a.data(), *pb = b.data();
        for (index_t i = 0; i < m; ++i)
          for (index_t j = 0; j < n; ++j) {
            double s = 0;
            for (index_t q = 0; q < k; ++q)
              s += (ta ? pa[q * m + i] : pa[i * k + q]) * (tb ? pb[j * k + q] : pb[q * n + j]);
            st.add(c.data()[i * n + j], 0.5 * s + 2.0 * c0.data()[i * n + j]);
          }
        BOOST_TEST(st.max_abs < 1e-12, "ta " << ta << " tb " << tb << " " << m << "x" << n << "x"
                                             << k << ": " << st.summary());
      }
}
