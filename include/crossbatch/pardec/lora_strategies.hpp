// The strategies of a model trained by train_cross_batch (train/lora_trainer.hpp):
//   lora_lmhead      the model with its LoRA adapters merged (W += scale B A) and the trained head,
//                    every question of the group in one batch (as `batch`);
//   lora_crossbatch  the same, its rows mixing through the trained mixer (as collab_hidden);
// also baseline / crossbatch checkpoints (= finetuned / collab_hidden). A trained_strategy owns
// its merged copy of the model and a local_generator on it; prompts are the batch strategy's.
#pragma once

#include <memory>
#include <string>

#include "crossbatch/pardec/strategies.hpp"
#include "crossbatch/train/backward/lora.hpp"
#include "crossbatch/train/method_checkpoint.hpp"

namespace crossbatch::pardec {

template <class T, class D>
class trained_strategy {
 public:
  // parts: the trained head (+ mixer); adapters: merged into a fresh copy of the model (may be
  // null: the base model).
  trained_strategy(const context<D>& ctx, const std::string& model_dir, std::string name,
                   const cross_batch_checkpoint& parts, const lora_adapters<float, D>* adapters)
      : m_name(std::move(name)),
        m_model(std::make_unique<decoder_model<T, D>>(decoder_model<T, D>::load(model_dir))) {
    if (adapters) merge_lora(*m_model, *adapters);
    m_gen = std::make_unique<local_generator<T, D>>(ctx, *m_model,
                                                    text::tokenizer::from_file(model_dir + "/tokenizer.json"),
                                                    text::chat_template::from_tokenizer_config(model_dir));
    if (parts.mixer) {
      m_mixing.mixer.emplace(parts.mixer->template cast<T, D>());
      m_mixing.mix_layer = parts.mix_layer;
      m_mixing.projection = parts.projection;
    }
    if (parts.has_head()) {
      tensor<T> h(parts.lm_head.shape());
      for (index_t i = 0; i < h.size(); ++i) h.data()[i] = static_cast<T>(parts.lm_head.data()[i]);
      m_mixing.lm_head = to_device<D>(h);
    }
  }

  // From a checkpoint directory; `method` (lora_lmhead or lora_crossbatch) must match its method.
  static trained_strategy load(const context<D>& ctx, const std::string& model_dir, const std::string& dir,
                               const std::string& method) {
    const auto cfg = model_config_of(model_dir);
    auto ck = load_method_checkpoint(dir, &cfg);
    require(ck.method == method, dir + ": a " + ck.method + " checkpoint, but the " + method +
                                     " strategy needs a " + method + " checkpoint");
    require(method != "lora_crossbatch" || ck.parts.mixer.has_value(), dir + ": lora_crossbatch checkpoint without a mixer");
    require(!method.starts_with("lora_") || ck.has_adapters(), dir + ": " + method + " checkpoint without adapters");
    std::optional<lora_adapters<float, D>> a;
    if (ck.has_adapters()) a.emplace(lora_adapters<float, D>::load(ck.adapter_dir, cfg));
    return trained_strategy(ctx, model_dir, method, ck.parts, a ? &*a : nullptr);
  }

  strategy_run run(const question_group& g, const strategy_options& opt) {
    return run_mixed(*m_gen, g, m_mixing, m_name, opt);
  }
  local_generator<T, D>& generator() { return *m_gen; }
  const decoder_model<T, D>& model() const { return *m_model; }

 private:
  static model_config model_config_of(const std::string& model_dir) {
    return load_config(model_dir + "/config.json");
  }
  std::string m_name;
  std::unique_ptr<decoder_model<T, D>> m_model;
  std::unique_ptr<local_generator<T, D>> m_gen;
  hidden_mixing<T, D> m_mixing;
};

}  // namespace crossbatch::pardec
