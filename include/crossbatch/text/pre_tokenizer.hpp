// Pre-tokenizers of a tokenizer.json ("pre_tokenizer" field): ByteLevel (GPT-2 split pattern),
// Split (regex or string, every delimiter behaviour, invert), Digits, BertPreTokenizer, Whitespace,
// WhitespaceSplit, Punctuation and Sequence, with the splitting rules of the `tokenizers` library.
#pragma once

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "crossbatch/text/byte_level.hpp"
#include "crossbatch/text/json_reader.hpp"
#include "crossbatch/text/regex.hpp"
#include "crossbatch/text/unicode.hpp"

namespace crossbatch::text {

// GPT-2's split pattern, used by ByteLevel when use_regex is set.
inline constexpr std::string_view gpt2_split_pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

enum class split_behavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

namespace detail {

struct span {
  std::size_t begin, end;
  bool flag;  // is_match while collecting, then "remove"
};

// Turns the covering list of (piece, is_match) into the pieces to keep, as NormalizedString::split
// does for each behaviour; empty pieces are dropped.
inline void apply_behavior(std::vector<span>& pieces, split_behavior behavior) {
  std::vector<span> out;
  out.reserve(pieces.size());
  switch (behavior) {
    case split_behavior::isolated:
      for (auto& p : pieces) out.push_back({p.begin, p.end, false});
      break;
    case split_behavior::removed:
      out = pieces;
      break;
    case split_behavior::contiguous: {
      bool previous = false;
      for (auto& p : pieces) {
        if (p.flag == previous && !out.empty())
          out.back().end = p.end;
        else
          out.push_back({p.begin, p.end, false});
        previous = p.flag;
      }
      break;
    }
    case split_behavior::merged_with_previous: {
      bool previous = false;
      for (auto& p : pieces) {
        if (p.flag && !previous && !out.empty())
          out.back().end = p.end;
        else
          out.push_back({p.begin, p.end, false});
        previous = p.flag;
      }
      break;
    }
    case split_behavior::merged_with_next: {
      bool previous = false;
      for (auto it = pieces.rbegin(); it != pieces.rend(); ++it) {
        if (it->flag && !previous && !out.empty())
          out.back().begin = it->begin;
        else
          out.push_back({it->begin, it->end, false});
        previous = it->flag;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
  }
  pieces.clear();
  for (auto& p : out)
    if (!p.flag && p.end > p.begin) pieces.push_back(p);
}

// Appends a match to a covering piece list, with the gap before it as a non-match.
inline void add_match(std::vector<span>& pieces, std::size_t& prev, std::size_t b, std::size_t e,
                      bool invert) {
  if (prev < b) pieces.push_back({prev, b, invert});
  pieces.push_back({b, e, !invert});
  prev = e;
}

// Pieces of text split at each character for which pred holds (each such character is one match).
template <class Pred>
void split_chars(std::string_view text, Pred pred, split_behavior behavior,
                 std::vector<span>& pieces) {
  pieces.clear();
  std::size_t prev = 0;
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t start = i;
    const char32_t c = static_cast<unsigned char>(text[i]) < 0x80 ? static_cast<char32_t>(text[i++])
                                                                  : next_code_point(text, i);
    if (pred(c)) add_match(pieces, prev, start, i, false);
  }
  if (prev < text.size()) pieces.push_back({prev, text.size(), false});
  apply_behavior(pieces, behavior);
}

}  // namespace detail

struct byte_level_pre_tokenizer {
  bool add_prefix_space = true;
  bool use_regex = true;
  regex re;  // GPT-2 pattern when use_regex
};

struct split_pre_tokenizer {
  std::string literal;  // used when re is empty
  regex re;
  split_behavior behavior = split_behavior::isolated;
  bool invert = false;
};

struct digits_pre_tokenizer {
  bool individual_digits = false;
};

struct bert_pre_tokenizer {};
struct whitespace_pre_tokenizer {
  regex re;  // \w+|[^\w\s]+
};
struct whitespace_split_pre_tokenizer {};
struct punctuation_pre_tokenizer {
  split_behavior behavior = split_behavior::isolated;
};

// A pre-tokenizer: a sequence of steps that cut normalized text into words for the model.
class pre_tokenizer {
 public:
  using step = std::variant<byte_level_pre_tokenizer, split_pre_tokenizer, digits_pre_tokenizer,
                            bert_pre_tokenizer, whitespace_pre_tokenizer,
                            whitespace_split_pre_tokenizer, punctuation_pre_tokenizer>;

  pre_tokenizer() = default;
  explicit pre_tokenizer(std::vector<step> steps) : m_steps(std::move(steps)) {}

  const std::vector<step>& steps() const { return m_steps; }
  // True when the last step is ByteLevel: words then reach the sink as raw bytes (raw_bytes = true)
  // and the model maps them to the byte-level alphabet itself.
  bool byte_level_output() const {
    return !m_steps.empty() && std::holds_alternative<byte_level_pre_tokenizer>(m_steps.back());
  }

  // Calls sink(word, raw_bytes) for each word of `text` (valid UTF-8), in order. Empty words are
  // never emitted. The view is only valid during the call.
  template <class Sink>
  void run(std::string_view text, Sink&& sink) const {
    if (text.empty()) return;
    run_from(0, text, sink);
  }

  // The words as strings (in the byte-level alphabet where a ByteLevel step applies); for tests.
  std::vector<std::string> words(std::string_view text) const {
    std::vector<std::string> out;
    run(text, [&](std::string_view w, bool raw) {
      std::string s;
      if (raw)
        byte_level_alphabet::get().map(w, s);
      else
        s = w;
      out.push_back(std::move(s));
    });
    return out;
  }

  static pre_tokenizer from_json(const std::optional<json_node>& node) {
    std::vector<step> steps;
    if (node) parse_into(*node, steps);
    return pre_tokenizer(std::move(steps));
  }

 private:
  template <class Sink>
  void run_from(std::size_t k, std::string_view text, Sink& sink) const {
    if (k == m_steps.size()) {
      sink(text, false);
      return;
    }
    std::vector<detail::span> pieces;
    auto recurse = [&](const std::vector<detail::span>& ps) {
      for (const auto& p : ps) run_from(k + 1, text.substr(p.begin, p.end - p.begin), sink);
    };
    const step& st = m_steps[k];
    if (const auto* bl = std::get_if<byte_level_pre_tokenizer>(&st)) {
      std::string prefixed;
      if (bl->add_prefix_space && text.front() != ' ') {
        prefixed.reserve(text.size() + 1);
        prefixed += ' ';
        prefixed += text;
        text = prefixed;
      }
      const bool last = k + 1 == m_steps.size();
      auto emit = [&](std::string_view w) {
        if (last) {
          sink(w, true);
        } else {
          std::string mapped;
          byte_level_alphabet::get().map(w, mapped);
          run_from(k + 1, mapped, sink);
        }
      };
      if (!bl->use_regex) {
        emit(text);
        return;
      }
      // Isolated: every match and every gap is a word, in order (empty ones dropped).
      std::size_t prev = 0;
      bl->re.for_each_match(text, [&](std::size_t b, std::size_t e) {
        if (prev < b) emit(text.substr(prev, b - prev));
        if (b < e) emit(text.substr(b, e - b));
        prev = e;
      });
      if (prev < text.size()) emit(text.substr(prev));
    } else if (const auto* sp = std::get_if<split_pre_tokenizer>(&st)) {
      if (sp->behavior == split_behavior::isolated && !sp->re.empty()) {
        // The common case (Llama 3, Qwen2): stream the pieces without collecting them.
        std::size_t prev = 0;
        sp->re.for_each_match(text, [&](std::size_t b, std::size_t e) {
          if (prev < b) run_from(k + 1, text.substr(prev, b - prev), sink);
          if (b < e) run_from(k + 1, text.substr(b, e - b), sink);
          prev = e;
        });
        if (prev < text.size()) run_from(k + 1, text.substr(prev), sink);
        return;
      }
      std::size_t prev = 0;
      if (!sp->re.empty()) {
        sp->re.for_each_match(text, [&](std::size_t b, std::size_t e) {
          detail::add_match(pieces, prev, b, e, sp->invert);
        });
      } else if (!sp->literal.empty()) {
        for (std::size_t pos = text.find(sp->literal); pos != std::string_view::npos;
             pos = text.find(sp->literal, prev))
          detail::add_match(pieces, prev, pos, pos + sp->literal.size(), sp->invert);
      }
      if (prev < text.size()) pieces.push_back({prev, text.size(), sp->invert});
      detail::apply_behavior(pieces, sp->behavior);
      recurse(pieces);
    } else if (const auto* dg = std::get_if<digits_pre_tokenizer>(&st)) {
      detail::split_chars(
          text, is_numeric,
          dg->individual_digits ? split_behavior::isolated : split_behavior::contiguous, pieces);
      recurse(pieces);
    } else if (std::holds_alternative<bert_pre_tokenizer>(st)) {
      detail::split_chars(text, is_white_space, split_behavior::removed, pieces);
      std::vector<detail::span> inner;
      for (const auto& p : pieces) {
        const std::string_view word = text.substr(p.begin, p.end - p.begin);
        detail::split_chars(word, is_bert_punctuation, split_behavior::isolated, inner);
        for (const auto& q : inner) run_from(k + 1, word.substr(q.begin, q.end - q.begin), sink);
      }
    } else if (const auto* ws = std::get_if<whitespace_pre_tokenizer>(&st)) {
      std::size_t prev = 0;
      ws->re.for_each_match(
          text, [&](std::size_t b, std::size_t e) { detail::add_match(pieces, prev, b, e, true); });
      if (prev < text.size()) pieces.push_back({prev, text.size(), true});
      detail::apply_behavior(pieces, split_behavior::removed);
      recurse(pieces);
    } else if (std::holds_alternative<whitespace_split_pre_tokenizer>(st)) {
      detail::split_chars(text, is_white_space, split_behavior::removed, pieces);
      recurse(pieces);
    } else if (const auto* pu = std::get_if<punctuation_pre_tokenizer>(&st)) {
      detail::split_chars(text, is_bert_punctuation, pu->behavior, pieces);
      recurse(pieces);
    }
  }

  static split_behavior parse_behavior(const json_node& n) {
    const std::string b = n.string();
    if (b == "Removed") return split_behavior::removed;
    if (b == "Isolated") return split_behavior::isolated;
    if (b == "MergedWithPrevious") return split_behavior::merged_with_previous;
    if (b == "MergedWithNext") return split_behavior::merged_with_next;
    if (b == "Contiguous") return split_behavior::contiguous;
    n.fail("unknown split behavior '" + b +
           "' (expected Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous)");
  }

  static void parse_into(const json_node& n, std::vector<step>& steps) {
    const std::string type = n.at("type").string();
    const std::string where = n.file() + ": " + (n.path().empty() ? "pre_tokenizer" : n.path());
    if (type == "Sequence") {
      const json_node list = n.at("pretokenizers");
      for (std::size_t i = 0; i < list.size(); ++i) parse_into(list.at(i), steps);
    } else if (type == "ByteLevel") {
      byte_level_pre_tokenizer b;
      b.add_prefix_space = n.boolean_or("add_prefix_space", true);
      b.use_regex = n.boolean_or("use_regex", true);
      if (b.use_regex) b.re = regex(gpt2_split_pattern, where);
      steps.push_back(std::move(b));
    } else if (type == "Split") {
      split_pre_tokenizer s;
      const json_node pattern = n.at("pattern");
      if (auto lit = pattern.find("String")) {
        s.literal = lit->string();
      } else if (auto re = pattern.find("Regex")) {
        s.re = regex(re->string(), n.file() + ": " + re->path());
      } else {
        pattern.fail("expected {\"String\": ...} or {\"Regex\": ...}");
      }
      s.behavior = parse_behavior(n.at("behavior"));
      s.invert = n.boolean_or("invert", false);
      steps.push_back(std::move(s));
    } else if (type == "Digits") {
      steps.push_back(digits_pre_tokenizer{n.boolean_or("individual_digits", false)});
    } else if (type == "BertPreTokenizer") {
      steps.push_back(bert_pre_tokenizer{});
    } else if (type == "Whitespace") {
      steps.push_back(whitespace_pre_tokenizer{regex(R"(\w+|[^\w\s]+)", where)});
    } else if (type == "WhitespaceSplit") {
      steps.push_back(whitespace_split_pre_tokenizer{});
    } else if (type == "Punctuation") {
      punctuation_pre_tokenizer p;
      if (auto b = n.find("behavior")) p.behavior = parse_behavior(*b);
      steps.push_back(p);
    } else {
      n.at("type").fail("unsupported pre-tokenizer type '" + type +
                        "' (supported: ByteLevel, Split, Digits, BertPreTokenizer, Whitespace, "
                        "WhitespaceSplit, Punctuation, Sequence)");
    }
  }

  std::vector<step> m_steps;
};

}  // namespace crossbatch::text
