// Shared pieces of the ARMT suites: the golden cases, random ARMT models of tiny shapes, and
// comparisons relative to a tensor's magnitude.
#pragma once

#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "crossbatch/recurrent/armt_generate.hpp"
#include "crossbatch/recurrent/diagonal.hpp"
#include "crossbatch/recurrent/random_armt.hpp"
#include "crossbatch/recurrent/sequential.hpp"
#include "tiny_models.hpp"

namespace cbtest {

inline std::string armt_case_dir(const std::string& c) { return data_dir() + "/armt/" + c + "/"; }

inline std::vector<int> load_ids(const std::string& path) {
  const auto t = load_npy<std::int64_t>(path);
  return std::vector<int>(t.data(), t.data() + t.size());
}

// |got - want| <= tol * max(1, max |want|) elementwise: a tolerance relative to the tensor's scale
// (the memory state A grows with the segments; its float32 rounding grows with it).
template <class G, class W>
diff_stats compare_scaled(const G& got, const W& want, double tol) {
  double scale = 1;
  for (index_t i = 0; i < index_t(want.size()); ++i)
    scale = std::max(scale, std::fabs(to_double(want.data()[i])));
  return compare(got, want, tol * scale, 0);
}

// W_mv is scaled by v_scale: untrained memories grow from segment to segment (z stops growing
// where gamma clips to 0, A does not), so long sweeps keep it small but non-zero.
inline std::string tiny_armt_dir(const std::string& family, int layers, int S, int M, int d_mem,
                                 unsigned seed = 3, float v_scale = 0.1f) {
  auto cfg = tiny_config(family);
  cfg[family == "gpt2" ? "n_layer" : "num_hidden_layers"] = layers;
  const auto dir = scratch_dir("armt_" + family).string();
  write_random_model(dir, cfg, seed, 1.0f);
  write_random_armt(dir, parse_config(cfg, dir), S, M, d_mem, seed + 100, v_scale);
  return dir;
}

// Random token sequences of the given lengths.
inline std::vector<std::vector<int>> random_sequences(const std::vector<int>& lengths, int vocab,
                                                      unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> id(0, vocab - 1);
  std::vector<std::vector<int>> out;
  for (int n : lengths) {
    out.emplace_back(n);
    for (int& t : out.back()) t = id(gen);
  }
  return out;
}

}  // namespace cbtest
