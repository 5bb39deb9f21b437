// ARMT prefill on the GPU, random weights: the sequential executor, the diagonal executor
// (strided-batched grouped layers) and a plain full-attention prefill of the base model, in one
// run, for the Llama-3.2-1B and a Llama-160M shape, (S, M) in {(512,128), (1024,128), (2048,128),
// (4096,128)} and inputs of 4k .. 128k tokens. Prints a table (seconds, speed-ups, FLOP/s, weight
// bytes per step) and writes JSON; checks the diagonal executor's last-segment logits and every
// layer's final A and z against the sequential executor's and exits 1 on a mismatch.
// Times are the executors' compute_seconds (the schedule's device time: after the buffers are
// allocated and the ids uploaded, until the last kernel; the result downloads excluded), the
// sequential executor both with the pinned batch-invariant GEMMs (the ones the diagonal executor
// shares) and with each shape's own heuristic GEMMs; the speed-up is against the faster of the
// two. The full-attention prefill is the base model's run_layers (the engine's attention kernel).
//   bench_armt [--dtype bfloat16] [--shapes llama-1b,llama-160m] [--budgets 150,60 (s per shape)]
//              [--configs 1024x128,...] [--lengths 4096,...] [--full-max 131072] [--json out.json]
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "crossbatch/recurrent/cuda/executors.cuh"
#include "crossbatch/recurrent/random_armt.hpp"
#include "decode/random_model.cuh"

using namespace crossbatch;
using gpu = crossbatch::cuda;  // plain `cuda` clashes with CCCL's namespace

namespace {

json shape(const std::string& name) {
  if (name == "llama-1b")  // Llama-3.2-1B
    return {{"model_type", "llama"},
            {"vocab_size", 128256},
            {"hidden_size", 2048},
            {"num_hidden_layers", 16},
            {"num_attention_heads", 32},
            {"num_key_value_heads", 8},
            {"head_dim", 64},
            {"intermediate_size", 8192},
            {"max_position_embeddings", 131072},
            {"rms_norm_eps", 1e-5},
            {"rope_theta", 500000.0},
            {"rope_scaling",
             {{"rope_type", "llama3"},
              {"factor", 32.0},
              {"low_freq_factor", 1.0},
              {"high_freq_factor", 4.0},
              {"original_max_position_embeddings", 8192}}},
            {"tie_word_embeddings", true}};
  if (name == "llama-160m")  // JackFram/llama-160m
    return {{"model_type", "llama"},           {"vocab_size", 32000},
            {"hidden_size", 768},              {"num_hidden_layers", 12},
            {"num_attention_heads", 12},       {"num_key_value_heads", 12},
            {"intermediate_size", 3072},       {"max_position_embeddings", 131072},
            {"rms_norm_eps", 1e-6},            {"rope_theta", 10000.0},
            {"tie_word_embeddings", false}};
  throw value_error("unknown shape '" + name + "' (llama-1b, llama-160m)");
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string p; std::getline(ss, p, ',');)
    if (!p.empty()) out.push_back(p);
  return out;
}

// FLOPs of one layer on `rows` rows attending causally over `rows` keys (projections + attention).
double layer_flops(const model_config& c, double rows) {
  const double C = c.hidden_size, F = c.intermediate_size, dh = c.head_dim;
  const double qkv = (c.num_heads + 2.0 * c.num_kv_heads) * dh, qd = c.num_heads * dh;
  return 2 * rows * (qkv * C + C * qd + 2 * F * C + C * F) + 2 * rows * rows * c.num_heads * dh;
}
double layer_weight_bytes(const model_config& c, double elem) {
  const double C = c.hidden_size, F = c.intermediate_size, dh = c.head_dim;
  const double qkv = (c.num_heads + 2.0 * c.num_kv_heads) * dh, qd = c.num_heads * dh;
  return elem * (qkv * C + C * qd + 3 * F * C + 2 * C);
}
// FLOPs of one cell's memory read (T rows) and write (M rows).
double memory_flops(const model_config& c, const armt_config& a) {
  const double C = c.hidden_size, T = a.rows(), M = a.num_mem_tokens, dm = a.d_mem, K = a.d_key();
  return 2 * T * (C * dm + K * C + K) + 2 * M * (C * dm + C * C + C + K * C + K) + 2 * C * M * K;
}

template <class T>
cuda_armt<T> random_armt(const json& cfg, int S, int M, std::uint64_t seed) {
  cuda_armt<T> m;
  m.base = bench::random_decoder<T>(cfg, seed);
  m.armt = parse_armt_config(json{{"segment_size", S}, {"num_mem_tokens", M}, {"d_mem", 64}},
                             m.base.config, "bench");
  std::uint64_t s = seed + 7;
  m.memory = bench::random_tensor<T>({M, m.base.config.hidden_size}, 0.0f, 0.5f, s);
  m.layers = upload_armt_layers(random_armt_layers(m.base.config, m.armt, seed + 11));
  m.stack_layers();
  return m;
}

using clock_type = std::chrono::steady_clock;
double since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}
template <class F>
double timed(const context<gpu>& ctx, F&& f) {
  ctx.synchronize();
  const auto t0 = clock_type::now();
  f();
  ctx.synchronize();
  return since(t0);
}

// max |a - b| / max(1, max |b|), +inf on a non-finite element.
double rel(const tensor<float>& a, const tensor<float>& b) {
  double d = 0, s = 1;
  for (index_t i = 0; i < b.size(); ++i) {
    const double x = double(a.data()[i]) - b.data()[i];
    if (!std::isfinite(x)) return INFINITY;
    d = std::max(d, std::fabs(x));
    s = std::max(s, std::fabs(double(b.data()[i])));
  }
  return d / s;
}

double max_diff(const armt_result& a, const armt_result& b) {
  return std::max({rel(a.logits[0], b.logits[0]), rel(a.states[0].A, b.states[0].A),
                   rel(a.states[0].z, b.states[0].z)});
}

template <class T>
int run(const std::vector<std::string>& shapes, const std::vector<double>& budgets,
        const std::vector<std::string>& configs, const std::vector<int>& lengths, int full_max,
        const std::string& json_file) {
  context<gpu> ctx;
  json results = json::array(), skipped = json::array();
  bool ok = true;
  auto save = [&] {
    if (!json_file.empty())
      std::ofstream(json_file) << json{{"dtype", dtype_traits<T>::name},
                                       {"results", results},
                                       {"skipped", skipped},
                                       {"pinned_fallbacks", pinned_fallbacks().load()}}
                                      .dump(2);
  };
  std::printf("| shape | S,M | tokens | full s | seq s | seq (heuristic GEMMs) s | diagonal s | "
              "diag/seq | diag/full | TFLOP/s diag (seq) | weight MB/step diag (seq) | rel diff |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  std::fflush(stdout);
  for (std::size_t si = 0; si < shapes.size(); ++si) {
    const auto& sh = shapes[si];
    const double budget = si < budgets.size() ? budgets[si] : 1e9;
    const auto shape_start = clock_type::now();
    const json cfg = shape(sh);
    std::map<int, double> full_seconds;
    {  // full-attention prefill of the base model, once per length
      auto base = bench::random_decoder<T>(cfg, 1);
      const auto& c = base.config;
      for (int n : lengths) {
        if (n > full_max) continue;
        try {
          decoder_workspace<T, gpu> ws(c, n);
          auto cache = base.make_cache(1, n);
          tensor<T, gpu> x({1, n, c.hidden_size});
          cuda_check(cudaMemset(x.data(), 0, sizeof(T) * x.size()), "zero x");
          std::vector<std::int32_t> hp(n);
          for (int i = 0; i < n; ++i) hp[i] = i;
          tensor<std::int32_t, gpu> pos({n});
          device_traits<gpu>::upload(pos.data(), hp.data(), sizeof(std::int32_t) * n);
          auto once = [&] {
            base.run_layers(ctx, x.view(), tensor_view<const std::int32_t, gpu>(pos.view()), cache,
                            0, causal{}, 0, c.num_layers, ws);
          };
          if (n == lengths.front()) timed(ctx, once);  // warm-up
          full_seconds[n] = timed(ctx, once);
        } catch (const crossbatch::error& e) {
          std::fprintf(stderr, "full attention at %d tokens: %s\n", n, e.what());
        }
        std::fprintf(stderr, "%s full attention %d tokens: %.3f s\n", sh.c_str(), n,
                     full_seconds.count(n) ? full_seconds[n] : -1.0);
      }
    }
    for (const auto& sm : configs) {
      int S = 0, M = 0;
      if (std::sscanf(sm.c_str(), "%dx%d", &S, &M) != 2) throw value_error("config '" + sm + "' (SxM)");
      if (since(shape_start) > budget) {
        skipped.push_back({{"shape", sh}, {"config", sm}, {"reason", "time budget"}});
        std::fprintf(stderr, "%s %s: skipped (shape's time budget of %.0f s spent)\n", sh.c_str(),
                     sm.c_str(), budget);
        continue;
      }
      const auto m = random_armt<T>(cfg, S, M, 3);
      const auto& c = m.config();
      const armt_options opt{.all_logits = false};
      std::mt19937 gen(5);
      std::uniform_int_distribution<int> id(0, c.vocab_size - 1);
      {  // warm-up: kernels and the pinned plans of small batch counts for this shape
        std::vector<std::vector<int>> w(1, std::vector<int>(4 * S));
        for (int& t : w[0]) t = id(gen);
        armt_sequential(ctx, m, w, opt);
        armt_sequential(ctx, m, w, opt, gemm_mode::heuristic);
        armt_diagonal(ctx, m, w, opt);
      }
      for (int n : lengths) {
        if (since(shape_start) > budget) {
          skipped.push_back({{"shape", sh}, {"config", sm}, {"tokens", n}, {"reason", "time budget"}});
          std::fprintf(stderr, "%s %s %d tokens: skipped (time budget)\n", sh.c_str(), sm.c_str(), n);
          continue;
        }
        std::vector<std::vector<int>> seqs(1, std::vector<int>(n));
        for (int& t : seqs[0]) t = id(gen);
        const auto rs = armt_sequential(ctx, m, seqs, opt);
        const auto rh = armt_sequential(ctx, m, seqs, opt, gemm_mode::heuristic);
        const auto rd = armt_diagonal(ctx, m, seqs, opt);
        const double ts = rs.compute_seconds, th = rh.compute_seconds, td = rd.compute_seconds;
        const double e = max_diff(rd, rs), e_heur = max_diff(rh, rs);
        const double tol = dtype_traits<T>::atol;
        const bool match = e <= tol;
        ok = ok && match;
        const double best_seq = std::min(ts, th);
        const int N = m.armt.segments(n), L = c.num_layers, steps = N + L - 1;
        const double flops = double(N) * L * (layer_flops(c, m.armt.rows()) + memory_flops(c, m.armt));
        const double wb = layer_weight_bytes(c, sizeof(T));
        const double diag_bytes = double(N) * L * wb / steps;  // every cell reads its layer once
        const double full = full_seconds.count(n) ? full_seconds[n] : NAN;
        std::printf("| %s | %d,%d | %d | %.3f | %.3f | %.3f | %.3f | %.2fx | %.2fx | %.1f (%.1f) | %.0f (%.0f) | %.1e%s |\n",
                    sh.c_str(), S, M, n, full, ts, th, td, best_seq / td, full / td,
                    flops / td / 1e12, flops / best_seq / 1e12, diag_bytes / 1e6, wb / 1e6, e,
                    match ? "" : " MISMATCH");
        std::fflush(stdout);
        results.push_back({{"shape", sh}, {"segment_size", S}, {"num_mem_tokens", M},
                           {"tokens", n}, {"segments", N}, {"layers", L},
                           {"full_attention_seconds", std::isfinite(full) ? json(full) : json()},
                           {"sequential_seconds", ts}, {"sequential_heuristic_seconds", th},
                           {"diagonal_seconds", td},
                           {"diagonal_speedup_vs_sequential", best_seq / td},
                           {"flops", flops}, {"diagonal_flops_per_s", flops / td},
                           {"sequential_flops_per_s", flops / best_seq},
                           {"weight_bytes_per_step_diagonal", diag_bytes},
                           {"weight_bytes_per_layer_call_sequential", wb},
                           {"max_rel_diff", e}, {"heuristic_sequential_rel_diff", e_heur},
                           {"tolerance", tol}, {"match", match}});
        save();
      }
    }
  }
  save();
  if (pinned_fallbacks().load() != 0)
    std::fprintf(stderr, "note: %ld matmuls ran without their pinned algorithm\n", pinned_fallbacks().load());
  if (!ok) std::fprintf(stderr, "MISMATCH: the diagonal executor differs from the sequential one\n");
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dtype = "bfloat16", shapes = "llama-1b,llama-160m",
              configs = "512x128,1024x128,2048x128,4096x128",
              lengths = "4096,8192,16384,32768,65536,131072", budgets, json_file;
  int full_max = 131072;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--dtype") dtype = v;
    else if (k == "--shapes") shapes = v;
    else if (k == "--configs") configs = v;
    else if (k == "--lengths") lengths = v;
    else if (k == "--full-max") full_max = std::stoi(v);
    else if (k == "--json") json_file = v;
    else if (k == "--budgets") budgets = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  try {
    std::vector<int> ls;
    for (const auto& l : split(lengths)) ls.push_back(std::stoi(l));
    std::vector<double> bs;
    for (const auto& b : split(budgets)) bs.push_back(std::stod(b));
    return dispatch_dtype(dtype, [&]<class T>() {
      return run<T>(split(shapes), bs, split(configs), ls, full_max, json_file);
    });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
