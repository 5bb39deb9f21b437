// Paraphrase fusion on the GPU against the CPU (fusion/): the grouped combine kernel equals the
// CPU loop in every dtype (groups of 1..5 rows, per-question combiners); fused generation
// (natural and restarted positions, shared tail 0 and 1) and every ensemble through the graph
// driver give the CPU driver's tokens, greedy and sampled (float32); bfloat16 fused prefill and
// ensemble logits are close to the CPU's bfloat16 ones.
#define BOOST_TEST_MODULE cuda_fusion
#include "gpu_main.hpp"
// gpu_main.hpp first: it configures Boost.Test for everything below.

#include "crossbatch/cuda.hpp"
#include "crossbatch/fusion/cuda/graph_run.cuh"
#include "tiny_models.hpp"

using namespace crossbatch;
using namespace cbgpu;

namespace {

std::vector<paraphrase_question> questions() {
  return {{{{1, 10, 11, 12, 13, 9}, {1, 20, 21, 9}, {1, 30, 31, 32, 33, 34, 9}}},
          {{{2, 40, 41, 42, 9}}},
          {{{3, 50, 51, 9}, {3, 60, 61, 62, 63, 9}}}};
}

generation_options fixed(int n, std::uint64_t seed = 0) {
  generation_options o;
  o.max_new_tokens = n;
  o.stop_at_eos = false;
  o.seed = seed;
  return o;
}

}  // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(grouped_combine_kernel_matches_cpu, T, dtypes) {
  const int v = 3001;
  const std::vector<int> offsets = {0, 3, 4, 9, 11};  // groups of 3, 1, 5, 2 rows
  const int rows = offsets.back(), q = int(offsets.size()) - 1;
  const auto in = cbtest::random_tensor<T>({rows, v}, 31, -6, 6);
  const auto din = up(in);
  tensor<std::int32_t> offs({q + 1});
  for (int i = 0; i <= q; ++i) offs(i) = offsets[i];
  const auto doffs = up(offs);
  auto check = [&](const auto& combiners, const char* what) {
    using C = typename std::decay_t<decltype(combiners)>::value_type;
    tensor<T> want({q, v});
    tensor<T, gpu> got({q, v});
    combine_groups(hctx, combiners.data(), offsets.data(), want.view(), c(in));
    tensor<float, gpu> dc({index_t((sizeof(C) * combiners.size() + 3) / 4)});
    device_traits<gpu>::upload(dc.data(), combiners.data(), sizeof(C) * combiners.size());
    combine_groups(gctx(), reinterpret_cast<const C*>(dc.data()),
                   static_cast<const int*>(doffs.data()), got.view(), c(din));
    gctx().synchronize();
    cbtest::check_close<T>(down(got).view(), want.view(), what);
  };
  check(std::vector<mean_logits_combiner>(q), "avg");
  check(std::vector<max_prob_combiner>(q), "max");
  check(std::vector<weighted_mean_combiner>{weighted_avg_combiner({0.2f, 0.5f, 0.3f}),
                                            weighted_avg_combiner({1.0f}),
                                            weighted_max_combiner({0.1f, 0.9f, 0.0f, 0.9f, 0.2f}),
                                            weighted_avg_combiner({0.0f, 0.0f})},
        "weighted");
}

BOOST_AUTO_TEST_CASE(every_method_through_the_graph_driver_gives_the_cpu_tokens) {
  for (const std::string family : {"llama", "qwen2"}) {
    const auto dir = cbtest::tiny_model_dir(family, 3);
    const auto mc = decoder_model<float>::load(dir);
    const auto mg = decoder_model<float, gpu>::load(dir);
    const auto qs = questions();
    const int n = 6;
    graph_driver<float> driver(gctx());
    const sampling_params sp{.do_sample = true, .temperature = 0.9f, .top_k = 50};
    for (bool sample : {false, true}) {
      const auto o = fixed(n, 7);
      const auto params = sample ? sp : sampling_params{};
      const auto cpu_run = host_run<float, crossbatch::cpu>(hctx, params, o, {});
      const auto gpu_run = graph_run(driver, params, o, {});
      const std::string what = family + (sample ? " sampled" : " greedy");
      for (bool restart : {false, true})
        for (int tail : {0, 1}) {
          const fusion_prompt_options fo{
              .separator = {7, 8}, .shared_tail = tail, .restart_positions = restart};
          BOOST_TEST(fused_generate(gctx(), mg, qs, fo, o, gpu_run).tokens ==
                         fused_generate(hctx, mc, qs, fo, o, cpu_run).tokens,
                     what << " fused restart " << restart << " tail " << tail);
        }
      BOOST_TEST(concat_generate(gctx(), mg, qs, {.separator = {7}}, o, gpu_run).tokens ==
                     concat_generate(hctx, mc, qs, {.separator = {7}}, o, cpu_run).tokens,
                 what << " concat");
      BOOST_TEST(single_generate(gctx(), mg, qs, o, gpu_run).tokens ==
                     single_generate(hctx, mc, qs, o, cpu_run).tokens,
                 what << " single");
      const auto avg = same_combiner<mean_logits_combiner>(qs);
      BOOST_TEST(ensemble_generate(gctx(), mg, qs, avg, o, gpu_run).tokens ==
                     ensemble_generate(hctx, mc, qs, avg, o, cpu_run).tokens,
                 what << " avg");
      const auto mx = same_combiner<max_prob_combiner>(qs);
      BOOST_TEST(ensemble_generate(gctx(), mg, qs, mx, o, gpu_run).tokens ==
                     ensemble_generate(hctx, mc, qs, mx, o, cpu_run).tokens,
                 what << " max");
      const std::vector<weighted_mean_combiner> w = {weighted_avg_combiner({0.2f, 0.7f, 0.1f}),
                                                     weighted_max_combiner({0.4f}),
                                                     weighted_max_combiner({0.3f, 0.6f})};
      BOOST_TEST(ensemble_generate(gctx(), mg, qs, w, o, gpu_run).tokens ==
                     ensemble_generate(hctx, mc, qs, w, o, cpu_run).tokens,
                 what << " weighted");
    }
    std::filesystem::remove_all(dir);
  }
}

BOOST_AUTO_TEST_CASE(bfloat16_fused_and_ensemble_logits_match_cpu) {
  using T = crossbatch::bfloat16;
  const auto dir = cbtest::tiny_model_dir("llama", 5);
  const auto mc = decoder_model<T>::load(dir);
  const auto mg = decoder_model<T, gpu>::load(dir);
  const auto qs = questions();
  const auto fp = fused_prompts(qs, {7, 8}, 1);
  batch_session<T, crossbatch::cpu, segmented> sc(hctx, mc, fp, 2);
  batch_session<T, gpu, segmented> sg(gctx(), mg, fp, 2);
  sc.prefill();
  sg.prefill();
  cbtest::check_close<T>(sg.logits_host().view(), sc.logits_host().view(), "bf16 fused prefill");
  const auto rows = paraphrase_rows_of(qs);
  batch_session<T> ec(hctx, mc, rows.prompts, 2);
  batch_session<T, gpu> eg(gctx(), mg, rows.prompts, 2);
  const auto avg = same_combiner<mean_logits_combiner>(qs);
  ensemble_step<T, crossbatch::cpu, mean_logits_combiner> pc(ec, rows.offsets, avg);
  ensemble_step<T, gpu, mean_logits_combiner> pg(eg, rows.offsets, avg);
  pc.prefill();
  pg.prefill();
  gctx().synchronize();
  cbtest::check_close<T>(to_host(pg.logits()).view(), to_host(pc.logits()).view(),
                         "bf16 avg ensemble prefill");
  std::filesystem::remove_all(dir);
}
