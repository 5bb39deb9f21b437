// DROP as question groups: one group per passage. File: {passage_id: {passage, qa_pairs: [{question,
// query_id, answer: {number, date: {day, month, year}, spans: [...]}, validated_answers: [...]}],
// wiki_url}}. A gold answer is the number, else the spans joined by ", ", else the date as
// "day month year" of its non-empty parts; validated answers add golds.
#pragma once

#include <string>
#include <vector>

#include "crossbatch/pardec/json_file.hpp"
#include "crossbatch/pardec/question_group.hpp"

namespace crossbatch::pardec {

// One DROP answer object as text; "" when all its parts are empty.
inline std::string drop_answer_text(const json_at& a) {
  if (auto n = a.optional_field("number")) {
    const std::string s = string_or_number(*n);
    if (!s.empty()) return s;
  }
  if (auto spans = a.optional_field("spans")) {
    std::string out;
    for (const auto& s : spans->strings()) out += (out.empty() ? "" : ", ") + s;
    if (!out.empty()) return out;
  }
  if (auto d = a.optional_field("date")) {
    std::string out;
    for (const char* k : {"day", "month", "year"})
      if (auto v = d->optional_field(k)) {
        const std::string s = string_or_number(*v);
        if (!s.empty()) out += (out.empty() ? "" : " ") + s;
      }
    return out;
  }
  return "";
}

inline std::vector<question_group> read_drop_groups(const std::string& path,
                                                    const grouping_options& opt) {
  const auto root = read_json_file(path);
  const json_at r{root, "", path};
  r.expect(root.is_object(), "an object {passage_id: record}");
  std::vector<question_group> contexts;
  for (const auto& [pid, _] : root.items()) {
    const auto rec = r.field(pid);
    question_group g;
    g.id = pid;
    g.context = rec.field("passage").string();
    g.style = answer_style::short_answer;
    const auto qa = rec.field("qa_pairs");
    for (std::size_t i = 0; i < qa.array_size(); ++i) {
      const auto q = qa.at(i);
      group_question gq;
      gq.id = q.field("query_id").string();
      gq.text = q.field("question").string();
      if (auto t = drop_answer_text(q.field("answer")); !t.empty()) gq.answers.push_back(t);
      if (auto v = q.optional_field("validated_answers"))
        for (std::size_t k = 0; k < v->array_size(); ++k)
          if (auto t = drop_answer_text(v->at(k));
              !t.empty() && std::find(gq.answers.begin(), gq.answers.end(), t) == gq.answers.end())
            gq.answers.push_back(t);
      if (gq.answers.empty()) q.field("answer").fail("no number, spans or date");
      gq.source = path + ": " + q.path;
      g.questions.push_back(std::move(gq));
    }
    contexts.push_back(std::move(g));
  }
  return sample_context_groups(std::move(contexts), opt);
}

}  // namespace crossbatch::pardec
