// Normalizers of a tokenizer.json ("normalizer" field): NFC/NFD/NFKC/NFKD, Lowercase,
// BertNormalizer, Strip, Replace, Prepend and Sequence, with the semantics of the Python
// `tokenizers` library.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "crossbatch/text/json_reader.hpp"
#include "crossbatch/text/regex.hpp"
#include "crossbatch/text/unicode.hpp"

namespace crossbatch::text {

// BertNormalizer: control characters removed and whitespace turned into ' ' (clean_text), CJK
// ideographs padded with spaces, accents stripped (NFD, then drop nonspacing marks), lowercase.
struct bert_normalizer {
  bool clean_text = true;
  bool handle_chinese_chars = true;
  bool strip_accents = true;  // tokenizer.json's null means "same as lowercase"
  bool lowercase = true;

  std::string apply(std::string_view s) const {
    std::string out;
    out.reserve(s.size() + 8);
    bool ascii = true;
    for (std::size_t i = 0; i < s.size();) {
      const auto b = static_cast<unsigned char>(s[i]);
      if (b < 0x80) {  // ASCII fast path
        ++i;
        if (lowercase && b >= 'A' && b <= 'Z') {
          out += static_cast<char>(b + 32);
          continue;
        }
        if (clean_text &&
            (b == 0 || (b < 0x20 && b != '\t' && b != '\n' && b != '\r') || b == 0x7F))
          continue;
        if (clean_text && (b == '\t' || b == '\n' || b == '\r')) {
          out += ' ';
          continue;
        }
        out += static_cast<char>(b);
        continue;
      }
      ascii = false;
      const char32_t c = next_code_point(s, i);
      if (clean_text) {
        if (is_bert_control(c)) continue;
        if (is_white_space(c)) {
          out += ' ';
          continue;
        }
      }
      if (handle_chinese_chars && is_bert_chinese(c)) {
        out += ' ';
        append_utf8(out, c);
        out += ' ';
        continue;
      }
      append_utf8(out, c);
    }
    if (ascii) return out;  // already lowercased; nothing to strip
    if (strip_accents) {
      std::string decomposed = normalize(out, normal_form::nfd);
      out.clear();
      for (std::size_t i = 0; i < decomposed.size();) {
        const std::size_t start = i;
        const char32_t c = next_code_point(decomposed, i);
        if (!is_nonspacing_mark(c)) out.append(decomposed, start, i - start);
      }
    }
    if (lowercase) out = text::lowercase(out);
    return out;
  }
};

struct unicode_normalizer {
  normal_form form;
  std::string apply(std::string_view s) const { return normalize(s, form); }
};

struct lowercase_normalizer {
  std::string apply(std::string_view s) const { return lowercase(s); }
};

// Strip: removes leading and/or trailing White_Space.
struct strip_normalizer {
  bool left = true, right = true;
  std::string apply(std::string_view s) const {
    std::size_t b = 0, e = s.size();
    if (left) {
      while (b < e) {
        std::size_t j = b;
        if (!is_white_space(next_code_point(s, j))) break;
        b = j;
      }
    }
    if (right) {
      while (e > b) {
        std::size_t k = e - 1;
        while (k > b && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
        std::size_t j = k;
        if (!is_white_space(next_code_point(s, j))) break;
        e = k;
      }
    }
    return std::string(s.substr(b, e - b));
  }
};

// Replace: every match of a literal string or a regex becomes `content`.
struct replace_normalizer {
  std::string literal;  // used when re is empty
  regex re;
  std::string content;
  std::string apply(std::string_view s) const {
    std::string out;
    std::size_t prev = 0;
    auto on_match = [&](std::size_t b, std::size_t e) {
      if (e == b) return;
      out.append(s.substr(prev, b - prev));
      out += content;
      prev = e;
    };
    if (!re.empty()) {
      re.for_each_match(s, on_match);
    } else if (!literal.empty()) {
      for (std::size_t pos = s.find(literal); pos != std::string_view::npos;
           pos = s.find(literal, pos)) {
        on_match(pos, pos + literal.size());
        pos += literal.size();
      }
    }
    out.append(s.substr(prev));
    return out;
  }
};

// Prepend: adds a prefix to non-empty strings.
struct prepend_normalizer {
  std::string prefix;
  std::string apply(std::string_view s) const {
    return s.empty() ? std::string() : prefix + std::string(s);
  }
};

// A normalizer: a sequence of steps (empty = identity).
class normalizer {
 public:
  using step = std::variant<unicode_normalizer, lowercase_normalizer, bert_normalizer,
                            strip_normalizer, replace_normalizer, prepend_normalizer>;

  normalizer() = default;
  explicit normalizer(std::vector<step> steps) : m_steps(std::move(steps)) {}

  bool empty() const { return m_steps.empty(); }
  const std::vector<step>& steps() const { return m_steps; }

  std::string apply(std::string_view s) const {
    if (m_steps.empty()) return std::string(s);
    std::string cur(s);
    for (const auto& st : m_steps)
      cur = std::visit([&](const auto& n) { return n.apply(cur); }, st);
    return cur;
  }

  // Parses the "normalizer" field of a tokenizer.json (null gives the identity).
  static normalizer from_json(const std::optional<json_node>& node) {
    std::vector<step> steps;
    if (node) parse_into(*node, steps);
    return normalizer(std::move(steps));
  }

 private:
  static void parse_into(const json_node& n, std::vector<step>& steps) {
    const std::string type = n.at("type").string();
    if (type == "Sequence") {
      const json_node list = n.at("normalizers");
      for (std::size_t i = 0; i < list.size(); ++i) parse_into(list.at(i), steps);
    } else if (type == "NFC") {
      steps.push_back(unicode_normalizer{normal_form::nfc});
    } else if (type == "NFD") {
      steps.push_back(unicode_normalizer{normal_form::nfd});
    } else if (type == "NFKC") {
      steps.push_back(unicode_normalizer{normal_form::nfkc});
    } else if (type == "NFKD") {
      steps.push_back(unicode_normalizer{normal_form::nfkd});
    } else if (type == "Lowercase") {
      steps.push_back(lowercase_normalizer{});
    } else if (type == "BertNormalizer") {
      bert_normalizer b;
      b.clean_text = n.boolean_or("clean_text", true);
      b.handle_chinese_chars = n.boolean_or("handle_chinese_chars", true);
      b.lowercase = n.boolean_or("lowercase", true);
      b.strip_accents = n.boolean_or("strip_accents", b.lowercase);
      steps.push_back(b);
    } else if (type == "Strip") {
      steps.push_back(
          strip_normalizer{n.boolean_or("strip_left", true), n.boolean_or("strip_right", true)});
    } else if (type == "Replace") {
      replace_normalizer r;
      const json_node pattern = n.at("pattern");
      if (auto lit = pattern.find("String")) {
        r.literal = lit->string();
      } else if (auto re = pattern.find("Regex")) {
        r.re = regex(re->string(), n.file() + ": " + re->path());
      } else {
        pattern.fail("expected {\"String\": ...} or {\"Regex\": ...}");
      }
      r.content = n.at("content").string();
      steps.push_back(std::move(r));
    } else if (type == "Prepend") {
      steps.push_back(prepend_normalizer{n.at("prepend").string()});
    } else {
      n.at("type").fail(
          "unsupported normalizer type '" + type +
          "' (supported: NFC, NFD, NFKC, NFKD, Lowercase, BertNormalizer, Strip, Replace, "
          "Prepend, Sequence)");
    }
  }

  std::vector<step> m_steps;
};

}  // namespace crossbatch::text
