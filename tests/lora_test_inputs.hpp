// Inputs shared by the LoRA tests. The batch and the rounded weights are those of the bf16
// whole-model gradient checks of tests/train/test_lora_model.cpp and
// tests/cuda/test_lora_backward.cu: both must run exactly the inputs of the PyTorch fixture
// tests/data/lora/bf16_reference.json (tools/make_lora_bf16_reference.py).
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <type_traits>
#include <vector>

#include "crossbatch/model/decoder.hpp"
#include "crossbatch/train/backward/decoder_backward.hpp"
#include "support.hpp"

namespace cbtest {

// Three right-padded rows of 7, 4 and 9 random tokens.
inline crossbatch::token_batch lora_test_batch(int vocab) {
  std::mt19937 gen(11);
  std::vector<std::vector<std::int32_t>> rows;
  for (int len : {7, 4, 9}) {
    rows.emplace_back();
    for (int i = 0; i < len; ++i) rows.back().push_back(std::int32_t(gen() % vocab));
  }
  return crossbatch::make_token_batch(rows, 0);
}

// The float32 model's weights rounded to T (identity for float), so that a float32 reference
// runs the same function as a model stored in T.
template <class T>
void round_weights_to(crossbatch::decoder_model<float>& m) {
  if constexpr (!std::is_same_v<T, float>) {
    auto round = [](crossbatch::tensor<float>& t) {
      if (t.empty()) return;  // absent biases, pos_embed of rotary families, a tied head
      for (crossbatch::index_t i = 0; i < t.size(); ++i) t.data()[i] = float(T(t.data()[i]));
    };
    for (auto* t : {&m.embed, &m.pos_embed, &m.final_w, &m.final_b, &m.lm_head}) round(*t);
    for (auto& L : m.layers)
      for (auto* t : {&L.norm1_w, &L.norm1_b, &L.qkv_w, &L.qkv_b, &L.o_w, &L.o_b, &L.norm2_w,
                      &L.norm2_b, &L.up_w, &L.up_b, &L.down_w, &L.down_b})
        round(*t);
  }
}

// Sets every adapter's B to uniform random values in [-range, range] (peft initialises B to zero,
// which would make lora_A's gradient trivially zero and the adapters a no-op).
template <class G>
void randomize_lora_b(crossbatch::lora_adapters<G>& ad, unsigned seed, float range) {
  ad.for_each([&](int, crossbatch::lora_slot, crossbatch::lora_module<G>& m) {
    auto b = random_tensor<G>(m.b.shape(), seed++, -range, range);
    std::copy(b.data(), b.data() + b.size(), m.b.data());
  });
}

}  // namespace cbtest
