// Batched LDA vs the one-prompt-at-a-time loop of the reference, on the GPU, in one run: the same
// two models (random weights of a real shape, or converted model directories), the same 16
// prompts (different lengths: left padding), greedy, fixed length. Both sides use the graph driver
// (generate/cuda/graph_driver.cuh: both models' steps and the logit combination in one CUDA
// graph); the loop runs it once per prompt, as the reference runs its Python loop. Reported:
// tokens/s of each and their ratio (target >= 10x at batch 16; the reference expects 3-5x at batch
// 8), and the cost of one LDA decode step vs one step of a single model (plain_step) at the same
// batch. Checked: every prompt's logits of both models over --check-steps teacher-forced steps (fed
// the batched run's tokens), batched vs alone, per-row relative L2 error <= the dtype's rtol; the
// greedy tokens of batched vs alone are compared for information (a near-tie may flip under a
// different GEMM shape). Exits 1 when the check fails, 77 without a GPU.
//   bench_lda [--shape smollm2-135m | --after DIR --before DIR] [--batch 16] [--prompt 64]
//             [--new 64] [--alpha 1] [--dtype bf16|float32] [--reps 3] [--check-steps 4]
//             [--json out.json]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "../decode/random_model.cuh"
#include "crossbatch/generate/cuda/graph_driver.cuh"
#include "crossbatch/generate/lda.hpp"

using namespace crossbatch;
using gpu = crossbatch::cuda;

namespace {

using clock_type = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <class T>
struct lda_run {
  generation_result result;
  double seconds = 0;  // wall clock, sessions and capture included
};

// One LDA generation of `prompts` through the graph driver.
template <class T>
lda_run<T> run_lda(context<gpu>& ctx, graph_driver<T>& driver, const decoder_model<T, gpu>& after,
                   const decoder_model<T, gpu>& before,
                   const std::vector<std::vector<int>>& prompts, float alpha,
                   const generation_options& g) {
  ctx.synchronize();
  const auto t0 = clock_type::now();
  batch_session<T, gpu> a(ctx, after, prompts, g.max_new_tokens);
  batch_session<T, gpu> b(ctx, before, prompts, g.max_new_tokens);
  combined_step<T, gpu, left_padded, lda_combiner> policy({&a, &b}, lda_combiner{alpha});
  auto r = driver.run(policy, sampling_params{}, g, stop_ids(g, after.config));
  ctx.synchronize();
  return {std::move(r), std::chrono::duration<double>(clock_type::now() - t0).count()};
}

// Decode seconds per step of one model alone (plain_step) on `prompts`.
template <class T>
double single_model_step(context<gpu>& ctx, graph_driver<T>& driver,
                         const decoder_model<T, gpu>& model,
                         const std::vector<std::vector<int>>& prompts,
                         const generation_options& g) {
  batch_session<T, gpu> s(ctx, model, prompts, g.max_new_tokens);
  plain_step<T, gpu> policy(s);
  const auto r = driver.run(policy, sampling_params{}, g, stop_ids(g, model.config));
  return r.decode_seconds / (g.max_new_tokens - 1);
}

// Logits (rows of V) of both models over `steps` teacher-forced steps: the prefill's, then one per
// forced token (forced[b][i - 1] fed at step i), for all prompts at once.
template <class T>
std::vector<std::vector<float>> forced_logits(context<gpu>& ctx, const decoder_model<T, gpu>& after,
                                              const decoder_model<T, gpu>& before,
                                              const std::vector<std::vector<int>>& prompts,
                                              const std::vector<std::vector<int>>& forced,
                                              float alpha, int steps) {
  batch_session<T, gpu> a(ctx, after, prompts, steps), b(ctx, before, prompts, steps);
  combined_step<T, gpu, left_padded, lda_combiner> policy({&a, &b}, lda_combiner{alpha});
  std::vector<std::vector<float>> out(3);  // after, before, combined
  auto keep = [&] {
    ctx.synchronize();
    for (int m = 0; m < 2; ++m) {
      const auto h = (m == 0 ? a : b).logits_host();
      out[m].insert(out[m].end(), h.data(), h.data() + h.size());
    }
    const tensor<T> c = to_host(policy.logits());
    for (index_t i = 0; i < c.size(); ++i) out[2].push_back(float(c.data()[i]));
  };
  policy.prefill();
  keep();
  for (int i = 1; i < steps; ++i) {
    tensor<std::int32_t> host({index_t(prompts.size())});
    for (std::size_t p = 0; p < prompts.size(); ++p) host(index_t(p)) = forced[p][i - 1];
    const auto ids = to_device<gpu>(host);
    policy.step(tensor_view<const std::int32_t, gpu>(ids.view()), nullptr);
    keep();
  }
  return out;
}

// Worst per-row relative L2 error of rows `got` against `want` (V each); NaN gives infinity.
double worst_row_error(const std::vector<float>& got, const std::vector<float>& want, index_t v) {
  double worst = 0;
  for (std::size_t r = 0; r * v < want.size(); ++r) {
    double num = 0, den = 0;
    for (index_t j = 0; j < v; ++j) {
      const double d = double(got[r * v + j]) - want[r * v + j];
      num += d * d;
      den += double(want[r * v + j]) * want[r * v + j];
    }
    const double e = std::sqrt(num / std::max(den, 1e-30));
    if (!(e <= worst)) worst = std::isnan(e) ? INFINITY : e;
  }
  return worst;
}

struct args {
  std::string shape = "smollm2-135m", after_dir, before_dir, dtype = "bf16", json_path;
  int batch = 16, prompt = 64, fresh = 64, reps = 3, check_steps = 4;
  float alpha = 1.0f;
};

template <class T>
int run(const args& o) {
  context<gpu> ctx;
  const bool dirs = !o.after_dir.empty();
  const auto after = dirs ? decoder_model<T, gpu>::load(o.after_dir)
                          : bench::random_decoder<T>(bench::shape_config(o.shape), 1);
  const auto before = dirs ? decoder_model<T, gpu>::load(o.before_dir)
                           : bench::random_decoder<T>(bench::shape_config(o.shape), 2);
  check_same_vocabulary(after.config, before.config);
  const index_t V = after.config.vocab_size;
  std::vector<std::vector<int>> prompts(o.batch);
  for (int s = 0; s < o.batch; ++s) {
    const int len = o.prompt - (s * 5) % 17;  // up to 16 tokens of left padding
    for (int i = 0; i < len; ++i) prompts[s].push_back(int((s * 131 + i * 17 + 7) % V));
  }
  generation_options g;
  g.max_new_tokens = o.fresh;
  g.stop_at_eos = false;
  const std::string models = dirs ? o.after_dir + " vs " + o.before_dir : o.shape + " (random)";
  std::printf(
      "bench_lda: %s, %s, batch %d, prompts %d..%d tokens, %d new, greedy, alpha %g, "
      "median of %d\n",
      models.c_str(), dtype_traits<T>::name, o.batch, o.prompt - 16, o.prompt, o.fresh,
      double(o.alpha), o.reps);
  const std::string route_b = fused_decode_route(after, o.batch),
                    route_1 = fused_decode_route(after, 1);
  std::printf("decode step: batch %d %s, batch 1 %s\n", o.batch, route_b.c_str(), route_1.c_str());

  graph_driver<T> driver(ctx);
  run_lda(ctx, driver, after, before, prompts, o.alpha, g);  // warm-up (cuBLASLt plans, buffers)
  run_lda(ctx, driver, after, before, {prompts[0]}, o.alpha, g);
  std::vector<double> batched_s, loop_s, batched_step, loop_step;
  std::vector<std::vector<int>> batched_tokens, loop_tokens(o.batch);
  for (int r = 0; r < o.reps; ++r) {
    const auto b = run_lda(ctx, driver, after, before, prompts, o.alpha, g);
    batched_s.push_back(b.seconds);
    batched_step.push_back(b.result.decode_seconds / (o.fresh - 1));
    batched_tokens = b.result.tokens;
    double loop = 0, step = 0;
    for (int p = 0; p < o.batch; ++p) {
      const auto one = run_lda(ctx, driver, after, before, {prompts[p]}, o.alpha, g);
      loop += one.seconds;
      step += one.result.decode_seconds / (o.fresh - 1) / o.batch;
      loop_tokens[p] = one.result.tokens[0];
    }
    loop_s.push_back(loop);
    loop_step.push_back(step);
  }
  const double tokens = double(o.batch) * o.fresh;
  const double batched_tps = tokens / median(batched_s), loop_tps = tokens / median(loop_s);
  const double ratio = batched_tps / loop_tps;
  std::vector<double> single_b, single_1;
  for (int r = 0; r < o.reps; ++r) {
    single_b.push_back(single_model_step(ctx, driver, after, prompts, g));
    single_1.push_back(single_model_step(ctx, driver, after, {prompts[0]}, g));
  }
  const double lda_step_b = median(batched_step), lda_step_1 = median(loop_step);
  const double one_b = median(single_b), one_1 = median(single_1);

  // Check: teacher-forced logits, batched vs each prompt alone.
  const int K = std::min(o.check_steps, o.fresh);
  const auto ref = forced_logits(ctx, after, before, prompts, batched_tokens, o.alpha, K);
  double err[3] = {0, 0, 0};
  for (int p = 0; p < o.batch; ++p) {
    const auto alone =
        forced_logits(ctx, after, before, {prompts[p]}, {batched_tokens[p]}, o.alpha, K);
    for (int m = 0; m < 3; ++m)
      for (int i = 0; i < K; ++i) {
        // Row (step i, prompt p) of the batched run against row i of the lone run.
        const std::vector<float> want(ref[m].begin() + (index_t(i) * o.batch + p) * V,
                                      ref[m].begin() + (index_t(i) * o.batch + p + 1) * V);
        const std::vector<float> got(alone[m].begin() + index_t(i) * V,
                                     alone[m].begin() + index_t(i + 1) * V);
        err[m] = std::max(err[m], worst_row_error(got, want, V));
      }
  }
  const double rtol = dtype_traits<T>::rtol;
  const bool pass = err[0] <= rtol && err[1] <= rtol;
  int same_tokens = 0;
  for (int p = 0; p < o.batch; ++p) same_tokens += batched_tokens[p] == loop_tokens[p];

  std::printf("| path | tokens/s | ms per decode step | seconds for %d x %d tokens |\n", o.batch,
              o.fresh);
  std::printf("|---|---|---|---|\n");
  std::printf("| LDA batched (batch %d) | %.0f | %.4f | %.4f |\n", o.batch, batched_tps,
              1e3 * lda_step_b, median(batched_s));
  std::printf("| LDA one prompt at a time | %.0f | %.4f | %.4f |\n", loop_tps, 1e3 * lda_step_1,
              median(loop_s));
  std::printf("| ratio | %.2fx (target >= 10x) | | |\n", ratio);
  std::printf("| single model step, batch %d | | %.4f | LDA step / single = %.2fx |\n", o.batch,
              1e3 * one_b, lda_step_b / one_b);
  std::printf("| single model step, batch 1 | | %.4f | LDA step / single = %.2fx |\n", 1e3 * one_1,
              lda_step_1 / one_1);
  std::printf(
      "check: teacher-forced logits batched vs alone over %d steps: after %.2e, before "
      "%.2e (rtol %.0e), combined %.2e: %s; greedy tokens batched = alone for %d/%d "
      "prompts\n",
      K, err[0], err[1], rtol, err[2], pass ? "pass" : "FAIL", same_tokens, o.batch);
  if (!o.json_path.empty()) {
    std::ofstream f(o.json_path);
    f << json{{"models", models},
              {"dtype", dtype_traits<T>::name},
              {"batch", o.batch},
              {"prompt_tokens_max", o.prompt},
              {"new_tokens", o.fresh},
              {"alpha", o.alpha},
              {"reps", o.reps},
              {"batched_tokens_per_s", batched_tps},
              {"loop_tokens_per_s", loop_tps},
              {"ratio", ratio},
              {"batched_seconds", median(batched_s)},
              {"loop_seconds", median(loop_s)},
              {"lda_step_ms_batch", 1e3 * lda_step_b},
              {"lda_step_ms_1", 1e3 * lda_step_1},
              {"single_step_ms_batch", 1e3 * one_b},
              {"single_step_ms_1", 1e3 * one_1},
              {"lda_over_single_batch", lda_step_b / one_b},
              {"lda_over_single_1", lda_step_1 / one_1},
              {"logit_err_after", err[0]},
              {"logit_err_before", err[1]},
              {"logit_err_combined", err[2]},
              {"rtol", rtol},
              {"same_greedy_tokens", same_tokens},
              {"route_batch", route_b},
              {"route_1", route_1},
              {"check", pass ? "pass" : "fail"}}
             .dump(1)
      << "\n";
  }
  if (!pass) std::puts("bench_lda: FAILED: batched logits differ from one prompt at a time");
  return pass ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  args o;
  for (int i = 1; i < argc; i += 2) {
    const std::string k = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "bench_lda: %s needs a value\n", k.c_str());
      return 2;
    }
    const std::string v = argv[i + 1];
    try {
      if (k == "--shape")
        o.shape = v;
      else if (k == "--after")
        o.after_dir = v;
      else if (k == "--before")
        o.before_dir = v;
      else if (k == "--batch")
        o.batch = std::stoi(v);
      else if (k == "--prompt")
        o.prompt = std::stoi(v);
      else if (k == "--new")
        o.fresh = std::stoi(v);
      else if (k == "--alpha")
        o.alpha = std::stof(v);
      else if (k == "--reps")
        o.reps = std::stoi(v);
      else if (k == "--check-steps")
        o.check_steps = std::stoi(v);
      else if (k == "--dtype")
        o.dtype = v;
      else if (k == "--json")
        o.json_path = v;
      else {
        std::fprintf(stderr, "bench_lda: unknown flag %s\n", k.c_str());
        return 2;
      }
    } catch (const std::exception&) {
      std::fprintf(stderr, "bench_lda: %s: not a number: %s\n", k.c_str(), v.c_str());
      return 2;
    }
  }
  if (o.after_dir.empty() != o.before_dir.empty()) {
    std::fprintf(stderr, "bench_lda: give both --after and --before, or neither\n");
    return 2;
  }
  if (o.batch < 1 || o.prompt < 17 || o.fresh < 2 || o.reps < 1 || o.check_steps < 1) {
    std::fprintf(stderr, "bench_lda: need --batch >= 1, --prompt >= 17, --new >= 2, --reps >= 1\n");
    return 2;
  }
  try {
    if (cuda_device_count() == 0) {
      std::puts("bench_lda: no CUDA device");
      return 77;
    }
    return dispatch_dtype(o.dtype, [&]<class T>() { return run<T>(o); });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_lda: error: %s\n", e.what());
    return 1;
  }
}
