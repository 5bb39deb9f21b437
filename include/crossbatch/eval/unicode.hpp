// The bits of Unicode that answer normalisation and data set offsets need: UTF-8 decoding that
// never fails (invalid bytes round-trip as U+DC80..U+DCFF, Python's surrogateescape), and Python's
// str.lower / str.isspace / str.isalnum, from tables generated from Python (unicode_tables.hpp).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "crossbatch/eval/unicode_tables.hpp"

namespace crossbatch::unicode {

// Decodes one code point at s[i] and advances i. A byte that does not start a well-formed UTF-8
// sequence (overlong, surrogate, > U+10FFFF, truncated) decodes alone to U+DC00 + byte.
inline char32_t next_code_point(std::string_view s, std::size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  auto escaped = [&] {
    ++i;
    return static_cast<char32_t>(0xDC00 + b0);
  };
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  // Sequence length, payload bits of the lead byte, and the smallest code point of that length.
  std::size_t len = 0;
  char32_t cp = 0, min = 0;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return escaped();
  }
  if (i + len > s.size()) return escaped();
  for (std::size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return escaped();
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return escaped();
  i += len;
  return cp;
}

inline std::u32string decode_utf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) out.push_back(next_code_point(s, i));
  return out;
}

// Appends cp as UTF-8; U+DC80..U+DCFF (escaped bytes) become their original byte again.
inline void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp >= 0xDC80 && cp <= 0xDCFF) {
    out.push_back(static_cast<char>(cp - 0xDC00));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

inline std::string encode_utf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t cp : s) append_utf8(out, cp);
  return out;
}

// Byte offset of every code point of s, plus s.size() at the end: code point k of s starts at
// byte offsets[k]. Data set offsets (SQuAD answer_start) count code points, as Python does.
inline std::vector<std::size_t> code_point_offsets(std::string_view s) {
  std::vector<std::size_t> offsets;
  offsets.reserve(s.size() + 1);
  for (std::size_t i = 0; i < s.size();) {
    offsets.push_back(i);
    next_code_point(s, i);
  }
  offsets.push_back(s.size());
  return offsets;
}

namespace detail {

template <std::size_t N>
bool in_ranges(const unicode_tables::range (&table)[N], char32_t cp) {
  // The last range whose lo <= cp.
  const auto* it =
      std::upper_bound(std::begin(table), std::end(table), cp,
                       [](char32_t c, const unicode_tables::range& r) { return c < r.lo; });
  return it != std::begin(table) && cp <= (it - 1)->hi;
}

}  // namespace detail

// Python's str.isalnum() of one code point (letters, digits and numerics of every script).
inline bool is_alnum(char32_t cp) {
  if (cp < 0x80) return (cp >= '0' && cp <= '9') || ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z');
  return detail::in_ranges(unicode_tables::alnum, cp);
}
// The \w of Python's re module on str patterns.
inline bool is_word(char32_t cp) { return cp == '_' || is_alnum(cp); }
// Python's str.isspace(): what str.split() splits on.
inline bool is_space(char32_t cp) {
  return std::find(std::begin(unicode_tables::space), std::end(unicode_tables::space), cp) !=
         std::end(unicode_tables::space);
}
inline bool is_case_ignorable(char32_t cp) {
  return detail::in_ranges(unicode_tables::case_ignorable, cp);
}
inline bool is_cased(char32_t cp) { return detail::in_ranges(unicode_tables::cased, cp); }

// Python's lower-case mapping of one code point (U+0130 and U+03A3 need to_lower's context).
inline char32_t lower_simple(char32_t cp) {
  if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
  const auto& table = unicode_tables::lower;
  const auto* it =
      std::upper_bound(std::begin(table), std::end(table), cp,
                       [](char32_t c, const unicode_tables::lower_run& r) { return c < r.lo; });
  if (it == std::begin(table)) return cp;
  const auto& r = *(it - 1);
  if (cp > r.hi || (cp - r.lo) % r.stride != 0) return cp;
  return static_cast<char32_t>(static_cast<std::int32_t>(cp) + r.delta);
}

// Python's str.lower(): full mapping (U+0130 -> "i\u0307") and the Final_Sigma rule for U+03A3.
inline std::u32string to_lower(std::u32string_view s) {
  std::u32string out;
  out.reserve(s.size() + 1);
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char32_t cp = s[i];
    if (cp == 0x130) {
      out += U"i\u0307";
    } else if (cp == 0x3A3) {
      // Final when a cased letter precedes (skipping case-ignorables) and none follows.
      std::size_t j = i;
      while (j > 0 && is_case_ignorable(s[j - 1])) --j;
      bool final_sigma = j > 0 && is_cased(s[j - 1]);
      if (final_sigma) {
        std::size_t k = i + 1;
        while (k < s.size() && is_case_ignorable(s[k])) ++k;
        final_sigma = k == s.size() || !is_cased(s[k]);
      }
      out.push_back(final_sigma ? 0x3C2 : 0x3C3);
    } else {
      out.push_back(lower_simple(cp));
    }
  }
  return out;
}

}  // namespace crossbatch::unicode
