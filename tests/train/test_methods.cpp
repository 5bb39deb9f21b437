// The four training methods of train_cross_batch (train/lora_trainer.hpp) on a tiny llama-family
// model (2 layers, the SmolLM2 vocabulary so that prompts are real chat-template text):
//  - every method lowers its training loss on a small memorisation set;
//  - the whole continue-mode pipeline (embed -> layer 0 -> mixer -> layer 1 -> norm -> head) has
//    the gradient of central finite differences (float64) for adapters before and after the mix
//    layer, the mixer (scale and gate) and the head;
//  - the mixer alone (--freeze-base-model) in continue mode: its backward runs through the layers
//    after the mix layer only (adapter gradients there non-zero, before it exactly zero) and the
//    adapters and head stay bit-identical after training while the mixer changes;
//  - checkpoints round-trip (saved -> loaded -> the same losses, bit for bit);
//  - a lora_lmhead checkpoint used by compare_strategies' strategy gives the same greedy answers
//    as a merged model directory (write_merged_model) with the trained head;
//  - the like-for-like control regroups every question with as many partners as it has siblings,
//    all from other groups.
#define BOOST_TEST_MODULE train_methods
#include <boost/test/unit_test.hpp>
#include <filesystem>
#include <random>

#include "crossbatch/pardec/lora_strategies.hpp"
#include "crossbatch/train/lora_trainer.hpp"
#include "crossbatch/train/method_checkpoint.hpp"
#include "tiny_models.hpp"

using namespace crossbatch;
namespace fs = std::filesystem;

namespace {

const std::string tok_dir = cbtest::data_dir() + "/text/smollm2";

// A tiny random llama-family model with the SmolLM2 tokenizer files next to its weights.
struct tiny_model {
  std::string dir;
  tiny_model() {
    auto c = cbtest::tiny_config("llama");
    c["vocab_size"] = 49152;
    c["max_position_embeddings"] = 2048;
    c["eos_token_id"] = 2;  // <|im_end|>
    dir = cbtest::scratch_dir("methods_model").string();
    write_random_model(dir, c, 11, 2.0f);
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
      fs::copy_file(tok_dir + "/" + f, dir + "/" + f, fs::copy_options::overwrite_existing);
  }
  ~tiny_model() { fs::remove_all(dir); }
};

const tiny_model& tiny() {
  static tiny_model m;
  return m;
}

// Groups of 1-3 short questions with random prompts and 2-4 token targets.
std::vector<qa_example> random_examples(int groups, unsigned seed, int vocab = 49152) {
  std::mt19937 gen(seed);
  std::vector<qa_example> out;
  for (int g = 0; g < groups; ++g) {
    const int n = 1 + int(gen() % 3);
    for (int q = 0; q < n; ++q) {
      qa_example e;
      e.id = std::to_string(g) + "." + std::to_string(q);
      e.group = g;
      const int p = 3 + int(gen() % 5), m = 2 + int(gen() % 3);
      for (int i = 0; i < p; ++i) e.prompt.push_back(int(gen() % 1000) + 100);
      for (int i = 0; i < m; ++i) e.target.push_back(int(gen() % 50) + 10);
      (void)vocab;
      out.push_back(std::move(e));
    }
  }
  return out;
}

template <class B, class A>
tensor<B> cast_tensor(const tensor<A>& t) {
  if (t.empty()) return {};
  tensor<B> out(t.shape());
  for (index_t i = 0; i < t.size(); ++i) out.data()[i] = static_cast<B>(t.data()[i]);
  return out;
}

// The float32 model in float64 (for finite differences).
decoder_model<double> as_double(const decoder_model<float>& m) {
  decoder_model<double> d;
  d.config = m.config;
  d.embed = cast_tensor<double>(m.embed);
  d.pos_embed = cast_tensor<double>(m.pos_embed);
  d.final_w = cast_tensor<double>(m.final_w);
  d.final_b = cast_tensor<double>(m.final_b);
  d.lm_head = cast_tensor<double>(m.lm_head);
  d.inv_freq = cast_tensor<float>(m.inv_freq);
  for (const auto& l : m.layers) {
    decoder_layer<double> x;
    x.norm1_w = cast_tensor<double>(l.norm1_w), x.norm1_b = cast_tensor<double>(l.norm1_b);
    x.qkv_w = cast_tensor<double>(l.qkv_w), x.qkv_b = cast_tensor<double>(l.qkv_b);
    x.o_w = cast_tensor<double>(l.o_w), x.o_b = cast_tensor<double>(l.o_b);
    x.norm2_w = cast_tensor<double>(l.norm2_w), x.norm2_b = cast_tensor<double>(l.norm2_b);
    x.up_w = cast_tensor<double>(l.up_w), x.up_b = cast_tensor<double>(l.up_b);
    x.down_w = cast_tensor<double>(l.down_w), x.down_b = cast_tensor<double>(l.down_b);
    d.layers.push_back(std::move(x));
  }
  return d;
}

method_options options_for(train_method m, bool gate = false) {
  method_options o;
  o.method = m;
  o.use_gate = gate;
  o.mix_layer = 1;  // between the two layers: continue mode
  o.projection = mix_projection::continue_layers;
  o.num_heads = 4;
  o.mixer_init_values.out_std = 0.2f;  // a non-zero output projection: the mixer acts from step 0
  o.mixer_init_values.mix = 0.5f;
  o.lora.rank = 4;
  o.lora.alpha = 8;
  o.lora.dropout = 0.0f;
  o.batch_size = 2;
  o.epochs = 1;
  o.lr = 1e-2f;
  o.min_lr = 1e-2f;
  o.seed = 3;
  return o;
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_method_lowers_its_training_loss) {
  context<cpu> ctx;
  const auto model = decoder_model<float>::load(tiny().dir);
  const auto ex = random_examples(4, 1);
  for (auto m : {train_method::baseline, train_method::crossbatch, train_method::lora_lmhead,
                 train_method::lora_crossbatch}) {
    auto o = options_for(m);
    o.epochs = 20;
    o.mix_layer = -1;
    method_trainer<float, cpu> tr(ctx, model, o);
    const double before = tr.evaluate(ex).loss();
    for (int e = 0; e < o.epochs; ++e) tr.train_epoch(ex, e);
    const double after = tr.evaluate(ex).loss();
    BOOST_TEST(std::isfinite(after));
    BOOST_TEST(after < 0.5 * before, to_string(m) << ": " << before << " -> " << after);
    BOOST_TEST_MESSAGE(to_string(m) << ": " << before << " -> " << after);
  }
}

// d loss / d p by central differences on a copy of p.
template <class F>
double numeric(double& p, F&& loss, double h = 1e-5) {
  const double keep = p;
  p = keep + h;
  const double up = loss();
  p = keep - h;
  const double down = loss();
  p = keep;
  return (up - down) / (2 * h);
}

BOOST_AUTO_TEST_CASE(continue_mode_gradient_matches_finite_differences) {
  context<cpu> ctx;
  const auto model32 = decoder_model<float>::load(tiny().dir);
  const auto model = as_double(model32);
  const auto ex = random_examples(2, 5);
  std::vector<std::size_t> all(ex.size());
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
  const auto b = method_trainer<double, cpu>::batch_of(ex, all, false, nullptr);
  for (bool gate : {false, true}) {
    auto o = options_for(train_method::lora_crossbatch, gate);
    method_trainer<double, cpu> tr(ctx, model, o);
    // Non-zero B so that every adapter matrix has a gradient.
    std::mt19937 gen(9);
    std::normal_distribution<double> nd(0.0, 0.3);
    tr.adapters().for_each([&](int, lora_slot, lora_module<double>& m) {
      for (index_t i = 0; i < m.b.size(); ++i) m.b.data()[i] = nd(gen);
    });
    tr.adapters().zero_grad(ctx);
    const auto r = tr.run(b, true);
    const double n = double(r.second);
    auto loss = [&] { return tr.run(b, false).first / n; };
    // float64 central differences, h = 1e-5: truncation ~h^2 and rounding ~1e-16/h, both far
    // below 1e-8 absolute / 1e-6 relative.
    cbtest::diff_stats st(1e-8, 1e-6);
    auto check = [&](double& p, double analytic) { st.add(analytic, numeric(p, loss)); };
    for (int l : {0, 1})
      for (lora_slot s : {lora_slot::q, lora_slot::v, lora_slot::down}) {
        auto* m = tr.adapters().find(l, s);
        for (index_t i : {index_t(0), index_t(5)}) {
          check(m->a.data()[i], m->da.data()[i]);
          check(m->b.data()[i], m->db.data()[i]);
        }
      }
    auto& mw = const_cast<mixer_weights<double>&>(*tr.mixer());
    const auto& mg = *tr.mixer_grad();
    for (index_t i : {index_t(0), index_t(17), index_t(100)}) {
      check(mw.proj.data()[i], mg.proj.data()[i]);
      check(mw.out.data()[i], mg.out.data()[i]);
    }
    if (gate) {
      for (index_t i : {index_t(3), index_t(40)}) check(mw.gate_w1.data()[i], mg.gate_w1.data()[i]);
      check(mw.gate_b2.data()[1], mg.gate_b2.data()[1]);
      check(mw.ln_h_w.data()[2], mg.ln_h_w.data()[2]);
    } else {
      check(mw.mix.data()[0], mg.mix.data()[0]);
    }
    auto& head = const_cast<tensor<double>&>(tr.head());
    const index_t t0 = ex[0].target[0];
    check(head(t0, 2), tr.head_grad()(t0, 2));
    BOOST_TEST(st.ok(), (gate ? "gate: " : "scale: ") << st.summary());
    BOOST_TEST(st.max_ref > 0.0);
  }
}

BOOST_AUTO_TEST_CASE(mixer_alone_reaches_only_the_layers_after_it_and_leaves_the_rest) {
  context<cpu> ctx;
  const auto model = decoder_model<float>::load(tiny().dir);
  const auto ex = random_examples(4, 2);
  auto o = options_for(train_method::lora_crossbatch);
  o.freeze_base_model = true;
  method_trainer<float, cpu> tr(ctx, model, o);
  std::vector<std::size_t> all(ex.size());
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
  tr.adapters().zero_grad(ctx);
  tr.run(method_trainer<float, cpu>::batch_of(ex, all, false, nullptr), true);
  double before_k = 0, after_k = 0;
  tr.adapters().for_each([&](int l, lora_slot, const lora_module<float>& m) {
    double s = 0;
    for (index_t i = 0; i < m.db.size(); ++i) s += std::abs(m.db.data()[i]);
    for (index_t i = 0; i < m.da.size(); ++i) s += std::abs(m.da.data()[i]);
    (l < 1 ? before_k : after_k) += s;
  });
  BOOST_TEST(before_k == 0.0);  // no backward below the mix layer
  BOOST_TEST(after_k > 0.0);    // the mixer's gradient went through layer 1 (and its adapters)
  double mixer_grad = 0;
  for (const auto& [name, t] : tr.mixer_grad()->parameters())
    for (index_t i = 0; i < t->size(); ++i) mixer_grad += std::abs(t->data()[i]);
  BOOST_TEST(mixer_grad > 0.0);

  // Training: adapters and head bit-identical, the mixer moves.
  std::vector<std::vector<float>> adapters_before;
  tr.adapters().for_each([&](int, lora_slot, const lora_module<float>& m) {
    adapters_before.emplace_back(m.a.data(), m.a.data() + m.a.size());
    adapters_before.emplace_back(m.b.data(), m.b.data() + m.b.size());
  });
  const std::vector<float> head_before(tr.head().data(), tr.head().data() + tr.head().size());
  const std::vector<float> proj_before(tr.mixer()->proj.data(), tr.mixer()->proj.data() + tr.mixer()->proj.size());
  for (int e = 0; e < 3; ++e) tr.train_epoch(ex, e);
  std::size_t i = 0;
  bool same = true;
  tr.adapters().for_each([&](int, lora_slot, const lora_module<float>& m) {
    same = same && std::equal(m.a.data(), m.a.data() + m.a.size(), adapters_before[i++].begin());
    same = same && std::equal(m.b.data(), m.b.data() + m.b.size(), adapters_before[i++].begin());
  });
  BOOST_TEST(same);
  BOOST_TEST(std::equal(head_before.begin(), head_before.end(), tr.head().data()));
  BOOST_TEST(!std::equal(proj_before.begin(), proj_before.end(), tr.mixer()->proj.data()));
  BOOST_TEST(!tr.parts().has_head());  // the checkpoint keeps the model's own head
}

BOOST_AUTO_TEST_CASE(freeze_base_model_needs_a_mixer) {
  context<cpu> ctx;
  const auto model = decoder_model<float>::load(tiny().dir);
  auto o = options_for(train_method::lora_lmhead);
  o.freeze_base_model = true;
  BOOST_CHECK_THROW((method_trainer<float, cpu>(ctx, model, o)), value_error);
}

BOOST_AUTO_TEST_CASE(checkpoints_round_trip_to_the_same_losses) {
  context<cpu> ctx;
  const auto model = decoder_model<float>::load(tiny().dir);
  const auto ex = random_examples(4, 3);
  for (auto m : {train_method::baseline, train_method::crossbatch, train_method::lora_lmhead,
                 train_method::lora_crossbatch}) {
    for (bool gate : {false, true}) {
      if (gate && !has_mixer(m)) continue;
      auto o = options_for(m, gate);
      method_trainer<float, cpu> tr(ctx, model, o);
      for (int e = 0; e < 2; ++e) tr.train_epoch(ex, e);
      const auto dir = cbtest::scratch_dir(std::string("methods_ck_") + to_string(m)).string();
      save_method_checkpoint<cpu>(dir, to_string(m), tr.parts(), has_lora(m) ? &tr.adapters() : nullptr);
      const auto ck = load_method_checkpoint(dir, &model.config);
      BOOST_TEST(ck.method == to_string(m));
      BOOST_TEST(ck.has_adapters() == has_lora(m));
      auto o2 = o;
      o2.seed = 99;  // different initialisation: everything must come from the checkpoint
      method_trainer<float, cpu> back(ctx, model, o2);
      std::optional<lora_adapters<float>> ad;
      if (ck.has_adapters()) ad.emplace(lora_adapters<float>::load(ck.adapter_dir, model.config));
      back.load(ck.parts, ad ? &*ad : nullptr);
      BOOST_TEST(back.evaluate(ex).loss() == tr.evaluate(ex).loss(), to_string(m));
      if (has_mixer(m)) BOOST_TEST(back.evaluate(ex, true).loss() == tr.evaluate(ex, true).loss());
      if (has_lora(m))  // a plain cross-batch loader refuses it by name
        BOOST_CHECK_THROW(load_checkpoint(dir, &model.config), format_error);
      fs::remove_all(dir);
    }
  }
}

BOOST_AUTO_TEST_CASE(lora_lmhead_strategy_answers_as_the_merged_model) {
  context<cpu> ctx;
  const auto model = decoder_model<float>::load(tiny().dir);
  const auto qt = qa_tokenizer::from_model_dir(tiny().dir, true);
  pardec::question_group g;
  g.id = "g";
  g.context = "Anna put the red key in the garden. Ben took it to the library.";
  for (const char* q : {"Who put the key in the garden?", "Where did Ben take the key?"})
    g.questions.push_back({std::string(q).substr(0, 3), q, {}, {"Anna"}, "", ""});
  const auto ex = qt.examples({g});
  BOOST_TEST(ex.size() == 2u);
  BOOST_TEST(ex[0].target.back() == qt.end_of_turn());
  auto o = options_for(train_method::lora_lmhead);
  o.epochs = 20;
  method_trainer<float, cpu> tr(ctx, model, o);
  for (int e = 0; e < o.epochs; ++e) tr.train_epoch(ex, e);
  const auto dir = cbtest::scratch_dir("methods_strategy_ck").string();
  save_method_checkpoint<cpu>(dir, "lora_lmhead", tr.parts(), &tr.adapters());
  auto strategy = pardec::trained_strategy<float, cpu>::load(ctx, tiny().dir, dir, "lora_lmhead");
  BOOST_CHECK_THROW((pardec::trained_strategy<float, cpu>::load(ctx, tiny().dir, dir, "lora_crossbatch")), value_error);
  pardec::strategy_options so;
  so.max_new_tokens = 8;
  so.prompt = qt.style(g);
  const auto got = strategy.run(g, so);

  // The same through a merged model directory and the trained head as a finetuned strategy.
  const auto merged = cbtest::scratch_dir("methods_merged").string();
  write_merged_model(tiny().dir, tr.adapters(), merged);
  const auto mm = decoder_model<float>::load(merged);
  pardec::local_generator<float> gen(ctx, mm, text::tokenizer::from_file(tiny().dir + "/tokenizer.json"),
                                     text::chat_template::from_tokenizer_config(tiny().dir));
  pardec::hidden_mixing<float, cpu> head;
  head.lm_head = tensor<float>(tr.parts().lm_head);
  const auto want = pardec::run_mixed(gen, g, head, "finetuned", so);
  BOOST_TEST(got.replies == want.replies, boost::test_tools::per_element());
  // Training changed the answers (the test can fail).
  const auto base = pardec::run_batch(strategy.generator(), g, so);
  pardec::local_generator<float> plain(ctx, model, text::tokenizer::from_file(tiny().dir + "/tokenizer.json"),
                                       text::chat_template::from_tokenizer_config(tiny().dir));
  const auto untrained = pardec::run_batch(plain, g, so);
  BOOST_TEST(untrained.replies != got.replies);
  (void)base;
  fs::remove_all(dir);
  fs::remove_all(merged);
}

BOOST_AUTO_TEST_CASE(control_gives_as_many_partners_from_other_groups) {
  const std::vector<int> groups = {0, 0, 0, 1, 1, 1, 2, 2, 3};
  long same = -1;
  const auto c = control_groups(groups, &same);
  BOOST_TEST(same == 0);
  std::map<int, std::vector<int>> by;
  for (std::size_t i = 0; i < c.size(); ++i) by[c[i]].push_back(groups[i]);
  std::vector<std::size_t> sizes;
  for (auto& [g, members] : by) {
    sizes.push_back(members.size());
    std::sort(members.begin(), members.end());
    BOOST_TEST((std::adjacent_find(members.begin(), members.end()) == members.end()));
  }
  std::sort(sizes.begin(), sizes.end());
  BOOST_TEST(sizes == (std::vector<std::size_t>{1, 2, 3, 3}), boost::test_tools::per_element());
  // One group alone: the control cannot avoid same-group partners and says so.
  control_groups({5, 5, 5}, &same);
  BOOST_TEST(same == 3);
}
