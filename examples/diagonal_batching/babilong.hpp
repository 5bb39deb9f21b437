// BABILong-style evaluation pieces: a reader for BABILong files (qa1..qa5 at lengths 0k..128k),
// a generator of bAbI-style qa1/qa2 facts hidden in filler text, and BABILong's scoring rule.
//
// Files: BABILong publishes one split per task and length with the fields `input` (the facts in
// filler text), `question` and `target`. The reader takes a JSON array or JSON lines of such
// records at DIR/<length>/<task>.json(l) or DIR/<task>_<length>.json(l) (e.g. dumped from the
// RMT-team/babilong data sets).
// Scoring (BABILong's compare_answers, as its metrics.py does it): the output is lower-cased and
// cut at the first '.', '<context>', '<example>' or 'question'; the task's labels (qa1-qa4: the six
// locations, qa5: people and objects) found in it, minus those named in the question, must be
// exactly the target (or, for a comma-separated target, exactly its parts).
#pragma once

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "crossbatch/core/error.hpp"
#include "crossbatch/model/json_field.hpp"

namespace babilong {

using crossbatch::json;

struct sample {
  std::string input, question, target;
};

inline const std::vector<std::string>& task_labels(const std::string& task) {
  static const std::vector<std::string> places{"bathroom", "bedroom", "garden",
                                               "hallway",  "kitchen", "office"};
  static const std::vector<std::string> qa5{"bill", "fred", "jeff", "mary",
                                            "apple", "football", "milk"};
  if (task == "qa1" || task == "qa2" || task == "qa3" || task == "qa4") return places;
  if (task == "qa5") return qa5;
  throw crossbatch::value_error("babilong: task '" + task + "' is not one of qa1..qa5");
}

inline std::string lower(std::string s) {
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// True when `output` answers `target` by BABILong's rule.
inline bool compare_answers(const std::string& target, const std::string& output,
                            const std::string& question, const std::string& task) {
  std::string out = lower(output);
  for (const char* cut : {".", "<context>", "<example>", "question"})
    out = out.substr(0, out.find(cut));
  const std::string q = lower(question), t = lower(target);
  std::set<std::string> in_output;
  for (const auto& label : task_labels(task))
    if (out.find(label) != std::string::npos && q.find(label) == std::string::npos)
      in_output.insert(label);
  if (t.find(',') != std::string::npos && t.size() > 3) {
    std::set<std::string> parts;
    std::stringstream ss(t);
    for (std::string p; std::getline(ss, p, ',');) parts.insert(p);
    return in_output == parts;
  }
  return in_output.size() == 1 && *in_output.begin() == t;
}

// Reads the samples of one task at one length.
inline std::vector<sample> read(const std::string& dir, const std::string& task,
                                const std::string& length) {
  task_labels(task);  // validates the task name
  std::string path;
  for (const auto& p : {dir + "/" + length + "/" + task + ".json",
                        dir + "/" + length + "/" + task + ".jsonl",
                        dir + "/" + task + "_" + length + ".json",
                        dir + "/" + task + "_" + length + ".jsonl"})
    if (std::filesystem::exists(p)) {
      path = p;
      break;
    }
  if (path.empty())
    throw crossbatch::io_error(dir + ": no BABILong file for " + task + " at " + length +
                               " (expected <dir>/" + length + "/" + task + ".json or <dir>/" +
                               task + "_" + length + ".json, or .jsonl)");
  std::vector<json> records;
  if (path.ends_with(".jsonl")) {
    std::ifstream f(path);
    std::string line;
    for (int n = 1; std::getline(f, line); ++n) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      try {
        records.push_back(json::parse(line));
      } catch (const json::parse_error& e) {
        throw crossbatch::format_error(path + ":" + std::to_string(n) + ": not JSON: " + e.what());
      }
    }
  } else {
    const json j = crossbatch::read_json_file(path);
    if (!j.is_array()) throw crossbatch::format_error(path + ": expected a JSON array of samples");
    records.assign(j.begin(), j.end());
  }
  std::vector<sample> out;
  for (std::size_t i = 0; i < records.size(); ++i) {
    const std::string where = path + ": sample " + std::to_string(i);
    if (!records[i].is_object()) throw crossbatch::format_error(where + " is not an object");
    out.push_back({crossbatch::required_field<std::string>(records[i], "input", where),
                   crossbatch::required_field<std::string>(records[i], "question", where),
                   crossbatch::required_field<std::string>(records[i], "target", where)});
  }
  return out;
}

// bAbI-style facts (qa1: where is a person; qa2: where is an object someone carried) hidden at
// random places in filler text of about `filler_words` words.
class generator {
 public:
  explicit generator(std::uint64_t seed) : m_gen(seed) {}

  sample make(const std::string& task, int facts, int filler_words) {
    require_task(task);
    std::vector<std::string> lines;
    std::string question, target;
    std::map<std::string, std::string> where;  // person -> location
    if (task == "qa1") {
      for (int i = 0; i < facts; ++i) {
        const auto& p = pick(people()), &l = pick(places());
        lines.push_back(p + " " + pick(moves()) + " the " + l + ".");
        where[p] = l;
      }
      auto it = where.begin();
      std::advance(it, std::uniform_int_distribution<int>(0, int(where.size()) - 1)(m_gen));
      question = "Where is " + it->first + "?";
      target = it->second;
    } else {
      // Someone goes somewhere, picks the object up, maybe moves on; the object is where its
      // carrier last went.
      const auto& object = pick(objects());
      const auto& carrier = pick(people());
      for (int i = 0; i + 3 < facts; ++i) {
        const auto& p = pick(people()), &l = pick(places());
        lines.push_back(p + " " + pick(moves()) + " the " + l + ".");
        where[p] = l;
      }
      const auto& l1 = pick(places());
      lines.push_back(carrier + " " + pick(moves()) + " the " + l1 + ".");
      lines.push_back(carrier + " " + pick(grabs()) + " the " + object + " there.");
      const auto& l2 = pick(places());
      lines.push_back(carrier + " " + pick(moves()) + " the " + l2 + ".");
      question = "Where is the " + object + "?";
      target = l2;
    }
    // Filler sentences with the facts at sorted random slots.
    std::vector<std::string> filler;
    for (int words = 0; words < filler_words;) {
      filler.push_back(pick(filler_sentences()));
      words += int(std::count(filler.back().begin(), filler.back().end(), ' ')) + 1;
    }
    std::vector<std::size_t> slots(lines.size());
    std::uniform_int_distribution<std::size_t> slot(0, filler.size());
    for (auto& s : slots) s = slot(m_gen);
    std::sort(slots.begin(), slots.end());
    std::string text;
    std::size_t f = 0;
    for (std::size_t i = 0; i <= filler.size(); ++i) {
      for (; f < lines.size() && slots[f] == i; ++f) text += lines[f] + " ";
      if (i < filler.size()) text += filler[i] + " ";
    }
    if (!text.empty()) text.pop_back();
    return {text, question, target};
  }

 private:
  static void require_task(const std::string& t) {
    if (t != "qa1" && t != "qa2")
      throw crossbatch::value_error("babilong generator: task '" + t + "' (qa1 or qa2)");
  }
  template <class V>
  const std::string& pick(const V& v) {
    return v[std::uniform_int_distribution<std::size_t>(0, v.size() - 1)(m_gen)];
  }
  static const std::vector<std::string>& people() {
    static const std::vector<std::string> v{"Mary", "John", "Daniel", "Sandra"};
    return v;
  }
  static const std::vector<std::string>& places() { return task_places(); }
  static const std::vector<std::string>& task_places() {
    static const std::vector<std::string> v{"bathroom", "bedroom", "garden",
                                            "hallway",  "kitchen", "office"};
    return v;
  }
  static const std::vector<std::string>& moves() {
    static const std::vector<std::string> v{"moved to", "went to", "travelled to",
                                            "journeyed to", "went back to"};
    return v;
  }
  static const std::vector<std::string>& grabs() {
    static const std::vector<std::string> v{"picked up", "got", "grabbed", "took"};
    return v;
  }
  static const std::vector<std::string>& objects() {
    static const std::vector<std::string> v{"football", "apple", "milk"};
    return v;
  }
  static const std::vector<std::string>& filler_sentences() {
    static const std::vector<std::string> v{
        "The river ran slowly under the old stone bridge.",
        "Nobody in the village remembered when the mill had last turned.",
        "A cold wind came down from the hills that evening.",
        "The letters were tied with a faded ribbon and kept in a drawer.",
        "He counted the coins twice before he put them away.",
        "Rain had fallen for three days without a pause.",
        "The ship's bell rang once, and then the harbour was silent.",
        "She read the page again, slowly, as if it might change.",
        "Far off, a dog barked at something nobody could see.",
        "The market opened early and closed before the heat of noon.",
        "Old maps showed a road where now there was only forest.",
        "The lamp flickered, steadied, and burned on through the night."};
    return v;
  }

  std::mt19937_64 m_gen;
};

}  // namespace babilong
