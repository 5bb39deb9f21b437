// parallel_chunks: the CPU decode kernels' fork/join, made for machines whose cores are shared.
// The caller and up to threads - 1 helper threads claim chunks of the work from one atomic counter,
// so the caller never waits for a helper that has not started (a preempted helper simply gets no
// chunks); it waits only for chunks a helper has claimed and not finished. Helpers spin briefly for
// the next call (decode calls come microseconds apart), then yield, then sleep on a futex
// (std::atomic::wait), so a waiting thread burns no time slice of a shared core. This replaces
// OpenMP's parallel for in the GEMV path: libgomp's barriers spin for ~300k iterations, which under
// oversubscription makes each of a step's ~120 barriers cost a scheduler time slice
// (bench/NOTES.md: 686 ms instead of 25 ms a step on a shared 2-core machine).
//
// The helpers form one process-wide pool, started lazily and grown to the largest thread count
// asked for; a call made while another thread's call is running runs on the calling thread alone.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "crossbatch/core/tensor.hpp"

namespace crossbatch::cpu_detail {

inline void cpu_relax() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_ia32_pause();
#endif
}

class worker_pool {
 public:
  // A waiting thread spins (pause) for spin_time, then yields its core (sched_yield: returns at
  // once on an idle core, hands the core to a runnable thread on a shared one) until yield_time,
  // then sleeps on a futex. Decode's gaps between calls (attention, norms) are 10-300 us, so an
  // idle machine's helpers stay awake without burning a shared machine's time slices.
  static constexpr auto spin_time = std::chrono::microseconds(20);
  static constexpr auto yield_time = std::chrono::microseconds(500);

  // Waits while pred() holds: spin, yield, then sleep with sleep() (an atomic wait).
  template <class Pred, class Sleep>
  static void wait_while(const Pred& pred, const Sleep& sleep) {
    const auto start = std::chrono::steady_clock::now();
    for (unsigned i = 0; pred(); ++i) {
      if ((i & 15) != 0) {
        cpu_relax();
        continue;
      }
      const auto waited = std::chrono::steady_clock::now() - start;
      if (waited < spin_time)
        cpu_relax();
      else if (waited < yield_time)
        std::this_thread::yield();
      else
        sleep();
    }
  }

  static worker_pool& instance() {
    static worker_pool pool;
    return pool;
  }

  // Runs chunk(c) for every c in [0, chunks) on the caller and up to threads - 1 helpers.
  // chunk must not throw.
  template <class F>
  void run(int threads, index_t chunks, const F& chunk) {
    const int helpers = std::min<index_t>(threads, chunks) - 1;
    std::unique_lock busy(m_busy, std::try_to_lock);
    if (helpers <= 0 || !busy.owns_lock()) {  // serial: one thread, or the pool is in use
      for (index_t c = 0; c < chunks; ++c) chunk(c);
      return;
    }
    grow(helpers);
    std::uint32_t gen;
    {
      std::lock_guard lk(m_job);
      gen = ++m_gen;
      m_fn = [](const void* f, index_t c) { (*static_cast<const F*>(f))(c); };
      m_arg = &chunk;
      m_chunks = chunks;
      m_helpers = helpers;
      m_left.store(std::int32_t(chunks));
      m_claim.store(std::uint64_t(gen) << 32);
      m_posted.store(gen);
    }
    m_wake.notify_all();
    work(gen, chunks, m_fn, m_arg);
    // Wait for the chunks helpers claimed until the last one is finished.
    wait_while([&] { return m_left.load(std::memory_order_acquire) != 0; },
               [&] {
                 std::unique_lock lk(m_done_mutex);
                 m_done.wait(lk, [&] { return m_left.load(std::memory_order_acquire) == 0; });
               });
  }

  ~worker_pool() {
    {
      std::lock_guard lk(m_job);
      m_stop = true;
      m_posted.store(++m_gen);
    }
    m_wake.notify_all();
    for (auto& t : m_threads) t.join();
  }

 private:
  using chunk_fn = void (*)(const void*, index_t);

  worker_pool() = default;

  void grow(int helpers) {
    while (int(m_threads.size()) < helpers) {
      const int id = int(m_threads.size());
      m_threads.emplace_back([this, id] { helper_loop(id); });
    }
  }

  // Claims chunks of job `gen` until none is left; a claim of a finished job's counter fails
  // because the counter carries its job's generation in the high 32 bits.
  void work(std::uint32_t gen, index_t chunks, chunk_fn fn, const void* arg) {
    std::uint64_t v = m_claim.load();
    for (;;) {
      if (std::uint32_t(v >> 32) != gen || index_t(v & 0xffffffffu) >= chunks) return;
      if (!m_claim.compare_exchange_weak(v, v + 1)) continue;
      fn(arg, index_t(v & 0xffffffffu));
      if (m_left.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        { std::lock_guard lk(m_done_mutex); }  // a waiter is either before its check or asleep
        m_done.notify_all();
      }
      v = m_claim.load();
    }
  }

  void helper_loop(int id) {
    std::uint32_t seen = m_posted.load();
    for (;;) {
      wait_while([&] { return m_posted.load() == seen; },
                 [&] {
                   std::unique_lock lk(m_job);  // posts happen under m_job: no lost wake-up
                   m_wake.wait(lk, [&] { return m_posted.load() != seen; });
                 });
      std::uint32_t gen;
      index_t chunks;
      chunk_fn fn;
      const void* arg;
      {
        std::lock_guard lk(m_job);  // a consistent snapshot of the newest job
        if (m_stop) return;
        seen = gen = m_gen;
        if (id >= m_helpers) continue;  // a call with fewer threads than helpers
        chunks = m_chunks, fn = m_fn, arg = m_arg;
      }
      work(gen, chunks, fn, arg);
    }
  }

  std::mutex m_busy;  // held by the thread whose call is running
  std::mutex m_job;   // guards the job description below
  std::uint32_t m_gen = 0;
  chunk_fn m_fn = nullptr;
  const void* m_arg = nullptr;
  index_t m_chunks = 0;
  int m_helpers = 0;
  bool m_stop = false;
  // Sleeping uses condition variables, not std::atomic::wait: libstdc++ 12's atomic wait lost a
  // wake-up here (a helper never woke for the destructor's stop; the asan test run hung at exit).
  std::condition_variable m_wake;  // m_posted changed (under m_job)
  std::mutex m_done_mutex;
  std::condition_variable m_done;          // m_left reached 0
  std::atomic<std::uint32_t> m_posted{0};  // the newest generation, for helpers to wait on
  std::atomic<std::uint64_t> m_claim{0};   // generation << 32 | next chunk
  std::atomic<std::int32_t> m_left{0};     // chunks of the current job not yet finished
  std::vector<std::thread> m_threads;
};

// chunk(c) for c in [0, chunks), on up to `threads` threads (the caller included).
template <class F>
void parallel_chunks(int threads, index_t chunks, const F& chunk) {
  if (threads <= 1 || chunks <= 1) {
    for (index_t c = 0; c < chunks; ++c) chunk(c);
    return;
  }
  worker_pool::instance().run(threads, chunks, chunk);
}

}  // namespace crossbatch::cpu_detail
