// Decode throughput of the CUDA backend on random-weight models of real shapes (GPT-2 124M,
// SmolLM2-135M, Qwen2.5-0.5B) in bfloat16: prompt 128, 128 new tokens, greedy, batch 1/8/64,
// through graph_generator (CUDA graph per step; the fused decode step where the batch allows, else
// run_layers) and, for comparison, the unfused step, the step launched eagerly, each with and
// without programmatic dependent launch. Also measures the device-to-device copy
// bandwidth and reports, at batch 1, the fraction of the bandwidth roofline (weight + KV bytes per
// step over that bandwidth). Each mode's greedy tokens are compared with those of the first mode
// listed (fused+pdl must equal fused bit for bit; the unfused modes round differently in places).
// --tune adds fused+pdl variants (fused_decode_options), e.g. "w8b8;w16b2;w16b8-attn;w16b8-argmax"
// (the defaults are w16b8): w = GEMV warps-per-SM target, b = GEMV blocks-per-SM cap, -attn =
// rope_kv + the attention op instead of the one-kernel attention, -argmax = the sampler kernel.
// Prints a table and writes JSON lines to --json.
//   bench_decode [--shapes a,b] [--batches 1,8,64] [--prompt 128] [--new 128] [--reps 3] [--json f]
//                [--modes fused+pdl,fused,graph+pdl,graph,eager] [--tune variants]
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
bool parse_variant(const std::string& v, fused_decode_options& o, bool& argmax) {
  o = fused_decode_options{};
  argmax = true;
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
        argmax = false;
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
    else
      return false;
    i += 1 + used;
  }
  return true;
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
  std::vector<std::string> modes = {"fused+pdl", "fused", "graph+pdl", "graph",
                                    "eager"};  // --modes picks
  std::vector<std::string> tune;
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
    else if (k == "--tune") {
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
              "ms/step", "roofline");
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
      std::vector<std::string> runs = modes;
      for (const auto& t : tune) runs.push_back("fused+pdl/" + t);
      std::vector<std::vector<int>> first_tokens;
      std::string first_mode;
      for (const auto& mode : runs) {
        const auto slash = mode.find('/');
        const std::string base = mode.substr(0, slash);
        g.fused_options = fused_decode_options{};
        g.fused_argmax = true;
        if (slash != std::string::npos &&
            !parse_variant(mode.substr(slash + 1), g.fused_options, g.fused_argmax)) {
          std::printf("bad --tune variant %s\n", mode.c_str());
          continue;
        }
        g.use_graph = base != "eager";
        g.fused = base.rfind("fused", 0) == 0;
        ctx.pdl = base.find("pdl") != std::string::npos;
        std::vector<double> total, decode;
        std::vector<std::vector<int>> tokens;
        try {
          g.generate(prompts, sampling_params{}, opt);  // warm-up (plans, module load)
          for (int r = 0; r < reps; ++r) {
            const auto res = g.generate(prompts, sampling_params{}, opt);
            total.push_back(res.prefill_seconds + res.decode_seconds);
            decode.push_back(res.decode_seconds);
            tokens = res.tokens;
          }
        } catch (const std::exception& e) {
          std::printf("%-14s %5d %-10s failed: %s\n", name.c_str(), b, mode.c_str(), e.what());
          ctx.pdl = false;
          cudaGetLastError();
          continue;
        }
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
        std::printf("%-14s %5d %-10s %10.0f %10.0f %9.3f %8.1f%%  tokens = %s: %d/%d\n",
                    name.c_str(), b, mode.c_str(), tps, dtps, step * 1e3, 100 * roof,
                    first_mode.c_str(), same, b);
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
                    {"total_s", t},
                    {"roofline_fraction", roof},
                    {"floor_ms_per_step", floor_s * 1e3},
                    {"same_tokens_as", first_mode},
                    {"same_sequences", same}})
                  .dump()
           << "\n";
      }
    }
  }
  return 0;
}
