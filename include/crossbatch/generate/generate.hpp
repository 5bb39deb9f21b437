// Batched generation: one prefill over the left-padded prompts, then KV-cached decode steps with a
// sampler, per-sequence EOS stopping (or a fixed length that ignores EOS), max_new_tokens and a
// streaming callback per token. Sequences that finished keep stepping with the pad token (their
// outputs are discarded) so the batch stays in lockstep; the loop ends when all have finished.
#pragma once

#include <chrono>
#include <functional>
#include <vector>

#include "crossbatch/generate/batch_session.hpp"
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

template <class T, class D, sampler S>
generation_result generate(const context<D>& ctx, const decoder_model<T, D>& model,
                           const std::vector<std::vector<int>>& prompts, const S& sampler,
                           const generation_options& opt, const token_callback& on_token = {}) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  batch_session<T, D> session(ctx, model, prompts, opt.max_new_tokens);
  const int b = session.batch();
  const std::vector<int>& eos = opt.eos_ids.empty() ? model.config.eos_token_ids : opt.eos_ids;
  const counter_rng rng{opt.seed};
  generation_result r;
  r.tokens.resize(b);
  r.stopped_at_eos.assign(b, false);
  for (const auto& p : prompts) r.prompt_tokens += static_cast<int>(p.size());
  std::vector<bool> done(b, false);
  std::vector<std::int32_t> next(b);
  if (opt.max_new_tokens == 0) return r;

  session.prefill();
  const auto t1 = clock::now();
  r.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();
  for (int step = 0; step < opt.max_new_tokens; ++step) {
    if (step > 0) session.step(next);
    auto logits = session.logits_host();
    sample(context<cpu>{}, sampler, logits.view(), std::span(next), rng,
           static_cast<std::uint64_t>(step));
    int live = 0;
    for (int s = 0; s < b; ++s) {
      if (done[s]) {
        next[s] = opt.pad_id;
        continue;
      }
      r.tokens[s].push_back(next[s]);
      ++r.generated_tokens;
      if (on_token) on_token(s, next[s]);
      if (opt.stop_at_eos && std::find(eos.begin(), eos.end(), next[s]) != eos.end()) {
        done[s] = true;
        r.stopped_at_eos[s] = true;
        next[s] = opt.pad_id;
      } else {
        ++live;
      }
    }
    if (live == 0) break;
  }
  r.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  return r;
}

}  // namespace crossbatch
