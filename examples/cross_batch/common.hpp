// Shared parts of the cross-batch example programs: SQuAD-format questions grouped by context
// (split-context files: each question sees only its visible part), the chat-template QA prompt,
// answer extraction, batches that keep a context's questions together, and a progress line.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "crossbatch/eval/squad.hpp"
#include "crossbatch/eval/squad_metrics.hpp"
#include "crossbatch/text/chat_template.hpp"
#include "crossbatch/text/tokenizer.hpp"

namespace cbx {

using json = nlohmann::json;

struct qa_example {
  std::string id;
  int group = 0;        // index of its context (paragraph) in the file
  std::string context;  // what this question may see
  std::string question;
  std::vector<std::string> answers;  // gold texts
};

// The questions of `path`, whole contexts at a time until at least max_samples questions (0: all).
// A paragraph with context_parts gives each question its visible part only.
inline std::vector<qa_example> load_examples(const std::string& path, std::size_t max_samples) {
  const auto ds = crossbatch::read_squad(path);
  std::vector<qa_example> out;
  int group = 0;
  for (const auto* p : ds.groups()) {
    if (max_samples && out.size() >= max_samples) break;
    for (const auto& q : p->qas) {
      if (q.answers.empty()) continue;  // v2.0 unanswerable: not used here
      qa_example e;
      e.id = q.id;
      e.group = group;
      e.context = p->context;
      if (q.visible_part && !p->context_parts.empty()) {
        crossbatch::require(*q.visible_part >= 0 && *q.visible_part < int(p->context_parts.size()),
                            path + ": " + q.path + ": visible_part outside context_parts");
        e.context = p->context_parts[*q.visible_part].text;
      }
      e.question = q.question;
      e.answers = q.answer_texts();
      out.push_back(std::move(e));
    }
    ++group;
  }
  return out;
}

// Batches of example indices: whole contexts packed in file order up to batch_size (a context with
// more questions is split), so that a question's siblings share its batch.
inline std::vector<std::vector<std::size_t>> context_batches(const std::vector<qa_example>& ex,
                                                             int batch_size) {
  std::vector<std::vector<std::size_t>> batches, groups;
  for (std::size_t i = 0; i < ex.size(); ++i) {
    if (groups.empty() || ex[groups.back().front()].group != ex[i].group) groups.emplace_back();
    groups.back().push_back(i);
  }
  std::vector<std::size_t> cur;
  for (const auto& g : groups) {
    if (!cur.empty() && cur.size() + g.size() > std::size_t(batch_size))
      batches.push_back(std::move(cur)), cur.clear();
    for (std::size_t i : g) {
      cur.push_back(i);
      if (cur.size() == std::size_t(batch_size)) batches.push_back(std::move(cur)), cur.clear();
    }
  }
  if (!cur.empty()) batches.push_back(std::move(cur));
  return batches;
}

// The QA instruction, wrapped in the model's chat template (tokenizer_config.json or
// chat_template.jinja of the model directory).
constexpr const char* prompt_version = "qa-v1";
constexpr const char* system_prompt =
    "You answer questions about a short passage. Reply with the shortest phrase from the passage "
    "that answers the "
    "question, nothing else.";

struct prompter {
  crossbatch::text::tokenizer tok;
  crossbatch::text::chat_template tmpl;
  int end_id = -1;  // the end-of-turn token the answers end with

  explicit prompter(const std::string& model_dir)
      : tok(crossbatch::text::tokenizer::from_file(model_dir + "/tokenizer.json")),
        tmpl(crossbatch::text::chat_template::from_tokenizer_config(model_dir)) {
    for (const char* name : {"<|im_end|>", "<|eot_id|>", "<|endoftext|>", "</s>"})
      if (auto id = tok.token_to_id(name)) {
        end_id = *id;
        break;
      }
    crossbatch::require(
        end_id >= 0,
        model_dir + ": no end-of-turn token (<|im_end|>, <|eot_id|>, ...) in the tokenizer");
  }

  std::string text(const qa_example& e) const {
    const std::vector<crossbatch::text::chat_message> m = {
        {"system", system_prompt},
        {"user", "Passage: " + e.context + "\n\nQuestion: " + e.question}};
    return tmpl.render(m, true);
  }
  std::vector<int> prompt(const qa_example& e) const {
    return ids(tok.encode(text(e), {false, false}));
  }
  // The teacher-forced answer: the first gold text and the end-of-turn token.
  std::vector<int> answer(const qa_example& e) const {
    auto a = ids(tok.encode(e.answers.front(), {false, false}));
    a.push_back(end_id);
    return a;
  }
  std::string decode(const std::vector<int>& t) const {
    std::vector<std::int32_t> v(t.begin(), t.end());
    return tok.decode(v, true);
  }
  static std::vector<int> ids(const std::vector<std::int32_t>& v) { return {v.begin(), v.end()}; }
};

// The answer in a generation: its first line, trimmed, without a final full stop.
inline std::string extract_answer(std::string s) {
  if (auto nl = s.find('\n'); nl != std::string::npos) s.resize(nl);
  auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\r'; };
  while (!s.empty() && ws(s.back())) s.pop_back();
  std::size_t b = 0;
  while (b < s.size() && ws(s[b])) ++b;
  s = s.substr(b);
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

// "label  done/total  rate/s  elapsed  ETA" on one stderr line, redrawn at most every 0.5 s.
class progress {
 public:
  progress(std::string label, std::size_t total, std::string unit = "q")
      : m_label(std::move(label)), m_unit(std::move(unit)), m_total(total), m_start(clock::now()) {}
  void update(std::size_t done, const std::string& extra = "") {
    const auto now = clock::now();
    if (done < m_total && std::chrono::duration<double>(now - m_last).count() < 0.5) return;
    m_last = now;
    const double el = std::chrono::duration<double>(now - m_start).count();
    const double rate = el > 0 ? double(done) / el : 0;
    const double eta = rate > 0 ? double(m_total - done) / rate : 0;
    std::fprintf(stderr, "\r%s %zu/%zu  %.2f %s/s  elapsed %s  ETA %s %s\033[K", m_label.c_str(),
                 done, m_total, rate, m_unit.c_str(), clock_text(el).c_str(),
                 clock_text(eta).c_str(), extra.c_str());
    if (done >= m_total) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }
  double elapsed() const { return std::chrono::duration<double>(clock::now() - m_start).count(); }

  static std::string clock_text(double s) {
    char b[32];
    const long t = long(s + 0.5);
    if (t >= 3600)
      std::snprintf(b, sizeof b, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
      std::snprintf(b, sizeof b, "%ld:%02ld", t / 60, t % 60);
    return b;
  }

 private:
  using clock = std::chrono::steady_clock;
  std::string m_label, m_unit;
  std::size_t m_total;
  clock::time_point m_start, m_last{};
};

}  // namespace cbx
