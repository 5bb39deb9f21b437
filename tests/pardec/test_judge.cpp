// The LLM judge of long-form answers (pardec/llm_judge.hpp): its prompt, the score parser on
// well-formed, fenced / think-wrapped, chatty, missing, out-of-range, other-scale and non-numeric
// replies, the aggregate that averages only scored answers, and judge_answers over a fake judge.
// The call log (pardec/call_log.hpp) that --dump-calls writes is checked here too.
#define BOOST_TEST_MODULE pardec_judge
#include "crossbatch/pardec/call_log.hpp"
#include "crossbatch/pardec/llm_judge.hpp"
#include "support.hpp"

using namespace crossbatch;
using namespace crossbatch::pardec;

namespace {

// Answers every conversation with the next canned reply; keeps what it was asked.
struct canned_judge : chat_generator {
  std::vector<std::string> replies;
  std::vector<conversation> seen;
  int max_new_tokens = 0;
  generated_batch generate(const std::vector<conversation>& batch, int n) override {
    generated_batch b;
    for (const auto& c : batch) {
      seen.push_back(c);
      b.replies.push_back(replies.at(seen.size() - 1));
    }
    max_new_tokens = n;
    b.prompt_tokens = 10 * long(batch.size());
    b.token_ids.assign(batch.size(), {7, 8});
    return b;
  }
};

void check_scores(const judge_scores& s, std::map<std::string, double> want) {
  BOOST_TEST(s.score.size() == want.size());
  for (const auto& [c, v] : want) {
    BOOST_TEST_CONTEXT(c) {
      BOOST_REQUIRE(s.score.count(c) == 1);
      BOOST_TEST(s.score.at(c) == v);
    }
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(prompt_holds_case_question_reference_and_answer) {
  const auto c = judge_prompt("A 40-year-old man with chest pain.", "What is the diagnosis?",
                              "Acute myocardial infarction.", "Angina.");
  BOOST_REQUIRE(c.size() == 2);
  BOOST_TEST(c[0].role == "system");
  BOOST_TEST(c[1].role == "user");
  const std::string& u = c[1].content;
  BOOST_TEST(u.rfind("Case:\nA 40-year-old man with chest pain.\n\nQuestion:\nWhat is the diagnosis?\n\n"
                     "Reference answer:\nAcute myocardial infarction.\n\nAnswer to grade:\nAngina.\n\n",
                     0) == 0u);
  for (const auto& crit : judge_criteria()) BOOST_TEST(u.find("- " + crit + ": ") != std::string::npos);
  BOOST_TEST(u.find("{\"fluency\": n, \"relevance\": n, \"completeness\": n, \"proficiency\": n}") !=
             std::string::npos);
  // No case: no "Case:" block; an empty answer is shown as such.
  const auto d = judge_prompt("", "Q?", "R.", "");
  BOOST_TEST(d[1].content.rfind("Question:\nQ?", 0) == 0u);
  BOOST_TEST(d[1].content.find("Answer to grade:\n(empty)\n") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(well_formed_replies) {
  auto s = parse_judge_scores(R"({"fluency": 4, "relevance": 5, "completeness": 2, "proficiency": 3})");
  check_scores(s, {{"fluency", 4}, {"relevance", 5}, {"completeness", 2}, {"proficiency", 3}});
  BOOST_TEST(s.complete());
  BOOST_TEST(s.note.empty());
  // Fenced, think-wrapped, capitalised keys, numbers as strings, a "n/5" string, a fraction.
  s = parse_judge_scores("<think>the answer misses the dose</think>\n```json\n{\"Fluency\": \"5\", "
                         "\"RELEVANCE\": \"4/5\", \"completeness\": 3.5, \"proficiency\": 1}\n```");
  check_scores(s, {{"fluency", 5}, {"relevance", 4}, {"completeness", 3.5}, {"proficiency", 1}});
  BOOST_TEST(s.complete());
}

BOOST_AUTO_TEST_CASE(chatty_replies) {
  auto s = parse_judge_scores(
      "Here is my evaluation.\n**Fluency**: 4/5\nRelevance = 3\n- Completeness - 2 (it leaves out the "
      "treatment)\nProficiency: 5\nOverall a fair answer.");
  check_scores(s, {{"fluency", 4}, {"relevance", 3}, {"completeness", 2}, {"proficiency", 5}});
  BOOST_TEST(s.complete());
  // A JSON object nested in prose: the object is found.
  s = parse_judge_scores(
      "Sure! {\"fluency\": 2, \"relevance\": 2, \"completeness\": 1, \"proficiency\": 2} Hope this helps.");
  check_scores(s, {{"fluency", 2}, {"relevance", 2}, {"completeness", 1}, {"proficiency", 2}});
  // A JSON object lacking a criterion that the prose states.
  s = parse_judge_scores("{\"fluency\": 3, \"relevance\": 4, \"completeness\": 4}\nproficiency: 2");
  check_scores(s, {{"fluency", 3}, {"relevance", 4}, {"completeness", 4}, {"proficiency", 2}});
}

BOOST_AUTO_TEST_CASE(missing_out_of_range_and_broken_scores_stay_unscored) {
  auto s = parse_judge_scores(R"({"fluency": 4, "relevance": 5})");
  check_scores(s, {{"fluency", 4}, {"relevance", 5}});
  BOOST_TEST(!s.complete());
  BOOST_TEST(s.note == "completeness missing; proficiency missing");

  s = parse_judge_scores(R"({"fluency": 0, "relevance": 6, "completeness": "8/10", "proficiency": "good"})");
  BOOST_TEST(s.score.empty());
  BOOST_TEST(s.note.find("fluency out of range 1..5: 0") != std::string::npos);
  BOOST_TEST(s.note.find("relevance out of range 1..5: 6") != std::string::npos);
  BOOST_TEST(s.note.find("completeness on another scale: \"8/10\"") != std::string::npos);
  BOOST_TEST(s.note.find("proficiency not a number: \"good\"") != std::string::npos);

  s = parse_judge_scores(R"({"fluency": null, "relevance": [4], "completeness": -3, "proficiency": 5.5})");
  BOOST_TEST(s.score.empty());
  BOOST_TEST(s.note.find("fluency not a number: null") != std::string::npos);

  // Prose on another scale, and no scores at all.
  s = parse_judge_scores("Fluency: 9/10. Relevance: 12. Completeness: 7/10. Proficiency: 10/10.");
  BOOST_TEST(s.score.empty());
  BOOST_TEST(s.note.find("fluency on another scale") != std::string::npos);
  BOOST_TEST(s.note.find("relevance out of range") != std::string::npos);
  s = parse_judge_scores("I cannot grade this answer.");
  BOOST_TEST(s.score.empty());
  BOOST_TEST(s.note == "fluency missing; relevance missing; completeness missing; proficiency missing");
  s = parse_judge_scores("");
  BOOST_TEST(s.score.empty());
}

BOOST_AUTO_TEST_CASE(totals_average_only_scored_answers) {
  judge_totals t;
  t.add(parse_judge_scores(R"({"fluency": 4, "relevance": 5, "completeness": 2, "proficiency": 3})"));
  t.add(parse_judge_scores(R"({"fluency": 2, "relevance": 9})"));
  t.add(parse_judge_scores("no idea"));
  const auto j = t.to_json();
  BOOST_TEST(long(j["answers"]) == 3);
  BOOST_TEST(long(j["complete"]) == 1);
  BOOST_TEST(double(j["fluency"]) == 3.0);
  BOOST_TEST(long(j["fluency_scored"]) == 2);
  BOOST_TEST(double(j["relevance"]) == 5.0);
  BOOST_TEST(long(j["relevance_scored"]) == 1);
  BOOST_TEST(long(j["proficiency_scored"]) == 1);
  judge_totals none;
  none.add(parse_judge_scores("?"));
  BOOST_TEST(none.to_json()["fluency"].is_null());
}

BOOST_AUTO_TEST_CASE(judge_answers_asks_once_per_answer) {
  canned_judge judge;
  judge.replies = {R"({"fluency": 5, "relevance": 5, "completeness": 5, "proficiency": 5})", "Fluency: 1"};
  std::vector<std::string> replies;
  const auto s = judge_answers(judge, "case", {"q1", "q2"}, {"r1", "r2"}, {"a1", "a2"}, 64, &replies);
  BOOST_REQUIRE(s.size() == 2u);
  BOOST_TEST(s[0].complete());
  check_scores(s[1], {{"fluency", 1}});
  BOOST_TEST(replies == judge.replies);
  BOOST_TEST(judge.max_new_tokens == 64);
  BOOST_REQUIRE(judge.seen.size() == 2u);
  BOOST_TEST(judge.seen[1][1].content == judge_prompt("case", "q2", "r2", "a2")[1].content);
  BOOST_CHECK_THROW(judge_answers(judge, "", {"q"}, {}, {"a"}, 8), value_error);
}

BOOST_AUTO_TEST_CASE(call_log_records_and_serialises_every_call) {
  canned_judge inner;
  inner.replies = {"x", "y", "z"};
  recording_generator rec(inner);
  rec.generate({{{"user", "a"}}, {{"system", "s"}, {"user", "b"}}}, 5);
  rec.generate({{{"user", "c"}}}, 9);
  BOOST_REQUIRE(rec.calls().size() == 2u);
  const auto j = to_json(rec.calls());
  BOOST_TEST(j.size() == 2u);
  BOOST_TEST(int(j[0]["max_new_tokens"]) == 5);
  BOOST_TEST(j[0]["replies"] == nlohmann::json({"x", "y"}));
  BOOST_TEST(j[0]["conversations"][1][0]["role"] == "system");
  BOOST_TEST(j[0]["conversations"][1][1]["content"] == "b");
  BOOST_TEST(j[0]["token_ids"] == nlohmann::json({{7, 8}, {7, 8}}));
  BOOST_TEST(j[1]["replies"] == nlohmann::json({"z"}));
  rec.clear();
  BOOST_TEST(rec.calls().empty());
}
