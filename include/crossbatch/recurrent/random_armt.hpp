// Writes random ARMT parameters and an armt_config.json for a model config into a directory, under
// the reference's state-dict names (benchmarks, examples and tests need ARMT models without
// trained checkpoints). W_mq, W_mk, W_mb ~ U(+-sqrt(3 / C)); W_mv ~ v_scale U(+-sqrt(3 / C))
// (the reference initialises W_mv to 0, which makes the memory inert: keep v_scale > 0 to
// exercise it; untrained memories grow from segment to segment, so long inputs want it small);
// memory embeddings ~ U(+-0.5); W_mb's bias ~ gate_bias + U(+-0.5). The write is a delta rule
// whose step beta |k|^2 / (k . z) can exceed 2 with random keys, and then A grows geometrically;
// a negative gate bias (small beta) keeps random memories bounded over many segments.
#pragma once

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "crossbatch/core/npy.hpp"
#include "crossbatch/model/config.hpp"
#include "crossbatch/recurrent/armt_weights.hpp"

namespace crossbatch {

inline void write_random_armt(const std::string& dir, const model_config& c, int segment_size,
                              int num_mem_tokens, int d_mem, std::uint64_t seed,
                              float v_scale = 0.1f, float gate_bias = -3.0f) {
  std::filesystem::create_directories(dir);
  const std::string layers = c.kind == family::gpt2 ? "transformer.h" : "model.layers";
  const json j = {{"segment_size", segment_size}, {"num_mem_tokens", num_mem_tokens},
                  {"d_mem", d_mem},               {"nu", 3},
                  {"correction", true},           {"wrap_pos", false},
                  {"layers_attr", layers}};
  std::ofstream(dir + "/armt_config.json") << j.dump(2);
  std::mt19937_64 gen(seed);
  const index_t C = c.hidden_size;
  auto save = [&](const std::string& name, shape_t shape, float bound, float offset = 0) {
    tensor<float> t(std::move(shape));
    std::uniform_real_distribution<float> u(-bound, bound);
    for (index_t i = 0; i < t.size(); ++i) t.data()[i] = offset + u(gen);
    save_npy(dir + "/" + name + ".npy", t);
  };
  const float b = std::sqrt(3.0f / float(C));
  save("memory_cell.memory", {num_mem_tokens, C}, 0.5f);
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "memory_cell.model." + layers + "." + std::to_string(l) + ".";
    save(p + "W_mq.weight", {d_mem, C}, b);
    save(p + "W_mk.weight", {d_mem, C}, b);
    save(p + "W_mv.weight", {C, C}, v_scale * b);
    save(p + "W_mb.weight", {1, C}, b);
    save(p + "W_mb.bias", {1}, 0.5f, gate_bias);
  }
}

// The same parameters in memory (benchmarks at real shapes skip the files): the memory
// embeddings (M, C) and every layer's projections, from one seed.
inline std::vector<armt_layer_weights> random_armt_layers(const model_config& c,
                                                          const armt_config& a,
                                                          std::uint64_t seed, float v_scale = 0.1f,
                                                          float gate_bias = -3.0f) {
  std::mt19937_64 gen(seed);
  const index_t C = c.hidden_size;
  const float b = std::sqrt(3.0f / float(C));
  auto fill = [&](shape_t shape, float bound, float offset = 0) {
    tensor<float> t(std::move(shape));
    std::uniform_real_distribution<float> u(-bound, bound);
    for (index_t i = 0; i < t.size(); ++i) t.data()[i] = offset + u(gen);
    return t;
  };
  std::vector<armt_layer_weights> out;
  for (int l = 0; l < c.num_layers; ++l) {
    armt_layer_weights L;
    L.w_q = fill({a.d_mem, C}, b);
    L.w_k = fill({a.d_mem, C}, b);
    L.w_v = fill({C, C}, v_scale * b);
    L.w_b = fill({C}, b);
    L.b_b = fill({1}, 0.5f, gate_bias)(0);
    out.push_back(std::move(L));
  }
  return out;
}

}  // namespace crossbatch
