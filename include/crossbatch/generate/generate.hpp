// The decode driver on any device, host-driven: a step policy (generate/step_policy.hpp) runs the
// models, the logits come to the host as float, a sampler picks one token per sequence (counter
// RNG at stream = sequence, counter = step), and the driver records tokens, stops each sequence at
// EOS (or runs a fixed length that ignores EOS), retires it from mixing, streams every token to a
// callback and ends when all have finished or max_new_tokens is reached. Sequences that finished
// keep stepping with the pad token (their outputs are discarded) so the batch stays in lock step.
// On CUDA, generate/cuda/graph_driver.cuh is the same driver with the step in one CUDA graph and
// sampling on the device. generate() is the one-call form for plain prompts.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <span>
#include <vector>

#include "crossbatch/generate/batch_session.hpp"
#include "crossbatch/generate/step_policy.hpp"
#include "crossbatch/sample/sampler.hpp"

namespace crossbatch {

struct generation_options {
  int max_new_tokens = 32;
  bool stop_at_eos = true;   // false: fixed-length mode, EOS is an ordinary token
  std::vector<int> eos_ids;  // empty: the model config's eos_token_id
  int pad_id = 0;            // fed to finished sequences
  std::uint64_t seed = 0;
};

struct generation_result {
  std::vector<std::vector<int>>
      tokens;  // new tokens per sequence, EOS included when it stopped there
  std::vector<bool> stopped_at_eos;
  int prompt_tokens = 0;  // real (unpadded) prompt tokens
  int generated_tokens = 0;
  double prefill_seconds = 0, decode_seconds = 0;
};

// Called for every new token as it is produced: (sequence index, token id).
using token_callback = std::function<void(int, int)>;

// Per-sequence bookkeeping shared by the drivers: tokens, EOS, callback, live count.
class sequence_tracker {
 public:
  sequence_tracker(int batch, const generation_options& opt, const std::vector<int>& eos)
      : m_opt(opt), m_eos(eos), m_done(batch, false) {
    result.tokens.resize(batch);
    result.stopped_at_eos.assign(batch, false);
  }
  // Records token `id` of sequence s; returns true when s finished with it (EOS).
  bool record(int s, int id, const token_callback& on_token) {
    result.tokens[s].push_back(id);
    ++result.generated_tokens;
    if (on_token) on_token(s, id);
    if (m_opt.stop_at_eos && std::find(m_eos.begin(), m_eos.end(), id) != m_eos.end()) {
      m_done[s] = true;
      result.stopped_at_eos[s] = true;
      return true;
    }
    return false;
  }
  bool done(int s) const { return m_done[s]; }
  bool all_done() const {
    return std::all_of(m_done.begin(), m_done.end(), [](bool d) { return d; });
  }

  generation_result result;

 private:
  const generation_options& m_opt;
  const std::vector<int>& m_eos;
  std::vector<bool> m_done;
};

// Runs `policy` for opt.max_new_tokens steps (step 0's logits come from the prefill, which runs
// here unless `prefilled`: the caller then ran it, e.g. to share one prefill across policies).
template <class T, class D, class P, sampler S>
requires step_policy<P, T, D> generation_result
decode(const context<D>& ctx, P& policy, const S& sampler, const generation_options& opt,
       const std::vector<int>& eos, const token_callback& on_token = {}, bool prefilled = false) {
  using clock = std::chrono::steady_clock;
  const int b = policy.batch();
  sequence_tracker track(b, opt, eos);
  if (opt.max_new_tokens == 0) return track.result;
  const auto t0 = clock::now();
  if (!prefilled) policy.prefill();
  const auto t1 = clock::now();
  track.result.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();
  const counter_rng rng{opt.seed};
  std::int32_t* groups = policy.retire_groups();
  std::vector<std::int32_t> next(b);
  tensor<std::int32_t, D> ids({b});
  for (int step = 0; step < opt.max_new_tokens; ++step) {
    if (step > 0) {
      device_traits<D>::upload(ids.data(), next.data(), sizeof(std::int32_t) * b);
      policy.step(tensor_view<const std::int32_t, D>(ids.view()), nullptr);
    }
    const tensor<T> h = to_host(policy.logits());
    tensor<float> logits(h.shape());
    for (index_t i = 0; i < h.size(); ++i) logits.data()[i] = static_cast<float>(h.data()[i]);
    sample(context<cpu>{}, sampler, logits.view(), std::span(next), rng,
           static_cast<std::uint64_t>(step));
    for (int s = 0; s < b; ++s) {
      if (track.done(s)) {
        next[s] = opt.pad_id;
      } else if (track.record(s, next[s], on_token)) {
        next[s] = opt.pad_id;
        if (groups) {  // finished sequences stop contributing to mixing
          const std::int32_t retired = -1;
          device_traits<D>::upload(groups + s, &retired, sizeof(retired));
        }
      }
    }
    if (track.all_done()) break;
  }
  track.result.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  return track.result;
}

// The EOS ids a run stops at: opt.eos_ids, else the model's.
inline const std::vector<int>& stop_ids(const generation_options& opt, const model_config& c) {
  return opt.eos_ids.empty() ? c.eos_token_ids : opt.eos_ids;
}

inline int real_prompt_tokens(const laid_out_batch& l) {
  int n = 0;
  for (int len : l.lengths) n += len;
  return n;
}

// Generates for `prompts` under `layout` with the plain step.
template <class T, class D, sampler S, class Layout = left_padded>
generation_result generate(const context<D>& ctx, const decoder_model<T, D>& model,
                           const std::vector<typename Layout::prompt>& prompts, const S& sampler,
                           const generation_options& opt, const token_callback& on_token = {},
                           const Layout& layout = {}) {
  batch_session<T, D, Layout> session(ctx, model, prompts, opt.max_new_tokens, layout);
  plain_step<T, D, Layout> policy(session);
  auto r = decode<T, D>(ctx, policy, sampler, opt, stop_ids(opt, model.config), on_token);
  r.prompt_tokens = real_prompt_tokens(session.layout());
  return r;
}

}  // namespace crossbatch
