// Scores a prediction file against a SQuAD data set as the official evaluate scripts do: per
// question EM/F1 (and lenient), corpus means x100, and v2.0's HasAns / NoAns breakdown.
// Predictions are a JSON object {question id: answer text}, the official prediction format.
#pragma once

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "crossbatch/core/error.hpp"
#include "crossbatch/eval/squad.hpp"
#include "crossbatch/eval/squad_metrics.hpp"

namespace crossbatch {

using prediction_map = std::unordered_map<std::string, std::string>;

// Reads {"<question id>": "<answer text>", ...}. Throws io_error / format_error naming the file and
// the offending id.
inline prediction_map read_predictions(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw io_error(path + ": cannot open for reading");
  std::ostringstream buffer;
  buffer << f.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(buffer.str());
  } catch (const nlohmann::json::parse_error& e) {
    throw format_error(path + ": not valid JSON: " + e.what());
  }
  if (!j.is_object())
    throw format_error(path + ": (root): expected an object {id: answer}, got " + j.type_name());
  prediction_map out;
  for (const auto& [id, text] : j.items()) {
    if (!text.is_string())
      throw format_error(path + ": " + id + ": expected a string answer, got " + text.type_name());
    out.emplace(id, text.get<std::string>());
  }
  return out;
}

struct question_score {
  std::string id;
  bool answered = false;    // a prediction was given (unanswered questions score 0)
  bool has_answer = false;  // the question has gold answers (v2.0 HasAns)
  answer_scores scores;
};

// Corpus means are percentages (x100), over all questions of the data set.
struct squad_evaluation {
  squad_rules rules = squad_rules::v1_1;
  std::vector<question_score> questions;  // in file order
  double exact_match = 0, f1 = 0, lenient = 0;
  std::size_t total = 0, answered = 0;
  // v2.0 breakdown: questions with gold answers (HasAns) and without (NoAns).
  double has_ans_exact = 0, has_ans_f1 = 0, no_ans_exact = 0, no_ans_f1 = 0;
  std::size_t has_ans_total = 0, no_ans_total = 0;
};

// The official rules for a data set: v2_0 for version "2.x" files, v1_1 otherwise.
inline squad_rules rules_for(const squad_dataset& ds) {
  return ds.is_v2() ? squad_rules::v2_0 : squad_rules::v1_1;
}

// Scores every question of `ds` against `predictions`. Unanswered questions score 0 and count in
// the totals (the v1.1 script's behaviour). Predictions for ids not in the data set are ignored.
inline squad_evaluation evaluate_squad(const squad_dataset& ds, const prediction_map& predictions,
                                       squad_rules rules,
                                       lenient_mode mode = lenient_mode::gold_in_prediction) {
  squad_evaluation ev;
  ev.rules = rules;
  std::vector<double> em, f1, lenient, has_em, has_f1, no_em, no_f1;
  for (const auto* group : ds.groups()) {
    for (const auto& q : group->qas) {
      question_score s;
      s.id = q.id;
      s.has_answer = !q.answers.empty();
      const auto it = predictions.find(q.id);
      s.answered = it != predictions.end();
      if (s.answered) {
        if (rules == squad_rules::v1_1 && q.answers.empty())
          throw value_error(ds.source + ": " + q.path +
                            ": no gold answers, which SQuAD v1.1 rules "
                            "cannot score (use squad_rules::v2_0)");
        s.scores = score_answer(it->second, q.answer_texts(), rules, mode);
        ++ev.answered;
      }
      em.push_back(s.scores.exact_match);
      f1.push_back(s.scores.f1);
      lenient.push_back(s.scores.lenient);
      (s.has_answer ? has_em : no_em).push_back(s.scores.exact_match);
      (s.has_answer ? has_f1 : no_f1).push_back(s.scores.f1);
      ev.questions.push_back(std::move(s));
    }
  }
  ev.total = em.size();
  ev.exact_match = mean_percent(em);
  ev.f1 = mean_percent(f1);
  ev.lenient = mean_percent(lenient);
  ev.has_ans_total = has_em.size();
  ev.has_ans_exact = mean_percent(has_em);
  ev.has_ans_f1 = mean_percent(has_f1);
  ev.no_ans_total = no_em.size();
  ev.no_ans_exact = mean_percent(no_em);
  ev.no_ans_f1 = mean_percent(no_f1);
  return ev;
}

inline squad_evaluation evaluate_squad(const squad_dataset& ds, const prediction_map& predictions) {
  return evaluate_squad(ds, predictions, rules_for(ds));
}

}  // namespace crossbatch
