// CPU attention microbenchmark: the vectorised, pooled kernel behind attention() (new) against the
// scalar single-threaded loop it replaced (old, copied below from commit b329538), on the
// SmolLM2-135M shape (9 query heads, 3 KV heads, head dim 64) over 30 layers' KV caches (so long
// contexts stream from memory as in a real decode step), per cache dtype and context length:
//   decode: one query token per sequence at the newest slot, causal + left padding (the engine's
//           mask), ms per 30-layer step;
//   prefill: the whole context as queries (causal), ms per 30 layers (shorter contexts only).
// Each new output is compared with the old one under the dtype's tolerance (dtype_traits); the
// program exits 1 on a mismatch. Prints a markdown table with the load average; --json writes rows.
//   bench_cpu_attention [--threads 1 2] [--contexts 256 2048 8192] [--batch 1] [--json out.json]
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "crossbatch/attention/attention.hpp"
#include "crossbatch/core/dtype.hpp"

using namespace crossbatch;

namespace {

// The previous attention() (scalar dot loop, one thread), kept as the baseline.
template <class T, mask_policy M>
void old_attention(tensor_view<T> out, tensor_view<const T> q, tensor_view<const T> keys,
                   tensor_view<const T> values, const M& mask, const attention_shape& a) {
  const index_t b = q.shape[0], tq = q.shape[1], h = q.shape[2], d = q.shape[3],
                hkv = keys.shape[1];
  const index_t group = h / hkv, s_len = a.kv_len;
  std::vector<float> qv(d), scores(s_len), acc(d);
  for (index_t bi = 0; bi < b; ++bi) {
    for (index_t hi = 0; hi < h; ++hi) {
      const index_t kvh = hi / group;
      for (index_t ti = 0; ti < tq; ++ti) {
        const int qs = a.q_start + static_cast<int>(ti);
        for (index_t j = 0; j < d; ++j) qv[j] = static_cast<float>(q(bi, ti, hi, j));
        std::fill(scores.begin(), scores.end(), -std::numeric_limits<float>::infinity());
        for (int k0 = 0; k0 < s_len; k0 += a.block) {
          const int k1 = std::min<int>(s_len, k0 + a.block);
          const tile kind = mask.tile_kind(static_cast<int>(bi), qs, qs + 1, k0, k1);
          if (kind == tile::empty) continue;
          for (int k = k0; k < k1; ++k) {
            if (kind == tile::partial && !mask.allowed(static_cast<int>(bi), qs, k)) continue;
            const T* kr = &keys(bi, kvh, k, 0);
            float dot = 0;
            for (index_t j = 0; j < d; ++j) dot += qv[j] * static_cast<float>(kr[j]);
            scores[k] = dot * a.scale;
          }
        }
        softmax_row(scores.data(), s_len);
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (index_t k = 0; k < s_len; ++k) {
          if (scores[k] == 0.0f) continue;
          const T* vr = &values(bi, kvh, k, 0);
          for (index_t j = 0; j < d; ++j) acc[j] += scores[k] * static_cast<float>(vr[j]);
        }
        for (index_t j = 0; j < d; ++j) out(bi, ti, hi, j) = static_cast<T>(acc[j]);
      }
    }
  }
}

double load_average() {
  double l = -1;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &l) != 1) l = -1;
    std::fclose(f);
  }
  return l;
}

template <class F>
double median_ms(int reps, const F& f) {
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct row {
  std::string dtype, mode;
  int context, threads;
  double old_ms, new_ms, max_diff, load;
};

template <class T>
tensor<T> random(shape_t shape, unsigned seed) {
  tensor<T> t(std::move(shape));
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = static_cast<T>(dist(gen));
  return t;
}

// One dtype, context and mode at each thread count: old once (single-threaded), new per count.
template <class T>
bool run_case(int batch, int kv_len, bool decode, const std::vector<int>& threads, int layers,
              std::vector<row>& rows) {
  constexpr int heads = 9, kv_heads = 3, d = 64;
  const int tq = decode ? 1 : kv_len, q_start = kv_len - tq;
  std::vector<tensor<T>> keys, values;
  for (int l = 0; l < layers; ++l) {
    keys.push_back(random<T>({batch, kv_heads, kv_len, d}, 10 + 2 * l));
    values.push_back(random<T>({batch, kv_heads, kv_len, d}, 11 + 2 * l));
  }
  auto q = random<T>({batch, tq, heads, d}, 3);
  std::vector<int> pad(batch, 0);
  for (int s = 1; s < batch; ++s) pad[s] = (s * 37) % std::max(1, kv_len / 4);
  const auto mask = all_of<causal, left_padding>(causal{}, left_padding{pad.data()});
  const attention_shape shape{q_start, kv_len, 1.0f / std::sqrt(float(d))};
  tensor<T> out_old({batch, tq, heads, d}), out_new({batch, tq, heads, d});
  // Repetitions: about 0.3 s of the old kernel (estimated from one layer), at least 3.
  const auto t0 = std::chrono::steady_clock::now();
  old_attention<T>(out_old.view(), q.view(), keys[0].view(), values[0].view(), mask, shape);
  const double one = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int reps = std::clamp(int(0.3 / std::max(1e-9, one * layers)), 3, 50);
  const double old_ms = median_ms(reps, [&] {
    for (int l = 0; l < layers; ++l)
      old_attention<T>(out_old.view(), q.view(), keys[l].view(), values[l].view(), mask, shape);
  });
  bool ok = true;
  for (int t : threads) {
    const context<cpu> ctx = cpu_context(t);
    const double new_ms = median_ms(std::max(reps, 5), [&] {
      for (int l = 0; l < layers; ++l)
        attention(ctx, out_new.view(), q.view(), keys[l].view(), values[l].view(), mask, shape);
    });
    // The last layer's outputs of both kernels, under the dtype's tolerance.
    double worst = 0;
    bool same = true;
    for (index_t i = 0; i < out_new.size(); ++i) {
      const double a = float(out_new.data()[i]), b = float(out_old.data()[i]);
      const double diff = std::fabs(a - b);
      if (!(diff <= dtype_traits<T>::atol + dtype_traits<T>::rtol * std::fabs(b))) same = false;
      worst = std::isnan(diff) ? INFINITY : std::max(worst, diff);
    }
    if (!same) {
      std::cerr << "bench_cpu_attention: " << dtype_traits<T>::name << " context " << kv_len
                << (decode ? " decode" : " prefill") << " threads " << t
                << ": new output differs from old beyond the dtype tolerance (max |diff| " << worst
                << ")\n";
      ok = false;
    }
    rows.push_back({dtype_traits<T>::name, decode ? "decode" : "prefill", kv_len, t, old_ms, new_ms,
                    worst, load_average()});
    std::cerr << "bench_cpu_attention: " << rows.back().dtype << " " << rows.back().mode << " "
              << kv_len << " threads " << t << ": old " << old_ms << " ms, new " << new_ms
              << " ms\n";
  }
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("CPU attention: vectorised pooled kernel vs the old scalar loop (SmolLM2 shape)");
  std::vector<int> threads = {1, 2}, contexts = {256, 2048, 8192}, prefill = {256, 512};
  std::vector<std::string> dtypes = {"float32", "bfloat16", "float16"};
  int batch = 1, layers = 30;
  std::string json_path;
  app.add_option("--threads", threads, "thread counts of the new kernel");
  app.add_option("--contexts", contexts, "decode context lengths");
  app.add_option("--prefill", prefill, "prefill lengths (queries = context)");
  app.add_option("--dtypes", dtypes, "cache dtypes");
  app.add_option("--batch", batch, "sequences");
  app.add_option("--layers", layers, "layers (separate KV caches) per step");
  app.add_option("--json", json_path, "write the rows as JSON here");
  CLI11_PARSE(app, argc, argv);

  std::vector<row> rows;
  bool ok = true;
  for (const auto& name : dtypes)
    ok &= dispatch_dtype(name, [&]<class T>() {
      bool good = true;
      for (int c : contexts) good &= run_case<T>(batch, c, true, threads, layers, rows);
      for (int c : prefill) good &= run_case<T>(batch, c, false, threads, layers, rows);
      return good;
    });

  std::cout << "| cache dtype | mode | context | threads | old ms/step | new ms/step | speedup | "
               "max |new-old| | load |\n|---|---|---|---|---|---|---|---|---|\n";
  nlohmann::json out = nlohmann::json::array();
  for (const auto& r : rows) {
    char line[256];
    std::snprintf(line, sizeof line, "| %s | %s | %d | %d | %.2f | %.3f | %.1fx | %.2g | %.2f |\n",
                  r.dtype.c_str(), r.mode.c_str(), r.context, r.threads, r.old_ms, r.new_ms,
                  r.old_ms / r.new_ms, r.max_diff, r.load);
    std::cout << line;
    out.push_back({{"dtype", r.dtype},
                   {"mode", r.mode},
                   {"context", r.context},
                   {"threads", r.threads},
                   {"batch", batch},
                   {"layers", layers},
                   {"old_ms", r.old_ms},
                   {"new_ms", r.new_ms},
                   {"max_abs_diff", r.max_diff},
                   {"loadavg", r.load}});
  }
  if (!json_path.empty()) std::ofstream(json_path) << out.dump(1) << "\n";
  if (!ok) std::cerr << "bench_cpu_attention: FAILED (outputs differ)\n";
  return ok ? 0 : 1;
}
