// Reading a tokenizer's JSON files with errors that name the file and the JSON path of the bad
// value (e.g. "tokenizer.json: model.merges[17]: token 'xy' is not in the vocabulary").
#pragma once

#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

#include "crossbatch/core/error.hpp"

namespace crossbatch::text {

using json = nlohmann::json;

// A JSON value together with where it came from.
class json_node {
 public:
  json_node(const json& value, std::string file, std::string path = "")
      : m_value(&value), m_file(std::move(file)), m_path(std::move(path)) {}

  const json& value() const { return *m_value; }
  const std::string& file() const { return m_file; }
  const std::string& path() const { return m_path; }

  [[noreturn]] void fail(const std::string& what) const {
    throw format_error(m_file + ": " + (m_path.empty() ? "(root)" : m_path) + ": " + what);
  }

  bool is_null() const { return m_value->is_null(); }
  bool has(std::string_view key) const {
    return m_value->is_object() && m_value->contains(key) &&
           !(*m_value)[std::string(key)].is_null();
  }

  // The member `key`; missing or null is an error.
  json_node at(std::string_view key) const {
    if (!m_value->is_object()) fail("expected an object, got " + std::string(m_value->type_name()));
    auto it = m_value->find(key);
    if (it == m_value->end() || it->is_null()) child(key).fail("missing field");
    return child(key, &*it);
  }
  // The member `key`, or nothing when it is missing or null.
  std::optional<json_node> find(std::string_view key) const {
    if (!m_value->is_object()) return std::nullopt;
    auto it = m_value->find(key);
    if (it == m_value->end() || it->is_null()) return std::nullopt;
    return child(key, &*it);
  }
  json_node at(std::size_t i) const {
    if (!m_value->is_array()) fail("expected an array, got " + std::string(m_value->type_name()));
    if (i >= m_value->size()) fail("index " + std::to_string(i) + " out of range");
    return json_node((*m_value)[i], m_file, m_path + "[" + std::to_string(i) + "]");
  }
  std::size_t size() const {
    if (!m_value->is_array() && !m_value->is_object())
      fail("expected an array or object, got " + std::string(m_value->type_name()));
    return m_value->size();
  }

  std::string string() const {
    if (!m_value->is_string()) fail("expected a string, got " + std::string(m_value->type_name()));
    return m_value->get<std::string>();
  }
  bool boolean() const {
    if (!m_value->is_boolean())
      fail("expected true or false, got " + std::string(m_value->type_name()));
    return m_value->get<bool>();
  }
  std::int64_t integer() const {
    if (!m_value->is_number_integer())
      fail("expected an integer, got " + std::string(m_value->type_name()));
    return m_value->get<std::int64_t>();
  }
  // An integer that must fit a token id (0 <= v < 2^31).
  std::int32_t id() const {
    const std::int64_t v = integer();
    if (v < 0 || v > INT32_MAX) fail("token id " + std::to_string(v) + " out of range");
    return static_cast<std::int32_t>(v);
  }

  std::string string_or(std::string_view key, std::string fallback) const {
    auto n = find(key);
    return n ? n->string() : fallback;
  }
  bool boolean_or(std::string_view key, bool fallback) const {
    auto n = find(key);
    return n ? n->boolean() : fallback;
  }

 private:
  json_node(const json& value, std::string file, std::string path, int)
      : m_value(&value), m_file(std::move(file)), m_path(std::move(path)) {}
  json_node child(std::string_view key, const json* v = nullptr) const {
    static const json null_value;
    return json_node(v ? *v : null_value, m_file,
                     m_path.empty() ? std::string(key) : m_path + "." + std::string(key), 0);
  }

  const json* m_value;
  std::string m_file;
  std::string m_path;
};

// Reads a whole file; io_error when it cannot be opened.
inline std::string read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw io_error(path + ": cannot open for reading");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Parses JSON text; format_error naming `file` and the byte offset on a syntax error.
inline json parse_json(std::string_view text, const std::string& file) {
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    throw format_error(file + ": invalid JSON at byte " + std::to_string(e.byte) + ": " + e.what());
  }
}

}  // namespace crossbatch::text
