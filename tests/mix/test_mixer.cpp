// Properties of the cross-batch mixers (attention and embedding mixer; alpha, scale and gate modes;
// float32, float16 and bfloat16): a batch of one and a sample alone in its group come back exactly;
// the output is equivariant to permuting the batch; a sample's own state never enters its cross
// term; samples of different groups (or excluded with a negative group) never influence each
// other; alpha or scale of zero is the identity; the three dtypes agree within tolerance.
#define BOOST_TEST_MODULE mixer
#include <boost/mpl/list.hpp>

#include "mix_helpers.hpp"

using namespace crossbatch;
using cbtest::all_variants;
using cbtest::random_mixer;
using cbtest::variant_config;
using dtypes = boost::mpl::list<float, crossbatch::half, crossbatch::bfloat16>;

namespace {

constexpr int C = 16;
context<cpu> ctx;

template <class T>
tensor<T> mix_of(cross_batch_mixer<T>& m, const tensor<T>& h, const std::vector<int>& groups) {
  return m.mix(ctx, h.view(), groups);
}

template <class T>
cross_batch_mixer<T> make_mixer(const cbtest::mixer_variant& v, unsigned seed) {
  return cross_batch_mixer<T>(random_mixer<float>(variant_config(v, C), seed).template cast<T>());
}

template <class T>
bool rows_equal(const tensor<T>& a, index_t ra, const tensor<T>& b, index_t rb) {
  for (index_t j = 0; j < a.dim(1); ++j)
    if (static_cast<float>(a(ra, j)) != static_cast<float>(b(rb, j))) return false;
  return true;
}

}  // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(batch_of_one_and_lonely_samples_come_back_exactly, T, dtypes) {
  for (const auto& v : all_variants()) {
    auto m = make_mixer<T>(v, 1);
    const auto one = cbtest::random_tensor<T>({1, C}, 2, -2, 2);
    const auto out1 = mix_of(m, one, {0});
    BOOST_TEST(rows_equal(out1, 0, one, 0), v.name() << ": batch of one");
    // Four samples: 0 and 2 share group 5, 1 is alone in group 7, 3 is excluded (-1).
    const auto h = cbtest::random_tensor<T>({4, C}, 3, -2, 2);
    const auto out = mix_of(m, h, {5, 7, 5, -1});
    BOOST_TEST(rows_equal(out, 1, h, 1), v.name() << ": alone in its group");
    BOOST_TEST(rows_equal(out, 3, h, 3), v.name() << ": excluded sample");
    BOOST_TEST(!rows_equal(out, 0, h, 0), v.name() << ": a sample with a partner changes");
    BOOST_TEST(m.workspace().partners(0) == 1);
    BOOST_TEST(m.workspace().partners(1) == 0);
  }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(output_is_equivariant_to_permuting_the_batch, T, dtypes) {
  const std::vector<int> perm = {3, 0, 5, 1, 4, 2};
  const std::vector<int> groups = {0, 1, 0, 0, 1, 1};
  for (const auto& v : all_variants()) {
    auto m = make_mixer<T>(v, 4);
    const auto h = cbtest::random_tensor<T>({6, C}, 5, -2, 2);
    tensor<T> hp({6, C});
    std::vector<int> gp(6);
    for (int i = 0; i < 6; ++i) {
      for (int j = 0; j < C; ++j) hp(i, j) = h(perm[i], j);
      gp[i] = groups[perm[i]];
    }
    const auto out = mix_of(m, h, groups);
    const auto outp = mix_of(m, hp, gp);
    tensor<T> back({6, C});
    for (int i = 0; i < 6; ++i)
      for (int j = 0; j < C; ++j) back(perm[i], j) = outp(i, j);
    cbtest::check_close<T>(tensor_view<const T>(back.view()), tensor_view<const T>(out.view()),
                           v.name() + " permuted");
  }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(own_state_never_enters_the_cross_term, T, dtypes) {
  for (const auto& v : all_variants()) {
    auto m = make_mixer<T>(v, 6);
    const auto h = cbtest::random_tensor<T>({5, C}, 7, -2, 2);
    mix_of(m, h, {0, 0, 0, 1, 1});
    const auto& ws = m.workspace();
    for (index_t hd = 0; hd < ws.probs.dim(0); ++hd)
      for (index_t i = 0; i < 5; ++i) {
        BOOST_TEST(ws.probs(hd, i, i) == 0.0f);
        float sum = 0;
        for (index_t j = 0; j < 5; ++j) sum += ws.probs(hd, i, j);
        BOOST_TEST(std::fabs(sum - 1.0f) < 1e-5f);
      }
    // With one partner the cross term is that partner's value: it does not move when the sample's
    // own state does.
    auto pair = cbtest::random_tensor<T>({2, C}, 8, -2, 2);
    mix_of(m, pair, {0, 0});
    const auto before = to_host(tensor_view<const T>(m.workspace().cross_term(m.config())));
    for (int j = 0; j < C; ++j)
      pair(0, j) = static_cast<T>(-static_cast<float>(pair(0, j)) * 1.5f + 0.25f);
    mix_of(m, pair, {0, 0});
    const auto after = to_host(tensor_view<const T>(m.workspace().cross_term(m.config())));
    BOOST_TEST(rows_equal(before, 0, after, 0),
               v.name() << ": cross term of sample 0 moved with its own state");
    BOOST_TEST(!rows_equal(before, 1, after, 1),
               v.name() << ": cross term of sample 1 must follow sample 0");
  }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(groups_never_influence_each_other, T, dtypes) {
  const std::vector<int> groups = {0, 1, 0, 1, -1, 0};
  for (const auto& v : all_variants()) {
    auto m = make_mixer<T>(v, 9);
    auto h = cbtest::random_tensor<T>({6, C}, 10, -2, 2);
    const auto out = mix_of(m, h, groups);
    // Change every sample outside group 0 (group 1 and the excluded one).
    for (int i : {1, 3, 4})
      for (int j = 0; j < C; ++j)
        h(i, j) = static_cast<T>(static_cast<float>(h(i, j)) * -0.5f + 1.0f);
    const auto out2 = mix_of(m, h, groups);
    for (int i : {0, 2, 5})
      BOOST_TEST(rows_equal(out, i, out2, i), v.name() << ": group 0 sample " << i << " changed");
    for (int i : {1, 3}) BOOST_TEST(!rows_equal(out, i, out2, i));
  }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(alpha_or_scale_of_zero_is_the_identity, T, dtypes) {
  for (const auto& v : all_variants()) {
    if (v.combine == combine_mode::gate) continue;
    auto w = random_mixer<float>(variant_config(v, C), 11);
    w.mix(0) = 0.0f;
    cross_batch_mixer<T> m(w.template cast<T>());
    const auto h = cbtest::random_tensor<T>({5, C}, 12, -2, 2);
    const auto out = mix_of(m, h, {0, 0, 0, 0, 0});
    for (int i = 0; i < 5; ++i) BOOST_TEST(rows_equal(out, i, h, i), v.name() << " row " << i);
  }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(low_precision_agrees_with_float, T, dtypes) {
  for (const auto& v : all_variants()) {
    const auto w = random_mixer<float>(variant_config(v, C), 13, 0.3f);
    cross_batch_mixer<float> ref(w.cast<float>());
    cross_batch_mixer<T> low(w.cast<T>());
    const auto h = cbtest::random_tensor<float>({7, C}, 14, -1, 1);
    tensor<T> hl({7, C});
    for (index_t i = 0; i < h.size(); ++i) hl.data()[i] = static_cast<T>(h.data()[i]);
    const std::vector<int> g = {0, 0, 1, 1, 1, 0, 2};
    const auto want = ref.mix(ctx, h.view(), g);
    const auto got = low.mix(ctx, hl.view(), g);
    // Several roundings in sequence (projection, attention, output projection, gate MLP).
    cbtest::check_close<T>(tensor_view<const T>(got.view()), tensor_view<const float>(want.view()),
                           v.name(), 4.0f);
  }
}

BOOST_AUTO_TEST_CASE(named_mixers_and_errors) {
  cross_batch_attention<float> a(C, 4, combine_mode::scale, 1);
  embedding_mixer<float> e(C, combine_mode::gate, 1);
  BOOST_TEST((a.config().kind == mixer_kind::attention));
  BOOST_TEST((e.config().kind == mixer_kind::embedding));
  static_assert(batch_mixer<cross_batch_attention<float>, float, cpu>);
  static_assert(batch_mixer<identity_mixer, float, cpu>);
  // Reference initialisation: the untrained mixer is a small perturbation.
  const auto h = cbtest::random_tensor<float>({3, C}, 15, -1, 1);
  const auto out = a.mix(ctx, h.view(), std::vector<int>{0, 0, 0});
  BOOST_TEST(cbtest::max_abs_diff(tensor_view<const float>(out.view()),
                                  tensor_view<const float>(h.view())) < 0.05f);
  BOOST_CHECK_THROW(a.mix(ctx, h.view(), std::vector<int>{0, 0}), shape_error);
  tensor<float> wrong({3, C + 1});
  BOOST_CHECK_THROW(a.mix(ctx, wrong.view(), std::vector<int>{0, 0, 0}), shape_error);
  mixer_config bad;
  bad.hidden_size = 10;
  bad.num_heads = 4;
  BOOST_CHECK_THROW(bad.validate(), value_error);
}
