// SQuAD metrics against the official scripts: answer normalisation (hand cases, Python's output on
// fixtures and a sweep over every code point), EM/F1 per question and in total under the v1.1 and
// v2.0 rules, lenient match, multiple-choice accuracy, and the UTF-8 helpers underneath.
#define BOOST_TEST_MODULE eval_squad_metrics
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>

#include "crossbatch/eval/accuracy.hpp"
#include "crossbatch/eval/squad_eval.hpp"
#include "support.hpp"

using namespace crossbatch;

namespace {

std::string eval_data(const std::string& name) { return cbtest::data_dir() + "/eval/" + name; }

nlohmann::json load_json(const std::string& path) {
  std::ifstream f(path);
  BOOST_REQUIRE_MESSAGE(f, "cannot open " << path);
  return nlohmann::json::parse(f);
}

std::string fnv1a64(const std::string& bytes) {
  std::uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char b : bytes) {
    h ^= b;
    h *= 0x100000001B3ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

// Per question: exact equality with the official numbers; totals to 1e-9.
void check_against_official(const squad_dataset& ds, const prediction_map& predictions,
                            squad_rules rules, const std::string& expected_file) {
  const auto expected = load_json(eval_data(expected_file));
  const auto ev = evaluate_squad(ds, predictions, rules);
  BOOST_TEST(ev.total == expected["total"].get<std::size_t>());
  BOOST_TEST(ev.questions.size() == expected["questions"].size());
  for (const auto& q : ev.questions) {
    BOOST_TEST_CONTEXT(expected_file << ": question " << q.id) {
      const auto& e = expected["questions"].at(q.id);
      BOOST_TEST(q.scores.exact_match == e["exact_match"].get<double>());
      BOOST_TEST(q.scores.f1 == e["f1"].get<double>());
    }
  }
  BOOST_TEST(std::abs(ev.exact_match - expected["exact_match"].get<double>()) <= 1e-9);
  BOOST_TEST(std::abs(ev.f1 - expected["f1"].get<double>()) <= 1e-9);
}

}  // namespace

BOOST_AUTO_TEST_CASE(normalize_hand_cases) {
  BOOST_TEST(normalize_answer("The Cat!") == "cat");
  BOOST_TEST(normalize_answer("a an the") == "");
  BOOST_TEST(normalize_answer("  Theatre  an-apple ") == "theatre anapple");
  BOOST_TEST(normalize_answer("U.S.A.") == "usa");
  BOOST_TEST(normalize_answer("New\tYork\n") == "new york");
  BOOST_TEST(normalize_answer("the_end") == "theend");  // '_' goes with the punctuation first
  BOOST_TEST(normalize_answer("\xC3\x89"
                              "cole") ==
             "\xC3\xA9"
             "cole");                                        // École
  BOOST_TEST(normalize_answer("a\xC3\xA9") == "a\xC3\xA9");  // é is a word character: "a" stays
  BOOST_TEST(normalize_answer("New\xC2\xA0York") == "new york");  // no-break space splits
  BOOST_TEST(normalize_answer("New\xE2\x80\x8BYork") == "new\xE2\x80\x8Byork");  // ZWSP does not
  // Final sigma: ΟΔΥΣΣΕΥΣ -> οδυσσευς.
  BOOST_TEST(normalize_answer("\xCE\x9F\xCE\x94\xCE\xA5\xCE\xA3\xCE\xA3\xCE\x95\xCE\xA5\xCE\xA3") ==
             "\xCE\xBF\xCE\xB4\xCF\x85\xCF\x83\xCF\x83\xCE\xB5\xCF\x85\xCF\x82");
  // İ lower-cases to i + U+0307 (two code points).
  BOOST_TEST(normalize_answer("\xC4\xB0") == "i\xCC\x87");
  // Invalid UTF-8 bytes pass through unchanged (as non-word characters: "a" before them goes).
  BOOST_TEST(normalize_answer("A\xFF\xFE The b\xFF") == "\xFF\xFE b\xFF");
}

BOOST_AUTO_TEST_CASE(normalize_matches_python_cases) {
  const auto cases = load_json(eval_data("normalize_cases.json"));
  BOOST_TEST(cases.size() > 100u);
  for (const auto& c : cases) {
    const auto input = c[0].get<std::string>();
    BOOST_TEST(normalize_answer(input) == c[1].get<std::string>(), "input: " << input);
  }
}

// Every code point in the pieces "a{c}Σ AΣ{c}B " (lower-casing, \w next to an article, both
// sides of the Final_Sigma rule), hashed per block, against Python's normalize_answer.
BOOST_AUTO_TEST_CASE(normalize_sweep_matches_python) {
  const auto sweep = load_json(eval_data("normalize_sweep.json"));
  const char32_t block = sweep["block"].get<char32_t>();
  int blocks = 0;
  for (const auto& [start_hex, hash] : sweep["hashes"].items()) {
    const char32_t start = static_cast<char32_t>(std::stoul(start_hex, nullptr, 16));
    std::u32string text;
    for (char32_t c = start; c < start + block; ++c) {
      if (c >= 0xD800 && c <= 0xDFFF) continue;
      text += U'a';
      text += c;
      text += U"\u03A3 A\u03A3";
      text += c;
      text += U"B ";
    }
    const std::string got = fnv1a64(normalize_answer(unicode::encode_utf8(text)));
    BOOST_TEST(got == hash.get<std::string>(), "block U+" << start_hex);
    ++blocks;
  }
  BOOST_TEST(blocks == 0x110000 / 4096);
}

BOOST_AUTO_TEST_CASE(official_v1_per_question_and_total) {
  const auto ds = read_squad(eval_data("squad_metric_dataset.json"));
  const auto predictions = read_predictions(eval_data("squad_metric_predictions.json"));
  BOOST_TEST(ds.question_count() >= 40u);
  BOOST_TEST((rules_for(ds) == squad_rules::v1_1));
  check_against_official(ds, predictions, squad_rules::v1_1, "squad_metric_expected_v1.json");
  const auto ev = evaluate_squad(ds, predictions);
  BOOST_TEST(ev.answered == ev.total - 1);  // one question is left unanswered on purpose
}

BOOST_AUTO_TEST_CASE(official_v2_rules_on_v1_file) {
  const auto ds = read_squad(eval_data("squad_metric_dataset.json"));
  const auto predictions = read_predictions(eval_data("squad_metric_predictions.json"));
  check_against_official(ds, predictions, squad_rules::v2_0, "squad_metric_expected_as_v2.json");
}

BOOST_AUTO_TEST_CASE(official_v2_unanswerable) {
  const auto ds = read_squad(eval_data("squad_v2_dataset.json"));
  const auto predictions = read_predictions(eval_data("squad_v2_predictions.json"));
  BOOST_TEST((rules_for(ds) == squad_rules::v2_0));
  check_against_official(ds, predictions, squad_rules::v2_0, "squad_v2_expected.json");
  const auto ev = evaluate_squad(ds, predictions);
  BOOST_TEST(ev.no_ans_total == 4u);
  BOOST_TEST(ev.has_ans_total == 8u);
  // v2_impossible_empty_pred and v2_impossible_articles_pred are right, the other two are not.
  BOOST_TEST(ev.no_ans_exact == 50.0);
  // v1.1 rules cannot score a question without gold answers, as the official script cannot.
  BOOST_CHECK_THROW(evaluate_squad(ds, predictions, squad_rules::v1_1), value_error);
}

BOOST_AUTO_TEST_CASE(f1_counter_logic_and_empty_rules) {
  // Counter intersection: min of the counts of each shared token.
  BOOST_TEST(f1_score("new york york", "new new york") == 2.0 / 3.0);
  BOOST_TEST(f1_score("Paris Paris Paris", "Paris") == 0.5);
  BOOST_TEST(f1_score("the panthers of carolina", "Carolina Panthers") == 0.8);
  BOOST_TEST(f1_score("", "Rollo") == 0.0);
  // Empty against empty: 0 under v1.1, 1 under v2.0; exact match says 1 under both.
  BOOST_TEST(f1_score("", "The", squad_rules::v1_1) == 0.0);
  BOOST_TEST(f1_score("", "The", squad_rules::v2_0) == 1.0);
  BOOST_TEST(f1_score("x", "", squad_rules::v2_0) == 0.0);
  BOOST_TEST(exact_match("", "The"));
  BOOST_CHECK_THROW(score_answer("x", {}, squad_rules::v1_1), value_error);
  const auto s = score_answer("", {}, squad_rules::v2_0);
  BOOST_TEST(s.exact_match == 1.0);
  BOOST_TEST(s.f1 == 1.0);
  // Max over gold answers, each metric on its own.
  const auto m = score_answer("Denver", {"Denver Broncos", "Broncos", "Denver"});
  BOOST_TEST(m.exact_match == 1.0);
  BOOST_TEST(m.f1 == 1.0);
  BOOST_TEST(mean_percent({1.0, 0.0, 0.5, 0.5}) == 50.0);
  BOOST_TEST(mean_percent({}) == 0.0);
}

BOOST_AUTO_TEST_CASE(lenient_containment) {
  BOOST_TEST(lenient_match("It was Rollo, the Viking.", "Rollo"));
  BOOST_TEST(!exact_match("It was Rollo, the Viking.", "Rollo"));
  BOOST_TEST(lenient_match("The party", "art"));  // character containment, not whole words
  BOOST_TEST(!lenient_match("the Broncos", "Denver Broncos"));
  BOOST_TEST(lenient_match("the Broncos", "Denver Broncos", lenient_mode::either_contains));
  BOOST_TEST(!lenient_match("", "Rollo", lenient_mode::either_contains));  // "" is in everything
  BOOST_TEST(lenient_match("", "The"));                                    // both normalise to ""
  BOOST_TEST(!lenient_match("Rollo", "The"));
  const auto ds = read_squad(eval_data("squad_metric_dataset.json"));
  const auto predictions = read_predictions(eval_data("squad_metric_predictions.json"));
  const auto ev = evaluate_squad(ds, predictions, squad_rules::v1_1);
  for (const auto& q : ev.questions)  // containing an exact match, lenient is at least EM
    BOOST_TEST(q.scores.lenient >= q.scores.exact_match, q.id);
  BOOST_TEST(ev.lenient > ev.exact_match);
}

BOOST_AUTO_TEST_CASE(multiple_choice_accuracy) {
  BOOST_TEST(extract_choices("B") == "B");
  BOOST_TEST(extract_choices("Answer: DB.") == "");  // letters out of order read as a word
  BOOST_TEST(extract_choices("Answer: BD.") == "BD");
  BOOST_TEST(extract_choices("(C) because ...") == "C");
  BOOST_TEST(extract_choices("BAD idea, so E") == "E");
  BOOST_TEST(extract_choices("none of them") == "");
  BOOST_TEST(choice_match("The answer is ACD", "DCA"));
  BOOST_TEST(!choice_match("The answer is AC", "ACD"));
  BOOST_TEST(!choice_match("no idea", ""));
  BOOST_TEST(accuracy_percent({true, false, true, true}) == 75.0);
  BOOST_TEST(accuracy_percent({}) == 0.0);
}

BOOST_AUTO_TEST_CASE(utf8_helpers) {
  const std::string s = "Zo\xC3\xAB \xF0\x9F\x8E\x89 \xE5\x8C\x97!";  // Zoë 🎉 北!
  const auto offsets = unicode::code_point_offsets(s);
  BOOST_TEST(offsets.size() == 9u);  // 8 code points + end
  BOOST_TEST(offsets[3] == 4u);
  BOOST_TEST(offsets[5] == 9u);
  BOOST_TEST(offsets.back() == s.size());
  BOOST_TEST(unicode::encode_utf8(unicode::decode_utf8(s)) == s);
  // Invalid sequences (lone continuation, overlong, surrogate, truncated) round-trip byte-exact.
  const std::string bad =
      "a\x80"
      "b\xC0\xAF"
      "c\xED\xA0\x80"
      "d\xF0\x9F";
  const auto cps = unicode::decode_utf8(bad);
  BOOST_TEST(cps.size() == bad.size());  // every byte decodes alone
  BOOST_TEST(unicode::encode_utf8(cps) == bad);
  BOOST_TEST((unicode::lower_simple(U'\u0100') == U'\u0101'));
  BOOST_TEST((unicode::lower_simple(U'\u0101') == U'\u0101'));
  BOOST_TEST((unicode::lower_simple(U'\U00010400') == U'\U00010428'));
  BOOST_TEST(unicode::is_space(U'\u3000'));
  BOOST_TEST(!unicode::is_space(U'\u200B'));
  BOOST_TEST(unicode::is_word(U'\u0663'));  // ARABIC-INDIC DIGIT THREE
  BOOST_TEST(!unicode::is_word(U'\u0301'));
}
