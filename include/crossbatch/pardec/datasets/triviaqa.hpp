// TriviaQA (the original JSON: {Data: [{Question, QuestionId, Answer: {Value, Aliases,
// NormalizedAliases, ...}, EntityPages, SearchResults}], Version, Split}) as groups of
// context-free questions: at random (triviaqa) or by similarity of their sentence embeddings
// (triviaqa_sim: greedy clusters whose members all have cosine >= threshold with the seed question).
#pragma once

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "crossbatch/pardec/json_file.hpp"
#include "crossbatch/pardec/question_group.hpp"

namespace crossbatch::pardec {

inline std::vector<group_question> read_triviaqa_questions(const std::string& path) {
  const auto root = read_json_file(path);
  const json_at r{root, "", path};
  const auto data = r.field("Data");
  std::vector<group_question> out;
  for (std::size_t i = 0; i < data.array_size(); ++i) {
    const auto rec = data.at(i);
    group_question q;
    q.id = rec.field("QuestionId").string();
    q.text = rec.field("Question").string();
    const auto a = rec.field("Answer");
    q.answers = {a.field("Value").string()};
    if (auto al = a.optional_field("Aliases"))
      for (auto& s : al->strings())
        if (std::find(q.answers.begin(), q.answers.end(), s) == q.answers.end()) q.answers.push_back(s);
    q.source = path + ": " + rec.path;
    out.push_back(std::move(q));
  }
  return out;
}

inline std::vector<question_group> read_triviaqa_groups(const std::string& path,
                                                        const grouping_options& opt) {
  return chunk_questions(read_triviaqa_questions(path), "triviaqa-", answer_style::short_answer, opt);
}

// Sentence embeddings of texts, one vector each (the BERT side: pardec/sentence_embedding.hpp).
using embed_fn = std::function<std::vector<std::vector<float>>(const std::vector<std::string>&)>;

inline double cosine(const std::vector<float>& a, const std::vector<float>& b) {
  require(a.size() == b.size() && !a.empty(), "cosine: vectors of different or zero length");
  double ab = 0, aa = 0, bb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) ab += double(a[i]) * b[i], aa += double(a[i]) * a[i], bb += double(b[i]) * b[i];
  return aa > 0 && bb > 0 ? ab / std::sqrt(aa * bb) : 0.0;
}

// Greedy similarity grouping: questions in seeded random order; each ungrouped one seeds a group
// and takes the most similar ungrouped questions with cosine >= threshold, up to a size drawn from
// [min, max]; groups below min_questions are dropped (their questions stay available as members).
inline std::vector<question_group> similarity_groups(std::vector<group_question> pool,
                                                     const std::vector<std::vector<float>>& emb,
                                                     double threshold, const grouping_options& opt) {
  opt.check();
  require(emb.size() == pool.size(), "similarity_groups: one embedding per question needed");
  group_rng rng(opt.seed);
  std::vector<std::size_t> order(pool.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  rng.shuffle(order);
  std::vector<bool> used(pool.size(), false);
  std::vector<question_group> out;
  for (std::size_t seed : order) {
    if (opt.context_count && int(out.size()) >= opt.context_count) break;
    if (used[seed]) continue;
    const int want = rng.between(opt.min_questions, opt.max_questions);
    std::vector<std::pair<double, std::size_t>> cands;
    for (std::size_t j = 0; j < pool.size(); ++j)
      if (j != seed && !used[j])
        if (const double c = cosine(emb[seed], emb[j]); c >= threshold) cands.push_back({-c, j});
    std::sort(cands.begin(), cands.end());
    if (int(cands.size()) + 1 < opt.min_questions) continue;
    question_group g;
    g.id = "triviaqa-sim-" + std::to_string(out.size());
    g.style = answer_style::short_answer;
    used[seed] = true;
    g.questions.push_back(pool[seed]);
    for (std::size_t k = 0; k < cands.size() && int(g.questions.size()) < want; ++k) {
      used[cands[k].second] = true;
      g.questions.push_back(pool[cands[k].second]);
    }
    out.push_back(std::move(g));
  }
  return out;
}

inline std::vector<question_group> read_triviaqa_sim_groups(const std::string& path,
                                                            const grouping_options& opt,
                                                            const embed_fn& embed, double threshold) {
  auto pool = read_triviaqa_questions(path);
  std::vector<std::string> texts;
  for (const auto& q : pool) texts.push_back(q.text);
  const auto emb = embed(texts);
  return similarity_groups(std::move(pool), emb, threshold, opt);
}

}  // namespace crossbatch::pardec
