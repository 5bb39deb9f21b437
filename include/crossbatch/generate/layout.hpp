// Prompt layouts of a batch_session: how the prompts become (B, T) slots of ids and positions and
// which mask they decode under. Both layouts left-pad the prompts to one length T so that every
// sequence writes the same KV slot at each step.
//   left_padded  plain prompts; mask causal + padding.
//   segmented    per sequence a shared prefix, isolated segments that see only themselves and the
//                prefix, then a suffix and the generated tokens that see everything (paraphrase
//                fusion); mask causal + padding + segment isolation. Segment spans are given in
//                token space; positions run 0..L-1, or restart at the prefix length in every
//                segment (restart_positions).
// Prompts are validated against the model: non-empty, ids inside the vocabulary, and the largest
// position (prompt + max_new_tokens) inside the model's context.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "crossbatch/attention/mask.hpp"
#include "crossbatch/core/error.hpp"
#include "crossbatch/core/tensor.hpp"
#include "crossbatch/model/config.hpp"

namespace crossbatch {

// A layout's result on the host; batch_session uploads it.
struct laid_out_batch {
  int length = 0;                       // T: padded prompt slots
  tensor<std::int32_t> ids, positions;  // (B, T); padding slots hold id 0 at position 0
  tensor<std::int32_t> pad;             // (B) padding slots before each prompt
  tensor<std::int32_t> segment;         // (B, T) segment ids (segmented only)
  tensor<std::int32_t> gen_start;       // (B) first slot that sees every segment (segmented only)
  std::vector<int> lengths;             // (B) real tokens of each prompt
  std::vector<int> next_position;       // (B) position of each sequence's first generated token

  laid_out_batch clone() const {
    laid_out_batch o;
    o.length = length;
    for (auto [dst, src] : {std::pair{&o.ids, &ids},
                            {&o.positions, &positions},
                            {&o.pad, &pad},
                            {&o.segment, &segment},
                            {&o.gen_start, &gen_start}})
      if (!src->empty()) *dst = src->clone();
    o.lengths = lengths;
    o.next_position = next_position;
    return o;
  }
};

// The device pointers a layout's mask reads (they live in the session).
struct layout_mask_state {
  const int* pad = nullptr;        // (B)
  const int* segment = nullptr;    // (B, stride)
  const int* gen_start = nullptr;  // (B)
  int stride = 0;
};

namespace detail {
inline void check_tokens(const model_config& c, const std::vector<int>& tokens, std::size_t s) {
  require(!tokens.empty(), "generate: prompt " + std::to_string(s) + " is empty");
  for (int id : tokens)
    require(id >= 0 && id < c.vocab_size,
            "generate: prompt " + std::to_string(s) + " holds token id " + std::to_string(id) +
                " outside the vocabulary of " + std::to_string(c.vocab_size));
}
inline void check_context(const model_config& c, std::size_t s, int tokens, int last_position,
                          int max_new_tokens) {
  if (last_position + max_new_tokens > c.max_positions)
    throw value_error("generate: prompt " + std::to_string(s) + " has " + std::to_string(tokens) +
                      " tokens; with max_new_tokens " + std::to_string(max_new_tokens) +
                      " it exceeds the model's context of " + std::to_string(c.max_positions) +
                      " positions");
}
// ids/positions/pad of B prompts left-padded to the longest; positions[s] from `position(s, i)`.
template <class Tokens, class Position>
laid_out_batch left_pad(std::size_t batch, Tokens&& tokens, Position&& position) {
  laid_out_batch out;
  for (std::size_t s = 0; s < batch; ++s)
    out.length = std::max(out.length, static_cast<int>(tokens(s).size()));
  const int B = static_cast<int>(batch), T = out.length;
  out.ids = tensor<std::int32_t>({B, T});
  out.positions = tensor<std::int32_t>({B, T});
  out.pad = tensor<std::int32_t>({B});
  for (int s = 0; s < B; ++s) {
    const auto& tok = tokens(s);
    const int len = static_cast<int>(tok.size()), p = T - len;
    out.pad(s) = p;
    out.lengths.push_back(len);
    for (int t = 0; t < T; ++t) {
      out.ids(s, t) = t < p ? 0 : tok[t - p];
      out.positions(s, t) = t < p ? 0 : position(s, t - p);
    }
  }
  return out;
}
}  // namespace detail

struct left_padded {
  using prompt = std::vector<int>;
  using mask_type = all_of<causal, left_padding>;

  laid_out_batch lay_out(const model_config& c, const std::vector<prompt>& prompts,
                         int max_new_tokens) const {
    require(!prompts.empty(), "generate: no prompts");
    require(max_new_tokens >= 0, "generate: max_new_tokens must be >= 0");
    for (std::size_t s = 0; s < prompts.size(); ++s) {
      detail::check_tokens(c, prompts[s], s);
      const int n = static_cast<int>(prompts[s].size());
      detail::check_context(c, s, n, n, max_new_tokens);
    }
    auto out = detail::left_pad(
        prompts.size(), [&](std::size_t s) -> const prompt& { return prompts[s]; },
        [](int, int i) { return i; });
    out.next_position = out.lengths;
    return out;
  }
  static mask_type mask(const layout_mask_state& m) {
    return mask_type(causal{}, left_padding{m.pad});
  }
};

// [begin, end) token offsets of one segment inside a segmented_prompt's tokens.
struct segment_span {
  int begin = 0, end = 0;
};

// One sequence of the segmented layout. Tokens before the first span are the shared prefix; each
// span is an isolated segment; tokens between spans (separators) form isolated runs of their own;
// tokens after the last span (a shared suffix, e.g. "A:") see everything, as generated ones do.
struct segmented_prompt {
  std::vector<int> tokens;
  std::vector<segment_span> segments;

  // prefix, then the parts with `separator` (may be empty) between them, spans on the parts.
  static segmented_prompt join(const std::vector<int>& prefix,
                               const std::vector<std::vector<int>>& parts,
                               const std::vector<int>& separator = {},
                               const std::vector<int>& suffix = {}) {
    segmented_prompt p;
    p.tokens = prefix;
    for (std::size_t i = 0; i < parts.size(); ++i) {
      if (i > 0) p.tokens.insert(p.tokens.end(), separator.begin(), separator.end());
      const int begin = static_cast<int>(p.tokens.size());
      p.tokens.insert(p.tokens.end(), parts[i].begin(), parts[i].end());
      p.segments.push_back({begin, static_cast<int>(p.tokens.size())});
    }
    p.tokens.insert(p.tokens.end(), suffix.begin(), suffix.end());
    return p;
  }
};

struct segmented {
  using prompt = segmented_prompt;
  using mask_type = all_of<causal, left_padding, segment_isolation>;

  // false: positions 0..L-1 along the tokens; true: every isolated run starts at the prefix length
  // and the suffix continues after the longest run.
  bool restart_positions = false;

  laid_out_batch lay_out(const model_config& c, const std::vector<prompt>& prompts,
                         int max_new_tokens) const {
    require(!prompts.empty(), "generate: no prompts");
    require(max_new_tokens >= 0, "generate: max_new_tokens must be >= 0");
    const std::size_t batch = prompts.size();
    // Per sequence and token: the segment id (0 prefix, 1.. isolated runs, -1 shared suffix) and
    // the position.
    std::vector<std::vector<int>> ids(batch), pos(batch);
    std::vector<int> suffix_start(batch), next(batch);
    for (std::size_t s = 0; s < batch; ++s) {
      const auto& p = prompts[s];
      detail::check_tokens(c, p.tokens, s);
      const int n = static_cast<int>(p.tokens.size());
      int last = 0;
      for (std::size_t i = 0; i < p.segments.size(); ++i) {
        const auto& sp = p.segments[i];
        require(sp.begin < sp.end && sp.begin >= last && sp.end <= n,
                "segmented: prompt " + std::to_string(s) + " segment " + std::to_string(i) +
                    " spans [" + std::to_string(sp.begin) + ", " + std::to_string(sp.end) +
                    "): spans must be non-empty, in order, disjoint and inside its " +
                    std::to_string(n) + " tokens");
        last = sp.end;
      }
      const int prefix = p.segments.empty() ? n : p.segments.front().begin;
      suffix_start[s] = p.segments.empty() ? n : p.segments.back().end;
      ids[s].assign(n, 0);
      pos[s].resize(n);
      int id = 0, run_start = prefix, longest = 0;
      bool prev_in_span = false;
      std::size_t span = 0;
      for (int t = 0; t < n; ++t) {
        if (t < prefix) {
          pos[s][t] = t;
        } else if (t < suffix_start[s]) {
          // A run starts at each span and at each separator run that follows a span.
          while (span < p.segments.size() && t >= p.segments[span].end) ++span;
          const bool in_span = span < p.segments.size() && t >= p.segments[span].begin;
          if (in_span ? t == p.segments[span].begin : prev_in_span) {
            ++id;
            run_start = t;
          }
          prev_in_span = in_span;
          ids[s][t] = id;
          pos[s][t] = restart_positions ? prefix + (t - run_start) : t;
          longest = std::max(longest, t - run_start + 1);
        } else {
          ids[s][t] = id;  // the mask lets the suffix see everything; ids need only be ordered
          pos[s][t] = restart_positions ? prefix + longest + (t - suffix_start[s]) : t;
        }
      }
      next[s] = restart_positions ? prefix + longest + (n - suffix_start[s]) : n;
      detail::check_context(c, s, n, next[s], max_new_tokens);
    }
    auto out = detail::left_pad(
        batch, [&](std::size_t s) -> const std::vector<int>& { return prompts[s].tokens; },
        [&](int s, int i) { return pos[s][i]; });
    const int B = static_cast<int>(batch), T = out.length;
    out.segment = tensor<std::int32_t>({B, T});
    out.gen_start = tensor<std::int32_t>({B});
    for (int s = 0; s < B; ++s) {
      const int p = out.pad(s);
      for (int t = 0; t < T; ++t) out.segment(s, t) = t < p ? 0 : ids[s][t - p];
      out.gen_start(s) = p + suffix_start[s];
    }
    out.next_position = next;
    return out;
  }
  static mask_type mask(const layout_mask_state& m) {
    return mask_type(causal{}, left_padding{m.pad},
                     segment_isolation{m.segment, m.gen_start, m.stride});
  }
};

}  // namespace crossbatch
