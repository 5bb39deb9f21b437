// The data sets of the paraphrase-fusion experiment and their prompts.
//   MyriadLAMA  a directory with facts.jsonl (uuid, rel_uri, sub_uri, sub_ent [labels], obj_uri,
//               obj_ent [label, aliases...], split train|validation|test) and templates.jsonl
//               (rel_uri, name, manual [...], auto [...], each template with one [X] for the
//               subject and one [Y] for the object). tools/make_fusion_data.py writes such a
//               directory; tools/make_fusion_myriadlama.py converts the real parquet files.
//               A fact's paraphrases are its relation's templates (manual, then auto) with [X]
//               the subject and [Y] replaced by [MASK].
//   WebQuestions  the original JSON array of {utterance, targetValue "(list (description X)
//               ...)", url}; an optional "paraphrases" array per record holds model-made
//               paraphrases (the utterance is always paraphrase 0).
// Prompt (the reference's): instruction, blank line, the few-shot "Q: ..\nA: .." lines, blank
// line, "Q: {question}\nA:". Every malformed record is a format_error naming file, line or record
// and field.
#pragma once

#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "crossbatch/core/error.hpp"
#include "crossbatch/model/json_field.hpp"

namespace crossbatch {

// One question: its paraphrases (question texts, not yet prompts) and gold answers.
struct paraphrased_question {
  std::string uuid;
  std::string relation;  // MyriadLAMA relation id ("" for WebQuestions)
  std::vector<std::string> paraphrases;
  std::vector<std::string> answers;
};

struct myriadlama_relation {
  std::string rel_uri, name;
  std::vector<std::string> manual, automatic;  // templates with [X] and [Y]
  std::vector<std::string> templates() const {
    auto all = manual;
    all.insert(all.end(), automatic.begin(), automatic.end());
    return all;
  }
};

struct myriadlama_fact {
  std::string uuid, rel_uri, sub_uri, obj_uri, split;
  std::vector<std::string> sub_ent, obj_ent;
};

struct myriadlama_data {
  std::map<std::string, myriadlama_relation> relations;
  std::vector<myriadlama_fact> facts;

  std::vector<const myriadlama_fact*> split(const std::string& name) const {
    std::vector<const myriadlama_fact*> out;
    for (const auto& f : facts)
      if (f.split == name) out.push_back(&f);
    return out;
  }
};

namespace detail {

inline std::string count_of(const std::string& s, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t i = s.find(what); i != s.npos; i = s.find(what, i + 1)) ++n;
  return std::to_string(n);
}

// A JSONL reader: f(record, where) for every non-empty line; where = "file:line".
template <class F>
void for_each_jsonl(const std::string& path, F&& f) {
  std::ifstream in(path);
  if (!in) throw io_error(path + ": cannot open for reading");
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == line.npos) continue;
    const std::string where = path + ":" + std::to_string(n);
    json j;
    try {
      j = json::parse(line);
    } catch (const json::parse_error& e) {
      throw format_error(where + ": not valid JSON: " + e.what());
    }
    if (!j.is_object()) throw format_error(where + ": a record must be a JSON object");
    f(j, where);
  }
}
inline std::string string_field(const json& j, const std::string& where, const char* key) {
  const auto it = j.find(key);
  if (it == j.end()) throw format_error(where + ": field '" + key + "' is missing");
  if (!it->is_string() || it->get<std::string>().empty())
    throw format_error(where + ": field '" + key + "' must be a non-empty string");
  return it->get<std::string>();
}
inline std::vector<std::string> strings_field(const json& j, const std::string& where,
                                              const char* key, bool allow_empty = false) {
  const auto it = j.find(key);
  if (it == j.end()) throw format_error(where + ": field '" + key + "' is missing");
  if (it->is_string()) return {it->get<std::string>()};  // a single label
  if (!it->is_array() || (!allow_empty && it->empty()))
    throw format_error(where + ": field '" + key + "' must be a non-empty array of strings");
  std::vector<std::string> out;
  for (std::size_t i = 0; i < it->size(); ++i) {
    const auto& v = (*it)[i];
    if (!v.is_string() || v.get<std::string>().empty())
      throw format_error(where + ": field '" + key + "'[" + std::to_string(i) +
                         "] must be a non-empty string");
    out.push_back(v.get<std::string>());
  }
  return out;
}
inline void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (std::size_t i = s.find(from); i != s.npos; i = s.find(from, i + to.size()))
    s.replace(i, from.size(), to);
}

}  // namespace detail

inline myriadlama_data read_myriadlama(const std::string& dir) {
  myriadlama_data d;
  const std::string templates = dir + "/templates.jsonl", facts = dir + "/facts.jsonl";
  detail::for_each_jsonl(templates, [&](const json& j, const std::string& where) {
    myriadlama_relation r;
    r.rel_uri = detail::string_field(j, where, "rel_uri");
    r.name = j.contains("name") ? detail::string_field(j, where, "name") : r.rel_uri;
    r.manual = detail::strings_field(j, where, "manual");
    r.automatic = j.contains("auto") ? detail::strings_field(j, where, "auto", true)
                                     : std::vector<std::string>{};
    for (const auto& t : r.templates())
      if (detail::count_of(t, "[X]") != "1" || detail::count_of(t, "[Y]") != "1")
        throw format_error(where + ": template '" + t + "' needs one [X] and one [Y] (has " +
                           detail::count_of(t, "[X]") + " and " + detail::count_of(t, "[Y]") + ")");
    if (!d.relations.emplace(r.rel_uri, r).second)
      throw format_error(where + ": relation '" + r.rel_uri + "' is listed twice");
  });
  std::set<std::string> uuids;
  detail::for_each_jsonl(facts, [&](const json& j, const std::string& where) {
    myriadlama_fact f;
    f.uuid = detail::string_field(j, where, "uuid");
    f.rel_uri = detail::string_field(j, where, "rel_uri");
    f.sub_uri = j.contains("sub_uri") ? detail::string_field(j, where, "sub_uri") : "";
    f.obj_uri = j.contains("obj_uri") ? detail::string_field(j, where, "obj_uri") : "";
    f.sub_ent = detail::strings_field(j, where, "sub_ent");
    f.obj_ent = detail::strings_field(j, where, "obj_ent");
    f.split = j.contains("split") ? detail::string_field(j, where, "split") : "test";
    if (f.split != "train" && f.split != "validation" && f.split != "test")
      throw format_error(where + ": field 'split' is '" + f.split +
                         "' (want train, validation or test)");
    if (!d.relations.count(f.rel_uri))
      throw format_error(where + ": relation '" + f.rel_uri + "' has no templates in " + templates);
    if (!uuids.insert(f.uuid).second) throw format_error(where + ": uuid '" + f.uuid + "' repeats");
    d.facts.push_back(std::move(f));
  });
  if (d.facts.empty()) throw format_error(facts + ": no facts");
  return d;
}

// A template with [X] = the subject's first label, [Y] = "[MASK]" (or the object).
inline std::string fill_template(std::string t, const std::string& subject,
                                 const std::string& object = "[MASK]") {
  detail::replace_all(t, "[X]", subject);
  detail::replace_all(t, "[Y]", object);
  return t;
}

inline paraphrased_question myriadlama_question(const myriadlama_data& d,
                                                const myriadlama_fact& f) {
  paraphrased_question q{f.uuid, f.rel_uri, {}, f.obj_ent};
  for (const auto& t : d.relations.at(f.rel_uri).templates())
    q.paraphrases.push_back(fill_template(t, f.sub_ent[0]));
  return q;
}

// "Q: {question}\nA: {answer}" lines of training facts for paraphrase `index` of a relation:
// every shot uses the same template as the question it precedes.
inline std::string myriadlama_shots(const myriadlama_data& d, const std::string& rel_uri,
                                    std::size_t index, std::size_t shots) {
  const auto templates = d.relations.at(rel_uri).templates();
  require(index < templates.size(), "myriadlama_shots: relation " + rel_uri + " has " +
                                        std::to_string(templates.size()) + " templates");
  std::string out;
  std::size_t n = 0;
  for (const auto* f : d.split("train")) {
    if (f->rel_uri != rel_uri || n == shots) continue;
    if (n++) out += "\n";
    out += "Q: " + fill_template(templates[index], f->sub_ent[0]) + "\nA: " + f->obj_ent[0];
  }
  return out;
}

inline std::string qa_prompt(const std::string& instruction, const std::string& shots,
                             const std::string& question) {
  std::string p = instruction + "\n\n";
  if (!shots.empty()) p += shots + "\n\n";
  return p + "Q: " + question + "\nA:";
}

inline const char* myriadlama_instruction = "Predict the [MASK] in each sentence in one word.";
inline const char* webquestions_instruction = "Answer each question with a short, direct answer.";

// The answers of a WebQuestions targetValue: every (description X) or (description "X y").
inline std::vector<std::string> webquestions_answers(const std::string& target,
                                                     const std::string& where) {
  std::vector<std::string> out;
  const std::string key = "(description ";
  for (std::size_t i = target.find(key); i != target.npos; i = target.find(key, i)) {
    i += key.size();
    std::string a;
    if (i < target.size() && target[i] == '"') {
      const std::size_t end = target.find('"', i + 1);
      if (end == target.npos) throw format_error(where + ": targetValue has an unclosed quote");
      a = target.substr(i + 1, end - i - 1);
      i = end + 1;
    } else {
      const std::size_t end = target.find(')', i);
      if (end == target.npos) throw format_error(where + ": targetValue has an unclosed '('");
      a = target.substr(i, end - i);
      i = end;
    }
    if (!a.empty()) out.push_back(a);
  }
  if (out.empty())
    throw format_error(where + ": targetValue '" + target + "' holds no (description ...)");
  return out;
}

inline std::vector<paraphrased_question> read_webquestions(const std::string& path) {
  const json j = read_json_file(path);
  if (!j.is_array()) throw format_error(path + ": want a JSON array of questions");
  std::vector<paraphrased_question> out;
  for (std::size_t i = 0; i < j.size(); ++i) {
    const std::string where = path + ": record " + std::to_string(i);
    if (!j[i].is_object()) throw format_error(where + ": must be a JSON object");
    paraphrased_question q;
    q.paraphrases = {detail::string_field(j[i], where, "utterance")};
    q.answers = webquestions_answers(detail::string_field(j[i], where, "targetValue"), where);
    q.uuid = j[i].contains("url") ? detail::string_field(j[i], where, "url") : "";
    q.uuid += "#" + std::to_string(i);
    if (j[i].contains("paraphrases"))
      for (const auto& p : detail::strings_field(j[i], where, "paraphrases", true))
        q.paraphrases.push_back(p);
    out.push_back(std::move(q));
  }
  if (out.empty()) throw format_error(path + ": no questions");
  return out;
}

}  // namespace crossbatch
