// Checkpoints of the trainable parts as a directory of .npy files: checkpoint.json (what was
// trained, for which model, where the mixer acts, training history), mixer.<parameter>.npy for each
// mixer parameter and lm_head.weight.npy when the LM head was trained (float32). Loading checks
// every shape against the checkpoint's own config and against the model it is used with, and names
// the file and both shapes when they differ.
#pragma once

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "crossbatch/core/npy.hpp"
#include "crossbatch/generate/cross_batch.hpp"
#include "crossbatch/mix/weights.hpp"
#include "crossbatch/model/config.hpp"

namespace crossbatch {

struct cross_batch_checkpoint {
  std::string method =
      "crossbatch";  // "crossbatch" (mixer, maybe head), "baseline" (head only), "mixer"
  std::optional<mixer_weights<float>> mixer;  // absent for the baseline method
  tensor<float> lm_head;                      // (V, C); empty when the head was not trained
  int mix_layer = -1;                         // as passed (transformers hidden_states index)
  mix_projection projection = mix_projection::project;
  int hidden_size = 0, vocab_size = 0, num_layers = 0;  // of the model it was trained on
  nlohmann::json info = nlohmann::json::object();       // free form: options, per-epoch losses

  bool has_head() const { return !lm_head.empty(); }
};

inline constexpr const char* checkpoint_format = "crossbatch-checkpoint-1";

inline void save_checkpoint(const std::string& dir, const cross_batch_checkpoint& ck) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  nlohmann::json j = {{"format", checkpoint_format},
                      {"method", ck.method},
                      {"mix_layer", ck.mix_layer},
                      {"projection", to_string(ck.projection)},
                      {"lm_head", ck.has_head()},
                      {"model",
                       {{"hidden_size", ck.hidden_size},
                        {"vocab_size", ck.vocab_size},
                        {"num_layers", ck.num_layers}}},
                      {"info", ck.info}};
  j["mixer"] = ck.mixer ? ck.mixer->config.to_json() : nlohmann::json(nullptr);
  if (ck.mixer)
    for (const auto& [name, t] : ck.mixer->parameters())
      save_npy(dir + "/mixer." + name + ".npy", *t);
  if (ck.has_head()) save_npy(dir + "/lm_head.weight.npy", ck.lm_head);
  std::ofstream f(dir + "/checkpoint.json");
  if (!f) throw io_error(dir + "/checkpoint.json: cannot open for writing");
  f << j.dump(2) << "\n";
  if (!f) throw io_error(dir + "/checkpoint.json: write failed");
}

// Loads a checkpoint directory; with `model` given, also checks that it fits that model (hidden
// size, vocabulary, layer count for mix_layer) and throws shape_error naming what differs.
inline cross_batch_checkpoint load_checkpoint(const std::string& dir,
                                              const model_config* model = nullptr) {
  namespace fs = std::filesystem;
  const std::string meta = dir + "/checkpoint.json";
  if (!fs::is_directory(dir)) throw io_error(dir + ": checkpoint directory does not exist");
  std::ifstream f(meta);
  if (!f)
    throw io_error(meta + ": cannot open for reading (not a cross-batch checkpoint directory?)");
  nlohmann::json j;
  try {
    f >> j;
  } catch (const nlohmann::json::exception& e) {
    throw format_error(meta + ": not valid JSON: " + e.what());
  }
  cross_batch_checkpoint ck;
  try {
    if (j.value("format", std::string()) != checkpoint_format)
      throw format_error(meta + ": unknown format '" + j.value("format", std::string()) +
                         "' (expected " + checkpoint_format + ")");
    ck.method = j.at("method").get<std::string>();
    ck.mix_layer = j.at("mix_layer").get<int>();
    ck.projection = mix_projection_from_name(j.at("projection").get<std::string>());
    ck.hidden_size = j.at("model").at("hidden_size").get<int>();
    ck.vocab_size = j.at("model").at("vocab_size").get<int>();
    ck.num_layers = j.at("model").at("num_layers").get<int>();
    ck.info = j.value("info", nlohmann::json::object());
    if (!j.at("mixer").is_null())
      ck.mixer = mixer_weights<float>{mixer_config::from_json(j.at("mixer"), meta + ": mixer")};
    if (j.at("lm_head").get<bool>())
      ck.lm_head = tensor<float>({1});  // marks "expected"; loaded below
  } catch (const nlohmann::json::exception& e) {
    throw format_error(meta + ": " + e.what());
  } catch (const value_error& e) {
    throw format_error(meta + ": " + e.what());
  }
  if (model) {
    if (model->hidden_size != ck.hidden_size)
      throw shape_error(dir + ": checkpoint was trained for hidden size " +
                        std::to_string(ck.hidden_size) + ", the model has hidden size " +
                        std::to_string(model->hidden_size));
    if (ck.has_head() && model->vocab_size != ck.vocab_size)
      throw shape_error(dir + ": checkpoint's LM head has a vocabulary of " +
                        std::to_string(ck.vocab_size) + ", the model has " +
                        std::to_string(model->vocab_size));
    resolve_mix_layer(ck.mix_layer, model->num_layers);
  }
  if (ck.mixer) {
    if (ck.mixer->config.hidden_size != ck.hidden_size)
      throw shape_error(meta + ": mixer hidden_size " +
                        std::to_string(ck.mixer->config.hidden_size) +
                        " differs from the model's " + std::to_string(ck.hidden_size));
    for (const auto& [name, shape] : mixer_weights<float>::shapes(ck.mixer->config)) {
      const std::string file = dir + "/mixer." + name + ".npy";
      if (!fs::exists(file))
        throw format_error(dir + ": missing mixer tensor '" + name + "' (" + file + ", shape " +
                           to_string(shape) + ")");
      *ck.mixer->slot(name) = load_npy<float>(file, shape);
    }
  }
  if (ck.has_head()) {
    const std::string file = dir + "/lm_head.weight.npy";
    if (!fs::exists(file))
      throw format_error(dir + ": checkpoint.json says the LM head was trained but " + file +
                         " is missing");
    ck.lm_head = load_npy<float>(file, {ck.vocab_size, ck.hidden_size});
  }
  return ck;
}

}  // namespace crossbatch
