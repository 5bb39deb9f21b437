// A decoder_model<T, cuda> of a given shape with random weights generated on the device (no files):
// matrices uniform in +-sqrt(3 / fan_in), norms 1 + small noise, biases small. For benchmarks only;
// the values do not matter for speed, only that they are not zeros.
#pragma once

#include <cmath>
#include <string>

#include "crossbatch/core/rng.hpp"
#include "crossbatch/cuda.hpp"
#include "crossbatch/model/decoder.hpp"

namespace crossbatch::bench {

template <class T>
__global__ void fill_uniform(T* p, index_t n, float center, float bound, std::uint64_t seed) {
  const counter_rng rng{seed};
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
       i += index_t(gridDim.x) * blockDim.x)
    p[i] =
        cuda_detail::from_f<T>(center + bound * (2.0f * rng.uniform(0, std::uint64_t(i)) - 1.0f));
}

template <class T>
tensor<T, cuda> random_tensor(shape_t shape, float center, float bound, std::uint64_t& seed) {
  tensor<T, cuda> t(std::move(shape));
  fill_uniform<<<1024, 256>>>(dev(t.data()), t.size(), center, bound, ++seed);
  cuda_check(cudaGetLastError(), "fill_uniform");
  return t;
}

// config_json: a Hugging Face config.json object (gpt2, llama or qwen2).
template <class T>
decoder_model<T, cuda> random_decoder(const json& config_json, std::uint64_t seed = 1) {
  decoder_model<T, cuda> m;
  m.config = parse_config(config_json, "random_decoder");
  const auto& c = m.config;
  const index_t C = c.hidden_size, F = c.intermediate_size, dh = c.head_dim;
  const index_t qkv = index_t(c.num_heads + 2 * c.num_kv_heads) * dh,
                qd = index_t(c.num_heads) * dh;
  const bool gpt2 = c.kind == family::gpt2;
  auto mat = [&](index_t rows, index_t cols) {
    return random_tensor<T>({rows, cols}, 0.0f, std::sqrt(3.0f / cols), seed);
  };
  auto norm = [&]() { return random_tensor<T>({C}, 1.0f, 0.05f, seed); };
  auto bias = [&](index_t n) { return random_tensor<T>({n}, 0.0f, 0.02f, seed); };
  m.embed = random_tensor<T>({c.vocab_size, C}, 0.0f, 0.5f, seed);
  if (gpt2) m.pos_embed = random_tensor<T>({c.max_positions, C}, 0.0f, 0.1f, seed);
  for (int l = 0; l < c.num_layers; ++l) {
    decoder_layer<T, cuda> L;
    L.norm1_w = norm();
    L.norm2_w = norm();
    if (gpt2) L.norm1_b = bias(C), L.norm2_b = bias(C);
    L.qkv_w = mat(qkv, C);
    if (c.qkv_bias) L.qkv_b = bias(qkv);
    L.o_w = mat(C, qd);
    if (c.o_bias) L.o_b = bias(C);
    L.up_w = mat(gpt2 ? F : 2 * F, C);
    if (c.mlp_bias) L.up_b = bias(gpt2 ? F : 2 * F);
    L.down_w = mat(C, F);
    if (c.mlp_bias) L.down_b = bias(C);
    m.layers.push_back(std::move(L));
  }
  m.final_w = norm();
  if (gpt2) m.final_b = bias(C);
  if (!c.tie_word_embeddings)
    m.lm_head = random_tensor<T>({c.vocab_size, C}, 0.0f, std::sqrt(3.0f / C), seed);
  if (c.uses_rope()) {
    const auto f = rope_inv_freq(c.rope, c.head_dim);
    tensor<float> host({index_t(f.size())});
    std::copy(f.begin(), f.end(), host.data());
    m.inv_freq = to_device<cuda>(host);
  }
  cuda_check(cudaDeviceSynchronize(), "random_decoder");
  return m;
}

// Bytes of weights one decode step reads (every matrix once, the LM head included; one row of the
// embedding tables).
inline double weight_bytes_per_step(const model_config& c, std::size_t elem) {
  const double C = c.hidden_size, F = c.intermediate_size, dh = c.head_dim;
  const double qkv = (c.num_heads + 2.0 * c.num_kv_heads) * dh, qd = c.num_heads * dh;
  const double up = c.kind == family::gpt2 ? F : 2 * F;
  const double per_layer = qkv * C + C * qd + up * C + C * F + 4 * C + qkv + up;
  return elem * (c.num_layers * per_layer + double(c.vocab_size) * C + 2 * C);
}

// Bytes of KV cache one decode step reads at kv length `len` for one sequence.
inline double kv_bytes_per_step(const model_config& c, std::size_t elem, double len) {
  return elem * 2.0 * c.num_layers * c.num_kv_heads * c.head_dim * len;
}

inline json shape_config(const std::string& name) {
  if (name == "gpt2-124m")
    return {{"model_type", "gpt2"},
            {"vocab_size", 50257},
            {"n_embd", 768},
            {"n_layer", 12},
            {"n_head", 12},
            {"n_positions", 1024},
            {"activation_function", "gelu_new"},
            {"tie_word_embeddings", true}};
  if (name == "smollm2-135m")
    return {{"model_type", "llama"},      {"vocab_size", 49152},
            {"hidden_size", 576},         {"num_hidden_layers", 30},
            {"num_attention_heads", 9},   {"num_key_value_heads", 3},
            {"intermediate_size", 1536},  {"max_position_embeddings", 8192},
            {"rms_norm_eps", 1e-5},       {"rope_theta", 100000.0},
            {"tie_word_embeddings", true}};
  if (name == "qwen2.5-0.5b")
    return {{"model_type", "qwen2"},      {"vocab_size", 151936},
            {"hidden_size", 896},         {"num_hidden_layers", 24},
            {"num_attention_heads", 14},  {"num_key_value_heads", 2},
            {"intermediate_size", 4864},  {"max_position_embeddings", 32768},
            {"rms_norm_eps", 1e-6},       {"rope_theta", 1000000.0},
            {"tie_word_embeddings", true}};
  throw value_error("unknown shape '" + name + "' (gpt2-124m, smollm2-135m, qwen2.5-0.5b)");
}

}  // namespace crossbatch::bench
