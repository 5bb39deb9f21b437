// Paraphrase fusion on the GPU (default: SmolLM2-135M shape with random weights, bfloat16), batch
// of 8 questions x 5 paraphrases x 256 tokens:
//   prefill   the fused sequences (5 isolated segments, one separator token between them) with
//             the segment-isolation mask (empty tiles skipped) vs plain causal attention over the
//             same tokens. Target: isolation no slower. Check: the isolated prefill's logits equal
//             those of the same mask with tile skipping off (every tile evaluated per element).
//   generate  end to end (prefill + --new greedy tokens, fixed length, graph driver): fused
//             generation (one sequence per question) vs the avg ensemble (5 sequences per
//             question stepped together). Target: fusion >= 2x the ensemble's questions/s. Check:
//             each method's tokens equal the same step launched eagerly (no graph).
// Prints a table, exits 1 when a check fails.
//   bench_paraphrase [--shape smollm2-135m] [--model-dir DIR] [--batch 8] [--paraphrases 5]
//                    [--tokens 256] [--new 20] [--dtype bf16] [--reps 5] [--json out.json]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "../decode/random_model.cuh"
#include "compare.hpp"
#include "crossbatch/fusion/cuda/graph_run.cuh"

using namespace crossbatch;
using gpu = crossbatch::cuda;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The segmented mask with every tile evaluated element by element: the reference of tile skipping.
template <class M>
struct every_tile_partial {
  M inner;
  CROSSBATCH_HD bool allowed(int s, int q, int k) const { return inner.allowed(s, q, k); }
  CROSSBATCH_HD tile tile_kind(int, int, int, int, int) const { return tile::partial; }
};
struct segmented_reference : segmented {
  using mask_type = every_tile_partial<segmented::mask_type>;
  static mask_type mask(const layout_mask_state& m) { return {segmented::mask(m)}; }
};

template <class T>
int run(const std::string& shape, const std::string& model_dir, int batch, int paraphrases,
        int tokens, int fresh, int reps, const std::string& json_path) {
  context<gpu> ctx;
  const auto model = model_dir.empty() ? bench::random_decoder<T>(bench::shape_config(shape))
                                       : decoder_model<T, gpu>::load(model_dir);
  const auto& c = model.config;
  std::vector<paraphrase_question> qs(batch);
  for (int q = 0; q < batch; ++q)
    for (int p = 0; p < paraphrases; ++p) {
      std::vector<int> ids;
      for (int i = 0; i < tokens - (p % 3); ++i)  // slightly different lengths
        ids.push_back(int((q * 7919 + p * 104729 + i * 131) % (c.vocab_size - 1)) + 1);
      qs[q].paraphrases.push_back(ids);
    }
  const fusion_prompt_options fo{.separator = {c.vocab_size / 2}};
  const auto fused = fused_prompts(qs, fo.separator);
  const auto causal = concatenated_prompts(qs, fo.separator);
  bool failed = false;

  // Prefill: isolation vs causal over the same tokens; sessions built outside the timing.
  const auto time_prefill = [&](auto make) {
    std::vector<double> t;
    for (int r = 0; r < reps + 1; ++r) {
      auto s = make();
      ctx.synchronize();
      const auto t0 = std::chrono::steady_clock::now();
      s.prefill();
      ctx.synchronize();
      if (r > 0)
        t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return median(t);
  };
  const double t_iso =
      time_prefill([&] { return batch_session<T, gpu, segmented>(ctx, model, fused, 1); });
  const double t_causal =
      time_prefill([&] { return batch_session<T, gpu>(ctx, model, causal, 1); });
  {
    batch_session<T, gpu, segmented> a(ctx, model, fused, 1);
    batch_session<T, gpu, segmented_reference> b(ctx, model, fused, 1);
    a.prefill();
    b.prefill();
    const auto st = cbtest::compare(a.logits_host(), b.logits_host(), dtype_traits<T>::atol,
                                    dtype_traits<T>::rtol);
    std::printf("prefill check (tile skipping vs every tile): %s\n", st.summary().c_str());
    if (!st.ok()) failed = true;
  }

  // End to end: graph driver, fixed length; tokens checked against the eager step.
  generation_options o;
  o.max_new_tokens = fresh;
  o.stop_at_eos = false;
  graph_driver<T> driver(ctx);
  const auto time_method = [&](const std::string& name, auto&& call) {
    driver.options.use_graph = false;
    const auto want = call(graph_run(driver, sampling_params{}, o, {}), nullptr).tokens;
    driver.options.use_graph = true;
    std::vector<double> t;
    fusion_cost cost;
    for (int r = 0; r < reps + 1; ++r) {
      ctx.synchronize();
      const auto t0 = std::chrono::steady_clock::now();
      const auto got = call(graph_run(driver, sampling_params{}, o, {}), r == 1 ? &cost : nullptr);
      ctx.synchronize();
      if (r > 0)
        t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      if (got.tokens != want) {
        std::printf("%s: graph tokens differ from the eager step\n", name.c_str());
        failed = true;
      }
    }
    return std::pair{median(t), cost};
  };
  const auto [t_fused, c_fused] = time_method("fused", [&](auto run, fusion_cost* cost) {
    return fused_generate(ctx, model, qs, fo, o, run, cost);
  });
  const auto [t_avg, c_avg] = time_method("avg", [&](auto run, fusion_cost* cost) {
    return ensemble_generate(ctx, model, qs, same_combiner<mean_logits_combiner>(qs), o, run, cost);
  });

  const double qps_fused = batch / t_fused, qps_avg = batch / t_avg;
  std::printf("\n%s %s, %d questions x %d paraphrases x ~%d tokens, %d new tokens\n", shape.c_str(),
              dtype_traits<T>::name, batch, paraphrases, tokens, fresh);
  std::printf(
      "| what | ours | peer | ratio (peer / ours time) | target |\n|---|---|---|---|---|\n");
  std::printf("| prefill: isolation vs causal | %.2f ms | %.2f ms | %.2fx | >= 1 (no slower) |\n",
              t_iso * 1e3, t_causal * 1e3, t_causal / t_iso);
  std::printf("| generate: fused vs avg ensemble | %.1f q/s | %.1f q/s | %.2fx | >= 2 |\n",
              qps_fused, qps_avg, qps_fused / qps_avg);
  std::printf("| KV cache: fused vs avg ensemble | %.1f MiB | %.1f MiB | %.2fx | |\n",
              c_fused.kv_bytes / 1048576.0, c_avg.kv_bytes / 1048576.0,
              double(c_avg.kv_bytes) / double(c_fused.kv_bytes));
  std::printf("| tokens fed while decoding | %lld | %lld | | |\n", (long long)c_fused.decode_tokens,
              (long long)c_avg.decode_tokens);
  if (!json_path.empty()) {
    std::ofstream f(json_path);
    f << json{{"shape", shape},
              {"dtype", dtype_traits<T>::name},
              {"batch", batch},
              {"paraphrases", paraphrases},
              {"tokens", tokens},
              {"new_tokens", fresh},
              {"prefill_isolated_s", t_iso},
              {"prefill_causal_s", t_causal},
              {"fused_s", t_fused},
              {"avg_s", t_avg},
              {"fused_qps", qps_fused},
              {"avg_qps", qps_avg},
              {"fused_kv_bytes", c_fused.kv_bytes},
              {"avg_kv_bytes", c_avg.kv_bytes},
              {"fused_prompt_tokens", c_fused.prompt_tokens},
              {"avg_prompt_tokens", c_avg.prompt_tokens},
              {"fused_decode_tokens", c_fused.decode_tokens},
              {"avg_decode_tokens", c_avg.decode_tokens},
              {"checks_passed", !failed}}
             .dump()
      << "\n";
  }
  if (failed) std::puts("bench_paraphrase: FAILED: an output differs from its reference path");
  return failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string shape = "smollm2-135m", model_dir, dtype = "bf16", json_path;
  int batch = 8, paraphrases = 5, tokens = 256, fresh = 20, reps = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--shape")
      shape = v;
    else if (k == "--model-dir")
      model_dir = v;
    else if (k == "--batch")
      batch = std::stoi(v);
    else if (k == "--paraphrases")
      paraphrases = std::stoi(v);
    else if (k == "--tokens")
      tokens = std::stoi(v);
    else if (k == "--new")
      fresh = std::stoi(v);
    else if (k == "--reps")
      reps = std::stoi(v);
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
      return run<T>(shape, model_dir, batch, paraphrases, tokens, fresh, reps, json_path);
    });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_paraphrase: error: %s\n", e.what());
    return 1;
  }
}
