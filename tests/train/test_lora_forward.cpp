// lora_decoder's training forward against decoder_model's own forward: with zero B (fresh
// adapters) its logits equal the inference path's on a padded batch of each family; with non-zero
// B they equal those of the merged model (merge_lora and write_merged_model), and saved adapters
// load back identical.
#define BOOST_TEST_MODULE train_lora_forward
#include <filesystem>

#include "crossbatch/train/backward/decoder_backward.hpp"
#include "tiny_models.hpp"

using namespace crossbatch;

namespace {

context<cpu> ctx;

// Two rows, the second shorter (right padding), positions 0..len-1.
token_batch padded_batch(int vocab) {
  return make_token_batch({{1, 5, 9, 2, 7, 3}, {4, 8 % vocab, 6}}, 0);
}

// Logits (B*T, V) of decoder_model's inference path: one prefill over a causal + right-padding
// mask.
tensor<float> reference_logits(const decoder_model<float>& m, const token_batch& b) {
  const auto& c = m.config;
  const index_t n = b.tokens();
  tensor<std::int32_t> ids({n}), pos({n});
  std::copy(b.ids.begin(), b.ids.end(), ids.data());
  std::copy(b.positions.begin(), b.positions.end(), pos.data());
  std::vector<int> lengths(b.batch, 0);
  for (int i = 0; i < b.batch; ++i)
    for (int t = 0; t < b.length; ++t) lengths[i] += b.valid[i * b.length + t];
  tensor<float> x({b.batch, b.length, c.hidden_size});
  m.embed_tokens(ctx, x.view().reshape({n, c.hidden_size}), ids.view(), pos.view());
  auto cache = m.make_cache(b.batch, b.length);
  decoder_workspace<float> ws(c, n);
  const all_of<causal, right_padding> mask(causal{}, right_padding{lengths.data()});
  m.run_layers(ctx, x.view(), pos.view(), cache, 0, mask, 0, c.num_layers, ws);
  tensor<float> h({n, c.hidden_size}), logits({n, c.vocab_size});
  m.final_norm(ctx, h.view(), x.view().reshape({n, c.hidden_size}));
  m.logits(ctx, logits.view(), h.view());
  return logits;
}

// Sets every B to small random values (so the adapters change the model).
template <class G>
void randomize_b(lora_adapters<G>& ad, unsigned seed) {
  ad.for_each([&](int, lora_slot, lora_module<G>& m) {
    auto b = cbtest::random_tensor<G>(m.b.shape(), seed++, -0.3f, 0.3f);
    std::copy(b.data(), b.data() + b.size(), m.b.data());
  });
}

}  // namespace

BOOST_AUTO_TEST_CASE(zero_adapters_match_the_inference_forward) {
  for (const std::string fam : {"llama", "qwen2", "gpt2"}) {
    const auto dir = cbtest::tiny_model_dir(fam, 3);
    const auto model = decoder_model<float>::load(dir);
    auto ad = lora_adapters<float>::create(model.config, lora_config{.rank = 4, .seed = 1});
    lora_decoder<float> dec(model, &ad);
    const auto batch = padded_batch(model.config.vocab_size);
    tensor<float> got({batch.tokens(), model.config.vocab_size});
    dec.logits(ctx, batch, got.view());
    const auto want = reference_logits(model, batch);
    cbtest::check_close<float>(got.view(), want.view(), fam + " logits", 4.f);
    std::filesystem::remove_all(dir);
  }
}

BOOST_AUTO_TEST_CASE(adapters_match_the_merged_model) {
  for (const std::string fam : {"llama", "qwen2", "gpt2"}) {
    const auto dir = cbtest::tiny_model_dir(fam, 4);
    const auto merged_dir = cbtest::scratch_dir("merged_" + fam).string();
    const auto adapter_dir = cbtest::scratch_dir("adapter_" + fam).string();
    auto model = decoder_model<float>::load(dir);
    auto ad = lora_adapters<float>::create(model.config, lora_config{.rank = 4, .seed = 2});
    randomize_b(ad, 10);
    const auto batch = padded_batch(model.config.vocab_size);
    tensor<float> got({batch.tokens(), model.config.vocab_size});
    {
      lora_decoder<float> dec(model, &ad);
      dec.logits(ctx, batch, got.view());
    }
    const auto base = reference_logits(model, batch);
    BOOST_TEST(cbtest::compare_views(got.view(), base.view(), 1e-3).failures > 0,
               fam << ": the adapters should change the logits");
    // merged in memory
    auto merged = decoder_model<float>::load(dir);
    merge_lora(merged, ad);
    cbtest::check_close<float>(reference_logits(merged, batch).view(), got.view(),
                               fam + " merge_lora", 4.f);
    // merged into a directory
    write_merged_model(dir, ad, merged_dir);
    const auto reloaded = decoder_model<float>::load(merged_dir);
    cbtest::check_close<float>(reference_logits(reloaded, batch).view(), got.view(),
                               fam + " write_merged_model", 4.f);
    // adapters round-trip through save / load
    ad.save(adapter_dir);
    auto back = lora_adapters<float>::load(adapter_dir, model.config);
    BOOST_TEST(back.scale() == ad.scale());
    BOOST_TEST(back.parameter_count() == ad.parameter_count());
    ad.for_each([&](int l, lora_slot s, lora_module<float>& m) {
      const auto* b = back.find(l, s);
      BOOST_REQUIRE(b);
      BOOST_TEST(cbtest::compare_views(b->a.view(), m.a.view()).ok());
      BOOST_TEST(cbtest::compare_views(b->b.view(), m.b.view()).ok());
    });
    for (const auto& d : {dir, merged_dir, adapter_dir}) std::filesystem::remove_all(d);
  }
}

BOOST_AUTO_TEST_CASE(bad_targets_are_refused) {
  const auto c = parse_config(cbtest::tiny_config("llama"), "tiny");
  BOOST_CHECK_THROW(lora_adapters<float>::create(c, lora_config{.targets = {"q", "mlp_in"}}),
                    value_error);
  BOOST_CHECK_THROW(lora_adapters<float>::create(c, lora_config{.rank = 0}), value_error);
  BOOST_CHECK_THROW(lora_adapters<float>::create(c, lora_config{.dropout = 1.0f}), value_error);
}
