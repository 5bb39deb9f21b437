// One teacher-forced training batch of questions (train/qa_examples.hpp) on the host: each row is
// prompt + target[0 .. m-2] (right-padded), and the answer "grid" names, for every answer step t
// and sample i, the row of the flattened (B*T, C) residual stream whose state predicts target[t]
// (the last prompt position for t = 0). At step t the samples still inside their answer mix (per
// group), as the generator mixes the samples that have not finished; a sample past its answer has
// group -1 there. The like-for-like control regroups the same samples so that every question gets
// as many partners as it has siblings, taken from other groups of the batch.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <numeric>
#include <random>
#include <vector>

#include "crossbatch/core/error.hpp"
#include "crossbatch/train/qa_examples.hpp"

namespace crossbatch {

struct qa_batch {
  int batch = 0, length = 0;  // B rows, T tokens per row
  std::vector<std::int32_t> ids, valid, positions;  // (B*T) right-padded
  int steps = 0;                                    // Tm: the longest target
  std::vector<std::int32_t> grid_rows;    // (Tm*B): row t*B+i -> residual row, -1 if absent
  std::vector<std::int32_t> grid_groups;  // (Tm*B): mixing group, -1 if absent
  std::vector<std::int32_t> token_grid;   // (N): grid row of each target token, (t, i) order
  std::vector<std::int32_t> token_rows;   // (N): residual row of each target token
  std::vector<std::int32_t> targets;      // (N): the token predicted there
  int tokens() const { return int(targets.size()); }
};

// groups: the mixing group of each sample (its question group, or the control's regrouping).
inline qa_batch make_qa_batch(const std::vector<const qa_example*>& ex, const std::vector<int>& groups) {
  require(!ex.empty() && groups.size() == ex.size(), "make_qa_batch: empty batch or one group id per example needed");
  qa_batch b;
  b.batch = int(ex.size());
  for (const auto* e : ex) {
    require(!e->prompt.empty() && !e->target.empty(), "make_qa_batch: " + e->id + ": empty prompt or target");
    b.length = std::max(b.length, int(e->prompt.size() + e->target.size() - 1));
    b.steps = std::max(b.steps, int(e->target.size()));
  }
  const std::size_t BT = std::size_t(b.batch) * b.length;
  b.ids.assign(BT, 0);
  b.valid.assign(BT, 0);
  b.positions.assign(BT, 0);
  b.grid_rows.assign(std::size_t(b.steps) * b.batch, -1);
  b.grid_groups.assign(std::size_t(b.steps) * b.batch, -1);
  for (int i = 0; i < b.batch; ++i) {
    const auto& e = *ex[i];
    std::vector<int> seq = e.prompt;
    seq.insert(seq.end(), e.target.begin(), e.target.end() - 1);
    for (std::size_t p = 0; p < seq.size(); ++p) {
      const std::size_t r = std::size_t(i) * b.length + p;
      b.ids[r] = seq[p];
      b.valid[r] = 1;
      b.positions[r] = std::int32_t(p);
    }
  }
  for (int t = 0; t < b.steps; ++t)
    for (int i = 0; i < b.batch; ++i) {
      const auto& e = *ex[i];
      if (t >= int(e.target.size())) continue;
      const int g = t * b.batch + i;
      const int row = i * b.length + int(e.prompt.size()) - 1 + t;
      b.grid_rows[g] = row;
      b.grid_groups[g] = groups[i];
      b.token_grid.push_back(g);
      b.token_rows.push_back(row);
      b.targets.push_back(e.target[t]);
    }
  return b;
}

// The like-for-like control: new group ids for the samples (in order) such that each new group has
// the size of an original group and, as far as the batch allows, holds questions of distinct
// original groups (largest groups first, each filled from the groups with the most questions
// left). Returns the ids and, in same_pairs, how many partner pairs still share an original group.
inline std::vector<int> control_groups(const std::vector<int>& groups, long* same_pairs = nullptr) {
  std::map<int, std::vector<std::size_t>> members;
  for (std::size_t i = 0; i < groups.size(); ++i) members[groups[i]].push_back(i);
  std::vector<std::size_t> sizes;
  for (const auto& [g, m] : members) sizes.push_back(m.size());
  std::sort(sizes.rbegin(), sizes.rend());
  std::vector<std::vector<std::size_t>> left;
  for (auto& [g, m] : members) left.push_back(m);
  std::vector<int> out(groups.size(), -1);
  long same = 0;
  for (std::size_t ng = 0; ng < sizes.size(); ++ng) {
    std::vector<std::size_t> order(left.size());
    std::iota(order.begin(), order.end(), std::size_t(0));
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return left[a].size() > left[b].size(); });
    std::vector<int> taken_from;
    for (std::size_t n = 0, o = 0; n < sizes[ng]; ++n) {
      // next source group with questions left; wrap (same story twice) only when none is left
      while (o < order.size() && left[order[o]].empty()) ++o;
      std::size_t src;
      if (o < order.size()) {
        src = order[o++];
      } else {
        src = *std::max_element(order.begin(), order.end(),
                                [&](std::size_t a, std::size_t b) { return left[a].size() < left[b].size(); });
      }
      for (int f : taken_from) same += f == int(src);
      taken_from.push_back(int(src));
      out[left[src].back()] = int(ng);
      left[src].pop_back();
    }
  }
  if (same_pairs) *same_pairs = same;
  return out;
}

// Batches of example indices: `contexts` whole groups per batch (examples of a group are
// contiguous), the group order shuffled with `seed` unless it is 0.
inline std::vector<std::vector<std::size_t>> context_batches(const std::vector<qa_example>& ex, int contexts,
                                                             std::uint64_t seed = 0) {
  require(contexts > 0, "context_batches: --batch-size must be positive");
  std::vector<std::vector<std::size_t>> groups;
  for (std::size_t i = 0; i < ex.size(); ++i) {
    if (groups.empty() || ex[groups.back().front()].group != ex[i].group) groups.emplace_back();
    groups.back().push_back(i);
  }
  if (seed) {
    std::mt19937_64 gen(seed);
    std::shuffle(groups.begin(), groups.end(), gen);
  }
  std::vector<std::vector<std::size_t>> out;
  for (std::size_t g = 0; g < groups.size(); g += std::size_t(contexts)) {
    std::vector<std::size_t> b;
    for (std::size_t h = g; h < std::min(groups.size(), g + std::size_t(contexts)); ++h)
      b.insert(b.end(), groups[h].begin(), groups[h].end());
    out.push_back(std::move(b));
  }
  return out;
}

}  // namespace crossbatch
