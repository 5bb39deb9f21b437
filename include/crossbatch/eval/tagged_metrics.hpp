// The parallel-decoding experiments' per-answer metrics: SQuAD-normalised EM that counts only when
// the answer tag was found, token F1 and lenient match (either normalised string contains the
// other) on the extracted text, and multiple-choice accuracy by the first option letter A-F.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "crossbatch/eval/answer_tag.hpp"
#include "crossbatch/eval/squad_metrics.hpp"

namespace crossbatch {

// Scores one extracted answer against the gold answers (max over them). EM is 0 when the tag was
// missing (the reference's strict metric); F1 and lenient use the extracted text either way.
inline answer_scores score_tagged(const tagged_answer& answer, const std::vector<std::string>& golds,
                                  squad_rules rules = squad_rules::v1_1) {
  answer_scores s = score_answer(answer.text, golds, rules, lenient_mode::either_contains);
  if (!answer.found) s.exact_match = 0;
  return s;
}

inline answer_scores score_reply(std::string_view reply, const std::vector<std::string>& golds,
                                 squad_rules rules = squad_rules::v1_1) {
  return score_tagged(extract_tagged_answer(reply), golds, rules);
}

// The first capital letter A-F of the text ('\0' for none): the reference's choice extraction.
inline char first_choice_letter(std::string_view text, std::string_view letters = "ABCDEF") {
  for (char c : text)
    if (letters.find(c) != std::string_view::npos) return c;
  return '\0';
}

// Choice accuracy of one answer: its first option letter is the gold letter (the first letter of
// `gold`, as the reference compares single-answer questions).
inline bool choice_correct(std::string_view answer, std::string_view gold,
                           std::string_view letters = "ABCDEF") {
  const char g = first_choice_letter(gold, letters);
  return g != '\0' && first_choice_letter(answer, letters) == g;
}

}  // namespace crossbatch
