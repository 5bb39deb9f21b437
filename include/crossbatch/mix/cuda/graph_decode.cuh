// Cross-batch generation on the GPU with the decode step captured once as a CUDA graph, the
// counterpart of graph_generator (generate/cuda/graph_generate.cuh) with a mixer in the step: the
// step runs layers [0, k), mixes the newest states across the batch with group ids held on the
// device, and finishes as cross_batch_generate() does (generate/cross_batch.hpp: project,
// project_raw or continue_layers). Sampling is on the device; a sequence that samples an EOS id
// gets group -1 in the same step (finished sequences stop contributing), so nothing in a step
// needs the host. Without a mixer the same step is plain batched decoding, which makes the
// overhead of mixing measurable on identical machinery (bench/cross_batch).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

#include "crossbatch/attention/cuda/attention.cuh"
#include "crossbatch/generate/cross_batch.hpp"
#include "crossbatch/generate/cuda/step_graph.cuh"
#include "crossbatch/generate/prompt_layout.hpp"
#include "crossbatch/mix/cuda/ops.cuh"
#include "crossbatch/mix/mixer.hpp"
#include "crossbatch/model/decoder.hpp"
#include "crossbatch/ops/cuda/activation.cuh"
#include "crossbatch/ops/cuda/embedding.cuh"
#include "crossbatch/ops/cuda/linear.cuh"
#include "crossbatch/ops/cuda/norm.cuh"
#include "crossbatch/ops/cuda/rope.cuh"
#include "crossbatch/sample/cuda/sample.cuh"

namespace crossbatch {
namespace cuda_detail {

// tokens[s * B + b] = ids[b]; positions[b] += 1; groups[b] = -1 when ids[b] is an EOS id (retire);
// then *shift = s + 1 for s = *shift.
static __global__ void cross_batch_advance_kernel(std::int32_t* tokens, const std::int32_t* ids,
                                                  std::int32_t* positions, std::int32_t* groups,
                                                  const std::int32_t* eos, int n_eos, int* shift,
                                                  int batch, int max_steps) {
  grid_dependency();
  const int s = *shift;
  __syncthreads();
  for (int b = threadIdx.x; b < batch; b += blockDim.x) {
    const int id = ids[b];
    if (s < max_steps) tokens[index_t(s) * batch + b] = id;
    positions[b] += 1;
    for (int e = 0; e < n_eos; ++e)
      if (eos[e] == id) groups[b] = -1;
  }
  __syncthreads();
  if (threadIdx.x == 0) *shift = s + 1;
}

}  // namespace cuda_detail

template <class T>
class cross_batch_graph_decoder {
 public:
  using mask_type = all_of<causal, left_padding>;

  bool use_graph = true;     // false: the same device-driven step, launched eagerly
  int eos_check_every = 16;  // decode steps between host reads when stopping at EOS

  // Buffers for exactly `batch` prompts of up to max_prompt tokens and up to max_new new tokens.
  cross_batch_graph_decoder(context<cuda>& ctx, const decoder_model<T, cuda>& model, int batch,
                            int max_prompt, int max_new)
      : m_ctx(ctx), m_model(model), m_batch(batch), m_max_prompt(max_prompt), m_max_new(max_new) {
    const auto& c = model.config;
    require(batch > 0 && max_prompt > 0 && max_new > 0,
            "cross_batch_graph_decoder: batch, max_prompt and max_new must be positive");
    m_cache = model.make_cache(batch, max_prompt + max_new);
    m_ws = decoder_workspace<T, cuda>(c, index_t(batch) * max_prompt);
    m_x = tensor<T, cuda>({index_t(batch) * max_prompt, c.hidden_size});
    for (auto* t : {&m_states, &m_mixed, &m_normed, &m_hidden})
      *t = tensor<T, cuda>({batch, c.hidden_size});
    m_logits = tensor<T, cuda>({batch, c.vocab_size});
    m_pad = tensor<std::int32_t, cuda>({batch});
    m_prompt_ids = tensor<std::int32_t, cuda>({index_t(batch) * max_prompt});
    m_prompt_pos = tensor<std::int32_t, cuda>({index_t(batch) * max_prompt});
    m_ids = tensor<std::int32_t, cuda>({batch});
    m_pos = tensor<std::int32_t, cuda>({batch});
    m_groups = tensor<std::int32_t, cuda>({batch});
    m_shift = tensor<std::int32_t, cuda>({1});
    m_tokens = tensor<std::int32_t, cuda>({max_new, batch});
  }
  cross_batch_graph_decoder(const cross_batch_graph_decoder&) = delete;
  cross_batch_graph_decoder& operator=(const cross_batch_graph_decoder&) = delete;

  // Generates for `prompts` (exactly batch of them). mixer null: plain batched decoding. lm_head
  // (V, C) replaces the model's output embedding when given. opt.groups, mix_layer and projection
  // as in cross_batch_generate().
  generation_result generate(const std::vector<std::vector<int>>& prompts,
                             cross_batch_mixer<T, cuda>* mixer, const sampling_params& params,
                             const cross_batch_options& opt,
                             tensor_view<const T, cuda> lm_head = {}) {
    using clock = std::chrono::steady_clock;
    const auto& c = m_model.config;
    require(int(prompts.size()) == m_batch, "cross_batch_graph_decoder: built for " +
                                                std::to_string(m_batch) + " prompts, got " +
                                                std::to_string(prompts.size()));
    require(opt.max_new_tokens >= 0 && opt.max_new_tokens <= m_max_new,
            "cross_batch_graph_decoder: max_new_tokens beyond the " + std::to_string(m_max_new) +
                " it was built for");
    m_mixer = mixer;
    m_k = resolve_mix_layer(opt.mix_layer, c.num_layers);
    m_projection = opt.projection;
    m_head = lm_head.data ? lm_head : m_model.output_embedding().view();
    require<shape_error>(m_head.shape == shape_t{c.vocab_size, c.hidden_size},
                         "cross_batch_graph_decoder: lm_head must be (V, C)");
    const left_padded_prompts layout = left_pad_prompts(c, prompts, opt.max_new_tokens);
    const int plen = layout.length;
    require(plen <= m_max_prompt, "cross_batch_graph_decoder: prompt of " + std::to_string(plen) +
                                      " tokens, built for " + std::to_string(m_max_prompt));
    require(opt.groups.empty() || int(opt.groups.size()) == m_batch,
            "cross_batch_graph_decoder: one group id per prompt");
    generation_result r;
    r.tokens.resize(m_batch);
    r.stopped_at_eos.assign(m_batch, false);
    for (const auto& p : prompts) r.prompt_tokens += int(p.size());
    if (opt.max_new_tokens == 0) return r;

    // The decode positions start at len - 1; the advance kernel moves them to len before the
    // first step.
    tensor<std::int32_t> next_pos({m_batch}), groups({m_batch});
    for (int s = 0; s < m_batch; ++s) {
      next_pos(s) = layout.lengths[s] - 1;
      groups(s) = opt.groups.empty() ? 0 : opt.groups[s];
    }
    const std::vector<int>& eos = opt.eos_ids.empty() ? c.eos_token_ids : opt.eos_ids;
    tensor<std::int32_t> eos_host({index_t(std::max<std::size_t>(1, eos.size()))});
    for (std::size_t e = 0; e < eos.size(); ++e) eos_host(index_t(e)) = eos[e];
    m_eos = to_device<cuda>(eos_host);
    m_n_eos = opt.stop_at_eos ? int(eos.size()) : 0;
    upload(m_prompt_ids, layout.ids);
    upload(m_prompt_pos, layout.positions);
    upload(m_pad, layout.pad);
    upload(m_pos, next_pos);
    upload(m_groups, groups);
    cuda_check(cudaMemsetAsync(m_shift.data(), 0, sizeof(int), m_ctx.stream), "cudaMemsetAsync");
    m_params = params;
    m_rng = counter_rng{opt.seed};
    m_steps = opt.max_new_tokens;

    // Prefill (eager; it also sizes the mixer's workspace), then the capture of one decode step.
    m_ctx.synchronize();
    const auto t0 = clock::now();
    prefill(plen);
    m_cache.length = plen;
    if (use_graph) m_graph.capture(m_ctx.stream, [&] { decode_step(plen); });
    m_ctx.synchronize();
    const auto t1 = clock::now();
    r.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();

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
  using cv = tensor_view<const T, cuda>;
  mask_type mask() const { return mask_type(causal{}, left_padding{m_pad.data()}); }
  static tensor_view<const std::int32_t, cuda> flat(const tensor<std::int32_t, cuda>& t,
                                                    index_t n) {
    return tensor_view<const std::int32_t, cuda>(t.data(), {n});
  }
  static void upload(tensor<std::int32_t, cuda>& dst, const tensor<std::int32_t>& src) {
    device_traits<cuda>::upload(dst.data(), src.data(), sizeof(std::int32_t) * src.size());
  }
  tensor_view<const std::int32_t, cuda> groups() const { return m_groups.view(); }

  // The layers of one call over x (B, T, C) whose newest rows are `newest` (B, C): mixing at layer
  // k, then the head input; logits, sampling and the advance kernel.
  void forward(tensor_view<T, cuda> x, tensor_view<T, cuda> newest,
               tensor_view<const std::int32_t, cuda> positions, int start) {
    const int L = m_model.config.num_layers, stop = m_mixer ? std::min(m_k, L) : L;
    m_model.run_layers(m_ctx, x, positions, m_cache, start, mask(), 0, stop, m_ws);
    cv feat;
    if (m_mixer && m_k < L) {
      copy_rows(m_ctx, m_states.view(), cv(newest));
      if (m_projection == mix_projection::continue_layers) {
        m_mixer->mix(m_ctx, m_mixed.view(), cv(m_states.view()), groups());
        copy_rows(m_ctx, newest, cv(m_mixed.view()));
      }
    }
    m_model.run_layers(m_ctx, x, positions, m_cache, start, mask(), stop, L, m_ws);
    if (!m_mixer || m_k == L || m_projection == mix_projection::continue_layers) {
      m_model.final_norm(m_ctx, m_hidden.view(), cv(newest));
      feat = m_hidden.view();
      if (m_mixer && m_k == L) {
        m_mixer->mix(m_ctx, m_mixed.view(), cv(m_hidden.view()), groups());
        feat = m_mixed.view();
      }
    } else {
      m_mixer->mix(m_ctx, m_mixed.view(), cv(m_states.view()), groups());
      feat = m_mixed.view();
      if (m_projection == mix_projection::project) {
        m_model.final_norm(m_ctx, m_normed.view(), cv(m_mixed.view()));
        feat = m_normed.view();
      }
    }
    linear(m_ctx, m_logits.view(), feat, m_head);
    sample(m_ctx, m_params, cv(m_logits.view()), m_ids.view(), m_rng, 0);
    cuda_detail::launch(m_ctx, "cross_batch_advance", cuda_detail::cross_batch_advance_kernel,
                        dim3(1), dim3(128), 0, m_tokens.data(),
                        static_cast<const std::int32_t*>(m_ids.data()), m_pos.data(),
                        m_groups.data(), static_cast<const std::int32_t*>(m_eos.data()), m_n_eos,
                        m_shift.data(), m_batch, m_steps);
  }

  void prefill(int plen) {
    const auto& c = m_model.config;
    const index_t n = index_t(m_batch) * plen, C = c.hidden_size;
    auto x = tensor_view<T, cuda>(m_x.data(), {m_batch, plen, C});
    m_model.embed_tokens(m_ctx, x.reshape({n, C}), flat(m_prompt_ids, n), flat(m_prompt_pos, n));
    const tensor_view<T, cuda> newest(m_x.data() + (plen - 1) * C, {m_batch, C},
                                      {index_t(plen) * C, 1});
    forward(x, newest, flat(m_prompt_pos, n), 0);
  }

  // One decode step at slot (plen - 1) + shift; shift is read on the device.
  void decode_step(int plen) {
    const auto& c = m_model.config;
    const int* saved = m_ctx.slot_shift;
    m_ctx.slot_shift = m_shift.data();
    auto x = tensor_view<T, cuda>(m_x.data(), {m_batch, 1, c.hidden_size});
    auto x2 = x.reshape({m_batch, c.hidden_size});
    m_model.embed_tokens(m_ctx, x2, tensor_view<const std::int32_t, cuda>(m_ids.view()),
                         tensor_view<const std::int32_t, cuda>(m_pos.view()));
    forward(x, x2, tensor_view<const std::int32_t, cuda>(m_pos.view()), plen - 1);
    m_ctx.slot_shift = saved;
  }

  context<cuda>& m_ctx;
  const decoder_model<T, cuda>& m_model;
  int m_batch, m_max_prompt, m_max_new;
  kv_cache<T, cuda> m_cache;
  decoder_workspace<T, cuda> m_ws;
  tensor<T, cuda> m_x, m_states, m_mixed, m_normed, m_hidden, m_logits;
  tensor<std::int32_t, cuda> m_pad, m_prompt_ids, m_prompt_pos, m_ids, m_pos, m_groups, m_shift,
      m_tokens, m_eos;
  int m_n_eos = 0;
  cross_batch_mixer<T, cuda>* m_mixer = nullptr;
  int m_k = 0;
  mix_projection m_projection = mix_projection::project;
  tensor_view<const T, cuda> m_head;
  sampling_params m_params;
  counter_rng m_rng;
  int m_steps = 0;
  step_graph m_graph;  // the captured decode_step
};

}  // namespace crossbatch
