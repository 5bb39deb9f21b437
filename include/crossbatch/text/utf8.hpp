// UTF-8 decoding, encoding and repair for the tokenizers.
// Invalid input policy: every maximal ill-formed subsequence becomes one U+FFFD, exactly as
// Python's bytes.decode("utf-8", errors="replace") does (Unicode's "substitution of maximal
// subparts").
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace crossbatch::text {

inline constexpr char32_t replacement_character = 0xFFFD;

// Length of the well-formed sequence starting at p (< end), or 0 if the bytes there are ill-formed;
// `subpart` receives the length of the maximal ill-formed subpart to replace (at least 1).
inline std::size_t utf8_sequence(const unsigned char* p, const unsigned char* end,
                                 std::size_t& subpart) {
  const unsigned char b0 = p[0];
  subpart = 1;
  if (b0 < 0x80) return 1;
  std::size_t need;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte (Unicode Table 3-7)
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;  // 80..C1 or F5..FF can never start a sequence
  }
  for (std::size_t k = 1; k < need; ++k) {
    if (p + k >= end) return 0;
    const unsigned char b = p[k];
    const bool ok = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    if (!ok) return 0;
    subpart = k + 1;
  }
  return need;
}

// Decodes the code point at p (which must start a well-formed sequence of length n).
inline char32_t utf8_decode_valid(const unsigned char* p, std::size_t n) {
  switch (n) {
    case 1:
      return p[0];
    case 2:
      return (char32_t(p[0] & 0x1F) << 6) | (p[1] & 0x3F);
    case 3:
      return (char32_t(p[0] & 0x0F) << 12) | (char32_t(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
    default:
      return (char32_t(p[0] & 0x07) << 18) | (char32_t(p[1] & 0x3F) << 12) |
             (char32_t(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
  }
}

// Decodes one code point from valid UTF-8 at s[i] and advances i.
inline char32_t next_code_point(std::string_view s, std::size_t& i) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + i;
  std::size_t n = 1;
  if (p[0] >= 0xF0)
    n = 4;
  else if (p[0] >= 0xE0)
    n = 3;
  else if (p[0] >= 0xC0)
    n = 2;
  i += n;
  return utf8_decode_valid(p, n);
}

// Number of bytes of the UTF-8 sequence whose first byte is b (1 for stray bytes).
inline std::size_t utf8_length_of_lead(unsigned char b) {
  return b < 0xC0 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
}

inline void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

// Offset of the first ill-formed byte, or s.size() when s is valid UTF-8.
inline std::size_t first_invalid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  const auto* q = p;
  while (q < end) {
    if (*q < 0x80) {
      ++q;
      continue;
    }
    std::size_t subpart;
    const std::size_t n = utf8_sequence(q, end, subpart);
    if (n == 0) return static_cast<std::size_t>(q - p);
    q += n;
  }
  return s.size();
}

inline bool is_valid_utf8(std::string_view s) { return first_invalid_utf8(s) == s.size(); }

// s with each maximal ill-formed subpart replaced by U+FFFD (Python's errors="replace").
inline std::string repair_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    std::size_t subpart;
    const std::size_t n = *p < 0x80 ? 1 : utf8_sequence(p, end, subpart);
    if (n) {
      out.append(reinterpret_cast<const char*>(p), n);
      p += n;
    } else {
      append_utf8(out, replacement_character);
      p += subpart;
    }
  }
  return out;
}

}  // namespace crossbatch::text
