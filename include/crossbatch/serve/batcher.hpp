// Continuous batching at step boundaries: a running batch of up to `max_batch` rows for one
// model, or for an after/before pair advanced on the same ids (LDA), that sequences join and
// leave between steps while the other rows keep running. At each boundary (run_once):
//   1. rows whose client cancelled or whose deadline passed end (cancelled / timeout),
//   2. queued requests join, first come first served, while a row is free and the cache fits
//      them: each prompt is prefilled on its own (the same prefill as a one-request generate),
//      its K/V copied right-aligned into the free row (running_batch::place), and its first
//      token sampled from the prefill logits; a prompt longer than the batch's slot count
//      shifts the batch right, and a cache that would overflow is first compacted left by the
//      smallest pad,
//   3. one step for every row, then a token for every running row; rows that hit EOS or their
//      max_new_tokens leave.
// Each request samples with its own sampler and RNG (seed, stream 0, counter = token index), so
// its tokens are those of the same request run alone with that seed (generate() / lda_generate()
// with batch 1), whatever row it lands in and whoever runs beside it. start() runs run_once on a
// background thread; tests drive run_once by hand.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <thread>

#include "crossbatch/sample/logit_combiner.hpp"
#include "crossbatch/serve/api_error.hpp"
#include "crossbatch/serve/running_batch.hpp"
#include "crossbatch/serve/ticket.hpp"

namespace crossbatch::serve {

struct batcher_limits {
  int max_batch = 8;           // rows stepped together
  int max_queue = 64;          // requests waiting for a row; more are refused (429)
  int max_prompt_tokens = 1024;
  int max_new_tokens = 512;
  std::chrono::milliseconds timeout{120000};  // per request, from submission
  // Cache slots per row; 0: max_prompt_tokens + max_new_tokens (the longest request alone).
  int capacity = 0;
};

struct batcher_stats {
  long long steps = 0, tokens = 0, completed = 0, rejected = 0;
  int running = 0, queued = 0;
};

template <class T, class D = cpu>
class batcher {
 public:
  // `before` may be null: plain serving with one model.
  batcher(const context<D>& ctx, const decoder_model<T, D>& after,
          const decoder_model<T, D>* before, batcher_limits limits)
      : m_ctx(ctx), m_after(after), m_before(before), m_limits(limits) {
    require(m_limits.max_batch >= 1, "batcher: max_batch must be >= 1");
    require(m_limits.max_queue >= 1, "batcher: max_queue must be >= 1");
    require(m_limits.max_prompt_tokens >= 1 && m_limits.max_new_tokens >= 1,
            "batcher: the prompt and max_new_tokens limits must be >= 1");
    if (m_limits.capacity == 0)
      m_limits.capacity = m_limits.max_prompt_tokens + m_limits.max_new_tokens;
    require(m_limits.capacity >= m_limits.max_prompt_tokens + m_limits.max_new_tokens - 1,
            "batcher: capacity below the longest request");
    if (before) check_same_vocabulary(after.config, before->config);
    m_models.emplace_back(ctx, after, m_limits.max_batch, m_limits.capacity);
    if (before) m_models.emplace_back(ctx, *before, m_limits.max_batch, m_limits.capacity);
    m_rows.resize(m_limits.max_batch);
    m_combined = tensor<T, D>({m_limits.max_batch, after.config.vocab_size});
  }
  ~batcher() { stop(); }
  batcher(const batcher&) = delete;

  const batcher_limits& limits() const { return m_limits; }
  bool has_before() const { return m_before != nullptr; }
  const model_config& config() const { return m_after.config; }

  // Validates and queues a request; throws api_error naming the field (400) or 429 when the
  // queue is full.
  std::shared_ptr<ticket> submit(generation_request r) {
    validate(r);
    if (r.timeout.count() <= 0) r.timeout = m_limits.timeout;
    auto t = std::make_shared<ticket>(int(r.prompt.size()));
    {
      std::lock_guard lock(m_mutex);
      if (int(m_queue.size()) >= m_limits.max_queue) {
        ++m_stats.rejected;
        throw api_error(429, "", "the request queue is full (" +
                                     std::to_string(m_limits.max_queue) +
                                     " waiting); retry later");
      }
      m_queue.push_back({std::move(r), t, ticket::clock::now()});
    }
    m_wake.notify_all();
    return t;
  }

  // One step boundary (see the file comment). Returns whether requests remain (running or
  // queued).
  bool run_once() {
    const auto now = ticket::clock::now();
    end_cancelled(now);
    admit(now);
    if (live_rows() > 0) step_all();
    std::lock_guard lock(m_mutex);
    m_stats.queued = int(m_queue.size());
    return m_stats.running > 0 || m_stats.queued > 0;
  }

  void start() {
    if (m_thread.joinable()) return;
    m_stop = false;
    m_thread = std::thread([this] { loop(); });
  }
  void stop() {
    {
      std::lock_guard lock(m_mutex);
      m_stop = true;
    }
    m_wake.notify_all();
    if (m_thread.joinable()) m_thread.join();
  }

  batcher_stats stats() const {
    std::lock_guard lock(m_mutex);
    batcher_stats s = m_stats;
    s.queued = int(m_queue.size());  // now, not at the last boundary
    return s;
  }
  // The running batch's slot count (for tests of shifting and compaction).
  int slots() const { return m_models[0].slots(); }
  int row_pad(int row) const { return m_models[0].pad(row); }
  // Which row each ticket runs in (-1: not running).
  int row_of(const std::shared_ptr<ticket>& t) const {
    for (int r = 0; r < int(m_rows.size()); ++r)
      if (m_rows[r].live && m_rows[r].t == t) return r;
    return -1;
  }

 private:
  struct queued {
    generation_request req;
    std::shared_ptr<ticket> t;
    ticket::clock::time_point submitted;
  };
  struct row_state {
    bool live = false;
    generation_request req;
    std::shared_ptr<ticket> t;
    ticket::clock::time_point deadline;
    std::vector<int> eos;
    int produced = 0, last = 0, position = 0;
  };

  void validate(const generation_request& r) const {
    const auto& c = m_after.config;
    const int p = int(r.prompt.size());
    if (p == 0) throw bad_field(r.prompt_field, "the prompt is empty (no tokens)");
    if (p > m_limits.max_prompt_tokens)
      throw bad_field(r.prompt_field, "the prompt has " + std::to_string(p) +
                                          " tokens, the limit is " +
                                          std::to_string(m_limits.max_prompt_tokens));
    for (int id : r.prompt)
      if (id < 0 || id >= c.vocab_size)
        throw bad_field(r.prompt_field, "token id " + std::to_string(id) +
                                            " outside the vocabulary of " +
                                            std::to_string(c.vocab_size));
    if (r.max_new_tokens < 1 || r.max_new_tokens > m_limits.max_new_tokens)
      throw bad_field(r.length_field, "must be in [1, " + std::to_string(m_limits.max_new_tokens) +
                                          "], got " + std::to_string(r.max_new_tokens));
    if (p + r.max_new_tokens > c.max_positions)
      throw bad_field(r.prompt_field, "the prompt has " + std::to_string(p) +
                                          " tokens; with " + r.length_field + " " +
                                          std::to_string(r.max_new_tokens) +
                                          " it exceeds the model's context of " +
                                          std::to_string(c.max_positions) + " positions");
    if (r.source.kind != logit_source::after && !m_before)
      throw bad_field("lda_alpha", "this server has no before model (start it with --before-model)");
    if (r.source.kind == logit_source::lda && !std::isfinite(r.source.alpha))
      throw bad_field("lda_alpha", "must be finite");
    for (int id : r.eos_ids)
      if (id < 0 || id >= c.vocab_size) throw bad_field("stop", "EOS id outside the vocabulary");
    const auto& s = r.sampling;
    if (s.do_sample) {
      if (!(s.temperature > 0) || !std::isfinite(s.temperature))
        throw bad_field("temperature", "must be > 0");
      if (!(s.top_p > 0 && s.top_p <= 1)) throw bad_field("top_p", "must be in (0, 1]");
      if (!(s.min_p >= 0 && s.min_p <= 1)) throw bad_field("min_p", "must be in [0, 1]");
      if (s.top_k < 0) throw bad_field("top_k", "must be >= 0");
    }
  }

  void loop() {
    for (;;) {
      {
        std::unique_lock lock(m_mutex);
        m_wake.wait(lock, [&] { return m_stop || !m_queue.empty() || live_rows() > 0; });
        if (m_stop) break;
      }
      try {
        run_once();
      } catch (const std::exception& e) {
        fail_everything(e.what());
      }
    }
    fail_everything("the server is shutting down");
  }

  int live_rows() const {
    int n = 0;
    for (const auto& r : m_rows) n += r.live;
    return n;
  }
  std::vector<bool> live_mask() const {
    std::vector<bool> m(m_rows.size());
    for (std::size_t r = 0; r < m_rows.size(); ++r) m[r] = m_rows[r].live;
    return m;
  }

  void end_row(int r, finish_reason why, const std::string& error = {}) {
    m_rows[r].t->finish(why, error);
    m_rows[r].live = false;
    m_rows[r].t.reset();
    for (auto& m : m_models) m.release(r);
    std::lock_guard lock(m_mutex);
    ++m_stats.completed;
    --m_stats.running;
  }

  void end_cancelled(ticket::clock::time_point now) {
    for (int r = 0; r < int(m_rows.size()); ++r) {
      if (!m_rows[r].live) continue;
      if (m_rows[r].t->cancel_requested())
        end_row(r, finish_reason::cancelled);
      else if (now >= m_rows[r].deadline)
        end_row(r, finish_reason::timeout, "the request ran past its timeout");
    }
    std::lock_guard lock(m_mutex);
    for (auto it = m_queue.begin(); it != m_queue.end();) {
      if (it->t->cancel_requested()) {
        it->t->finish(finish_reason::cancelled);
      } else if (now >= it->submitted + it->req.timeout) {
        it->t->finish(finish_reason::timeout, "the request waited past its timeout");
      } else {
        ++it;
        continue;
      }
      ++m_stats.completed;
      it = m_queue.erase(it);
    }
  }

  // Whether a request of p prompt tokens and n new tokens fits the cache now, after shifting or
  // compacting it as needed (done here).
  bool make_room(int p, int n) {
    auto live = live_mask();
    if (live_rows() == 0)
      for (auto& m : m_models) m.clear();
    int need = n - 1;  // steps this request will still run
    for (const auto& r : m_rows)
      if (r.live) need = std::max(need, r.req.max_new_tokens - r.produced);
    const int cap = m_models[0].capacity();
    if (std::max(m_models[0].slots(), p) + need > cap) {
      const int d = m_models[0].min_pad(live);
      if (d > 0)
        for (auto& m : m_models) m.shift(-d, live);
    }
    if (std::max(m_models[0].slots(), p) + need > cap) return false;
    const int grow = p - m_models[0].slots();
    if (grow > 0)
      for (auto& m : m_models) m.shift(grow, live);
    return true;
  }

  void admit(ticket::clock::time_point now) {
    for (;;) {
      const auto free_row = std::find_if(m_rows.begin(), m_rows.end(),
                                         [](const row_state& r) { return !r.live; });
      if (free_row == m_rows.end()) return;
      std::optional<queued> q;
      {
        std::lock_guard lock(m_mutex);
        if (m_queue.empty()) return;
        const auto& head = m_queue.front();
        if (!make_room(int(head.req.prompt.size()), head.req.max_new_tokens)) return;
        q = std::move(m_queue.front());
        m_queue.pop_front();
      }
      const int r = int(free_row - m_rows.begin());
      try {
        join(r, std::move(*q), now);
      } catch (const std::exception& e) {
        q->t->finish(finish_reason::failed, e.what());
      }
    }
  }

  // Prefills the request alone, places its K/V in row r and samples its first token.
  void join(int r, queued q, ticket::clock::time_point now) {
    auto& row = m_rows[r];
    const int p = int(q.req.prompt.size());
    std::vector<batch_session<T, D>> alone;
    for (auto& m : m_models) {
      alone.push_back(prefill_alone(m_ctx, m.model(), q.req.prompt));
      m.place(r, alone.back().cache(), p);
    }
    row.live = true;
    {
      std::lock_guard lock(m_mutex);
      ++m_stats.running;
    }
    row.req = std::move(q.req);
    row.t = std::move(q.t);
    row.deadline = q.submitted + row.req.timeout;
    row.eos = row.req.eos_ids.empty() ? m_after.config.eos_token_ids : row.req.eos_ids;
    row.produced = 0;
    row.position = p;
    (void)now;
    std::vector<tensor_view<const T, D>> logits;
    for (auto& s : alone) logits.push_back(s.logits());
    auto host = combined_row(row.req.source, logits, 0, m_combined.view(), 0);
    take_token(r, host);
  }

  // The request's logits row (as float on the host) from each model's logits (rows, V) at `in`,
  // through out (rows, V) at row `at`.
  tensor<float> combined_row(const logit_source& src, const std::vector<tensor_view<const T, D>>& in,
                             int row, tensor_view<T, D> out, int at) {
    const index_t v = in[0].shape[1];
    const auto row_of = [&](tensor_view<const T, D> t, int i) {
      return tensor_view<const T, D>(t.data + index_t(i) * v, {1, v});
    };
    tensor_view<const T, D> chosen = row_of(in[0], row);
    if (src.kind == logit_source::before) chosen = row_of(in[1], row);
    if (src.kind == logit_source::lda) {
      const tensor_view<T, D> dst(out.data + index_t(at) * v, {1, v});
      const std::vector<tensor_view<const T, D>> pair = {row_of(in[0], row), row_of(in[1], row)};
      combine_logits(m_ctx, lda_combiner{src.alpha}, dst,
                     std::span<const tensor_view<const T, D>>(pair));
      chosen = dst;
    }
    const tensor<T> h = to_host(chosen);
    tensor<float> f(h.shape());
    for (index_t i = 0; i < h.size(); ++i) f.data()[i] = static_cast<float>(h.data()[i]);
    return f;
  }

  // Samples row r's next token from its logits (1, V) and ends the row when it stops.
  void take_token(int r, tensor<float>& logits) {
    auto& row = m_rows[r];
    const counter_rng rng{row.req.seed};
    const float u = rng.uniform(0, std::uint64_t(row.produced));
    const int id = row.req.sampling.pick(std::span<float>(logits.data(), logits.size()), u);
    row.t->push(id);
    ++row.produced;
    row.last = id;
    {
      std::lock_guard lock(m_mutex);
      ++m_stats.tokens;
    }
    if (row.req.stop_at_eos && std::find(row.eos.begin(), row.eos.end(), id) != row.eos.end())
      end_row(r, finish_reason::eos);
    else if (row.produced >= row.req.max_new_tokens)
      end_row(r, finish_reason::length);
  }

  void step_all() {
    const int b = int(m_rows.size());
    std::vector<std::int32_t> ids(b, 0), pos(b, 0);
    for (int r = 0; r < b; ++r)
      if (m_rows[r].live) ids[r] = m_rows[r].last, pos[r] = m_rows[r].position;
    for (auto& m : m_models) m.step(ids, pos);
    {
      std::lock_guard lock(m_mutex);
      ++m_stats.steps;
    }
    std::vector<tensor_view<const T, D>> logits;
    for (auto& m : m_models) logits.push_back(m.logits());
    for (int r = 0; r < b; ++r) {
      if (!m_rows[r].live) continue;
      ++m_rows[r].position;
      auto host = combined_row(m_rows[r].req.source, logits, r, m_combined.view(), r);
      take_token(r, host);
    }
  }

  void fail_everything(const std::string& why) {
    for (int r = 0; r < int(m_rows.size()); ++r)
      if (m_rows[r].live) end_row(r, finish_reason::failed, why);
    for (auto& m : m_models) m.clear();
    std::lock_guard lock(m_mutex);
    for (auto& q : m_queue) q.t->finish(finish_reason::failed, why);
    m_queue.clear();
  }

  const context<D>& m_ctx;
  const decoder_model<T, D>& m_after;
  const decoder_model<T, D>* m_before;
  batcher_limits m_limits;
  std::vector<running_batch<T, D>> m_models;  // after, then before
  std::vector<row_state> m_rows;
  tensor<T, D> m_combined;  // (rows, V) LDA logits of the rows that ask for them
  mutable std::mutex m_mutex;  // guards m_queue, m_stats, m_stop
  std::condition_variable m_wake;
  std::deque<queued> m_queue;
  batcher_stats m_stats;
  bool m_stop = false;
  std::thread m_thread;
};

}  // namespace crossbatch::serve
