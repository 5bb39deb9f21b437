// Checkpoints of the four training methods (train/lora_trainer.hpp) as npy directories.
//   baseline / crossbatch: exactly a cross-batch checkpoint (train/checkpoint.hpp: checkpoint.json,
//     lm_head.weight.npy, mixer.<parameter>.npy), so compare_strategies' finetuned / collab_hidden
//     and examples/cross_batch load them as they are.
//   lora_lmhead / lora_crossbatch:
//     checkpoint.json   {format: "crossbatch-lora-checkpoint-1", method, parts: "parts",
//                        adapter: "adapter", lora: {...}, info}
//     parts/            the head (+ mixer) as a cross-batch checkpoint
//     adapter/          the LoRA adapters (lora_adapters::save: peft's names, adapter_config.json)
//   A loader of plain cross-batch checkpoints refuses the LoRA format by name instead of silently
//   using the head without its adapters.
#pragma once

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "crossbatch/train/backward/lora.hpp"
#include "crossbatch/train/checkpoint.hpp"

namespace crossbatch {

inline constexpr const char* lora_checkpoint_format = "crossbatch-lora-checkpoint-1";

struct method_checkpoint {
  std::string method;                // baseline, crossbatch, lora_lmhead, lora_crossbatch (or mixer)
  cross_batch_checkpoint parts;      // head, mixer, mix layer, projection, model sizes, info
  std::string adapter_dir;           // "" when the method has no adapters
  nlohmann::json info = nlohmann::json::object();
  bool has_adapters() const { return !adapter_dir.empty(); }
};

// Writes `parts` (and the adapters when given) to dir; parts.method and parts.info are set to
// method and info (when info is not null).
template <class D>
void save_method_checkpoint(const std::string& dir, const std::string& method, cross_batch_checkpoint& parts,
                            const lora_adapters<float, D>* adapters, const nlohmann::json& info = {}) {
  namespace fs = std::filesystem;
  parts.method = method;
  if (!info.is_null()) parts.info = info;
  if (!adapters) {
    save_checkpoint(dir, parts);
    return;
  }
  fs::create_directories(dir);
  save_checkpoint(dir + "/parts", parts);
  adapters->save(dir + "/adapter");
  const nlohmann::json j = {{"format", lora_checkpoint_format},
                            {"method", method},
                            {"parts", "parts"},
                            {"adapter", "adapter"},
                            {"info", info.is_null() ? nlohmann::json::object() : info}};
  std::ofstream f(dir + "/checkpoint.json");
  if (!f) throw io_error(dir + "/checkpoint.json: cannot open for writing");
  f << j.dump(2) << "\n";
  if (!f) throw io_error(dir + "/checkpoint.json: write failed");
}

template <class D>
void save_method_checkpoint(const std::string& dir, const std::string& method, cross_batch_checkpoint&& parts,
                            const lora_adapters<float, D>* adapters, const nlohmann::json& info = {}) {
  save_method_checkpoint<D>(dir, method, parts, adapters, info);
}

// Reads either layout; with `model`, checks that the parts fit it (load_checkpoint's checks).
inline method_checkpoint load_method_checkpoint(const std::string& dir, const model_config* model = nullptr) {
  namespace fs = std::filesystem;
  const std::string meta = dir + "/checkpoint.json";
  if (!fs::is_directory(dir)) throw io_error(dir + ": checkpoint directory does not exist");
  std::ifstream f(meta);
  if (!f) throw io_error(meta + ": cannot open for reading (not a checkpoint directory?)");
  nlohmann::json j;
  try {
    f >> j;
  } catch (const nlohmann::json::exception& e) {
    throw format_error(meta + ": not valid JSON: " + e.what());
  }
  method_checkpoint ck;
  if (j.value("format", std::string()) != lora_checkpoint_format) {
    ck.parts = load_checkpoint(dir, model);
    ck.method = ck.parts.method;
    ck.info = ck.parts.info;
    return ck;
  }
  try {
    ck.method = j.at("method").get<std::string>();
    ck.parts = load_checkpoint(dir + "/" + j.at("parts").get<std::string>(), model);
    ck.adapter_dir = dir + "/" + j.at("adapter").get<std::string>();
    ck.info = j.value("info", nlohmann::json::object());
  } catch (const nlohmann::json::exception& e) {
    throw format_error(meta + ": " + e.what());
  }
  if (!fs::is_directory(ck.adapter_dir))
    throw format_error(meta + ": names adapter directory " + ck.adapter_dir + ", which does not exist");
  return ck;
}

}  // namespace crossbatch
