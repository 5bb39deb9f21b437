// What the server holds for one submitted generation: a request (the prompt ids, its stop rule,
// sampler, seed and which logits it samples from) and a ticket, shared between the client thread
// and the batcher thread, through which the tokens arrive one by one (streaming), the request
// ends (EOS, length, cancel, timeout, failure) and the client cancels (disconnect).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <ostream>
#include <string>
#include <vector>

#include "crossbatch/generate/lda.hpp"

namespace crossbatch::serve {

// The logits a request samples from: the (after) model's, the before model's, or LDA's
// after + alpha (after - before).
struct logit_source {
  enum kind_t { after, before, lda } kind = after;
  float alpha = 0.0f;
};

struct generation_request {
  std::vector<int> prompt;  // token ids, never part of the completion
  int max_new_tokens = 16;
  bool stop_at_eos = true;   // false: fixed length, EOS is an ordinary token
  std::vector<int> eos_ids;  // empty: the (after) model config's
  lda_sampling sampling;     // temperature, top-p, min-p, top-k in that order; greedy if !do_sample
  std::uint64_t seed = 0;    // the request's RNG: stream 0, counter = token index
  logit_source source;
  std::chrono::milliseconds timeout{0};  // 0: the batcher's limit
  // Field names that errors about the prompt and the length name (the routes spell them apart).
  std::string prompt_field = "prompt", length_field = "max_new_tokens";
};

enum class finish_reason { running, eos, length, cancelled, timeout, failed };

inline const char* to_string(finish_reason r) {
  switch (r) {
    case finish_reason::running: return "running";
    case finish_reason::eos: return "stop";
    case finish_reason::length: return "length";
    case finish_reason::cancelled: return "cancelled";
    case finish_reason::timeout: return "timeout";
    case finish_reason::failed: return "failed";
  }
  return "?";
}
inline std::ostream& operator<<(std::ostream& os, finish_reason r) { return os << to_string(r); }

class ticket {
 public:
  using clock = std::chrono::steady_clock;

  explicit ticket(int prompt_tokens) : m_prompt_tokens(prompt_tokens) {}

  // Client side.
  void cancel() {
    m_cancel = true;
    m_cv.notify_all();
  }
  bool cancel_requested() const { return m_cancel; }
  // Blocks until more than `seen` tokens exist, the request ended or `until` passed; returns
  // whether it ended.
  bool wait(std::size_t seen, clock::time_point until) {
    std::unique_lock lock(m_mutex);
    m_cv.wait_until(lock, until,
                    [&] { return m_reason != finish_reason::running || m_tokens.size() > seen; });
    return m_reason != finish_reason::running;
  }
  void wait_done() {
    std::unique_lock lock(m_mutex);
    m_cv.wait(lock, [&] { return m_reason != finish_reason::running; });
  }
  std::vector<int> tokens() const {
    std::lock_guard lock(m_mutex);
    return m_tokens;
  }
  finish_reason reason() const {
    std::lock_guard lock(m_mutex);
    return m_reason;
  }
  std::string error() const {
    std::lock_guard lock(m_mutex);
    return m_error;
  }
  int prompt_tokens() const { return m_prompt_tokens; }

  // Batcher side.
  void push(int token) {
    {
      std::lock_guard lock(m_mutex);
      m_tokens.push_back(token);
    }
    m_cv.notify_all();
  }
  void finish(finish_reason r, std::string error = {}) {
    {
      std::lock_guard lock(m_mutex);
      if (m_reason != finish_reason::running) return;
      m_reason = r;
      m_error = std::move(error);
    }
    m_cv.notify_all();
  }

 private:
  int m_prompt_tokens = 0;
  std::atomic<bool> m_cancel{false};
  mutable std::mutex m_mutex;
  std::condition_variable m_cv;
  std::vector<int> m_tokens;
  finish_reason m_reason = finish_reason::running;
  std::string m_error;
};

}  // namespace crossbatch::serve
