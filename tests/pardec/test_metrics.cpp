// Parallel-decoding metrics against the Python reference implementations
// (tools/make_pardec_metric_fixtures.py): answer-tag extraction, tag-gated EM, F1, lenient and the
// choice letter on 600 replies (official SQuAD logic); character BLEU-4 = nltk sentence_bleu with
// smoothing method 3 on 750 pairs; ROUGE-1/2/L = rouge-score on 600 jieba-segmented Chinese pairs
// and 300 English pairs (default tokeniser); plus hand cases that pin the formulas.
#define BOOST_TEST_MODULE pardec_metrics
#include <fstream>
#include <nlohmann/json.hpp>

#include "compare.hpp"
#include "crossbatch/eval/bleu.hpp"
#include "crossbatch/eval/rouge.hpp"
#include "crossbatch/eval/tagged_metrics.hpp"
#include "support.hpp"

using namespace crossbatch;

namespace {

nlohmann::json load(const std::string& name) {
  const std::string path = cbtest::data_dir() + "/pardec/" + name;
  std::ifstream f(path);
  BOOST_REQUIRE_MESSAGE(f, "cannot open " << path);
  return nlohmann::json::parse(f);
}

// Both sides compute in double with the same operations up to ordering: a few ulps.
constexpr double tol = 1e-12;

void check_rouge(const rouge_score& got, const nlohmann::json& want, const std::string& what) {
  cbtest::diff_stats st{tol, 0};
  st.add(got.precision, want[0].get<double>());
  st.add(got.recall, want[1].get<double>());
  st.add(got.fmeasure, want[2].get<double>());
  BOOST_TEST(st.ok(), what << ": " << st.summary());
}

}  // namespace

BOOST_AUTO_TEST_CASE(answer_tag_hand_cases) {
  auto a = extract_tagged_answer("x <answer> Paris </answer> <answer>Rome</answer>");
  BOOST_TEST(a.found);
  BOOST_TEST(a.text == "Paris");
  a = extract_tagged_answer("<ANSWER>multi\nline</Answer>");
  BOOST_TEST(a.found);
  BOOST_TEST(a.text == "multi\nline");
  a = extract_tagged_answer("  no tag here \n");
  BOOST_TEST(!a.found);
  BOOST_TEST(a.text == "no tag here");
  a = extract_tagged_answer("<answer>unclosed");
  BOOST_TEST(!a.found);
  // EM needs the tag; F1 and lenient do not.
  const auto s = score_reply("Paris", {"Paris"});
  BOOST_TEST(s.exact_match == 0.0);
  BOOST_TEST(s.f1 == 1.0);
  BOOST_TEST(s.lenient == 1.0);
  BOOST_TEST(score_reply("<answer>the Paris</answer>", {"Paris"}).exact_match == 1.0);
  // Lenient either way: prediction inside gold counts too.
  BOOST_TEST(score_reply("<answer>Paris</answer>", {"Paris, France"}).lenient == 1.0);
  BOOST_TEST(first_choice_letter("answer: (c) is B") == 'B');
  BOOST_TEST(choice_correct("<answer>D</answer>", "D"));
  BOOST_TEST(!choice_correct("none", "A"));
}

BOOST_AUTO_TEST_CASE(qa_metrics_match_python) {
  const auto cases = load("qa_metrics.json");
  BOOST_REQUIRE_GE(cases.size(), 500u);
  int found = 0, em = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const std::string reply = c["reply"];
    const auto tag = extract_tagged_answer(reply);
    BOOST_TEST(tag.text == c["text"].get<std::string>(), "case " << i << ": " << reply);
    BOOST_TEST(tag.found == c["found"].get<bool>(), "case " << i);
    const auto s = score_tagged(tag, c["golds"].get<std::vector<std::string>>());
    cbtest::diff_stats st{tol, 0};
    st.add(s.exact_match, c["exact_match"].get<double>());
    st.add(s.f1, c["f1"].get<double>());
    st.add(s.lenient, c["lenient"].get<double>());
    BOOST_TEST(st.ok(), "case " << i << " (" << reply << "): " << st.summary());
    const std::string letter = c["choice"];
    const char got = first_choice_letter(reply);
    BOOST_TEST((got == '\0' ? std::string() : std::string(1, got)) == letter, "case " << i);
    found += tag.found;
    em += s.exact_match > 0;
  }
  // The fixture exercises both sides of the gate.
  BOOST_TEST(found > 100);
  BOOST_TEST(found < int(cases.size()) - 100);
  BOOST_TEST(em > 50);
}

BOOST_AUTO_TEST_CASE(bleu_hand_cases) {
  // Identical strings of >= 4 characters: every precision 1, no brevity penalty.
  BOOST_TEST(char_bleu4("abcdef", "abcdef") == 1.0);
  // "ab" vs "abcd": p1 = 2/2, p2 = 1/1, p3 = 0 -> 1/(2*1), p4 = 0 -> 1/(4*1); bp = exp(1 - 4/2).
  const double want = std::exp(1.0 - 2.0) * std::exp(0.25 * (std::log(0.5) + std::log(0.25)));
  BOOST_TEST(cbtest::within(char_bleu4("abcd", "ab"), want, tol));
  BOOST_TEST(char_bleu4("abcd", "xyz") == 0.0);  // no unigram match
  BOOST_TEST(char_bleu4("abcd", "") == 0.0);
}

BOOST_AUTO_TEST_CASE(bleu_matches_nltk) {
  const auto cases = load("bleu.json");
  BOOST_REQUIRE_GE(cases.size(), 500u);
  cbtest::diff_stats st{tol, 0};
  int nonzero = 0;
  for (const auto& c : cases) {
    const double got = char_bleu4(c["reference"].get<std::string>(), c["prediction"].get<std::string>());
    st.add(got, c["bleu4"].get<double>());
    nonzero += c["bleu4"].get<double>() > 0 && c["bleu4"].get<double>() < 1;
  }
  BOOST_TEST(st.ok(), "BLEU-4 vs nltk: " << st.summary());
  BOOST_TEST(nonzero > 300);  // most pairs are partial matches, not 0 or 1
}

BOOST_AUTO_TEST_CASE(rouge_hand_cases) {
  const auto s = rouge_text("The cat sat", "the cat, the dog");
  // target {the, cat, sat}, prediction {the, cat, the, dog}: overlap 2.
  BOOST_TEST(cbtest::within(s.rouge1.precision, 0.5, tol));
  BOOST_TEST(cbtest::within(s.rouge1.recall, 2.0 / 3, tol));
  BOOST_TEST(cbtest::within(s.rouge2.precision, 1.0 / 3, tol));  // "the cat" of 3 bigrams
  BOOST_TEST(cbtest::within(s.rougeL.recall, 2.0 / 3, tol));
  BOOST_TEST(rouge_text("", "x").rougeL.fmeasure == 0.0);
  BOOST_TEST((rouge_tokenize("Hello, WORLD-42!") == std::vector<std::string>{"hello", "world", "42"}));
}

BOOST_AUTO_TEST_CASE(rouge_matches_rouge_score) {
  const auto cases = load("rouge.json");
  BOOST_REQUIRE_GE(cases.size(), 500u);
  int zh = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const bool is_zh = c["lang"] == "zh";
    const auto s = is_zh ? rouge_segmented(c["reference_segmented"].get<std::string>(),
                                           c["prediction_segmented"].get<std::string>())
                         : rouge_text(c["reference"].get<std::string>(), c["prediction"].get<std::string>());
    const std::string what = "pair " + std::to_string(i);
    check_rouge(s.rouge1, c["rouge1"], what + " rouge1");
    check_rouge(s.rouge2, c["rouge2"], what + " rouge2");
    check_rouge(s.rougeL, c["rougeL"], what + " rougeL");
    zh += is_zh;
  }
  BOOST_TEST(zh >= 500);
}
