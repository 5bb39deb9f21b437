// Unicode regular expressions for pre-tokenizer patterns: PCRE2 with UTF + UCP, JIT-compiled.
// Patterns are written for Oniguruma (what the `tokenizers` library runs); \s, \S, \w and \W are
// rewritten into explicit classes because PCRE2's differ from Oniguruma's (PCRE2's \s also takes
// U+180E; its \w lacks marks), and \p{L}, \p{N}, \p{M}, \p{Nd} get the code points that
// Oniguruma's newer Unicode data adds, so the same pattern splits text the same way.
#pragma once

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "crossbatch/core/error.hpp"
#include "crossbatch/text/unicode_tables.hpp"

namespace crossbatch::text {

namespace detail {

// White_Space, as class members (no brackets).
inline constexpr const char* white_space_members =
    "\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}"
    "\\x{3000}";
// The members of Oniguruma's \p{name} for PCRE2: the property plus the code points Oniguruma's
// newer Unicode data adds (empty for properties we do not patch).
inline std::string property_members(std::string_view name) {
  const char* extra = name == "L"    ? unicode_data::regex_extra_L
                      : name == "N"  ? unicode_data::regex_extra_N
                      : name == "M"  ? unicode_data::regex_extra_M
                      : name == "Nd" ? unicode_data::regex_extra_Nd
                      : name == "Pc" ? unicode_data::regex_extra_Pc
                                     : nullptr;
  if (!extra) return {};
  return "\\p{" + std::string(name) + "}" + extra;
}

// Oniguruma's Unicode \w: letters, marks, decimal digits and connector punctuation.
inline std::string word_members() {
  return property_members("L") + property_members("M") + property_members("Nd") +
         property_members("Pc");
}

// Rewrites \s \S \w \W \p{..} of an Oniguruma pattern for PCRE2 (inside and outside [...]).
inline std::string translate_pattern(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 64);
  int class_depth = 0;
  auto emit_class = [&](const std::string& members, bool negated, std::string_view original) {
    if (class_depth == 0) {
      out += negated ? "[^" : "[";
      out += members;
      out += ']';
    } else if (!negated) {
      out += members;
    } else {
      out += original;  // a negated shorthand inside a class: keep PCRE2's own
    }
  };
  for (std::size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char n = p[i + 1];
      if (n == 's' || n == 'S') {
        emit_class(white_space_members, n == 'S', p.substr(i, 2));
        ++i;
        continue;
      }
      if (n == 'w' || n == 'W') {
        emit_class(word_members(), n == 'W', p.substr(i, 2));
        ++i;
        continue;
      }
      if (n == 'p' || n == 'P') {
        std::size_t len = 3;  // \pL
        std::string_view name = p.substr(i + 2, 1);
        if (i + 2 < p.size() && p[i + 2] == '{') {
          const std::size_t close = p.find('}', i + 3);
          if (close != std::string_view::npos) {
            name = p.substr(i + 3, close - i - 3);
            len = close - i + 1;
          }
        }
        const std::string members = property_members(name);
        if (!members.empty()) {
          emit_class(members, n == 'P', p.substr(i, len));
          i += len - 1;
          continue;
        }
      }
      out += c;
      out += n;
      ++i;
      continue;
    }
    if (c == '[') {
      ++class_depth;
      out += c;
      // A ']' right after '[' or '[^' is a literal member.
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    if (c == ']' && class_depth > 0) --class_depth;
    out += c;
  }
  return out;
}

struct pcre2_code_deleter {
  void operator()(pcre2_code* c) const { pcre2_code_free(c); }
};

// Per-thread match data and JIT stack, shared by every regex (a match never nests another).
struct regex_scratch {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  regex_scratch() { pcre2_jit_stack_assign(context, nullptr, stack); }
  ~regex_scratch() {
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(stack);
    pcre2_match_data_free(data);
  }
  regex_scratch(const regex_scratch&) = delete;
  regex_scratch& operator=(const regex_scratch&) = delete;
  static regex_scratch& get() {
    thread_local regex_scratch s;
    return s;
  }
};

}  // namespace detail

// A compiled pattern. Thread-safe for matching; copies share the compiled code.
class regex {
 public:
  regex() = default;
  // `where` names the pattern's origin in errors (file and JSON path).
  regex(std::string_view pattern, const std::string& where) : m_pattern(pattern) {
    const std::string translated = detail::translate_pattern(pattern);
    int code = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code* c =
        pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                      PCRE2_UTF | PCRE2_UCP, &code, &offset, nullptr);
    if (!c) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(code, msg, sizeof msg);
      throw format_error(where + ": cannot compile regex '" + std::string(pattern) +
                         "' at offset " + std::to_string(offset) + ": " +
                         reinterpret_cast<const char*>(msg));
    }
    m_code.reset(c, detail::pcre2_code_deleter{});
    m_jit = pcre2_jit_compile(c, PCRE2_JIT_COMPLETE) == 0;
  }

  const std::string& pattern() const { return m_pattern; }
  bool empty() const { return !m_code; }

  // Calls f(begin, end) for each successive non-overlapping match in valid UTF-8 text, as
  // Oniguruma's find_iter does: after an empty match the search resumes one character later.
  template <class F>
  void for_each_match(std::string_view text, F&& f) const {
    auto& s = detail::regex_scratch::get();
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    std::size_t start = 0;
    while (start <= text.size()) {
      const int rc =
          m_jit ? pcre2_jit_match(m_code.get(), subject, text.size(), start, 0, s.data, s.context)
                : pcre2_match(m_code.get(), subject, text.size(), start, PCRE2_NO_UTF_CHECK, s.data,
                              s.context);
      if (rc == PCRE2_ERROR_NOMATCH) return;
      if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        throw value_error("regex '" + m_pattern +
                          "' failed: " + reinterpret_cast<const char*>(msg));
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(s.data);
      const std::size_t b = ov[0], e = ov[1];
      f(b, e);
      if (e > b) {
        start = e;
      } else {  // empty match: step over one character
        if (e >= text.size()) return;
        start = e + 1;
        while (start < text.size() && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80)
          ++start;
      }
    }
  }

 private:
  std::string m_pattern;
  std::shared_ptr<pcre2_code> m_code;
  bool m_jit = false;
};

}  // namespace crossbatch::text
