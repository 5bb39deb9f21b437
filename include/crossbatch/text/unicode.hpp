// Unicode properties and normalization (NFC, NFD, NFKC, NFKD, lowercase) over UTF-8 strings, from
// the generated tables in unicode_tables.hpp (which follow the Python `tokenizers` library's data).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "crossbatch/text/unicode_tables.hpp"
#include "crossbatch/text/utf8.hpp"

namespace crossbatch::text {

namespace detail {

// Binary search in a flat array of inclusive ranges lo0, hi0, lo1, hi1, ...
template <std::size_t N>
inline bool in_ranges(const std::uint32_t (&table)[N], char32_t c) {
  std::size_t lo = 0, hi = N / 2;
  while (lo < hi) {
    const std::size_t mid = (lo + hi) / 2;
    if (c < table[2 * mid])
      hi = mid;
    else if (c > table[2 * mid + 1])
      lo = mid + 1;
    else
      return true;
  }
  return false;
}

// Looks c up in a generated mapping (keys, index, pool); returns the pool span or an empty one.
template <std::size_t K, std::size_t P>
inline bool lookup_mapping(const std::uint32_t (&keys)[K], const std::uint32_t (&index)[K],
                           const std::uint32_t (&pool)[P], char32_t c, const std::uint32_t*& first,
                           std::size_t& count) {
  const auto* it =
      std::lower_bound(std::begin(keys), std::end(keys), static_cast<std::uint32_t>(c));
  if (it == std::end(keys) || *it != c) return false;
  const std::uint32_t packed = index[it - std::begin(keys)];
  first = pool + (packed >> 5);
  count = packed & 31;
  return true;
}

constexpr char32_t hangul_s_base = 0xAC00, hangul_l_base = 0x1100, hangul_v_base = 0x1161,
                   hangul_t_base = 0x11A7;
constexpr int hangul_l_count = 19, hangul_v_count = 21, hangul_t_count = 28,
              hangul_n_count = hangul_v_count * hangul_t_count,
              hangul_s_count = hangul_l_count * hangul_n_count;

}  // namespace detail

// White_Space: Rust's char::is_whitespace and the \s of the regex engines the tokenizers use.
inline bool is_white_space(char32_t c) {
  if (c < 0x80) return c == ' ' || (c >= 0x9 && c <= 0xD);
  return detail::in_ranges(unicode_data::white_space, c);
}
// Python's str.isspace (Jinja's trim filter).
inline bool is_python_space(char32_t c) {
  if (c < 0x80) return c == ' ' || (c >= 0x9 && c <= 0xD) || (c >= 0x1C && c <= 0x1F);
  return detail::in_ranges(unicode_data::python_space, c);
}
inline bool is_bert_control(char32_t c) { return detail::in_ranges(unicode_data::bert_control, c); }
inline bool is_bert_chinese(char32_t c) {
  return c >= 0x3400 && detail::in_ranges(unicode_data::bert_chinese, c);
}
inline bool is_nonspacing_mark(char32_t c) {
  return c >= 0x300 && detail::in_ranges(unicode_data::nonspacing_mark, c);
}
inline bool is_bert_punctuation(char32_t c) {
  if (c < 0x80)
    return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
           (c >= 123 && c <= 126);
  return detail::in_ranges(unicode_data::bert_punctuation, c);
}
inline bool is_numeric(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  return detail::in_ranges(unicode_data::numeric, c);
}
inline bool is_word_character(char32_t c) {
  if (c < 0x80)
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  return detail::in_ranges(unicode_data::word, c);
}

inline int combining_class(char32_t c) {
  if (c < 0x300) return 0;
  const auto* t = unicode_data::combining_class;
  std::size_t lo = 0, hi = std::size(unicode_data::combining_class) / 2;
  while (lo < hi) {
    const std::size_t mid = (lo + hi) / 2;
    if (t[2 * mid] < c)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < std::size(unicode_data::combining_class) / 2 && t[2 * lo] == c
             ? static_cast<int>(t[2 * lo + 1])
             : 0;
}

// Appends the full canonical (or compatibility) decomposition of c.
inline void append_decomposition(std::u32string& out, char32_t c, bool compat) {
  if (c < 0xC0) {
    if (!compat || c < 0xA0) {
      out += c;
      return;
    }
  }
  if (c >= detail::hangul_s_base && c < detail::hangul_s_base + detail::hangul_s_count) {
    const char32_t s = c - detail::hangul_s_base;
    out += detail::hangul_l_base + s / detail::hangul_n_count;
    out += detail::hangul_v_base + (s % detail::hangul_n_count) / detail::hangul_t_count;
    if (s % detail::hangul_t_count) out += detail::hangul_t_base + s % detail::hangul_t_count;
    return;
  }
  const std::uint32_t* first;
  std::size_t count;
  if (compat && detail::lookup_mapping(unicode_data::compat_keys, unicode_data::compat_index,
                                       unicode_data::compat_pool, c, first, count)) {
    out.append(first, first + count);
    return;
  }
  if (detail::lookup_mapping(unicode_data::canonical_keys, unicode_data::canonical_index,
                             unicode_data::canonical_pool, c, first, count)) {
    out.append(first, first + count);
    return;
  }
  out += c;
}

// The primary composite of (a, b), or 0 when there is none.
inline char32_t compose_pair(char32_t a, char32_t b) {
  using namespace detail;
  if (a >= hangul_l_base && a < hangul_l_base + hangul_l_count && b >= hangul_v_base &&
      b < hangul_v_base + hangul_v_count)
    return hangul_s_base +
           ((a - hangul_l_base) * hangul_v_count + (b - hangul_v_base)) * hangul_t_count;
  if (a >= hangul_s_base && a < hangul_s_base + hangul_s_count &&
      (a - hangul_s_base) % hangul_t_count == 0 && b > hangul_t_base &&
      b < hangul_t_base + hangul_t_count)
    return a + (b - hangul_t_base);
  const auto* t = unicode_data::composition;
  std::size_t lo = 0, hi = std::size(unicode_data::composition) / 3;
  while (lo < hi) {
    const std::size_t mid = (lo + hi) / 2;
    if (t[3 * mid] < a || (t[3 * mid] == a && t[3 * mid + 1] < b))
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo < std::size(unicode_data::composition) / 3 && t[3 * lo] == a && t[3 * lo + 1] == b)
    return t[3 * lo + 2];
  return 0;
}

enum class normal_form { nfc, nfd, nfkc, nfkd };

namespace detail {

inline void canonical_reorder(std::u32string& s) {
  // Stable sort of each run of non-starters by combining class (insertion sort: runs are short).
  for (std::size_t i = 1; i < s.size(); ++i) {
    const int ci = combining_class(s[i]);
    if (ci == 0) continue;
    std::size_t j = i;
    while (j > 0) {
      const int cj = combining_class(s[j - 1]);
      if (cj <= ci || cj == 0) break;
      std::swap(s[j - 1], s[j]);
      --j;
    }
  }
}

inline void canonical_compose(std::u32string& s) {
  if (s.empty()) return;
  std::size_t starter = std::u32string::npos;
  int last_class = -1;  // class of the last character kept after the starter; -1: none yet
  std::size_t out = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char32_t c = s[i];
    const int cc = combining_class(c);
    // After canonical ordering, c is blocked from the starter exactly when the character kept
    // just before it has a class >= its own (a starter c must follow the starter directly).
    if (starter != std::u32string::npos && (last_class == -1 || last_class < cc)) {
      if (const char32_t composite = compose_pair(s[starter], c)) {
        s[starter] = composite;
        continue;
      }
    }
    if (cc == 0) {
      starter = out;
      last_class = -1;
    } else if (starter != std::u32string::npos) {
      last_class = cc;
    }
    s[out++] = c;
  }
  s.resize(out);
}

}  // namespace detail

namespace detail {

// Normalizes a whole string by the book: decompose, reorder, compose.
inline void normalize_full(std::string_view text, normal_form form, std::string& out) {
  const bool compat = form == normal_form::nfkc || form == normal_form::nfkd;
  std::u32string buf;
  buf.reserve(text.size());
  for (std::size_t i = 0; i < text.size();)
    append_decomposition(buf, next_code_point(text, i), compat);
  canonical_reorder(buf);
  if (form == normal_form::nfc || form == normal_form::nfkc) canonical_compose(buf);
  for (char32_t c : buf) append_utf8(out, c);
}

// Per code point, per form: true when the character is a starter that no normalization changes and
// that cannot combine with what precedes it, so text around it can be normalized separately.
class inert_table {
 public:
  static const inert_table& get() {
    static const inert_table t;
    return t;
  }
  bool inert(char32_t c, normal_form f) const {
    if (c < 0x80) return true;
    return c < 0x110000 && (m_bits[static_cast<int>(f)][c >> 6] >> (c & 63) & 1);
  }

 private:
  // Everything is inert except: non-starters; characters with a decomposition (canonical ones for
  // every form, compatibility ones for NFKC/NFKD); for the composing forms, characters that can be
  // the second of a composition pair. Hangul syllables decompose but are stable under NFC/NFKC.
  inert_table() {
    for (auto& b : m_bits) b.assign(0x110000 / 64, ~std::uint64_t{0});
    const auto clear = [&](char32_t c, std::initializer_list<normal_form> forms) {
      for (normal_form f : forms)
        m_bits[static_cast<int>(f)][c >> 6] &= ~(std::uint64_t{1} << (c & 63));
    };
    constexpr auto nfc = normal_form::nfc, nfd = normal_form::nfd, nfkc = normal_form::nfkc,
                   nfkd = normal_form::nfkd;
    for (std::size_t k = 0; k < std::size(unicode_data::combining_class); k += 2)
      clear(unicode_data::combining_class[k], {nfc, nfd, nfkc, nfkd});
    for (std::uint32_t c : unicode_data::canonical_keys) clear(c, {nfc, nfd, nfkc, nfkd});
    for (std::uint32_t c : unicode_data::compat_keys) clear(c, {nfkc, nfkd});
    for (std::size_t k = 0; k < std::size(unicode_data::composition); k += 3)
      clear(unicode_data::composition[k + 1], {nfc, nfkc});
    for (char32_t c = hangul_v_base; c < hangul_v_base + hangul_v_count; ++c) clear(c, {nfc, nfkc});
    for (char32_t c = hangul_t_base + 1; c < hangul_t_base + hangul_t_count; ++c)
      clear(c, {nfc, nfkc});
    for (char32_t c = hangul_s_base; c < hangul_s_base + hangul_s_count; ++c) clear(c, {nfd, nfkd});
  }
  std::vector<std::uint64_t> m_bits[4];
};

}  // namespace detail

// Normalizes valid UTF-8 text to the given form. Only the stretches around characters that can
// change (from the preceding inert starter to the next inert character) go through the full
// algorithm; the rest is copied.
inline std::string normalize(std::string_view text, normal_form form) {
  std::size_t first = 0;
  while (first < text.size() && static_cast<unsigned char>(text[first]) < 0x80) ++first;
  if (first == text.size()) return std::string(text);  // ASCII is invariant under every form
  const auto& table = detail::inert_table::get();
  std::string out;
  out.reserve(text.size() + 8);
  std::size_t copied = 0, last_inert = 0, i = 0;
  while (i < text.size()) {
    const std::size_t start = i;
    const char32_t c = static_cast<unsigned char>(text[i]) < 0x80 ? static_cast<char32_t>(text[i++])
                                                                  : next_code_point(text, i);
    if (table.inert(c, form)) {
      last_inert = start;
      continue;
    }
    std::size_t end = i;  // extend to the next inert character
    while (end < text.size()) {
      std::size_t j = end;
      if (table.inert(next_code_point(text, j), form)) break;
      end = j;
    }
    out.append(text.substr(copied, last_inert - copied));
    detail::normalize_full(text.substr(last_inert, end - last_inert), form, out);
    copied = last_inert = i = end;
  }
  out.append(text.substr(copied));
  return out;
}

// Appends the lowercase of c (Rust's char::to_lowercase: one code point at a time, no final sigma).
inline void append_lowercase(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
    return;
  }
  const std::uint32_t* first;
  std::size_t count;
  if (detail::lookup_mapping(unicode_data::lower_keys, unicode_data::lower_index,
                             unicode_data::lower_pool, c, first, count)) {
    for (std::size_t k = 0; k < count; ++k) append_utf8(out, first[k]);
  } else {
    append_utf8(out, c);
  }
}

inline std::string lowercase(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    const auto b = static_cast<unsigned char>(text[i]);
    if (b < 0x80) {
      out += static_cast<char>(b >= 'A' && b <= 'Z' ? b + 32 : b);
      ++i;
    } else {
      append_lowercase(out, next_code_point(text, i));
    }
  }
  return out;
}

// Python's str.strip() (Jinja's trim filter) on valid UTF-8.
inline std::string_view python_strip(std::string_view s) {
  std::size_t b = 0;
  while (b < s.size()) {
    std::size_t j = b;
    if (!is_python_space(next_code_point(s, j))) break;
    b = j;
  }
  std::size_t e = s.size();
  while (e > b) {
    std::size_t k = e - 1;
    while (k > b && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
    std::size_t j = k;
    if (!is_python_space(next_code_point(s, j))) break;
    e = k;
  }
  return s.substr(b, e - b);
}

}  // namespace crossbatch::text
