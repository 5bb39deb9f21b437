// The reference server's routes (its field names, defaults and ranges; experiment_details.md):
//   POST /generate_lda        {prompt, max_new_tokens = 80 (1..512), temperature = 0.8 (> 0),
//                              top_p = 0.95 (0, 1], alpha = 1.0 (0..10), do_sample = true,
//                              apply_chat_template = true, system_prompt = null}
//                             -> {prompt, formatted_prompt, completion, text, alpha, model_after,
//                                 model_before, tokens_generated, stopped_early}
//   POST /generate_lda_batch  the same with `prompts` (a list), fixed length as the reference's
//                             batched path -> {results: [...], alpha, model_after, model_before,
//                             batch_size}
//   POST /generate            both models' plain completions of `prompt` -> {prompt,
//                             formatted_prompt, model_after, model_before, after: {completion,
//                             text, tokens_generated, stopped_early}, before: {...} | null}
//   GET  /tokenizer_compatibility
// Extra fields (ours): seed (default: a fresh one, echoed back), min_p = 0, top_k = 0, and
// stop_at_eos (default true, false on /generate_lda_batch) for fixed-length runs. Unlike the
// reference, requests are not serialised by a lock: they join the running batch.
#pragma once

#include "crossbatch/serve/fields.hpp"
#include "crossbatch/serve/http_reply.hpp"
#include "crossbatch/serve/model_frontend.hpp"

namespace crossbatch::serve {

class reference_routes {
 public:
  explicit reference_routes(model_frontend& f) : m_f(f) {}

  http_reply generate_lda(const json& j) {
    require_before("alpha");
    const auto settings = read_settings(j, /*lda=*/true, /*stop_at_eos=*/true);
    const std::string prompt = require_text(j, "prompt");
    auto t = m_f.run({request(prompt, settings, "prompt")});
    http_reply r{200, result_json(prompt, *t[0], settings, true)};
    *r.tokens = int(t[0]->tokens().size());
    return r;
  }

  http_reply generate_lda_batch(const json& j) {
    require_before("alpha");
    const auto settings = read_settings(j, true, /*stop_at_eos=*/false);
    const auto prompts = require_texts(j, "prompts", max_batch_prompts);
    std::vector<generation_request> reqs;
    for (std::size_t i = 0; i < prompts.size(); ++i) {
      auto s = settings;
      s.seed = settings.seed + i;  // prompt i draws with seed + i
      reqs.push_back(request(prompts[i], s, "prompts[" + std::to_string(i) + "]"));
    }
    const auto tickets = m_f.run(std::move(reqs));
    json results = json::array();
    int tokens = 0;
    for (std::size_t i = 0; i < prompts.size(); ++i) {
      auto s = settings;
      s.seed = settings.seed + i;
      results.push_back(result_json(prompts[i], *tickets[i], s, true));
      tokens += int(tickets[i]->tokens().size());
    }
    http_reply r{200,
                 {{"results", results},
                  {"alpha", settings.alpha},
                  {"model_after", m_f.after_name},
                  {"model_before", m_f.before_name},
                  {"batch_size", prompts.size()}}};
    *r.tokens = tokens;
    return r;
  }

  http_reply generate(const json& j) {
    auto settings = read_settings(j, false, true);
    const std::string prompt = require_text(j, "prompt");
    std::vector<generation_request> reqs = {request(prompt, settings, "prompt")};
    if (m_f.backend.has_before) {
      reqs.push_back(reqs[0]);
      reqs[1].source = {logit_source::before};
    }
    const auto t = m_f.run(std::move(reqs));
    json before = nullptr;
    int tokens = int(t[0]->tokens().size());
    if (t.size() > 1) {
      before = plain_json(*t[1], settings);
      tokens += int(t[1]->tokens().size());
    }
    const auto p = prepare(prompt, settings, "prompt");
    http_reply r{200,
                 {{"prompt", prompt},
                  {"formatted_prompt", p.formatted},
                  {"model_after", m_f.after_name},
                  {"model_before", m_f.backend.has_before ? json(m_f.before_name) : json(nullptr)},
                  {"after", plain_json(*t[0], settings)},
                  {"before", before},
                  {"seed", settings.seed}}};
    r.body["after"]["text"] = p.formatted + r.body["after"]["completion"].get<std::string>();
    if (!before.is_null())
      r.body["before"]["text"] = p.formatted + r.body["before"]["completion"].get<std::string>();
    *r.tokens = tokens;
    return r;
  }

  // The two models were checked at load (same tokens id by id, same vocab_size): the server
  // refuses to start otherwise.
  http_reply tokenizer_compatibility() const {
    const auto& tok = m_f.tokenizer();
    return {200,
            {{"compatible", true},
             {"model_after", m_f.after_name},
             {"model_before", m_f.backend.has_before ? json(m_f.before_name) : json(nullptr)},
             {"vocab_size_after", tok.vocab_size()},
             {"vocab_size_before", m_f.backend.has_before ? json(tok.vocab_size()) : json(nullptr)},
             {"checked", m_f.backend.has_before
                             ? "every token id maps to the same token in both tokenizers, and "
                               "the configs' vocab_size agree (checked at startup)"
                             : "only one model is served"}}};
  }

  std::size_t max_batch_prompts = 64;

 private:
  struct settings_t {
    int max_new_tokens = 80;
    lda_sampling sampling;
    float alpha = 1.0f;
    bool apply_chat_template = true, stop_at_eos = true, lda = false;
    std::optional<std::string> system_prompt;
    std::uint64_t seed = 0;
  };

  void require_before(const std::string& field) const {
    if (!m_f.backend.has_before)
      throw bad_field(field, "LDA needs a before model: start the server with --before-model");
  }

  settings_t read_settings(const json& j, bool lda, bool stop_at_eos) {
    settings_t s;
    s.lda = lda;
    const int limit = std::min(512, m_f.backend.max_new_tokens);
    s.max_new_tokens = int(read_integer(j, "max_new_tokens", std::min(80, limit), 1, limit));
    s.sampling.temperature = float(read_number(j, "temperature", 0.8, 0.0, 1e6, true));
    s.sampling.top_p = float(read_number(j, "top_p", 0.95, 0.0, 1.0, true));
    s.sampling.min_p = float(read_number(j, "min_p", 0.0, 0.0, 1.0));
    s.sampling.top_k = int(read_integer(j, "top_k", 0, 0, 1 << 30));
    s.sampling.do_sample = read_bool(j, "do_sample", true);
    if (lda) s.alpha = float(read_number(j, "alpha", 1.0, 0.0, 10.0));
    s.apply_chat_template = read_bool(j, "apply_chat_template", true);
    s.system_prompt = read_string(j, "system_prompt");
    s.stop_at_eos = read_bool(j, "stop_at_eos", stop_at_eos);
    s.seed = read_seed(j, "seed", m_f.fresh_seed());
    if (s.system_prompt && !s.apply_chat_template)
      throw bad_field("system_prompt", "needs apply_chat_template = true");
    return s;
  }

  prepared_prompt prepare(const std::string& prompt, const settings_t& s,
                          const std::string& field) const {
    if (!s.apply_chat_template) return m_f.plain(prompt);
    std::vector<text::chat_message> messages;
    if (s.system_prompt) messages.push_back({"system", *s.system_prompt});
    messages.push_back({"user", prompt});
    return m_f.chat(messages, "apply_chat_template");
    (void)field;
  }

  generation_request request(const std::string& prompt, const settings_t& s,
                             const std::string& field) const {
    generation_request r;
    r.prompt = prepare(prompt, s, field).ids;
    r.max_new_tokens = s.max_new_tokens;
    r.stop_at_eos = s.stop_at_eos;
    r.eos_ids = m_f.eos(s.apply_chat_template);
    r.sampling = s.sampling;
    r.seed = s.seed;
    if (s.lda) r.source = {logit_source::lda, s.alpha};
    r.prompt_field = field;
    return r;
  }

  json result_json(const std::string& prompt, const ticket& t, const settings_t& s,
                   bool lda) const {
    const auto p = prepare(prompt, s, "prompt");
    const std::string completion = m_f.decode(t.tokens());
    json j = {{"prompt", prompt},
              {"formatted_prompt", p.formatted},
              {"completion", completion},
              {"text", p.formatted + completion},
              {"tokens_generated", t.tokens().size()},
              {"stopped_early", t.reason() == finish_reason::eos},
              {"completion_ids", t.tokens()},
              {"seed", s.seed}};
    if (lda) {
      j["alpha"] = s.alpha;
      j["model_after"] = m_f.after_name;
      j["model_before"] = m_f.before_name;
    }
    return j;
  }
  json plain_json(const ticket& t, const settings_t& s) const {
    (void)s;
    return {{"completion", m_f.decode(t.tokens())},
            {"tokens_generated", t.tokens().size()},
            {"stopped_early", t.reason() == finish_reason::eos},
            {"completion_ids", t.tokens()}};
  }

  model_frontend& m_f;
};

}  // namespace crossbatch::serve
