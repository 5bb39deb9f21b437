// Helpers of the text tests: the committed fixtures under tests/data/text (written by
// tools/make_tokenizer_fixtures.py from the Python `tokenizers` library) and readable id dumps.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "crossbatch/text/json_reader.hpp"
#include "support.hpp"

namespace cbtest {

inline std::string text_data(const std::string& rel) { return data_dir() + "/text/" + rel; }

inline nlohmann::json load_json(const std::string& rel) {
  const std::string path = text_data(rel);
  return crossbatch::text::parse_json(crossbatch::text::read_text_file(path), path);
}

inline std::vector<std::string> corpus() {
  return load_json("corpus.json").at("strings").get<std::vector<std::string>>();
}

inline std::string show_ids(const std::vector<std::int32_t>& ids) {
  std::string s = "[";
  for (std::size_t i = 0; i < ids.size(); ++i) s += (i ? " " : "") + std::to_string(ids[i]);
  return s + "]";
}

inline std::string escape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

}  // namespace cbtest
