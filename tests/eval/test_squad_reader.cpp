// SQuAD reader: groups and fields of v1.1/v2.0 files, code-point answer offsets against UTF-8
// contexts, recorded offset mismatches, extension and extra fields, and malformed files, each of
// which must raise a typed error naming the file and the JSON path (plus a mutation fuzz).
#define BOOST_TEST_MODULE eval_squad_reader
#include <fstream>
#include <random>

#include "crossbatch/eval/squad.hpp"
#include "crossbatch/eval/squad_eval.hpp"
#include "support.hpp"

using namespace crossbatch;

namespace {

std::string eval_data(const std::string& name) { return cbtest::data_dir() + "/eval/" + name; }

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

std::string write_file(const std::string& name, const std::string& text) {
  static const auto dir = cbtest::scratch_dir("squad_reader");
  const auto path = (dir / name).string();
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

// Reading `text` as a file must throw format_error whose message names the file and `where`.
void expect_format_error(const std::string& name, const std::string& text,
                         const std::string& where) {
  const auto path = write_file(name, text);
  BOOST_TEST_CONTEXT(name) {
    try {
      read_squad(path);
      BOOST_ERROR("no error for " << name);
    } catch (const format_error& e) {
      const std::string msg = e.what();
      BOOST_TEST(msg.find(path) != std::string::npos, "message lacks the file: " << msg);
      BOOST_TEST(msg.find(where) != std::string::npos, "message lacks '" << where << "': " << msg);
    }
  }
}

// A well-formed single-question file with `qa` as the question object.
std::string with_qa(const std::string& qa) {
  return R"({"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": "Rollo led.", "qas": [)" +
         qa + "]}]}]}";
}

}  // namespace

BOOST_AUTO_TEST_CASE(reads_groups_of_v1_file) {
  const auto ds = read_squad(eval_data("squad_metric_dataset.json"));
  BOOST_TEST(ds.version == "1.1");
  BOOST_TEST(!ds.is_v2());
  BOOST_TEST(ds.articles.size() == 4u);
  const auto groups = ds.groups();
  BOOST_TEST(groups.size() == 4u);
  BOOST_TEST(groups[1]->title == "Super Bowl");
  BOOST_TEST(groups[1]->qas.size() == 15u);
  BOOST_TEST(groups[1]->path == "data[1].paragraphs[0]");
  BOOST_TEST(groups[1]->qas[4].path == "data[1].paragraphs[0].qas[4]");
  BOOST_TEST(ds.question_count() == 56u);
  BOOST_TEST(ds.mismatches.empty());
  const auto* q = ds.find_question("multi_gold_exact");
  BOOST_REQUIRE(q);
  BOOST_TEST(q->answer_texts() ==
                 (std::vector<std::string>{"Denver Broncos", "Broncos", "The Denver Broncos"}),
             boost::test_tools::per_element());
  BOOST_TEST(ds.find_question("no such id") == nullptr);
  // Every answer's byte span holds its text.
  for (const auto* g : groups)
    for (const auto& qa : g->qas)
      for (const auto& a : qa.answers) {
        BOOST_TEST(a.offset_ok);
        BOOST_TEST(g->context.substr(a.byte_start, a.byte_end - a.byte_start) == a.text);
      }
}

BOOST_AUTO_TEST_CASE(code_point_offsets_mismatches_and_extras) {
  const auto ds = read_squad(eval_data("squad_offsets.json"));
  BOOST_TEST(ds.is_v2());
  BOOST_TEST(ds.extra["generator"] == "hand-written reader fixture");
  BOOST_TEST(ds.articles[0].extra["source"] == "tests");
  const auto& p = ds.articles[0].paragraphs[0];
  BOOST_TEST(p.extra["topic"] == "travel");
  BOOST_TEST(!p.extra.contains("context_parts"));  // typed fields are not repeated in extra

  // "José" starts at code point 8 but byte 9 (ë takes two bytes).
  const auto* jose = p.find("q_ascii_after_unicode");
  BOOST_REQUIRE(jose);
  BOOST_TEST(jose->answers[0].start == 8);
  BOOST_TEST(jose->answers[0].offset_ok);
  BOOST_TEST(jose->answers[0].byte_start == 9u);
  BOOST_TEST(jose->answers[0].byte_end == 9u + 5u);
  BOOST_TEST(jose->paraphrases.size() == 3u);
  BOOST_TEST(jose->depends_on.empty());
  BOOST_TEST((jose->visible_part == 0));
  BOOST_TEST(jose->extra["difficulty"] == "easy");
  BOOST_TEST(!jose->extra.contains("paraphrases"));

  const auto* dawn = p.find("q_after_emoji");  // after a 4-byte emoji
  BOOST_TEST(dawn->answers.size() == 2u);
  for (const auto& a : dawn->answers) {
    BOOST_TEST(a.offset_ok);
    BOOST_TEST(p.context.substr(a.byte_start, a.byte_end - a.byte_start) == a.text);
  }
  BOOST_TEST(dawn->depends_on == std::vector<std::string>{"q_ascii_after_unicode"},
             boost::test_tools::per_element());
  BOOST_TEST((dawn->visible_part == 1));
  BOOST_TEST(p.find("q_cjk")->answers[0].offset_ok);
  BOOST_TEST(!p.find("q_cjk")->visible_part.has_value());

  BOOST_TEST(p.context_parts.size() == 2u);
  for (const auto& part : p.context_parts) {
    BOOST_TEST(part.offset_ok);
    BOOST_TEST(p.context.substr(part.byte_start, part.byte_end - part.byte_start) == part.text);
  }

  const auto* impossible = p.find("q_impossible");
  BOOST_TEST(impossible->is_impossible);
  BOOST_TEST(impossible->answers.empty());
  BOOST_TEST(impossible->plausible_answers.size() == 2u);

  // Mismatches are recorded, not thrown: off by one, a byte offset, out of range, negative, and a
  // plausible answer whose text differs from the context ("Zoe" for "Zoë").
  std::vector<std::string> paths;
  for (const auto& m : ds.mismatches) paths.push_back(m.path);
  const std::vector<std::string> expected = {
      "data[0].paragraphs[0].qas[3].answers[0]", "data[0].paragraphs[0].qas[4].answers[0]",
      "data[0].paragraphs[0].qas[5].answers[0]", "data[0].paragraphs[0].qas[6].answers[0]",
      "data[0].paragraphs[0].qas[7].plausible_answers[1]"};
  BOOST_TEST(paths == expected, boost::test_tools::per_element());
  BOOST_TEST(ds.mismatches[0].question_id == "q_off_by_one");
  BOOST_TEST(ds.mismatches[0].found == "álaga ");
  BOOST_TEST(!p.find("q_off_by_one")->answers[0].offset_ok);
  BOOST_TEST(p.find("q_off_by_one")->answers[1].offset_ok);
  BOOST_TEST(ds.mismatches[2].start == 1000);
  BOOST_TEST(ds.mismatches[2].found == "");
  BOOST_TEST(ds.mismatches[4].found == "Zoë");
}

BOOST_AUTO_TEST_CASE(parse_from_text_and_json) {
  const auto ds = parse_squad_text(with_qa(R"({"id": "a", "question": "Who?",
      "answers": [{"text": "Rollo", "answer_start": 0}]})"),
                                   "inline");
  BOOST_TEST(ds.question_count() == 1u);
  BOOST_TEST(ds.articles[0].paragraphs[0].qas[0].answers[0].offset_ok);
  const auto j = nlohmann::json::parse(read_text(eval_data("squad_v2_dataset.json")));
  BOOST_TEST(parse_squad(j, "v2").question_count() == 12u);
}

BOOST_AUTO_TEST_CASE(malformed_files_name_file_and_path) {
  expect_format_error("not_json.json", "this is not JSON", "not valid JSON");
  expect_format_error("empty.json", "", "not valid JSON");
  expect_format_error("truncated.json", read_text(eval_data("squad_offsets.json")).substr(0, 300),
                      "not valid JSON");
  expect_format_error("bad_utf8.json", "{\"data\": [], \"version\": \"1\xFF\"}", "not valid JSON");
  expect_format_error("root_array.json", "[]", "(root): expected an object, got array");
  expect_format_error("missing_data.json", R"({"version": "1.1"})", "data: missing");
  expect_format_error("data_object.json", R"({"data": {}})", "data: expected an array, got object");
  expect_format_error("article_number.json", R"({"data": [1]})", "data[0]: expected an object");
  expect_format_error("title_number.json", R"({"data": [{"title": 3, "paragraphs": []}]})",
                      "data[0].title: expected a string, got number");
  expect_format_error("no_paragraphs.json", R"({"data": [{"title": "t"}]})",
                      "data[0].paragraphs: missing");
  expect_format_error("context_number.json",
                      R"({"data": [{"title": "t", "paragraphs": [{"context": 5, "qas": []}]}]})",
                      "data[0].paragraphs[0].context: expected a string, got number");
  expect_format_error("no_qas.json",
                      R"({"data": [{"title": "t", "paragraphs": [{"context": "c"}]}]})",
                      "data[0].paragraphs[0].qas: missing");
  // The wrong type four articles and three questions deep.
  std::string deep = R"({"version": "1.1", "data": [)";
  for (int a = 0; a < 4; ++a) {
    deep += std::string(a ? "," : "") +
            R"({"title": "t", "paragraphs": [{"context": "Rollo led.", "qas": [)";
    for (int q = 0; q < 3; ++q) {
      const bool bad = a == 3 && q == 2;
      deep += std::string(q ? "," : "") + R"({"id": ")" + std::to_string(a) + "_" +
              std::to_string(q) + R"(", "question": "Who?", "answers": )" +
              (bad ? R"("Rollo")" : R"([{"text": "Rollo", "answer_start": 0}])") + "}";
    }
    deep += "]}]}";
  }
  deep += "]}";
  expect_format_error("answers_string.json", deep,
                      "data[3].paragraphs[0].qas[2].answers: expected an array, got string");
  expect_format_error(
      "answer_start_string.json",
      with_qa(
          R"({"id": "a", "question": "q", "answers": [{"text": "Rollo", "answer_start": "0"}]})"),
      "data[0].paragraphs[0].qas[0].answers[0].answer_start: expected an integer, got string");
  expect_format_error(
      "answer_start_float.json",
      with_qa(
          R"({"id": "a", "question": "q", "answers": [{"text": "Rollo", "answer_start": 0.5}]})"),
      "qas[0].answers[0].answer_start: expected an integer, got number");
  expect_format_error("answer_no_text.json",
                      with_qa(R"({"id": "a", "question": "q", "answers": [{"answer_start": 0}]})"),
                      "qas[0].answers[0].text: missing");
  expect_format_error("answer_not_object.json",
                      with_qa(R"({"id": "a", "question": "q", "answers": ["Rollo"]})"),
                      "qas[0].answers[0]: expected an object, got string");
  expect_format_error("no_answers.json", with_qa(R"({"id": "a", "question": "q"})"),
                      "data[0].paragraphs[0].qas[0].answers: missing");
  expect_format_error("id_number.json", with_qa(R"({"id": 7, "question": "q", "answers": []})"),
                      "qas[0].id: expected a string, got number");
  expect_format_error("no_question.json", with_qa(R"({"id": "a", "answers": []})"),
                      "qas[0].question: missing");
  expect_format_error("duplicate_id.json", with_qa(R"({"id": "a", "question": "q", "answers": []},
                                 {"id": "a", "question": "r", "answers": []})"),
                      "qas[1].id: 'a' repeats the id of data[0].paragraphs[0].qas[0]");
  expect_format_error(
      "impossible_string.json",
      with_qa(R"({"id": "a", "question": "q", "answers": [], "is_impossible": "yes"})"),
      "qas[0].is_impossible: expected a boolean, got string");
  expect_format_error(
      "paraphrase_number.json",
      with_qa(R"({"id": "a", "question": "q", "answers": [], "paraphrases": ["p", 2]})"),
      "qas[0].paraphrases[1]: expected a string, got number");
  expect_format_error("depends_on_string.json",
                      with_qa(R"({"id": "a", "question": "q", "answers": [], "depends_on": "b"})"),
                      "qas[0].depends_on: expected an array, got string");
  expect_format_error(
      "visible_part_no_parts.json",
      with_qa(R"({"id": "a", "question": "q", "answers": [], "visible_part": 0})"),
      "qas[0].visible_part: part 0 out of range: the paragraph has 0 context_parts");
  expect_format_error(
      "context_part_start.json",
      R"({"data": [{"title": "t", "paragraphs": [{"context": "c", "qas": [], "context_parts": [{"text": "c", "start": null}]}]}]})",
      "data[0].paragraphs[0].context_parts[0].start: expected an integer, got null");
  expect_format_error("version_number.json", R"({"version": 1.1, "data": []})",
                      "version: expected a string, got number");
  BOOST_CHECK_THROW(read_squad(cbtest::data_dir() + "/eval/does_not_exist.json"), io_error);
}

BOOST_AUTO_TEST_CASE(malformed_predictions) {
  const auto bad_value = write_file("pred_bad.json", R"({"q1": "Rollo", "q2": 3})");
  BOOST_CHECK_EXCEPTION(read_predictions(bad_value), format_error, [&](const format_error& e) {
    const std::string m = e.what();
    return m.find(bad_value) != std::string::npos &&
           m.find("q2: expected a string") != std::string::npos;
  });
  BOOST_CHECK_THROW(read_predictions(write_file("pred_list.json", R"(["Rollo"])")), format_error);
  BOOST_CHECK_THROW(read_predictions(write_file("pred_trunc.json", R"({"q1": "Ro)")), format_error);
  BOOST_CHECK_THROW(read_predictions(cbtest::data_dir() + "/eval/nope.json"), io_error);
}

// Random byte edits of a valid file: the reader returns or throws crossbatch::format_error, nothing
// else (no nlohmann exception, no crash).
BOOST_AUTO_TEST_CASE(mutation_fuzz) {
  const std::string base = read_text(eval_data("squad_offsets.json"));
  std::mt19937 gen(1234);
  const std::string alphabet = "{}[]\":,0123456789-.eEtrufalsn \\x\xC3\xA9";
  int parsed = 0, rejected = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::string text = base;
    const int edits = 1 + static_cast<int>(gen() % 4);
    for (int e = 0; e < edits; ++e) {
      const std::size_t at = gen() % text.size();
      switch (gen() % 3) {
        case 0:
          text[at] = alphabet[gen() % alphabet.size()];
          break;
        case 1:
          text.erase(at, 1 + gen() % 8);
          break;
        default:
          text.insert(at, 1, alphabet[gen() % alphabet.size()]);
      }
    }
    try {
      parse_squad_text(text, "fuzz");
      ++parsed;
    } catch (const format_error&) {
      ++rejected;
    }
  }
  BOOST_TEST(rejected > 0);
  BOOST_TEST_MESSAGE("fuzz: " << parsed << " parsed, " << rejected << " rejected");
}
