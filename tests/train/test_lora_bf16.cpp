// The precision of whole-model LoRA gradients with bfloat16 activations, on the CPU: the float32
// CPU path with lora_decoder::emulate_rounding set to round to bfloat16 wherever
// lora_decoder<bfloat16, float, cuda> stores a bf16 buffer or converts a product operand to bf16
// (tests/cuda/test_lora_backward.cu's whole-model case, same tiny models, adapters, dropout, head
// and batch), against the same path in float32 on the same bf16-rounded weights. The bound comes
// from an independent implementation: tools/make_lora_bf16_reference.py ran PyTorch + peft on
// exactly these inputs (dumped by this test, see below) in float32 and in bf16 and recorded its
// relative L2 errors in tests/data/lora/bf16_reference.json. Checked here: our float32 loss and
// gradient norms = PyTorch's float32 ones (the fixture belongs to these inputs), and our emulated
// bf16 error <= max(bf16 rtol, k x PyTorch's bf16 error) per gradient group (k from the fixture).
//
// CROSSBATCH_LORA_BF16_DUMP=<dir> makes the test write its inputs (model, adapters, dropout
// masks, head, batch) and our float32 gradients under <dir>/<family>/ for that script.
#define BOOST_TEST_MODULE train_lora_bf16
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include "compare.hpp"
#include "crossbatch/core/npy.hpp"
#include "crossbatch/train/backward/decoder_backward.hpp"
#include "tiny_models.hpp"

using namespace crossbatch;

namespace {

const context<cpu> ctx{};

void round_to_bf16(float* p, index_t n) {
  for (index_t i = 0; i < n; ++i) p[i] = float(bfloat16(p[i]));
}

// The bf16-rounded weights (as the CUDA test's CPU reference uses).
void round_weights(decoder_model<float>& m) {
  auto round = [](tensor<float>& t) {
    if (!t.empty()) round_to_bf16(t.data(), t.size());  // absent biases, a tied head
  };
  for (auto* t : {&m.embed, &m.pos_embed, &m.final_w, &m.final_b, &m.lm_head}) round(*t);
  for (auto& L : m.layers)
    for (auto* t : {&L.norm1_w, &L.norm1_b, &L.qkv_w, &L.qkv_b, &L.o_w, &L.o_b, &L.norm2_w,
                    &L.norm2_b, &L.up_w, &L.up_b, &L.down_w, &L.down_b})
      round(*t);
}

// tests/cuda/test_lora_backward.cu's batch.
token_batch tiny_batch(int vocab) {
  std::mt19937 gen(11);
  std::vector<std::vector<std::int32_t>> rows;
  for (int len : {7, 4, 9}) {
    rows.emplace_back();
    for (int i = 0; i < len; ++i) rows.back().push_back(std::int32_t(gen() % vocab));
  }
  return make_token_batch(rows, 0);
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
  tensor<float> head;  // (V, C) trainable head = 0.9 x the frozen one
  token_batch batch;

  explicit setup(const std::string& fam) : family(fam) {
    model_dir = cbtest::tiny_model_dir(fam, 8);
    model = decoder_model<float>::load(model_dir);
    round_weights(model);
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
    batch = tiny_batch(model.config.vocab_size);
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
    const json j = {{"batch", batch.batch},         {"length", batch.length},
                    {"ids", batch.ids},             {"valid", batch.valid},
                    {"positions", batch.positions}, {"targets", batch.targets},
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
