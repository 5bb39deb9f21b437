// SQuAD v1.1 / v2.0 (eval/squad.hpp reads the file) and QuAC as question groups: one group per
// paragraph. SQuAD v2.0's unanswerable questions take the gold answer "unknown", the word the
// SQuAD prompt allows. QuAC (SQuAD-shaped, one dialogue per paragraph, answers "CANNOTANSWER" when
// the section has none) keeps the turns in dialogue order: later questions refer to earlier ones.
#pragma once

#include <string>
#include <vector>

#include "crossbatch/eval/squad.hpp"
#include "crossbatch/pardec/json_file.hpp"
#include "crossbatch/pardec/question_group.hpp"

namespace crossbatch::pardec {

inline constexpr const char* unknown_answer = "unknown";

inline std::vector<question_group> squad_contexts(const squad_dataset& ds) {
  std::vector<question_group> out;
  for (const auto* p : ds.groups()) {
    question_group g;
    g.id = p->path;
    g.context = p->context;
    g.style = answer_style::extractive;
    for (const auto& q : p->qas) {
      group_question gq;
      gq.id = q.id;
      gq.text = q.question;
      gq.answers = q.answer_texts();
      if (gq.answers.empty()) {
        if (!ds.is_v2() && !q.is_impossible)
          throw format_error(ds.source + ": " + q.path + ".answers: empty in a SQuAD v1.1 file");
        gq.answers = {unknown_answer};
      }
      gq.source = ds.source + ": " + q.path;
      g.questions.push_back(std::move(gq));
    }
    out.push_back(std::move(g));
  }
  return out;
}

inline std::vector<question_group> read_squad_groups(const std::string& path,
                                                     const grouping_options& opt) {
  return sample_context_groups(squad_contexts(read_squad(path)), opt);
}

// QuAC: data[i].paragraphs[j] = {context, id, qas: [{id, question, answers, orig_answer, followup,
// yesno}]}. The gold answers are orig_answer.text plus the other annotators' texts.
inline std::vector<question_group> read_quac_groups(const std::string& path, grouping_options opt) {
  const auto root = read_json_file(path);
  const json_at r{root, "", path};
  const auto data = r.field("data");
  std::vector<question_group> contexts;
  for (std::size_t i = 0; i < data.array_size(); ++i) {
    const auto article = data.at(i);
    const auto paragraphs = article.field("paragraphs");
    for (std::size_t j = 0; j < paragraphs.array_size(); ++j) {
      const auto p = paragraphs.at(j);
      question_group g;
      g.id = p.optional_field("id") ? p.field("id").string() : p.path;
      g.context = p.field("context").string();
      g.style = answer_style::extractive;
      const auto qas = p.field("qas");
      for (std::size_t k = 0; k < qas.array_size(); ++k) {
        const auto q = qas.at(k);
        group_question gq;
        gq.id = q.field("id").string();
        gq.text = q.field("question").string();
        if (auto orig = q.optional_field("orig_answer")) gq.answers.push_back(orig->field("text").string());
        const auto answers = q.field("answers");
        for (std::size_t a = 0; a < answers.array_size(); ++a) {
          std::string t = answers.at(a).field("text").string();
          if (std::find(gq.answers.begin(), gq.answers.end(), t) == gq.answers.end())
            gq.answers.push_back(std::move(t));
        }
        if (gq.answers.empty()) q.fail("no answers and no orig_answer");
        gq.source = path + ": " + q.path;
        g.questions.push_back(std::move(gq));
      }
      contexts.push_back(std::move(g));
    }
  }
  opt.shuffle_questions = false;
  return sample_context_groups(std::move(contexts), opt);
}

}  // namespace crossbatch::pardec
