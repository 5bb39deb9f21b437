// Lemmas as spaCy's English lookup lemmatizer gives them, and the paraphrase-fusion metric.
//   english_lemmatizer  spaCy's English tokenizer rules (whitespace, then prefixes, suffixes and
//                       infixes of punctuation, quotes, currency, "'s", hyphens, plus spaCy's
//                       tokenizer exceptions for contractions and abbreviations: "don't" ->
//                       "do" "n't", "U.S." stays whole) and its lookup table (PyPI
//                       spacy-lookups-data, en_lemma_lookup: the token's text, case as written,
//                       to its lemma; unknown tokens are their own lemma), lemmas lower-cased.
//                       Both tables are TSV files written by tools/make_fusion_lemmas.py from the
//                       installed spaCy (tests/data/fusion/); the affix rules are a hand port of
//                       the subset of spaCy's English punctuation rules that short answers meet:
//                       tests/fusion/test_fusion_eval.cpp measures the agreement with spaCy.
//   lemma_containment   correct when some gold answer's lemma sequence is a contiguous
//                       subsequence of the prediction's lemmas (the reference's metric).
#pragma once

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "crossbatch/core/error.hpp"
#include "crossbatch/eval/unicode.hpp"

namespace crossbatch {

namespace detail {

// Code point helpers on UTF-8 text.
inline std::u32string u32(std::string_view s) { return unicode::decode_utf8(s); }
inline std::string u8(std::u32string_view s) { return unicode::encode_utf8(s); }
inline bool in(char32_t c, std::u32string_view set) { return set.find(c) != set.npos; }
inline bool is_alpha(char32_t c) { return unicode::is_alnum(c) && !(c >= '0' && c <= '9'); }
inline bool is_digit(char32_t c) { return c >= '0' && c <= '9'; }
inline bool is_lower_alpha(char32_t c) { return is_alpha(c) && unicode::lower_simple(c) == c; }
inline bool is_upper_alpha(char32_t c) { return is_alpha(c) && unicode::lower_simple(c) != c; }

// spaCy's English punctuation (lang/punctuation.py, char_classes.py): the single characters of
// its prefix and suffix lists, and the quote characters.
inline constexpr std::u32string_view punct = U"…,:;!?¿؟¡()[]{}<>_#*&。？！，、；：～·।،۔؛٪";
inline constexpr std::u32string_view quotes = U"'\"”“`‘´’‚„»«「」『』（）〔〕【】《》〈〉〈〉⟦⟧";
inline constexpr std::u32string_view currency =
    U"$£€¥฿₽﷼₴₠₡₢₣₤₥₦₧₨₩₪₫₭₮₯₰₱₲₳₴₵₶₷₸₹₺₻₼"
    U"₾"
    U"₿";
inline constexpr std::u32string_view prefix_only = U"§%=—–";
inline constexpr std::u32string_view hyphens = U"-–—~";
// spaCy's units (char_classes.UNITS, Latin-script part): a suffix after a digit.
inline constexpr std::u32string_view units[] = {
    U"km", U"km²", U"km³", U"m",  U"m²",  U"m³",   U"dm",  U"dm²", U"dm³", U"cm", U"cm²",  U"cm³",
    U"mm", U"mm²", U"mm³", U"ha", U"µm",  U"nm",   U"yd",  U"in",  U"ft",  U"kg", U"g",    U"mg",
    U"µg", U"t",   U"lb",  U"oz", U"m/s", U"km/h", U"kmh", U"mph", U"hPa", U"Pa", U"mbar", U"mb",
    U"MB", U"kb",  U"KB",  U"gb", U"GB",  U"tb",   U"TB",  U"T",   U"G",   U"M",  U"K",    U"%"};

}  // namespace detail

class english_lemmatizer {
 public:
  // lookup: "text\tlemma" lines; exceptions: "text\ttoken1\ttoken2..." lines.
  static english_lemmatizer load(const std::string& lookup_tsv, const std::string& exceptions_tsv) {
    english_lemmatizer l;
    read_tsv(lookup_tsv, [&](const std::vector<std::string>& f, int line) {
      if (f.size() != 2)
        throw format_error(lookup_tsv + ":" + std::to_string(line) + ": want text<TAB>lemma");
      l.m_lemma.emplace(f[0], f[1]);
    });
    read_tsv(exceptions_tsv, [&](const std::vector<std::string>& f, int line) {
      if (f.size() < 2)
        throw format_error(exceptions_tsv + ":" + std::to_string(line) +
                           ": want text<TAB>token<TAB>...");
      l.m_special.emplace(f[0], std::vector<std::string>(f.begin() + 1, f.end()));
    });
    return l;
  }

  // spaCy's token texts of `text` (whitespace dropped).
  std::vector<std::string> tokens(std::string_view text) const {
    std::vector<std::string> out;
    const auto t = detail::u32(text);
    std::size_t i = 0;
    while (i < t.size()) {
      while (i < t.size() && unicode::is_space(t[i])) ++i;
      std::size_t j = i;
      while (j < t.size() && !unicode::is_space(t[j])) ++j;
      if (j > i) split_chunk(t.substr(i, j - i), out);
      i = j;
    }
    return out;
  }

  // Lower-cased lemmas of `text`'s tokens.
  std::vector<std::string> lemmas(std::string_view text) const {
    std::vector<std::string> out;
    for (const auto& tok : tokens(text)) {
      const auto it = m_lemma.find(tok);
      const std::string& lemma = it == m_lemma.end() ? tok : it->second;
      out.push_back(detail::u8(unicode::to_lower(detail::u32(lemma))));
    }
    return out;
  }

  std::size_t lookup_size() const { return m_lemma.size(); }

 private:
  template <class F>
  static void read_tsv(const std::string& path, F&& f) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw io_error(path + ": cannot open (written by tools/make_fusion_lemmas.py)");
    std::string line;
    int n = 0;
    while (std::getline(in, line)) {
      ++n;
      if (line.empty()) continue;
      std::vector<std::string> fields;
      std::size_t start = 0;
      for (std::size_t tab; (tab = line.find('\t', start)) != line.npos; start = tab + 1)
        fields.push_back(line.substr(start, tab - start));
      fields.push_back(line.substr(start));
      f(fields, n);
    }
  }
  bool special(std::u32string_view s) const { return m_special.count(detail::u8(s)) > 0; }

  // Length of the prefix spaCy strips from s (0: none).
  static std::size_t prefix_len(std::u32string_view s) {
    using namespace detail;
    if (s.empty()) return 0;
    if (s.size() >= 2 && s[0] == '.' && s[1] == '.') {  // an ellipsis "..+"
      std::size_t n = 2;
      while (n < s.size() && s[n] == '.') ++n;
      return n;
    }
    for (std::u32string_view cur : {U"US$", U"C$", U"A$"})
      if (s.substr(0, cur.size()) == cur) return cur.size();
    const char32_t c = s[0];
    if (c == '+') return s.size() > 1 && is_digit(s[1]) ? 0 : 1;
    if (in(c, prefix_only) || in(c, punct) || in(c, quotes) || in(c, currency)) return 1;
    return 0;
  }
  // Length of the suffix spaCy strips from s (0: none).
  static std::size_t suffix_len(std::u32string_view s) {
    using namespace detail;
    const std::size_t n = s.size();
    if (n == 0) return 0;
    if (n >= 2 && s[n - 1] == '.' && s[n - 2] == '.') {  // an ellipsis
      std::size_t k = 2;
      while (k < n && s[n - 1 - k] == '.') ++k;
      return k;
    }
    if (n >= 2 && (s[n - 2] == '\'' || s[n - 2] == U'’') && (s[n - 1] == 's' || s[n - 1] == 'S'))
      return 2;
    const char32_t c = s[n - 1];
    if (in(c, punct) || in(c, quotes) || c == U'—' || c == U'–') return 1;
    if (c == '+' && n >= 2 && is_digit(s[n - 2])) return 1;
    std::size_t unit = 0;  // the longest unit after a digit
    for (auto u : units)
      if (u.size() < n && s.substr(n - u.size()) == u && is_digit(s[n - u.size() - 1]))
        unit = std::max(unit, u.size());
    if (unit > 0) return unit;
    if (in(c, currency) && n >= 2 && is_digit(s[n - 2])) return 1;
    if (c == '.' && n >= 2) {
      const char32_t p = s[n - 2];
      if (is_digit(p) || is_lower_alpha(p) || in(p, U"%²-+") || in(p, punct) || in(p, quotes))
        return 1;
      if (n >= 3 && is_upper_alpha(p) && is_upper_alpha(s[n - 3])) return 1;
    }
    return 0;
  }
  // Splits s at spaCy's infixes: hyphens between letters or digits and letters, commas between
  // letters, ":<>=/" after letters or digits before letters, "." between a lower-case letter and
  // an upper-case one, arithmetic signs between digits.
  static void split_infixes(std::u32string_view s, std::vector<std::string>& out) {
    using namespace detail;
    std::size_t start = 0;
    for (std::size_t i = 1; i + 1 < s.size(); ++i) {
      const char32_t a = s[i - 1], c = s[i], b = s[i + 1];
      std::size_t len = 0;
      if (in(c, U"+-*^") && is_digit(a) && (is_digit(b) || b == '-')) {
        len = 1;
      } else if (in(c, hyphens) && (is_alpha(a) || is_digit(a))) {
        std::size_t k = i;
        while (k < s.size() && s[k] == c && k - i < 3) ++k;  // "--", "---"
        if (k < s.size() && is_alpha(s[k])) len = k - i;
      } else if (c == ',' && is_alpha(a) && is_alpha(b)) {
        len = 1;
      } else if (in(c, U":<>=/") && (is_alpha(a) || is_digit(a)) && is_alpha(b)) {
        len = 1;
      } else if (c == '.' && (is_lower_alpha(a) || in(a, quotes)) &&
                 (is_upper_alpha(b) || in(b, quotes))) {
        len = 1;
      }
      if (len == 0) continue;
      if (i > start) out.push_back(u8(s.substr(start, i - start)));
      out.push_back(u8(s.substr(i, len)));
      start = i + len;
      i = start - 1;
    }
    if (start < s.size()) out.push_back(u8(s.substr(start)));
  }
  void emit(std::u32string_view s, std::vector<std::string>& out) const {
    const auto it = m_special.find(detail::u8(s));
    if (it != m_special.end())
      out.insert(out.end(), it->second.begin(), it->second.end());
    else
      split_infixes(s, out);
  }
  // spaCy's Tokenizer._split_affixes + _attach_tokens for one whitespace-free chunk.
  void split_chunk(std::u32string_view s, std::vector<std::string>& out) const {
    if (special(s)) return emit(s, out);
    std::vector<std::string> prefixes, suffixes;  // suffixes innermost last
    while (!s.empty()) {
      if (special(s)) break;
      const std::size_t pre = prefix_len(s);
      if (pre > 0 && pre < s.size() && special(s.substr(pre))) {
        prefixes.push_back(detail::u8(s.substr(0, pre)));
        s = s.substr(pre);
        break;
      }
      const std::size_t suf = suffix_len(s.substr(pre));
      if (suf > 0 && suf < s.size() && special(s.substr(0, s.size() - suf))) {
        suffixes.push_back(detail::u8(s.substr(s.size() - suf)));
        s = s.substr(0, s.size() - suf);
        break;
      }
      if (pre > 0 && suf > 0 && pre + suf <= s.size()) {
        prefixes.push_back(detail::u8(s.substr(0, pre)));
        suffixes.push_back(detail::u8(s.substr(s.size() - suf)));
        s = s.substr(pre, s.size() - pre - suf);
      } else if (pre > 0) {
        prefixes.push_back(detail::u8(s.substr(0, pre)));
        s = s.substr(pre);
      } else if (suf > 0) {
        suffixes.push_back(detail::u8(s.substr(s.size() - suf)));
        s = s.substr(0, s.size() - suf);
      } else {
        break;
      }
    }
    std::vector<std::string> pieces(prefixes.begin(), prefixes.end());
    if (!s.empty()) emit(s, pieces);
    pieces.insert(pieces.end(), suffixes.rbegin(), suffixes.rend());
    merge_specials(pieces, out);
  }
  // spaCy's special-case matcher: runs of tokens of one chunk whose texts together spell a
  // tokenizer exception with affixes ("):", "''", "y.") become that exception's tokens; the
  // longest run from the left wins.
  void merge_specials(const std::vector<std::string>& pieces, std::vector<std::string>& out) const {
    for (std::size_t i = 0; i < pieces.size();) {
      std::size_t best = 0;
      std::string text = pieces[i];
      for (std::size_t j = i + 1; j < pieces.size() && j < i + 8; ++j) {
        text += pieces[j];
        if (m_special.count(text)) best = j;
      }
      if (best == 0) {
        out.push_back(pieces[i++]);
        continue;
      }
      std::string key;
      for (std::size_t j = i; j <= best; ++j) key += pieces[j];
      const auto& sp = m_special.at(key);
      out.insert(out.end(), sp.begin(), sp.end());
      i = best + 1;
    }
  }

  std::unordered_map<std::string, std::string> m_lemma;
  std::unordered_map<std::string, std::vector<std::string>> m_special;
};

// True when some answer's lemmas (non-empty) occur contiguously in the prediction's lemmas.
inline bool lemma_containment(const std::vector<std::string>& prediction,
                              const std::vector<std::vector<std::string>>& answers) {
  for (const auto& a : answers) {
    if (a.empty() || a.size() > prediction.size()) continue;
    if (std::search(prediction.begin(), prediction.end(), a.begin(), a.end()) != prediction.end())
      return true;
  }
  return false;
}

}  // namespace crossbatch
