// Cost-aware selection of dependency edges and the Kahn scheduler that turns the selected DAG into
// layers, each answered as one batch.
//  cost(edge) = est_tokens(parent question) + answer tokens + 6, est_tokens(text) =
//  int(1.4 words + 0.8 CJK characters + 0.2 digits), at least 1; answer tokens = max(est(answer),
//  12) of the expected answer (the reference used the gold answer's length, a leak: here a fixed or
//  predicted answer text); score = clamp(confidence, 0, 1) - cost_weight * cost. Edges below
//  min_confidence are dropped, the rest taken by descending score while score > 0, at most
//  max_dependencies per question, and an edge that would close a cycle is rejected.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "crossbatch/core/error.hpp"
#include "crossbatch/eval/unicode.hpp"
#include "crossbatch/pardec/dependencies.hpp"

namespace crossbatch::pardec {

inline bool is_cjk(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x3040 && c <= 0x30FF) || (c >= 0xAC00 && c <= 0xD7AF);
}

// int(1.4 * words + 0.8 * CJK characters + 0.2 digits), at least 1. Words: whitespace-separated
// runs that hold a character other than CJK (so Chinese text counts by characters only).
inline int estimate_tokens(std::string_view text) {
  const std::u32string s = unicode::decode_utf8(text);
  int words = 0, cjk = 0, digits = 0;
  bool in_word = false;
  for (char32_t c : s) {
    if (c >= U'0' && c <= U'9') ++digits;
    if (is_cjk(c)) {
      ++cjk;
      in_word = false;
    } else if (unicode::is_space(c)) {
      in_word = false;
    } else if (!in_word) {
      ++words;
      in_word = true;
    }
  }
  return std::max(1, static_cast<int>(1.4 * words + 0.8 * cjk + 0.2 * digits));
}

struct selection_options {
  int max_dependencies = 3;     // --max-dependencies (per question)
  double min_confidence = 0.45; // --min-confidence
  double cost_weight = 0.0;     // --cost-weight
  int min_answer_tokens = 12;
};

struct scored_edge {
  dependency_edge edge;
  int cost = 0;
  double score = 0;
};

// Whether `from` reaches `to` over parent -> child arcs of the selected edges.
inline bool reaches(const std::vector<std::vector<std::size_t>>& children, std::size_t from, std::size_t to) {
  std::vector<std::size_t> stack{from};
  std::vector<bool> seen(children.size(), false);
  while (!stack.empty()) {
    const std::size_t v = stack.back();
    stack.pop_back();
    if (v == to) return true;
    if (seen[v]) continue;
    seen[v] = true;
    for (std::size_t c : children[v]) stack.push_back(c);
  }
  return false;
}

// questions: the group's texts; expected_answers: the answer text assumed for each question when
// costing it as a parent (empty strings cost min_answer_tokens).
inline std::vector<scored_edge> select_edges(const std::vector<dependency_edge>& candidates,
                                             const std::vector<std::string>& questions,
                                             const std::vector<std::string>& expected_answers,
                                             const selection_options& opt) {
  const std::size_t n = questions.size();
  require(expected_answers.size() == n, "select_edges: one expected answer per question needed");
  require(opt.max_dependencies >= 0, "--max-dependencies must be >= 0");
  std::vector<scored_edge> scored;
  for (const auto& e : candidates) {
    require(e.child < n && e.parent < n, "select_edges: edge outside the group");
    if (e.child == e.parent || e.confidence < opt.min_confidence) continue;
    scored_edge s{e, 0, 0};
    s.cost = estimate_tokens(questions[e.parent]) +
             std::max(estimate_tokens(expected_answers[e.parent]), opt.min_answer_tokens) + 6;
    s.score = std::clamp(e.confidence, 0.0, 1.0) - opt.cost_weight * s.cost;
    scored.push_back(std::move(s));
  }
  std::stable_sort(scored.begin(), scored.end(), [](const scored_edge& a, const scored_edge& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.edge.child != b.edge.child) return a.edge.child < b.edge.child;
    return a.edge.parent < b.edge.parent;
  });
  std::vector<std::vector<std::size_t>> children(n);
  std::vector<int> parents(n, 0);
  std::vector<scored_edge> out;
  for (auto& s : scored) {
    if (s.score <= 0) break;
    const auto [c, p] = std::pair{s.edge.child, s.edge.parent};
    if (parents[c] >= opt.max_dependencies) continue;
    if (std::any_of(out.begin(), out.end(), [&](const scored_edge& o) { return o.edge.child == c && o.edge.parent == p; }))
      continue;
    if (reaches(children, c, p)) continue;  // p already depends on c: the edge would close a cycle
    children[p].push_back(c);
    ++parents[c];
    out.push_back(std::move(s));
  }
  return out;
}

// Kahn layering of a DAG over n questions: layer 0 the questions without parents, each next layer
// those whose parents are all in earlier layers; indices ascending within a layer. Throws on a cycle.
inline std::vector<std::vector<std::size_t>> schedule_layers(std::size_t n, const std::vector<dependency_edge>& edges) {
  std::vector<int> indegree(n, 0);
  std::vector<std::vector<std::size_t>> children(n);
  for (const auto& e : edges) {
    require(e.child < n && e.parent < n && e.child != e.parent, "schedule_layers: bad edge");
    children[e.parent].push_back(e.child);
    ++indegree[e.child];
  }
  std::vector<std::vector<std::size_t>> layers;
  std::vector<std::size_t> ready;
  for (std::size_t i = 0; i < n; ++i)
    if (indegree[i] == 0) ready.push_back(i);
  std::size_t placed = 0;
  while (!ready.empty()) {
    std::sort(ready.begin(), ready.end());
    placed += ready.size();
    std::vector<std::size_t> next;
    for (std::size_t v : ready)
      for (std::size_t c : children[v])
        if (--indegree[c] == 0) next.push_back(c);
    layers.push_back(std::move(ready));
    ready = std::move(next);
  }
  require(placed == n, "schedule_layers: the dependency graph has a cycle");
  return layers;
}

}  // namespace crossbatch::pardec
