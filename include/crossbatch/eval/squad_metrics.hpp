// Answer metrics of the official SQuAD scripts: answer normalisation, exact match, token F1 (max
// over the gold answers; v2.0's no-answer rules), plus a lenient containment match, per answer and
// averaged over a corpus (x100, as the official script prints them).
#pragma once

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "crossbatch/core/error.hpp"
#include "crossbatch/eval/unicode.hpp"

namespace crossbatch {

// Which official script's rules to follow.
//  v1_1: F1 of an empty prediction against an empty gold is 0; a question needs >= 1 gold answer.
//  v2_0: gold answers that normalise to "" are dropped; none left means the only correct answer is
//        "" (no answer), and F1 is 1 when prediction and gold are both empty, 0 when one is.
enum class squad_rules { v1_1, v2_0 };

// How lenient_match compares normalised strings.
//  gold_in_prediction: the gold answer occurs in the prediction (as a substring).
//  either_contains: either one occurs in the other (the parallel-decoding experiments' "Lenient").
enum class lenient_mode { gold_in_prediction, either_contains };

namespace detail {

inline bool is_ascii_punctuation(char32_t cp) {  // Python's string.punctuation
  return (cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) || (cp >= 0x5B && cp <= 0x60) ||
         (cp >= 0x7B && cp <= 0x7E);
}

inline bool is_article(std::u32string_view w) { return w == U"a" || w == U"an" || w == U"the"; }

}  // namespace detail

// The official normalize_answer: lower-case, drop string.punctuation, replace the words a/an/the
// by a space (re's \b(a|an|the)\b, with Unicode \w), then ' '.join(text.split()). Python's
// semantics throughout: Unicode lower-casing, Unicode whitespace, no Unicode normalisation (NFC).
inline std::string normalize_answer(std::string_view text) {
  const std::u32string lowered = unicode::to_lower(unicode::decode_utf8(text));
  std::u32string no_punct;
  no_punct.reserve(lowered.size());
  for (char32_t cp : lowered)
    if (!detail::is_ascii_punctuation(cp)) no_punct.push_back(cp);
  // An article matches exactly a maximal run of word characters equal to a, an or the.
  std::u32string no_articles;
  no_articles.reserve(no_punct.size());
  for (std::size_t i = 0; i < no_punct.size();) {
    if (!unicode::is_word(no_punct[i])) {
      no_articles.push_back(no_punct[i++]);
      continue;
    }
    std::size_t j = i;
    while (j < no_punct.size() && unicode::is_word(no_punct[j])) ++j;
    const std::u32string_view word(no_punct.data() + i, j - i);
    if (detail::is_article(word))
      no_articles.push_back(U' ');
    else
      no_articles.append(word);
    i = j;
  }
  std::string out;
  out.reserve(text.size());
  bool pending_space = false;
  for (char32_t cp : no_articles) {
    if (unicode::is_space(cp)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    unicode::append_utf8(out, cp);
  }
  return out;
}

// normalize_answer(text).split(): the tokens F1 counts. A normalised string holds single ' '.
inline std::vector<std::string> split_normalized(std::string_view normalized) {
  std::vector<std::string> tokens;
  std::size_t i = 0;
  while (i < normalized.size()) {
    const std::size_t j = std::min(normalized.find(' ', i), normalized.size());
    tokens.emplace_back(normalized.substr(i, j - i));
    i = j + 1;
  }
  return tokens;
}

namespace detail {

// Token F1 of two token lists (the Counter intersection of the official f1_score), with the rules'
// empty-answer convention.
inline double token_f1(std::vector<std::string> pred, std::vector<std::string> gold,
                       squad_rules rules) {
  if (rules == squad_rules::v2_0 && (pred.empty() || gold.empty()))
    return pred.empty() && gold.empty() ? 1.0 : 0.0;
  std::sort(pred.begin(), pred.end());
  std::sort(gold.begin(), gold.end());
  std::size_t num_same = 0;
  for (std::size_t i = 0, j = 0; i < pred.size() && j < gold.size();) {
    if (pred[i] < gold[j]) {
      ++i;
    } else if (gold[j] < pred[i]) {
      ++j;
    } else {
      ++num_same;
      ++i;
      ++j;
    }
  }
  if (num_same == 0) return 0.0;
  const double precision = 1.0 * static_cast<double>(num_same) / static_cast<double>(pred.size());
  const double recall = 1.0 * static_cast<double>(num_same) / static_cast<double>(gold.size());
  return (2 * precision * recall) / (precision + recall);
}

inline bool contains_normalized(std::string_view outer, std::string_view inner) {
  return outer.find(inner) != std::string_view::npos;
}

// Both arguments already normalised. An empty string only matches an empty string.
inline bool lenient_normalized(std::string_view pred, std::string_view gold, lenient_mode mode) {
  if (pred.empty() || gold.empty()) return pred.empty() && gold.empty();
  if (contains_normalized(pred, gold)) return true;
  return mode == lenient_mode::either_contains && contains_normalized(gold, pred);
}

}  // namespace detail

// The official exact_match_score: normalised strings are equal.
inline bool exact_match(std::string_view prediction, std::string_view gold) {
  return normalize_answer(prediction) == normalize_answer(gold);
}

// The official f1_score (v1_1) or compute_f1 (v2_0) of one prediction against one gold answer.
inline double f1_score(std::string_view prediction, std::string_view gold,
                       squad_rules rules = squad_rules::v1_1) {
  return detail::token_f1(split_normalized(normalize_answer(prediction)),
                          split_normalized(normalize_answer(gold)), rules);
}

// The normalised gold answer is contained in the normalised prediction (or, with either_contains,
// one in the other). Catches verbose but correct generations that exact match rejects.
inline bool lenient_match(std::string_view prediction, std::string_view gold,
                          lenient_mode mode = lenient_mode::gold_in_prediction) {
  return detail::lenient_normalized(normalize_answer(prediction), normalize_answer(gold), mode);
}

// One prediction's scores, each the max over the gold answers (metric_max_over_ground_truths);
// exact_match and lenient are 0 or 1.
struct answer_scores {
  double exact_match = 0;
  double f1 = 0;
  double lenient = 0;
};

// Scores a prediction against a question's gold answers under the given rules. v1_1 needs at least
// one gold answer (the official script fails on none); v2_0 treats none as "no answer".
inline answer_scores score_answer(std::string_view prediction,
                                  const std::vector<std::string>& golds,
                                  squad_rules rules = squad_rules::v1_1,
                                  lenient_mode mode = lenient_mode::gold_in_prediction) {
  std::vector<std::string> normalized_golds;
  for (const auto& g : golds) {
    std::string n = normalize_answer(g);
    if (rules == squad_rules::v2_0 && n.empty()) continue;
    normalized_golds.push_back(std::move(n));
  }
  if (normalized_golds.empty()) {
    require(rules == squad_rules::v2_0,
            "score_answer: no gold answers (SQuAD v1.1 rules need at least one)");
    normalized_golds.emplace_back();
  }
  const std::string pred = normalize_answer(prediction);
  const auto pred_tokens = split_normalized(pred);
  answer_scores s;
  for (const auto& g : normalized_golds) {
    s.exact_match = std::max(s.exact_match, pred == g ? 1.0 : 0.0);
    s.f1 = std::max(s.f1, detail::token_f1(pred_tokens, split_normalized(g), rules));
    s.lenient = std::max(s.lenient, detail::lenient_normalized(pred, g, mode) ? 1.0 : 0.0);
  }
  return s;
}

// Corpus score as the official script prints it: 100 * sum / count (0 for an empty corpus).
inline double mean_percent(const std::vector<double>& scores) {
  if (scores.empty()) return 0.0;
  double sum = 0;
  for (double s : scores) sum += s;  // in order, as the official script accumulates
  return 100.0 * sum / static_cast<double>(scores.size());
}

}  // namespace crossbatch
