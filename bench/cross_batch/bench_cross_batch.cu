// Cost of cross-batch mixing in GPU decode: time per decode step of a batch (default 32 prompts of
// 128 tokens, 128 new tokens, greedy, fixed length) for plain batched decoding and for each mixer
// variant, all through the graph driver (the step captured as one CUDA graph): plain_step for plain
// decoding, cross_batch_step for the mixers. Each variant's tokens are checked against the same
// step launched eagerly (no graph: the reference path of the device-driven step); the program
// exits 1 when they differ. Random weights of a real shape (bench/decode/random_model.cuh) or a
// model directory. Target: mixing costs at most 10 % more time per token than plain decoding.
//   bench_cross_batch [--shape smollm2-135m] [--model-dir DIR] [--batch 32] [--prompt 128] [--new
//   128]
//                     [--dtype bf16|float16|float32] [--groups 4] [--reps 5] [--pdl 1] [--json
//                     out.json]
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "../decode/random_model.cuh"
#include "crossbatch/generate/cross_batch.hpp"
#include "crossbatch/generate/cuda/graph_driver.cuh"

using namespace crossbatch;
using gpu = crossbatch::cuda;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct variant {
  std::string name;
  bool mixer;
  mixer_kind kind;
  combine_mode combine;
  int layer;  // transformers index; -1 last
  mix_projection projection;
};

template <class T>
int run(const std::string& shape, const std::string& model_dir, int batch, int prompt, int fresh,
        int n_groups, int reps, bool pdl, const std::string& json_path) {
  context<gpu> ctx;
  ctx.pdl = pdl;
  const auto model = model_dir.empty() ? bench::random_decoder<T>(bench::shape_config(shape))
                                       : decoder_model<T, gpu>::load(model_dir);
  const auto& c = model.config;
  const int L = c.num_layers;
  std::vector<std::vector<int>> prompts(batch);
  std::vector<int> groups(batch);
  for (int s = 0; s < batch; ++s) {
    const int len = prompt - (s % 4) * 3;  // some left padding
    for (int i = 0; i < len; ++i) prompts[s].push_back((s * 131 + i * 17) % c.vocab_size);
    groups[s] = s * n_groups / batch;
  }
  cross_batch_options opt;
  opt.max_new_tokens = fresh;
  opt.stop_at_eos = false;
  opt.groups = groups;
  sampling_params greedy_params;

  const std::vector<variant> variants = {
      {"plain (plain_step, no mixer)", false, mixer_kind::attention, combine_mode::scale, -1,
       mix_projection::project},
      {"attention/scale @ -1", true, mixer_kind::attention, combine_mode::scale, -1,
       mix_projection::project},
      {"attention/alpha @ -1", true, mixer_kind::attention, combine_mode::alpha, -1,
       mix_projection::project},
      {"attention/gate @ -1", true, mixer_kind::attention, combine_mode::gate, -1,
       mix_projection::project},
      {"embedding/scale @ -1", true, mixer_kind::embedding, combine_mode::scale, -1,
       mix_projection::project},
      {"embedding/gate @ -1", true, mixer_kind::embedding, combine_mode::gate, -1,
       mix_projection::project},
      {"attention/scale @ " + std::to_string(L - 10) + " project", true, mixer_kind::attention,
       combine_mode::scale, L - 10, mix_projection::project},
      {"attention/scale @ " + std::to_string(L - 10) + " continue", true, mixer_kind::attention,
       combine_mode::scale, L - 10, mix_projection::continue_layers},
  };
  std::ofstream json_out;
  if (!json_path.empty()) json_out.open(json_path, std::ios::app);
  std::printf("%s %s, batch %d (%d groups), prompt %d, %d new tokens, pdl %d, median of %d\n",
              shape.c_str(), dtype_traits<T>::name, batch, n_groups, prompt, fresh, int(pdl), reps);

  graph_driver<T> driver(ctx);
  bool failed = false;
  double plain_ms = 0;
  for (const auto& v : variants) {
    std::optional<cross_batch_mixer<T, gpu>> mixer;
    if (v.mixer) {
      mixer_config mc;
      mc.kind = v.kind;
      mc.combine = v.combine;
      mc.hidden_size = c.hidden_size;
      mc.num_heads = c.hidden_size % 8 == 0 ? 8 : 1;
      mixer.emplace(init_mixer<float>(mc, 1).template cast<T, gpu>());
    }
    cross_batch_options o = opt;
    o.mix_layer = v.layer;
    o.projection = v.projection;
    auto run = [&](bool graph) {
      driver.options.use_graph = graph;
      batch_session<T, gpu> session(ctx, model, prompts, o.max_new_tokens);
      const auto& eos = stop_ids(o, c);
      if (!mixer) {
        plain_step<T, gpu> policy(session);
        return driver.run(policy, greedy_params, o, eos);
      }
      cross_batch_step<T, gpu, cross_batch_mixer<T, gpu>> policy(session, *mixer, o.mix_layer,
                                                                 o.projection, o.groups);
      return driver.run(policy, greedy_params, o, eos);
    };
    run(true);  // warm-up
    std::vector<double> ms;
    std::vector<std::vector<int>> tokens;
    for (int r = 0; r < reps; ++r) {
      const auto res = run(true);
      ms.push_back(1000.0 * res.decode_seconds / (fresh - 1));
      tokens = res.tokens;
    }
    const bool same = run(false).tokens == tokens;
    failed |= !same;
    const double m = median(ms);
    if (!v.mixer) plain_ms = m;
    const double over = plain_ms > 0 ? 100.0 * (m / plain_ms - 1.0) : 0.0;
    std::printf("| %-34s | %8.4f ms/step | %+6.1f %% | %s |\n", v.name.c_str(), m, over,
                same ? "= eager" : "DIFFERS from eager");
    if (json_out)
      json_out << json{{"shape", shape},
                       {"dtype", dtype_traits<T>::name},
                       {"batch", batch},
                       {"pdl", pdl},
                       {"groups", n_groups},
                       {"variant", v.name},
                       {"ms_per_step", m},
                       {"overhead_vs_plain_pct", over},
                       {"check", same ? "pass" : "fail"}}
                      .dump()
               << "\n";
  }
  if (failed) std::puts("bench_cross_batch: FAILED: graph tokens differ from the eager step");
  return failed ? 1 : 0;
}
}  // namespace

int main(int argc, char** argv) {
  std::string shape = "smollm2-135m", model_dir, dtype = "bf16", json_path;
  int batch = 32, prompt = 128, fresh = 128, groups = 4, reps = 5, pdl = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--shape")
      shape = v;
    else if (k == "--model-dir")
      model_dir = v;
    else if (k == "--batch")
      batch = std::stoi(v);
    else if (k == "--prompt")
      prompt = std::stoi(v);
    else if (k == "--new")
      fresh = std::stoi(v);
    else if (k == "--groups")
      groups = std::stoi(v);
    else if (k == "--reps")
      reps = std::stoi(v);
    else if (k == "--pdl")
      pdl = std::stoi(v);
    else if (k == "--dtype")
      dtype = v;
    else if (k == "--json")
      json_path = v;
    else {
      std::fprintf(stderr, "unknown flag %s\n", k.c_str());
      return 2;
    }
  }
  try {
    if (cuda_device_count() == 0) {
      std::puts("no CUDA device");
      return 77;
    }
    return dispatch_dtype(dtype, [&]<class T>() {
      return run<T>(shape, model_dir, batch, prompt, fresh, groups, reps, pdl != 0, json_path);
    });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cross_batch: error: %s\n", e.what());
    return 1;
  }
}
