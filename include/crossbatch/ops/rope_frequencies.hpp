// Rotary position embedding frequencies, as Hugging Face computes them: the default
// inv_freq = theta^(-2i/D), and the `llama3` rope_scaling (Llama 3.1+) that stretches low
// frequencies by `factor` with a smooth band between low_freq_factor and high_freq_factor.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "crossbatch/core/error.hpp"

namespace crossbatch {

struct rope_parameters {
  float theta = 10000.0f;
  std::string type = "default";  // "default" or "llama3"
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  float original_max_position_embeddings = 8192.0f;
};

// inv_freq (D/2), in float32 like transformers' _compute_default_rope_parameters.
inline std::vector<float> rope_inv_freq(const rope_parameters& p, int head_dim) {
  require<config_error>(head_dim % 2 == 0,
                        "rope: head_dim must be even, got " + std::to_string(head_dim));
  std::vector<float> inv(head_dim / 2);
  for (int i = 0; i < head_dim / 2; ++i)
    inv[i] = 1.0f / std::pow(p.theta, static_cast<float>(2 * i) / static_cast<float>(head_dim));
  if (p.type == "default") return inv;
  if (p.type != "llama3")
    throw config_error("rope_scaling type '" + p.type + "' is not supported (default, llama3)");
  const float pi = 3.14159265358979323846f;
  const float low_wavelen = p.original_max_position_embeddings / p.low_freq_factor;
  const float high_wavelen = p.original_max_position_embeddings / p.high_freq_factor;
  for (float& f : inv) {
    const float wavelen = 2 * pi / f;
    float scaled = wavelen > low_wavelen ? f / p.factor : f;
    if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
      const float smooth = (p.original_max_position_embeddings / wavelen - p.low_freq_factor) /
                           (p.high_freq_factor - p.low_freq_factor);
      scaled = (1 - smooth) * scaled / p.factor + smooth * scaled;
    }
    f = scaled;
  }
  return inv;
}

}  // namespace crossbatch
