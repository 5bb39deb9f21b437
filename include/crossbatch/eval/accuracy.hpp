// Accuracy for multiple-choice data sets (CMB-Exam style): the option letters a generation picks,
// compared as a set with the gold letters, and the corpus accuracy in percent.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

namespace crossbatch {

namespace detail {
inline bool is_ascii_letter(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
}  // namespace detail

// The option letters a prediction chooses: the first ASCII word made only of option letters (upper
// case, as exams write them), so "B", "Answer: BD." and "(C) ..." give "B", "BD" and "C"; words
// that merely contain option letters ("BAD", "Cat") are skipped. "" when there is none. Heuristic:
// a sentence opening with the article "A" reads as choice A.
inline std::string extract_choices(std::string_view prediction,
                                   std::string_view letters = "ABCDE") {
  for (std::size_t i = 0; i < prediction.size();) {
    if (!detail::is_ascii_letter(prediction[i])) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < prediction.size() && detail::is_ascii_letter(prediction[j])) ++j;
    const std::string_view word = prediction.substr(i, j - i);
    // A longer word counts only with distinct letters in order (exam style "ACD"): not "BAD".
    bool all_options = std::all_of(word.begin(), word.end(), [&](char c) {
      return letters.find(c) != std::string_view::npos;
    });
    if (all_options && word.size() > 1)
      all_options = std::is_sorted(word.begin(), word.end()) &&
                    std::adjacent_find(word.begin(), word.end()) == word.end();
    if (all_options) {
      std::string out(word);
      std::sort(out.begin(), out.end());
      return out;
    }
    i = j;
  }
  return "";
}

// True when the prediction's chosen letters equal the gold letters as a set ("DB" == "BD").
inline bool choice_match(std::string_view prediction, std::string_view gold,
                         std::string_view letters = "ABCDE") {
  std::string g(gold);
  std::sort(g.begin(), g.end());
  g.erase(std::unique(g.begin(), g.end()), g.end());
  const std::string p = extract_choices(prediction, letters);
  return !p.empty() && p == g;
}

// Percentage of true entries (0 for none).
inline double accuracy_percent(const std::vector<bool>& correct) {
  if (correct.empty()) return 0.0;
  const auto n = std::count(correct.begin(), correct.end(), true);
  return 100.0 * static_cast<double>(n) / static_cast<double>(correct.size());
}

}  // namespace crossbatch
