// Training really changes the model: LoRA alone (head and base frozen), trained with AdamW
// (train/optimizer.hpp) on a memorisation set of 4 short random sequences, drives the
// teacher-forced loss near zero on a tiny random model of each family; the merged model directory
// (write_merged_model) then continues every sequence from its first two tokens greedily with the
// generation engine; and every frozen base weight is bit-identical to before training.
#define BOOST_TEST_MODULE train_lora_training
#include <cstring>
#include <filesystem>
#include <random>

#include "crossbatch/generate/generate.hpp"
#include "crossbatch/sample/sampler.hpp"
#include "crossbatch/train/backward/decoder_backward.hpp"
#include "tiny_models.hpp"

using namespace crossbatch;

namespace {

context<cpu> ctx;

// Every weight tensor of the model, for a before/after comparison.
std::vector<const tensor<float>*> weights(const decoder_model<float>& m) {
  std::vector<const tensor<float>*> w = {&m.embed, &m.pos_embed, &m.final_w, &m.final_b, &m.lm_head};
  for (const auto& L : m.layers)
    for (const auto* t : {&L.norm1_w, &L.norm1_b, &L.qkv_w, &L.qkv_b, &L.o_w, &L.o_b, &L.norm2_w,
                          &L.norm2_b, &L.up_w, &L.up_b, &L.down_w, &L.down_b})
      w.push_back(t);
  return w;
}

}  // namespace

BOOST_AUTO_TEST_CASE(lora_memorises_and_the_merged_model_answers) {
  for (const std::string fam : {"llama", "qwen2", "gpt2"}) {
    const auto dir = cbtest::tiny_model_dir(fam, 8);
    const auto merged_dir = cbtest::scratch_dir("memorised_" + fam).string();
    const auto model = decoder_model<float>::load(dir);
    std::vector<tensor<float>> before;
    for (const auto* t : weights(model)) before.push_back(t->empty() ? tensor<float>() : t->clone());

    std::mt19937 gen(5);
    std::vector<std::vector<std::int32_t>> seqs(4);
    for (auto& s : seqs)
      for (int t = 0; t < 8; ++t) s.push_back(std::int32_t(3 + gen() % 90));
    auto batch = make_token_batch(seqs);
    auto ad = lora_adapters<float>::create(
        model.config, lora_config{.rank = 8, .alpha = 16, .dropout = 0.05f, .seed = 11});
    lora_decoder<float> dec(model, &ad);
    adamw<float> opt(adamw_options{.weight_decay = 0.0f, .max_grad_norm = 1.0f});
    ad.add_to(opt);
    const lr_schedule lr{.peak = 2e-2f, .warmup_steps = 10, .total_steps = 300, .min_ratio = 0.1f};
    double first = 0, loss = 0;
    int step = 0;
    for (; step < 300; ++step) {
      ad.zero_grad(ctx);
      loss = dec.loss_and_backward(ctx, batch, dec.frozen_head()).mean();
      if (step == 0) first = loss;
      opt.step(ctx, lr.at(step));
    }
    // the loss of the trained adapters without dropout
    tensor<float> logits({batch.tokens(), model.config.vocab_size});
    dec.logits(ctx, batch, logits.view());
    double eval = 0;
    int counted = 0;
    for (index_t i = 0; i < batch.tokens(); ++i) {
      if (batch.targets[i] < 0) continue;
      const float* row = logits.data() + i * model.config.vocab_size;
      double m = row[0], s = 0;
      for (int v = 0; v < model.config.vocab_size; ++v) m = std::max(m, double(row[v]));
      for (int v = 0; v < model.config.vocab_size; ++v) s += std::exp(row[v] - m);
      eval += m + std::log(s) - row[batch.targets[i]];
      ++counted;
    }
    eval /= counted;
    BOOST_TEST_MESSAGE(fam << ": loss " << first << " -> " << loss << " (training, dropout) / "
                           << eval << " (eval) after " << step << " steps");
    BOOST_TEST(first > 2.0, fam << ": the random model should not know the sequences");
    BOOST_TEST(eval < 0.05, fam << ": memorisation loss " << eval);

    // the frozen weights did not move by a bit
    const auto after = weights(model);
    for (std::size_t i = 0; i < after.size(); ++i) {
      BOOST_REQUIRE(after[i]->size() == before[i].size() || before[i].empty());
      if (before[i].empty()) continue;
      BOOST_TEST(std::memcmp(after[i]->data(), before[i].data(), sizeof(float) * before[i].size()) == 0,
                 fam << ": frozen weight " << i << " changed");
    }

    // the merged model continues each sequence from its first two tokens
    write_merged_model(dir, ad, merged_dir);
    const auto merged = decoder_model<float>::load(merged_dir);
    std::vector<std::vector<int>> prompts;
    for (const auto& s : seqs) prompts.push_back({s[0], s[1]});
    generation_options o{.max_new_tokens = 6};
    o.stop_at_eos = false;
    const auto out = generate(ctx, merged, prompts, greedy{}, o);
    for (std::size_t i = 0; i < seqs.size(); ++i)
      BOOST_TEST(out.tokens[i] == std::vector<int>(seqs[i].begin() + 2, seqs[i].end()),
                 fam << ": sequence " << i << " not reproduced");
    // while the base model does not
    const auto base_out = generate(ctx, model, prompts, greedy{}, o);
    int base_right = 0;
    for (std::size_t i = 0; i < seqs.size(); ++i)
      base_right += base_out.tokens[i] == std::vector<int>(seqs[i].begin() + 2, seqs[i].end());
    BOOST_TEST(base_right == 0);
    std::filesystem::remove_all(dir);
    std::filesystem::remove_all(merged_dir);
  }
}
