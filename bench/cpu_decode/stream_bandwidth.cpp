// The machine's streaming read bandwidth on 1..N threads: the roofline of batch-1 CPU decode,
// which reads every weight once per token. A buffer much larger than the last-level cache
// (default 1 GiB) is written once, then summed with wide vector loads; each pass evicts the
// previous one from the caches by reading (a memset-evicted buffer would leave dirty lines whose
// write-back halves the rate). Threads read disjoint contiguous halves, like a row-split GEMV.
// Prints one JSON object per thread count: best and median GB/s over the passes.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sys/mman.h>
#include <thread>
#include <vector>

namespace {

// Sum of x[0, n) with eight independent accumulator vectors (the compiler vectorises the inner
// loop to 512-bit loads under -march=native).
float read_sum(const float* x, std::size_t n) {
  float acc[8][16] = {};
  std::size_t i = 0;
  for (; i + 128 <= n; i += 128)
    for (int a = 0; a < 8; ++a)
#pragma omp simd
      for (int j = 0; j < 16; ++j) acc[a][j] += x[i + a * 16 + j];
  float s = 0;
  for (; i < n; ++i) s += x[i];
  for (auto& a : acc)
    for (float v : a) s += v;
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Streaming read bandwidth (STREAM-like sum of a buffer much larger than the LLC)");
  double gib = 1.0;
  int passes = 10;
  std::vector<int> threads = {1, 2};
  app.add_option("--gib", gib, "buffer size in GiB");
  app.add_option("--passes", passes, "timed passes per thread count");
  app.add_option("--threads", threads, "thread counts");
  bool huge = false;
  app.add_flag("--huge-pages", huge, "madvise(MADV_HUGEPAGE) the buffer (transparent huge pages)");
  CLI11_PARSE(app, argc, argv);

  const std::size_t n = static_cast<std::size_t>(gib * (1ull << 30) / sizeof(float));
  std::unique_ptr<float[], decltype(&std::free)> buf(
      static_cast<float*>(std::aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64)), &std::free);
  if (huge) madvise(buf.get(), n * sizeof(float), MADV_HUGEPAGE);
  for (std::size_t i = 0; i < n; ++i) buf[i] = static_cast<float>(i % 7);
  volatile float sink = read_sum(buf.get(), n);  // warm-up: page faults, write-back of the fill

  for (int t : threads) {
    std::vector<double> rates;
    for (int p = 0; p < passes; ++p) {
      std::vector<float> part(t);
      std::atomic<int> ready{0};
      std::vector<std::thread> pool;
      std::chrono::steady_clock::time_point start;
      auto work = [&](int k) {
        const std::size_t lo = n * k / t, hi = n * (k + 1) / t;
        part[k] = read_sum(buf.get() + lo, hi - lo);
      };
      // Helpers start together with the timer (a spin on `ready`), so thread start-up is untimed.
      for (int k = 1; k < t; ++k)
        pool.emplace_back([&, k] {
          ready.fetch_add(1);
          while (ready.load() < t) {
          }
          work(k);
        });
      ready.fetch_add(1);
      while (ready.load() < t) {
      }
      start = std::chrono::steady_clock::now();
      work(0);
      for (auto& th : pool) th.join();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      for (float v : part) sink = sink + v;
      rates.push_back(n * sizeof(float) / s / 1e9);
    }
    std::sort(rates.begin(), rates.end());
    std::cout << nlohmann::json{{"bench", "stream_read"},
                                {"threads", t},
                                {"gib", gib},
                                {"best_gb_per_s", rates.back()},
                                {"median_gb_per_s", rates[rates.size() / 2]}}
                     .dump()
              << std::endl;
  }
  (void)sink;
}
