// LDA generation (generate/lda.hpp) on the CPU: a hand-computed 3-token step (combination, greedy
// pick, the shifted top-p cut and draw), where the sampling order differs from
// sampling_params' HF order, greedy decoding against a from-scratch recomputation (no cache, no
// padding, new tokens only), batched = one prompt at a time for the same seed and stream,
// duplicated prompts, left padding, fixed-length vs EOS mode, and the vocabulary checks.
#define BOOST_TEST_MODULE lda
#include <boost/test/data/test_case.hpp>
#include <cmath>
#include <fstream>
#include <random>

#include "crossbatch/generate/lda.hpp"
#include "tiny_models.hpp"

using namespace crossbatch;
namespace bdata = boost::unit_test::data;

namespace {

const std::vector<std::string> families = {"gpt2", "llama", "qwen2"};
context<cpu> ctx;

// An after/before pair of one family: same config, different random weights.
struct pair_fixture : cbtest::model_pair {
  explicit pair_fixture(const std::string& family) : model_pair(family, 11, 12) {}
};

// Prompts of different lengths (left padding to 9).
const std::vector<std::vector<int>> prompts = {
    {5, 9, 13, 2, 7}, {3, 8}, {11, 12, 40, 41, 2, 2, 9, 30, 31}, {60, 1, 6, 4}};

tensor<float> row_tensor(const std::vector<std::vector<float>>& rows) {
  tensor<float> t({index_t(rows.size()), index_t(rows[0].size())});
  for (std::size_t r = 0; r < rows.size(); ++r)
    for (std::size_t j = 0; j < rows[r].size(); ++j) t(r, j) = rows[r][j];
  return t;
}

// Logits (1, V) of the newest position of `tokens` alone (one fresh session, prefill only).
tensor<float> last_logits(const decoder_model<float>& m, const std::vector<int>& tokens) {
  batch_session<float> s(ctx, m, {tokens}, 1);
  s.prefill();
  return s.logits_host();
}

// Greedy LDA recomputed from scratch each step: full forward of both models over prompt + the
// tokens so far, after + alpha (after - before) by hand, argmax.
std::vector<int> greedy_from_scratch(const pair_fixture& f, std::vector<int> seq, float alpha,
                                     int steps) {
  std::vector<int> out;
  for (int i = 0; i < steps; ++i) {
    const auto a = last_logits(f.after, seq), b = last_logits(f.before, seq);
    std::vector<float> row(a.dim(1));
    for (index_t j = 0; j < a.dim(1); ++j) row[j] = a(0, j) + alpha * (a(0, j) - b(0, j));
    out.push_back(argmax(row));
    seq.push_back(out.back());
  }
  return out;
}

// One prompt alone through the engine's pieces, drawing from RNG stream `stream` (the row it has
// in the batched run): the one-prompt-at-a-time reference under sampling.
std::vector<int> lda_alone(const pair_fixture& f, const std::vector<int>& prompt, float alpha,
                           const lda_sampling& sp, int steps, std::uint64_t seed,
                           std::uint64_t stream) {
  batch_session<float> a(ctx, f.after, {prompt}, steps), b(ctx, f.before, {prompt}, steps);
  combined_step<float, cpu, left_padded, lda_combiner> policy({&a, &b}, lda_combiner{alpha});
  policy.prefill();
  const counter_rng rng{seed};
  std::vector<int> out;
  tensor<std::int32_t> ids({1});
  for (int step = 0; step < steps; ++step) {
    if (step > 0) {
      ids(0) = out.back();
      policy.step(tensor_view<const std::int32_t>(ids.view()), nullptr);
    }
    tensor<float> logits = to_host(policy.logits());
    std::int32_t id = -1;
    sample(context<cpu>{}, sp, logits.view(), std::span(&id, 1), rng, std::uint64_t(step),
           std::span<const std::uint64_t>(&stream, 1));
    out.push_back(id);
  }
  return out;
}

generation_options fixed_length(int n, std::uint64_t seed = 0) {
  generation_options o{.max_new_tokens = n, .seed = seed};
  o.stop_at_eos = false;
  return o;
}

// A copy of tests/data/text/gpt2/tokenizer.json changed by `edit`, in a scratch dir.
std::string edited_tokenizer(const std::function<void(json&)>& edit) {
  std::ifstream in(cbtest::data_dir() + "/text/gpt2/tokenizer.json");
  json j = json::parse(in);
  edit(j);
  const auto path = (cbtest::scratch_dir("lda_tok") / "tokenizer.json").string();
  std::ofstream(path) << j.dump();
  return path;
}

}  // namespace

BOOST_AUTO_TEST_CASE(hand_computed_three_token_step) {
  // after (2, 3), before (2, 3); alpha 1: row 0 = 2*(2, 1.5, 0) - (2, 0.5, 1) = (2, 2.5, -1),
  // row 1 = 2*(0, 1, 3) - (1, 1, 0) = (-1, 1, 6).
  const auto after = row_tensor({{2.0f, 1.5f, 0.0f}, {0.0f, 1.0f, 3.0f}});
  const auto before = row_tensor({{2.0f, 0.5f, 1.0f}, {1.0f, 1.0f, 0.0f}});
  const auto want = row_tensor({{2.0f, 2.5f, -1.0f}, {-1.0f, 1.0f, 6.0f}});
  tensor<float> out({2, 3});
  const std::vector<tensor_view<const float>> in = {after.view(), before.view()};
  combine_logits(ctx, lda_combiner{1.0f}, out.view(), std::span(in));
  cbtest::check_close<float>(out.view(), want.view(), "lda alpha 1");

  // Greedy on row 0: after alone picks id 0; the difference (id 1 gained 1, id 0 nothing) wins
  // from alpha > 0.5 (alpha 0.5 ties 2 vs 2: the first id, as torch.argmax).
  for (auto [alpha, id] :
       std::vector<std::pair<float, int>>{{0.0f, 0}, {0.25f, 0}, {0.5f, 0}, {1.0f, 1}, {2.0f, 1}}) {
    combine_logits(ctx, lda_combiner{alpha}, out.view(), std::span(in));
    std::vector<std::int32_t> ids(2);
    sample(ctx, greedy{}, out.view(), std::span(ids), counter_rng{}, 0);
    BOOST_TEST(ids[0] == id, "alpha " << alpha);
    BOOST_TEST(ids[1] == 2);
  }

  // Sampling row 0 at alpha 1, temperature 1, top-p 0.95: softmax (2, 2.5, -1) =
  // (0.37058, 0.61098, 0.01845). Shifted top-p keeps 0.611 and 0.371 (the token crossing 0.95;
  // the reference's variant would drop it and keep id 1 alone), cuts id 2. Draw in id order over
  // the kept mass 0.98155: id 0 while u < 0.37058 / 0.98155 = 0.37754.
  const lda_sampling sp{.do_sample = true, .temperature = 1.0f, .top_p = 0.95f};
  for (auto [u, id] : std::vector<std::pair<float, int>>{
           {0.0f, 0}, {0.37f, 0}, {0.38f, 1}, {0.99f, 1}, {0.99999f, 1}}) {
    std::vector<float> row = {2.0f, 2.5f, -1.0f};
    BOOST_TEST(sp.pick(row, u) == id, "u " << u);
    BOOST_TEST(std::isinf(row[2]));
    BOOST_TEST(std::isfinite(row[0]));
  }
}

BOOST_AUTO_TEST_CASE(sampling_order_matters_only_with_top_k_and_top_p) {
  // p = (0.5, 0.3, 0.2), top-k 2, top-p 0.6. Issue order (top-p first on the full distribution):
  // 0.5 < 0.6 so ids 0, 1 stay, top-k 2 keeps both; HF order (top-k first, then top-p on the
  // renormalised (0.625, 0.375)): 0.625 >= 0.6 so only id 0 stays. u = 0.9 tells them apart.
  const std::vector<float> base = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  const lda_sampling ours{.temperature = 1.0f, .top_p = 0.6f, .top_k = 2};
  const sampling_params hf{.do_sample = true, .temperature = 1.0f, .top_k = 2, .top_p = 0.6f};
  auto r1 = base, r2 = base;
  BOOST_TEST(ours.pick(r1, 0.9f) == 1);
  BOOST_TEST(hf.pick(r2, 0.9f) == 0);
  BOOST_CHECK_THROW(ours.to_sampling_params(), value_error);

  // Without top-k (or without top-p) the two orders give the same ids.
  std::mt19937 gen(3);
  std::normal_distribution<float> logit(0.0f, 2.0f);
  std::uniform_real_distribution<float> unif(0.0f, 1.0f);
  for (const lda_sampling& s :
       {lda_sampling{.temperature = 0.7f, .top_p = 0.9f, .min_p = 0.05f},
        lda_sampling{.temperature = 1.3f, .top_p = 1.0f, .min_p = 0.1f, .top_k = 5},
        lda_sampling{.do_sample = false, .top_k = 3}}) {
    const sampling_params p = s.to_sampling_params();
    int differ = 0;
    for (int trial = 0; trial < 500; ++trial) {
      std::vector<float> a(50);
      for (float& x : a) x = logit(gen);
      auto b = a;
      const float u = unif(gen);
      differ += s.pick(a, u) != p.pick(b, u);
    }
    BOOST_TEST(differ == 0);
  }
}

BOOST_DATA_TEST_CASE(greedy_equals_a_recomputation_from_scratch, bdata::make(families), family) {
  pair_fixture f(family);
  const float alpha = 1.5f;
  const int steps = 6;
  const auto r =
      lda_generate(ctx, f.after, f.before, prompts, alpha, greedy{}, fixed_length(steps));
  BOOST_REQUIRE(r.tokens.size() == prompts.size());
  int real = 0;
  for (std::size_t s = 0; s < prompts.size(); ++s) {
    real += int(prompts[s].size());
    // New tokens only: exactly `steps` of them, the same as continuing the prompt by hand.
    BOOST_TEST(r.tokens[s].size() == std::size_t(steps));
    BOOST_TEST(r.tokens[s] == greedy_from_scratch(f, prompts[s], alpha, steps),
               family << " prompt " << s);
  }
  BOOST_TEST(r.prompt_tokens == real);

  // The first step's combined logits of each (left-padded) row equal the hand combination of
  // each prompt run alone.
  batch_session<float> a(ctx, f.after, prompts, 1), b(ctx, f.before, prompts, 1);
  combined_step<float, cpu, left_padded, lda_combiner> policy({&a, &b}, lda_combiner{alpha});
  policy.prefill();
  const tensor<float> got = to_host(policy.logits());
  const index_t v = got.dim(1);
  for (std::size_t s = 0; s < prompts.size(); ++s) {
    const auto la = last_logits(f.after, prompts[s]), lb = last_logits(f.before, prompts[s]);
    tensor<float> want({1, v}), row({1, v});
    for (index_t j = 0; j < v; ++j) {
      want(0, j) = la(0, j) + alpha * (la(0, j) - lb(0, j));
      row(0, j) = got(s, j);
    }
    cbtest::check_close<float>(row.view(), want.view(),
                               family + " step-0 LDA logits, prompt " + std::to_string(s));
  }
}

BOOST_DATA_TEST_CASE(batched_sampling_equals_one_prompt_at_a_time, bdata::make(families), family) {
  pair_fixture f(family);
  const lda_sampling sp{.temperature = 0.9f, .top_p = 0.9f};
  const auto opt = fixed_length(10, 1234);
  const auto r = lda_generate(ctx, f.after, f.before, prompts, 1.0f, sp, opt);
  for (std::size_t s = 0; s < prompts.size(); ++s)
    BOOST_TEST(r.tokens[s] == lda_alone(f, prompts[s], 1.0f, sp, 10, 1234, s),
               family << " prompt " << s);
  // The same seed gives the same tokens; another seed other tokens.
  BOOST_TEST(lda_generate(ctx, f.after, f.before, prompts, 1.0f, sp, opt).tokens == r.tokens);
  BOOST_TEST(lda_generate(ctx, f.after, f.before, prompts, 1.0f, sp, fixed_length(10, 99)).tokens !=
             r.tokens);
}

BOOST_DATA_TEST_CASE(duplicates_and_left_padding, bdata::make(families), family) {
  pair_fixture f(family);
  const std::vector<int> p = {7, 3, 22}, longer = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
  const auto opt = fixed_length(8, 5);
  // Greedy: a duplicated prompt gives identical tokens, and padding it to a longer companion does
  // not change its completion.
  const auto dup = lda_generate(ctx, f.after, f.before, {p, p, longer}, 2.0f, greedy{}, opt);
  const auto alone = lda_generate(ctx, f.after, f.before, {p}, 2.0f, greedy{}, opt);
  BOOST_TEST(dup.tokens[0] == dup.tokens[1]);
  BOOST_TEST(dup.tokens[0] == alone.tokens[0]);
  // Sampling: row 0 keeps stream 0 whatever its companions and padding; the duplicate in row 1
  // has the same logits and its own stream (its draws equal the prompt alone on stream 1).
  const lda_sampling sp{.temperature = 1.0f, .top_p = 0.95f};
  const auto sdup = lda_generate(ctx, f.after, f.before, {p, p, longer}, 2.0f, sp, opt);
  const auto salone = lda_generate(ctx, f.after, f.before, {p}, 2.0f, sp, opt);
  BOOST_TEST(sdup.tokens[0] == salone.tokens[0]);
  BOOST_TEST(sdup.tokens[1] == lda_alone(f, p, 2.0f, sp, 8, 5, 1));
}

BOOST_DATA_TEST_CASE(eos_mode_stops_where_fixed_length_goes_on, bdata::make(families), family) {
  pair_fixture f(family);
  const auto fixed = lda_generate(ctx, f.after, f.before, prompts, 1.0f, greedy{}, fixed_length(8));
  auto opt = fixed_length(8);
  opt.stop_at_eos = true;
  opt.eos_ids = {fixed.tokens[0][2]};  // sequence 0 stops at its third token
  const auto eos = lda_generate(ctx, f.after, f.before, prompts, 1.0f, greedy{}, opt);
  BOOST_TEST(eos.stopped_at_eos[0]);
  for (std::size_t s = 0; s < prompts.size(); ++s) {
    const auto& all = fixed.tokens[s];
    const auto it = std::find(all.begin(), all.end(), opt.eos_ids[0]);
    const std::vector<int> want(all.begin(), it == all.end() ? it : it + 1);
    BOOST_TEST(eos.tokens[s] == want, family << " prompt " << s);
    BOOST_TEST(eos.stopped_at_eos[s] == (it != all.end()));
  }
  BOOST_TEST(eos.tokens[0].size() <= 3u);
}

BOOST_AUTO_TEST_CASE(vocabulary_mismatch_names_the_first_difference) {
  const auto gpt2 = text::tokenizer::from_file(cbtest::data_dir() + "/text/gpt2/tokenizer.json");
  BOOST_CHECK_NO_THROW(check_same_vocabulary(gpt2, gpt2));

  // Ids 300 and 301 swapped: the first difference is id 300, 'Ġf' vs 'Ġthe'.
  const auto swapped = text::tokenizer::from_file(edited_tokenizer([](json& j) {
    auto& v = j["model"]["vocab"];
    BOOST_REQUIRE(v["Ġf"] == 300 && v["Ġthe"] == 301);
    v["Ġf"] = 301;
    v["Ġthe"] = 300;
  }));
  try {
    check_same_vocabulary(gpt2, swapped);
    BOOST_FAIL("no error");
  } catch (const vocabulary_mismatch& e) {
    BOOST_TEST(e.first_id == 300);
    BOOST_TEST(e.token_a == "Ġf");
    BOOST_TEST(e.token_b == "Ġthe");
    const std::string what = e.what();
    BOOST_TEST(what.find("id 300") != std::string::npos, what);
    BOOST_TEST(what.find("'Ġf' vs 'Ġthe'") != std::string::npos, what);
  }

  // One extra added token: every shared id agrees, the sizes differ.
  const auto extra = text::tokenizer::from_file(edited_tokenizer([](json& j) {
    json t = j["added_tokens"][0];
    t["id"] = 1500;
    t["content"] = "<|extra|>";
    j["added_tokens"].push_back(t);
  }));
  try {
    check_same_vocabulary(gpt2, extra);
    BOOST_FAIL("no error");
  } catch (const vocabulary_mismatch& e) {
    BOOST_TEST(e.size_a == 1500u);
    BOOST_TEST(e.size_b == 1501u);
    BOOST_TEST(e.first_id == 1500);
    BOOST_TEST(std::string(e.what()).find("1500 vs 1501") != std::string::npos, e.what());
  }

  // Two real tokenizers of different families; the reported id is the first one that differs.
  const auto smol = text::tokenizer::from_file(cbtest::data_dir() + "/text/smollm2/tokenizer.json");
  int first = 0;
  while (gpt2.id_to_token(first) == smol.id_to_token(first)) ++first;
  try {
    check_same_vocabulary(smol, gpt2);
    BOOST_FAIL("no error");
  } catch (const vocabulary_mismatch& e) {
    BOOST_TEST(e.first_id == first);
  }

  // Model configs of different vocabulary sizes (97 vs 101) are refused before any step.
  pair_fixture g("gpt2");
  const auto dir = cbtest::tiny_model_dir("llama", 3);
  const auto llama = decoder_model<float>::load(dir);
  BOOST_CHECK_THROW(check_same_vocabulary(g.after.config, llama.config), vocabulary_mismatch);
  BOOST_CHECK_THROW(lda_generate(ctx, g.after, llama, {{1, 2}}, 1.0f, greedy{}, fixed_length(2)),
                    vocabulary_mismatch);
  std::filesystem::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(bad_settings_are_rejected) {
  pair_fixture f("llama");
  BOOST_CHECK_THROW(
      lda_generate(ctx, f.after, f.before, {{1, 2}}, std::nanf(""), greedy{}, fixed_length(2)),
      value_error);
  BOOST_CHECK_THROW(lda_generate(ctx, f.after, f.before, {{1, 2}}, 1.0f,
                                 lda_sampling{.top_p = 0.0f}, fixed_length(2)),
                    value_error);
  BOOST_CHECK_THROW(
      lda_generate(ctx, f.after, f.before, std::vector<std::vector<int>>{std::vector<int>{}}, 1.0f,
                   greedy{}, fixed_length(2)),
      value_error);
  // alpha 0 is the after model alone.
  const auto plain = generate(ctx, f.after, prompts, greedy{}, fixed_length(5));
  BOOST_TEST(
      lda_generate(ctx, f.after, f.before, prompts, 0.0f, greedy{}, fixed_length(5)).tokens ==
      plain.tokens);
}
