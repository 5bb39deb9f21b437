// Samplers: turn a batch of logits (B, V) into one token id per row. `greedy` takes the argmax;
// `sampler_chain<Filters...>` applies filters (filters.hpp) in order and draws by inverse CDF with
// a uniform number from the counter RNG at (stream = sequence id, counter = step), so a sequence's
// draws do not depend on its batch companions. `sampling_params` is the run-time form used by CLIs.
#pragma once

#include <concepts>
#include <cstdint>
#include <span>
#include <tuple>
#include <vector>

#include "crossbatch/core/context.hpp"
#include "crossbatch/core/rng.hpp"
#include "crossbatch/core/tensor.hpp"
#include "crossbatch/sample/filters.hpp"

namespace crossbatch {

// A sampler picks an id from one row of logits given a uniform number u in [0, 1).
template <class S>
concept sampler = requires(const S& s, std::span<float> row, float u) {
  { s.pick(row, u) } -> std::convertible_to<int>;
};

// Index of the largest logit; the first one on ties (as torch.argmax).
inline int argmax(std::span<const float> row) {
  return static_cast<int>(std::max_element(row.begin(), row.end()) - row.begin());
}

// Inverse-CDF draw from softmax(logits) with uniform u; -inf entries are never drawn.
inline int draw(std::span<const float> logits, float u) {
  const auto p = detail::probabilities(logits);
  float cum = 0;
  int last = -1;
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (p[i] <= 0.0f) continue;
    cum += p[i];
    last = static_cast<int>(i);
    if (u < cum) return last;
  }
  return last;  // u beyond the rounded total: the last possible id
}

struct greedy {
  int pick(std::span<float> row, float) const { return argmax(row); }
};

template <class... Filters>
struct sampler_chain {
  std::tuple<Filters...> filters;

  explicit sampler_chain(Filters... f) : filters(f...) {}

  int pick(std::span<float> row, float u) const {
    std::apply([&](const Filters&... f) { (f.apply(row), ...); }, filters);
    return draw(row, u);
  }
};

// Run-time sampling settings, applied in Hugging Face's order: temperature, top-k, top-p, min-p.
// do_sample = false means greedy.
struct sampling_params {
  bool do_sample = false;
  float temperature = 1.0f;
  int top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;

  int pick(std::span<float> row, float u) const {
    if (!do_sample) return argmax(row);
    crossbatch::temperature{temperature}.apply(row);
    crossbatch::top_k{top_k}.apply(row);
    crossbatch::top_p{top_p}.apply(row);
    crossbatch::min_p{min_p}.apply(row);
    return draw(row, u);
  }
};

// ids (B) = one draw per row of logits (B, V); row b uses stream streams[b] (or b) and counter
// `step`. logits are modified in place by the filters.
template <sampler S>
void sample(const context<cpu>&, const S& s, tensor_view<float> logits, std::span<std::int32_t> ids,
            const counter_rng& rng, std::uint64_t step,
            std::span<const std::uint64_t> streams = {}) {
  const index_t b = logits.shape[0], v = logits.shape[1];
  require<shape_error>(logits.contiguous() && static_cast<index_t>(ids.size()) == b,
                       "sample: logits (B, V) and ids (B) disagree");
  for (index_t i = 0; i < b; ++i) {
    const std::uint64_t stream = streams.empty() ? static_cast<std::uint64_t>(i) : streams[i];
    ids[i] = s.pick(std::span<float>(logits.data + i * v, v), rng.uniform(stream, step));
  }
}

}  // namespace crossbatch
