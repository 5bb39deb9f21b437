// lora_decoder as a whole model, on tiny models of each family (llama with GQA, qwen2 with q/k/v
// biases, gpt2 with LayerNorm, gelu_new and learned positions):
// - its training forward equals decoder_model's inference forward with zero B, and the merged
//   model's (merge_lora, write_merged_model) with non-zero B; adapters save / load identically;
// - against PyTorch + transformers + peft (tests/data/lora, tools/make_lora_goldens.py): with
//   peft's own adapters loaded from npy + adapter_config.json, the teacher-forced loss on a
//   right-padded batch with ignored targets, every adapter gradient and the adapters after one
//   AdamW step equal torch's;
// - training really changes the model: LoRA alone (head and base frozen), AdamW on 4 short random
//   sequences, drives the loss near zero; the merged model directory continues every sequence
//   from its first two tokens greedily through generate(); every frozen weight is bit-identical;
// - bf16 gradient precision against PyTorch's (bf16_gradient_error_within_the_pytorch_reference).
#define BOOST_TEST_MODULE train_lora_model
#include <boost/test/data/test_case.hpp>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "compare.hpp"
#include "crossbatch/core/npy.hpp"
#include "crossbatch/generate/generate.hpp"
#include "crossbatch/sample/sampler.hpp"
#include "crossbatch/train/backward/decoder_backward.hpp"
#include "lora_test_inputs.hpp"
#include "tiny_models.hpp"

using namespace crossbatch;
namespace bdata = boost::unit_test::data;

namespace {
context<cpu> ctx;
}  // namespace

namespace {

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
    cbtest::randomize_lora_b(ad, 10, 0.3f);
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

namespace {
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

namespace {

// Every weight tensor of the model, for a before/after comparison.
std::vector<const tensor<float>*> weights(const decoder_model<float>& m) {
  std::vector<const tensor<float>*> w = {&m.embed, &m.pos_embed, &m.final_w, &m.final_b,
                                         &m.lm_head};
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
    for (const auto* t : weights(model))
      before.push_back(t->empty() ? tensor<float>() : t->clone());

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
      BOOST_TEST(
          std::memcmp(after[i]->data(), before[i].data(), sizeof(float) * before[i].size()) == 0,
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

// bf16 precision of the whole-model gradients, on the CPU: the float32 CPU path with
// lora_decoder::emulate_rounding rounding to bfloat16 wherever lora_decoder<bfloat16, float, cuda>
// stores a bf16 buffer or multiplies a bf16 operand (inside the ops too: attention probabilities
// and score gradients, the adapters' 16-bit products), on tests/cuda/test_lora_backward.cu's
// whole-model case (same tiny models with bf16-rounded weights, adapters, dropout, head, batch),
// against the same path in float32. The bound comes from an independent implementation:
// tools/make_lora_bf16_reference.py ran PyTorch + peft on exactly these inputs (dumped by this
// test with CROSSBATCH_LORA_BF16_DUMP=<dir>: model, adapters, dropout masks, head, batch and our
// float32 gradients under <dir>/<family>/) in float32 and bf16, and
// tests/data/lora/bf16_reference.json holds its relative L2 errors. Checked: our float32 loss
// and gradient norms = PyTorch's (the fixture belongs to these inputs); the emulation changes
// the gradients; our emulated bf16 error <= max(bf16 rtol, k x PyTorch's) per gradient group and
// per adapter matrix (k from the fixture).

namespace {

void round_to_bf16(float* p, index_t n) {
  for (index_t i = 0; i < n; ++i) p[i] = float(bfloat16(p[i]));
}

// One run's gradients: of the head, of the embedding output, of every adapter matrix (by name).
struct gradients {
  double loss = 0;
  tensor<float> head, dx;
  std::vector<std::pair<std::string, tensor<float>>> adapters;
  std::vector<std::uint64_t> seeds;
};

struct setup {
  std::string family, model_dir;
  decoder_model<float> model;
  lora_config lc{.rank = 4, .alpha = 8, .dropout = 0.1f, .seed = 3};
  lora_adapters<float> adapters;  // A, B as the CUDA test sets them
  tensor<float> head;             // (V, C) trainable head = 0.9 x the frozen one
  token_batch batch;

  explicit setup(const std::string& fam) : family(fam) {
    model_dir = cbtest::tiny_model_dir(fam, 8);
    model = decoder_model<float>::load(model_dir);
    cbtest::round_weights_to<bfloat16>(model);
    adapters = lora_adapters<float>::create(model.config, lc);
    unsigned seed = 100;
    adapters.for_each([&](int l, lora_slot sl, lora_module<float>& m) {
      const auto a = m.a.clone();
      adapters.set(l, sl, a, cbtest::random_tensor<float>(m.b.shape(), seed++, -0.4f, 0.4f));
    });
    lora_decoder<float> d(model, &adapters);
    const auto fh = d.frozen_head();
    head = tensor<float>(fh.shape);
    for (index_t i = 0; i < head.size(); ++i) head.data()[i] = fh.data[i] * 0.9f;
    batch = cbtest::lora_test_batch(model.config.vocab_size);
  }
  ~setup() { std::filesystem::remove_all(model_dir); }

  gradients run(bool bf16) {
    auto ad = lora_adapters<float>::create(model.config, lc);  // fresh gradients, same A, B
    adapters.for_each([&](int l, lora_slot sl, lora_module<float>& m) { ad.set(l, sl, m.a, m.b); });
    lora_decoder<float> d(model, &ad);
    if (bf16) d.emulate_rounding = round_to_bf16;
    const auto& cfg = model.config;
    const index_t n = batch.tokens(), C = cfg.hidden_size;
    gradients g;
    g.head = full<float>(head.shape(), 0.0f);
    g.dx = tensor<float>({n, C});
    tensor<float> x({n, C});
    lora_activations<float> saved;
    d.embed(ctx, batch, x.view());
    d.forward(ctx, batch, 0, cfg.num_layers, x.view(), saved, true);
    const auto r = d.lm_loss(ctx, x.view(), head.view(), batch.targets, g.head.view(), g.dx.view());
    d.backward(ctx, g.dx.view(), 0, cfg.num_layers, saved);
    g.loss = r.mean();
    g.seeds = saved.seeds;
    ad.for_each([&](int l, lora_slot s, lora_module<float>& m) {
      g.adapters.push_back({ad.tensor_name(l, s, "lora_A"), m.da.clone()});
      g.adapters.push_back({ad.tensor_name(l, s, "lora_B"), m.db.clone()});
    });
    return g;
  }

  // The inputs of the PyTorch reference and our float32 gradients, under dir.
  void dump(const std::filesystem::path& dir, const gradients& f32) {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir / "ours_f32");
    std::filesystem::copy(model_dir, dir / "model");
    adapters.save((dir / "adapter").string());
    save_npy((dir / "head.npy").string(), head);
    const index_t n = batch.tokens();
    std::filesystem::create_directories(dir / "dropout");
    adapters.for_each([&](int l, lora_slot s, lora_module<float>& m) {
      tensor<float> f({n, m.a.dim(1)});
      lora_dropout_factors(f32.seeds[l], lora_stream(l, int(s)), 0, std::uint64_t(f.size()),
                           lc.dropout, f.data());
      save_npy((dir / "dropout" / (adapters.tensor_name(l, s, "lora_A") + ".npy")).string(), f);
    });
    for (const auto& [name, t] : f32.adapters)
      save_npy((dir / "ours_f32" / (name + ".npy")).string(), t);
    save_npy((dir / "ours_f32" / "head.npy").string(), f32.head);
    save_npy((dir / "ours_f32" / "dx.npy").string(), f32.dx);
    const json j = {
        {"batch", batch.batch}, {"length", batch.length},       {"ids", batch.ids},
        {"valid", batch.valid}, {"positions", batch.positions}, {"targets", batch.targets},
        {"loss_f32", f32.loss}};
    std::ofstream(dir / "batch.json") << j.dump(1) << "\n";
  }
};

double norm2(const tensor<float>& t) {
  double s = 0;
  for (index_t i = 0; i < t.size(); ++i) s += double(t.data()[i]) * t.data()[i];
  return std::sqrt(s);
}

// Relative L2 error of a gradient group: one tensor, or all adapter matrices together.
double rel_l2(const std::vector<const tensor<float>*>& got,
              const std::vector<const tensor<float>*>& want) {
  double d = 0, r = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const auto st = cbtest::compare(*got[i], *want[i]);
    if (st.has_nonfinite()) return INFINITY;
    for (index_t k = 0; k < got[i]->size(); ++k) {
      const double e = double(got[i]->data()[k]) - want[i]->data()[k];
      d += e * e;
      r += double(want[i]->data()[k]) * want[i]->data()[k];
    }
  }
  return r > 0 ? std::sqrt(d / r) : (d == 0 ? 0.0 : INFINITY);
}

std::vector<const tensor<float>*> adapter_grads(const gradients& g, const std::string& which) {
  std::vector<const tensor<float>*> v;
  for (const auto& [name, t] : g.adapters)
    if (which.empty() || name.find(which) != std::string::npos) v.push_back(&t);
  return v;
}

}  // namespace

BOOST_AUTO_TEST_CASE(bf16_gradient_error_within_the_pytorch_reference) {
  const char* dump_root = std::getenv("CROSSBATCH_LORA_BF16_DUMP");
  const std::string fixture = std::string(CROSSBATCH_TEST_DATA) + "/lora/bf16_reference.json";
  for (const std::string fam : {"llama", "qwen2", "gpt2"}) {
    setup s(fam);
    const auto f32 = s.run(false);
    const auto b16 = s.run(true);
    if (dump_root) s.dump(std::filesystem::path(dump_root) / fam, f32);
    const std::vector<std::pair<std::string, double>> ours = {
        {"head", rel_l2({&b16.head}, {&f32.head})},
        {"dx", rel_l2({&b16.dx}, {&f32.dx})},
        {"adapters", rel_l2(adapter_grads(b16, ""), adapter_grads(f32, ""))},
        {"lora_A", rel_l2(adapter_grads(b16, "lora_A"), adapter_grads(f32, "lora_A"))},
        {"lora_B", rel_l2(adapter_grads(b16, "lora_B"), adapter_grads(f32, "lora_B"))}};
    for (const auto& [group, err] : ours) {
      BOOST_TEST_MESSAGE(fam << " " << group << ": relative L2 error of the emulated bf16 gradient "
                             << err);
      BOOST_TEST(err > 0, fam << ": " << group << ": the bf16 emulation changed nothing");
    }
    if (!std::filesystem::exists(fixture)) {
      BOOST_ERROR(fixture << " is missing (tools/make_lora_bf16_reference.py makes it)");
      continue;
    }
    const json ref = read_json_file(fixture);
    const double k = ref.at("k").get<double>();
    const std::string mode = ref.at("bound_mode").get<std::string>();
    const json& rf = ref.at("families").at(fam);
    // the fixture was made from these inputs: PyTorch's float32 loss and gradient norms are ours
    BOOST_TEST(cbtest::within(f32.loss, rf.at("loss_f32").get<double>(), 1e-6, 1e-5),
               fam << ": float32 loss " << f32.loss << " vs PyTorch " << rf.at("loss_f32"));
    const json& norms = rf.at("grad_norm_f32");
    double an = 0;
    for (const auto* t : adapter_grads(f32, "")) an += norm2(*t) * norm2(*t);
    for (auto [name, got] : {std::pair{"head", norm2(f32.head)}, std::pair{"dx", norm2(f32.dx)},
                             std::pair{"adapters", std::sqrt(an)}})
      BOOST_TEST(cbtest::within(got, norms.at(name).get<double>(), 1e-7, 1e-4),
                 fam << ": float32 " << name << " gradient norm " << got << " vs PyTorch "
                     << norms.at(name));
    // our bf16 error per gradient group against k x PyTorch's (and never below the dtype's rtol)
    const json& tr = rf.at("modes").at(mode).at("rel_l2");
    for (const auto& [group, err] : ours) {
      const double torch_err = tr.at(group).get<double>();
      const double bound = std::max(double(dtype_traits<bfloat16>::rtol), k * torch_err);
      BOOST_TEST_MESSAGE(fam << " " << group << ": ours (emulated bf16) " << err << ", PyTorch "
                             << mode << " " << torch_err << ", bound " << bound);
      BOOST_TEST(err <= bound, fam << ": " << group << " gradient relative L2 error " << err
                                   << " (emulated bf16) above " << bound << " = max(bf16 rtol, "
                                   << k << " x PyTorch " << mode << "'s " << torch_err << ")");
    }
    // every adapter matrix on its own within k x the worst of PyTorch's (single tensors are noisy:
    // two implementations' errors on one small matrix need not rank alike)
    double torch_worst = 0, our_worst = 0;
    for (const auto& [name, e] : rf.at("modes").at(mode).at("rel_l2_per_tensor").items())
      torch_worst = std::max(torch_worst, e.get<double>());
    const double tensor_bound = std::max(double(dtype_traits<bfloat16>::rtol), k * torch_worst);
    for (std::size_t i = 0; i < b16.adapters.size(); ++i) {
      const double err = rel_l2({&b16.adapters[i].second}, {&f32.adapters[i].second});
      our_worst = std::max(our_worst, err);
      BOOST_TEST(err <= tensor_bound, fam << ": " << b16.adapters[i].first << " relative L2 error "
                                          << err << " above " << tensor_bound);
    }
    BOOST_TEST_MESSAGE(fam << " worst adapter tensor: ours " << our_worst << ", PyTorch " << mode
                           << " " << torch_worst << ", bound " << tensor_bound);
    BOOST_TEST(cbtest::within(b16.loss, f32.loss, 0.0, double(dtype_traits<bfloat16>::rtol)),
               fam << ": emulated bf16 loss " << b16.loss << " vs float32 " << f32.loss);
  }
}
