// The dropout of a LoRA adapter's input (peft: lora_B(lora_A(dropout(x)))) as a pure function of
// (seed, stream, element index): the forward pass, the recomputation inside the backward pass and
// the CUDA kernels draw the same mask without storing it. stream = lora_stream(layer, slot).
#pragma once

#include <cstdint>

#include "crossbatch/core/host_device.hpp"
#include "crossbatch/core/rng.hpp"

namespace crossbatch {

// The random stream of adapter `slot` (lora_slot, < 16) of layer `layer`.
CROSSBATCH_HD inline std::uint64_t lora_stream(int layer, int slot) {
  return static_cast<std::uint64_t>(layer) * 16u + static_cast<std::uint64_t>(slot);
}

// The dropout multiplier of element `index` (row-major over the (N, in) adapter input): 0 with
// probability p, else 1 / (1 - p) (inverted dropout, as torch.nn.Dropout). p == 0 gives 1.
CROSSBATCH_HD inline float lora_dropout_factor(std::uint64_t seed, std::uint64_t stream,
                                               std::uint64_t index, float p) {
  if (p <= 0.0f) return 1.0f;
  const counter_rng rng{seed};
  // one Philox block gives four uniforms: elements 4k .. 4k+3 share counter k
  return rng.uniform(stream, index >> 2, unsigned(index & 3)) < p ? 0.0f : 1.0f / (1.0f - p);
}

// factors[k] = lora_dropout_factor(seed, stream, first + k, p) for k < n, one Philox block per
// four elements (the CPU's row loop).
inline void lora_dropout_factors(std::uint64_t seed, std::uint64_t stream, std::uint64_t first,
                                 std::uint64_t n, float p, float* factors) {
  if (p <= 0.0f) {
    for (std::uint64_t k = 0; k < n; ++k) factors[k] = 1.0f;
    return;
  }
  const counter_rng rng{seed};
  const float keep = 1.0f / (1.0f - p);
  std::uint64_t k = 0;
  while (k < n) {
    const std::uint64_t index = first + k, block = index >> 2;
    std::uint32_t c[4] = {
        static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32),
        static_cast<std::uint32_t>(stream), static_cast<std::uint32_t>(stream >> 32)};
    philox4x32::generate(c, static_cast<std::uint32_t>(rng.seed),
                         static_cast<std::uint32_t>(rng.seed >> 32));
    for (unsigned lane = unsigned(index & 3); lane < 4 && k < n; ++lane, ++k) {
      const float u = static_cast<float>(c[lane] >> 8) * (1.0f / 16777216.0f);
      factors[k] = u < p ? 0.0f : keep;
    }
  }
}

}  // namespace crossbatch
