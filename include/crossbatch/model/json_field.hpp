// Typed access to JSON fields with errors that name the file, the field and the expected type.
#pragma once

#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "crossbatch/core/error.hpp"

namespace crossbatch {

using json = nlohmann::json;

// Parses a JSON file; io_error if it cannot be read, format_error (with the parser's position) if
// it is not JSON.
inline json read_json_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw io_error(path + ": cannot open for reading");
  try {
    return json::parse(f);
  } catch (const json::parse_error& e) {
    throw format_error(path + ": not valid JSON: " + e.what());
  }
}

namespace detail {
template <class T>
constexpr const char* json_type_name() {
  if constexpr (std::is_same_v<T, bool>)
    return "a boolean";
  else if constexpr (std::is_integral_v<T>)
    return "an integer";
  else if constexpr (std::is_floating_point_v<T>)
    return "a number";
  else if constexpr (std::is_same_v<T, std::string>)
    return "a string";
  else
    return "an object";
}
template <class T>
bool json_is(const json& v) {
  if constexpr (std::is_same_v<T, bool>)
    return v.is_boolean();
  else if constexpr (std::is_integral_v<T>)
    return v.is_number_integer();
  else if constexpr (std::is_floating_point_v<T>)
    return v.is_number();
  else if constexpr (std::is_same_v<T, std::string>)
    return v.is_string();
  else
    return v.is_object();
}
}  // namespace detail

// The value of j[key] as T, or nullopt when absent or null; config_error when of the wrong type.
template <class T>
std::optional<T> optional_field(const json& j, const std::string& key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!detail::json_is<T>(*it))
    throw config_error(where + ": field '" + key + "' must be " + detail::json_type_name<T>() +
                       ", got " + it->type_name() + " (" + it->dump() + ")");
  return it->get<T>();
}

// The value of j[key] as T; config_error when missing or of the wrong type.
template <class T>
T required_field(const json& j, const std::string& key, const std::string& where) {
  auto v = optional_field<T>(j, key, where);
  if (!v)
    throw config_error(where + ": required field '" + key + "' (" + detail::json_type_name<T>() +
                       ") is missing");
  return *v;
}

// The first present of several alternative keys (e.g. n_embd / hidden_size).
template <class T>
std::optional<T> optional_field(const json& j, std::initializer_list<const char*> keys,
                                const std::string& where) {
  for (const char* k : keys)
    if (auto v = optional_field<T>(j, k, where)) return v;
  return std::nullopt;
}

}  // namespace crossbatch
