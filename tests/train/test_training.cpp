// Training with the base model frozen: the cached answer states are exactly the states that
// teacher-forced decoding feeds the head (so the cached loss equals the decoded loss); on a task
// that can only be solved through a partner's state the trained mixer drives the loss far below the
// trained-head baseline, and only with partners from the right context; AdamW, clipping and the
// schedule follow their formulas; checkpoints round-trip and a checkpoint that does not fit the
// model fails with a clear error.
#define BOOST_TEST_MODULE train_training
#include <cmath>
#include <random>

#include "crossbatch/train/trainer.hpp"
#include "mix/mix_helpers.hpp"
#include "tiny_models.hpp"

using namespace crossbatch;

namespace {

context<cpu> ctx;

// Pairs of samples; each state is a noisy one-hot code of its own key, and each sample must
// predict its partner's key: only the partner's state holds the answer.
answer_states partner_task(int pairs, unsigned seed, int C = 16, int V = 8) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> noise(0.0f, 0.1f);
  answer_states a;
  a.hidden_size = C;
  for (int p = 0; p < pairs; ++p) {
    int k0 = int(gen() % V), k1 = int(gen() % (V - 1));
    if (k1 >= k0) ++k1;
    const int keys[2] = {k0, k1};
    for (int s = 0; s < 2; ++s) {
      answer_item it;
      it.id = std::to_string(p) + "." + std::to_string(s);
      it.group = p;
      it.offset = a.rows();
      it.targets = {keys[1 - s], keys[1 - s]};  // two answer steps
      for (int t = 0; t < 2; ++t)
        for (int j = 0; j < C; ++j)
          a.states.push_back((j == keys[s] ? 2.0f : 0.0f) + (j == V + t ? 1.0f : 0.0f) +
                             noise(gen));
      a.items.push_back(it);
    }
  }
  return a;
}

struct model_fixture {
  std::string dir;
  decoder_model<float> model;
  explicit model_fixture(const std::string& family)
      : dir(cbtest::tiny_model_dir(family, 4)), model(decoder_model<float>::load(dir)) {}
  ~model_fixture() { std::filesystem::remove_all(dir); }
};

}  // namespace

BOOST_AUTO_TEST_CASE(cached_states_equal_teacher_forced_decoding) {
  model_fixture f("llama");
  const auto& m = f.model;
  const std::vector<std::vector<int>> prompts = {{5, 9, 13, 2}, {3, 7}, {11, 12, 40, 41, 42, 43}};
  const std::vector<std::vector<int>> answers = {{20, 21, 22}, {30}, {40, 41}};
  for (int layer : {-1, 1}) {
    const auto states =
        extract_answer_states(ctx, m, prompts, answers, {0, 0, 1}, {"a", "b", "c"}, layer, 2);
    // Teacher forcing through batch_session, one sequence at a time.
    double want_loss = 0;
    for (std::size_t i = 0; i < prompts.size(); ++i) {
      batch_session<float> s(ctx, m, {prompts[i]}, int(answers[i].size()));
      for (std::size_t t = 0; t < answers[i].size(); ++t) {
        if (t == 0)
          s.prefill_until(layer == -1 ? m.config.num_layers : 1);
        else
          s.step_until({answers[i][t - 1]}, layer == -1 ? m.config.num_layers : 1);
        tensor<float> raw({1, m.config.hidden_size});
        copy_rows(ctx, raw.view(), tensor_view<const float>(s.newest_residual()));
        s.resume();
        const float* got = states.state(states.items[i]) + t * m.config.hidden_size;
        const float* want = layer == -1 ? s.hidden().data : raw.data();
        const auto st = cbtest::compare(got, want, std::size_t(m.config.hidden_size));
        BOOST_TEST(st.max_abs < 1e-4f,
                   "layer " << layer << " item " << i << " step " << t << ": " << st.summary());
        if (layer == -1) {
          const auto lg = s.logits_host();
          tensor<float> row({1, m.config.vocab_size});
          std::copy_n(lg.data(), m.config.vocab_size, row.data());
          tensor<std::int32_t> tgt({1});
          tgt(0) = answers[i][t];
          want_loss += softmax_xent(ctx, row.view(), tgt.view(), 0.0f);
        }
      }
    }
    if (layer != -1) continue;
    answer_objective<float> obj;
    head_input<float> none;
    const auto head = head_from_model<float>(m);
    double got_loss = 0;
    for (const auto& b : pack_groups(states.items, 8))
      got_loss += obj.run(ctx, batch_of(states, b), nullptr, head.view(), none, nullptr, {}).loss;
    BOOST_TEST(std::fabs(got_loss - want_loss) < 1e-3 * want_loss);
  }
}

BOOST_AUTO_TEST_CASE(trained_mixer_beats_the_trained_head_baseline_where_partners_hold_the_answer) {
  const auto train = partner_task(200, 1), test = partner_task(60, 2);
  const int C = train.hidden_size, V = 8;
  train_options opt;
  opt.epochs = 6;
  opt.batch_size = 8;
  opt.learning_rate = 1e-2f;
  const auto head0 = cbtest::random_tensor<float>({V, C}, 3, -0.1f, 0.1f);
  head_input<float> none;
  cross_batch_trainer<float> base(ctx, std::nullopt, head0.clone(), head_input<float>{}, [&] {
    auto o = opt;
    o.train_mixer = false;
    return o;
  }());
  for (int e = 0; e < opt.epochs; ++e) base.train_epoch(train, e, opt.epochs);
  const double baseline = base.evaluate(test).loss;
  // Chance given the own key: log(V - 1).
  BOOST_TEST(baseline > 0.8 * std::log(V - 1.0));
  for (const auto& v : {cbtest::mixer_variant{mixer_kind::attention, combine_mode::scale},
                        cbtest::mixer_variant{mixer_kind::embedding, combine_mode::gate}}) {
    auto cfg = cbtest::variant_config(v, C, 2);
    cross_batch_trainer<float> tr(
        ctx, init_mixer<float>(cfg, 4, mixer_init{0.3f, 0.3f, 0.5f, 0.0f, 0.3f}), head0.clone(),
        head_input<float>{}, opt);
    const auto first = tr.train_epoch(train, 0, opt.epochs);
    loss_summary last;
    for (int e = 1; e < opt.epochs; ++e) last = tr.train_epoch(train, e, opt.epochs);
    const auto held = tr.evaluate(test);
    BOOST_TEST_MESSAGE(v.name() << ": epoch 1 " << first.loss << " (baseline "
                                << first.baseline_loss << "), last " << last.loss << ", held-out "
                                << held.loss << " vs trained-head baseline " << baseline);
    BOOST_TEST(last.loss < first.loss);
    BOOST_TEST(held.loss < 0.5 * baseline,
               v.name() << ": held-out " << held.loss << " vs baseline " << baseline);
    BOOST_TEST(held.loss < held.baseline_loss);
    // Control: the gain needs the right partners; questions of other contexts do not help.
    const auto foreign = tr.evaluate(test, true, partner_mode::other_contexts);
    BOOST_TEST(foreign.loss > held.loss + 1.0, v.name() << ": other contexts " << foreign.loss);
  }
}

BOOST_AUTO_TEST_CASE(adamw_clipping_and_schedule_follow_their_formulas) {
  tensor<double> p = full<double>({3}, 1.0), g({3});
  g(0) = 3, g(1) = 4, g(2) = 0;  // norm 5
  adamw<double> opt(adamw_options{0.9f, 0.999f, 1e-8f, 0.1f, 1.0f});
  opt.add(p, g);
  BOOST_TEST(opt.step(ctx, 0.01f) == 5.0, boost::test_tools::tolerance(1e-12));
  // First step: m_hat = g', v_hat = g'^2, so the update is lr * (sign(g') + wd * p).
  BOOST_TEST(p(0) == 1.0 - 0.01 * (1.0 + 0.1 * 1.0), boost::test_tools::tolerance(1e-6));
  BOOST_TEST(p(2) == 1.0 - 0.01 * 0.1 * 1.0, boost::test_tools::tolerance(1e-9));
  // Second step with the same gradient, by the formula (clipped to norm 1: g' = g / 5).
  const double g0 = 3.0 / (5.0 + 1e-6), m = 0.9 * 0.1 * g0 + 0.1 * g0,
               v = 0.999 * 0.001 * g0 * g0 + 0.001 * g0 * g0;
  const double mh = m / (1 - 0.81), vh = v / (1 - 0.999 * 0.999);
  const double before = p(0);
  opt.step(ctx, 0.02f);
  BOOST_TEST(p(0) == before - 0.02 * (mh / (std::sqrt(vh) + 1e-8) + 0.1 * before),
             boost::test_tools::tolerance(1e-6));
  const lr_schedule s{1.0f, 10, 110, 0.1f};
  BOOST_TEST(s.at(0) == 0.1f, boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(s.at(9) == 1.0f, boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(s.at(60) == 0.55f, boost::test_tools::tolerance(1e-5f));
  BOOST_TEST(s.at(110) == 0.1f, boost::test_tools::tolerance(1e-6f));
}

BOOST_AUTO_TEST_CASE(checkpoints_round_trip_and_misfits_fail_clearly) {
  model_fixture f("qwen2");
  const auto& mc = f.model.config;
  auto cfg = cbtest::variant_config({mixer_kind::attention, combine_mode::gate}, mc.hidden_size, 4);
  cross_batch_trainer<float> tr(
      ctx, cbtest::random_mixer<float>(cfg, 7), head_from_model<float>(f.model),
      head_input_for<float>(f.model, 1, mix_projection::project), train_options{});
  auto ck = tr.checkpoint(mc, 1, mix_projection::project);
  ck.info["note"] = "test";
  const auto dir = cbtest::scratch_dir("ckpt").string();
  save_checkpoint(dir, ck);
  const auto back = load_checkpoint(dir, &mc);
  BOOST_TEST(back.method == "crossbatch");
  BOOST_TEST(back.mix_layer == 1);
  BOOST_TEST((back.projection == mix_projection::project));
  BOOST_TEST(back.info["note"] == "test");
  BOOST_REQUIRE(back.mixer.has_value());
  for (const auto& [name, t] : ck.mixer->parameters())
    BOOST_TEST(cbtest::max_abs_diff(tensor_view<const float>(t->view()),
                                    tensor_view<const float>(back.mixer->slot(name)->view())) ==
               0.0f);
  BOOST_TEST(cbtest::max_abs_diff(tensor_view<const float>(ck.lm_head.view()),
                                  tensor_view<const float>(back.lm_head.view())) == 0.0f);
  // The same mixer output after the round trip.
  cross_batch_mixer<float> a(ck.mixer->cast<float>()), b(back.mixer->cast<float>());
  const auto h = cbtest::random_tensor<float>({3, mc.hidden_size}, 8);
  const std::vector<int> g = {0, 0, 0};
  BOOST_TEST(cbtest::max_abs_diff(tensor_view<const float>(a.mix(ctx, h.view(), g).view()),
                                  tensor_view<const float>(b.mix(ctx, h.view(), g).view())) ==
             0.0f);

  // A model of another width.
  model_config other = mc;
  other.hidden_size = mc.hidden_size * 2;
  try {
    load_checkpoint(dir, &other);
    BOOST_FAIL("expected shape_error");
  } catch (const shape_error& e) {
    BOOST_TEST(std::string(e.what()).find("hidden size " + std::to_string(mc.hidden_size)) !=
                   std::string::npos,
               e.what());
  }
  other = mc;
  other.vocab_size += 1;
  BOOST_CHECK_THROW(load_checkpoint(dir, &other), shape_error);
  other = mc;
  other.num_layers = 0;  // mix_layer 1 does not exist there
  BOOST_CHECK_THROW(load_checkpoint(dir, &other), value_error);
  // A tensor file of the wrong shape names the file and both shapes.
  save_npy(dir + "/mixer.out_proj.weight.npy", full<float>({3, 3}, 0.0f));
  try {
    load_checkpoint(dir, &mc);
    BOOST_FAIL("expected shape_error");
  } catch (const shape_error& e) {
    const std::string w = e.what();
    BOOST_TEST(w.find("mixer.out_proj.weight.npy") != std::string::npos, w);
    BOOST_TEST(w.find("(3, 3)") != std::string::npos, w);
  }
  std::filesystem::remove(dir + "/lm_head.weight.npy");
  BOOST_CHECK_THROW(load_checkpoint(dir, &mc), error);
  BOOST_CHECK_THROW(load_checkpoint(dir + "/missing"), io_error);
  std::filesystem::remove_all(dir);
}
