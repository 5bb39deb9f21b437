// What the strategies generate with: a batch of chat conversations in, one reply each out, greedy,
// with the cost of the call (prompt and generated tokens, seconds). chat_generator is the interface
// (local inference here, an OpenAI-compatible server elsewhere); local_generator runs the engine
// (generate/generate.hpp: one left-padded batch) on any device, and also cross-batch generation
// with a mixer and/or a trained LM head for collab_hidden and finetuned.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "crossbatch/generate/cross_batch.hpp"
#include "crossbatch/generate/generate.hpp"
#include "crossbatch/mix/mixer.hpp"
#include "crossbatch/model/decoder.hpp"
#include "crossbatch/sample/sampler.hpp"
#include "crossbatch/text/chat_template.hpp"
#include "crossbatch/text/tokenizer.hpp"

namespace crossbatch::pardec {

using conversation = std::vector<text::chat_message>;

struct generated_batch {
  std::vector<std::string> replies;  // one per conversation, without the end-of-turn token
  long prompt_tokens = 0, generated_tokens = 0;
  double seconds = 0;
  // Local inference only (empty through the API): the templated prompt ids and the generated ids
  // (with the stop token where the row stopped at one), per conversation.
  std::vector<std::vector<int>> prompt_ids, token_ids;
};

class chat_generator {
 public:
  virtual ~chat_generator() = default;
  // Greedy replies to each conversation (rendered with a generation prompt), one batch.
  virtual generated_batch generate(const std::vector<conversation>& batch, int max_new_tokens) = 0;
};

// The mixer of collab_hidden (its layer and projection) or the trained head of finetuned; both may
// be set (a crossbatch checkpoint trained with its head).
template <class T, class D>
struct hidden_mixing {
  std::optional<cross_batch_mixer<T, D>> mixer;  // none: no mixing
  tensor<T, D> lm_head;                          // (V, C); empty: the model's head
  int mix_layer = -1;
  mix_projection projection = mix_projection::project;
};

template <class T, class D = cpu>
class local_generator : public chat_generator {
 public:
  local_generator(const context<D>& ctx, const decoder_model<T, D>& model, text::tokenizer tok,
                  text::chat_template tmpl)
      : m_ctx(ctx), m_model(model), m_tok(std::move(tok)), m_tmpl(std::move(tmpl)) {
    for (const char* name : {"<|im_end|>", "<|eot_id|>", "<|endoftext|>", "</s>"})
      if (auto id = m_tok.token_to_id(name)) m_stop.push_back(*id);
    for (int e : model.config.eos_token_ids) m_stop.push_back(e);
    require(!m_stop.empty(), "local_generator: no end-of-turn or EOS token");
  }

  const text::tokenizer& tokenizer() const { return m_tok; }
  const decoder_model<T, D>& model() const { return m_model; }
  // The tokens that end a reply (end-of-turn names found in the vocabulary, then the EOS ids); the
  // first one pads finished rows.
  const std::vector<int>& stop_ids() const { return m_stop; }

  std::vector<int> prompt_ids(const conversation& c) const {
    const auto ids = m_tok.encode(m_tmpl.render(c, true), {.add_special_tokens = false});
    return {ids.begin(), ids.end()};
  }

  generated_batch generate(const std::vector<conversation>& batch, int max_new_tokens) override {
    return run(batch, max_new_tokens, nullptr);
  }

  // The same batch with cross-batch mixing among all its rows (one group) and/or a trained head.
  generated_batch generate_mixed(const std::vector<conversation>& batch, int max_new_tokens,
                                 hidden_mixing<T, D>& mixing) {
    return run(batch, max_new_tokens, &mixing);
  }

 private:
  generated_batch run(const std::vector<conversation>& batch, int max_new_tokens, hidden_mixing<T, D>* mixing) {
    require(!batch.empty(), "local_generator: empty batch");
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::vector<int>> prompts;
    for (const auto& c : batch) prompts.push_back(prompt_ids(c));
    generation_result r;
    if (!mixing) {
      generation_options opt;
      opt.max_new_tokens = max_new_tokens;
      opt.eos_ids = m_stop;
      opt.pad_id = m_stop.front();
      r = crossbatch::generate(m_ctx, m_model, prompts, greedy{}, opt);
    } else {
      cross_batch_options opt;
      opt.max_new_tokens = max_new_tokens;
      opt.eos_ids = m_stop;
      opt.pad_id = m_stop.front();
      opt.groups.assign(prompts.size(), 0);
      opt.mix_layer = mixing->mix_layer;
      opt.projection = mixing->projection;
      const tensor_view<const T, D> head =
          mixing->lm_head.empty() ? tensor_view<const T, D>{} : tensor_view<const T, D>(mixing->lm_head.view());
      if (mixing->mixer) {
        r = cross_batch_generate(m_ctx, m_model, prompts, *mixing->mixer, greedy{}, opt, head);
      } else {
        identity_mixer id;
        r = cross_batch_generate(m_ctx, m_model, prompts, id, greedy{}, opt, head);
      }
    }
    generated_batch out;
    for (std::size_t s = 0; s < prompts.size(); ++s) {
      auto toks = r.tokens[s];
      if (r.stopped_at_eos[s] && !toks.empty()) toks.pop_back();
      const std::vector<std::int32_t> v(toks.begin(), toks.end());
      out.replies.push_back(m_tok.decode(v, true));
      out.prompt_tokens += long(prompts[s].size());
      out.generated_tokens += long(r.tokens[s].size());
      out.token_ids.push_back(r.tokens[s]);
    }
    out.prompt_ids = std::move(prompts);
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return out;
  }

  const context<D>& m_ctx;
  const decoder_model<T, D>& m_model;
  text::tokenizer m_tok;
  text::chat_template m_tmpl;
  std::vector<int> m_stop;
};

}  // namespace crossbatch::pardec
