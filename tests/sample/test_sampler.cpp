// Samplers: ids always inside the allowed set, one-hot logits give that id, seeded determinism,
// and empirical frequencies within statistical bounds of the target distribution.
#define BOOST_TEST_MODULE sampler
#include <cmath>
#include <map>
#include <random>
#include <set>

#include "crossbatch/sample/sampler.hpp"
#include "support.hpp"

using namespace crossbatch;

namespace {

std::vector<float> random_logits(int v, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> n(0, 2);
  std::vector<float> l(v);
  for (auto& x : l) x = n(gen);
  return l;
}

std::vector<double> softmax(const std::vector<float>& l, double t = 1) {
  double m = *std::max_element(l.begin(), l.end()), z = 0;
  std::vector<double> p(l.size());
  for (std::size_t i = 0; i < l.size(); ++i)
    z += (p[i] = std::isinf(l[i]) ? 0 : std::exp((l[i] - m) / t));
  for (auto& x : p) x /= z;
  return p;
}

// Draws n samples and checks each count against n p_i within 5 sigma (plus 3 for small p).
template <class S>
void check_frequencies(const S& s, const std::vector<float>& logits,
                       const std::vector<double>& target, int n) {
  counter_rng rng{99};
  std::vector<int> counts(logits.size());
  for (int i = 0; i < n; ++i) {
    auto row = logits;
    ++counts[s.pick(std::span(row), rng.uniform(0, i))];
  }
  for (std::size_t i = 0; i < logits.size(); ++i) {
    const double mean = n * target[i], sd = std::sqrt(n * target[i] * (1 - target[i]));
    BOOST_CHECK_MESSAGE(std::fabs(counts[i] - mean) <= 5 * sd + 3, "id " << i << ": " << counts[i]
                                                                         << " draws, expected "
                                                                         << mean << " +- " << sd);
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(greedy_and_one_hot) {
  std::vector<float> l = {0.1f, 3.f, 3.f, -1.f};
  BOOST_TEST(greedy{}.pick(std::span(l), 0.5f) == 1);  // first maximum
  for (int hot = 0; hot < 50; ++hot) {
    std::vector<float> oh(50, neg_inf);
    oh[hot] = 0;
    sampler_chain<temperature, top_p> s(temperature{1.5f}, top_p{0.9f});
    for (float u : {0.0f, 0.3f, 0.999999f}) {
      auto row = oh;
      BOOST_REQUIRE(s.pick(std::span(row), u) == hot);
    }
  }
}

BOOST_AUTO_TEST_CASE(ids_stay_in_allowed_set) {
  counter_rng rng{7};
  for (int trial = 0; trial < 200; ++trial) {
    const auto l = random_logits(100, trial);
    // top-k allowed set
    std::vector<float> sorted = l;
    std::sort(sorted.begin(), sorted.end(), std::greater<>());
    const float kth = sorted[9];
    auto row = l;
    const int id = sampler_chain<top_k>(top_k{10}).pick(std::span(row), rng.uniform(1, trial));
    BOOST_REQUIRE(l[id] >= kth);
    // min-p allowed set
    const auto p = softmax(l);
    row = l;
    const int id2 = sampler_chain<min_p>(min_p{0.2f}).pick(std::span(row), rng.uniform(2, trial));
    BOOST_REQUIRE(p[id2] >= 0.2 * *std::max_element(p.begin(), p.end()) * (1 - 1e-5));
    // top-p allowed set: the id's rank must be within the nucleus
    row = l;
    const int id3 = sampler_chain<top_p>(top_p{0.5f}).pick(std::span(row), rng.uniform(3, trial));
    double above = 0;  // probability mass strictly more likely than id3
    for (std::size_t i = 0; i < p.size(); ++i)
      if (l[i] > l[id3]) above += p[i];
    BOOST_REQUIRE(above < 0.5 + 1e-5);
  }
}

BOOST_AUTO_TEST_CASE(frequencies_match_targets) {
  const auto l = random_logits(12, 3);
  const int n = 40000;
  check_frequencies(sampler_chain<>(), l, softmax(l), n);
  check_frequencies(sampler_chain<temperature>(temperature{0.7f}), l, softmax(l, 0.7), n);
  // top-k: renormalised over the k largest
  {
    auto p = softmax(l);
    std::vector<float> s = l;
    std::sort(s.begin(), s.end(), std::greater<>());
    double z = 0;
    for (std::size_t i = 0; i < l.size(); ++i) z += l[i] >= s[3] ? p[i] : 0;
    for (std::size_t i = 0; i < l.size(); ++i) p[i] = l[i] >= s[3] ? p[i] / z : 0;
    check_frequencies(sampler_chain<top_k>(top_k{4}), l, p, n);
  }
  // top-p: renormalised over the nucleus computed independently (descending order)
  {
    auto p = softmax(l);
    std::vector<int> order(l.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int a, int b) { return l[a] > l[b]; });
    std::vector<double> q(l.size(), 0);
    double cum = 0, z = 0;
    for (int i : order) {
      if (cum >= 0.8) break;
      cum += p[i];
      q[i] = p[i];
      z += p[i];
    }
    for (auto& x : q) x /= z;
    check_frequencies(sampler_chain<top_p>(top_p{0.8f}), l, q, n);
  }
  // the run-time form in HF order equals the composed chain
  sampling_params sp{true, 0.9f, 5, 0.95f, 0.05f};
  sampler_chain<temperature, top_k, top_p, min_p> chain(temperature{0.9f}, top_k{5}, top_p{0.95f},
                                                        min_p{0.05f});
  counter_rng rng{5};
  for (int i = 0; i < 500; ++i) {
    auto a = l, b = l;
    BOOST_REQUIRE(sp.pick(std::span(a), rng.uniform(0, i)) ==
                  chain.pick(std::span(b), rng.uniform(0, i)));
  }
}

BOOST_AUTO_TEST_CASE(batch_sampling_is_seeded_per_stream) {
  context<cpu> ctx;
  tensor<float> logits({3, 50});
  auto fill = [&] {
    for (int b = 0; b < 3; ++b) {
      auto l = random_logits(50, 100 + b);
      std::copy(l.begin(), l.end(), &logits(b, 0));
    }
  };
  std::vector<std::int32_t> a(3), b(3), c(3);
  sampler_chain<temperature> s(temperature{2.0f});
  fill();
  sample(ctx, s, logits.view(), std::span(a), counter_rng{1}, 4);
  fill();
  sample(ctx, s, logits.view(), std::span(b), counter_rng{1}, 4);
  BOOST_TEST(a == b);
  // Different seeds give different draws somewhere over many steps.
  int differ = 0;
  for (int step = 0; step < 20; ++step) {
    fill();
    sample(ctx, s, logits.view(), std::span(a), counter_rng{1}, step);
    fill();
    sample(ctx, s, logits.view(), std::span(c), counter_rng{2}, step);
    differ += a != c;
  }
  BOOST_TEST(differ > 0);
  std::vector<float> row(3, 0.f);
  BOOST_CHECK_THROW(sampler_chain<temperature>(temperature{0.f}).pick(std::span(row), 0.f),
                    value_error);
  BOOST_CHECK_THROW(sampler_chain<top_p>(top_p{1.5f}).pick(std::span(row), 0.f), value_error);
}
