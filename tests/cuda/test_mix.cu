// The CUDA cross-batch mixers against the CPU mixers: every kind and combine mode in float32,
// float16 and bfloat16 on random weights and states (also row-strided input), group masks and
// lonely samples (their rows come back bit-exact), batches up to 64; cross-batch generation on the
// GPU (eager and graph-captured, every projection, EOS retiring samples) token-identical to the CPU
// in float32.
#define BOOST_TEST_MODULE cuda_mix
#include "gpu_main.hpp"
// gpu_main.hpp first: it configures Boost.Test for everything below.

#include "crossbatch/cuda.hpp"
#include "crossbatch/generate/cross_batch.hpp"
#include "crossbatch/generate/cuda/graph_driver.cuh"
#include "crossbatch/mix/cuda/ops.cuh"
#include "crossbatch/mix/mixer.hpp"
#include "mix/mix_helpers.hpp"
#include "tiny_models.hpp"

using namespace crossbatch;
using namespace cbgpu;

namespace {

template <class T>
tensor<T> cast_host(const tensor<float>& f) {
  tensor<T> t(f.shape());
  for (index_t i = 0; i < f.size(); ++i) t.data()[i] = static_cast<T>(f.data()[i]);
  return t;
}

}  // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(mixers_match_cpu, T, dtypes) {
  for (int b : {1, 2, 5, 64})
    for (const auto& v : cbtest::all_variants()) {
      const auto cfg = cbtest::variant_config(v, 96, 4);
      const auto w = cbtest::random_mixer<float>(cfg, 21 + b, 0.3f);
      cross_batch_mixer<T> cpu_mixer(w.cast<T>());
      cross_batch_mixer<T, gpu> gpu_mixer(w.cast<T, gpu>());
      // Rows of a (B, 2C) buffer: the states are the left half (row stride 2C).
      const auto wide = cast_host<T>(cbtest::random_tensor<float>({b, 192}, 30 + b, -2, 2));
      const tensor_view<const T> h(wide.data(), {b, 96}, {192, 1});
      std::vector<int> groups(b);
      for (int i = 0; i < b; ++i) groups[i] = i % 7 == 6 ? -1 : i % 3;
      tensor<T> want({b, 96});
      cpu_mixer.mix(hctx, want.view(), h, groups);
      const auto dwide = up(wide);
      const tensor_view<const T, gpu> dh(dwide.data(), {b, 96}, {192, 1});
      tensor<T, gpu> got({b, 96});
      gpu_mixer.mix(gctx(), got.view(), dh, groups);
      gctx().synchronize();
      const auto g = down(got);
      cbtest::check_close<T>(tensor_view<const T>(g.view()), tensor_view<const T>(want.view()),
                             v.name() + " B=" + std::to_string(b), 2.0f);
      for (int i = 0; i < b; ++i) {
        int partners = 0;
        for (int j = 0; j < b; ++j) partners += j != i && groups[i] >= 0 && groups[j] == groups[i];
        if (partners) continue;
        for (int j = 0; j < 96; ++j) BOOST_TEST(float(g(i, j)) == float(h(i, j)));
      }
    }
}

BOOST_AUTO_TEST_CASE(cross_batch_generation_matches_cpu) {
  const auto dir = cbtest::tiny_model_dir("llama", 3);
  const auto model = decoder_model<float>::load(dir);
  const auto dmodel = decoder_model<float, gpu>::load(dir);
  mixer_config cfg = cbtest::variant_config({mixer_kind::attention, combine_mode::gate},
                                            model.config.hidden_size, 4);
  const auto w = cbtest::random_mixer<float>(cfg, 5, 0.3f);
  const std::vector<std::vector<int>> prompts = {{5, 9, 13, 2}, {3, 7}, {11, 12, 40, 41, 42}, {8}};
  for (auto proj : {mix_projection::project, mix_projection::continue_layers})
    for (int layer : {-1, 1}) {
      cross_batch_options opt;
      opt.max_new_tokens = 6;
      opt.stop_at_eos = false;
      opt.mix_layer = layer;
      opt.projection = proj;
      opt.groups = {0, 0, 1, 1};
      cross_batch_mixer<float> cm(w.cast<float>());
      cross_batch_mixer<float, gpu> gm(w.cast<float, gpu>());
      const auto want = cross_batch_generate(hctx, model, prompts, cm, greedy{}, opt);
      const auto got = cross_batch_generate(gctx(), dmodel, prompts, gm, greedy{}, opt);
      BOOST_TEST(got.tokens == want.tokens, "layer " << layer);
    }
  std::filesystem::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(graph_decoder_matches_cpu) {
  const auto dir = cbtest::tiny_model_dir("qwen2", 5);
  const auto model = decoder_model<float>::load(dir);
  const auto dmodel = decoder_model<float, gpu>::load(dir);
  const mixer_config cfg = cbtest::variant_config({mixer_kind::embedding, combine_mode::gate},
                                                  model.config.hidden_size, 4);
  const auto w = cbtest::random_mixer<float>(cfg, 9, 0.3f);
  const std::vector<std::vector<int>> prompts = {{5, 9, 13, 2}, {3, 7},    {11, 12, 40, 41, 42},
                                                 {8},           {6, 6, 6}, {1, 2}};
  graph_driver<float> driver(gctx());
  for (bool with_mixer : {false, true})
    for (auto proj :
         {mix_projection::project, mix_projection::project_raw, mix_projection::continue_layers})
      for (int layer : {-1, 1})
        for (bool graph : {true, false}) {
          cross_batch_options opt;
          opt.max_new_tokens = 7;
          opt.mix_layer = layer;
          opt.projection = proj;
          opt.groups = {0, 0, 1, 1, 1, 2};
          opt.eos_ids = {17, 23, 40};
          cross_batch_mixer<float> cm(w.cast<float>());
          cross_batch_mixer<float, gpu> gm(w.cast<float, gpu>());
          identity_mixer id;
          const auto want = with_mixer
                                ? cross_batch_generate(hctx, model, prompts, cm, greedy{}, opt)
                                : cross_batch_generate(hctx, model, prompts, id, greedy{}, [&] {
                                    auto o = opt;
                                    o.mix_layer = -1;
                                    return o;
                                  }());
          driver.options.use_graph = graph;
          batch_session<float, gpu> session(gctx(), dmodel, prompts, opt.max_new_tokens);
          generation_result got;
          if (with_mixer) {
            cross_batch_step<float, gpu, cross_batch_mixer<float, gpu>> policy(
                session, gm, opt.mix_layer, opt.projection, opt.groups);
            got = driver.run(policy, sampling_params{}, opt, opt.eos_ids);
          } else {
            plain_step<float, gpu> policy(session);
            got = driver.run(policy, sampling_params{}, opt, opt.eos_ids);
          }
          BOOST_TEST(got.tokens == want.tokens, "mixer " << with_mixer << " " << to_string(proj)
                                                         << " layer " << layer << " graph "
                                                         << graph);
          BOOST_TEST(got.stopped_at_eos == want.stopped_at_eos);
        }
  std::filesystem::remove_all(dir);
}
