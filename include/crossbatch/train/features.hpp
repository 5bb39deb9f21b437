// The frozen model's states at the mix layer for teacher-forced answers, computed once and cached:
// for a question with prompt p and answer tokens a_1..a_m, one prefill of p + a_1..a_{m-1} gives
// the m states that predict a_1..a_m (the last prompt position and the first m - 1 answer
// positions). At mix_layer L they are final-normed (what the head reads), at k < L the raw residual
// stream (the objective applies the final norm in project mode). Because the base model is frozen,
// training never runs it again: an epoch costs the mixer and the LM head only.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "crossbatch/core/npy.hpp"
#include "crossbatch/generate/batch_session.hpp"
#include "crossbatch/generate/cross_batch.hpp"
#include "crossbatch/train/objective.hpp"

namespace crossbatch {

struct answer_item {
  std::string id;                     // question id
  int group = 0;                      // context group: only items of one group mix
  std::vector<std::int32_t> targets;  // the answer tokens (m)
  std::size_t offset = 0;             // first of its m rows in answer_states::states
};

struct answer_states {
  int hidden_size = 0;
  int mix_layer = -1;         // resolved k in [0, L]
  std::vector<float> states;  // (rows, C)
  std::vector<answer_item> items;
  nlohmann::json info = nlohmann::json::object();  // provenance (model, data, prompt version...)

  std::size_t rows() const { return hidden_size ? states.size() / hidden_size : 0; }
  const float* state(const answer_item& it) const {
    return states.data() + it.offset * hidden_size;
  }

  void save(const std::string& dir) const {
    std::filesystem::create_directories(dir);
    tensor<float> t({index_t(rows()), hidden_size});
    std::copy(states.begin(), states.end(), t.data());
    save_npy(dir + "/states.npy", t);
    nlohmann::json j = {{"hidden_size", hidden_size},
                        {"mix_layer", mix_layer},
                        {"info", info},
                        {"items", nlohmann::json::array()}};
    for (const auto& it : items)
      j["items"].push_back(
          {{"id", it.id}, {"group", it.group}, {"targets", it.targets}, {"offset", it.offset}});
    std::ofstream f(dir + "/items.json");
    f << j.dump() << "\n";
    if (!f) throw io_error(dir + "/items.json: write failed");
  }
  static answer_states load(const std::string& dir) {
    answer_states a;
    std::ifstream f(dir + "/items.json");
    if (!f) throw io_error(dir + "/items.json: cannot open for reading");
    nlohmann::json j;
    try {
      f >> j;
      a.hidden_size = j.at("hidden_size").get<int>();
      a.mix_layer = j.at("mix_layer").get<int>();
      a.info = j.value("info", nlohmann::json::object());
      for (const auto& it : j.at("items"))
        a.items.push_back({it.at("id").get<std::string>(), it.at("group").get<int>(),
                           it.at("targets").get<std::vector<std::int32_t>>(),
                           it.at("offset").get<std::size_t>()});
    } catch (const nlohmann::json::exception& e) {
      throw format_error(dir + "/items.json: " + e.what());
    }
    const auto t = load_npy<float>(dir + "/states.npy");
    require<shape_error>(t.rank() == 2 && t.dim(1) == a.hidden_size,
                         dir + "/states.npy: expected (rows, " + std::to_string(a.hidden_size) +
                             "), got " + to_string(t.shape()));
    a.states.assign(t.data(), t.data() + t.size());
    for (const auto& it : a.items)
      require<shape_error>(it.offset + it.targets.size() <= a.rows(),
                           dir + ": item " + it.id + " beyond states.npy");
    return a;
  }
};

// Called after each extraction batch with (items done, items total).
using progress_callback = std::function<void(std::size_t, std::size_t)>;

// States at mix_layer (transformers indexing, -1 = final-normed output) for every (prompt, answer)
// pair; groups give each item's context group. Prompts are run `batch` at a time, longest first.
template <class T, class D>
answer_states extract_answer_states(const context<D>& ctx, const decoder_model<T, D>& model,
                                    const std::vector<std::vector<int>>& prompts,
                                    const std::vector<std::vector<int>>& answers,
                                    const std::vector<int>& groups,
                                    const std::vector<std::string>& ids, int mix_layer, int batch,
                                    const progress_callback& progress = {}) {
  const auto& c = model.config;
  const int L = c.num_layers, k = resolve_mix_layer(mix_layer, L), C = c.hidden_size;
  const std::size_t n = prompts.size();
  require(answers.size() == n && groups.size() == n && ids.size() == n,
          "extract_answer_states: sizes differ");
  require(batch > 0, "extract_answer_states: batch must be positive");
  answer_states out;
  out.hidden_size = C;
  out.mix_layer = k;
  out.items.resize(n);
  std::size_t total_rows = 0;
  for (std::size_t i = 0; i < n; ++i) {
    require(!answers[i].empty(), "extract_answer_states: empty answer for " + ids[i]);
    out.items[i] = {ids[i], groups[i],
                    std::vector<std::int32_t>(answers[i].begin(), answers[i].end()), total_rows};
    total_rows += answers[i].size();
  }
  out.states.assign(total_rows * C, 0.0f);
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t(0));
  auto len = [&](std::size_t i) { return prompts[i].size() + answers[i].size() - 1; };
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return len(a) > len(b); });
  for (std::size_t start = 0; start < n; start += batch) {
    const std::size_t end = std::min(n, start + std::size_t(batch));
    std::vector<std::vector<int>> seqs;
    for (std::size_t r = start; r < end; ++r) {
      const std::size_t i = order[r];
      auto s = prompts[i];
      s.insert(s.end(), answers[i].begin(), answers[i].end() - 1);
      seqs.push_back(std::move(s));
    }
    batch_session<T, D> session(ctx, model, seqs, 0);
    session.prefill_until(k);
    auto x = session.residual();  // (B, P, C)
    const index_t b = x.shape[0], p = x.shape[1];
    tensor<T> host;
    if (k == L) {
      tensor<T, D> normed({b * p, C});
      model.final_norm(ctx, normed.view(), tensor_view<const T, D>(x.reshape({b * p, C})));
      host = to_host(normed);
    } else {
      host = to_host(tensor_view<const T, D>(x));
    }
    for (std::size_t r = start; r < end; ++r) {
      const std::size_t i = order[r], row = r - start;
      const index_t pad = p - index_t(seqs[row].size());
      const index_t first = pad + index_t(prompts[i].size()) - 1;
      for (std::size_t t = 0; t < answers[i].size(); ++t)
        for (int j = 0; j < C; ++j)
          out.states[(out.items[i].offset + t) * C + j] =
              static_cast<float>(host.data()[(index_t(row) * p + first + index_t(t)) * C + j]);
    }
    if (progress) progress(end, n);
  }
  return out;
}

// Batches of items for training/evaluation: whole groups are packed in order until `batch_size`
// items (a group larger than that is split), so that samples of one context share a batch. The
// group order is shuffled with `seed` unless seed is 0.
inline std::vector<std::vector<std::size_t>> pack_groups(const std::vector<answer_item>& items,
                                                         int batch_size, std::uint64_t seed = 0) {
  std::vector<std::vector<std::size_t>> groups;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (groups.empty() || items[groups.back().front()].group != items[i].group)
      groups.emplace_back();
    groups.back().push_back(i);
  }
  if (seed) {
    std::mt19937_64 gen(seed);
    std::shuffle(groups.begin(), groups.end(), gen);
  }
  std::vector<std::vector<std::size_t>> batches;
  std::vector<std::size_t> cur;
  for (const auto& g : groups) {
    if (!cur.empty() && cur.size() + g.size() > std::size_t(batch_size)) {
      batches.push_back(std::move(cur));
      cur.clear();
    }
    for (std::size_t i : g) {
      cur.push_back(i);
      if (cur.size() == std::size_t(batch_size)) {
        batches.push_back(std::move(cur));
        cur.clear();
      }
    }
  }
  if (!cur.empty()) batches.push_back(std::move(cur));
  return batches;
}

// Who a sample's partners are: the other questions of its context (as generation mixes), or, as a
// control, questions of the other contexts of its batch (group = the question's position in its
// context, so each sample mixes with the same-position questions of different stories).
enum class partner_mode { same_context, other_contexts };

// The answer_batch of some items of `a`.
inline answer_batch batch_of(const answer_states& a, const std::vector<std::size_t>& which,
                             partner_mode partners = partner_mode::same_context) {
  std::vector<const float*> states;
  std::vector<std::vector<std::int32_t>> targets;
  std::vector<int> groups;
  int position = 0;
  for (std::size_t r = 0; r < which.size(); ++r) {
    const auto& it = a.items[which[r]];
    position = r > 0 && a.items[which[r - 1]].group == it.group ? position + 1 : 0;
    states.push_back(a.state(it));
    targets.push_back(it.targets);
    groups.push_back(partners == partner_mode::same_context ? it.group : position);
  }
  return make_answer_batch(states, targets, groups, a.hidden_size);
}

}  // namespace crossbatch
