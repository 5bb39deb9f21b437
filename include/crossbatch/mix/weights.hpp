// The parameters of a cross-batch mixer, by name, for any element type and device: initialised on
// the host (seeded), converted to another type or device, listed for the optimiser and checkpoints.
// The same struct holds gradients (same names and shapes).
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "crossbatch/core/tensor.hpp"
#include "crossbatch/core/transfer.hpp"
#include "crossbatch/mix/config.hpp"

namespace crossbatch {

// How a fresh mixer starts. The defaults make the untrained mixer a small perturbation of the
// identity (as the first reference version, whose untrained mixer changed the answers) rather than
// the exact identity; out_std = 0 and gate_bias = -inf-like values give the later reference's
// "output equals input at the start" initialisation.
struct mixer_init {
  float proj_std = 0.02f;   // W_q, W_k, W_v (W_s, W_v): normal(0, proj_std)
  float out_std = 0.02f;    // W_o: normal(0, out_std); 0 gives zeros
  float mix = 0.05f;        // initial alpha or scale (sigmoid(-3) = 0.047 in the reference)
  float gate_bias = -3.0f;  // gate fc2 bias; fc2 weight starts at zero, so g = sigmoid(-3) at first
  float gate_std = 0.02f;   // gate fc1 weight
};

template <class T, class D = cpu>
struct mixer_weights {
  mixer_config config;
  tensor<T, D> proj;                            // (3C, C) [W_q; W_k; W_v], or (2C, C) [W_s; W_v]
  tensor<T, D> out;                             // (C, C) W_o, attention only
  tensor<T, D> mix;                             // (1,) alpha or scale
  tensor<T, D> ln_h_w, ln_h_b, ln_a_w, ln_a_b;  // (C) gate LayerNorms of H and of the cross term
  tensor<T, D> gate_w1, gate_b1, gate_w2, gate_b2;  // (G, 3C), (G), (C, G), (C)

  // Names and shapes of the parameters a config has, in a fixed order.
  static std::vector<std::pair<std::string, shape_t>> shapes(const mixer_config& c) {
    const index_t C = c.hidden_size, G = c.gate_width();
    std::vector<std::pair<std::string, shape_t>> s = {{"proj.weight", {c.proj_rows(), C}}};
    if (c.kind == mixer_kind::attention) s.push_back({"out_proj.weight", {C, C}});
    if (c.combine == combine_mode::gate) {
      for (const char* n :
           {"gate.ln_h.weight", "gate.ln_h.bias", "gate.ln_a.weight", "gate.ln_a.bias"})
        s.push_back({n, {C}});
      s.push_back({"gate.fc1.weight", {G, 3 * C}});
      s.push_back({"gate.fc1.bias", {G}});
      s.push_back({"gate.fc2.weight", {C, G}});
      s.push_back({"gate.fc2.bias", {C}});
    } else {
      s.push_back({combine_mode_name_of_mix(c.combine), {1}});
    }
    return s;
  }

  // The tensor behind a parameter name (nullptr for a name this config does not have).
  tensor<T, D>* slot(const std::string& name) {
    if (name == "proj.weight") return &proj;
    if (name == "out_proj.weight") return config.kind == mixer_kind::attention ? &out : nullptr;
    if (name == "alpha" || name == "scale")
      return config.combine != combine_mode::gate ? &mix : nullptr;
    if (config.combine != combine_mode::gate) return nullptr;
    if (name == "gate.ln_h.weight") return &ln_h_w;
    if (name == "gate.ln_h.bias") return &ln_h_b;
    if (name == "gate.ln_a.weight") return &ln_a_w;
    if (name == "gate.ln_a.bias") return &ln_a_b;
    if (name == "gate.fc1.weight") return &gate_w1;
    if (name == "gate.fc1.bias") return &gate_b1;
    if (name == "gate.fc2.weight") return &gate_w2;
    if (name == "gate.fc2.bias") return &gate_b2;
    return nullptr;
  }
  const tensor<T, D>* slot(const std::string& name) const {
    return const_cast<mixer_weights*>(this)->slot(name);
  }

  // (name, tensor) for every parameter of the config, in shapes() order.
  std::vector<std::pair<std::string, tensor<T, D>*>> parameters() {
    std::vector<std::pair<std::string, tensor<T, D>*>> p;
    for (const auto& [name, shape] : shapes(config)) p.push_back({name, slot(name)});
    return p;
  }
  std::vector<std::pair<std::string, const tensor<T, D>*>> parameters() const {
    std::vector<std::pair<std::string, const tensor<T, D>*>> p;
    for (const auto& [name, shape] : shapes(config)) p.push_back({name, slot(name)});
    return p;
  }

  index_t parameter_count() const {
    index_t n = 0;
    for (const auto& [name, shape] : shapes(config)) n += numel(shape);
    return n;
  }

  // The value of alpha or scale (host read; 0 in gate mode).
  float mix_value() const {
    if (config.combine == combine_mode::gate || mix.empty()) return 0.0f;
    T v;
    device_traits<D>::download(&v, mix.data(), sizeof(T));
    return static_cast<float>(v);
  }

  // Every parameter allocated with its shape and uninitialised (D memory).
  static mixer_weights allocate(const mixer_config& c) {
    c.validate();
    mixer_weights w;
    w.config = c;
    for (const auto& [name, shape] : shapes(c)) *w.slot(name) = tensor<T, D>(shape);
    return w;
  }

  // The same parameters as element type U on device E (through host float, or double for double).
  template <class U, class E = D>
  mixer_weights<U, E> cast() const {
    mixer_weights<U, E> w;
    w.config = config;
    for (const auto& [name, t] : parameters()) {
      const tensor<T> host = to_host(*t);
      tensor<U> conv(host.shape());
      for (index_t i = 0; i < host.size(); ++i)
        conv.data()[i] = static_cast<U>(
            static_cast<mix_accum_t<U>>(static_cast<mix_accum_t<T>>(host.data()[i])));
      *w.slot(name) = to_device<E>(conv);
    }
    return w;
  }

 private:
  static const char* combine_mode_name_of_mix(combine_mode m) {
    return m == combine_mode::alpha ? "alpha" : "scale";
  }
};

// Zero-filled parameters (gradient accumulators).
template <class T, class D = cpu>
mixer_weights<T, D> zeros_like_config(const mixer_config& c) {
  mixer_weights<T> h = mixer_weights<T>::allocate(c);
  for (auto& [name, t] : h.parameters()) std::fill(t->data(), t->data() + t->size(), T(0));
  if constexpr (std::is_same_v<D, cpu>)
    return h;
  else
    return h.template cast<T, D>();
}

// A fresh mixer on the host, seeded (std::mt19937_64, so the same seed gives the same weights).
template <class T = float>
mixer_weights<T> init_mixer(const mixer_config& c, std::uint64_t seed,
                            const mixer_init& init = {}) {
  auto w = mixer_weights<T>::allocate(c);
  std::mt19937_64 gen(seed);
  auto fill_normal = [&](tensor<T>& t, float std) {
    std::normal_distribution<double> n(0.0, std);
    for (index_t i = 0; i < t.size(); ++i) t.data()[i] = static_cast<T>(std > 0 ? n(gen) : 0.0);
  };
  auto fill = [](tensor<T>& t, double v) {
    std::fill(t.data(), t.data() + t.size(), static_cast<T>(v));
  };
  fill_normal(w.proj, init.proj_std);
  if (c.kind == mixer_kind::attention) fill_normal(w.out, init.out_std);
  if (c.combine == combine_mode::gate) {
    fill(w.ln_h_w, 1.0);
    fill(w.ln_h_b, 0.0);
    fill(w.ln_a_w, 1.0);
    fill(w.ln_a_b, 0.0);
    fill_normal(w.gate_w1, init.gate_std);
    fill(w.gate_b1, 0.0);
    fill(w.gate_w2, 0.0);
    fill(w.gate_b2, init.gate_bias);
  } else {
    fill(w.mix, init.mix);
  }
  return w;
}

}  // namespace crossbatch
