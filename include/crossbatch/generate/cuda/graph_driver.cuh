// The decode driver on the GPU: the same loop as decode() (generate/generate.hpp) over the same
// step policies, with the whole step (every session's layers, every hook, the logit combiner, the
// device sampler and the bookkeeping) captured once as a CUDA graph and replayed. What a step
// changes lives in device buffers the graph itself updates: the token ids, each session's
// positions, the retire groups, and one int `shift` (context<cuda>::slot_shift) that the ops add to
// the slots captured at the base (write_kv's start, attention's q_start and kv_len) and to the
// sampler's counter. One capture serves every step, and nothing in a step needs the host: the
// host reads the tokens every `read_every` steps (EOS check, streaming) and at the end. Under
// greedy decoding the fused step of a plain policy folds the argmax into the LM head and the
// advance kernel decodes it (no sampler kernel).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

#include "crossbatch/attention/cuda/attention.cuh"
#include "crossbatch/generate/cuda/combine.cuh"
#include "crossbatch/generate/cuda/fused_decode.cuh"
#include "crossbatch/generate/cuda/step_graph.cuh"
#include "crossbatch/generate/generate.hpp"
#include "crossbatch/mix/cuda/ops.cuh"
#include "crossbatch/ops/cuda/activation.cuh"
#include "crossbatch/ops/cuda/embedding.cuh"
#include "crossbatch/ops/cuda/linear.cuh"
#include "crossbatch/ops/cuda/norm.cuh"
#include "crossbatch/ops/cuda/rope.cuh"
#include "crossbatch/sample/cuda/sample.cuh"

namespace crossbatch {
namespace cuda_detail {

// With best (B) (the LM head's folded greedy argmax) ids[b] is first decoded from it and best
// zeroed; then tokens[s * B + b] = ids[b] for s = *shift, groups[b] = -1 when ids[b] is an EOS id
// (retire, when groups is given), and *shift = s + 1.
static __global__ void advance_kernel(std::int32_t* tokens, std::int32_t* ids, int* shift,
                                      int batch, int max_steps, unsigned long long* best, int vocab,
                                      std::int32_t* groups, const std::int32_t* eos, int n_eos) {
  grid_dependency();
  const int s = *shift;
  __syncthreads();
  for (int b = threadIdx.x; b < batch; b += blockDim.x) {
    if (best) {
      const unsigned long long k = best[b];
      ids[b] = k ? int(~static_cast<unsigned>(k)) : vocab;
      best[b] = 0;
    }
    const int id = ids[b];
    if (s < max_steps) tokens[index_t(s) * batch + b] = id;
    if (groups)
      for (int e = 0; e < n_eos; ++e)
        if (eos[e] == id) groups[b] = -1;
  }
  __syncthreads();
  if (threadIdx.x == 0) *shift = s + 1;
}

}  // namespace cuda_detail

struct graph_driver_options {
  bool use_graph = true;  // false: the same device-driven step, launched eagerly
  int read_every = 16;    // decode steps between host reads (EOS check, streaming)
};

// Holds the driver's device buffers between runs (they grow to the largest run).
template <class T>
class graph_driver {
 public:
  graph_driver_options options;

  explicit graph_driver(context<cuda>& ctx, graph_driver_options o = {}) : options(o), m_ctx(ctx) {}
  graph_driver(const graph_driver&) = delete;
  graph_driver& operator=(const graph_driver&) = delete;

  // Runs `policy` (sessions not yet prefilled) for opt.max_new_tokens steps with the device
  // sampler (greedy unless params.do_sample). eos: the ids a sequence stops at.
  template <class P>
  requires step_policy<P, T, cuda> generation_result run(P& policy, const sampling_params& params,
                                                         const generation_options& opt,
                                                         const std::vector<int>& eos,
                                                         const token_callback& on_token = {}) {
    using clock = std::chrono::steady_clock;
    const int b = policy.batch(), steps = opt.max_new_tokens;
    require(steps >= 0, "generate: max_new_tokens must be >= 0");
    sequence_tracker track(b, opt, eos);
    if (steps == 0) return track.result;
    reserve(b, steps, eos);
    m_groups = policy.retire_groups();
    m_n_eos = opt.stop_at_eos ? int(eos.size()) : 0;
    m_params = params;
    m_rng = counter_rng{opt.seed};
    m_steps = steps;
    m_batch = b;
    m_vocab = int(policy.logits().shape[1]);
    cuda_check(cudaMemsetAsync(m_shift.data(), 0, sizeof(int), m_ctx.stream), "cudaMemsetAsync");
    cuda_check(cudaMemsetAsync(m_best.data(), 0, sizeof(std::uint64_t) * b, m_ctx.stream),
               "cudaMemsetAsync");

    // Prefill and step 0 (eager), then the capture of one decode step (outside the timings).
    m_ctx.synchronize();
    const auto t0 = clock::now();
    policy.prefill();
    sample(m_ctx, m_params, policy.logits(), ids(), m_rng, 0);
    advance(nullptr);
    m_ctx.synchronize();
    track.result.prefill_seconds = std::chrono::duration<double>(clock::now() - t0).count();
    if (options.use_graph && steps > 1) m_graph.capture(m_ctx.stream, [&] { decode_step(policy); });
    m_ctx.synchronize();
    const auto t1 = clock::now();

    // Steps 1 .. steps - 1 in chunks; the host reads the new rows after each chunk.
    const bool read_often = opt.stop_at_eos || on_token;
    int done = 1, read = 0;
    read = read_rows(track, read, done, on_token);
    while (done < steps && !(opt.stop_at_eos && track.all_done())) {
      const int chunk =
          read_often ? std::min(std::max(1, options.read_every), steps - done) : steps - done;
      for (int i = 0; i < chunk; ++i) {
        if (options.use_graph)
          m_graph.launch(m_ctx.stream);
        else
          decode_step(policy);
      }
      done += chunk;
      read = read_rows(track, read, done, on_token);
    }
    track.result.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
    policy.for_each_session([&](auto& s) { s.set_length(s.prompt_length() + done - 1); });
    return track.result;
  }

 private:
  void reserve(int b, int steps, const std::vector<int>& eos) {
    if (m_ids.empty() || m_ids.size() < b) {
      m_ids = tensor<std::int32_t, cuda>({b});
      m_best = tensor<std::uint64_t, cuda>({b});
    }
    if (m_tokens.empty() || m_tokens.size() < index_t(b) * steps)
      m_tokens = tensor<std::int32_t, cuda>({index_t(b) * steps});
    if (m_shift.empty()) m_shift = tensor<std::int32_t, cuda>({1});
    tensor<std::int32_t> e({index_t(std::max<std::size_t>(1, eos.size()))});
    for (std::size_t i = 0; i < eos.size(); ++i) e(index_t(i)) = eos[i];
    m_eos = to_device<cuda>(e);
  }
  tensor_view<std::int32_t, cuda> ids() { return {m_ids.data(), {m_batch}}; }

  void advance(std::uint64_t* best) {
    cuda_detail::launch(m_ctx, "advance", cuda_detail::advance_kernel, dim3(1), dim3(128), 0,
                        m_tokens.data(), m_ids.data(), m_shift.data(), m_batch, m_steps,
                        reinterpret_cast<unsigned long long*>(best), m_vocab, m_groups,
                        static_cast<const std::int32_t*>(m_eos.data()), m_n_eos);
  }

  // One decode step at slot (T - 1) + shift; shift is read on the device.
  template <class P>
  void decode_step(P& policy) {
    const int* saved = m_ctx.slot_shift;
    m_ctx.slot_shift = m_shift.data();
    std::uint64_t* best = m_params.do_sample ? nullptr : m_best.data();
    const bool folded = policy.step(tensor_view<const std::int32_t, cuda>(ids()), best);
    if (!folded) sample(m_ctx, m_params, policy.logits(), ids(), m_rng, 0);
    advance(folded ? best : nullptr);
    m_ctx.slot_shift = saved;
  }

  // Downloads token rows [from, to) and records them; returns `to`.
  int read_rows(sequence_tracker& track, int from, int to, const token_callback& on_token) {
    if (to <= from) return from;
    std::vector<std::int32_t> host(std::size_t(to - from) * m_batch);
    m_ctx.synchronize();
    device_traits<cuda>::download(host.data(), m_tokens.data() + index_t(from) * m_batch,
                                  sizeof(std::int32_t) * host.size());
    for (int s = 0; s < to - from; ++s)
      for (int q = 0; q < m_batch; ++q)
        if (!track.done(q)) track.record(q, host[std::size_t(s) * m_batch + q], on_token);
    return to;
  }

  context<cuda>& m_ctx;
  tensor<std::int32_t, cuda> m_ids, m_tokens, m_shift, m_eos;
  tensor<std::uint64_t, cuda> m_best;
  std::int32_t* m_groups = nullptr;
  int m_n_eos = 0, m_steps = 0, m_batch = 0, m_vocab = 0;
  sampling_params m_params;
  counter_rng m_rng;
  step_graph m_graph;
};

// Plain generation on the GPU through the graph driver (the CUDA form of generate()).
template <class T, class Layout = left_padded>
generation_result graph_generate(context<cuda>& ctx, const decoder_model<T, cuda>& model,
                                 const std::vector<typename Layout::prompt>& prompts,
                                 const sampling_params& params, const generation_options& opt,
                                 const token_callback& on_token = {},
                                 const fused_decode_options& fused = {},
                                 const graph_driver_options& driver = {},
                                 const Layout& layout = {}) {
  batch_session<T, cuda, Layout> session(ctx, model, prompts, opt.max_new_tokens, layout);
  session.fused = fused;
  plain_step<T, cuda, Layout> policy(session);
  graph_driver<T> d(ctx, driver);
  auto r = d.run(policy, params, opt, stop_ids(opt, model.config), on_token);
  r.prompt_tokens = real_prompt_tokens(session.layout());
  return r;
}

}  // namespace crossbatch
