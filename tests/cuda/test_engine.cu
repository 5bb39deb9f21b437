// The generation engine on the GPU against the CPU engine (float32, tiny models of each family):
// the segmented layout's prefill and decode logits (mask policy with tile skipping in the CUDA
// prefill and decode kernels) equal the CPU's; the graph driver with a combined step (LDA,
// max-of-probabilities) gives the CPU driver's tokens, greedy and sampled, and LDA with alpha 0
// gives the after model's; the graph driver over a segmented layout gives the CPU's tokens; the
// combine kernel matches the CPU loop in every dtype.
#define BOOST_TEST_MODULE cuda_engine
#include "gpu_main.hpp"
// gpu_main.hpp first: it configures Boost.Test for everything below.

#include "crossbatch/cuda.hpp"
#include "crossbatch/generate/generate.hpp"
#include "tiny_models.hpp"

using namespace crossbatch;
using namespace cbgpu;

namespace {

const std::vector<std::string> families = {"gpt2", "llama", "qwen2"};

std::vector<segmented_prompt> fusion_prompts() {
  return {
      segmented_prompt::join({1, 2, 3}, {{10, 11, 12, 13}, {20, 21}, {30, 31, 32}}, {7}, {8, 9}),
      segmented_prompt::join({4}, {{40, 41}, {50, 51, 52, 53, 54}}, {}, {6})};
}

generation_options fixed(int n, std::uint64_t seed = 0) {
  generation_options o;
  o.max_new_tokens = n;
  o.stop_at_eos = false;
  o.seed = seed;
  return o;
}

}  // namespace

BOOST_AUTO_TEST_CASE(segmented_logits_match_cpu) {
  for (const auto& family : families)
    for (bool restart : {false, true}) {
      const auto dir = cbtest::tiny_model_dir(family, 3);
      const auto mc = decoder_model<float>::load(dir);
      const auto mg = decoder_model<float, gpu>::load(dir);
      const auto prompts = fusion_prompts();
      batch_session<float, crossbatch::cpu, segmented> sc(hctx, mc, prompts, 3, segmented{restart});
      batch_session<float, gpu, segmented> sg(gctx(), mg, prompts, 3, segmented{restart});
      sc.prefill();
      sg.prefill();
      const std::string what = family + (restart ? " restart" : " natural");
      cbtest::check_close<float>(sg.logits_host().view(), sc.logits_host().view(),
                                 what + " prefill");
      for (int step = 0; step < 2; ++step) {
        const std::vector<std::int32_t> next = {5 + step, 9 + step};
        sc.step(next);
        sg.step(next);
        cbtest::check_close<float>(sg.logits_host().view(), sc.logits_host().view(),
                                   what + " step " + std::to_string(step));
      }
      std::filesystem::remove_all(dir);
    }
}

BOOST_AUTO_TEST_CASE(graph_driver_runs_every_policy_like_the_cpu) {
  for (const auto& family : families) {
    const auto da = cbtest::tiny_model_dir(family, 1), db = cbtest::tiny_model_dir(family, 2);
    const auto ac = decoder_model<float>::load(da), bc = decoder_model<float>::load(db);
    const auto ag = decoder_model<float, gpu>::load(da), bg = decoder_model<float, gpu>::load(db);
    const std::vector<std::vector<int>> prompts = {{5, 9, 13, 2, 7}, {3}, {11, 12, 40}, {8, 8}};
    const int n = 8;
    graph_driver<float> driver(gctx());
    sampling_params sp{.do_sample = true, .temperature = 0.8f, .top_p = 0.9f};
    for (bool sample : {false, true})
      for (float alpha : {0.0f, 1.5f})
        for (bool graph : {true, false}) {
          const auto o = fixed(n, 11);
          const auto& eos = stop_ids(o, ac.config);
          batch_session<float> a(hctx, ac, prompts, n), b(hctx, bc, prompts, n);
          combined_step<float, crossbatch::cpu, left_padded, lda_combiner> cpu_policy(
              {&a, &b}, lda_combiner{alpha});
          const auto want =
              sample ? decode<float, crossbatch::cpu>(hctx, cpu_policy, sp, o, eos)
                     : decode<float, crossbatch::cpu>(hctx, cpu_policy, greedy{}, o, eos);
          batch_session<float, gpu> ga(gctx(), ag, prompts, n), gb(gctx(), bg, prompts, n);
          combined_step<float, gpu, left_padded, lda_combiner> gpu_policy({&ga, &gb},
                                                                          lda_combiner{alpha});
          driver.options.use_graph = graph;
          const auto got = driver.run(gpu_policy, sample ? sp : sampling_params{}, o, eos);
          const std::string what = family + " alpha " + std::to_string(alpha) +
                                   (sample ? " sampled" : " greedy") + (graph ? " graph" : "");
          BOOST_TEST(got.tokens == want.tokens, what);
          if (alpha == 0.0f) {
            const auto plain = graph_generate(gctx(), ag, prompts, sample ? sp : sampling_params{},
                                              o, {}, {}, driver.options);
            BOOST_TEST(got.tokens == plain.tokens, what << ": LDA at alpha 0 is the after model");
          }
        }
    // Max of probabilities over two models, and a segmented layout through the graph.
    {
      const auto o = fixed(n);
      batch_session<float> a(hctx, ac, prompts, n), b(hctx, bc, prompts, n);
      combined_step<float, crossbatch::cpu, left_padded, max_prob_combiner> cp({&a, &b});
      const auto want = decode<float, crossbatch::cpu>(hctx, cp, greedy{}, o, {});
      batch_session<float, gpu> ga(gctx(), ag, prompts, n), gb(gctx(), bg, prompts, n);
      combined_step<float, gpu, left_padded, max_prob_combiner> gp({&ga, &gb});
      BOOST_TEST(driver.run(gp, sampling_params{}, o, {}).tokens == want.tokens, family << " max");
      const auto fp = fusion_prompts();
      const auto seg_want = generate(hctx, ac, fp, greedy{}, o, {}, segmented{});
      const auto seg_got =
          graph_generate(gctx(), ag, fp, sampling_params{}, o, {}, {}, {}, segmented{});
      BOOST_TEST(seg_got.tokens == seg_want.tokens, family << " segmented");
    }
    std::filesystem::remove_all(da);
    std::filesystem::remove_all(db);
  }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(combine_kernel_matches_cpu, T, dtypes) {
  const int b = 5, v = 3001;
  std::vector<tensor<T>> in;
  std::vector<tensor<T, gpu>> din;
  for (int i = 0; i < 3; ++i) {
    in.push_back(cbtest::random_tensor<T>({b, v}, 20 + i, -6, 6));
    din.push_back(up(in.back()));
  }
  std::vector<tensor_view<const T>> hv;
  std::vector<tensor_view<const T, gpu>> dv;
  for (int i = 0; i < 3; ++i) hv.push_back(in[i].view()), dv.push_back(din[i].view());
  auto check = [&](auto combiner, int m, const char* what) {
    tensor<T> want({b, v});
    tensor<T, gpu> got({b, v});
    combine_logits(hctx, combiner, want.view(), std::span<const tensor_view<const T>>(hv).first(m));
    combine_logits(gctx(), combiner, got.view(),
                   std::span<const tensor_view<const T, gpu>>(dv).first(m));
    gctx().synchronize();
    cbtest::check_close<T>(down(got).view(), want.view(), what);
  };
  check(lda_combiner{2.0f}, 2, "lda");
  check(mean_logits_combiner{}, 3, "mean");
  check(max_prob_combiner{}, 3, "max of probabilities");
  check(weighted_mean_combiner::from({0.5f, 1.0f, 2.0f}), 3, "weighted mean");
}
