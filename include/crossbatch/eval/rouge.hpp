// ROUGE-N and ROUGE-L with the semantics of Google's rouge-score package (precision, recall and F
// per pair; n-gram overlap with clipped counts; LCS for ROUGE-L; an empty side scores 0). Tokens
// come either from rouge-score's default tokeniser (lower case, runs of [a-z0-9]) or are given
// pre-segmented (Chinese text cut by jieba, as the CMB-Clin evaluation does).
#pragma once

#include <algorithm>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "crossbatch/core/error.hpp"
#include "crossbatch/eval/unicode.hpp"

namespace crossbatch {

struct rouge_score {
  double precision = 0, recall = 0, fmeasure = 0;
};

struct rouge_scores {
  rouge_score rouge1, rouge2, rougeL;
};

namespace detail {
inline double rouge_f(double p, double r) { return p + r > 0 ? 2 * p * r / (p + r) : 0.0; }
}  // namespace detail

// rouge_score.tokenize.tokenize without a stemmer: Python's str.lower(), every run of characters
// outside [a-z0-9] becomes a separator, empty tokens dropped.
inline std::vector<std::string> rouge_tokenize(std::string_view text) {
  const std::u32string lower = unicode::to_lower(unicode::decode_utf8(text));
  std::vector<std::string> out;
  std::string cur;
  for (char32_t c : lower) {
    if ((c >= U'a' && c <= U'z') || (c >= U'0' && c <= U'9')) {
      cur.push_back(static_cast<char>(c));
    } else if (!cur.empty()) {
      out.push_back(std::move(cur));
      cur.clear();
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

// Whitespace-separated tokens (a segmentation stored as "w1 w2 ...").
inline std::vector<std::string> split_tokens(std::string_view text) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n')) ++i;
    std::size_t j = i;
    while (j < text.size() && !(text[j] == ' ' || text[j] == '\t' || text[j] == '\n')) ++j;
    if (j > i) out.emplace_back(text.substr(i, j - i));
    i = j;
  }
  return out;
}

// ROUGE-N (rouge_scorer._score_ngrams): overlap / max(count, 1) on each side.
inline rouge_score rouge_n(const std::vector<std::string>& target,
                           const std::vector<std::string>& prediction, int n) {
  require(n >= 1, "rouge_n: n must be >= 1");
  auto grams = [n](const std::vector<std::string>& s) {
    std::map<std::vector<std::string>, int> m;
    for (std::size_t i = 0; i + n <= s.size(); ++i)
      ++m[std::vector<std::string>(s.begin() + i, s.begin() + i + n)];
    return m;
  };
  const auto t = grams(target), p = grams(prediction);
  long overlap = 0, nt = 0, np = 0;
  for (const auto& [g, c] : t) {
    nt += c;
    const auto it = p.find(g);
    if (it != p.end()) overlap += std::min(c, it->second);
  }
  for (const auto& [g, c] : p) np += c;
  rouge_score s;
  s.precision = double(overlap) / double(std::max(np, 1L));
  s.recall = double(overlap) / double(std::max(nt, 1L));
  s.fmeasure = detail::rouge_f(s.precision, s.recall);
  return s;
}

// ROUGE-L (rouge_scorer._score_lcs): longest common subsequence over each side's length.
inline rouge_score rouge_l(const std::vector<std::string>& target,
                           const std::vector<std::string>& prediction) {
  if (target.empty() || prediction.empty()) return {};
  std::vector<int> prev(prediction.size() + 1, 0), cur(prediction.size() + 1, 0);
  for (std::size_t i = 1; i <= target.size(); ++i) {
    for (std::size_t j = 1; j <= prediction.size(); ++j)
      cur[j] = target[i - 1] == prediction[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
    std::swap(prev, cur);
  }
  const double lcs = prev.back();
  rouge_score s;
  s.precision = lcs / double(prediction.size());
  s.recall = lcs / double(target.size());
  s.fmeasure = detail::rouge_f(s.precision, s.recall);
  return s;
}

inline rouge_scores rouge_all(const std::vector<std::string>& target,
                              const std::vector<std::string>& prediction) {
  return {rouge_n(target, prediction, 1), rouge_n(target, prediction, 2), rouge_l(target, prediction)};
}

// rouge-score's RougeScorer(["rouge1", "rouge2", "rougeL"]).score(target, prediction), no stemmer.
inline rouge_scores rouge_text(std::string_view target, std::string_view prediction) {
  return rouge_all(rouge_tokenize(target), rouge_tokenize(prediction));
}

// The same on given segmentations ("w1 w2 ..." per side, e.g. jieba's cut joined by spaces).
inline rouge_scores rouge_segmented(std::string_view target, std::string_view prediction) {
  return rouge_all(split_tokens(target), split_tokens(prediction));
}

}  // namespace crossbatch
