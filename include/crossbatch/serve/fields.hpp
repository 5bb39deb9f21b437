// Typed reads of request JSON fields: each names the field when it has the wrong type or lies
// outside its range (api_error 400), and gives the default when the field is absent or null.
// Integers must be JSON integers (3.0 is refused), numbers may be integers or floats, finite.
#pragma once

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "crossbatch/serve/api_error.hpp"

namespace crossbatch::serve {

// The object a route reads: the body must be a JSON object.
inline json parse_body(const std::string& body) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    throw api_error(400, "body", std::string("the body is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw api_error(400, "body", "the body must be a JSON object");
  return j;
}

inline const json* field_or_null(const json& j, const std::string& key) {
  const auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

inline bool read_bool(const json& j, const std::string& key, bool fallback) {
  const json* v = field_or_null(j, key);
  if (!v) return fallback;
  if (!v->is_boolean()) throw bad_field(key, "must be true or false");
  return v->get<bool>();
}

// A number in [lo, hi] (lo excluded when lo_open).
inline double read_number(const json& j, const std::string& key, double fallback, double lo,
                          double hi, bool lo_open = false) {
  const json* v = field_or_null(j, key);
  if (!v) return fallback;
  if (!v->is_number()) throw bad_field(key, "must be a number");
  const double x = v->get<double>();
  const bool low_ok = lo_open ? x > lo : x >= lo;
  if (!std::isfinite(x) || !low_ok || x > hi)
    throw bad_field(key, "must be in " + std::string(lo_open ? "(" : "[") + std::to_string(lo) +
                             ", " + std::to_string(hi) + "], got " + v->dump());
  return x;
}

inline long long read_integer(const json& j, const std::string& key, long long fallback,
                              long long lo, long long hi) {
  const json* v = field_or_null(j, key);
  if (!v) return fallback;
  if (!v->is_number_integer()) throw bad_field(key, "must be an integer");
  long long x = 0;
  if (v->is_number_unsigned()) {
    const auto u = v->get<unsigned long long>();
    if (u > static_cast<unsigned long long>(hi))
      throw bad_field(key, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                               "], got " + v->dump());
    x = static_cast<long long>(u);
  } else {
    x = v->get<long long>();
  }
  if (x < lo || x > hi)
    throw bad_field(key, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                             "], got " + v->dump());
  return x;
}

// A seed: any non-negative integer up to 2^64 - 1.
inline std::uint64_t read_seed(const json& j, const std::string& key, std::uint64_t fallback) {
  const json* v = field_or_null(j, key);
  if (!v) return fallback;
  if (!v->is_number_integer() || (v->is_number_integer() && !v->is_number_unsigned()))
    throw bad_field(key, "must be a non-negative integer");
  return v->get<std::uint64_t>();
}

inline std::optional<std::string> read_string(const json& j, const std::string& key) {
  const json* v = field_or_null(j, key);
  if (!v) return std::nullopt;
  if (!v->is_string()) throw bad_field(key, "must be a string");
  return v->get<std::string>();
}

// A required, non-empty string.
inline std::string require_text(const json& j, const std::string& key) {
  const auto s = read_string(j, key);
  if (!s) throw bad_field(key, "is required");
  if (s->empty()) throw bad_field(key, "must not be empty");
  return *s;
}

// A required, non-empty list of non-empty strings (at most max_items).
inline std::vector<std::string> require_texts(const json& j, const std::string& key,
                                              std::size_t max_items) {
  const json* v = field_or_null(j, key);
  if (!v) throw bad_field(key, "is required");
  if (!v->is_array()) throw bad_field(key, "must be a list of strings");
  if (v->empty()) throw bad_field(key, "must not be empty");
  if (v->size() > max_items)
    throw bad_field(key, "holds " + std::to_string(v->size()) + " items, the limit is " +
                             std::to_string(max_items));
  std::vector<std::string> out;
  for (std::size_t i = 0; i < v->size(); ++i) {
    const std::string name = key + "[" + std::to_string(i) + "]";
    if (!(*v)[i].is_string()) throw bad_field(name, "must be a string");
    out.push_back((*v)[i].get<std::string>());
    if (out.back().empty()) throw bad_field(name, "must not be empty");
  }
  return out;
}

}  // namespace crossbatch::serve
