// Reading a data set file as JSON (one document) or JSON Lines (one object per line), with errors
// that name the file and, for JSON Lines, the line. Field access with paths goes through
// crossbatch::detail::json_at (eval/squad.hpp), so a malformed record's error reads
// "FILE: RECORD.FIELD: expected a string, got number".
#pragma once

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "crossbatch/core/error.hpp"
#include "crossbatch/eval/squad.hpp"

namespace crossbatch::pardec {

using crossbatch::detail::json_at;

inline std::string read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw io_error(path + ": cannot open for reading");
  std::ostringstream buffer;
  buffer << f.rdbuf();
  if (f.bad()) throw io_error(path + ": read failed");
  return buffer.str();
}

inline nlohmann::json parse_json_text(const std::string& text, const std::string& source) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw format_error(source + ": not valid JSON: " + e.what());
  }
}

inline nlohmann::json read_json_file(const std::string& path) {
  return parse_json_text(read_text_file(path), path);
}

// A JSON Lines file as one array (blank lines skipped); a bad line is named "FILE: line N".
inline nlohmann::json read_jsonl_file(const std::string& path) {
  std::istringstream in(read_text_file(path));
  nlohmann::json out = nlohmann::json::array();
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      out.push_back(nlohmann::json::parse(line));
    } catch (const nlohmann::json::parse_error& e) {
      throw format_error(path + ": line " + std::to_string(n) + ": not valid JSON: " + e.what());
    }
  }
  return out;
}

// The records of a file that is a JSON array, or JSON Lines (one object per line; a file of one
// line is one record).
inline nlohmann::json read_json_or_jsonl(const std::string& path) {
  const std::string text = read_text_file(path);
  try {
    auto doc = nlohmann::json::parse(text);
    if (doc.is_object()) return nlohmann::json::array({std::move(doc)});
    return doc;
  } catch (const nlohmann::json::parse_error&) {
    return read_jsonl_file(path);
  }
}

// A record's string field that may also hold a number (ids are either in the wild).
inline std::string string_or_number(const json_at& j) {
  if (j.value.is_number_integer()) return std::to_string(j.value.get<long long>());
  return j.string();
}

}  // namespace crossbatch::pardec
