// HotpotQA (distractor setting) as multi-context groups: every question keeps its own ten
// paragraphs ("Title: sentences"), and independent questions are grouped at random.
// File: [{_id, question, answer, context: [[title, [sentence, ...]], ...], supporting_facts, type,
// level}].
#pragma once

#include <string>
#include <vector>

#include "crossbatch/pardec/json_file.hpp"
#include "crossbatch/pardec/question_group.hpp"

namespace crossbatch::pardec {

// The paragraphs of one record as the prompt shows them: "Title: s1 s2 ..." separated by blank
// lines (HotpotQA's sentences carry their own leading spaces, so they are concatenated as is).
inline std::string hotpot_context(const json_at& context) {
  std::string out;
  for (std::size_t i = 0; i < context.array_size(); ++i) {
    const auto para = context.at(i);
    if (para.array_size() != 2) para.fail("expected [title, [sentences]]");
    std::string text = para.at(0).string() + ": ";
    const auto sents = para.at(1);
    for (std::size_t s = 0; s < sents.array_size(); ++s) text += sents.at(s).string();
    if (!out.empty()) out += "\n\n";
    out += text;
  }
  return out;
}

inline std::vector<question_group> read_hotpot_groups(const std::string& path,
                                                      const grouping_options& opt) {
  const auto root = read_json_file(path);
  const json_at r{root, "", path};
  std::vector<group_question> pool;
  for (std::size_t i = 0; i < r.array_size(); ++i) {
    const auto rec = r.at(i);
    group_question q;
    q.id = rec.field("_id").string();
    q.text = rec.field("question").string();
    q.answers = {rec.field("answer").string()};
    q.context = hotpot_context(rec.field("context"));
    q.source = path + ": " + rec.path;
    pool.push_back(std::move(q));
  }
  return chunk_questions(std::move(pool), "hotpot-", answer_style::extractive, opt);
}

}  // namespace crossbatch::pardec
