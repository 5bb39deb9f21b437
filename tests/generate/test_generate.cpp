// Batched generation on tiny random models of each decoder family: KV-cached decode equals full
// recomputation, a prompt's logits do not depend on its batch companions or its left padding,
// seeded sampling is reproducible, EOS stops one sequence, fixed-length mode ignores EOS,
// the streaming callback sees every token, and bad prompts are rejected with clear errors.
#define BOOST_TEST_MODULE generate
#include <boost/test/data/test_case.hpp>

#include "crossbatch/generate/generate.hpp"
#include "tiny_models.hpp"

using namespace crossbatch;
namespace bdata = boost::unit_test::data;

namespace {

const std::vector<std::vector<int>> prompts = {{5, 9, 13, 2, 7, 7, 30}, {3}, {11, 12, 40, 41}};

struct model_fixture {
  std::string dir;
  decoder_model<float> model;
  explicit model_fixture(const std::string& family)
      : dir(cbtest::tiny_model_dir(family)), model(decoder_model<float>::load(dir)) {}
  ~model_fixture() { std::filesystem::remove_all(dir); }
};

// Greedy decode of `ps` for n steps recording the logits (B, V) of every step.
std::vector<tensor<float>> decode_logits(const decoder_model<float>& m,
                                         const std::vector<std::vector<int>>& ps, int n,
                                         std::vector<std::vector<int>>& tokens) {
  context<cpu> ctx;
  batch_session<float> s(ctx, m, ps, n);
  std::vector<tensor<float>> out;
  tokens.assign(ps.size(), {});
  s.prefill();
  for (int step = 0; step < n; ++step) {
    if (step) {
      std::vector<std::int32_t> next;
      for (auto& t : tokens) next.push_back(t.back());
      s.step(next);
    }
    out.push_back(s.logits_host());
    for (std::size_t b = 0; b < ps.size(); ++b)
      tokens[b].push_back(argmax(std::span<const float>(&out.back()(b, 0), m.config.vocab_size)));
  }
  return out;
}

void check_rows_close(const tensor<float>& a, int ra, const tensor<float>& b, int rb,
                      const std::string& what) {
  const index_t v = a.dim(1);
  cbtest::check_close<float>(tensor_view<const float>(&a(ra, 0), {v}),
                             tensor_view<const float>(&b(rb, 0), {v}), what);
}

const auto families = bdata::make(std::vector<std::string>{"gpt2", "llama", "qwen2"});

}  // namespace

BOOST_DATA_TEST_CASE(kv_cached_decode_equals_full_recomputation, families, family) {
  model_fixture f(family);
  std::vector<std::vector<int>> tokens;
  const int n = 6;
  const auto steps = decode_logits(f.model, prompts, n, tokens);
  for (std::size_t b = 0; b < prompts.size(); ++b)
    for (int step = 1; step < n; ++step) {
      // Recompute from scratch: the prompt plus the tokens generated so far, in one prefill.
      auto full = prompts[b];
      full.insert(full.end(), tokens[b].begin(), tokens[b].begin() + step);
      std::vector<std::vector<int>> t;
      const auto fresh = decode_logits(f.model, {full}, 1, t);
      check_rows_close(steps[step], int(b), fresh[0], 0,
                       family + " seq " + std::to_string(b) + " step " + std::to_string(step));
    }
}

BOOST_DATA_TEST_CASE(batch_and_padding_invariance, families, family) {
  model_fixture f(family);
  std::vector<std::vector<int>> batch_tokens, alone_tokens, other_tokens;
  const auto batched = decode_logits(f.model, prompts, 5, batch_tokens);
  for (std::size_t b = 0; b < prompts.size(); ++b) {
    const auto alone = decode_logits(f.model, {prompts[b]}, 5, alone_tokens);
    BOOST_TEST(alone_tokens[0] == batch_tokens[b]);
    for (int step = 0; step < 5; ++step)
      check_rows_close(batched[step], int(b), alone[step], 0,
                       family + " alone vs batch, seq " + std::to_string(b));
  }
  // More padding: a much longer companion changes nothing for prompt 1.
  const auto padded =
      decode_logits(f.model, {std::vector<int>(40, 4), prompts[1]}, 5, other_tokens);
  BOOST_TEST(other_tokens[1] == batch_tokens[1]);
  for (int step = 0; step < 5; ++step)
    check_rows_close(batched[step], 1, padded[step], 1, family + " extra padding");
}

BOOST_DATA_TEST_CASE(seeded_sampling_is_reproducible, families, family) {
  model_fixture f(family);
  context<cpu> ctx;
  const sampling_params sp{true, 1.3f, 20, 0.95f, 0.0f};
  generation_options opt;
  opt.max_new_tokens = 12;
  opt.stop_at_eos = false;
  opt.seed = 1234;
  const auto a = generate(ctx, f.model, prompts, sp, opt);
  const auto b = generate(ctx, f.model, prompts, sp, opt);
  BOOST_TEST(a.tokens == b.tokens);
  opt.seed = 4321;
  const auto c = generate(ctx, f.model, prompts, sp, opt);
  BOOST_TEST(a.tokens != c.tokens);
  // A sequence's draws do not depend on its companions (stream = its index; same index alone).
  const auto alone = generate(ctx, f.model, {prompts[0]}, sp, [&] {
    auto o = opt;
    o.seed = 1234;
    return o;
  }());
  BOOST_TEST(alone.tokens[0] == a.tokens[0]);
}

BOOST_DATA_TEST_CASE(eos_stops_one_sequence_and_fixed_length_ignores_it, families, family) {
  model_fixture f(family);
  context<cpu> ctx;
  generation_options opt;
  opt.max_new_tokens = 8;
  opt.stop_at_eos = false;
  const auto free_run = generate(ctx, f.model, prompts, greedy{}, opt);
  for (const auto& t : free_run.tokens) BOOST_TEST(t.size() == 8u);
  // Make sequence 0's third token the EOS: it stops there, the others run on unchanged.
  const int eos = free_run.tokens[0][2];
  opt.stop_at_eos = true;
  opt.eos_ids = {eos};
  std::vector<std::vector<int>> streamed(prompts.size());
  const auto r = generate(ctx, f.model, prompts, greedy{}, opt,
                          [&](int s, int id) { streamed[s].push_back(id); });
  BOOST_TEST(r.stopped_at_eos[0]);
  BOOST_TEST(r.tokens[0] ==
             std::vector<int>(free_run.tokens[0].begin(), free_run.tokens[0].begin() + 3));
  for (std::size_t s = 1; s < prompts.size(); ++s) {
    const auto& t = free_run.tokens[s];
    const auto cut = std::find(t.begin(), t.end(), eos);
    BOOST_TEST(r.tokens[s] == std::vector<int>(t.begin(), cut == t.end() ? t.end() : cut + 1));
  }
  BOOST_TEST(streamed == r.tokens);
  int total = 0;
  for (const auto& t : r.tokens) total += int(t.size());
  BOOST_TEST(r.generated_tokens == total);
}

BOOST_AUTO_TEST_CASE(bad_prompts_are_rejected) {
  model_fixture f("llama");
  context<cpu> ctx;
  generation_options opt;
  opt.max_new_tokens = 10;
  auto expect = [&](const std::vector<std::vector<int>>& ps, const std::string& needle) {
    try {
      generate(ctx, f.model, ps, greedy{}, opt);
      BOOST_ERROR("accepted a bad prompt; expected '" << needle << "'");
    } catch (const value_error& e) {
      BOOST_CHECK_MESSAGE(std::string(e.what()).find(needle) != std::string::npos, e.what());
    }
  };
  expect({std::vector<int>(60, 1)}, "exceeds the model's context of 64 positions");
  expect({{1, 2}, {}}, "prompt 1 is empty");
  expect({{1, 2000}}, "outside the vocabulary");
  expect({}, "no prompts");
}
