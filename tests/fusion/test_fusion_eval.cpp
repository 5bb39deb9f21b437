// Paraphrase fusion's evaluation side: the C++ lemmatiser and lemma-containment metric against
// spaCy (tests/data/fusion/lemma_pairs.jsonl, made by tools/make_fusion_lemmas.py with spaCy's
// tokenizer and lookup lemmatizer), the MyriadLAMA and WebQuestions readers on good and malformed
// input, and the reference's prompt format.
#define BOOST_TEST_MODULE fusion_eval
#include <boost/test/unit_test.hpp>
#include <fstream>

#include "crossbatch/eval/lemma.hpp"
#include "crossbatch/eval/paraphrase_data.hpp"
#include "support.hpp"

using namespace crossbatch;

namespace {

const english_lemmatizer& lemmatizer() {
  static const auto l =
      english_lemmatizer::load(cbtest::data_dir() + "/fusion/en_lemma_lookup.tsv",
                               cbtest::data_dir() + "/fusion/en_tokenizer_exceptions.tsv");
  return l;
}

std::string facts_dir() {
  return std::string(CROSSBATCH_SOURCE_DIR) + "/examples/paraphrase_fusion/data/facts";
}

// A scratch directory holding files name -> text.
std::string write_files(const std::string& name, const std::map<std::string, std::string>& files) {
  const auto dir = cbtest::scratch_dir(name);
  for (const auto& [file, text] : files) std::ofstream(dir / file) << text;
  return dir.string();
}

// The message of the format_error f throws ("" when it throws none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const format_error& e) {
    return e.what();
  }
  return "";
}

const std::string good_templates =
    R"j({"rel_uri": "P36", "name": "capital", "manual": ["The capital of [X] is [Y].", "[Y] is the capital of [X]."], "auto": ["[X]'s capital: [Y]."]})j"
    "\n";
const std::string good_fact =
    R"j({"uuid": "u1", "rel_uri": "P36", "sub_uri": "s", "sub_ent": ["France"], "obj_uri": "o", "obj_ent": ["Paris"], "split": "train"})j"
    "\n";

}  // namespace

BOOST_AUTO_TEST_CASE(lemmas_and_containment_agree_with_spacy) {
  std::ifstream in(cbtest::data_dir() + "/fusion/lemma_pairs.jsonl");
  BOOST_REQUIRE(in);
  int pairs = 0, token_agree = 0, lemma_agree = 0, verdict_agree = 0;
  std::string line;
  while (std::getline(in, line)) {
    const json j = json::parse(line);
    const auto pred = j["prediction"].get<std::string>();
    const auto tokens = lemmatizer().tokens(pred);
    const auto lemmas = lemmatizer().lemmas(pred);
    std::vector<std::vector<std::string>> answers;
    for (const auto& a : j["answers"]) answers.push_back(lemmatizer().lemmas(a.get<std::string>()));
    const bool ok_tokens = tokens == j["prediction_tokens"].get<std::vector<std::string>>();
    const bool ok_lemmas = lemmas == j["prediction_lemmas"].get<std::vector<std::string>>() &&
                           answers == j["answer_lemmas"].get<decltype(answers)>();
    const bool ok_verdict = lemma_containment(lemmas, answers) == j["correct"].get<bool>();
    BOOST_TEST(ok_tokens, "tokens of '" << pred << "' differ from spaCy's");
    BOOST_TEST(ok_lemmas, "lemmas of '" << pred << "' differ from spaCy's");
    BOOST_TEST(ok_verdict, "containment of '" << pred << "' differs from spaCy's");
    ++pairs;
    token_agree += ok_tokens;
    lemma_agree += ok_lemmas;
    verdict_agree += ok_verdict;
  }
  BOOST_TEST(pairs >= 500);
  BOOST_TEST_MESSAGE("spaCy agreement on " << pairs << " pairs: tokens " << token_agree
                                           << ", lemmas " << lemma_agree << ", verdicts "
                                           << verdict_agree);
}

BOOST_AUTO_TEST_CASE(containment_is_a_contiguous_lemma_subsequence) {
  const auto& l = lemmatizer();
  BOOST_TEST(lemma_containment(l.lemmas("The cities were Paris."), {l.lemmas("city")}));
  BOOST_TEST(lemma_containment(l.lemmas("It uses euros."), {l.lemmas("euro")}));
  BOOST_TEST(!lemma_containment(l.lemmas("New and York"), {l.lemmas("New York")}));
  BOOST_TEST(
      lemma_containment(l.lemmas("in new york."), {l.lemmas("Boston"), l.lemmas("New York")}));
  BOOST_TEST(!lemma_containment(l.lemmas("Parisian"), {l.lemmas("Paris")}));
  BOOST_TEST(!lemma_containment(l.lemmas("anything"), {{}}));  // an empty answer never matches
  BOOST_CHECK_THROW(english_lemmatizer::load("/nonexistent.tsv", "/nonexistent.tsv"), io_error);
  const auto dir = write_files("lemma_bad", {{"l.tsv", "a\tb\tc\n"}, {"e.tsv", "x\ty\n"}});
  BOOST_TEST(error_of([&] {
               english_lemmatizer::load(dir + "/l.tsv", dir + "/e.tsv");
             }).find("l.tsv:1") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(the_generated_myriadlama_data_reads_back) {
  const auto d = read_myriadlama(facts_dir());
  BOOST_TEST(d.relations.size() == 5u);
  for (const auto& [uri, r] : d.relations) BOOST_TEST(r.manual.size() >= 5u, uri);
  BOOST_TEST(d.facts.size() == 221u);
  BOOST_TEST(d.split("train").size() == 20u);
  BOOST_TEST(d.split("validation").size() + d.split("test").size() == 201u);
  for (const auto& f : d.facts)
    for (const auto& o : f.obj_ent) BOOST_TEST(o.find(' ') == std::string::npos, o);
}

BOOST_AUTO_TEST_CASE(myriadlama_prompts_follow_the_reference_format) {
  const auto dir = write_files(
      "myriad_good",
      {{"templates.jsonl", good_templates},
       {"facts.jsonl",
        good_fact +
            R"j({"uuid": "u2", "rel_uri": "P36", "sub_ent": "Japan", "obj_ent": ["Tokyo", "Edo"], "split": "test"})j"
            "\n"}});
  const auto d = read_myriadlama(dir);
  const auto q = myriadlama_question(d, d.facts[1]);
  BOOST_TEST(q.paraphrases == (std::vector<std::string>{"The capital of Japan is [MASK].",
                                                        "[MASK] is the capital of Japan.",
                                                        "Japan's capital: [MASK]."}));
  BOOST_TEST(q.answers == (std::vector<std::string>{"Tokyo", "Edo"}));
  BOOST_TEST(
      qa_prompt(myriadlama_instruction, myriadlama_shots(d, "P36", 1, 3), q.paraphrases[1]) ==
      "Predict the [MASK] in each sentence in one word.\n\n"
      "Q: [MASK] is the capital of France.\nA: Paris\n\n"
      "Q: [MASK] is the capital of Japan.\nA:");
}

BOOST_AUTO_TEST_CASE(malformed_myriadlama_names_file_line_and_field) {
  const auto check = [](const std::string& templates, const std::string& facts,
                        const std::string& want) {
    const auto dir =
        write_files("myriad_bad", {{"templates.jsonl", templates}, {"facts.jsonl", facts}});
    const auto msg = error_of([&] { read_myriadlama(dir); });
    BOOST_TEST(msg.find(want) != std::string::npos, "'" << msg << "' lacks '" << want << "'");
  };
  check(good_templates, good_fact + "{not json\n", "facts.jsonl:2: not valid JSON");
  check(good_templates, "[1, 2]\n", "facts.jsonl:1: a record must be a JSON object");
  check(good_templates,
        R"j({"uuid": "u", "rel_uri": "P36", "sub_ent": ["A"]})j"
        "\n",
        "facts.jsonl:1: field 'obj_ent' is missing");
  check(good_templates,
        R"j({"uuid": "u", "rel_uri": "P36", "sub_ent": [], "obj_ent": ["B"]})j"
        "\n",
        "facts.jsonl:1: field 'sub_ent' must be a non-empty array");
  check(good_templates,
        R"j({"uuid": "u", "rel_uri": "P36", "sub_ent": ["A", 3], "obj_ent": ["B"]})j"
        "\n",
        "field 'sub_ent'[1] must be a non-empty string");
  check(good_templates,
        R"j({"uuid": "u", "rel_uri": "P99", "sub_ent": ["A"], "obj_ent": ["B"]})j"
        "\n",
        "facts.jsonl:1: relation 'P99' has no templates");
  check(good_templates, good_fact + good_fact, "facts.jsonl:2: uuid 'u1' repeats");
  check(good_templates,
        R"j({"uuid": "u", "rel_uri": "P36", "sub_ent": ["A"], "obj_ent": ["B"], "split": "dev"})j"
        "\n",
        "field 'split' is 'dev'");
  check(R"j({"rel_uri": "P36", "manual": ["[X] and [X] is [Y]"]})j"
        "\n",
        good_fact,
        "templates.jsonl:1: template '[X] and [X] is [Y]' needs one [X] and one [Y] (has 2 and 1)");
  check(R"j({"rel_uri": "P36"})j"
        "\n",
        good_fact, "templates.jsonl:1: field 'manual' is missing");
  check(good_templates + good_templates, good_fact,
        "templates.jsonl:2: relation 'P36' is listed twice");
  check(good_templates, "\n", "facts.jsonl: no facts");
  BOOST_CHECK_THROW(read_myriadlama("/nonexistent"), io_error);
}

BOOST_AUTO_TEST_CASE(webquestions_reads_answers_and_paraphrases) {
  const auto dir = write_files(
      "webq",
      {{"good.json",
        R"j([{"url": "http://x/a", "targetValue": "(list (description \"Jazmine Sullivan\") (description Paris))", "utterance": "who?", "paraphrases": ["who is it?"]},
                    {"targetValue": "(list (description Jamaica))", "utterance": "where?"}])j"},
       {"no_desc.json", R"j([{"utterance": "q", "targetValue": "(list)"}])j"},
       {"quote.json", R"j([{"utterance": "q", "targetValue": "(list (description \"a)"}])j"},
       {"no_utt.json", R"j([{"targetValue": "(list (description a))"}])j"},
       {"object.json", R"j({"utterance": "q"})j"},
       {"bad_para.json",
        R"j([{"utterance": "q", "targetValue": "(description a)", "paraphrases": [""]}])j"}});
  const auto qs = read_webquestions(dir + "/good.json");
  BOOST_REQUIRE(qs.size() == 2u);
  BOOST_TEST(qs[0].answers == (std::vector<std::string>{"Jazmine Sullivan", "Paris"}));
  BOOST_TEST(qs[0].paraphrases == (std::vector<std::string>{"who?", "who is it?"}));
  BOOST_TEST(qs[1].answers == (std::vector<std::string>{"Jamaica"}));
  const auto msg = [&](const std::string& f) {
    return error_of([&] { read_webquestions(dir + "/" + f); });
  };
  BOOST_TEST(msg("no_desc.json").find("record 0: targetValue '(list)' holds no (description") !=
             std::string::npos);
  BOOST_TEST(msg("quote.json").find("record 0: targetValue has an unclosed quote") !=
             std::string::npos);
  BOOST_TEST(msg("no_utt.json").find("record 0: field 'utterance' is missing") !=
             std::string::npos);
  BOOST_TEST(msg("object.json").find("want a JSON array") != std::string::npos);
  BOOST_TEST(msg("bad_para.json").find("field 'paraphrases'[0] must be a non-empty string") !=
             std::string::npos);
}
