// A model's config.json, parsed into one struct for all supported families (gpt2, llama, qwen2,
// bert). Reads both rope layouts: transformers 4 (`rope_theta` + `rope_scaling`) and
// transformers 5 (`rope_parameters`), and honours an explicit `head_dim`.
#pragma once

#include <string>
#include <vector>

#include "crossbatch/model/json_field.hpp"
#include "crossbatch/ops/activation_kind.hpp"
#include "crossbatch/ops/rope_frequencies.hpp"

namespace crossbatch {

enum class family { gpt2, llama, qwen2, bert };

struct model_config {
  family kind = family::llama;
  std::string model_type;
  int vocab_size = 0;
  int hidden_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int intermediate_size = 0;
  int max_positions = 0;
  float norm_eps = 1e-5f;
  activation act = activation::silu;
  rope_parameters rope;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;    // qwen2 always; llama when attention_bias
  bool o_bias = false;      // llama attention_bias
  bool mlp_bias = false;    // llama mlp_bias
  int type_vocab_size = 0;  // bert
  int bos_token_id = -1;
  std::vector<int> eos_token_ids;
  int pad_token_id = -1;

  bool is_decoder() const { return kind != family::bert; }
  bool uses_rope() const { return kind == family::llama || kind == family::qwen2; }
};

namespace detail {
inline void read_rope(const json& j, model_config& c, const std::string& where) {
  // transformers 5: rope_parameters {rope_theta, rope_type, factor, ...}
  // transformers 4: rope_theta at top level, rope_scaling {rope_type|type, factor, ...} or null.
  const json* scaling = nullptr;
  if (auto it = j.find("rope_parameters"); it != j.end() && it->is_object()) {
    scaling = &*it;
    c.rope.theta =
        optional_field<float>(*it, "rope_theta", where + ": rope_parameters").value_or(10000.0f);
  } else {
    c.rope.theta = optional_field<float>(j, "rope_theta", where).value_or(10000.0f);
    if (auto it = j.find("rope_scaling"); it != j.end() && !it->is_null()) {
      if (!it->is_object())
        throw config_error(where + ": field 'rope_scaling' must be an object or null");
      scaling = &*it;
    }
  }
  if (!scaling) return;
  const std::string sw = where + ": rope parameters";
  auto type = optional_field<std::string>(*scaling, {"rope_type", "type"}, sw).value_or("default");
  c.rope.type = type;
  if (type == "default") return;
  if (type != "llama3")
    throw config_error(where + ": rope type '" + type + "' is not supported (default, llama3)");
  c.rope.factor = required_field<float>(*scaling, "factor", sw);
  c.rope.low_freq_factor = required_field<float>(*scaling, "low_freq_factor", sw);
  c.rope.high_freq_factor = required_field<float>(*scaling, "high_freq_factor", sw);
  c.rope.original_max_position_embeddings =
      required_field<float>(*scaling, "original_max_position_embeddings", sw);
}

inline std::vector<int> read_ids(const json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return {};
  if (it->is_number_integer()) return {it->get<int>()};
  if (it->is_array()) {
    std::vector<int> ids;
    for (const auto& v : *it) {
      if (!v.is_number_integer())
        throw config_error(where + ": field '" + key + "' must hold integers");
      ids.push_back(v.get<int>());
    }
    return ids;
  }
  throw config_error(where + ": field '" + std::string(key) +
                     "' must be an integer or a list of integers");
}

inline void require_positive(int v, const char* field, const std::string& where) {
  if (v <= 0)
    throw config_error(where + ": field '" + std::string(field) + "' must be positive, got " +
                       std::to_string(v));
}
}  // namespace detail

// Parses a config.json object; `where` (usually the file path) prefixes every error.
inline model_config parse_config(const json& j, const std::string& where) {
  if (!j.is_object()) throw config_error(where + ": config must be a JSON object");
  model_config c;
  c.model_type = required_field<std::string>(j, "model_type", where);
  if (c.model_type == "gpt2") {
    c.kind = family::gpt2;
    c.hidden_size = required_field<int>(j, "n_embd", where);
    c.num_layers = required_field<int>(j, "n_layer", where);
    c.num_heads = required_field<int>(j, "n_head", where);
    c.max_positions = required_field<int>(j, "n_positions", where);
    c.intermediate_size = optional_field<int>(j, "n_inner", where).value_or(4 * c.hidden_size);
    c.norm_eps = optional_field<float>(j, "layer_norm_epsilon", where).value_or(1e-5f);
    c.act = activation_from_name(
        optional_field<std::string>(j, "activation_function", where).value_or("gelu_new"));
    c.tie_word_embeddings = optional_field<bool>(j, "tie_word_embeddings", where).value_or(true);
    c.qkv_bias = c.o_bias = c.mlp_bias = true;
  } else if (c.model_type == "llama" || c.model_type == "qwen2") {
    c.kind = c.model_type == "llama" ? family::llama : family::qwen2;
    c.hidden_size = required_field<int>(j, "hidden_size", where);
    c.num_layers = required_field<int>(j, "num_hidden_layers", where);
    c.num_heads = required_field<int>(j, "num_attention_heads", where);
    c.intermediate_size = required_field<int>(j, "intermediate_size", where);
    c.max_positions = optional_field<int>(j, "max_position_embeddings", where).value_or(2048);
    c.norm_eps = optional_field<float>(j, "rms_norm_eps", where).value_or(1e-6f);
    c.act =
        activation_from_name(optional_field<std::string>(j, "hidden_act", where).value_or("silu"));
    c.tie_word_embeddings = optional_field<bool>(j, "tie_word_embeddings", where).value_or(false);
    if (c.kind == family::qwen2) {
      c.qkv_bias = true;
    } else {
      c.qkv_bias = c.o_bias = optional_field<bool>(j, "attention_bias", where).value_or(false);
      c.mlp_bias = optional_field<bool>(j, "mlp_bias", where).value_or(false);
    }
    detail::read_rope(j, c, where);
  } else if (c.model_type == "bert") {
    c.kind = family::bert;
    c.hidden_size = required_field<int>(j, "hidden_size", where);
    c.num_layers = required_field<int>(j, "num_hidden_layers", where);
    c.num_heads = required_field<int>(j, "num_attention_heads", where);
    c.intermediate_size = required_field<int>(j, "intermediate_size", where);
    c.max_positions = required_field<int>(j, "max_position_embeddings", where);
    c.type_vocab_size = optional_field<int>(j, "type_vocab_size", where).value_or(2);
    c.norm_eps = optional_field<float>(j, "layer_norm_eps", where).value_or(1e-12f);
    c.act =
        activation_from_name(optional_field<std::string>(j, "hidden_act", where).value_or("gelu"));
    c.qkv_bias = c.o_bias = c.mlp_bias = true;
    const auto pe =
        optional_field<std::string>(j, "position_embedding_type", where).value_or("absolute");
    if (pe != "absolute")
      throw config_error(where + ": position_embedding_type '" + pe +
                         "' is not supported (absolute)");
  } else {
    throw config_error(where + ": unknown model_type '" + c.model_type +
                       "' (supported: gpt2, llama, qwen2, bert)");
  }
  c.vocab_size = required_field<int>(j, "vocab_size", where);
  c.num_kv_heads = optional_field<int>(j, "num_key_value_heads", where).value_or(c.num_heads);
  detail::require_positive(c.vocab_size, "vocab_size", where);
  detail::require_positive(c.hidden_size, "hidden_size", where);
  detail::require_positive(c.num_layers, "num_hidden_layers", where);
  detail::require_positive(c.num_heads, "num_attention_heads", where);
  detail::require_positive(c.num_kv_heads, "num_key_value_heads", where);
  detail::require_positive(c.intermediate_size, "intermediate_size", where);
  detail::require_positive(c.max_positions, "max_position_embeddings", where);
  if (c.num_heads % c.num_kv_heads != 0)
    throw config_error(where + ": num_attention_heads (" + std::to_string(c.num_heads) +
                       ") must be a multiple of num_key_value_heads (" +
                       std::to_string(c.num_kv_heads) + ")");
  c.head_dim = optional_field<int>(j, "head_dim", where).value_or(0);
  if (c.head_dim == 0) {
    if (c.hidden_size % c.num_heads != 0)
      throw config_error(
          where +
          ": hidden_size is not a multiple of num_attention_heads and no head_dim is given");
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (c.uses_rope() && c.head_dim % 2)
    throw config_error(where + ": head_dim must be even for rotary embeddings");
  c.bos_token_id = optional_field<int>(j, "bos_token_id", where).value_or(-1);
  c.eos_token_ids = detail::read_ids(j, "eos_token_id", where);
  c.pad_token_id = optional_field<int>(j, "pad_token_id", where).value_or(-1);
  return c;
}

inline model_config load_config(const std::string& path) {
  return parse_config(read_json_file(path), path);
}

}  // namespace crossbatch
