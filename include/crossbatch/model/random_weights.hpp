// Writes a model directory with random weights for a config (benchmarks and tests need models
// of real shapes without real checkpoints): config.json plus one npy per Hugging Face tensor name.
// Norm weights are 1 (+ small noise), biases small, matrices uniform in +-scale/sqrt(fan_in)-ish.
#pragma once

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "crossbatch/core/npy.hpp"
#include "crossbatch/model/config.hpp"

namespace crossbatch {

// The tensors a checkpoint of this config holds, by Hugging Face name, with their shapes
// (GPT-2 Conv1D weights in their stored (in, out) layout).
inline std::vector<std::pair<std::string, shape_t>> checkpoint_tensors(const model_config& c) {
  std::vector<std::pair<std::string, shape_t>> t;
  const index_t C = c.hidden_size, F = c.intermediate_size, V = c.vocab_size, dh = c.head_dim;
  const index_t qd = c.num_heads * dh, kd = c.num_kv_heads * dh;
  if (c.kind == family::gpt2) {
    t.push_back({"transformer.wte.weight", {V, C}});
    t.push_back({"transformer.wpe.weight", {c.max_positions, C}});
    for (int i = 0; i < c.num_layers; ++i) {
      const std::string l = "transformer.h." + std::to_string(i) + ".";
      for (const char* ln : {"ln_1", "ln_2"})
        t.push_back({l + ln + ".weight", {C}}), t.push_back({l + ln + ".bias", {C}});
      t.push_back({l + "attn.c_attn.weight", {C, 3 * C}});
      t.push_back({l + "attn.c_attn.bias", {3 * C}});
      t.push_back({l + "attn.c_proj.weight", {C, C}});
      t.push_back({l + "attn.c_proj.bias", {C}});
      t.push_back({l + "mlp.c_fc.weight", {C, F}});
      t.push_back({l + "mlp.c_fc.bias", {F}});
      t.push_back({l + "mlp.c_proj.weight", {F, C}});
      t.push_back({l + "mlp.c_proj.bias", {C}});
    }
    t.push_back({"transformer.ln_f.weight", {C}});
    t.push_back({"transformer.ln_f.bias", {C}});
  } else if (c.kind == family::llama || c.kind == family::qwen2) {
    t.push_back({"model.embed_tokens.weight", {V, C}});
    for (int i = 0; i < c.num_layers; ++i) {
      const std::string l = "model.layers." + std::to_string(i) + ".";
      t.push_back({l + "input_layernorm.weight", {C}});
      t.push_back({l + "self_attn.q_proj.weight", {qd, C}});
      t.push_back({l + "self_attn.k_proj.weight", {kd, C}});
      t.push_back({l + "self_attn.v_proj.weight", {kd, C}});
      if (c.qkv_bias) {
        t.push_back({l + "self_attn.q_proj.bias", {qd}});
        t.push_back({l + "self_attn.k_proj.bias", {kd}});
        t.push_back({l + "self_attn.v_proj.bias", {kd}});
      }
      t.push_back({l + "self_attn.o_proj.weight", {C, qd}});
      if (c.o_bias) t.push_back({l + "self_attn.o_proj.bias", {C}});
      t.push_back({l + "post_attention_layernorm.weight", {C}});
      t.push_back({l + "mlp.gate_proj.weight", {F, C}});
      t.push_back({l + "mlp.up_proj.weight", {F, C}});
      t.push_back({l + "mlp.down_proj.weight", {C, F}});
      if (c.mlp_bias) {
        t.push_back({l + "mlp.gate_proj.bias", {F}});
        t.push_back({l + "mlp.up_proj.bias", {F}});
        t.push_back({l + "mlp.down_proj.bias", {C}});
      }
    }
    t.push_back({"model.norm.weight", {C}});
  } else {
    throw config_error("checkpoint_tensors: only decoder families are supported");
  }
  if (!c.tie_word_embeddings) t.push_back({"lm_head.weight", {V, C}});
  return t;
}

// Writes `dir/config.json` (the given JSON) and random float32 weights for it.
inline void write_random_model(const std::string& dir, const json& config_json, std::uint64_t seed,
                               float scale = 1.0f) {
  const model_config c = parse_config(config_json, dir + "/config.json");
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << config_json.dump(2);
  std::mt19937_64 gen(seed);
  for (const auto& [name, shape] : checkpoint_tensors(c)) {
    tensor<float> t(shape);
    const bool is_norm =
        name.find("ln") != std::string::npos || name.find("norm") != std::string::npos;
    const bool is_bias = name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    const bool embed = name.find("wte") != std::string::npos ||
                       name.find("wpe") != std::string::npos ||
                       name.find("embed_tokens") != std::string::npos;
    // GPT-2 Conv1D is (in, out); every other matrix is (out, in).
    const index_t fan_in =
        shape.size() == 2 ? (c.kind == family::gpt2 && !embed ? shape[0] : shape[1]) : 1;
    const float bound = is_norm && !is_bias ? 0.1f
                        : is_bias           ? 0.02f
                        : embed             ? 0.5f * scale
                                            : scale * std::sqrt(3.0f / fan_in);
    std::uniform_real_distribution<float> u(-bound, bound);
    for (index_t i = 0; i < t.size(); ++i)
      t.data()[i] = (is_norm && !is_bias ? 1.0f : 0.0f) + u(gen);
    save_npy(dir + "/" + name + ".npy", t);
  }
}

}  // namespace crossbatch
