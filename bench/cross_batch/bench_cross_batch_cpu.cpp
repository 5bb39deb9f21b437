// Cost of cross-batch mixing in CPU decode (eager, float32): time per decode step of a batch for
// plain batched decoding (generate()) and for cross_batch_generate() with the identity mixer and
// with each mixer variant, on a model directory (default: the SmolLM2-135M-Instruct conversion).
// Prints a table and one JSON object per variant.
//   bench_cross_batch_cpu [--model-dir DIR] [--batch 8] [--prompt 64] [--new-tokens 16] [--groups
//   2]
//                         [--repeats 3] [--threads 0]
#include <CLI/CLI.hpp>
#include <algorithm>
#include <iostream>
#include <optional>

#include "crossbatch/generate/cross_batch.hpp"
#include "crossbatch/generate/generate.hpp"

using namespace crossbatch;

int main(int argc, char** argv) {
  CLI::App app("CPU cost of cross-batch mixing per decode step");
  std::string dir = "models/smollm2-135m-instruct";
  int batch = 8, prompt = 64, fresh = 16, groups = 2, repeats = 3, threads = 0;
  app.add_option("--model-dir", dir, "model directory");
  app.add_option("--batch", batch, "prompts per batch");
  app.add_option("--prompt", prompt, "prompt length");
  app.add_option("--new-tokens", fresh, "tokens generated per prompt");
  app.add_option("--groups", groups, "context groups in the batch");
  app.add_option("--repeats", repeats, "timed repetitions (median)");
  app.add_option("--threads", threads, "CPU threads (0: all cores)");
  CLI11_PARSE(app, argc, argv);
  try {
    context<cpu> ctx = cpu_context(threads);
    const auto model = decoder_model<float>::load(dir);
    const auto& c = model.config;
    std::vector<std::vector<int>> prompts(batch);
    std::vector<int> g(batch);
    for (int s = 0; s < batch; ++s) {
      for (int i = 0; i < prompt - (s % 4) * 3; ++i)
        prompts[s].push_back((s * 131 + i * 17) % c.vocab_size);
      g[s] = s * groups / batch;
    }
    cross_batch_options opt;
    opt.max_new_tokens = fresh;
    opt.stop_at_eos = false;
    opt.groups = g;
    auto median = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      return v[v.size() / 2];
    };
    auto time_steps = [&](auto&& once) {
      std::vector<double> ms;
      for (int r = 0; r < repeats; ++r) ms.push_back(1000.0 * once().decode_seconds / (fresh - 1));
      return median(ms);
    };
    std::printf(
        "%s, float32, batch %d (%d groups), prompt %d, %d new tokens, %d threads, median of %d\n",
        dir.c_str(), batch, groups, prompt, fresh, ctx.threads, repeats);
    const double plain = time_steps([&] { return generate(ctx, model, prompts, greedy{}, opt); });
    std::printf("| %-30s | %9.2f ms/step | %7s |\n", "plain generate()", plain, "-");
    std::cout << json{{"variant", "plain generate()"},
                      {"batch", batch},
                      {"threads", ctx.threads},
                      {"ms_per_step", plain}}
                     .dump()
              << "\n";
    struct v {
      std::string name;
      std::optional<mixer_kind> kind;
      combine_mode combine;
      int layer;
      mix_projection proj;
    };
    const int L = c.num_layers;
    const std::vector<v> variants = {
        {"identity mixer", std::nullopt, combine_mode::scale, -1, mix_projection::project},
        {"attention/scale @ -1", mixer_kind::attention, combine_mode::scale, -1,
         mix_projection::project},
        {"attention/gate @ -1", mixer_kind::attention, combine_mode::gate, -1,
         mix_projection::project},
        {"embedding/scale @ -1", mixer_kind::embedding, combine_mode::scale, -1,
         mix_projection::project},
        {"attention/scale @ " + std::to_string(L - 10) + " project", mixer_kind::attention,
         combine_mode::scale, L - 10, mix_projection::project},
        {"attention/scale @ " + std::to_string(L - 10) + " continue", mixer_kind::attention,
         combine_mode::scale, L - 10, mix_projection::continue_layers},
    };
    for (const auto& x : variants) {
      cross_batch_options o = opt;
      o.mix_layer = x.layer;
      o.projection = x.proj;
      double ms;
      if (!x.kind) {
        identity_mixer id;
        ms = time_steps([&] { return cross_batch_generate(ctx, model, prompts, id, greedy{}, o); });
      } else {
        mixer_config mc;
        mc.kind = *x.kind;
        mc.combine = x.combine;
        mc.hidden_size = c.hidden_size;
        cross_batch_mixer<float> m(init_mixer<float>(mc, 1));
        ms = time_steps([&] { return cross_batch_generate(ctx, model, prompts, m, greedy{}, o); });
      }
      std::printf("| %-30s | %9.2f ms/step | %+6.1f %% |\n", x.name.c_str(), ms,
                  100.0 * (ms / plain - 1.0));
      std::cout << json{{"variant", x.name},
                        {"batch", batch},
                        {"threads", ctx.threads},
                        {"ms_per_step", ms},
                        {"overhead_pct", 100.0 * (ms / plain - 1.0)}}
                       .dump()
                << "\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "bench_cross_batch_cpu: error: " << e.what() << "\n";
    return 1;
  }
}
