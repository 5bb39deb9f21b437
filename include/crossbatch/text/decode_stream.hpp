// Streaming decode for generation: feed ids one at a time and get the new text as soon as it is
// complete. Text is held back while the decoded tail is an unfinished UTF-8 character (it would
// decode to U+FFFD), so a chunk never splits a character; the chunks concatenate to decode(ids).
// This is the DecodeStream algorithm of `tokenizers`, plus flush() for the end of a stream.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crossbatch/text/tokenizer.hpp"

namespace crossbatch::text {

class decode_stream {
 public:
  explicit decode_stream(const tokenizer& tok, bool skip_special_tokens = true)
      : m_tok(&tok), m_skip_special(skip_special_tokens) {}

  // Adds one id; returns the text it completes (possibly empty).
  std::string step(std::int32_t id) {
    m_ids.push_back(id);
    std::string text = m_tok->decode(m_ids, m_skip_special);
    if (text.size() <= m_prefix.size() || ends_with_replacement(text)) return {};
    if (text.compare(0, m_prefix.size(), m_prefix) != 0) {
      // The decoder rewrote earlier text (e.g. a clean-up rule spanning tokens): emit only what is
      // new after the common part, as a best effort.
      std::size_t common = 0;
      while (common < m_prefix.size() && common < text.size() && m_prefix[common] == text[common])
        ++common;
      m_prefix.resize(common);
    }
    std::string out = text.substr(m_prefix.size());
    // Keep the last ids as context for the next step (a decoder may need the previous token).
    const std::size_t new_prefix_index = m_ids.size() - m_prefix_index;
    m_ids.erase(m_ids.begin(), m_ids.begin() + static_cast<std::ptrdiff_t>(m_prefix_index));
    m_prefix = m_tok->decode(m_ids, m_skip_special);
    m_prefix_index = new_prefix_index;
    return out;
  }

  // At the end of generation: whatever is still held back (an unfinished character decodes to
  // U+FFFD).
  std::string flush() {
    std::string text = m_tok->decode(m_ids, m_skip_special);
    std::string out = text.size() > m_prefix.size() ? text.substr(m_prefix.size()) : std::string();
    m_ids.clear();
    m_prefix.clear();
    m_prefix_index = 0;
    return out;
  }

 private:
  static bool ends_with_replacement(std::string_view s) {
    return s.size() >= 3 && s.substr(s.size() - 3) == "\xEF\xBF\xBD";
  }

  const tokenizer* m_tok;
  bool m_skip_special;
  std::vector<std::int32_t> m_ids;
  std::string m_prefix;
  std::size_t m_prefix_index = 0;
};

}  // namespace crossbatch::text
