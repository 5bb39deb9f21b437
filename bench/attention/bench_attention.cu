// Prefill attention time on the GPU for a paraphrase-fusion prompt: 5 segments of 256 tokens (a
// shared prefix, segment 0, and 4 isolated segments), under segment isolation (with causal), plain
// causal, and a dense boolean mask of the same pattern (no tile information: every tile is
// computed and tested per element, as a materialised mask would be). bfloat16, Qwen2.5-like heads
// (14 query heads, 2 KV heads, D 64). Each mask runs on the CUDA-core kernel and on the
// tensor-core kernel (context<cuda>::tensor_core_attention) in the same run; the tensor-core
// output must match the CUDA-core output within the bfloat16 tolerance (tests/compare.hpp), else
// the program exits 1. Medians of CUDA-event timings after a warm-up.
//   bench_attention [--batch 4] [--reps 50] [--json f]
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "compare.hpp"
#include "crossbatch/cuda.hpp"

using namespace crossbatch;
using gpu = crossbatch::cuda;

namespace {

// An explicit (B, T, T) boolean mask; says nothing about tiles.
struct dense_mask {
  const unsigned char* m = nullptr;
  int t = 0;
  CROSSBATCH_HD bool allowed(int s, int q, int k) const {
    return m[(index_t(s) * t + q) * t + k] != 0;
  }
  CROSSBATCH_HD tile tile_kind(int, int, int, int, int) const { return tile::partial; }
};

template <class T>
__global__ void fill(T* p, index_t n, std::uint64_t seed) {
  const counter_rng rng{seed};
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
       i += index_t(gridDim.x) * blockDim.x)
    p[i] = cuda_detail::from_f<T>(2.0f * rng.uniform(0, std::uint64_t(i)) - 1.0f);
}

template <class M>
double time_ms(const context<gpu>& ctx, int reps, tensor<bfloat16, gpu>& out,
               const tensor<bfloat16, gpu>& q, const tensor<bfloat16, gpu>& k,
               const tensor<bfloat16, gpu>& v, const M& mask, int t) {
  const attention_shape a{0, t, 0.125f};
  auto run = [&] { attention(ctx, out.view(), q.view(), k.view(), v.view(), mask, a); };
  for (int i = 0; i < 3; ++i) run();
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  std::vector<float> ms;
  for (int i = 0; i < reps; ++i) {
    cudaEventRecord(e0, ctx.stream);
    run();
    cudaEventRecord(e1, ctx.stream);
    cudaEventSynchronize(e1);
    float x = 0;
    cudaEventElapsedTime(&x, e0, e1);
    ms.push_back(x);
  }
  cuda_check(cudaGetLastError(), "attention");
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int batch = 4, reps = 50;
  std::string json_path;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--batch")
      batch = std::stoi(v);
    else if (k == "--reps")
      reps = std::stoi(v);
    else if (k == "--json")
      json_path = v;
  }
  if (cuda_device_count() == 0) {
    std::puts("no CUDA device: skipping");
    return 77;
  }
  const int segs = 5, seg_len = 256, t = segs * seg_len, h = 14, hkv = 2, d = 64;
  context<gpu> ctx;
  tensor<bfloat16, gpu> q({batch, t, h, d}), out({batch, t, h, d}), k({batch, hkv, t, d}),
      v({batch, hkv, t, d});
  fill<<<1024, 256>>>(dev(q.data()), q.size(), 1);
  fill<<<1024, 256>>>(dev(k.data()), k.size(), 2);
  fill<<<1024, 256>>>(dev(v.data()), v.size(), 3);
  // Segment ids: slots [0, 256) prefix (0), then segments 1..4; generation would start at t.
  tensor<int> seg({batch, t}), gen({batch});
  tensor<unsigned char> dense({batch, t, t});
  for (int s = 0; s < batch; ++s) {
    gen(s) = t;
    for (int i = 0; i < t; ++i) seg(s, i) = i / seg_len;
  }
  const segment_isolation hseg{seg.data(), gen.data(), t};
  for (int s = 0; s < batch; ++s)
    for (int qi = 0; qi < t; ++qi)
      for (int ki = 0; ki < t; ++ki) dense(s, qi, ki) = ki <= qi && hseg.allowed(s, qi, ki);
  auto dseg = to_device<gpu>(seg), dgen = to_device<gpu>(gen);
  auto ddense = to_device<gpu>(dense);
  const auto iso =
      all_of<causal, segment_isolation>(causal{}, segment_isolation{dseg.data(), dgen.data(), t});
  // Per mask: CUDA cores, then tensor cores on the same inputs; the second output is checked
  // against the first.
  struct row {
    std::string mask;
    double pairs, core_ms, tc_ms;
    cbtest::diff_stats check;
  };
  std::vector<row> rows;
  auto measure = [&](const std::string& name, double pairs, const auto& mask) {
    row r{name, pairs, 0, 0, {}};
    ctx.tensor_core_attention = false;
    r.core_ms = time_ms(ctx, reps, out, q, k, v, mask, t);
    const tensor<bfloat16> want = to_host(out);
    ctx.tensor_core_attention = true;
    r.tc_ms = time_ms(ctx, reps, out, q, k, v, mask, t);
    const tensor<bfloat16> got = to_host(out);
    r.check =
        cbtest::compare(got, want, dtype_traits<bfloat16>::atol, dtype_traits<bfloat16>::rtol);
    rows.push_back(r);
  };
  // Visible pairs: causal t(t+1)/2; isolation: prefix causal + per segment (prefix + causal own).
  const double pairs_causal = 0.5 * t * (t + 1.0);
  const double pairs_iso =
      0.5 * seg_len * (seg_len + 1.0) +
      (segs - 1) * (double(seg_len) * seg_len + 0.5 * seg_len * (seg_len + 1.0));
  measure("causal", pairs_causal, causal{});
  measure("segment isolation", pairs_iso, iso);
  measure("dense boolean mask", pairs_iso, dense_mask{ddense.data(), t});
  std::printf("prefill attention, B=%d, T=%d (5 x 256), H=%d, Hkv=%d, D=%d, bf16\n", batch, t, h,
              hkv, d);
  std::printf("%-20s %14s %12s %14s %8s  %s\n", "mask", "visible pairs", "CUDA-core ms",
              "tensor-core ms", "speedup", "tensor-core vs CUDA-core output");
  bool ok = true;
  for (const auto& r : rows) {
    std::printf("%-20s %14.0f %12.3f %14.3f %7.2fx  %s\n", r.mask.c_str(), r.pairs, r.core_ms,
                r.tc_ms, r.core_ms / r.tc_ms, r.check.ok() ? "ok" : r.check.summary().c_str());
    ok = ok && r.check.ok();
  }
  const double iso_ratio = rows[1].tc_ms / rows[0].tc_ms;
  std::printf(
      "segment isolation / causal = %.2f on tensor cores, %.2f on CUDA cores (target <= 1)\n",
      iso_ratio, rows[1].core_ms / rows[0].core_ms);
  if (!json_path.empty()) {
    std::ofstream js(json_path);
    for (const auto& r : rows)
      js << json({{"kind", "attention"},
                  {"batch", batch},
                  {"tokens", t},
                  {"mask", r.mask},
                  {"cuda_core_ms", r.core_ms},
                  {"tensor_core_ms", r.tc_ms},
                  {"check", r.check.ok()},
                  {"max_abs_diff", r.check.max_abs}})
                .dump()
         << "\n";
  }
  if (!ok) std::puts("FAILED: the tensor-core output differs from the CUDA-core output");
  return ok ? 0 : 1;
}
