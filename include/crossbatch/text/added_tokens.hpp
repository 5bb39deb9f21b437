// Added and special tokens, matched in the text before the normalizer and the model run, with the
// rules of the `tokenizers` library: leftmost-longest non-overlapping matches, tokens flagged
// `normalized` matched against the normalized text, and the single_word / lstrip / rstrip flags.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crossbatch/text/hash_map.hpp"
#include "crossbatch/text/normalizer.hpp"
#include "crossbatch/text/unicode.hpp"

namespace crossbatch::text {

struct added_token {
  std::string content;
  std::int32_t id = -1;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  // What decoding and id_to_token give: the content, normalized for `normalized` tokens (as
  // `tokenizers` 0.2x does). Filled in by added_vocabulary.
  std::string decoded;
};

// Leftmost-longest matching of a fixed set of byte strings (a trie walked from each candidate
// start).
class token_matcher {
 public:
  struct match {
    std::size_t begin, end;
    std::size_t pattern;
  };

  void add(std::string_view pattern, std::size_t index) {
    if (pattern.empty()) return;
    if (m_nodes.empty()) m_nodes.emplace_back();
    std::size_t node = 0;
    for (unsigned char b : pattern) {
      std::size_t next = child(node, b);
      if (next == npos) {
        next = m_nodes.size();
        m_nodes[node].kids.emplace_back(b, next);
        m_nodes.emplace_back();
      }
      node = next;
    }
    if (m_nodes[node].pattern == npos) m_nodes[node].pattern = index;  // the first token wins
    m_first[static_cast<unsigned char>(pattern[0])] = true;
  }
  bool empty() const { return m_nodes.empty(); }

  // The leftmost-longest match starting at or after `from`.
  std::optional<match> find(std::string_view s, std::size_t from) const {
    if (m_nodes.empty()) return std::nullopt;
    for (std::size_t i = from; i < s.size(); ++i) {
      if (!m_first[static_cast<unsigned char>(s[i])]) continue;
      std::size_t node = 0, best_end = npos, best = npos;
      for (std::size_t j = i; j < s.size(); ++j) {
        node = child(node, static_cast<unsigned char>(s[j]));
        if (node == npos) break;
        if (m_nodes[node].pattern != npos) {
          best_end = j + 1;
          best = m_nodes[node].pattern;
        }
      }
      if (best != npos) return match{i, best_end, best};
    }
    return std::nullopt;
  }

 private:
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
  struct node {
    std::vector<std::pair<unsigned char, std::size_t>> kids;
    std::size_t pattern = npos;
  };
  std::size_t child(std::size_t n, unsigned char b) const {
    for (const auto& [k, c] : m_nodes[n].kids)
      if (k == b) return c;
    return npos;
  }
  std::vector<node> m_nodes;
  std::array<bool, 256> m_first{};
};

// A piece of input text after added-token extraction: either an added token (id >= 0) or normalized
// text still to be pre-tokenized.
struct text_piece {
  std::string text;
  std::int32_t id = -1;
};

class added_vocabulary {
 public:
  added_vocabulary() = default;
  // `norm` normalizes the patterns of tokens flagged `normalized`.
  added_vocabulary(std::vector<added_token> tokens, const normalizer& norm)
      : m_tokens(std::move(tokens)) {
    for (auto& t : m_tokens) t.decoded = t.normalized ? norm.apply(t.content) : t.content;
    // Special tokens first, then the others, in file order (the order the matcher prefers).
    for (int pass = 0; pass < 2; ++pass) {
      for (std::size_t i = 0; i < m_tokens.size(); ++i) {
        const added_token& t = m_tokens[i];
        if (t.content.empty() || t.special != (pass == 0)) continue;
        if (t.normalized)
          m_normalized.add(norm.apply(t.content), i);
        else
          m_raw.add(t.content, i);
      }
    }
    std::int32_t max_id = -1;
    for (const auto& t : m_tokens) max_id = std::max(max_id, t.id);
    m_by_id.reset(m_tokens.size(), max_id);
    for (std::size_t i = 0; i < m_tokens.size(); ++i) {
      m_by_id.set_if_absent(m_tokens[i].id, i);
      m_by_content.emplace(m_tokens[i].content, m_tokens[i].id);
    }
  }

  const std::vector<added_token>& tokens() const { return m_tokens; }
  bool empty() const { return m_tokens.empty(); }

  const added_token* by_id(std::int32_t id) const {
    const std::size_t* i = m_by_id.get(id);
    return i ? &m_tokens[*i] : nullptr;
  }
  std::optional<std::int32_t> id_of(std::string_view content) const {
    auto it = m_by_content.find(content);
    if (it == m_by_content.end()) return std::nullopt;
    return it->second;
  }

  // Splits input into added tokens and normalized text pieces
  // (AddedVocabulary::extract_and_normalize). With split_special_tokens, special tokens are not
  // matched (they are encoded as plain text).
  void extract_and_normalize(std::string_view input, const normalizer& norm,
                             bool split_special_tokens, std::vector<text_piece>& out) const {
    out.clear();
    if (input.empty()) return;
    if (m_raw.empty() && m_normalized.empty()) {
      out.push_back({norm.apply(input), -1});
      if (out.back().text.empty()) out.clear();
      return;
    }
    std::vector<std::pair<std::size_t, std::size_t>> spans;
    std::vector<std::int32_t> ids;
    find_matches(input, m_raw, split_special_tokens, spans, ids);
    for (std::size_t k = 0; k < spans.size(); ++k) {
      const std::string_view s = input.substr(spans[k].first, spans[k].second - spans[k].first);
      if (ids[k] >= 0) {
        out.push_back({std::string(), ids[k]});
        continue;
      }
      if (s.empty()) continue;
      std::string normalized = norm.apply(s);
      if (normalized.empty()) continue;
      if (m_normalized.empty()) {
        out.push_back({std::move(normalized), -1});
        continue;
      }
      std::vector<std::pair<std::size_t, std::size_t>> inner;
      std::vector<std::int32_t> inner_ids;
      find_matches(normalized, m_normalized, split_special_tokens, inner, inner_ids);
      for (std::size_t j = 0; j < inner.size(); ++j) {
        if (inner_ids[j] >= 0)
          out.push_back({std::string(), inner_ids[j]});
        else if (inner[j].second > inner[j].first)
          out.push_back({normalized.substr(inner[j].first, inner[j].second - inner[j].first), -1});
      }
    }
  }

 private:
  static bool ends_with_word(std::string_view s) {
    if (s.empty()) return false;
    std::size_t k = s.size() - 1;
    while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
    return is_word_character(next_code_point(s, k));
  }
  static bool starts_with_word(std::string_view s) {
    if (s.empty()) return false;
    std::size_t k = 0;
    return is_word_character(next_code_point(s, k));
  }
  // Start of the run of White_Space that ends s.
  static std::size_t trailing_space_start(std::string_view s) {
    std::size_t e = s.size();
    while (e > 0) {
      std::size_t k = e - 1;
      while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
      std::size_t j = k;
      if (!is_white_space(next_code_point(s, j))) break;
      e = k;
    }
    return e;
  }
  // Length of the run of White_Space that starts s.
  static std::size_t leading_space_length(std::string_view s) {
    std::size_t b = 0;
    while (b < s.size()) {
      std::size_t j = b;
      if (!is_white_space(next_code_point(s, j))) break;
      b = j;
    }
    return b;
  }

  // AddedVocabulary::find_matches: a covering list of spans, each with its token id or -1.
  void find_matches(std::string_view s, const token_matcher& matcher, bool split_special,
                    std::vector<std::pair<std::size_t, std::size_t>>& spans,
                    std::vector<std::int32_t>& ids) const {
    spans.clear();
    ids.clear();
    std::size_t start_offset = 0, from = 0;
    while (auto m = matcher.find(s, from)) {
      from = m->end;
      const added_token& t = m_tokens[m->pattern];
      std::size_t start = m->begin, stop = m->end;
      if (split_special && t.special) continue;
      if (t.single_word) {
        const bool start_space = start == 0 || !ends_with_word(s.substr(0, start));
        const bool stop_space = stop == s.size() || !starts_with_word(s.substr(stop));
        if (!start_space || !stop_space) continue;
      }
      if (t.lstrip) start = std::max(trailing_space_start(s.substr(0, start)), start_offset);
      if (t.rstrip) stop += leading_space_length(s.substr(stop));
      if (start_offset < start) {
        spans.emplace_back(start_offset, start);
        ids.push_back(-1);
      }
      spans.emplace_back(start, stop);
      ids.push_back(t.id);
      start_offset = stop;
    }
    if (start_offset < s.size()) {
      spans.emplace_back(start_offset, s.size());
      ids.push_back(-1);
    }
  }

  std::vector<added_token> m_tokens;
  token_matcher m_raw, m_normalized;
  id_table<std::size_t> m_by_id;
  string_map<std::int32_t> m_by_content;
};

}  // namespace crossbatch::text
