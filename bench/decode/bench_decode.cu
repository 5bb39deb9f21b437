// Decode throughput of the CUDA backend on random-weight models of real shapes (GPT-2 124M,
// SmolLM2-135M, Qwen2.5-0.5B) in bfloat16: prompt 128, 128 new tokens, greedy, batch 1/8/16/32/64,
// through the graph driver (graph_generate: the step in one CUDA graph; the fused decode step where
// the batch allows, else the plain layers) and, for comparison, the unfused step, the step
// launched eagerly, each with and without programmatic dependent launch. Also measures the
// device-to-device copy bandwidth and reports the fraction of the bandwidth roofline (weight + KV
// bytes per step over that bandwidth). Every mode is checked: its kernels' logits over 4 decode
// steps fed the first mode's tokens must match the reference path (plain layers, no PDL) within the
// bfloat16 tolerance (per-row relative L2 error <= dtype_traits<bfloat16>::rtol); the program exits
// 1 when any mode fails, and the JSON row carries "check" and "max_logit_err". The greedy tokens
// are compared with the first mode's for information (random weights leave tiny margins).
// --tune adds fused+pdl variants (fused_decode_options), e.g. "w8b8;w16b2;w16b8-attn;w16b8-argmax"
// (the defaults are w16b8): w = GEMV warps-per-SM target, b = GEMV blocks-per-SM cap, -attn =
// rope_kv + the attention op instead of the one-kernel attention, -argmax = the sampler kernel,
// t<N> = tensor-core GEMV from batch N on (default t2), -cc = CUDA-core GEMV only (batch <= 16),
// m<N> = the fused step up to batch N only (default m32; m8: the step before the tensor-core
// GEMV; m64: batch 64 too). A mode that leaves a sticky CUDA error stops the program (exit 2).
// Each row names the route its batch takes (fused_decode_route: plain layers, fused on the
// CUDA-core GEMV, fused on the tensor-core GEMV).
// Prints a table and writes JSON lines to --json.
// The JSON rows also carry the prefill's time and tokens/s (batch x prompt over the prefill's
// median seconds: the first token's logits included).
//   bench_decode [--shapes a,b] [--batches 1,8,16,32,64] [--prompt 128] [--new 128] [--reps 3]
//   [--json f]
//                [--modes fused+pdl,fused,graph+pdl,graph,eager] [--tune variants]
// --prefill-probe 1 adds, per shape and batch, where the prefill's wall time goes: the eager
// prefill's host enqueue time and wall time, and the same prefill captured once as a CUDA graph and
// replayed (the GPU's own time, without the host's launches; its logits checked against the eager
// prefill's); JSON kind "prefill_probe".
//   bench_decode --config smollm2-135m    (prints the shape's config.json and exits)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "random_model.cuh"

using namespace crossbatch;
using gpu = crossbatch::cuda;

namespace {

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');) out.push_back(x);
  return out;
}

// Device-to-device copy bandwidth in bytes/s, counting bytes read plus bytes written.
double copy_bandwidth() {
  const std::size_t bytes = std::size_t(1) << 30;
  void *a = nullptr, *b = nullptr;
  cuda_check(cudaMalloc(&a, bytes), "cudaMalloc");
  cuda_check(cudaMalloc(&b, bytes), "cudaMalloc");
  cudaMemset(a, 1, bytes);
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  std::vector<float> ms;
  for (int i = 0; i < 12; ++i) {
    cudaEventRecord(e0);
    cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    float t = 0;
    cudaEventElapsedTime(&t, e0, e1);
    if (i >= 2) ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  cudaFree(a);
  cudaFree(b);
  return 2.0 * bytes / (ms[ms.size() / 2] * 1e-3);
}

// "w8b4-attn" -> options; returns false on a malformed variant.
bool parse_variant(const std::string& v, fused_decode_options& o) {
  o = fused_decode_options{};
  std::size_t i = 0;
  while (i < v.size()) {
    const char k = v[i];
    if (k == '-') {
      const auto rest = v.substr(i + 1);
      const auto end = rest.find('-');
      const auto word = rest.substr(0, end);
      if (word == "attn")
        o.fused_attention = false;
      else if (word == "argmax")
        o.fold_argmax = false;
      else if (word == "cc")
        o.tensor_cores = false;
      else
        return false;
      i += 1 + word.size();
      continue;
    }
    std::size_t used = 0;
    int n = 0;
    try {
      n = std::stoi(v.substr(i + 1), &used);
    } catch (...) {
      return false;
    }
    if (k == 'w')
      o.gemv_warps_per_sm = n;
    else if (k == 'b')
      o.gemv_blocks_per_sm = n;
    else if (k == 't')
      o.tensor_core_min_batch = n;
    else if (k == 'm')
      o.max_batch = n;
    else
      return false;
    i += 1 + used;
  }
  return true;
}

// Logits (steps, B, V) of the prefill and steps - 1 decode steps fed `forced` (B, >= steps - 1)
// under the given fused options (disabled: the plain layers), on the host as float.
std::vector<float> forced_logits(context<gpu>& ctx, const decoder_model<bfloat16, gpu>& model,
                                 const std::vector<std::vector<int>>& prompts,
                                 const std::vector<std::vector<int>>& forced,
                                 const fused_decode_options& f, int steps) {
  batch_session<bfloat16, gpu> s(ctx, model, prompts, steps);
  s.fused = f;
  std::vector<float> out;
  auto keep = [&] {
    const auto h = s.logits_host();
    out.insert(out.end(), h.data(), h.data() + h.size());
  };
  s.prefill(no_hooks{}, step_outputs{.hidden = false});
  keep();
  for (int i = 1; i < steps; ++i) {
    std::vector<std::int32_t> ids;
    for (const auto& f_seq : forced) ids.push_back(f_seq[i - 1]);
    // The graph step's kernels (the fused step unless disabled), eagerly: no hidden states.
    tensor<std::int32_t> host({index_t(ids.size())});
    std::copy(ids.begin(), ids.end(), host.data());
    const auto dev_ids = to_device<gpu>(host);
    s.step(tensor_view<const std::int32_t, gpu>(dev_ids.view()), no_hooks{},
           step_outputs{.hidden = false});
    keep();
  }
  ctx.synchronize();
  return out;
}

// Worst per-row relative L2 error of a against the reference rows (V each); NaN gives infinity.
double worst_row_error(const std::vector<float>& a, const std::vector<float>& ref, index_t v) {
  double worst = 0;
  for (std::size_t r = 0; r * v < ref.size(); ++r) {
    double num = 0, den = 0;
    for (index_t j = 0; j < v; ++j) {
      const double d = double(a[r * v + j]) - ref[r * v + j];
      num += d * d;
      den += double(ref[r * v + j]) * ref[r * v + j];
    }
    const double e = std::sqrt(num / std::max(den, 1e-30));
    if (!(e <= worst)) worst = std::isnan(e) ? INFINITY : e;
  }
  return worst;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The prefill of `prompts` (layers, final norm, LM head of the newest rows) timed three ways, reps
// times each (medians, seconds): host time to enqueue it eagerly, eager wall time (enqueue to
// synchronised), and the replay of the same launches captured once as a graph; err: the worst
// per-row relative L2 error of the replayed logits against the eager ones.
struct prefill_times {
  double enqueue = 0, eager = 0, graph = 0, err = 0;
};
prefill_times probe_prefill(context<gpu>& ctx, const decoder_model<bfloat16, gpu>& model,
                            const std::vector<std::vector<int>>& prompts, int reps) {
  using clock = std::chrono::steady_clock;
  std::vector<double> enqueue, eager, graph;
  tensor<float> want;  // the eager prefill's logits
  for (int r = 0; r <= reps; ++r) {  // r = 0: warm-up
    batch_session<bfloat16, gpu> s(ctx, model, prompts, 1);
    ctx.synchronize();
    const auto t0 = clock::now();
    s.prefill(no_hooks{}, step_outputs{.hidden = false});
    const auto t1 = clock::now();
    ctx.synchronize();
    const auto t2 = clock::now();
    if (r == 0) {
      want = s.logits_host();
      continue;
    }
    enqueue.push_back(std::chrono::duration<double>(t1 - t0).count());
    eager.push_back(std::chrono::duration<double>(t2 - t0).count());
  }
  batch_session<bfloat16, gpu> s(ctx, model, prompts, 1);
  step_graph g;
  g.capture(ctx.stream, [&] { s.prefill(no_hooks{}, step_outputs{.hidden = false}); });
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  for (int r = 0; r <= reps; ++r) {
    cudaEventRecord(e0, ctx.stream);
    g.launch(ctx.stream);
    cudaEventRecord(e1, ctx.stream);
    cuda_check(cudaEventSynchronize(e1), "prefill graph replay");
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    if (r > 0) graph.push_back(ms * 1e-3);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  const tensor<float> got = s.logits_host();
  const double err = worst_row_error(std::vector<float>(got.data(), got.data() + got.size()),
                                     std::vector<float>(want.data(), want.data() + want.size()),
                                     model.config.vocab_size);
  return {median(enqueue), median(eager), median(graph), err};
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // every line reaches the log, even before an abort
  std::vector<std::string> shapes = {"gpt2-124m", "smollm2-135m", "qwen2.5-0.5b"};
  std::vector<int> batches = {1, 8, 16, 32, 64};
  int prompt = 128, fresh = 128, reps = 3;
  std::string json_path;
  std::vector<std::string> modes = {"fused+pdl", "fused", "graph+pdl", "graph",
                                    "eager"};  // --modes picks
  std::vector<std::string> tune;
  bool prefill_probe = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--shapes")
      shapes = split(v);
    else if (k == "--batches") {
      batches.clear();
      for (auto& x : split(v)) batches.push_back(std::stoi(x));
    } else if (k == "--prompt")
      prompt = std::stoi(v);
    else if (k == "--new")
      fresh = std::stoi(v);
    else if (k == "--reps")
      reps = std::stoi(v);
    else if (k == "--json")
      json_path = v;
    else if (k == "--modes")
      modes = split(v);
    else if (k == "--prefill-probe")
      prefill_probe = v == "1";
    else if (k == "--config") {
      // The shape's Hugging Face config.json, for peers that build the same model
      // (bench/llama_cpp/make_gguf.py); needs no GPU.
      try {
        std::puts(bench::shape_config(v).dump(2).c_str());
        return 0;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_decode: %s\n", e.what());
        return 2;
      }
    } else if (k == "--tune") {
      std::stringstream ss(v);
      for (std::string x; std::getline(ss, x, ';');) tune.push_back(x);
    } else {
      std::fprintf(stderr, "unknown flag %s\n", k.c_str());
      return 2;
    }
  }
  if (cuda_device_count() == 0) {
    std::puts("no CUDA device: skipping");
    return 77;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  const double bw = copy_bandwidth();
  std::printf("device %s, %d SMs, copy bandwidth %.0f GB/s (read+write)\n", prop.name,
              prop.multiProcessorCount, bw / 1e9);
  std::ofstream js;
  if (!json_path.empty()) js.open(json_path);
  js << json({{"kind", "bandwidth"}, {"device", prop.name}, {"copy_bandwidth_gbs", bw / 1e9}})
            .dump()
     << "\n";
  std::printf("%-14s %5s %-10s %10s %10s %9s %9s\n", "shape", "batch", "mode", "tok/s", "dec tok/s",
              "ms/step", "roofline");  // then the check, the tokens and the route
  context<gpu> ctx;
  bool failed = false;        // a mode whose logits left the tolerance (or that threw)
  const int check_steps = 4;  // teacher-forced steps of the logits check
  for (const auto& name : shapes) {
    const json cfg = bench::shape_config(name);
    auto model = bench::random_decoder<bfloat16>(cfg);
    const auto& c = model.config;
    for (int b : batches) {
      std::mt19937 gen(42);
      std::uniform_int_distribution<int> tok(0, c.vocab_size - 1);
      std::vector<std::vector<int>> prompts(b, std::vector<int>(prompt));
      for (auto& p : prompts)
        for (auto& t : p) t = tok(gen);
      generation_options opt;
      opt.max_new_tokens = fresh;
      opt.stop_at_eos = false;
      std::vector<std::string> runs = modes;
      for (const auto& t : tune) runs.push_back("fused+pdl/" + t);
      std::vector<std::vector<int>> first_tokens;
      std::string first_mode;
      std::vector<float> reference;          // the plain layers' teacher-forced logits
      std::vector<std::vector<int>> forced;  // the tokens every mode's check is fed
      for (const auto& mode : runs) {
        const auto slash = mode.find('/');
        const std::string base = mode.substr(0, slash);
        fused_decode_options fused;
        if (slash != std::string::npos && !parse_variant(mode.substr(slash + 1), fused)) {
          std::printf("bad --tune variant %s\n", mode.c_str());
          failed = true;
          continue;
        }
        graph_driver_options driver;
        driver.use_graph = base != "eager";
        fused.enabled = base.rfind("fused", 0) == 0;
        std::vector<double> total, decode, prefill;
        std::vector<std::vector<int>> tokens;
        double err = 0;
        try {
          ctx.pdl = base.find("pdl") != std::string::npos;
          auto run = [&] {
            return graph_generate(ctx, model, prompts, sampling_params{}, opt, {}, fused, driver);
          };
          run();  // warm-up (plans, module load)
          for (int r = 0; r < reps; ++r) {
            const auto res = run();
            total.push_back(res.prefill_seconds + res.decode_seconds);
            decode.push_back(res.decode_seconds);
            prefill.push_back(res.prefill_seconds);
            tokens = res.tokens;
          }
          // Every mode is fed the first mode's tokens (the modes' own tokens part ways on these
          // nearly tied random-weight logits, which says nothing about correctness).
          if (reference.empty()) {
            forced = tokens;
            ctx.pdl = false;
            fused_decode_options plain;
            plain.enabled = false;
            reference = forced_logits(ctx, model, prompts, forced, plain, check_steps);
            ctx.pdl = base.find("pdl") != std::string::npos;
          }
          err = worst_row_error(forced_logits(ctx, model, prompts, forced, fused, check_steps),
                                reference, c.vocab_size);
          // An asynchronous fault (illegal address) is charged to this mode, not to the next.
          cuda_check(cudaDeviceSynchronize(), "end of the mode (asynchronous kernel error)");
        } catch (const std::exception& e) {
          std::printf("%-14s %5d %-10s failed: %s  [%s]\n", name.c_str(), b, mode.c_str(), e.what(),
                      fused_decode_route(model, b, fused));
          std::fflush(stdout);
          ctx.pdl = false;
          cudaGetLastError();
          failed = true;
          // A sticky error (an illegal address) leaves the CUDA context unusable: stop here, with
          // the rows so far written, instead of charging every later mode with it.
          if (cudaDeviceSynchronize() != cudaSuccess) {
            std::puts("bench_decode: FAILED: the CUDA context is broken (sticky error); stopping");
            return 2;
          }
          continue;
        }
        const bool pass = err <= dtype_traits<bfloat16>::rtol;
        failed |= !pass;
        ctx.pdl = false;
        // Sequences whose greedy tokens equal the first mode's.
        if (first_mode.empty()) {
          first_mode = mode;
          first_tokens = tokens;
        }
        int same = 0;
        for (int s = 0; s < b; ++s) same += tokens[s] == first_tokens[s];
        const double t = median(total), d = median(decode);
        const double tps = double(b) * fresh / t, dtps = double(b) * (fresh - 1) / d,
                     step = d / (fresh - 1);
        const double floor_s = (bench::weight_bytes_per_step(c, 2) +
                                b * bench::kv_bytes_per_step(c, 2, prompt + fresh / 2.0)) /
                               bw;
        const double roof = floor_s / step;
        const std::string route = fused_decode_route(model, b, fused);
        std::printf(
            "%-14s %5d %-10s %10.0f %10.0f %9.3f %8.1f%%  logits %s (%.1e)  tokens = %s: "
            "%d/%d  [%s]\n",
            name.c_str(), b, mode.c_str(), tps, dtps, step * 1e3, 100 * roof, pass ? "ok" : "FAIL",
            err, first_mode.c_str(), same, b, route.c_str());
        std::fflush(stdout);
        js << json({{"kind", "decode"},
                    {"shape", name},
                    {"batch", b},
                    {"mode", mode},
                    {"dtype", "bfloat16"},
                    {"prompt", prompt},
                    {"new_tokens", fresh},
                    {"tokens_per_s", tps},
                    {"decode_tokens_per_s", dtps},
                    {"ms_per_step", step * 1e3},
                    {"prefill_s", median(prefill)},
                    {"prefill_tokens_per_s", double(b) * prompt / median(prefill)},
                    {"total_s", t},
                    {"roofline_fraction", roof},
                    {"floor_ms_per_step", floor_s * 1e3},
                    {"check", pass ? "pass" : "fail"},
                    {"max_logit_err", err},
                    {"route", route},
                    {"same_tokens_as", first_mode},
                    {"same_sequences", same}})
                  .dump()
           << std::endl;
      }
      if (prefill_probe) {
        ctx.pdl = true;
        const auto pt = probe_prefill(ctx, model, prompts, reps);
        ctx.pdl = false;
        const bool pass = pt.err <= dtype_traits<bfloat16>::rtol;
        failed |= !pass;
        std::printf(
            "%-14s %5d prefill probe (T=%d, pdl): host enqueue %.3f ms, eager wall %.3f ms, "
            "graph replay %.3f ms (%.0f tok/s)  logits %s (%.1e)\n",
            name.c_str(), b, prompt, pt.enqueue * 1e3, pt.eager * 1e3, pt.graph * 1e3,
            double(b) * prompt / pt.graph, pass ? "ok" : "FAIL", pt.err);
        js << json({{"kind", "prefill_probe"},
                    {"shape", name},
                    {"batch", b},
                    {"prompt", prompt},
                    {"enqueue_s", pt.enqueue},
                    {"eager_s", pt.eager},
                    {"graph_s", pt.graph},
                    {"graph_tokens_per_s", double(b) * prompt / pt.graph},
                    {"check", pass ? "pass" : "fail"},
                    {"max_logit_err", pt.err}})
                  .dump()
           << std::endl;
      }
    }
  }
  if (failed) std::puts("bench_decode: FAILED: a mode's logits differ from the reference path");
  return failed ? 1 : 0;
}
