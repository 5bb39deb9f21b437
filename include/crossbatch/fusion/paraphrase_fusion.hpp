// Paraphrase fusion, the front end: the methods of the experiment on one engine, for a batch of
// questions with their own numbers of paraphrases (fusion/paraphrase_batch.hpp).
//   fused         one sequence per question: the paraphrase prompts joined by a separator, each
//                 isolated from the others during the prompt (segmented layout), generated tokens
//                 (and the shared tail, see fused_prompts) attending to all of them; positions
//                 0..L-1, or restarted per paraphrase
//   concat        the same tokens with plain causal attention (the no-isolation ablation)
//   single        every paraphrase its own sequence (the per-paraphrase baseline and the oracle)
//   avg, max, weighted_avg, weighted_max
//                 every paraphrase its own row, the rows of a question combined each step
//                 (fusion/ensemble_step.hpp) and stepped on the same ids
// Each function takes a `run(policy) -> generation_result` (host_run() here: decode() with a
// sampler; on CUDA the graph driver, fusion/cuda/graph_run.cuh) and reports what the run cost.
#pragma once

#include <string>
#include <vector>

#include "crossbatch/fusion/confidence.hpp"
#include "crossbatch/fusion/ensemble_step.hpp"
#include "crossbatch/fusion/paraphrase_batch.hpp"
#include "crossbatch/generate/generate.hpp"

namespace crossbatch {

enum class fusion_method { single, fused, concat, avg, max, weighted_avg, weighted_max };

inline const std::vector<std::pair<std::string, fusion_method>>& fusion_method_names() {
  static const std::vector<std::pair<std::string, fusion_method>> names = {
      {"single", fusion_method::single},
      {"fused", fusion_method::fused},
      {"concat", fusion_method::concat},
      {"avg", fusion_method::avg},
      {"max", fusion_method::max},
      {"weighted_avg", fusion_method::weighted_avg},
      {"weighted_max", fusion_method::weighted_max}};
  return names;
}
inline fusion_method parse_fusion_method(const std::string& s) {
  std::string known;
  for (const auto& [name, m] : fusion_method_names()) {
    if (name == s) return m;
    known += (known.empty() ? "" : ", ") + name;
  }
  throw value_error("unknown fusion method '" + s + "' (known: " + known + ")");
}
inline std::string to_string(fusion_method m) {
  for (const auto& [name, k] : fusion_method_names())
    if (k == m) return name;
  return "?";
}

// What one call processed: real prompt tokens prefilled, padded prompt slots, tokens fed while
// decoding (one per row and step, finished rows included: the batch steps in lock step), the KV
// cache's bytes (keys and values, all rows, allocated for the whole run) and the wall time.
struct fusion_cost {
  std::int64_t prompt_tokens = 0, prompt_slots = 0, decode_tokens = 0, kv_bytes = 0;
  double seconds = 0;
  fusion_cost& operator+=(const fusion_cost& o) {
    prompt_tokens += o.prompt_tokens;
    prompt_slots += o.prompt_slots;
    decode_tokens += o.decode_tokens;
    kv_bytes = std::max(kv_bytes, o.kv_bytes);  // peak of one call
    seconds += o.seconds;
    return *this;
  }
};

namespace detail {
template <class T, class D, class Layout>
fusion_cost cost_of(batch_session<T, D, Layout>& s, const generation_result& r) {
  fusion_cost c;
  c.prompt_tokens = real_prompt_tokens(s.layout());
  c.prompt_slots = std::int64_t(s.batch()) * s.prompt_length();
  int steps = 0;
  for (const auto& t : r.tokens) steps = std::max(steps, static_cast<int>(t.size()));
  c.decode_tokens = std::int64_t(s.batch()) * std::max(0, steps - 1);
  c.kv_bytes = 2 * s.cache().k.size() * std::int64_t(sizeof(T));
  c.seconds = r.prefill_seconds + r.decode_seconds;
  return c;
}
}  // namespace detail

// The host-driven run: decode() with `sampler` (greedy, sampling_params, ...).
template <class T, class D, sampler S>
auto host_run(const context<D>& ctx, const S& sampler, const generation_options& opt,
              const std::vector<int>& eos) {
  // opt and eos are copied: the run may outlive temporaries passed here.
  return [&ctx, sampler, opt, eos](auto& policy) {
    return decode<T, D>(ctx, policy, sampler, opt, eos);
  };
}

// How the paraphrases of a question become one sequence (fusion/paraphrase_batch.hpp).
struct fusion_prompt_options {
  std::vector<int> separator;      // tokens between paraphrases
  int shared_tail = 0;             // last tokens common to all paraphrases, moved to a suffix
  bool tail_up_to_common = false;  // shared_tail is a cap: each question takes what it shares
  bool restart_positions = false;  // positions restart per paraphrase (PCW style)
};

// One generation per question (tokens[q]).
template <class T, class D, class Run>
generation_result fused_generate(const context<D>& ctx, const decoder_model<T, D>& model,
                                 const std::vector<paraphrase_question>& questions,
                                 const fusion_prompt_options& fo, const generation_options& opt,
                                 Run&& run, fusion_cost* cost = nullptr) {
  batch_session<T, D, segmented> s(
      ctx, model, fused_prompts(questions, fo.separator, fo.shared_tail, fo.tail_up_to_common),
      opt.max_new_tokens, segmented{fo.restart_positions});
  plain_step<T, D, segmented> policy(s);
  auto r = run(policy);
  r.prompt_tokens = real_prompt_tokens(s.layout());
  if (cost) *cost += detail::cost_of(s, r);
  return r;
}

// One generation per question, the paraphrases concatenated without isolation.
template <class T, class D, class Run>
generation_result concat_generate(const context<D>& ctx, const decoder_model<T, D>& model,
                                  const std::vector<paraphrase_question>& questions,
                                  const fusion_prompt_options& fo, const generation_options& opt,
                                  Run&& run, fusion_cost* cost = nullptr) {
  batch_session<T, D> s(
      ctx, model,
      concatenated_prompts(questions, fo.separator, fo.shared_tail, fo.tail_up_to_common),
      opt.max_new_tokens);
  plain_step<T, D> policy(s);
  auto r = run(policy);
  r.prompt_tokens = real_prompt_tokens(s.layout());
  if (cost) *cost += detail::cost_of(s, r);
  return r;
}

// One generation per paraphrase (tokens[r], rows in paraphrase_rows_of(questions) order).
template <class T, class D, class Run>
generation_result single_generate(const context<D>& ctx, const decoder_model<T, D>& model,
                                  const std::vector<paraphrase_question>& questions,
                                  const generation_options& opt, Run&& run,
                                  fusion_cost* cost = nullptr) {
  const auto rows = paraphrase_rows_of(questions);
  batch_session<T, D> s(ctx, model, rows.prompts, opt.max_new_tokens);
  plain_step<T, D> policy(s);
  auto r = run(policy);
  r.prompt_tokens = real_prompt_tokens(s.layout());
  if (cost) *cost += detail::cost_of(s, r);
  return r;
}

// One generation per question from its paraphrases' rows combined by combiners[q].
template <class T, class D, logit_combiner C, class Run>
generation_result ensemble_generate(const context<D>& ctx, const decoder_model<T, D>& model,
                                    const std::vector<paraphrase_question>& questions,
                                    std::vector<C> combiners, const generation_options& opt,
                                    Run&& run, fusion_cost* cost = nullptr) {
  const auto rows = paraphrase_rows_of(questions);
  batch_session<T, D> s(ctx, model, rows.prompts, opt.max_new_tokens);
  ensemble_step<T, D, C> policy(s, rows.offsets, std::move(combiners));
  auto r = run(policy);
  r.prompt_tokens = real_prompt_tokens(s.layout());
  if (cost) *cost += detail::cost_of(s, r);
  return r;
}

// The same combiner for every question.
template <class C>
std::vector<C> same_combiner(const std::vector<paraphrase_question>& questions, C c = {}) {
  return std::vector<C>(questions.size(), c);
}

}  // namespace crossbatch
