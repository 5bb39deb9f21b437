// The answer format of the parallel-decoding prompts: every reply carries `<answer>text</answer>`.
// Extraction takes the first such tag; a reply without one is the whole (trimmed) text, marked
// not found, so that tag-gated metrics (eval/tagged_metrics.hpp) can refuse it exact-match credit.
#pragma once

#include <string>
#include <string_view>

namespace crossbatch {

struct tagged_answer {
  std::string text;    // the tag's content (trimmed), or the whole trimmed reply when !found
  bool found = false;  // an <answer>...</answer> pair was present
};

namespace detail {
inline std::string_view trim_ascii_space(std::string_view s) {
  auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
  while (!s.empty() && ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && ws(s.back())) s.remove_suffix(1);
  return s;
}
// Case-insensitive ASCII search of `needle` (lower case) in `hay` from `from`.
inline std::size_t find_ascii_nocase(std::string_view hay, std::string_view needle,
                                     std::size_t from = 0) {
  if (needle.size() > hay.size()) return std::string_view::npos;
  for (std::size_t i = from; i + needle.size() <= hay.size(); ++i) {
    bool ok = true;
    for (std::size_t k = 0; k < needle.size() && ok; ++k) {
      char c = hay[i + k];
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      ok = c == needle[k];
    }
    if (ok) return i;
  }
  return std::string_view::npos;
}
}  // namespace detail

// The first `<answer>...</answer>` of a reply (tag names case-insensitive, as the reference's
// re.IGNORECASE | re.DOTALL search; the content may span lines).
inline tagged_answer extract_tagged_answer(std::string_view reply) {
  constexpr std::string_view open = "<answer>", close = "</answer>";
  const std::size_t a = detail::find_ascii_nocase(reply, open);
  if (a != std::string_view::npos) {
    const std::size_t b = detail::find_ascii_nocase(reply, close, a + open.size());
    if (b != std::string_view::npos)
      return {std::string(detail::trim_ascii_space(reply.substr(a + open.size(), b - a - open.size()))),
              true};
  }
  return {std::string(detail::trim_ascii_space(reply)), false};
}

}  // namespace crossbatch
