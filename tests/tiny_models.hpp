// Tiny random model configurations for tests that need a model of each decoder family but not
// trained weights (the golden tests cover agreement with transformers).
#pragma once

#include <filesystem>

#include "crossbatch/model/decoder.hpp"
#include "crossbatch/model/random_weights.hpp"
#include "support.hpp"

namespace cbtest {

inline crossbatch::json tiny_config(const std::string& family) {
  using crossbatch::json;
  if (family == "gpt2")
    return {{"model_type", "gpt2"},
            {"vocab_size", 97},
            {"n_embd", 32},
            {"n_layer", 2},
            {"n_head", 4},
            {"n_positions", 64},
            {"layer_norm_epsilon", 1e-5},
            {"activation_function", "gelu_new"},
            {"eos_token_id", 96}};
  json c = {{"model_type", family},
            {"vocab_size", 101},
            {"hidden_size", 32},
            {"num_hidden_layers", 2},
            {"num_attention_heads", 4},
            {"num_key_value_heads", 2},
            {"intermediate_size", 48},
            {"max_position_embeddings", 64},
            {"rms_norm_eps", 1e-6},
            {"rope_theta", 10000.0},
            {"tie_word_embeddings", family == "llama"},
            {"eos_token_id", 100}};
  return c;
}

// Writes a random model of the family into a fresh scratch directory and returns its path.
inline std::string tiny_model_dir(const std::string& family, std::uint64_t seed = 1) {
  const auto dir = scratch_dir("model_" + family).string();
  crossbatch::write_random_model(dir, tiny_config(family), seed, 2.0f);
  return dir;
}

// An after/before pair of one family (the LDA tests): same config, different random weights, in
// scratch directories removed with the pair.
struct model_pair {
  std::string after_dir, before_dir;
  crossbatch::decoder_model<float> after, before;
  model_pair(const std::string& family, std::uint64_t after_seed, std::uint64_t before_seed)
      : after_dir(tiny_model_dir(family, after_seed)),
        before_dir(tiny_model_dir(family, before_seed)),
        after(crossbatch::decoder_model<float>::load(after_dir)),
        before(crossbatch::decoder_model<float>::load(before_dir)) {}
  model_pair(const model_pair&) = delete;
  model_pair& operator=(const model_pair&) = delete;
  ~model_pair() {
    std::filesystem::remove_all(after_dir);
    std::filesystem::remove_all(before_dir);
  }
};

}  // namespace cbtest
