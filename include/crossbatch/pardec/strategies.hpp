// The strategies of the parallel-decoding experiments over one question group, on any
// chat_generator (local engine, API) except collab_hidden / finetuned, which need the local model:
//  batch         every question alone, all in one batch;
//  all_in_one    one prompt with every question (max_new_tokens x #questions), parsed per Qk;
//  sequential    one chat growing turn by turn, one question (one batch of 1) per turn;
//  collab_llm    the model's own dependency JSON (or the heuristic with no_llm_deps), cost-aware
//                selection, then the Kahn layers of the DAG, each one batch with the parents'
//                answers in the prompt;
//  collab_bert   the same with edges from BERT attention between the questions;
//  collab_hidden one batch whose rows mix through a cross-batch mixer checkpoint;
//  finetuned     one batch with a trained LM head (the baseline checkpoint).
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "crossbatch/eval/answer_tag.hpp"
#include "crossbatch/pardec/answer_parsing.hpp"
#include "crossbatch/pardec/chat_generator.hpp"
#include "crossbatch/pardec/edge_selection.hpp"
#include "crossbatch/pardec/prompts.hpp"

namespace crossbatch::pardec {

struct strategy_options {
  int max_new_tokens = 96;              // per question (all_in_one: x #questions)
  int dependency_max_new_tokens = 512;  // collab_llm's dependency request
  bool no_llm_deps = false;             // --no-llm-deps: the heuristic instead of the model's JSON
  selection_options selection;          // --max-dependencies, --min-confidence, --cost-weight
  double bert_attention_threshold = 0.02;  // --bert-attention-threshold (also its min confidence)
  prompt_style prompt;
};

struct strategy_run {
  std::string strategy;
  std::vector<std::string> replies;    // raw, per question (all_in_one: the one reply, repeated)
  std::vector<tagged_answer> answers;  // extracted, per question
  long prompt_tokens = 0, generated_tokens = 0;
  double latency = 0;  // seconds for the whole group
  int batches = 0;     // generation calls
  std::optional<std::vector<dependency_edge>> dag_edges;  // collab_*: the selected DAG
  std::string note;                                        // e.g. why collab_llm fell back
};

namespace detail {

class stopwatch {
 public:
  double seconds() const { return std::chrono::duration<double>(clock::now() - m_start).count(); }

 private:
  using clock = std::chrono::steady_clock;
  clock::time_point m_start = clock::now();
};

inline void add_cost(strategy_run& r, const generated_batch& b) {
  r.prompt_tokens += b.prompt_tokens;
  r.generated_tokens += b.generated_tokens;
  ++r.batches;
}

inline std::vector<std::string> texts(const question_group& g) {
  std::vector<std::string> out;
  for (const auto& q : g.questions) out.push_back(q.text);
  return out;
}

}  // namespace detail

inline strategy_run run_batch(chat_generator& gen, const question_group& g, const strategy_options& opt) {
  detail::stopwatch clock;
  strategy_run r;
  r.strategy = "batch";
  std::vector<conversation> batch;
  for (std::size_t k = 0; k < g.questions.size(); ++k) batch.push_back(single_question_prompt(g, k, opt.prompt));
  const auto b = gen.generate(batch, opt.max_new_tokens);
  detail::add_cost(r, b);
  r.replies = b.replies;
  for (const auto& s : r.replies) r.answers.push_back(extract_tagged_answer(s));
  r.latency = clock.seconds();
  return r;
}

inline strategy_run run_all_in_one(chat_generator& gen, const question_group& g, const strategy_options& opt) {
  detail::stopwatch clock;
  strategy_run r;
  r.strategy = "all_in_one";
  const auto b = gen.generate({all_in_one_prompt(g, opt.prompt)}, opt.max_new_tokens * int(g.questions.size()));
  detail::add_cost(r, b);
  r.replies.assign(g.questions.size(), b.replies.at(0));
  r.answers = parse_all_in_one(b.replies.at(0), g.questions.size());
  r.latency = clock.seconds();
  return r;
}

inline strategy_run run_sequential(chat_generator& gen, const question_group& g, const strategy_options& opt) {
  detail::stopwatch clock;
  strategy_run r;
  r.strategy = "sequential";
  for (std::size_t k = 0; k < g.questions.size(); ++k) {
    const auto b = gen.generate({sequential_prompt(g, k, r.replies, opt.prompt)}, opt.max_new_tokens);
    detail::add_cost(r, b);
    r.replies.push_back(b.replies.at(0));
    r.answers.push_back(extract_tagged_answer(r.replies.back()));
  }
  r.latency = clock.seconds();
  return r;
}

// Answers the group layer by layer along `edges` (a DAG): each layer one batch, each question with
// its parents' extracted answers in its prompt. Fills replies, answers, cost and dag_edges of `r`.
inline void run_layers(chat_generator& gen, const question_group& g, const std::vector<dependency_edge>& edges,
                       const strategy_options& opt, strategy_run& r) {
  const std::size_t n = g.questions.size();
  r.replies.assign(n, "");
  r.answers.assign(n, {});
  for (const auto& layer : schedule_layers(n, edges)) {
    std::vector<conversation> batch;
    for (std::size_t k : layer) {
      std::vector<known_answer> parents;
      for (const auto& e : edges)
        if (e.child == k) parents.push_back({e.parent, g.questions[e.parent].text, r.answers[e.parent].text});
      std::sort(parents.begin(), parents.end(), [](const known_answer& a, const known_answer& b) { return a.index < b.index; });
      batch.push_back(single_question_prompt(g, k, opt.prompt, parents));
    }
    const auto b = gen.generate(batch, opt.max_new_tokens);
    detail::add_cost(r, b);
    for (std::size_t i = 0; i < layer.size(); ++i) {
      r.replies[layer[i]] = b.replies[i];
      r.answers[layer[i]] = extract_tagged_answer(b.replies[i]);
    }
  }
  r.dag_edges = edges;
}

inline std::vector<dependency_edge> selected(const std::vector<dependency_edge>& candidates, const question_group& g,
                                             const selection_options& opt) {
  std::vector<dependency_edge> out;
  const auto qs = detail::texts(g);
  for (auto& s : select_edges(candidates, qs, std::vector<std::string>(qs.size()), opt)) out.push_back(s.edge);
  return out;
}

inline strategy_run run_collab_llm(chat_generator& gen, const question_group& g, const strategy_options& opt) {
  detail::stopwatch clock;
  strategy_run r;
  r.strategy = "collab_llm";
  std::vector<dependency_edge> candidates;
  if (opt.no_llm_deps || g.questions.size() < 2) {
    candidates = heuristic_dependencies(detail::texts(g));
    r.note = opt.no_llm_deps ? "heuristic dependencies (--no-llm-deps)" : "one question: no dependencies";
  } else {
    const auto b = gen.generate({dependency_request_prompt(g)}, opt.dependency_max_new_tokens);
    detail::add_cost(r, b);
    auto parsed = parse_llm_dependencies(b.replies.at(0), detail::texts(g));
    if (!parsed.from_model) r.note = "model dependencies unparsable (" + parsed.note + "): heuristic used";
    candidates = std::move(parsed.edges);
  }
  run_layers(gen, g, selected(candidates, g, opt.selection), opt, r);
  r.latency = clock.seconds();
  return r;
}

// score(i, j) for the questions of a group (bert_questions::attention_scores).
using attention_score_fn = std::function<std::vector<std::vector<double>>(const std::vector<std::string>&)>;

inline strategy_run run_collab_bert(chat_generator& gen, const question_group& g, const attention_score_fn& scores,
                                    const strategy_options& opt) {
  detail::stopwatch clock;
  strategy_run r;
  r.strategy = "collab_bert";
  const auto candidates = bert_dependencies(scores(detail::texts(g)), opt.bert_attention_threshold);
  selection_options sel = opt.selection;
  sel.min_confidence = opt.bert_attention_threshold;  // the reference's CLI uses it for both
  run_layers(gen, g, selected(candidates, g, sel), opt, r);
  r.latency = clock.seconds();
  return r;
}

// collab_hidden (a mixer) and finetuned (a trained head): one batch, all rows of the group mixing.
template <class T, class D>
strategy_run run_mixed(local_generator<T, D>& gen, const question_group& g, hidden_mixing<T, D>& mixing,
                       const std::string& name, const strategy_options& opt) {
  detail::stopwatch clock;
  strategy_run r;
  r.strategy = name;
  std::vector<conversation> batch;
  for (std::size_t k = 0; k < g.questions.size(); ++k) batch.push_back(single_question_prompt(g, k, opt.prompt));
  const auto b = gen.generate_mixed(batch, opt.max_new_tokens, mixing);
  detail::add_cost(r, b);
  r.replies = b.replies;
  for (const auto& s : r.replies) r.answers.push_back(extract_tagged_answer(s));
  r.latency = clock.seconds();
  return r;
}

}  // namespace crossbatch::pardec
