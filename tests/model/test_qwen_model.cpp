// Quality of the second real model, Qwen2.5-Coder-0.5B-Instruct (qwen2 family: q/k/v biases, GQA 14/2,
// untied head), converted from its GGUF by scripts/get_model.sh qwen2.5-coder-0.5b-instruct. The
// reference is transformers' own GGUF loader on the same file (tools/make_qwen_reference.py,
// tests/data/qwen2.5-coder): per-token log-probabilities of a fixed code passage within float32
// tolerance, the perplexity below a justified bound that the model without its q/k/v biases
// misses, the GGUF chat template and tokenizer giving the reference prompt ids, and greedy chat
// answers token-identical to transformers.
//
// The converted model (2.4 GB of float32) is not fetched by scripts/test.sh: when
// models/qwen2.5-coder-0.5b-instruct is absent every case here is SKIPPED (Boost.Test precondition,
// reported with the reason), not passed. The tokenizer is checked in CI by tests/text/test_qwen_tokenizer.
#define BOOST_TEST_MODULE qwen_model
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <fstream>

#include "crossbatch/generate/generate.hpp"
#include "crossbatch/generate/score.hpp"
#include "crossbatch/text/chat_template.hpp"
#include "crossbatch/text/tokenizer.hpp"
#include "support.hpp"

using namespace crossbatch;
namespace utf = boost::unit_test;
namespace tt = boost::test_tools;

namespace {

const std::string model_dir = std::string(CROSSBATCH_SOURCE_DIR) + "/models/qwen2.5-coder-0.5b-instruct";
const std::string ref_dir = cbtest::data_dir() + "/qwen2.5-coder/";

// transformers (float32, eager) reaches perplexity 1.60 on this code passage (reference.json); the
// model with its q/k/v biases zeroed lands far above (the case below measures it), so 2.5 leaves
// room for float differences and catches a conversion or a forward pass that loses the biases.
constexpr double perplexity_bound = 2.5;

struct model_present {
  tt::assertion_result operator()(utf::test_unit_id) const {
    const bool present = std::filesystem::exists(model_dir + "/config.json");
    tt::assertion_result r(present);
    if (!r)
      r.message() << model_dir
                  << " is missing: run scripts/get_model.sh qwen2.5-coder-0.5b-instruct";
    static const bool said = [&] {  // ctest shows stderr of a failing test only: say it anyway
      if (!present) std::cerr << "SKIPPED: " << r.message().str() << "\n";
      return true;
    }();
    (void)said;
    return r;
  }
};

const decoder_model<float>& model() {
  static const auto m = decoder_model<float>::load(model_dir);
  return m;
}

std::vector<int> ids_of(const std::string& file) {
  const auto t = load_npy<std::int64_t>(file);
  return std::vector<int>(t.data(), t.data() + t.size());
}

}  // namespace

BOOST_AUTO_TEST_CASE(config_is_the_qwen2_family, *utf::precondition(model_present())) {
  const auto& c = model().config;
  BOOST_TEST((c.kind == family::qwen2));
  BOOST_TEST(c.qkv_bias);
  BOOST_TEST(!c.tie_word_embeddings);
  BOOST_TEST(c.num_layers == 24);
  BOOST_TEST(c.hidden_size == 896);
  BOOST_TEST(c.num_heads == 14);
  BOOST_TEST(c.num_kv_heads == 2);
  BOOST_TEST(c.vocab_size == 151936);
  BOOST_TEST(c.rope.theta == 1e6f);
}

BOOST_AUTO_TEST_CASE(passage_logprobs_match_transformers_gguf, *utf::precondition(model_present())) {
  context<cpu> ctx;  // one thread: ctest runs suites in parallel on few cores
  const auto tok = text::tokenizer::from_file(model_dir + "/tokenizer.json");
  std::ifstream f(ref_dir + "passage.txt", std::ios::binary);
  const std::string passage((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto ids = ids_of(ref_dir + "passage_ids.npy");
  const auto enc = tok.encode(passage, {.add_special_tokens = false});
  BOOST_TEST(std::vector<int>(enc.begin(), enc.end()) == ids, "passage ids");
  const auto ref = load_npy<float>(ref_dir + "passage_logprobs.npy");
  const auto lp = next_token_logprobs(ctx, model(), ids);
  BOOST_REQUIRE_EQUAL(lp.size(), std::size_t(ref.size()));
  tensor<float> got({index_t(lp.size())});
  std::copy(lp.begin(), lp.end(), got.data());
  BOOST_TEST_MESSAGE("max |log p - transformers-gguf| = " << cbtest::compare(lp, ref).max_abs
                                                          << ", perplexity " << perplexity(lp));
  cbtest::check_close<float>(got.view(), ref.view(), "passage log-probabilities");
  BOOST_TEST(perplexity(lp) < perplexity_bound);
}

BOOST_AUTO_TEST_CASE(without_qkv_biases_the_bound_fails, *utf::precondition(model_present())) {
  context<cpu> ctx;  // one thread: ctest runs suites in parallel on few cores
  auto broken = decoder_model<float>::load(model_dir);
  for (auto& L : broken.layers) std::fill_n(L.qkv_b.data(), L.qkv_b.size(), 0.f);
  const double ppl =
      perplexity(next_token_logprobs(ctx, broken, ids_of(ref_dir + "passage_ids.npy")));
  BOOST_TEST_MESSAGE("perplexity with the q/k/v biases zeroed: " << ppl);
  BOOST_TEST(ppl > perplexity_bound);
}

BOOST_AUTO_TEST_CASE(greedy_chat_answers, *utf::precondition(model_present())) {
  context<cpu> ctx;  // one thread: ctest runs suites in parallel on few cores
  const auto tok = text::tokenizer::from_file(model_dir + "/tokenizer.json");
  const auto tmpl = text::chat_template::from_tokenizer_config(model_dir);
  std::ifstream f(ref_dir + "chat_questions.json");
  const auto questions = json::parse(f);
  BOOST_REQUIRE(questions.size() >= 5);
  std::vector<std::vector<int>> prompts, refs;
  std::size_t longest = 0;
  for (std::size_t i = 0; i < questions.size(); ++i) {
    const std::string q = questions[i]["question"];
    // The GGUF's chat template (with its default system prompt) and our tokenizer give the
    // prompt ids transformers built.
    const std::string prompt = tmpl.render(std::vector<text::chat_message>{{"user", q}}, true);
    const auto enc = tok.encode(prompt, {.add_special_tokens = false});
    prompts.push_back(ids_of(ref_dir + "chat_" + std::to_string(i) + "_ids.npy"));
    BOOST_TEST(std::vector<int>(enc.begin(), enc.end()) == prompts.back(), "prompt ids of: " << q);
    refs.push_back(ids_of(ref_dir + "chat_" + std::to_string(i) + "_greedy.npy"));
    longest = std::max(longest, refs.back().size());
  }
  // All questions in one left-padded batch (batch invariance is tested elsewhere).
  generation_options opt;
  opt.max_new_tokens = static_cast<int>(longest);
  const auto r = generate(ctx, model(), prompts, greedy{}, opt);
  for (std::size_t i = 0; i < questions.size(); ++i) {
    const std::string q = questions[i]["question"];
    BOOST_TEST(r.tokens[i] == refs[i], "greedy tokens of: " << q);
    std::string answer =
        tok.decode(std::vector<std::int32_t>(r.tokens[i].begin(), r.tokens[i].end()));
    std::transform(answer.begin(), answer.end(), answer.begin(),
                   [](unsigned char ch) { return std::tolower(ch); });
    bool found = false;
    for (const auto& e : questions[i]["expect"])
      found |= answer.find(e.get<std::string>()) != std::string::npos;
    BOOST_TEST(found, q << " -> " << answer);
  }
}
