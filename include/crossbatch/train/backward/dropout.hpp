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
  return rng.uniform(stream, index) < p ? 0.0f : 1.0f / (1.0f - p);
}

}  // namespace crossbatch
