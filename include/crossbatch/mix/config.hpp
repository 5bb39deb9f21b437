// What a cross-batch mixer is: its kind (multi-head cross-batch attention or the cosine-similarity
// embedding mixer), how its cross term is combined with the sample's own state (alpha, scale or
// gate), and its sizes. Serialised as mixer.json in a checkpoint directory.
#pragma once

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>

#include "crossbatch/core/error.hpp"

namespace crossbatch {

// Cross-batch attention: per head, softmax over the other samples of q_i . k_j / (sqrt(D) tau),
// then W_o of the weighted values. Embedding mixer: softmax over the other samples of
// cos(W_s h_i, W_s h_j) / tau, then the weighted W_v h_j (no output projection).
enum class mixer_kind { attention, embedding };

// How the cross term I_i of sample i enters its output (H_i is its own state):
//   alpha: H_i + alpha (I_i - H_i)  = (1 - alpha) H_i + alpha I_i, the first reference version
//   scale: H_i + scale I_i
//   gate:  H_i + g_i * I_i, g_i = sigmoid(W2 gelu(W1 [LN(H_i); LN(I_i); LN(H_i) * LN(I_i)] + b1) +
//   b2)
// A sample with no eligible partner gets H_i exactly in every mode.
enum class combine_mode { alpha, scale, gate };

inline const char* to_string(mixer_kind k) {
  return k == mixer_kind::attention ? "attention" : "embedding";
}
inline const char* to_string(combine_mode m) {
  return m == combine_mode::alpha ? "alpha" : m == combine_mode::scale ? "scale" : "gate";
}
// "attention"; "embedding" or "mixer" (the reference's --mix_method name).
inline mixer_kind mixer_kind_from_name(const std::string& s) {
  if (s == "attention") return mixer_kind::attention;
  if (s == "embedding" || s == "mixer") return mixer_kind::embedding;
  throw value_error("unknown mixer kind '" + s + "' (attention, mixer)");
}
inline combine_mode combine_mode_from_name(const std::string& s) {
  if (s == "alpha") return combine_mode::alpha;
  if (s == "scale") return combine_mode::scale;
  if (s == "gate") return combine_mode::gate;
  throw value_error("unknown combine mode '" + s + "' (alpha, scale, gate)");
}

struct mixer_config {
  mixer_kind kind = mixer_kind::attention;
  combine_mode combine = combine_mode::scale;
  int hidden_size = 0;  // C
  int num_heads = 8;    // attention only; C must be a multiple
  int gate_hidden = 0;  // width of the gate MLP; 0 means C / 4
  float temperature = 1.0f;
  float ln_eps = 1e-5f;  // the gate's LayerNorms

  int heads() const { return kind == mixer_kind::attention ? num_heads : 1; }
  int head_dim() const { return hidden_size / heads(); }
  int gate_width() const {
    return gate_hidden > 0 ? gate_hidden : (hidden_size / 4 > 0 ? hidden_size / 4 : 1);
  }
  // Rows of the fused input projection: [W_q; W_k; W_v] or [W_s; W_v].
  int proj_rows() const { return (kind == mixer_kind::attention ? 3 : 2) * hidden_size; }
  // Multiplies the raw scores: 1 / (sqrt(D) tau) for attention, 1 / tau for cosine similarities.
  float score_scale() const {
    return kind == mixer_kind::attention ? 1.0f / (std::sqrt(float(head_dim())) * temperature)
                                         : 1.0f / temperature;
  }

  // Same tensor shapes (workspaces can be reused).
  bool same_shapes(const mixer_config& o) const {
    return kind == o.kind && combine == o.combine && hidden_size == o.hidden_size &&
           heads() == o.heads() && gate_width() == o.gate_width();
  }

  void validate(const std::string& where = "mixer_config") const {
    require(hidden_size > 0, where + ": hidden_size must be positive");
    require(temperature > 0, where + ": temperature must be positive");
    if (kind == mixer_kind::attention)
      require(num_heads > 0 && hidden_size % num_heads == 0,
              where + ": hidden_size " + std::to_string(hidden_size) +
                  " is not a multiple of num_heads " + std::to_string(num_heads));
  }

  nlohmann::json to_json() const {
    return {
        {"kind", to_string(kind)}, {"combine", to_string(combine)}, {"hidden_size", hidden_size},
        {"num_heads", num_heads},  {"gate_hidden", gate_width()},   {"temperature", temperature},
        {"ln_eps", ln_eps}};
  }
  static mixer_config from_json(const nlohmann::json& j, const std::string& where) {
    mixer_config c;
    try {
      c.kind = mixer_kind_from_name(j.at("kind").get<std::string>());
      c.combine = combine_mode_from_name(j.at("combine").get<std::string>());
      c.hidden_size = j.at("hidden_size").get<int>();
      c.num_heads = j.value("num_heads", 8);
      c.gate_hidden = j.value("gate_hidden", 0);
      c.temperature = j.value("temperature", 1.0f);
      c.ln_eps = j.value("ln_eps", 1e-5f);
    } catch (const nlohmann::json::exception& e) {
      throw config_error(where + ": bad mixer config: " + e.what());
    } catch (const value_error& e) {
      throw config_error(where + ": " + e.what());
    }
    c.validate(where);
    return c;
  }
};

// Accumulation type of the mixer arithmetic: double for double tensors (gradient checks), else
// float.
template <class T>
using mix_accum_t =
    std::conditional_t<std::is_same_v<std::remove_const_t<T>, double>, double, float>;

}  // namespace crossbatch
