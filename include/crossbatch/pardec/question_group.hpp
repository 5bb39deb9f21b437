// The unit of the parallel-decoding experiments: a group of related questions answered together,
// either about one shared context (SQuAD, QuAC, DROP, QuALITY, CMB-Clin, CMB-Exam with a shared
// background) or each with its own context (HotpotQA: multi-context mode), or with none (TriviaQA,
// CMB-Exam random / subdomain). Also the seeded sampling that turns a data set into groups.
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "crossbatch/core/error.hpp"

namespace crossbatch::pardec {

// What the gold answers are and so which metrics apply.
enum class answer_style {
  extractive,       // a span of the context (SQuAD, QuAC, HotpotQA): EM / F1 / lenient
  short_answer,     // a short free answer (DROP, TriviaQA): EM / F1 / lenient
  multiple_choice,  // an option letter (QuALITY, CMB-Exam): choice accuracy
  long_form,        // a paragraph (CMB-Clin): BLEU-4 / ROUGE
};

inline const char* style_name(answer_style s) {
  switch (s) {
    case answer_style::extractive: return "extractive";
    case answer_style::short_answer: return "short_answer";
    case answer_style::multiple_choice: return "multiple_choice";
    case answer_style::long_form: return "long_form";
  }
  return "?";
}

struct choice_option {
  std::string letter;  // "A".."F"
  std::string text;
};

struct group_question {
  std::string id;                      // the data set's question id
  std::string text;                    // the question, without its options
  std::vector<choice_option> options;  // multiple choice only
  std::vector<std::string> answers;    // gold texts; multiple choice: the correct letter(s)
  std::string context;                 // its own context (multi-context groups), else ""
  std::string source;                  // "file: record path", for messages
};

struct question_group {
  std::string id;
  std::string context;  // the shared background ("" in multi-context or context-free groups)
  answer_style style = answer_style::extractive;
  std::vector<group_question> questions;

  // Each question carries its own context (HotpotQA-style data).
  bool multi_context() const {
    return std::any_of(questions.begin(), questions.end(),
                       [](const group_question& q) { return !q.context.empty(); });
  }
};

// How many groups and how many questions each (the reference's --context-count, --min-questions,
// --max-questions, --seed).
struct grouping_options {
  int context_count = 0;  // groups to return; 0: all that qualify
  int min_questions = 3;
  int max_questions = 5;
  std::uint64_t seed = 13;
  bool shuffle_questions = true;  // false keeps file order (QuAC dialogues build turn on turn)

  void check() const {
    require(min_questions >= 1, "grouping: --min-questions must be >= 1");
    require(max_questions >= min_questions, "grouping: --max-questions must be >= --min-questions");
    require(context_count >= 0, "grouping: --context-count must be >= 0");
  }
};

// A seeded generator whose draws are the same on every platform (mt19937_64 is specified; the
// standard distributions are not, so draws are taken modulo).
class group_rng {
 public:
  explicit group_rng(std::uint64_t seed) : m_gen(seed) {}
  std::size_t below(std::size_t n) { return n <= 1 ? 0 : static_cast<std::size_t>(m_gen() % n); }
  int between(int lo, int hi) { return lo + static_cast<int>(below(std::size_t(hi - lo + 1))); }
  template <class V>
  void shuffle(V& v) {  // Fisher-Yates
    for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(i)]);
  }

 private:
  std::mt19937_64 m_gen;
};

// Groups from contexts that each hold their own questions: contexts with at least min_questions,
// in a seeded random order, each cut to its first max_questions (questions shuffled first unless
// opt.shuffle_questions is false), until context_count groups.
inline std::vector<question_group> sample_context_groups(std::vector<question_group> contexts,
                                                         const grouping_options& opt) {
  opt.check();
  group_rng rng(opt.seed);
  std::vector<question_group> eligible;
  for (auto& g : contexts)
    if (int(g.questions.size()) >= opt.min_questions) eligible.push_back(std::move(g));
  rng.shuffle(eligible);
  std::vector<question_group> out;
  for (auto& g : eligible) {
    if (opt.context_count && int(out.size()) >= opt.context_count) break;
    if (opt.shuffle_questions) rng.shuffle(g.questions);
    if (int(g.questions.size()) > opt.max_questions) g.questions.resize(opt.max_questions);
    out.push_back(std::move(g));
  }
  return out;
}

// Groups of independent questions: the pool shuffled, cut into chunks of sizes drawn from
// [min, max]; a last chunk smaller than min_questions is dropped.
inline std::vector<question_group> chunk_questions(std::vector<group_question> pool,
                                                   const std::string& id_prefix, answer_style style,
                                                   const grouping_options& opt) {
  opt.check();
  group_rng rng(opt.seed);
  if (opt.shuffle_questions) rng.shuffle(pool);
  std::vector<question_group> out;
  std::size_t at = 0;
  while (at < pool.size()) {
    if (opt.context_count && int(out.size()) >= opt.context_count) break;
    const std::size_t k = std::min<std::size_t>(pool.size() - at, rng.between(opt.min_questions, opt.max_questions));
    if (int(k) < opt.min_questions) break;
    question_group g;
    g.id = id_prefix + std::to_string(out.size());
    g.style = style;
    g.questions.assign(std::make_move_iterator(pool.begin() + at),
                       std::make_move_iterator(pool.begin() + at + k));
    at += k;
    out.push_back(std::move(g));
  }
  return out;
}

}  // namespace crossbatch::pardec
