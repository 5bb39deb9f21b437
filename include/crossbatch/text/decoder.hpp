// Decoders of a tokenizer.json ("decoder" field) that turn token strings back into text: ByteLevel
// (alphabet characters back to bytes, invalid UTF-8 replaced by U+FFFD), WordPiece ("##" joins, the
// spacing clean-up), Replace, Strip, Fuse, ByteFallback and Sequence.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "crossbatch/text/byte_level.hpp"
#include "crossbatch/text/json_reader.hpp"
#include "crossbatch/text/utf8.hpp"

namespace crossbatch::text {

namespace detail {

inline void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty()) return;
  std::string out;
  std::size_t prev = 0;
  for (std::size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, prev)) {
    out.append(s, prev, pos - prev);
    out += to;
    prev = pos + from.size();
  }
  if (prev == 0) return;
  out.append(s, prev);
  s.swap(out);
}

// The English spacing clean-up of BERT's decoder (tokenizers' decoders::wordpiece::cleanup).
inline void wordpiece_cleanup(std::string& s) {
  static constexpr std::pair<std::string_view, std::string_view> rules[] = {
      {" .", "."},   {" ?", "?"},     {" !", "!"},     {" ,", ","},
      {" ' ", "'"},  {" n't", "n't"}, {" 'm", "'m"},   {" do not", " don't"},
      {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
  };
  for (const auto& [from, to] : rules) replace_all(s, from, to);
}

}  // namespace detail

struct byte_level_decoder {};
struct wordpiece_decoder {
  std::string prefix = "##";
  bool cleanup = true;
};
struct replace_decoder {
  std::string pattern, content;
};
struct strip_decoder {
  std::string content;
  std::size_t start = 0, stop = 0;
};
struct fuse_decoder {};
struct byte_fallback_decoder {};

class decoder {
 public:
  using step = std::variant<byte_level_decoder, wordpiece_decoder, replace_decoder, strip_decoder,
                            fuse_decoder, byte_fallback_decoder>;

  decoder() = default;
  explicit decoder(std::vector<step> steps) : m_steps(std::move(steps)) {}
  bool empty() const { return m_steps.empty(); }

  // Joins token strings into text. Without steps, tokens are joined with spaces (as `tokenizers`).
  std::string decode(std::vector<std::string> tokens) const {
    if (m_steps.empty()) {
      std::string out;
      for (std::size_t i = 0; i < tokens.size(); ++i) {
        if (i) out += ' ';
        out += tokens[i];
      }
      return out;
    }
    for (const auto& st : m_steps) std::visit([&](const auto& d) { apply(d, tokens); }, st);
    std::string out;
    for (const auto& t : tokens) out += t;
    return out;
  }

  static decoder from_json(const std::optional<json_node>& node) {
    std::vector<step> steps;
    if (node) parse_into(*node, steps);
    return decoder(std::move(steps));
  }

 private:
  static void apply(const byte_level_decoder&, std::vector<std::string>& tokens) {
    // A token whose characters are all in the alphabet becomes those bytes; any other token keeps
    // its UTF-8 bytes. The concatenation is then read as UTF-8 with replacement.
    const auto& alpha = byte_level_alphabet::get();
    std::string bytes;
    for (const auto& t : tokens) {
      const std::size_t mark = bytes.size();
      bool all = true;
      for (std::size_t i = 0; i < t.size();) {
        const std::size_t n = utf8_length_of_lead(static_cast<unsigned char>(t[i]));
        if (i + n > t.size()) {
          all = false;
          break;
        }
        std::size_t j = i;
        const int b = alpha.byte_of(next_code_point(t, j));
        if (b < 0) {
          all = false;
          break;
        }
        bytes += static_cast<char>(b);
        i = j;
      }
      if (!all) {
        bytes.resize(mark);
        bytes += t;
      }
    }
    tokens.assign(1, repair_utf8(bytes));
  }

  static void apply(const wordpiece_decoder& d, std::vector<std::string>& tokens) {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      std::string& t = tokens[i];
      if (i != 0) {
        if (t.rfind(d.prefix, 0) == 0)
          t.erase(0, d.prefix.size());
        else
          t.insert(t.begin(), ' ');
      }
      if (d.cleanup) detail::wordpiece_cleanup(t);
    }
  }

  static void apply(const replace_decoder& d, std::vector<std::string>& tokens) {
    for (auto& t : tokens) detail::replace_all(t, d.pattern, d.content);
  }

  static void apply(const strip_decoder& d, std::vector<std::string>& tokens) {
    // Removes up to `start` leading and `stop` trailing copies of the character `content`.
    for (auto& t : tokens) {
      std::size_t b = 0, e = t.size();
      for (std::size_t k = 0;
           k < d.start && t.compare(b, d.content.size(), d.content) == 0 && b < e; ++k)
        b += d.content.size();
      for (std::size_t k = 0; k < d.stop && e >= b + d.content.size() &&
                              t.compare(e - d.content.size(), d.content.size(), d.content) == 0;
           ++k)
        e -= d.content.size();
      t = t.substr(b, e - b);
    }
  }

  static void apply(const fuse_decoder&, std::vector<std::string>& tokens) {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }

  static void apply(const byte_fallback_decoder&, std::vector<std::string>& tokens) {
    // Runs of <0xXX> tokens become their bytes, read as UTF-8 (one U+FFFD per byte when invalid).
    std::vector<std::string> out;
    std::string pending;
    auto flush = [&] {
      if (pending.empty()) return;
      if (is_valid_utf8(pending)) {
        out.push_back(pending);
      } else {
        for (std::size_t k = 0; k < pending.size(); ++k) out.emplace_back("\xEF\xBF\xBD");
      }
      pending.clear();
    };
    for (const auto& t : tokens) {
      if (t.size() == 6 && t.rfind("<0x", 0) == 0 && t[5] == '>') {
        const std::string hex = t.substr(3, 2);
        if (hex.find_first_not_of("0123456789ABCDEFabcdef") == std::string::npos) {
          pending += static_cast<char>(std::stoi(hex, nullptr, 16));
          continue;
        }
      }
      flush();
      out.push_back(t);
    }
    flush();
    tokens.swap(out);
  }

  static void parse_into(const json_node& n, std::vector<step>& steps) {
    const std::string type = n.at("type").string();
    if (type == "Sequence") {
      const json_node list = n.at("decoders");
      for (std::size_t i = 0; i < list.size(); ++i) parse_into(list.at(i), steps);
    } else if (type == "ByteLevel") {
      steps.push_back(byte_level_decoder{});
    } else if (type == "WordPiece") {
      steps.push_back(
          wordpiece_decoder{n.string_or("prefix", "##"), n.boolean_or("cleanup", true)});
    } else if (type == "Replace") {
      const json_node pattern = n.at("pattern");
      auto lit = pattern.find("String");
      if (!lit) pattern.fail("only {\"String\": ...} patterns are supported in a Replace decoder");
      steps.push_back(replace_decoder{lit->string(), n.at("content").string()});
    } else if (type == "Strip") {
      steps.push_back(strip_decoder{n.at("content").string(),
                                    static_cast<std::size_t>(n.at("start").integer()),
                                    static_cast<std::size_t>(n.at("stop").integer())});
    } else if (type == "Fuse") {
      steps.push_back(fuse_decoder{});
    } else if (type == "ByteFallback") {
      steps.push_back(byte_fallback_decoder{});
    } else {
      n.at("type").fail(
          "unsupported decoder type '" + type +
          "' (supported: ByteLevel, WordPiece, Replace, Strip, Fuse, ByteFallback, Sequence)");
    }
  }

  std::vector<step> m_steps;
};

}  // namespace crossbatch::text
