// Prompt builders (golden strings), the all_in_one answer parser (well-formed, shuffled, missing,
// duplicated ids), JSON dependency parsing (fenced, bare, think-wrapped, broken -> heuristic),
// the heuristic generator (whole-word matching), BERT edges, cost-aware selection (max
// dependencies, min confidence, cost), never a cycle (property test on random candidate graphs)
// and the Kahn layers respecting every edge.
#define BOOST_TEST_MODULE pardec_prompts_and_dags
#include <random>

#include "crossbatch/pardec/answer_parsing.hpp"
#include "crossbatch/pardec/edge_selection.hpp"
#include "crossbatch/pardec/prompts.hpp"
#include "support.hpp"

using namespace crossbatch;
using namespace crossbatch::pardec;

namespace {

question_group two_questions() {
  question_group g;
  g.context = "Ada was born in London in 1815.";
  g.questions = {{"a", "Where was Ada born?", {}, {"London"}, "", ""},
                 {"b", "In which year was she born there?", {}, {"1815"}, "", ""}};
  return g;
}

bool has_edge(const std::vector<dependency_edge>& es, std::size_t c, std::size_t p) {
  return std::any_of(es.begin(), es.end(), [&](const dependency_edge& e) { return e.child == c && e.parent == p; });
}

}  // namespace

BOOST_AUTO_TEST_CASE(batch_prompt_golden) {
  const auto m = single_question_prompt(two_questions(), 1, {answer_style::extractive, true});
  BOOST_REQUIRE_EQUAL(m.size(), 2u);
  BOOST_TEST(m[0].role == "system");
  BOOST_TEST(m[0].content ==
             "You are a helpful assistant. Answer the question. Extract the answer from the passage: the "
             "shortest span of it that answers the question. If the passage does not contain the answer, "
             "answer unknown. Reply only with <answer>your answer</answer>.\n\nBackground:\nAda was born in "
             "London in 1815.");
  BOOST_TEST(m[1].content == "Question (Q2): In which year was she born there?");
  // Rendered by the ChatML template with a generation prompt.
  const auto t = text::chat_template::from_name("chatml");
  const std::string r = t.render(m, true);
  BOOST_TEST(r == "<|im_start|>system\n" + m[0].content +
                      "<|im_end|>\n<|im_start|>user\nQuestion (Q2): In which year was she born "
                      "there?<|im_end|>\n<|im_start|>assistant\n");
}

BOOST_AUTO_TEST_CASE(dependency_prompt_golden) {
  const auto m = single_question_prompt(two_questions(), 1, {answer_style::extractive, false},
                                        {{0, "Where was Ada born?", "London"}});
  BOOST_TEST(m[1].content ==
             "Answers to related questions:\nQ1 - Where was Ada born?\nAnswer: <answer>London</answer>\n\n"
             "Question (Q2): In which year was she born there?");
}

BOOST_AUTO_TEST_CASE(all_in_one_prompt_golden) {
  auto g = two_questions();
  const auto m = all_in_one_prompt(g, {answer_style::extractive, false});
  BOOST_TEST(m[0].content ==
             "You are a helpful assistant. Answer each question. Extract the answer from the passage: the "
             "shortest span of it that answers the question. Wrap each answer in <answer></answer>."
             "\n\nBackground:\nAda was born in London in 1815.");
  BOOST_TEST(m[1].content ==
             "Questions:\nQ1: Where was Ada born?\nQ2: In which year was she born there?\n\nAnswer every "
             "question on its own line, in order, as Qk: <answer>text</answer>.");
  // Multi-context: one Context (Qk) block per question, no background.
  g.context = "";
  g.questions[0].context = "C1";
  g.questions[1].context = "C2";
  const auto mm = all_in_one_prompt(g, {answer_style::short_answer, false});
  BOOST_TEST(mm[0].content.find("Background") == std::string::npos);
  BOOST_TEST(mm[1].content.rfind("Context (Q1):\nC1\n\nContext (Q2):\nC2\n\nQuestions:\nQ1: ", 0) == 0);
  BOOST_TEST(single_question_prompt(g, 0, {})[1].content == "Context (Q1):\nC1\n\nQuestion (Q1): Where was Ada born?");
}

BOOST_AUTO_TEST_CASE(sequential_prompt_grows) {
  const auto g = two_questions();
  const auto p0 = sequential_prompt(g, 0, {}, {});
  const auto p1 = sequential_prompt(g, 1, {"<answer>London</answer>"}, {});
  BOOST_REQUIRE_EQUAL(p0.size(), 2u);
  BOOST_REQUIRE_EQUAL(p1.size(), 4u);
  BOOST_TEST(p1[0].content == p0[0].content);
  BOOST_TEST(p1[1].content == p0[1].content);
  BOOST_TEST(p1[2].role == "assistant");
  BOOST_TEST(p1[2].content == "<answer>London</answer>");
  BOOST_TEST(p1[3].content == "Question (Q2): In which year was she born there?");
  BOOST_CHECK_THROW(sequential_prompt(g, 1, {}, {}), value_error);
}

BOOST_AUTO_TEST_CASE(multiple_choice_and_dependency_request) {
  question_group g;
  g.style = answer_style::multiple_choice;
  g.questions = {{"x", "Pick one.", {{"A", "red"}, {"B", "blue"}}, {"B"}, "", ""}};
  BOOST_TEST(single_question_prompt(g, 0, {answer_style::multiple_choice})[1].content ==
             "Question (Q1): Pick one.\nA. red\nB. blue");
  const auto d = dependency_request_prompt(two_questions());
  BOOST_TEST(d[1].content.rfind("Questions:\nQ1: Where was Ada born?\nQ2: In which year was she born there?\n\n", 0) == 0);
  BOOST_TEST(d[1].content.find("Ada was born in London") == std::string::npos);  // no background
  BOOST_TEST(d[1].content.find("```json") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(all_in_one_parser) {
  auto a = parse_all_in_one("Q1: <answer>London</answer>\nQ2: <answer> 1815 </answer>\n", 2);
  BOOST_TEST(a[0].found);
  BOOST_TEST(a[0].text == "London");
  BOOST_TEST(a[1].text == "1815");
  // Shuffled order, case and spacing.
  a = parse_all_in_one("q3 :  <ANSWER>c</Answer> Q1:<answer>a</answer>\nQ2:\n<answer>b\nb</answer>", 3);
  BOOST_TEST(a[0].text == "a");
  BOOST_TEST(a[1].text == "b\nb");
  BOOST_TEST(a[2].text == "c");
  // Missing id: empty and not found; ids outside the group ignored.
  a = parse_all_in_one("Q1: <answer>x</answer> Q7: <answer>y</answer> Q2: no tag", 3);
  BOOST_TEST(a[0].found);
  BOOST_TEST(!a[1].found);
  BOOST_TEST(a[1].text.empty());
  BOOST_TEST(!a[2].found);
  // Duplicated id: the first wins.
  a = parse_all_in_one("Q1: <answer>first</answer>\nQ1: <answer>second</answer>", 1);
  BOOST_TEST(a[0].text == "first");
  // Unclosed tag: not an answer.
  a = parse_all_in_one("Q1: <answer>open", 1);
  BOOST_TEST(!a[0].found);
}

BOOST_AUTO_TEST_CASE(llm_dependency_json) {
  const std::vector<std::string> qs{"Who wrote Dracula?", "When was it published?", "Where was its author born?"};
  // Fenced, with a list value fanning out; rank confidence 1 - idx/total * 0.5.
  auto d = parse_llm_dependencies("Sure:\n```json\n{\"edges\": [{\"Q2\": \"Q1\"}, {\"Q3\": [\"Q1\", \"Q2\"]}]}\n```", qs);
  BOOST_TEST(d.from_model);
  BOOST_REQUIRE_EQUAL(d.edges.size(), 3u);
  for (const auto& e : d.edges) {
    const double want = e.child == 1 ? 1.0 : (e.parent == 0 ? 1 - 1.0 / 3 * 0.5 : 1 - 2.0 / 3 * 0.5);
    BOOST_TEST(cbtest::within(e.confidence, want, 1e-15));
  }
  // Bare JSON, and think-wrapped with a decoy object inside the think block.
  d = parse_llm_dependencies("{\"edges\": [{\"Q3\": \"Q1\"}]}", qs);
  BOOST_TEST(d.from_model);
  BOOST_TEST(has_edge(d.edges, 2, 0));
  d = parse_llm_dependencies("<think>maybe {\"edges\": [{\"Q2\": \"Q3\"}]}</think>\nAnswer: {\"edges\": [{\"Q3\": \"Q2\"}]} done", qs);
  BOOST_TEST(d.from_model);
  BOOST_REQUIRE_EQUAL(d.edges.size(), 1u);
  BOOST_TEST(has_edge(d.edges, 2, 1));
  // Self-edges and unknown ids dropped; an empty list is a valid "independent".
  d = parse_llm_dependencies("{\"edges\": [{\"Q1\": \"Q1\"}, {\"Q9\": \"Q1\"}, {\"Q2\": \"Q0\"}]}", qs);
  BOOST_TEST(d.from_model);
  BOOST_TEST(d.edges.empty());
  // Broken output falls back to the heuristic.
  d = parse_llm_dependencies("```json\n{\"edges\": [{\"Q2\": \"Q1\"}\n```", qs);
  BOOST_TEST(!d.from_model);
  BOOST_TEST(d.edges == heuristic_dependencies(qs));
  BOOST_TEST(!parse_llm_dependencies("{\"deps\": []}", qs).from_model);
}

BOOST_AUTO_TEST_CASE(heuristic_generator) {
  const auto e = heuristic_dependencies({"Who wrote Dracula?", "When was it published?", "Is Dracula long?",
                                         "What do all these books share?", "Tea with milk?"});
  BOOST_TEST(has_edge(e, 1, 0));  // "it": previous question, 0.85
  BOOST_TEST(has_edge(e, 2, 0));  // keyword "dracula"
  for (std::size_t j = 0; j < 3; ++j) BOOST_TEST(has_edge(e, 3, j));  // "all": every earlier one
  BOOST_TEST(!has_edge(e, 4, 3));  // "with" holds "it" but is not the word "it"
  for (const auto& x : e)
    if (x.child == 1 && x.parent == 0) BOOST_TEST(x.confidence == 0.85);
}

BOOST_AUTO_TEST_CASE(bert_edges_and_selection) {
  const std::vector<std::vector<double>> score{{0.5, 0.01, 0.3}, {0.6, 0.2, 0.02}, {0.1, 0.05, 0.7}};
  const auto e = bert_dependencies(score, 0.05);
  BOOST_TEST(e.size() == 4u);  // (0,2) 0.3, (1,0) 0.6, (2,0) 0.1, (2,1) 0.05
  BOOST_TEST(has_edge(e, 2, 1));
  BOOST_TEST(!has_edge(e, 1, 2));
  // Selection: min confidence, max dependencies, cycle (0 <- 2 and 2 <- 0: the weaker is rejected).
  const std::vector<std::string> qs{"a b", "c d", "e f"}, none(3);
  selection_options opt;
  opt.min_confidence = 0.05;
  auto s = select_edges(e, qs, none, opt);
  std::vector<dependency_edge> chosen;
  for (const auto& x : s) chosen.push_back(x.edge);
  BOOST_TEST(has_edge(chosen, 1, 0));
  BOOST_TEST(has_edge(chosen, 0, 2));
  BOOST_TEST(!has_edge(chosen, 2, 0));  // would close 0 <- 2 <- 0
  BOOST_TEST(has_edge(chosen, 2, 1) == false);  // 2 <- 1 <- 0 <- 2 is a cycle too
  opt.min_confidence = 0.45;
  s = select_edges(e, qs, none, opt);
  BOOST_REQUIRE_EQUAL(s.size(), 1u);
  BOOST_TEST(s[0].edge.child == 1u);
  // Cost: int(1.4 * 2 words) = 2 + max(est(""), 12) + 6 = 20 tokens; weight 0.02 -> 0.6 - 0.4.
  BOOST_TEST(s[0].cost == 20);
  BOOST_TEST(cbtest::within(s[0].score, 0.6, 1e-15));
  opt.cost_weight = 0.02;
  s = select_edges(e, qs, none, opt);
  BOOST_REQUIRE_EQUAL(s.size(), 1u);
  BOOST_TEST(cbtest::within(s[0].score, 0.6 - 0.02 * 20, 1e-15));
  opt.cost_weight = 0.05;  // 0.6 - 1.0 <= 0: skipped
  BOOST_TEST(select_edges(e, qs, none, opt).empty());
  // max_dependencies per question.
  std::vector<dependency_edge> fan{{3, 0, 0.9, ""}, {3, 1, 0.8, ""}, {3, 2, 0.7, ""}};
  opt = {};
  opt.max_dependencies = 2;
  s = select_edges(fan, {"a", "b", "c", "d"}, std::vector<std::string>(4), opt);
  BOOST_REQUIRE_EQUAL(s.size(), 2u);
  BOOST_TEST(s[0].edge.parent == 0u);
  BOOST_TEST(s[1].edge.parent == 1u);
  // The expected answer's length enters the cost.
  opt.cost_weight = 0.001;
  const auto longer = select_edges(fan, {"a", "b", "c", "d"}, {std::string(100, 'x') + " y z w v u t s r q p o n m l k", "", "", ""}, opt);
  BOOST_TEST(longer[0].cost > 20);
}

BOOST_AUTO_TEST_CASE(token_estimate) {
  BOOST_TEST(estimate_tokens("") == 1);
  BOOST_TEST(estimate_tokens("one two three") == 4);       // int(4.2)
  BOOST_TEST(estimate_tokens("患者发热三天") == 4);            // int(0.8 * 6 = 4.8)
  BOOST_TEST(estimate_tokens("in 1815") == 3);             // int(2.8 + 0.8)
}

BOOST_AUTO_TEST_CASE(random_graphs_never_cycle_and_layers_respect_edges) {
  std::mt19937 gen(1212);
  int with_edges = 0, multi_layer = 0;
  for (int trial = 0; trial < 500; ++trial) {
    const std::size_t n = 1 + gen() % 8;
    std::vector<dependency_edge> cand;
    const std::size_t m = gen() % 30;
    for (std::size_t k = 0; k < m; ++k)
      cand.push_back({gen() % n, gen() % n, double(gen() % 1000) / 1000.0, ""});
    selection_options opt;
    opt.max_dependencies = 1 + int(gen() % 4);
    opt.min_confidence = double(gen() % 50) / 100.0;
    opt.cost_weight = (gen() % 2) ? 0.0 : 0.005;
    std::vector<std::string> qs(n, "some question words");
    const auto s = select_edges(cand, qs, std::vector<std::string>(n), opt);
    std::vector<dependency_edge> edges;
    std::vector<int> parents(n, 0);
    for (const auto& x : s) {
      BOOST_TEST(x.edge.confidence >= opt.min_confidence);
      BOOST_TEST(x.score > 0);
      BOOST_TEST(x.edge.child != x.edge.parent);
      ++parents[x.edge.child];
      edges.push_back(x.edge);
    }
    for (int p : parents) BOOST_TEST(p <= opt.max_dependencies);
    // schedule_layers throws on a cycle; every edge goes from an earlier layer to a later one.
    std::vector<std::vector<std::size_t>> layers;
    BOOST_REQUIRE_NO_THROW(layers = schedule_layers(n, edges));
    std::vector<int> layer_of(n, -1);
    for (std::size_t l = 0; l < layers.size(); ++l) {
      BOOST_TEST(std::is_sorted(layers[l].begin(), layers[l].end()));
      for (std::size_t v : layers[l]) layer_of[v] = int(l);
    }
    for (int l : layer_of) BOOST_TEST(l >= 0);
    for (const auto& e : edges) BOOST_TEST(layer_of[e.parent] < layer_of[e.child]);
    with_edges += !edges.empty();
    multi_layer += layers.size() > 2;
  }
  BOOST_TEST(with_edges > 250);  // the property was exercised, not vacuous
  BOOST_TEST(multi_layer > 50);
  // A cycle given directly is refused.
  BOOST_CHECK_THROW(schedule_layers(2, {{0, 1, 1, ""}, {1, 0, 1, ""}}), value_error);
  // Layers of a chain and ids sorted numerically (Q10 after Q2).
  std::vector<dependency_edge> chain;
  for (std::size_t i = 1; i < 11; ++i) chain.push_back({i, 0, 1, ""});
  const auto l = schedule_layers(11, chain);
  BOOST_REQUIRE_EQUAL(l.size(), 2u);
  BOOST_TEST(l[1].front() == 1u);
  BOOST_TEST(l[1].back() == 10u);
}
