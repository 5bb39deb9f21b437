// The optional LLM judge of long-form answers (the reference's --eval-model on CMB-Clin): a judge
// model, reached through any chat_generator (the API client in compare_strategies), rates each
// answer against the reference answer on four criteria, integers 1 (poor) to 5 (excellent):
// fluency, relevance, completeness, proficiency. The prompt asks for a bare JSON object; the
// parser takes, per criterion, the JSON object's value (think blocks and fences dropped, else the
// first balanced {...}: pardec/dependencies.hpp) and where that has none a "criterion: n" line of a
// chatty reply ("**Fluency**: 4/5", "relevance = 3"). A value outside 1..5, on another scale
// ("8/10") or not a number leaves that criterion unscored, with a note; averages count only the
// scored answers and report how many there were.
#pragma once

#include <array>
#include <cctype>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "crossbatch/pardec/chat_generator.hpp"
#include "crossbatch/pardec/dependencies.hpp"

namespace crossbatch::pardec {

inline const std::array<std::string, 4>& judge_criteria() {
  static const std::array<std::string, 4> c{"fluency", "relevance", "completeness", "proficiency"};
  return c;
}

struct judge_scores {
  std::map<std::string, double> score;  // criterion -> 1..5, only the ones that parsed
  std::string note;                     // what did not parse, "" when all four did
  bool complete() const { return score.size() == judge_criteria().size(); }
};

// The judge's conversation for one answer. `background` may be empty.
inline conversation judge_prompt(const std::string& background, const std::string& question,
                                 const std::string& reference, const std::string& answer) {
  std::string user;
  if (!background.empty()) user += "Case:\n" + background + "\n\n";
  user += "Question:\n" + question + "\n\nReference answer:\n" + reference + "\n\nAnswer to grade:\n" +
          (answer.empty() ? std::string("(empty)") : answer) +
          "\n\nRate the answer to grade on each criterion with an integer from 1 (poor) to 5 "
          "(excellent):\n"
          "- fluency: the quality of its language;\n"
          "- relevance: how well it addresses the question;\n"
          "- completeness: how much of the reference answer's information it covers;\n"
          "- proficiency: the accuracy of its domain knowledge.\n"
          "Reply only with a JSON object: {\"fluency\": n, \"relevance\": n, \"completeness\": n, "
          "\"proficiency\": n}";
  return {{"system", "You are a strict expert grader of answers to professional questions."},
          {"user", user}};
}

namespace detail {

// A score from a JSON value: a number, or a string holding one ("4", "4/5"); nullopt with `why`
// otherwise.
inline std::optional<double> judge_value(const nlohmann::json& v, std::string& why) {
  double x = 0;
  if (v.is_number()) {
    x = v.get<double>();
  } else if (v.is_string()) {
    static const std::regex num(R"(^\s*(\d+(?:\.\d+)?)\s*(?:/\s*(\d+))?\s*$)");
    std::smatch m;
    const std::string s = v.get<std::string>();
    if (!std::regex_match(s, m, num)) {
      why = "not a number: \"" + s + "\"";
      return std::nullopt;
    }
    if (m[2].matched && m[2].str() != "5") {
      why = "on another scale: \"" + s + "\"";
      return std::nullopt;
    }
    x = std::stod(m[1].str());
  } else {
    why = "not a number: " + v.dump();
    return std::nullopt;
  }
  if (!std::isfinite(x) || x < 1 || x > 5) {
    std::ostringstream os;
    os << x;
    why = "out of range 1..5: " + os.str();
    return std::nullopt;
  }
  return x;
}

inline std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace detail

inline judge_scores parse_judge_scores(std::string_view reply) {
  judge_scores out;
  std::vector<std::string> notes;
  std::map<std::string, nlohmann::json> from_json;
  if (const auto j = extract_json_object(reply))
    for (const auto& [k, v] : j->items()) from_json[detail::lower(k)] = v;
  const std::string text = detail::lower(std::string(reply));
  for (const auto& c : judge_criteria()) {
    std::string why;
    std::optional<double> v;
    if (const auto it = from_json.find(c); it != from_json.end()) {
      v = detail::judge_value(it->second, why);
    } else {
      // "criterion" then up to a few non-digit decoration characters (**, :, =, -, spaces), then
      // a number and an optional "/scale".
      const std::regex line(c + R"([^\d\n]{0,6}?(\d+(?:\.\d+)?)(\s*/\s*\d+)?)");
      std::smatch m;
      if (std::regex_search(text, m, line)) {
        std::string s = m[1].str();
        if (m[2].matched) s += m[2].str();
        v = detail::judge_value(nlohmann::json(s), why);
      } else {
        why = "missing";
      }
    }
    if (v)
      out.score[c] = *v;
    else
      notes.push_back(c + " " + why);
  }
  for (std::size_t i = 0; i < notes.size(); ++i) out.note += (i ? "; " : "") + notes[i];
  return out;
}

// Sums over answers: the mean of each criterion over the answers where it parsed, and the counts.
struct judge_totals {
  std::map<std::string, double> sum;
  std::map<std::string, long> scored;
  long answers = 0, complete = 0;

  void add(const judge_scores& s) {
    ++answers;
    complete += s.complete() ? 1 : 0;
    for (const auto& [c, v] : s.score) sum[c] += v, ++scored[c];
  }
  nlohmann::json to_json() const {
    nlohmann::json j = {{"answers", answers}, {"complete", complete}};
    for (const auto& c : judge_criteria()) {
      const auto it = scored.find(c);
      const long n = it == scored.end() ? 0 : it->second;
      j[c] = n ? nlohmann::json(sum.at(c) / double(n)) : nlohmann::json(nullptr);
      j[c + "_scored"] = n;
    }
    return j;
  }
};

inline nlohmann::json to_json(const judge_scores& s) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& c : judge_criteria()) {
    const auto it = s.score.find(c);
    j[c] = it == s.score.end() ? nlohmann::json(nullptr) : nlohmann::json(it->second);
  }
  if (!s.note.empty()) j["note"] = s.note;
  return j;
}

// Judges every answer of a group in one call of `judge` (one request per answer through the API).
inline std::vector<judge_scores> judge_answers(chat_generator& judge, const std::string& background,
                                               const std::vector<std::string>& questions,
                                               const std::vector<std::string>& references,
                                               const std::vector<std::string>& answers, int max_new_tokens,
                                               std::vector<std::string>* replies = nullptr) {
  require(questions.size() == references.size() && questions.size() == answers.size(),
          "judge_answers: one question, reference and answer each");
  std::vector<conversation> batch;
  for (std::size_t k = 0; k < questions.size(); ++k)
    batch.push_back(judge_prompt(background, questions[k], references[k], answers[k]));
  std::vector<judge_scores> out;
  if (batch.empty()) return out;
  const auto r = judge.generate(batch, max_new_tokens);
  for (const auto& text : r.replies) out.push_back(parse_judge_scores(text));
  if (replies) *replies = r.replies;
  return out;
}

}  // namespace crossbatch::pardec
