// Folds LoRA adapters into a converted model: writes --out, a copy of --model (config.json,
// tokenizer files, npy weights) whose adapted weights hold W + (alpha / r) B A, which every
// program of the library loads like any converted model. The adapters are a directory of npy
// files under peft's state-dict names plus peft's adapter_config.json (lora_adapters::save, or a
// peft adapter converted to npy). By default the result is checked: the merged model's logits on a
// few tokens must equal those of the base model run with the adapters.
//   lora_merge --model models/smollm2-135m-instruct --adapter runs/lora/adapter --out models/merged
#include <CLI/CLI.hpp>
#include <cmath>
#include <filesystem>
#include <iostream>

#include "crossbatch/train/backward/decoder_backward.hpp"

using namespace crossbatch;

namespace {

// Max |merged - base with adapters| over the logits of one short sequence, and the max |logit|.
std::pair<double, double> merge_error(const std::string& model_dir, const std::string& merged_dir,
                                      lora_adapters<float>& ad) {
  const context<cpu> ctx = cpu_context(0);
  const auto base = decoder_model<float>::load(model_dir);
  const auto merged = decoder_model<float>::load(merged_dir);
  std::vector<std::int32_t> ids;
  for (int i = 0; i < 8; ++i) ids.push_back(std::int32_t((17 + 31 * i) % base.config.vocab_size));
  const auto batch = make_token_batch({ids});
  const index_t v = base.config.vocab_size;
  tensor<float> a({batch.tokens(), v}), b({batch.tokens(), v});
  lora_decoder<float>(base, &ad).logits(ctx, batch, a.view());
  lora_decoder<float>(merged, nullptr).logits(ctx, batch, b.view());
  double err = 0, ref = 0;
  for (index_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(double(a.data()[i]) - double(b.data()[i]));
    err = std::isnan(d) ? INFINITY : std::max(err, d);
    ref = std::max(ref, std::fabs(double(b.data()[i])));
  }
  return {err, ref};
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_dir, adapter_dir, out_dir;
  bool force = false, no_check = false;
  CLI::App app{"Merge LoRA adapters into a converted model directory"};
  app.add_option("--model", model_dir, "converted base model directory")->required();
  app.add_option("--adapter", adapter_dir, "adapter directory (npy + adapter_config.json)")
      ->required();
  app.add_option("--out", out_dir, "output model directory")->required();
  app.add_flag("--force", force, "overwrite a non-empty output directory");
  app.add_flag("--no-check", no_check, "skip the logits check of the merged model");
  CLI11_PARSE(app, argc, argv);
  try {
    namespace fs = std::filesystem;
    if (fs::exists(out_dir) && !fs::is_empty(out_dir) && !force)
      throw value_error(out_dir + " exists and is not empty (use --force to overwrite)");
    const auto config = load_config(model_dir + "/config.json");
    auto ad = lora_adapters<float>::load(adapter_dir, config);
    write_merged_model(model_dir, ad, out_dir);
    std::cerr << "lora_merge: " << ad.parameter_count() << " adapter parameters (r " << ad.rank()
              << ", alpha " << ad.config.alpha << ") merged into " << out_dir << "\n";
    if (no_check) return 0;
    const auto [err, ref] = merge_error(model_dir, out_dir, ad);
    // float32 logits through the whole model: a few ulps of the largest logit per layer
    const double bound = 1e-4 * std::max(1.0, ref) * std::max(1, config.num_layers);
    std::cerr << "lora_merge: check: max |merged - base with adapters| = " << err
              << " over the logits (max |logit| " << ref << ", bound " << bound << ")\n";
    if (!(err <= bound)) {
      std::cerr << "lora_merge: the merged model does not reproduce the adapters\n";
      return 1;
    }
  } catch (const std::exception& e) {
    std::cerr << "lora_merge: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
