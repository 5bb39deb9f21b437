// Reading the answers of an all_in_one reply: lines `Qk: <answer>text</answer>` (the reference's
// regex Q(\d+)\s*:\s*<answer>(.*?)</answer>, case-insensitive, across lines), the first match per
// id wins, ids outside the group are ignored, a missing id is an empty answer marked not found.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "crossbatch/eval/answer_tag.hpp"

namespace crossbatch::pardec {

inline std::vector<tagged_answer> parse_all_in_one(std::string_view reply, std::size_t questions) {
  std::vector<tagged_answer> out(questions);
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
  constexpr std::string_view open = "<answer>", close = "</answer>";
  for (std::size_t i = 0; i < reply.size(); ++i) {
    if (reply[i] != 'Q' && reply[i] != 'q') continue;
    std::size_t j = i + 1;
    std::size_t id = 0, digits = 0;
    while (j < reply.size() && reply[j] >= '0' && reply[j] <= '9' && digits < 9) id = id * 10 + (reply[j++] - '0'), ++digits;
    if (digits == 0) continue;
    while (j < reply.size() && is_space(reply[j])) ++j;
    if (j >= reply.size() || reply[j] != ':') continue;
    ++j;
    while (j < reply.size() && is_space(reply[j])) ++j;
    if (crossbatch::detail::find_ascii_nocase(reply.substr(j, open.size()), open) != 0) continue;
    const std::size_t a = j + open.size();
    const std::size_t b = crossbatch::detail::find_ascii_nocase(reply, close, a);
    if (b == std::string_view::npos) continue;
    if (id >= 1 && id <= questions && !out[id - 1].found)
      out[id - 1] = {std::string(crossbatch::detail::trim_ascii_space(reply.substr(a, b - a))), true};
    i = b + close.size() - 1;
  }
  return out;
}

}  // namespace crossbatch::pardec
