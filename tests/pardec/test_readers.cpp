// Data readers of the parallel-decoding experiments on hand-written files in each data set's own
// schema (tests/data/pardec/*_tiny.*): the questions, golds, contexts and styles read, the
// grouping (context sampling, random chunks, subdomains, similarity), and for each format a
// malformed copy whose error names the file, the record and the field.
#define BOOST_TEST_MODULE pardec_readers
#include <fstream>
#include <nlohmann/json.hpp>

#include "crossbatch/pardec/dataset.hpp"
#include "support.hpp"

using namespace crossbatch;
using namespace crossbatch::pardec;

namespace {

std::string fixture(const std::string& name) { return cbtest::data_dir() + "/pardec/" + name; }

grouping_options all_of_them(int min_q = 1, int max_q = 10) {
  grouping_options g;
  g.min_questions = min_q;
  g.max_questions = max_q;
  g.context_count = 0;
  g.shuffle_questions = false;
  return g;
}

const group_question* find(const std::vector<question_group>& gs, const std::string& id) {
  for (const auto& g : gs)
    for (const auto& q : g.questions)
      if (q.id == id) return &q;
  return nullptr;
}

// Writes `text` to a scratch file and returns its path.
std::string scratch_file(const std::string& name, const std::string& text) {
  const auto p = cbtest::scratch_dir("pardec_readers") / name;
  std::ofstream(p) << text;
  return p.string();
}

// The fixture with `from` replaced by `to` (once), as a scratch file.
std::string broken_copy(const std::string& name, const std::string& from, const std::string& to) {
  std::ifstream f(fixture(name));
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto at = s.find(from);
  BOOST_REQUIRE_MESSAGE(at != std::string::npos, name << " has no '" << from << "'");
  s.replace(at, from.size(), to);
  return scratch_file("broken_" + name, s);
}

// The reader throws format_error naming the file and every given part of the location.
template <class F>
void expect_error(F read, const std::string& path, const std::vector<std::string>& parts) {
  try {
    read(path);
    BOOST_ERROR("no error for " << path);
  } catch (const format_error& e) {
    const std::string msg = e.what();
    BOOST_TEST(msg.find(path) != std::string::npos, msg);
    for (const auto& p : parts) BOOST_TEST(msg.find(p) != std::string::npos, "'" << p << "' not in: " << msg);
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(squad_v2_groups_by_paragraph) {
  const auto gs = read_squad_groups(fixture("squad_tiny.json"), all_of_them());
  BOOST_REQUIRE_EQUAL(gs.size(), 2u);
  std::size_t n = 0;
  for (const auto& g : gs) {
    n += g.questions.size();
    BOOST_TEST(!g.context.empty());
    BOOST_TEST(!g.multi_context());
    BOOST_TEST((g.style == answer_style::extractive));
  }
  BOOST_TEST(n == 5u);
  BOOST_TEST((find(gs, "s2")->answers == std::vector<std::string>{"the White Nile", "White Nile"}));
  BOOST_TEST((find(gs, "s4")->answers == std::vector<std::string>{"unknown"}));  // unanswerable
  // min_questions 2 drops the one-question paragraph; max 2 cuts the other.
  auto opt = all_of_them(2, 2);
  const auto two = read_squad_groups(fixture("squad_tiny.json"), opt);
  BOOST_REQUIRE_EQUAL(two.size(), 1u);
  BOOST_TEST(two[0].questions.size() == 2u);
}

BOOST_AUTO_TEST_CASE(context_sampling_is_seeded) {
  grouping_options opt;
  opt.min_questions = 1, opt.max_questions = 3, opt.seed = 13;
  const auto a = read_squad_groups(fixture("squad_tiny.json"), opt);
  const auto b = read_squad_groups(fixture("squad_tiny.json"), opt);
  BOOST_REQUIRE_EQUAL(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    BOOST_REQUIRE_EQUAL(a[i].questions.size(), b[i].questions.size());
    for (std::size_t k = 0; k < a[i].questions.size(); ++k) BOOST_TEST(a[i].questions[k].id == b[i].questions[k].id);
    BOOST_TEST(a[i].questions.size() <= 3u);
  }
  // Different seeds reorder 8 chunked questions differently.
  std::vector<group_question> pool(8);
  for (int i = 0; i < 8; ++i) pool[i].id = std::to_string(i);
  grouping_options o1 = all_of_them(8, 8), o2 = o1;
  o1.shuffle_questions = o2.shuffle_questions = true;
  o1.seed = 1, o2.seed = 2;
  const auto c1 = chunk_questions(pool, "x", answer_style::short_answer, o1);
  const auto c2 = chunk_questions(pool, "x", answer_style::short_answer, o2);
  BOOST_REQUIRE(c1.size() == 1u && c2.size() == 1u);
  bool differ = false;
  for (int i = 0; i < 8; ++i) differ |= c1[0].questions[i].id != c2[0].questions[i].id;
  BOOST_TEST(differ);
}

BOOST_AUTO_TEST_CASE(hotpot_is_multi_context) {
  const auto gs = read_hotpot_groups(fixture("hotpot_tiny.json"), all_of_them(3, 3));
  BOOST_REQUIRE_EQUAL(gs.size(), 1u);
  BOOST_TEST(gs[0].multi_context());
  BOOST_TEST(gs[0].context.empty());
  const auto* q = find(gs, "h1");
  BOOST_REQUIRE(q);
  BOOST_TEST(q->context == "Claude Monet: Claude Monet was a French painter born in Paris. He painted Water "
                           "Lilies.\n\nWater Lilies: Water Lilies is a series of paintings.");
  BOOST_TEST((q->answers == std::vector<std::string>{"Paris"}));
  expect_error([](auto p) { read_hotpot_groups(p, all_of_them()); },
               broken_copy("hotpot_tiny.json", "\"answer\": \"1889\"", "\"answer\": 1889"), {"[2].answer", "string"});
}

BOOST_AUTO_TEST_CASE(quac_keeps_dialogue_order) {
  const auto gs = read_quac_groups(fixture("quac_tiny.json"), all_of_them());
  BOOST_REQUIRE_EQUAL(gs.size(), 1u);
  BOOST_REQUIRE_EQUAL(gs[0].questions.size(), 3u);
  BOOST_TEST(gs[0].questions[0].id == "C_ada_0_q#0");
  BOOST_TEST(gs[0].questions[2].id == "C_ada_0_q#2");
  // orig_answer first, then the other annotators' texts.
  BOOST_TEST((gs[0].questions[1].answers ==
              std::vector<std::string>{"Her mother was Anne Isabella Milbanke.", "Anne Isabella Milbanke"}));
  BOOST_TEST((gs[0].questions[2].answers == std::vector<std::string>{"CANNOTANSWER"}));
  expect_error([](auto p) { read_quac_groups(p, all_of_them()); },
               broken_copy("quac_tiny.json", "\"question\": \"Who was her mother?\", ", ""),
               {"data[0].paragraphs[0].qas[1].question", "missing"});
}

BOOST_AUTO_TEST_CASE(drop_answers_from_number_spans_date) {
  const auto gs = read_drop_groups(fixture("drop_tiny.json"), all_of_them());
  BOOST_REQUIRE_EQUAL(gs.size(), 1u);
  BOOST_TEST((gs[0].style == answer_style::short_answer));
  BOOST_TEST((find(gs, "q1")->answers == std::vector<std::string>{"21"}));
  BOOST_TEST((find(gs, "q2")->answers == std::vector<std::string>{"Robbie Gould", "Gould"}));
  BOOST_TEST((find(gs, "q3")->answers == std::vector<std::string>{"12 October 2008"}));
  expect_error([](auto p) { read_drop_groups(p, all_of_them()); },
               broken_copy("drop_tiny.json", "\"spans\": [\"Robbie Gould\"]", "\"spans\": [7]"),
               {"nfl_1.qa_pairs[1].answer.spans[0]", "string"});
}

BOOST_AUTO_TEST_CASE(quality_multiple_choice_and_hard_only) {
  const auto gs = read_quality_groups(fixture("quality_tiny.jsonl"), all_of_them());
  BOOST_REQUIRE_EQUAL(gs.size(), 1u);
  BOOST_TEST((gs[0].style == answer_style::multiple_choice));
  BOOST_REQUIRE_EQUAL(gs[0].questions.size(), 3u);
  const auto& q = gs[0].questions[1];
  BOOST_TEST((q.answers == std::vector<std::string>{"C"}));  // gold_label 3
  BOOST_REQUIRE_EQUAL(q.options.size(), 4u);
  BOOST_TEST(q.options[2].letter == "C");
  BOOST_TEST(q.options[2].text == "His furniture");
  const auto hard = read_quality_groups(fixture("quality_tiny.jsonl"), all_of_them(), true);
  BOOST_REQUIRE_EQUAL(hard.size(), 1u);
  BOOST_TEST(hard[0].questions.size() == 2u);
  expect_error([](auto p) { read_quality_groups(p, all_of_them()); },
               broken_copy("quality_tiny.jsonl", "\"gold_label\": 3", "\"gold_label\": 5"),
               {"[0].questions[1].gold_label", "outside 1..4"});
  expect_error([](auto p) { read_quality_groups(p, all_of_them()); },
               scratch_file("q.jsonl", "{\"article\": \"x\", \"questions\": []}\n{not json\n"), {"line 2"});
}

BOOST_AUTO_TEST_CASE(cmb_exam_groupings) {
  const auto path = fixture("cmb_exam_tiny.json");
  const auto random = read_cmb_exam_groups(path, cmb_grouping::random, all_of_them(2, 2));
  BOOST_TEST(random.size() == 2u);
  const auto sub = read_cmb_exam_groups(path, cmb_grouping::subdomain, all_of_them(2, 2));
  BOOST_REQUIRE_EQUAL(sub.size(), 2u);
  for (const auto& g : sub) {  // the two 内科 questions together, the two 外科 ones together
    const bool medicine = g.questions[0].text.find("高血压") != std::string::npos ||
                          g.questions[0].text.find("糖尿病") != std::string::npos;
    for (const auto& q : g.questions)
      BOOST_TEST(medicine == (q.text.find("高血压") != std::string::npos || q.text.find("糖尿病") != std::string::npos));
  }
  const auto* q = find(sub, "[1]");  // records without an id are named by their path
  BOOST_REQUIRE(q);
  BOOST_TEST((q->answers == std::vector<std::string>{"ABD"}));
  const auto* first = find(sub, "[0]");
  BOOST_REQUIRE(first);
  BOOST_TEST(first->options.size() == 4u);  // the empty option E is dropped
  const auto ctx = read_cmb_exam_groups(fixture("cmb_exam_grouped_tiny.json"), cmb_grouping::context, all_of_them());
  BOOST_REQUIRE_EQUAL(ctx.size(), 1u);
  BOOST_TEST(ctx[0].context == "患者，男，60岁，反复胸痛3年，加重2小时。");
  BOOST_TEST(ctx[0].questions.size() == 2u);
  expect_error([](auto p) { read_cmb_exam_groups(p, cmb_grouping::random, all_of_them()); },
               broken_copy("cmb_exam_tiny.json", "\"answer\": \"A\"", "\"answer\": \"G\""),
               {"[2].answer", "'G' is not an option"});
  BOOST_CHECK_THROW(parse_cmb_grouping("by-colour"), value_error);
}

BOOST_AUTO_TEST_CASE(cmb_clin_long_form) {
  const auto gs = read_cmb_clin_groups(fixture("cmb_clin_tiny.json"), all_of_them());
  BOOST_REQUIRE_EQUAL(gs.size(), 1u);
  BOOST_TEST((gs[0].style == answer_style::long_form));
  BOOST_TEST(gs[0].id == "0");
  BOOST_REQUIRE_EQUAL(gs[0].questions.size(), 2u);
  BOOST_TEST((gs[0].questions[0].answers == std::vector<std::string>{"右侧腹股沟斜疝。"}));
  expect_error([](auto p) { read_cmb_clin_groups(p, all_of_them()); },
               broken_copy("cmb_clin_tiny.json", "\"solution\": \"右侧腹股沟斜疝。\"", "\"answer\": \"x\""),
               {"[0].QA_pairs[0].solution", "missing"});
}

BOOST_AUTO_TEST_CASE(triviaqa_random_and_similarity) {
  const auto gs = read_triviaqa_groups(fixture("triviaqa_tiny.json"), all_of_them(2, 2));
  BOOST_TEST(gs.size() == 2u);
  const auto* q = find(gs, "tc_1");
  BOOST_REQUIRE(q);
  BOOST_TEST((q->answers == std::vector<std::string>{"Paris", "Paris, France"}));
  // Hand-made embeddings: capitals near x, planets near y; no two identical (cosine 0.98 within
  // a topic, about 0.2 across).
  const embed_fn embed = [](const std::vector<std::string>& texts) {
    std::vector<std::vector<float>> e;
    for (std::size_t i = 0; i < texts.size(); ++i) {
      const float d = 0.2f * float(i % 2);
      e.push_back(texts[i].find("capital") != std::string::npos ? std::vector<float>{1, d} : std::vector<float>{d, 1});
    }
    return e;
  };
  grouping_options opt = all_of_them(2, 2);
  const auto sim = read_triviaqa_sim_groups(fixture("triviaqa_tiny.json"), opt, embed, 0.5);
  BOOST_REQUIRE_EQUAL(sim.size(), 2u);
  for (const auto& g : sim) {
    BOOST_REQUIRE_EQUAL(g.questions.size(), 2u);
    const bool capitals = g.questions[0].text.find("capital") != std::string::npos;
    BOOST_TEST(capitals == (g.questions[1].text.find("capital") != std::string::npos));
  }
  // A threshold no pair reaches leaves no group of 2.
  BOOST_TEST(read_triviaqa_sim_groups(fixture("triviaqa_tiny.json"), opt, embed, 0.99).empty());
  expect_error([](auto p) { read_triviaqa_groups(p, all_of_them()); },
               broken_copy("triviaqa_tiny.json", "\"QuestionId\": \"tc_3\"", "\"QuestionID\": \"tc_3\""),
               {"Data[2].QuestionId", "missing"});
}

BOOST_AUTO_TEST_CASE(dataset_dispatch_and_errors) {
  dataset_request r;
  r.name = "squad";
  r.path = fixture("squad_tiny.json");
  r.grouping = all_of_them();
  BOOST_TEST(read_dataset(r).size() == 2u);
  r.name = "cmb", r.cmb_subset = "CMB-Clin", r.path = fixture("cmb_clin_tiny.json");
  BOOST_TEST(read_dataset(r).size() == 1u);
  r.name = "triviaqa_sim", r.path = fixture("triviaqa_tiny.json");
  BOOST_CHECK_THROW(read_dataset(r), value_error);  // no embedding model
  r.name = "natural_questions";
  BOOST_CHECK_THROW(read_dataset(r), value_error);
  r.name = "squad", r.path = fixture("does_not_exist.json");
  BOOST_CHECK_THROW(read_dataset(r), io_error);
  r.path = scratch_file("bad.json", "{\"data\": [");
  BOOST_CHECK_THROW(read_dataset(r), format_error);
  r.path = fixture("squad_tiny.json");
  r.grouping.max_questions = 0;
  BOOST_CHECK_THROW(read_dataset(r), value_error);
}

BOOST_AUTO_TEST_CASE(synthetic_files_of_the_generator_read_back) {
  // tests/data/pardec/synthetic: tools/make_pardec_data.py --per-size 2 --stories 10 (seed 0).
  const auto dir = std::string("synthetic/");
  const auto squad = read_squad_groups(fixture(dir + "squad_groups.json"), all_of_them(1, 5));
  BOOST_REQUIRE_EQUAL(squad.size(), 10u);
  std::vector<int> sizes(6, 0);
  for (const auto& g : squad) ++sizes.at(g.questions.size());
  for (int k = 1; k <= 5; ++k) BOOST_TEST(sizes[k] == 2, "groups of " << k);
  const auto hotpot = read_hotpot_groups(fixture(dir + "hotpot.json"), all_of_them(2, 4));
  BOOST_REQUIRE(!hotpot.empty());
  BOOST_TEST(hotpot[0].multi_context());
  const auto quality = read_quality_groups(fixture(dir + "quality.jsonl"), all_of_them());
  BOOST_REQUIRE(!quality.empty());
  for (const auto& g : quality)
    for (const auto& q : g.questions) {
      BOOST_TEST(q.options.size() == 4u);
      const auto it = std::find_if(q.options.begin(), q.options.end(),
                                   [&](const choice_option& o) { return o.letter == q.answers[0]; });
      BOOST_REQUIRE(it != q.options.end());
      BOOST_TEST(g.context.find(it->text) != std::string::npos);  // the gold option is a span of the story
    }
  const auto exam = read_cmb_exam_groups(fixture(dir + "cmb_exam.json"), cmb_grouping::subdomain, all_of_them(2, 3));
  BOOST_TEST(!exam.empty());
  const auto clin = read_cmb_clin_groups(fixture(dir + "cmb_clin.json"), all_of_them());
  BOOST_REQUIRE_EQUAL(clin.size(), 10u);
  BOOST_TEST((clin[0].style == answer_style::long_form));
  for (const auto& q : clin[0].questions) BOOST_TEST(clin[0].context.find(q.answers[0]) != std::string::npos);
}
