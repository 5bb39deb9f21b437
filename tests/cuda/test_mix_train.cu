// CUDA training against the CPU in float32: the SGEMM with every transpose combination (strided
// rows, beta), the objective's losses and every gradient (mixer parameters and LM head) for each
// mixer variant with the head reading the mixed state directly or through RMSNorm / LayerNorm, and
// whole AdamW training steps (parameters after three steps; the baseline method too).
#define BOOST_TEST_MODULE cuda_mix_train
#include "gpu_main.hpp"
// gpu_main.hpp first: it configures Boost.Test for everything below.

#include <random>

#include "compare.hpp"
#include "crossbatch/cuda.hpp"
#include "crossbatch/mix/cuda/ops.cuh"
#include "crossbatch/train/cuda/ops.cuh"
#include "crossbatch/train/trainer.hpp"
#include "mix/mix_helpers.hpp"

using namespace crossbatch;
using namespace cbgpu;

namespace {

constexpr int C = 96, V = 300;

answer_batch random_batch(unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-1.5f, 1.5f);
  const std::vector<int> lengths = {4, 1, 3, 4, 2, 3};
  const std::vector<int> groups = {0, 0, 1, 0, 2, 1};
  std::vector<std::vector<float>> states;
  std::vector<std::vector<std::int32_t>> targets;
  std::vector<const float*> ptrs;
  for (int len : lengths) {
    states.emplace_back(len * C);
    for (auto& x : states.back()) x = u(gen);
    targets.emplace_back();
    for (int t = 0; t < len; ++t) targets.back().push_back(std::int32_t(gen() % V));
  }
  for (auto& s : states) ptrs.push_back(s.data());
  return make_answer_batch(ptrs, targets, groups, C);
}

head_input<float> host_norm(int mode) {
  head_input<float> n;
  n.normalize = mode > 0;
  n.kind = mode == 2 ? norm_kind::layer : norm_kind::rms;
  n.weight = cbtest::random_tensor<float>({C}, 77, 0.5f, 1.5f);
  n.bias = cbtest::random_tensor<float>({C}, 78, -0.2f, 0.2f);
  return n;
}
head_input<float, gpu> device_norm(const head_input<float>& h) {
  head_input<float, gpu> d;
  d.normalize = h.normalize;
  d.kind = h.kind;
  d.eps = h.eps;
  d.weight = up(h.weight);
  d.bias = up(h.bias);
  return d;
}

// max |a - b| <= tol * max(max |b|, floor)
void check_rel(const tensor<float>& got, const tensor<float>& want, const std::string& what,
               float tol = 2e-3f) {
  BOOST_REQUIRE(got.shape() == want.shape());
  const auto st = cbtest::compare(got, want);
  const double scale = std::max(1e-6, st.max_ref);
  BOOST_TEST(st.max_abs <= tol * scale, what << ": " << st.summary() << " vs scale " << scale);
}

}  // namespace

BOOST_AUTO_TEST_CASE(sgemm_matches_cpu) {
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (auto [m, n, k] :
           {std::tuple{1, 1, 1}, std::tuple{70, 129, 33}, std::tuple{300, 96, 7}}) {
        const auto a = cbtest::random_tensor<float>(ta ? shape_t{k, m + 3} : shape_t{m, k + 3}, 1);
        const auto b = cbtest::random_tensor<float>(tb ? shape_t{n, k + 2} : shape_t{k, n + 2}, 2);
        const auto c0 = cbtest::random_tensor<float>({m, n}, 3);
        // Strided operands: the first columns of wider buffers.
        const tensor_view<const float> av(a.data(), ta ? shape_t{k, m} : shape_t{m, k},
                                          {a.dim(1), 1});
        const tensor_view<const float> bv(b.data(), tb ? shape_t{n, k} : shape_t{k, n},
                                          {b.dim(1), 1});
        auto want = c0.clone();
        gemm(hctx, want.view(), av, bv, ta, tb, 0.5f, 2.0f);
        const auto da = up(a), db = up(b);
        auto got = up(c0);
        gemm(gctx(), got.view(), tensor_view<const float, gpu>(da.data(), av.shape, av.strides),
             tensor_view<const float, gpu>(db.data(), bv.shape, bv.strides), ta, tb, 0.5f, 2.0f);
        gctx().synchronize();
        check_rel(down(got), want,
                  "gemm " + std::to_string(ta) + std::to_string(tb) + " " + std::to_string(m) +
                      "x" + std::to_string(n),
                  1e-5f);
      }
}

BOOST_AUTO_TEST_CASE(objective_losses_and_gradients_match_cpu) {
  const auto batch = random_batch(5);
  for (const auto& v : cbtest::all_variants())
    for (int mode : {0, 1, 2}) {
      const std::string what = v.name() + " norm " + std::to_string(mode);
      const auto w = cbtest::random_mixer<float>(cbtest::variant_config(v, C, 4), 6, 0.3f);
      const auto dw = w.cast<float, gpu>();
      const auto head = cbtest::random_tensor<float>({V, C}, 7, -0.3f, 0.3f);
      const auto dhead = up(head);
      auto g = zeros_like_config<float>(w.config);
      auto dg = zeros_like_config<float, gpu>(w.config);
      auto hg = full<float>({V, C}, 0.0f);
      auto dhg = up(hg);
      const auto norm = host_norm(mode);
      const auto dnorm = device_norm(norm);
      answer_objective<float> cpu_obj;
      answer_objective<float, gpu> gpu_obj;
      const auto want = cpu_obj.run(hctx, batch, &w, head.view(), norm, &g, hg.view());
      const auto got = gpu_obj.run(gctx(), batch, &dw, dhead.view(), dnorm, &dg, dhg.view());
      gctx().synchronize();
      BOOST_TEST(got.tokens == want.tokens);
      BOOST_TEST(std::fabs(got.loss - want.loss) <= 1e-4 * want.loss,
                 what << ": loss " << got.loss << " vs " << want.loss);
      BOOST_TEST(std::fabs(got.baseline_loss - want.baseline_loss) <= 1e-4 * want.baseline_loss,
                 what);
      for (auto& [name, t] : g.parameters()) check_rel(down(*dg.slot(name)), *t, what + " " + name);
      check_rel(down(dhg), hg, what + " lm_head");
    }
}

BOOST_AUTO_TEST_CASE(training_steps_match_cpu) {
  for (bool with_mixer : {true, false}) {
    const mixer_config cfg =
        cbtest::variant_config({mixer_kind::attention, combine_mode::gate}, C, 4);
    const auto w = cbtest::random_mixer<float>(cfg, 8, 0.3f);
    const auto head = cbtest::random_tensor<float>({V, C}, 9, -0.3f, 0.3f);
    train_options opt;
    opt.learning_rate = 1e-3f;
    opt.train_mixer = with_mixer;
    std::optional<mixer_weights<float>> hm;
    std::optional<mixer_weights<float, gpu>> dm;
    if (with_mixer) hm = w.cast<float>(), dm = w.cast<float, gpu>();
    cross_batch_trainer<float> cpu_tr(hctx, std::move(hm), head.clone(), host_norm(1), opt);
    cross_batch_trainer<float, gpu> gpu_tr(gctx(), std::move(dm), up(head),
                                           device_norm(host_norm(1)), opt);
    for (unsigned s = 0; s < 3; ++s) {
      const auto b = random_batch(20 + s);
      const auto want = cpu_tr.train_step(b);
      const auto got = gpu_tr.train_step(b);
      BOOST_TEST(std::fabs(got.loss - want.loss) <= 1e-3 * want.loss, "step " << s);
      BOOST_TEST(std::fabs(gpu_tr.last_grad_norm() - cpu_tr.last_grad_norm()) <=
                 1e-3 * cpu_tr.last_grad_norm());
    }
    gctx().synchronize();
    // Three AdamW steps move each parameter by at most 3 lr; near-zero gradients may flip the sign
    // of an update, so the bound is lr-scaled.
    auto close = [&](const tensor<float>& got, const tensor<float>& want, const std::string& what) {
      BOOST_REQUIRE(got.shape() == want.shape());
      const auto st = cbtest::compare(got, want);
      BOOST_TEST(st.max_abs <= 1.5f * opt.learning_rate, what << ": " << st.summary());
    };
    close(down(gpu_tr.head()), cpu_tr.head(), "lm_head");
    if (with_mixer)
      for (const auto& [name, t] : cpu_tr.mixer()->parameters())
        close(down(*gpu_tr.mixer()->slot(name)), *t, name);
  }
}
