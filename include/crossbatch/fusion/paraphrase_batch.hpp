// A batch of questions for paraphrase fusion, each with its own number of paraphrases, and the
// prompt forms the methods run on. Every paraphrase's prompt is tokenised on its own (the caller's
// job: ids per paraphrase), so spans are exact in token space.
//   fused_prompts        one segmented_prompt per question: the paraphrase prompts joined by the
//                        separator, each an isolated segment; separator tokens form isolated runs
//                        of their own (they see only their run) that generated tokens see, as
//                        they see every segment. shared_tail = k > 0 takes the last k tokens off
//                        every paraphrase (they must be the same tokens in all, e.g. the "A:" cue)
//                        and appends them once after the last paraphrase as a suffix that sees
//                        every paraphrase: then the first generated token, whose logits come from
//                        the prompt's last position, is predicted from all paraphrases. With k = 0
//                        (the reference's rule taken literally) that position belongs to the last
//                        paraphrase and sees only it, so the first answer token ignores the others.
//   concatenated_prompts the same tokens as plain prompts (causal attention over everything: the
//                        no-isolation ablation)
//   paraphrase_rows      every paraphrase prompt a row of its own, question q owning rows
//                        [offsets[q], offsets[q + 1]) (the ensembles and the single baselines)
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "crossbatch/core/error.hpp"
#include "crossbatch/generate/layout.hpp"

namespace crossbatch {

struct paraphrase_question {
  std::vector<std::vector<int>> paraphrases;  // token ids of each paraphrase's full prompt
};

inline void check_paraphrase_questions(const std::vector<paraphrase_question>& questions) {
  require(!questions.empty(), "paraphrase fusion: no questions");
  for (std::size_t q = 0; q < questions.size(); ++q) {
    require(!questions[q].paraphrases.empty(),
            "paraphrase fusion: question " + std::to_string(q) + " has no paraphrase");
    for (std::size_t p = 0; p < questions[q].paraphrases.size(); ++p)
      require(!questions[q].paraphrases[p].empty(), "paraphrase fusion: question " +
                                                        std::to_string(q) + " paraphrase " +
                                                        std::to_string(p) + " is empty");
  }
}

// The length of the longest token suffix that all paraphrases of q share.
inline int common_tail(const paraphrase_question& q) {
  std::size_t n = q.paraphrases[0].size();
  for (const auto& p : q.paraphrases) n = std::min(n, p.size());
  std::size_t k = 0;
  for (; k < n; ++k) {
    const int id = q.paraphrases[0][q.paraphrases[0].size() - 1 - k];
    bool same = true;
    for (const auto& p : q.paraphrases) same = same && p[p.size() - 1 - k] == id;
    if (!same) break;
  }
  return static_cast<int>(k);
}

// up_to_common: each question's tail is min(shared_tail, common_tail(question)) instead.
inline std::vector<segmented_prompt> fused_prompts(
    const std::vector<paraphrase_question>& questions, const std::vector<int>& separator,
    int shared_tail = 0, bool up_to_common = false) {
  check_paraphrase_questions(questions);
  require(shared_tail >= 0, "paraphrase fusion: shared_tail must be >= 0");
  std::vector<segmented_prompt> out;
  for (std::size_t i = 0; i < questions.size(); ++i) {
    const auto& q = questions[i];
    const std::string where = "paraphrase fusion: question " + std::to_string(i);
    const int tail = up_to_common ? std::min(shared_tail, common_tail(q)) : shared_tail;
    require(common_tail(q) >= tail, where + ": its paraphrases share only their last " +
                                        std::to_string(common_tail(q)) +
                                        " tokens, shared_tail is " + std::to_string(tail));
    std::vector<std::vector<int>> bodies;
    for (const auto& p : q.paraphrases) {
      require(
          static_cast<int>(p.size()) > tail,
          where + ": a paraphrase has no token before its shared tail of " + std::to_string(tail));
      bodies.emplace_back(p.begin(), p.end() - tail);
    }
    const auto& first = q.paraphrases[0];
    out.push_back(segmented_prompt::join({}, bodies, separator,
                                         std::vector<int>(first.end() - tail, first.end())));
  }
  return out;
}

inline std::vector<std::vector<int>> concatenated_prompts(
    const std::vector<paraphrase_question>& questions, const std::vector<int>& separator,
    int shared_tail = 0, bool up_to_common = false) {
  std::vector<std::vector<int>> out;
  for (const auto& p : fused_prompts(questions, separator, shared_tail, up_to_common))
    out.push_back(p.tokens);
  return out;
}

struct paraphrase_rows {
  std::vector<std::vector<int>> prompts;  // (P) one per paraphrase, questions in order
  std::vector<int> offsets;               // (Q + 1) question q owns [offsets[q], offsets[q + 1])
  int questions() const { return static_cast<int>(offsets.size()) - 1; }
  int rows(int q) const { return offsets[q + 1] - offsets[q]; }
};

inline paraphrase_rows paraphrase_rows_of(const std::vector<paraphrase_question>& questions) {
  check_paraphrase_questions(questions);
  paraphrase_rows r;
  r.offsets.push_back(0);
  for (const auto& q : questions) {
    r.prompts.insert(r.prompts.end(), q.paraphrases.begin(), q.paraphrases.end());
    r.offsets.push_back(static_cast<int>(r.prompts.size()));
  }
  return r;
}

}  // namespace crossbatch
