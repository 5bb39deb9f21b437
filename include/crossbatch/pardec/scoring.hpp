// Scores of one strategy's answers to a group by the group's answer style, and their aggregates:
// extractive / short answers: tag-gated EM, F1, lenient (eval/tagged_metrics.hpp); multiple choice:
// choice accuracy (the first A-F letter of the extracted answer); long form: character BLEU-4 and
// ROUGE-1/2/L F. At run time there is no jieba in C++: long-form ROUGE on Chinese counts each CJK
// character as a token (plus rouge-score's [a-z0-9] runs); tests/pardec/test_metrics checks ROUGE
// on jieba segmentations given by tools/make_pardec_metric_fixtures.py.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "crossbatch/eval/bleu.hpp"
#include "crossbatch/eval/rouge.hpp"
#include "crossbatch/eval/tagged_metrics.hpp"
#include "crossbatch/pardec/edge_selection.hpp"
#include "crossbatch/pardec/question_group.hpp"

namespace crossbatch::pardec {

// Metric name -> value in [0, 1] for one answer.
using metric_values = std::map<std::string, double>;

inline std::vector<std::string> long_form_tokens(std::string_view text) {
  std::vector<std::string> out;
  std::string ascii;
  auto flush = [&] {
    for (auto& t : rouge_tokenize(ascii)) out.push_back(std::move(t));
    ascii.clear();
  };
  for (char32_t c : unicode::decode_utf8(text)) {
    if (is_cjk(c)) {
      flush();
      std::string s;
      unicode::append_utf8(s, c);
      out.push_back(std::move(s));
    } else {
      unicode::append_utf8(ascii, c);
    }
  }
  flush();
  return out;
}

inline metric_values score_question(const group_question& q, const tagged_answer& a, answer_style style) {
  metric_values m;
  switch (style) {
    case answer_style::extractive:
    case answer_style::short_answer: {
      const auto s = score_tagged(a, q.answers);
      m["strict_acc"] = s.exact_match;
      m["f1"] = s.f1;
      m["lenient_acc"] = s.lenient;
      break;
    }
    case answer_style::multiple_choice:
      m["acc"] = choice_correct(a.text, q.answers.at(0)) ? 1.0 : 0.0;
      break;
    case answer_style::long_form: {
      const std::string& gold = q.answers.at(0);
      m["bleu4"] = char_bleu4(gold, a.text);
      const auto r = rouge_all(long_form_tokens(gold), long_form_tokens(a.text));
      m["rouge1"] = r.rouge1.fmeasure;
      m["rouge2"] = r.rouge2.fmeasure;
      m["rougeL"] = r.rougeL.fmeasure;
      break;
    }
  }
  return m;
}

// Sums for the aggregate table: metrics weighted by question count, tokens / latency / batches
// averaged per group (the reference's aggregation).
struct strategy_totals {
  std::map<std::string, double> metric_sum;
  long questions = 0, groups = 0;
  double prompt_tokens = 0, generated_tokens = 0, latency = 0, batches = 0;

  void add_group(const std::vector<metric_values>& per_question, long prompt, long generated, double seconds,
                 int n_batches) {
    for (const auto& m : per_question)
      for (const auto& [k, v] : m) metric_sum[k] += v;
    questions += long(per_question.size());
    ++groups;
    prompt_tokens += double(prompt);
    generated_tokens += double(generated);
    latency += seconds;
    batches += n_batches;
  }
  double metric(const std::string& k) const {
    const auto it = metric_sum.find(k);
    return it == metric_sum.end() || questions == 0 ? 0.0 : it->second / double(questions);
  }
  nlohmann::json to_json() const {
    nlohmann::json metrics = nlohmann::json::object();
    for (const auto& [k, _] : metric_sum) metrics[k] = metric(k);
    const double g = groups ? double(groups) : 1.0;
    return {{"metrics", metrics},
            {"questions", questions},
            {"contexts", groups},
            {"avg_prompt_tokens", prompt_tokens / g},
            {"avg_generated_tokens", generated_tokens / g},
            {"avg_latency", latency / g},
            {"avg_batches", batches / g}};
  }
};

}  // namespace crossbatch::pardec
