// QuALITY as multiple-choice groups: one group per article. File: JSON Lines of {article_id,
// set_unique_id, title, article, questions: [{question, question_unique_id, options: [4 texts],
// gold_label (1-based), difficult (0/1), ...}]}. hard_only keeps the questions marked difficult
// (--quality-hard-only).
#pragma once

#include <string>
#include <vector>

#include "crossbatch/pardec/json_file.hpp"
#include "crossbatch/pardec/question_group.hpp"

namespace crossbatch::pardec {

inline std::vector<question_group> read_quality_groups(const std::string& path,
                                                       const grouping_options& opt,
                                                       bool hard_only = false) {
  const auto root = read_json_or_jsonl(path);
  const json_at r{root, "", path};
  std::vector<question_group> contexts;
  for (std::size_t i = 0; i < r.array_size(); ++i) {
    const auto rec = r.at(i);
    question_group g;
    g.id = rec.optional_field("set_unique_id") ? rec.field("set_unique_id").string()
                                                 : rec.field("article_id").string();
    g.context = rec.field("article").string();
    g.style = answer_style::multiple_choice;
    const auto qs = rec.field("questions");
    for (std::size_t k = 0; k < qs.array_size(); ++k) {
      const auto q = qs.at(k);
      if (hard_only) {
        const auto d = q.field("difficult");
        if (!(d.value.is_number_integer() ? d.integer() != 0 : d.boolean())) continue;
      }
      group_question gq;
      gq.id = q.optional_field("question_unique_id") ? q.field("question_unique_id").string()
                                                      : g.id + "-" + std::to_string(k);
      gq.text = q.field("question").string();
      const auto options = q.field("options").strings();
      if (options.empty() || options.size() > 6) q.field("options").fail("expected 1 to 6 options");
      for (std::size_t o = 0; o < options.size(); ++o)
        gq.options.push_back({std::string(1, char('A' + o)), options[o]});
      const auto label = q.field("gold_label");
      const std::int64_t gl = label.integer();
      if (gl < 1 || gl > std::int64_t(options.size()))
        label.fail("gold_label " + std::to_string(gl) + " outside 1.." + std::to_string(options.size()));
      gq.answers = {std::string(1, char('A' + gl - 1))};
      gq.source = path + ": " + q.path;
      g.questions.push_back(std::move(gq));
    }
    contexts.push_back(std::move(g));
  }
  return sample_context_groups(std::move(contexts), opt);
}

}  // namespace crossbatch::pardec
