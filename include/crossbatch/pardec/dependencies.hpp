// Dependency edges between the questions of a group, from three generators:
//  - heuristic (--no-llm-deps): a reference word (it, this, ...) links a question to the previous
//    one (0.85); an aggregate word (all, both, total, ...) to every earlier one (0.65); a keyword
//    shared with an earlier question links to it (0.55). Words match whole (the reference matched
//    substrings, so "it" fired inside "with");
//  - the model's JSON answer (collab_llm): {"edges": [{"Q3": "Q1"}, {"Q4": ["Q1", "Q2"]}]}, think
//    blocks and fences dropped, else the first balanced {...}; confidence by rank
//    1 - (idx / total) * 0.5; unparsable output falls back to the heuristic;
//  - BERT attention mass (collab_bert): every ordered pair whose score reaches the threshold.
#pragma once

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "crossbatch/eval/unicode.hpp"

namespace crossbatch::pardec {

// `child` needs the answer of `parent` (indices into the group).
struct dependency_edge {
  std::size_t child = 0, parent = 0;
  double confidence = 0;
  std::string reason;
  bool operator==(const dependency_edge&) const = default;
};

namespace detail {

inline std::vector<std::string> lower_words(std::string_view text) {
  const std::u32string s = unicode::to_lower(unicode::decode_utf8(text));
  std::vector<std::string> out;
  std::string cur;
  for (char32_t c : s) {
    if (unicode::is_alnum(c) || c == U'\'') {
      unicode::append_utf8(cur, c);
    } else if (!cur.empty()) {
      out.push_back(std::move(cur));
      cur.clear();
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

inline bool in(const std::set<std::string_view>& s, const std::string& w) { return s.count(w) > 0; }

inline const std::set<std::string_view>& reference_words() {
  static const std::set<std::string_view> s{"it", "its", "this", "that", "these", "those", "they",
                                            "them", "their", "he", "she", "his", "her", "him", "there"};
  return s;
}
inline const std::set<std::string_view>& aggregate_words() {
  static const std::set<std::string_view> s{"all", "both", "total", "combined", "together", "overall",
                                            "altogether", "sum", "compare", "compared", "difference"};
  return s;
}
inline const std::set<std::string_view>& stop_words() {
  static const std::set<std::string_view> s{
      "a", "an", "the", "of", "in", "on", "at", "to", "for", "by", "with", "from", "and", "or", "is",
      "are", "was", "were", "be", "been", "do", "does", "did", "what", "which", "who", "whom", "whose",
      "when", "where", "why", "how", "many", "much", "as", "than", "then", "into", "about", "after",
      "before", "has", "have", "had", "not", "no", "yes", "can", "could", "would", "should", "will",
      "name", "called", "one", "there"};
  return s;
}

// Keeps the strongest edge per (child, parent).
inline std::vector<dependency_edge> dedupe(std::vector<dependency_edge> edges) {
  std::map<std::pair<std::size_t, std::size_t>, dependency_edge> best;
  for (auto& e : edges) {
    auto key = std::make_pair(e.child, e.parent);
    auto it = best.find(key);
    if (it == best.end() || e.confidence > it->second.confidence) best[key] = std::move(e);
  }
  std::vector<dependency_edge> out;
  for (auto& [_, e] : best) out.push_back(std::move(e));
  return out;
}

}  // namespace detail

inline std::vector<dependency_edge> heuristic_dependencies(const std::vector<std::string>& questions) {
  std::vector<dependency_edge> edges;
  std::vector<std::set<std::string>> keywords;
  for (std::size_t i = 0; i < questions.size(); ++i) {
    const auto words = detail::lower_words(questions[i]);
    std::set<std::string> kw;
    bool reference = false, aggregate = false;
    for (const auto& w : words) {
      reference |= detail::in(detail::reference_words(), w);
      aggregate |= detail::in(detail::aggregate_words(), w);
      if (w.size() >= 3 && !detail::in(detail::stop_words(), w) && !detail::in(detail::reference_words(), w))
        kw.insert(w);
    }
    if (i > 0 && reference) edges.push_back({i, i - 1, 0.85, "reference word"});
    if (aggregate)
      for (std::size_t j = 0; j < i; ++j) edges.push_back({i, j, 0.65, "aggregate word"});
    for (std::size_t j = 0; j < i; ++j)
      if (std::any_of(kw.begin(), kw.end(), [&](const std::string& w) { return keywords[j].count(w) > 0; }))
        edges.push_back({i, j, 0.55, "shared keyword"});
    keywords.push_back(std::move(kw));
  }
  return detail::dedupe(std::move(edges));
}

// The JSON object in a model's reply: <think>...</think> removed (an unclosed <think> drops the
// rest), ```json fences unwrapped, the whole text parsed, else the first balanced {...} (braces
// inside strings ignored). Empty optional when none parses.
inline std::optional<nlohmann::json> extract_json_object(std::string_view reply) {
  std::string s(reply);
  for (std::size_t a; (a = s.find("<think>")) != std::string::npos;) {
    const std::size_t b = s.find("</think>", a);
    s.erase(a, b == std::string::npos ? std::string::npos : b + 8 - a);
  }
  for (std::size_t a; (a = s.find("```")) != std::string::npos;) {
    std::size_t end = a + 3;
    while (end < s.size() && s[end] != '\n' && s[end] != '{' && s[end] != '`') ++end;  // language tag
    s.erase(a, end - a);
  }
  auto parse = [](std::string_view t) -> std::optional<nlohmann::json> {
    auto j = nlohmann::json::parse(t, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return std::nullopt;
    return j;
  };
  if (auto j = parse(s)) return j;
  for (std::size_t start = s.find('{'); start != std::string::npos; start = s.find('{', start + 1)) {
    int depth = 0;
    bool in_string = false, escape = false;
    for (std::size_t i = start; i < s.size(); ++i) {
      const char c = s[i];
      if (in_string) {
        if (escape) escape = false;
        else if (c == '\\') escape = true;
        else if (c == '"') in_string = false;
        continue;
      }
      if (c == '"') in_string = true;
      else if (c == '{') ++depth;
      else if (c == '}' && --depth == 0) {
        if (auto j = parse(std::string_view(s).substr(start, i - start + 1))) return j;
        break;
      }
    }
  }
  return std::nullopt;
}

struct parsed_dependencies {
  std::vector<dependency_edge> edges;
  bool from_model = false;  // false: the model's output did not parse and the heuristic was used
  std::string note;         // why it fell back
};

namespace detail {
// "Q3" / "q3" / "3" -> index 2; npos when not an id of a group of n.
inline std::size_t parse_question_id(const nlohmann::json& v, std::size_t n) {
  std::string s;
  if (v.is_string()) s = v.get<std::string>();
  else if (v.is_number_integer()) s = std::to_string(v.get<long long>());
  else return std::string::npos;
  if (!s.empty() && (s[0] == 'Q' || s[0] == 'q')) s.erase(0, 1);
  if (s.empty() || s.size() > 6 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::string::npos;
  const std::size_t k = std::stoul(s);
  return k >= 1 && k <= n ? k - 1 : std::string::npos;
}
}  // namespace detail

// collab_llm's edges from the model's reply; the heuristic on `questions` when it does not parse.
inline parsed_dependencies parse_llm_dependencies(std::string_view reply, const std::vector<std::string>& questions) {
  const std::size_t n = questions.size();
  auto fallback = [&](std::string why) {
    return parsed_dependencies{heuristic_dependencies(questions), false, std::move(why)};
  };
  const auto j = extract_json_object(reply);
  if (!j) return fallback("no JSON object in the reply");
  const auto it = j->find("edges");
  if (it == j->end() || !it->is_array()) return fallback("no \"edges\" array");
  std::vector<std::pair<std::size_t, std::size_t>> pairs;  // (child, parent) in the model's order
  for (const auto& item : *it) {
    if (!item.is_object()) continue;
    for (const auto& [child_id, parents] : item.items()) {
      const std::size_t child = detail::parse_question_id(child_id, n);
      if (child == std::string::npos) continue;
      const auto add = [&](const nlohmann::json& p) {
        const std::size_t parent = detail::parse_question_id(p, n);
        if (parent != std::string::npos && parent != child) pairs.push_back({child, parent});
      };
      if (parents.is_array())
        for (const auto& p : parents) add(p);
      else
        add(parents);
    }
  }
  parsed_dependencies out;
  out.from_model = true;
  for (std::size_t idx = 0; idx < pairs.size(); ++idx)
    out.edges.push_back({pairs[idx].first, pairs[idx].second,
                         1.0 - (double(idx) / double(pairs.size())) * 0.5, "model"});
  out.edges = detail::dedupe(std::move(out.edges));
  return out;
}

// collab_bert: an edge child i -> parent j for every ordered pair i != j with score[i][j] >= threshold.
inline std::vector<dependency_edge> bert_dependencies(const std::vector<std::vector<double>>& score, double threshold) {
  std::vector<dependency_edge> out;
  for (std::size_t i = 0; i < score.size(); ++i)
    for (std::size_t j = 0; j < score[i].size(); ++j)
      if (i != j && score[i][j] >= threshold) out.push_back({i, j, score[i][j], "attention"});
  return out;
}

}  // namespace crossbatch::pardec
