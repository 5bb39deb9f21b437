// Sentence BLEU as NLTK's sentence_bleu computes it (weights 0.25 x 4, brevity penalty against the
// closest reference length, smoothing method 3: the k-th zero n-gram precision becomes
// 1 / (2^k * denominator)), over token sequences; char_bleu4 tokenises into code points, the
// character-level BLEU-4 of the CMB-Clin evaluation.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "crossbatch/core/error.hpp"
#include "crossbatch/eval/unicode.hpp"

namespace crossbatch {

namespace detail {

template <class Tok>
std::map<std::vector<Tok>, int> ngram_counts(const std::vector<Tok>& s, std::size_t n) {
  std::map<std::vector<Tok>, int> out;
  if (s.size() < n) return out;
  for (std::size_t i = 0; i + n <= s.size(); ++i) ++out[std::vector<Tok>(s.begin() + i, s.begin() + i + n)];
  return out;
}

}  // namespace detail

// BLEU-N of `hypothesis` against `references` (NLTK sentence_bleu with SmoothingFunction().method3
// and uniform weights 1/max_n; auto_reweigh off, NLTK's default).
template <class Tok>
double sentence_bleu(const std::vector<std::vector<Tok>>& references, const std::vector<Tok>& hypothesis,
                     int max_n = 4) {
  require(!references.empty(), "sentence_bleu: no reference");
  require(max_n >= 1, "sentence_bleu: max_n must be >= 1");
  std::vector<long> num(max_n), den(max_n);
  for (int n = 1; n <= max_n; ++n) {
    const auto counts = detail::ngram_counts(hypothesis, n);
    std::map<std::vector<Tok>, int> max_ref;
    for (const auto& r : references) {
      const auto rc = detail::ngram_counts(r, n);
      for (const auto& [g, c] : counts) {
        const auto it = rc.find(g);
        max_ref[g] = std::max(max_ref[g], it == rc.end() ? 0 : it->second);
      }
    }
    long clipped = 0, total = 0;
    for (const auto& [g, c] : counts) clipped += std::min(c, max_ref[g]), total += c;
    num[n - 1] = clipped;
    den[n - 1] = std::max(1L, total);
  }
  const long hyp_len = static_cast<long>(hypothesis.size());
  // closest_ref_length: the reference length nearest the hypothesis length, the shorter on ties.
  long ref_len = -1;
  for (const auto& r : references) {
    const long len = static_cast<long>(r.size());
    if (ref_len < 0 || std::labs(len - hyp_len) < std::labs(ref_len - hyp_len) ||
        (std::labs(len - hyp_len) == std::labs(ref_len - hyp_len) && len < ref_len))
      ref_len = len;
  }
  if (num[0] == 0) return 0.0;  // no unigram match
  const double bp = hyp_len > ref_len ? 1.0 : std::exp(1.0 - double(ref_len) / double(hyp_len));
  double log_sum = 0;
  int k = 1;
  for (int n = 0; n < max_n; ++n) {
    const double p = num[n] == 0 ? 1.0 / (std::ldexp(1.0, k++) * double(den[n]))
                                 : double(num[n]) / double(den[n]);
    log_sum += (1.0 / max_n) * std::log(p);
  }
  return bp * std::exp(log_sum);
}

// The code points of a UTF-8 string (Python's list(text)).
inline std::vector<char32_t> characters(std::string_view text) {
  const std::u32string s = unicode::decode_utf8(text);
  return {s.begin(), s.end()};
}

// Character-level BLEU-4 of a prediction against one reference text.
inline double char_bleu4(std::string_view reference, std::string_view prediction) {
  return sentence_bleu<char32_t>({characters(reference)}, characters(prediction), 4);
}

}  // namespace crossbatch
