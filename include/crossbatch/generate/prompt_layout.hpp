// The left-padded layout of one batch of token prompts, shared by batch_session and the CUDA graph
// decoders: the prompts are validated against the model (non-empty, ids inside the vocabulary,
// prompt + max_new_tokens within the context) and laid out as (B, T) ids and positions.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "crossbatch/core/error.hpp"
#include "crossbatch/core/tensor.hpp"
#include "crossbatch/model/config.hpp"

namespace crossbatch {

struct left_padded_prompts {
  int length = 0;                       // T: the longest prompt
  tensor<std::int32_t> ids, positions;  // (B, T); padding slots hold id 0 at position 0
  tensor<std::int32_t> pad;             // (B) padding slots before each prompt
  std::vector<int> lengths;             // (B) real tokens of each prompt
};

// Sequence s occupies slots [pad_s, T); its positions count from 0 at its first real token.
inline left_padded_prompts left_pad_prompts(const model_config& c,
                                            const std::vector<std::vector<int>>& prompts,
                                            int max_new_tokens) {
  require(!prompts.empty(), "generate: no prompts");
  require(max_new_tokens >= 0, "generate: max_new_tokens must be >= 0");
  const int batch = static_cast<int>(prompts.size());
  left_padded_prompts out;
  for (int s = 0; s < batch; ++s) {
    require(!prompts[s].empty(), "generate: prompt " + std::to_string(s) + " is empty");
    for (int id : prompts[s])
      require(id >= 0 && id < c.vocab_size,
              "generate: prompt " + std::to_string(s) + " holds token id " + std::to_string(id) +
                  " outside the vocabulary of " + std::to_string(c.vocab_size));
    out.length = std::max(out.length, static_cast<int>(prompts[s].size()));
  }
  for (int s = 0; s < batch; ++s)
    if (static_cast<int>(prompts[s].size()) + max_new_tokens > c.max_positions)
      throw value_error("generate: prompt " + std::to_string(s) + " has " +
                        std::to_string(prompts[s].size()) + " tokens; with max_new_tokens " +
                        std::to_string(max_new_tokens) + " it exceeds the model's context of " +
                        std::to_string(c.max_positions) + " positions");
  const int T = out.length;
  out.ids = tensor<std::int32_t>({batch, T});
  out.positions = tensor<std::int32_t>({batch, T});
  out.pad = tensor<std::int32_t>({batch});
  for (int s = 0; s < batch; ++s) {
    const int len = static_cast<int>(prompts[s].size()), p = T - len;
    out.pad(s) = p;
    out.lengths.push_back(len);
    for (int t = 0; t < T; ++t) {
      out.ids(s, t) = t < p ? 0 : prompts[s][t - p];
      out.positions(s, t) = t < p ? 0 : t - p;
    }
  }
  return out;
}

}  // namespace crossbatch
