// Batched generation on the GPU with the decode step captured once as a CUDA graph and replayed.
// Everything a step changes lives in device buffers that the graph itself updates: the token ids
// (written by the device sampler, or under greedy decoding by the LM head's folded argmax), the
// positions, and one int `shift` (context<cuda>::slot_shift) that the ops add to the slot indices
// the host passed at capture time (write_kv's start, attention's q_start and kv_len) and to the
// sampler's step counter. We chose the device shift over one graph per kv_len bucket: one capture
// per prompt length, no re-capture as the cache fills, and the attention kernels size their grids
// for the cache capacity (blocks past kv_len exit at once). Memory is allocated up front (cache for
// batch x (prompt + new tokens), the decoder_workspace, logits); nothing is allocated or copied to
// the host inside a step. The host synchronises only to read the tokens: at the end, or every
// `eos_check_every` steps when stopping at EOS. Same prompt layout and semantics as generate()
// (generate/generate.hpp): left padding, positions counting from 0 at each prompt's first token,
// sampler counter = step.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

#include "crossbatch/attention/cuda/attention.cuh"
#include "crossbatch/generate/cuda/fused_decode.cuh"
#include "crossbatch/generate/cuda/step_graph.cuh"
#include "crossbatch/generate/generate.hpp"
#include "crossbatch/generate/prompt_layout.hpp"
#include "crossbatch/model/decoder.hpp"
#include "crossbatch/ops/cuda/activation.cuh"
#include "crossbatch/ops/cuda/embedding.cuh"
#include "crossbatch/ops/cuda/linear.cuh"
#include "crossbatch/ops/cuda/norm.cuh"
#include "crossbatch/ops/cuda/rope.cuh"
#include "crossbatch/sample/cuda/sample.cuh"

namespace crossbatch {
namespace cuda_detail {

// tokens[(base + s) * B + b] = ids[b]; positions[b] += 1; then *shift = s + 1, s = *shift. With
// best (B) (the LM head's folded greedy argmax), ids[b] is first decoded from it and best zeroed.
static __global__ void advance_kernel(std::int32_t* tokens, std::int32_t* ids,
                                      std::int32_t* positions, int* shift, int batch, int max_steps,
                                      unsigned long long* best, int vocab) {
  grid_dependency();
  const int s = *shift;
  __syncthreads();
  for (int b = threadIdx.x; b < batch; b += blockDim.x) {
    if (best) {
      const unsigned long long k = best[b];
      ids[b] = k ? int(~static_cast<unsigned>(k)) : vocab;
      best[b] = 0;
    }
    if (s < max_steps) tokens[index_t(s) * batch + b] = ids[b];
    positions[b] += 1;
  }
  __syncthreads();
  if (threadIdx.x == 0) *shift = s + 1;
}

}  // namespace cuda_detail

template <class T>
class graph_generator {
 public:
  using mask_type = all_of<causal, left_padding>;

  bool use_graph = true;  // false: the same device-driven step, launched eagerly
  bool fused = true;      // decode with fused_decode_step where it applies (else run_layers)
  bool fused_argmax =
      true;  // greedy + fused: the argmax folded into the LM head (no sampler kernel)
  fused_decode_options fused_options;  // launch shapes of the fused step
  int eos_check_every = 16;            // decode steps between host reads when stopping at EOS

  // Buffers for exactly `batch` prompts of up to max_prompt tokens and up to max_new new tokens.
  graph_generator(context<cuda>& ctx, const decoder_model<T, cuda>& model, int batch,
                  int max_prompt, int max_new)
      : m_ctx(ctx), m_model(model), m_batch(batch), m_max_prompt(max_prompt), m_max_new(max_new) {
    const auto& c = model.config;
    require(batch > 0 && max_prompt > 0 && max_new > 0,
            "graph_generator: batch, max_prompt and max_new must be positive");
    m_cache = model.make_cache(batch, max_prompt + max_new);
    m_ws = decoder_workspace<T, cuda>(c, index_t(batch) * max_prompt);
    m_x = tensor<T, cuda>({index_t(batch) * max_prompt, c.hidden_size});
    m_hidden = tensor<T, cuda>({batch, c.hidden_size});
    m_logits = tensor<T, cuda>({batch, c.vocab_size});
    m_pad = tensor<std::int32_t, cuda>({batch});
    m_prompt_ids = tensor<std::int32_t, cuda>({index_t(batch) * max_prompt});
    m_prompt_pos = tensor<std::int32_t, cuda>({index_t(batch) * max_prompt});
    m_ids = tensor<std::int32_t, cuda>({batch});
    m_pos = tensor<std::int32_t, cuda>({batch});
    m_shift = tensor<std::int32_t, cuda>({1});
    m_best = tensor<std::uint64_t, cuda>({batch});
    m_tokens = tensor<std::int32_t, cuda>({max_new, batch});
  }
  graph_generator(const graph_generator&) = delete;
  graph_generator& operator=(const graph_generator&) = delete;

  // Generates for `prompts` (exactly batch of them) with sampling_params (greedy unless do_sample).
  generation_result generate(const std::vector<std::vector<int>>& prompts,
                             const sampling_params& params, const generation_options& opt) {
    using clock = std::chrono::steady_clock;
    const auto& c = m_model.config;
    require(int(prompts.size()) == m_batch, "graph_generator: built for " +
                                                std::to_string(m_batch) + " prompts, got " +
                                                std::to_string(prompts.size()));
    require(opt.max_new_tokens >= 0 && opt.max_new_tokens <= m_max_new,
            "graph_generator: max_new_tokens beyond the " + std::to_string(m_max_new) +
                " it was built for");
    const left_padded_prompts layout = left_pad_prompts(c, prompts, opt.max_new_tokens);
    const int plen = layout.length;
    require(plen <= m_max_prompt, "graph_generator: prompt of " + std::to_string(plen) +
                                      " tokens, built for " + std::to_string(m_max_prompt));
    generation_result r;
    r.tokens.resize(m_batch);
    r.stopped_at_eos.assign(m_batch, false);
    for (const auto& p : prompts) r.prompt_tokens += int(p.size());
    if (opt.max_new_tokens == 0) return r;

    // The decode positions start at len - 1; the advance kernel moves them to len before the
    // first step.
    tensor<std::int32_t> next_pos({m_batch});
    for (int s = 0; s < m_batch; ++s) next_pos(s) = layout.lengths[s] - 1;
    upload(m_prompt_ids, layout.ids);
    upload(m_prompt_pos, layout.positions);
    upload(m_pad, layout.pad);
    upload(m_pos, next_pos);
    cuda_check(cudaMemsetAsync(m_shift.data(), 0, sizeof(int), m_ctx.stream), "cudaMemsetAsync");
    cuda_check(cudaMemsetAsync(m_best.data(), 0, sizeof(std::uint64_t) * m_batch, m_ctx.stream),
               "cudaMemsetAsync");
    m_params = params;
    m_rng = counter_rng{opt.seed};
    m_steps = opt.max_new_tokens;
    // The graph bakes in the sampler settings, the step count and the base slot: capture per call
    // (a few milliseconds, outside the timed region).
    if (use_graph) m_graph.capture(m_ctx.stream, [&] { decode_step(plen); });

    // Prefill, then the first token (step 0).
    m_ctx.synchronize();
    const auto t0 = clock::now();
    const index_t n = index_t(m_batch) * plen;
    auto x = tensor_view<T, cuda>(m_x.data(), {m_batch, plen, c.hidden_size});
    m_model.embed_tokens(m_ctx, x.reshape({n, c.hidden_size}), flat(m_prompt_ids, n),
                         flat(m_prompt_pos, n));
    m_model.run_layers(m_ctx, x, flat(m_prompt_pos, n), m_cache, 0, mask(), 0, c.num_layers, m_ws);
    const tensor_view<const T, cuda> last(m_x.data() + (plen - 1) * c.hidden_size,
                                          {m_batch, c.hidden_size},
                                          {index_t(plen) * c.hidden_size, 1});
    finish_step(last);
    m_cache.length = plen;
    m_ctx.synchronize();
    const auto t1 = clock::now();
    r.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();

    // Decode steps 1 .. max_new_tokens - 1.
    const std::vector<int>& eos = opt.eos_ids.empty() ? c.eos_token_ids : opt.eos_ids;
    int done_steps = 1;
    while (done_steps < m_steps) {
      const int chunk =
          opt.stop_at_eos ? std::min(eos_check_every, m_steps - done_steps) : m_steps - done_steps;
      for (int i = 0; i < chunk; ++i) {
        if (use_graph)
          m_graph.launch(m_ctx.stream);
        else
          decode_step(plen);
      }
      done_steps += chunk;
      if (opt.stop_at_eos && done_steps < m_steps &&
          all_sequences_finished(read_step_tokens(m_ctx, m_tokens, done_steps, m_batch), done_steps,
                                 m_batch, eos))
        break;
    }
    const auto host_tokens = read_step_tokens(m_ctx, m_tokens, done_steps, m_batch);
    r.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
    append_step_tokens(r, host_tokens, done_steps, m_batch, eos, opt.stop_at_eos);
    m_cache.length = plen + done_steps - 1;
    return r;
  }

 private:
  mask_type mask() const { return mask_type(causal{}, left_padding{m_pad.data()}); }

  static tensor_view<const std::int32_t, cuda> flat(const tensor<std::int32_t, cuda>& t,
                                                    index_t n) {
    return tensor_view<const std::int32_t, cuda>(t.data(), {n});
  }
  static void upload(tensor<std::int32_t, cuda>& dst, const tensor<std::int32_t>& src) {
    device_traits<cuda>::upload(dst.data(), src.data(), sizeof(std::int32_t) * src.size());
  }

  // Final norm, logits, sampling and the advance of the step state, from the newest hidden rows.
  void finish_step(tensor_view<const T, cuda> last) {
    m_model.final_norm(m_ctx, m_hidden.view(), last);
    m_model.logits(m_ctx, m_logits.view(), tensor_view<const T, cuda>(m_hidden.view()));
    sample_and_advance();
  }

  void sample_and_advance() {
    sample(m_ctx, m_params, tensor_view<const T, cuda>(m_logits.view()), m_ids.view(), m_rng, 0);
    advance(nullptr);
  }

  void advance(std::uint64_t* best) {
    cuda_detail::launch(m_ctx, "advance", cuda_detail::advance_kernel, dim3(1), dim3(128), 0,
                        m_tokens.data(), m_ids.data(), m_pos.data(), m_shift.data(), m_batch,
                        m_steps, reinterpret_cast<unsigned long long*>(best),
                        m_model.config.vocab_size);
  }

  // One decode step for slot (plen - 1) + shift; shift is read on the device.
  void decode_step(int plen) {
    const auto& c = m_model.config;
    const int* saved = m_ctx.slot_shift;
    m_ctx.slot_shift = m_shift.data();
    auto x = tensor_view<T, cuda>(m_x.data(), {m_batch, 1, c.hidden_size});
    auto x2 = x.reshape({m_batch, c.hidden_size});
    m_model.embed_tokens(m_ctx, x2, tensor_view<const std::int32_t, cuda>(m_ids.view()),
                         tensor_view<const std::int32_t, cuda>(m_pos.view()));
    if (fused && fused_decode_supported(m_model, m_batch)) {
      std::uint64_t* best = !m_params.do_sample && fused_argmax ? m_best.data() : nullptr;
      fused_decode_step(m_ctx, m_model, x2, tensor_view<const std::int32_t, cuda>(m_pos.view()),
                        m_cache, plen - 1, mask(), m_ws, m_logits.view(), best, fused_options);
      if (best)
        advance(best);
      else
        sample_and_advance();
    } else {
      m_model.run_layers(m_ctx, x, tensor_view<const std::int32_t, cuda>(m_pos.view()), m_cache,
                         plen - 1, mask(), 0, c.num_layers, m_ws);
      finish_step(tensor_view<const T, cuda>(x2));
    }
    m_ctx.slot_shift = saved;
  }

  context<cuda>& m_ctx;
  const decoder_model<T, cuda>& m_model;
  int m_batch, m_max_prompt, m_max_new, m_steps = 0;
  sampling_params m_params;
  counter_rng m_rng;
  kv_cache<T, cuda> m_cache;
  decoder_workspace<T, cuda> m_ws;
  tensor<T, cuda> m_x, m_hidden, m_logits;
  tensor<std::int32_t, cuda> m_pad, m_prompt_ids, m_prompt_pos, m_ids, m_pos, m_shift, m_tokens;
  tensor<std::uint64_t, cuda> m_best;  // (B) greedy argmax folded into the LM head (fused step)
  step_graph m_graph;                  // the captured decode_step
};

}  // namespace crossbatch
