// Helpers of the mixer and training tests: every mixer variant (kind x combine mode), weights with
// all parameters random (so that no term is switched off by the initialisation), and random
// hidden states.
#pragma once

#include <random>
#include <string>
#include <vector>

#include "crossbatch/mix/mixer.hpp"
#include "support.hpp"

namespace cbtest {

using namespace crossbatch;

struct mixer_variant {
  mixer_kind kind;
  combine_mode combine;
  std::string name() const { return std::string(to_string(kind)) + "/" + to_string(combine); }
};

inline std::vector<mixer_variant> all_variants() {
  std::vector<mixer_variant> v;
  for (auto k : {mixer_kind::attention, mixer_kind::embedding})
    for (auto m : {combine_mode::alpha, combine_mode::scale, combine_mode::gate})
      v.push_back({k, m});
  return v;
}

inline mixer_config variant_config(const mixer_variant& v, int hidden, int heads = 4,
                                   int gate_hidden = 0) {
  mixer_config c;
  c.kind = v.kind;
  c.combine = v.combine;
  c.hidden_size = hidden;
  c.num_heads = heads;
  c.gate_hidden = gate_hidden;
  c.temperature = 0.7f;
  return c;
}

// Every parameter uniform in +-scale (LayerNorm weights around 1, alpha/scale in [0.3, 0.8]).
template <class T = double>
mixer_weights<T> random_mixer(const mixer_config& c, unsigned seed, float scale = 0.5f) {
  auto w = mixer_weights<T>::allocate(c);
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(-scale, scale), pos(0.3, 0.8);
  for (auto& [name, t] : w.parameters()) {
    const bool ln_weight =
        name.find("ln_") != std::string::npos && name.find("weight") != std::string::npos;
    for (index_t i = 0; i < t->size(); ++i)
      t->data()[i] = static_cast<T>(name == "alpha" || name == "scale" ? pos(gen)
                                    : ln_weight                        ? 1.0 + u(gen)
                                                                       : u(gen));
  }
  return w;
}

}  // namespace cbtest
