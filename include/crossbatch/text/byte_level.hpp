// GPT-2's byte-level alphabet: each of the 256 byte values is shown as one printable character
// (printable Latin-1 bytes as themselves, the others as U+0100 onwards), so that a byte-level BPE
// vocabulary is a set of ordinary strings. Used by the ByteLevel pre-tokenizer and decoder.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "crossbatch/text/utf8.hpp"

namespace crossbatch::text {

class byte_level_alphabet {
 public:
  static const byte_level_alphabet& get() {
    static const byte_level_alphabet a;
    return a;
  }

  char32_t char_of(unsigned char b) const { return m_char[b]; }
  // UTF-8 of the character that stands for byte b.
  std::string_view utf8_of(unsigned char b) const { return {m_utf8[b].data(), m_utf8_len[b]}; }
  // The byte a character stands for, or -1 when c is not in the alphabet.
  int byte_of(char32_t c) const { return c < 324 ? m_byte[c] : -1; }

  // Maps raw bytes to their alphabet characters (appended to out).
  void map(std::string_view bytes, std::string& out) const {
    for (unsigned char b : bytes) out.append(m_utf8[b].data(), m_utf8_len[b]);
  }

 private:
  byte_level_alphabet() {
    m_byte.fill(-1);
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      const char32_t c = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(next++);
      m_char[b] = c;
      m_byte[c] = static_cast<std::int16_t>(b);
      std::string s;
      append_utf8(s, c);
      m_utf8_len[b] = static_cast<std::uint8_t>(s.size());
      for (std::size_t k = 0; k < s.size(); ++k) m_utf8[b][k] = s[k];
    }
  }

  std::array<char32_t, 256> m_char{};
  std::array<std::int16_t, 324> m_byte{};
  std::array<std::array<char, 2>, 256> m_utf8{};
  std::array<std::uint8_t, 256> m_utf8_len{};
};

}  // namespace crossbatch::text
