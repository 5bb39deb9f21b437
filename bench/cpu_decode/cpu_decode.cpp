// CPU decode throughput: prefill a batch of prompts, then time fixed-length greedy decode, of a
// converted model (--model-dir) or of a GPT-2-124M-shaped model with random weights, in float32 or
// with 16-bit weights and activations (--dtype bfloat16|float16: the float32 npy converted at
// load). Prints one JSON object per batch size on stdout (bench/cpu_decode/run.sh puts it next to
// llama.cpp; bench/cpu_decode/run_torch.sh next to PyTorch eager). Exits 1 when a greedy token is
// not the argmax of the uncached reference pass of the same model and dtype.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>

#include "crossbatch/generate/generate.hpp"
#include "crossbatch/generate/score.hpp"
#include "crossbatch/model/random_weights.hpp"

using namespace crossbatch;

int main(int argc, char** argv) {
  CLI::App app("CPU decode benchmark (a converted model, or random GPT-2 124M weights)");
  std::string dir = "/tmp/crossbatch_bench_gpt2_124m";
  std::vector<int> batches = {1, 8};
  int prompt = 64, new_tokens = 64, threads = 0, repeats = 3;
  std::string dtype = "float32";
  app.add_option("--dtype", dtype, "float32, bfloat16 or float16 (weights and activations)");
  app.add_option("--model-dir", dir, "where the random model is written (reused if present)");
  app.add_option("--batch", batches, "batch sizes");
  app.add_option("--prompt", prompt, "prompt length");
  app.add_option("--new-tokens", new_tokens, "tokens generated per sequence");
  app.add_option("--threads", threads, "CPU threads (0: all cores)");
  app.add_option("--repeats", repeats, "timed repetitions (median reported)");
  CLI11_PARSE(app, argc, argv);

  const json config = {{"model_type", "gpt2"},
                       {"vocab_size", 50257},
                       {"n_embd", 768},
                       {"n_layer", 12},
                       {"n_head", 12},
                       {"n_positions", 1024},
                       {"layer_norm_epsilon", 1e-5},
                       {"activation_function", "gelu_new"}};
  if (!std::filesystem::exists(dir + "/config.json")) {
    std::cerr << "writing random GPT-2 124M weights to " << dir << "\n";
    write_random_model(dir, config, 0);
  }
  context<cpu> ctx = cpu_context(threads);
  return dispatch_dtype(dtype, [&]<class T>() -> int {
  const auto model = decoder_model<T>::load(dir);
  const int vocab = model.config.vocab_size;
  for (int b : batches) {
    std::vector<std::vector<int>> prompts(b);
    for (int s = 0; s < b; ++s)
      for (int i = 0; i < prompt; ++i) prompts[s].push_back((s * 131 + i * 17) % vocab);
    generation_options opt;
    opt.max_new_tokens = new_tokens;
    opt.stop_at_eos = false;
    std::vector<double> decode, prefill;
    generation_result last;
    generate(ctx, model, prompts, greedy{}, [&] {
      auto o = opt;
      o.max_new_tokens = 4;
      return o;
    }());  // warm-up
    for (int r = 0; r < repeats; ++r) {
      auto res = generate(ctx, model, prompts, greedy{}, opt);
      decode.push_back(res.decode_seconds);
      prefill.push_back(res.prefill_seconds);
      std::cerr << "batch " << b << " repeat " << r + 1 << "/" << repeats << ": "
                << (b * (new_tokens - 1)) / res.decode_seconds << " tok/s\n";
      last = std::move(res);
    }
    // The check: every greedy token of sequence 0 is the argmax (within float32 tolerance) of the
    // logits one causal pass over prompt + generated tokens gives (the uncached reference path).
    {
      std::vector<int> seq = prompts[0];
      seq.insert(seq.end(), last.tokens[0].begin(), last.tokens[0].end() - 1);
      const auto ref = teacher_forced_logits(ctx, model, seq, "bench_cpu_decode check");
      const index_t V = model.config.vocab_size;
      for (std::size_t k = 0; k < last.tokens[0].size(); ++k) {
        const T* row = ref.data() + (index_t(prompt) - 1 + index_t(k)) * V;
        float best = -INFINITY;
        for (index_t v = 0; v < V; ++v) best = std::max(best, static_cast<float>(row[v]));
        const float got = static_cast<float>(row[last.tokens[0][k]]);
        const float tol = dtype_traits<T>::atol + dtype_traits<T>::rtol * std::abs(best);
        if (!(got >= best - tol)) {
          std::cerr << "bench_cpu_decode: CHECK FAILED at batch " << b << ", new token " << k
                    << ": decoded id " << last.tokens[0][k] << " has reference logit " << got
                    << ", the reference maximum is " << best << "\n";
          return 1;
        }
      }
      std::cerr << "batch " << b << ": check passed (" << last.tokens[0].size()
                << " greedy tokens = argmax of the uncached reference logits)\n";
    }
    std::sort(decode.begin(), decode.end());
    std::sort(prefill.begin(), prefill.end());
    const double d = decode[decode.size() / 2], p = prefill[prefill.size() / 2];
    // The first new token comes from the prefill; decode covers the other new_tokens - 1 steps.
    std::cout << json{{"impl", "crossbatch"},
                      {"batch", b},
                      {"prompt", prompt},
                      {"new_tokens", new_tokens},
                      {"threads", ctx.threads},
                      {"dtype", dtype_traits<T>::name},
                      {"decode_tokens_per_s", b * (new_tokens - 1) / d},
                      {"prefill_tokens_per_s", b * prompt / p},
                      {"ms_per_step", 1000 * d / (new_tokens - 1)}}
                     .dump()
              << std::endl;
  }
  return 0;
  });
}
