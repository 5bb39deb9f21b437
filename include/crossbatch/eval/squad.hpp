// Reader for SQuAD v1.1 / v2.0 JSON files: articles of paragraphs (a context with its group of
// questions), answers with offsets checked against the context, and the extension fields of
// tools/make_stories.py (paraphrases, depends_on, context_parts, visible_part).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "crossbatch/core/error.hpp"
#include "crossbatch/eval/unicode.hpp"

namespace crossbatch {

// A span of a paragraph's context. `start` counts code points, as in the file (Python str
// indices); byte_start/byte_end locate the same span in the UTF-8 context when offset_ok.
struct squad_span {
  std::string text;
  std::int64_t start = 0;
  bool offset_ok = false;  // context[start : start + len(text)] == text
  std::size_t byte_start = 0, byte_end = 0;
};

using squad_answer = squad_span;

struct squad_question {
  std::string id;
  std::string question;
  std::vector<squad_answer> answers;            // empty for v2.0 unanswerable questions
  bool is_impossible = false;                   // v2.0
  std::vector<squad_answer> plausible_answers;  // v2.0, for unanswerable questions
  // Extensions (tools/README.md, "Data sets"); empty / unset when the file has none.
  std::vector<std::string> paraphrases;  // other wordings of `question`
  std::vector<std::string> depends_on;  // ids of questions of this paragraph whose answers it needs
  std::optional<int> visible_part;      // index into the paragraph's context_parts
  nlohmann::json extra = nlohmann::json::object();  // every other field of the qa object
  std::string path;                                 // "data[i].paragraphs[j].qas[k]"

  // The gold answer texts (what the metrics compare against).
  std::vector<std::string> answer_texts() const {
    std::vector<std::string> out;
    for (const auto& a : answers) out.push_back(a.text);
    return out;
  }
};

// One context and the group of questions asked about it.
struct squad_paragraph {
  std::string title;  // of the article it belongs to
  std::string context;
  std::vector<squad_question> qas;
  std::vector<squad_span> context_parts;  // extension: the context split into parts
  nlohmann::json extra = nlohmann::json::object();
  std::string path;  // "data[i].paragraphs[j]"

  const squad_question* find(std::string_view id) const {
    for (const auto& q : qas)
      if (q.id == id) return &q;
    return nullptr;
  }
};

struct squad_article {
  std::string title;
  std::vector<squad_paragraph> paragraphs;
  nlohmann::json extra = nlohmann::json::object();
};

// A span whose offset does not point at its text. Real SQuAD files carry a few; the reader
// records them instead of failing.
struct offset_mismatch {
  std::string path;         // "data[i].paragraphs[j].qas[k].answers[a]" (or context_parts[p])
  std::string question_id;  // empty for context parts
  std::string text;         // the span's text
  std::int64_t start = 0;   // its offset, in code points
  std::string found;        // what the context holds there (up to len(text) code points)
};

struct squad_dataset {
  std::string source;   // the file it was read from
  std::string version;  // "1.1", "2.0" or "" when the file has none
  std::vector<squad_article> articles;
  std::vector<offset_mismatch> mismatches;
  nlohmann::json extra = nlohmann::json::object();

  // The paragraphs in file order: each is a context with its group of questions.
  std::vector<const squad_paragraph*> groups() const {
    std::vector<const squad_paragraph*> out;
    for (const auto& a : articles)
      for (const auto& p : a.paragraphs) out.push_back(&p);
    return out;
  }
  std::size_t question_count() const {
    std::size_t n = 0;
    for (const auto& a : articles)
      for (const auto& p : a.paragraphs) n += p.qas.size();
    return n;
  }
  // The question with this id, or nullptr. Ids are unique (the reader checks).
  const squad_question* find_question(std::string_view id) const {
    for (const auto& a : articles)
      for (const auto& p : a.paragraphs)
        if (const auto* q = p.find(id)) return q;
    return nullptr;
  }
  // Whether the file follows SQuAD v2.0 (unanswerable questions allowed).
  bool is_v2() const { return version.rfind("2", 0) == 0; }
};

namespace detail {

// Typed access to a JSON value with its path, so that each error names the file and the field.
struct json_at {
  const nlohmann::json& value;
  std::string path;
  const std::string& source;

  [[noreturn]] void fail(const std::string& what) const {
    throw format_error(source + ": " + (path.empty() ? "(root)" : path) + ": " + what);
  }
  void expect(bool ok, const char* expected) const {
    if (!ok) fail(std::string("expected ") + expected + ", got " + value.type_name());
  }
  std::string child(const std::string& key) const { return path.empty() ? key : path + "." + key; }
  json_at field(const std::string& key) const {
    expect(value.is_object(), "an object");
    const auto it = value.find(key);
    if (it == value.end()) throw format_error(source + ": " + child(key) + ": missing");
    return {*it, child(key), source};
  }
  std::optional<json_at> optional_field(const std::string& key) const {
    expect(value.is_object(), "an object");
    const auto it = value.find(key);
    if (it == value.end()) return std::nullopt;
    return json_at{*it, child(key), source};
  }
  json_at at(std::size_t i) const {
    return {value[i], path + "[" + std::to_string(i) + "]", source};
  }
  std::size_t array_size() const {
    expect(value.is_array(), "an array");
    return value.size();
  }
  std::string string() const {
    expect(value.is_string(), "a string");
    return value.get<std::string>();
  }
  std::int64_t integer() const {
    expect(value.is_number_integer(), "an integer");
    return value.get<std::int64_t>();
  }
  bool boolean() const {
    expect(value.is_boolean(), "a boolean");
    return value.get<bool>();
  }
  std::vector<std::string> strings() const {
    std::vector<std::string> out(array_size());
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = at(i).string();
    return out;
  }
};

// The fields of `object` that are not in `known`.
inline nlohmann::json extra_fields(const nlohmann::json& object,
                                   std::initializer_list<std::string_view> known) {
  nlohmann::json extra = nlohmann::json::object();
  for (const auto& [key, value] : object.items())
    if (std::find(known.begin(), known.end(), key) == known.end()) extra[key] = value;
  return extra;
}

// Reads a {text, <offset_key>} object and checks its offset against the context.
inline squad_span read_span(const json_at& j, const char* offset_key, const std::string& context,
                            const std::vector<std::size_t>& cp_offsets, const std::string& qid,
                            std::vector<offset_mismatch>& mismatches) {
  squad_span s;
  s.text = j.field("text").string();
  s.start = j.field(offset_key).integer();
  const std::size_t n = cp_offsets.size() - 1;  // code points in the context
  const std::size_t len = unicode::code_point_offsets(s.text).size() - 1;
  if (s.start >= 0 && static_cast<std::size_t>(s.start) <= n) {
    const std::size_t b0 = cp_offsets[s.start];
    const std::size_t b1 = cp_offsets[std::min(n, static_cast<std::size_t>(s.start) + len)];
    s.offset_ok = context.compare(b0, b1 - b0, s.text) == 0;
    if (s.offset_ok)
      s.byte_start = b0, s.byte_end = b1;
    else
      mismatches.push_back({j.path, qid, s.text, s.start, context.substr(b0, b1 - b0)});
  } else {
    mismatches.push_back({j.path, qid, s.text, s.start, ""});
  }
  return s;
}

inline std::vector<squad_span> read_spans(const json_at& array, const char* offset_key,
                                          const std::string& context,
                                          const std::vector<std::size_t>& cp_offsets,
                                          const std::string& qid,
                                          std::vector<offset_mismatch>& mismatches) {
  std::vector<squad_span> out;
  const std::size_t n = array.array_size();
  for (std::size_t i = 0; i < n; ++i)
    out.push_back(read_span(array.at(i), offset_key, context, cp_offsets, qid, mismatches));
  return out;
}

}  // namespace detail

// Builds a data set from parsed SQuAD JSON. `source` names the file in errors. Throws
// format_error naming the JSON path (data[3].paragraphs[0].qas[2].answers) when a required field
// is missing or has the wrong type, or when an id repeats; offset mismatches are only recorded.
inline squad_dataset parse_squad(const nlohmann::json& root, const std::string& source) {
  squad_dataset ds;
  ds.source = source;
  const detail::json_at top{root, "", source};
  top.expect(root.is_object(), "an object");
  if (auto v = top.optional_field("version")) ds.version = v->string();
  ds.extra = detail::extra_fields(root, {"version", "data"});
  const auto data = top.field("data");
  std::unordered_map<std::string, std::string> id_paths;
  const std::size_t n_articles = data.array_size();
  ds.articles.resize(n_articles);
  for (std::size_t ai = 0; ai < n_articles; ++ai) {
    const auto aj = data.at(ai);
    auto& article = ds.articles[ai];
    aj.expect(aj.value.is_object(), "an object");
    if (auto t = aj.optional_field("title")) article.title = t->string();
    article.extra = detail::extra_fields(aj.value, {"title", "paragraphs"});
    const auto paragraphs = aj.field("paragraphs");
    const std::size_t n_paragraphs = paragraphs.array_size();
    article.paragraphs.resize(n_paragraphs);
    for (std::size_t pi = 0; pi < n_paragraphs; ++pi) {
      const auto pj = paragraphs.at(pi);
      auto& p = article.paragraphs[pi];
      p.path = pj.path;
      p.title = article.title;
      p.context = pj.field("context").string();
      p.extra = detail::extra_fields(pj.value, {"context", "qas", "context_parts"});
      const auto cp_offsets = unicode::code_point_offsets(p.context);
      if (auto parts = pj.optional_field("context_parts"))
        p.context_parts =
            detail::read_spans(*parts, "start", p.context, cp_offsets, "", ds.mismatches);
      const auto qas = pj.field("qas");
      const std::size_t n_qas = qas.array_size();
      p.qas.resize(n_qas);
      for (std::size_t qi = 0; qi < n_qas; ++qi) {
        const auto qj = qas.at(qi);
        auto& q = p.qas[qi];
        q.path = qj.path;
        q.id = qj.field("id").string();
        if (auto [it, fresh] = id_paths.emplace(q.id, q.path); !fresh)
          throw format_error(source + ": " + q.path + ".id: '" + q.id + "' repeats the id of " +
                             it->second);
        q.question = qj.field("question").string();
        q.answers = detail::read_spans(qj.field("answers"), "answer_start", p.context, cp_offsets,
                                       q.id, ds.mismatches);
        if (auto v = qj.optional_field("is_impossible")) q.is_impossible = v->boolean();
        if (auto v = qj.optional_field("plausible_answers"))
          q.plausible_answers =
              detail::read_spans(*v, "answer_start", p.context, cp_offsets, q.id, ds.mismatches);
        if (auto v = qj.optional_field("paraphrases")) q.paraphrases = v->strings();
        if (auto v = qj.optional_field("depends_on")) q.depends_on = v->strings();
        if (auto v = qj.optional_field("visible_part")) {
          const std::int64_t k = v->integer();
          if (k < 0 || static_cast<std::size_t>(k) >= p.context_parts.size())
            v->fail("part " + std::to_string(k) + " out of range: the paragraph has " +
                    std::to_string(p.context_parts.size()) + " context_parts");
          q.visible_part = static_cast<int>(k);
        }
        q.extra = detail::extra_fields(
            qj.value, {"id", "question", "answers", "is_impossible", "plausible_answers",
                       "paraphrases", "depends_on", "visible_part"});
      }
    }
  }
  return ds;
}

// Parses SQuAD JSON text; `source` names it in errors (not JSON -> format_error with the offset).
inline squad_dataset parse_squad_text(std::string_view text, const std::string& source) {
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw format_error(source + ": not valid JSON: " + e.what());
  }
  return parse_squad(root, source);
}

// Reads a SQuAD v1.1 or v2.0 file. Throws io_error when it cannot be read, format_error when it
// is not SQuAD JSON.
inline squad_dataset read_squad(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw io_error(path + ": cannot open for reading");
  std::ostringstream buffer;
  buffer << f.rdbuf();
  if (f.bad()) throw io_error(path + ": read failed");
  return parse_squad_text(buffer.str(), path);
}

}  // namespace crossbatch
