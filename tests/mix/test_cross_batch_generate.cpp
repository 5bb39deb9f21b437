// Cross-batch generation on tiny random models (gpt2, llama, qwen2): a mixer with alpha or scale
// zero, and the identity mixer, give exactly the standard generation (left padding, EOS) at every
// projection; two groups in one batch generate as the groups do apart; a sequence that stopped at
// EOS is taken out of mixing from the next step; the split prefill/step of batch_session equals the
// one-call form; intermediate layers follow the documented projections; seeded sampling repeats;
// bad mix layers, group lists and heads are rejected.
#define BOOST_TEST_MODULE cross_batch_generate
#include <boost/test/data/test_case.hpp>

#include "crossbatch/generate/cross_batch.hpp"
#include "mix/mix_helpers.hpp"
#include "tiny_models.hpp"

using namespace crossbatch;
namespace bdata = boost::unit_test::data;

namespace {

const std::vector<std::vector<int>> prompts = {
    {5, 9, 13, 2, 7, 7, 30}, {3}, {11, 12, 40, 41}, {8, 8}};
const auto families = bdata::make(std::vector<std::string>{"gpt2", "llama", "qwen2"});
context<cpu> ctx;

struct model_fixture {
  std::string dir;
  decoder_model<float> model;
  explicit model_fixture(const std::string& family, std::uint64_t seed = 1)
      : dir(cbtest::tiny_model_dir(family, seed)), model(decoder_model<float>::load(dir)) {}
  ~model_fixture() { std::filesystem::remove_all(dir); }
};

cross_batch_mixer<float> zero_mixer(const cbtest::mixer_variant& v, int hidden) {
  auto w = cbtest::random_mixer<float>(cbtest::variant_config(v, hidden), 3);
  w.mix(0) = 0.0f;
  return cross_batch_mixer<float>(std::move(w));
}

// Records the group ids it is called with (on the CPU the policy's device ids are host memory),
// then mixes.
struct recording_mixer {
  cross_batch_mixer<float> inner;
  std::vector<std::vector<int>> calls;
  void mix(const context<cpu>& c, tensor_view<float> out, tensor_view<const float> h,
           tensor_view<const std::int32_t> g) {
    calls.emplace_back(g.data, g.data + g.size());
    inner.mix(c, out, h, g);
  }
  void mix(const context<cpu>& c, tensor_view<float> out, tensor_view<const float> h,
           std::span<const int> g) {
    calls.emplace_back(g.begin(), g.end());
    inner.mix(c, out, h, g);
  }
};

}  // namespace

BOOST_DATA_TEST_CASE(zero_mix_equals_standard_generation, families, family) {
  model_fixture f(family);
  generation_options base;
  base.max_new_tokens = 7;
  base.eos_ids = {4, 17};  // frequent enough in tiny models to stop some sequences early
  const auto standard = generate(ctx, f.model, prompts, greedy{}, base);
  for (const auto& v : cbtest::all_variants()) {
    if (v.combine == combine_mode::gate) continue;
    for (auto proj :
         {mix_projection::project, mix_projection::project_raw, mix_projection::continue_layers}) {
      cross_batch_options opt;
      static_cast<generation_options&>(opt) = base;
      opt.projection = proj;
      auto m = zero_mixer(v, f.model.config.hidden_size);
      const auto got = cross_batch_generate(ctx, f.model, prompts, m, greedy{}, opt);
      BOOST_TEST(got.tokens == standard.tokens,
                 family << " " << v.name() << " " << to_string(proj));
      BOOST_TEST(got.stopped_at_eos == standard.stopped_at_eos);
    }
    // Continuing through the layers from an intermediate layer is also exact when nothing mixes.
    cross_batch_options opt;
    static_cast<generation_options&>(opt) = base;
    opt.mix_layer = 1;
    opt.projection = mix_projection::continue_layers;
    auto m = zero_mixer(v, f.model.config.hidden_size);
    BOOST_TEST(cross_batch_generate(ctx, f.model, prompts, m, greedy{}, opt).tokens ==
               standard.tokens);
  }
  identity_mixer id;
  cross_batch_options opt;
  static_cast<generation_options&>(opt) = base;
  BOOST_TEST(cross_batch_generate(ctx, f.model, prompts, id, greedy{}, opt).tokens ==
             standard.tokens);
}

BOOST_DATA_TEST_CASE(mixing_changes_tokens_and_groups_generate_apart, families, family) {
  model_fixture f(family);
  const int hidden = f.model.config.hidden_size;
  auto w = cbtest::random_mixer<float>(
      cbtest::variant_config({mixer_kind::attention, combine_mode::scale}, hidden), 5, 1.5f);
  w.mix(0) = 1.0f;
  cross_batch_options opt;
  opt.max_new_tokens = 6;
  opt.stop_at_eos = false;
  opt.groups = {1, 2, 1, 2};
  cross_batch_mixer<float> m(w.cast<float>());
  const auto together = cross_batch_generate(ctx, f.model, prompts, m, greedy{}, opt);
  // Group 1 alone and group 2 alone.
  for (int g : {1, 2}) {
    std::vector<std::vector<int>> sub;
    std::vector<int> idx;
    for (int i = 0; i < 4; ++i)
      if (opt.groups[i] == g) sub.push_back(prompts[i]), idx.push_back(i);
    cross_batch_options o = opt;
    o.groups.assign(sub.size(), 0);
    const auto apart = cross_batch_generate(ctx, f.model, sub, m, greedy{}, o);
    for (std::size_t j = 0; j < idx.size(); ++j)
      BOOST_TEST(apart.tokens[j] == together.tokens[idx[j]]);
  }
  const auto standard = generate(ctx, f.model, prompts, greedy{}, opt);
  BOOST_TEST(standard.tokens != together.tokens, "a strong mixer should change some token");
}

BOOST_AUTO_TEST_CASE(finished_sequences_stop_contributing) {
  model_fixture f("llama");
  const auto w = cbtest::random_mixer<float>(
      cbtest::variant_config({mixer_kind::embedding, combine_mode::gate},
                             f.model.config.hidden_size),
      7);
  cross_batch_options opt;
  opt.max_new_tokens = 6;
  // Stop sequence 1 at its second token (whatever the mixed run makes it).
  {
    recording_mixer probe{cross_batch_mixer<float>(w.cast<float>())};
    cross_batch_options o = opt;
    o.stop_at_eos = false;
    const auto r = cross_batch_generate(ctx, f.model, prompts, probe, greedy{}, o);
    opt.eos_ids = {r.tokens[1][1]};
  }
  recording_mixer rec{cross_batch_mixer<float>(w.cast<float>())};
  const auto r = cross_batch_generate(ctx, f.model, prompts, rec, greedy{}, opt);
  BOOST_REQUIRE(r.stopped_at_eos[1]);
  BOOST_TEST(r.tokens[1].size() == 2u);
  for (int s = 0; s < 4; ++s) {
    // Sequence s takes part up to the step that produced its EOS, and never after.
    const std::size_t stop = r.stopped_at_eos[s] ? r.tokens[s].size() : rec.calls.size();
    for (std::size_t step = 0; step < rec.calls.size(); ++step)
      BOOST_TEST(rec.calls[step][s] == (step < stop ? 0 : -1),
                 "sequence " << s << " step " << step);
  }
}

BOOST_AUTO_TEST_CASE(split_session_equals_one_call_and_layers_project_as_documented) {
  model_fixture f("qwen2");
  const auto& model = f.model;
  const int L = model.config.num_layers, C = model.config.hidden_size;
  batch_session<float> a(ctx, model, prompts, 3), b(ctx, model, prompts, 3);
  a.prefill();
  b.prefill_until(1);
  // Layer-1 state at the newest position, the input of a project-mode mixer at mix_layer 1.
  tensor<float> h1({4, C});
  copy_rows(ctx, h1.view(), tensor_view<const float>(b.newest_residual()));
  b.resume();
  BOOST_TEST(cbtest::max_abs_diff(a.logits(), b.logits()) == 0.0f);
  const std::vector<std::int32_t> next = {1, 2, 3, 4};
  a.step(next);
  b.step_until(next, L);
  b.resume();
  BOOST_TEST(cbtest::max_abs_diff(a.logits(), b.logits()) == 0.0f);
  BOOST_CHECK_THROW(b.resume(), value_error);
  BOOST_CHECK_THROW(b.step_until(next, L + 1), value_error);

  // project at layer 1 with the identity mixer: the first logits are head(final_norm(h_1)).
  tensor<float> normed({4, C}), want({4, model.config.vocab_size});
  model.final_norm(ctx, normed.view(), tensor_view<const float>(h1.view()));
  model.logits(ctx, want.view(), tensor_view<const float>(normed.view()));
  cross_batch_options opt;
  opt.max_new_tokens = 1;
  opt.mix_layer = 1 - (L + 1);  // the same layer counted from the end
  identity_mixer id;
  const auto r = cross_batch_generate(ctx, model, prompts, id, greedy{}, opt);
  for (int s = 0; s < 4; ++s)
    BOOST_TEST(r.tokens[s][0] ==
               argmax(std::span<const float>(&want(s, 0), model.config.vocab_size)));
}

BOOST_AUTO_TEST_CASE(sampling_is_seeded_and_errors_are_clear) {
  model_fixture f("gpt2");
  cross_batch_mixer<float> m(cbtest::random_mixer<float>(
      cbtest::variant_config({mixer_kind::attention, combine_mode::alpha},
                             f.model.config.hidden_size),
      9));
  cross_batch_options opt;
  opt.max_new_tokens = 5;
  opt.stop_at_eos = false;
  opt.seed = 42;
  sampling_params p;
  p.do_sample = true;
  p.temperature = 1.3f;
  const auto a = cross_batch_generate(ctx, f.model, prompts, m, p, opt);
  const auto b = cross_batch_generate(ctx, f.model, prompts, m, p, opt);
  BOOST_TEST(a.tokens == b.tokens);
  opt.seed = 43;
  BOOST_TEST(cross_batch_generate(ctx, f.model, prompts, m, p, opt).tokens != a.tokens);
  opt.mix_layer = f.model.config.num_layers + 1;
  BOOST_CHECK_THROW(cross_batch_generate(ctx, f.model, prompts, m, greedy{}, opt), value_error);
  opt.mix_layer = -1;
  opt.groups = {0, 1};
  BOOST_CHECK_THROW(cross_batch_generate(ctx, f.model, prompts, m, greedy{}, opt), value_error);
  opt.groups.clear();
  tensor<float> bad_head({5, f.model.config.hidden_size});
  BOOST_CHECK_THROW(cross_batch_generate(ctx, f.model, prompts, m, greedy{}, opt,
                                         tensor_view<const float>(bad_head.view())),
                    shape_error);
}

BOOST_AUTO_TEST_CASE(one_prefill_serves_several_mixers_through_fork) {
  model_fixture f("llama");
  const auto& model = f.model;
  const int C = model.config.hidden_size, L = model.config.num_layers;
  std::vector<cross_batch_mixer<float>> mixers;
  for (unsigned seed : {21u, 22u})
    mixers.emplace_back(cbtest::random_mixer<float>(
        cbtest::variant_config({mixer_kind::attention, combine_mode::gate}, C), seed));
  for (int layer : {-1, 1}) {
    cross_batch_options opt;
    opt.max_new_tokens = 5;
    opt.stop_at_eos = false;
    opt.mix_layer = layer;
    opt.groups = {0, 0, 1, 1};
    const int k = resolve_mix_layer(layer, L);
    batch_session<float> base(ctx, model, prompts, opt.max_new_tokens);
    base.prefill_until(k);
    tensor<float> states({4, C}), mixed({4, C}), normed({4, C});
    if (k < L) copy_rows(ctx, states.view(), tensor_view<const float>(base.newest_residual()));
    base.resume(false);
    if (k == L) copy_rows(ctx, states.view(), base.hidden());
    for (auto& m : mixers) {
      auto s = base.fork();
      const auto first = mix_and_project(ctx, model, m, tensor_view<const float>(states.view()), k,
                                         opt.projection, opt.groups, mixed, normed);
      const auto got = cross_batch_decode(ctx, s, first, m, greedy{}, opt);
      const auto want = cross_batch_generate(ctx, model, prompts, m, greedy{}, opt);
      BOOST_TEST(got.tokens == want.tokens, "layer " << layer);
    }
  }
  batch_session<float> paused(ctx, model, prompts, 2);
  paused.prefill_until(1);
  BOOST_CHECK_THROW(paused.fork(), value_error);
}
