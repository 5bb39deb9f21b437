// Decode throughput of the CUDA backend on random-weight models of real shapes (GPT-2 124M,
// SmolLM2-135M, Qwen2.5-0.5B) in bfloat16: prompt 128, 128 new tokens, greedy, batch 1/8/64,
// through graph_generator (CUDA graph per step; the fused decode step where the batch allows, else
// run_layers) and, for comparison, the unfused step, the step launched eagerly, each with and
// without programmatic dependent launch. Also measures the device-to-device copy
// bandwidth and reports, at batch 1, the fraction of the bandwidth roofline (weight + KV bytes per
// step over that bandwidth). Prints a table and writes JSON lines to --json.
//   bench_decode [--shapes a,b] [--batches 1,8,64] [--prompt 128] [--new 128] [--reps 3] [--json f]
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

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> shapes = {"gpt2-124m", "smollm2-135m", "qwen2.5-0.5b"};
  std::vector<int> batches = {1, 8, 64};
  int prompt = 128, fresh = 128, reps = 3;
  std::string json_path;
  std::vector<std::string> modes = {"fused+pdl", "fused", "graph+pdl", "graph", "eager"};  // --modes picks
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--shapes") shapes = split(v);
    else if (k == "--batches") { batches.clear(); for (auto& x : split(v)) batches.push_back(std::stoi(x)); }
    else if (k == "--prompt") prompt = std::stoi(v);
    else if (k == "--new") fresh = std::stoi(v);
    else if (k == "--reps") reps = std::stoi(v);
    else if (k == "--json") json_path = v;
    else if (k == "--modes") modes = split(v);
    else { std::fprintf(stderr, "unknown flag %s\n", k.c_str()); return 2; }
  }
  if (cuda_device_count() == 0) {
    std::puts("no CUDA device: skipping");
    return 77;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  const double bw = copy_bandwidth();
  std::printf("device %s, %d SMs, copy bandwidth %.0f GB/s (read+write)\n", prop.name, prop.multiProcessorCount, bw / 1e9);
  std::ofstream js;
  if (!json_path.empty()) js.open(json_path);
  js << json({{"kind", "bandwidth"}, {"device", prop.name}, {"copy_bandwidth_gbs", bw / 1e9}}).dump() << "\n";
  std::printf("%-14s %5s %-10s %10s %10s %9s %9s\n", "shape", "batch", "mode", "tok/s", "dec tok/s", "ms/step", "roofline");
  context<gpu> ctx;
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
      graph_generator<bfloat16> g(ctx, model, b, prompt, fresh);
      for (const auto& mode : modes) {
        g.use_graph = mode != "eager";
        g.fused = mode.rfind("fused", 0) == 0;
        ctx.pdl = mode.find("pdl") != std::string::npos;
        std::vector<double> total, decode;
        try {
          g.generate(prompts, sampling_params{}, opt);  // warm-up (plans, module load)
          for (int r = 0; r < reps; ++r) {
            const auto res = g.generate(prompts, sampling_params{}, opt);
            total.push_back(res.prefill_seconds + res.decode_seconds);
            decode.push_back(res.decode_seconds);
          }
        } catch (const std::exception& e) {
          std::printf("%-14s %5d %-10s failed: %s\n", name.c_str(), b, mode.c_str(), e.what());
          ctx.pdl = false;
          cudaGetLastError();
          continue;
        }
        ctx.pdl = false;
        const double t = median(total), d = median(decode);
        const double tps = double(b) * fresh / t, dtps = double(b) * (fresh - 1) / d, step = d / (fresh - 1);
        const double floor_s = (bench::weight_bytes_per_step(c, 2) +
                                b * bench::kv_bytes_per_step(c, 2, prompt + fresh / 2.0)) / bw;
        const double roof = floor_s / step;
        std::printf("%-14s %5d %-10s %10.0f %10.0f %9.3f %8.1f%%\n", name.c_str(), b, mode.c_str(), tps, dtps, step * 1e3,
                    100 * roof);
        std::fflush(stdout);
        js << json({{"kind", "decode"}, {"shape", name}, {"batch", b}, {"mode", mode}, {"dtype", "bfloat16"},
                    {"prompt", prompt}, {"new_tokens", fresh}, {"tokens_per_s", tps}, {"decode_tokens_per_s", dtps},
                    {"ms_per_step", step * 1e3}, {"total_s", t}, {"roofline_fraction", roof},
                    {"floor_ms_per_step", floor_s * 1e3}})
                  .dump()
           << "\n";
      }
    }
  }
  return 0;
}
