// lora_decoder against PyTorch + transformers + peft (tests/data/lora, made by
// tools/make_lora_goldens.py): on a tiny model of each family (llama with GQA and a tied head,
// qwen2 with q/k/v biases, gpt2 with LayerNorm, gelu_new and learned positions) with peft's own
// adapters (B non-zero) loaded from their npy/adapter_config.json, the teacher-forced loss on a
// right-padded batch with ignored targets, every adapter gradient, and the adapters after one
// AdamW step equal torch's.
#define BOOST_TEST_MODULE train_lora_goldens
#include <boost/test/data/test_case.hpp>
#include <fstream>

#include "crossbatch/train/backward/decoder_backward.hpp"
#include "support.hpp"

using namespace crossbatch;
namespace bdata = boost::unit_test::data;

namespace {

context<cpu> ctx;
const char* cases[] = {"llama_gqa_tied", "qwen2", "gpt2"};

token_batch golden_batch(const json& j) {
  token_batch b;
  b.batch = j.at("batch").get<int>();
  b.length = j.at("length").get<int>();
  b.ids = j.at("ids").get<std::vector<std::int32_t>>();
  b.valid = j.at("valid").get<std::vector<std::int32_t>>();
  b.positions = j.at("positions").get<std::vector<std::int32_t>>();
  b.targets = j.at("targets").get<std::vector<std::int32_t>>();
  return b;
}

// |got - want| <= float tolerance x max |want| over the tensor (gradients and updates are sums of
// many float32 products computed in different orders by torch and by us).
void check_tensor(const tensor<float>& got, const tensor<float>& want, const std::string& what) {
  const auto st = cbtest::compare(got, want);
  const double scale = std::max(1e-3, st.max_ref);
  BOOST_TEST(st.max_abs <= double(dtype_traits<float>::rtol) * scale,
             what << ": " << st.summary() << " (scale " << scale << ")");
}

}  // namespace

BOOST_DATA_TEST_CASE(loss_gradients_and_adamw_step_match_peft, bdata::make(cases), name) {
  const std::string dir = cbtest::data_dir() + "/lora/" + name;
  std::ifstream in(dir + "/batch.json");
  BOOST_REQUIRE(in);
  const json info = json::parse(in);
  const auto model = decoder_model<float>::load(dir + "/model");
  auto ad = lora_adapters<float>::load(dir + "/adapter", model.config);
  BOOST_TEST(ad.rank() == info.at("rank").get<int>());
  BOOST_TEST(ad.config.dropout == 0.0f);
  BOOST_TEST(ad.parameter_count() > 0);
  lora_decoder<float> dec(model, &ad);
  const auto batch = golden_batch(info);
  const auto r = dec.loss_and_backward(ctx, batch, dec.frozen_head());
  BOOST_TEST(r.tokens == info.at("tokens").get<int>());
  const double want_loss = info.at("loss").get<double>();
  BOOST_TEST(std::fabs(r.mean() - want_loss) <= dtype_traits<float>::rtol * want_loss,
             name << ": loss " << r.mean() << " vs torch " << want_loss);
  const weight_dir grads(dir + "/grad"), step(dir + "/step");
  int checked = 0;
  ad.for_each([&](int l, lora_slot s, lora_module<float>& m) {
    for (auto [g, which] : {std::pair{&m.da, "lora_A"}, std::pair{&m.db, "lora_B"}}) {
      const auto n = ad.tensor_name(l, s, which);
      check_tensor(*g, grads.load<float>(n, g->shape()), std::string(name) + " grad " + n);
      ++checked;
    }
  });
  // every gradient torch recorded was compared
  BOOST_TEST(checked == std::distance(std::filesystem::directory_iterator(dir + "/grad"),
                                      std::filesystem::directory_iterator()));
  adamw_options o;
  o.weight_decay = info.at("weight_decay").get<float>();
  o.eps = info.at("eps").get<float>();
  o.max_grad_norm = 0;  // torch's step ran without clipping
  adamw<float> opt(o);
  ad.add_to(opt);
  opt.step(ctx, info.at("lr").get<float>());
  ad.for_each([&](int l, lora_slot s, lora_module<float>& m) {
    for (auto [p, which] : {std::pair{&m.a, "lora_A"}, std::pair{&m.b, "lora_B"}}) {
      const auto n = ad.tensor_name(l, s, which);
      check_tensor(*p, step.load<float>(n, p->shape()), std::string(name) + " step " + n);
    }
  });
}
