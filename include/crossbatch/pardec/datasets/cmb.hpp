// CMB (Chinese Medical Benchmark). CMB-Exam: a JSON list of multiple-choice records {exam_type,
// exam_class, exam_subject, question, answer ("B", or "ACD" for multiple answers), question_type,
// option: {"A": text, ...}}, grouped at random, by subdomain (exam_subject) or, for the grouped
// variant, by shared background: [{background, questions: [CMB-Exam records]}] (our reading of
// the grouped files: the reference's schema of CMB-Exam-Grouped is not published in its docs).
// CMB-Clin: a JSON list of clinical cases {id, title, description, QA_pairs: [{question, solution}]},
// one group per case, long-form answers.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "crossbatch/pardec/json_file.hpp"
#include "crossbatch/pardec/question_group.hpp"

namespace crossbatch::pardec {

enum class cmb_grouping { random, subdomain, context };

inline cmb_grouping parse_cmb_grouping(const std::string& s) {
  if (s == "random") return cmb_grouping::random;
  if (s == "subdomain") return cmb_grouping::subdomain;
  if (s == "context") return cmb_grouping::context;
  throw value_error("CMB-Exam grouping '" + s + "': expected random, subdomain or context");
}

inline group_question cmb_exam_question(const json_at& rec, const std::string& path) {
  group_question q;
  q.id = rec.optional_field("id") ? string_or_number(rec.field("id")) : rec.path;
  q.text = rec.field("question").string();
  const auto opts = rec.field("option");
  opts.expect(opts.value.is_object(), "an object {letter: text}");
  for (const auto& [letter, _] : opts.value.items()) {
    if (letter.size() != 1 || letter[0] < 'A' || letter[0] > 'F')
      throw format_error(path + ": " + opts.child(letter) + ": option letter outside A-F");
    const std::string text = opts.field(letter).string();
    if (!text.empty()) q.options.push_back({letter, text});
  }
  if (q.options.empty()) opts.fail("no options");
  const auto a = rec.field("answer");
  const std::string answer = a.string();
  if (answer.empty()) a.fail("empty answer");
  for (char c : answer)
    if (std::none_of(q.options.begin(), q.options.end(),
                     [&](const choice_option& o) { return o.letter[0] == c; }))
      a.fail(std::string("answer letter '") + c + "' is not an option");
  q.answers = {answer};
  q.source = path + ": " + rec.path;
  return q;
}

inline std::vector<question_group> read_cmb_exam_groups(const std::string& path, cmb_grouping grouping,
                                                        const grouping_options& opt) {
  const auto root = read_json_file(path);
  const json_at r{root, "", path};
  if (grouping == cmb_grouping::context) {
    std::vector<question_group> contexts;
    for (std::size_t i = 0; i < r.array_size(); ++i) {
      const auto rec = r.at(i);
      question_group g;
      g.id = rec.optional_field("id") ? string_or_number(rec.field("id")) : rec.path;
      g.context = rec.field("background").string();
      g.style = answer_style::multiple_choice;
      const auto qs = rec.field("questions");
      for (std::size_t k = 0; k < qs.array_size(); ++k) g.questions.push_back(cmb_exam_question(qs.at(k), path));
      contexts.push_back(std::move(g));
    }
    return sample_context_groups(std::move(contexts), opt);
  }
  std::vector<group_question> pool;
  std::map<std::string, std::vector<group_question>> by_subject;
  for (std::size_t i = 0; i < r.array_size(); ++i) {
    const auto rec = r.at(i);
    auto q = cmb_exam_question(rec, path);
    if (grouping == cmb_grouping::subdomain)
      by_subject[rec.field("exam_subject").string()].push_back(std::move(q));
    else
      pool.push_back(std::move(q));
  }
  if (grouping == cmb_grouping::random)
    return chunk_questions(std::move(pool), "cmb-random-", answer_style::multiple_choice, opt);
  // Subdomain: each subject's questions chunked; the groups of all subjects sampled as contexts.
  std::vector<question_group> all;
  grouping_options per = opt;
  per.context_count = 0;
  for (auto& [subject, qs] : by_subject)
    for (auto& g : chunk_questions(std::move(qs), "cmb-" + subject + "-", answer_style::multiple_choice, per))
      all.push_back(std::move(g));
  grouping_options pick = opt;
  pick.shuffle_questions = false;
  return sample_context_groups(std::move(all), pick);
}

inline std::vector<question_group> read_cmb_clin_groups(const std::string& path,
                                                        const grouping_options& opt) {
  const auto root = read_json_file(path);
  const json_at r{root, "", path};
  std::vector<question_group> contexts;
  for (std::size_t i = 0; i < r.array_size(); ++i) {
    const auto rec = r.at(i);
    question_group g;
    g.id = rec.optional_field("id") ? string_or_number(rec.field("id")) : rec.path;
    g.context = rec.field("description").string();
    g.style = answer_style::long_form;
    const auto qa = rec.field("QA_pairs");
    for (std::size_t k = 0; k < qa.array_size(); ++k) {
      const auto q = qa.at(k);
      group_question gq;
      gq.id = g.id + "-" + std::to_string(k);
      gq.text = q.field("question").string();
      gq.answers = {q.field("solution").string()};
      gq.source = path + ": " + q.path;
      g.questions.push_back(std::move(gq));
    }
    contexts.push_back(std::move(g));
  }
  grouping_options keep = opt;
  keep.shuffle_questions = false;  // a case's questions follow the consultation
  return sample_context_groups(std::move(contexts), keep);
}

}  // namespace crossbatch::pardec
