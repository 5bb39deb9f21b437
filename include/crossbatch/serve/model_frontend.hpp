// The text side of the served models, shared by the routes: their names, the tokenizer and chat
// template, prompt preparation (plain text, or the chat template over messages), the stop ids
// (the config's EOS plus the template's end-of-turn token), and submitting requests to the
// batcher and collecting them (a request that timed out or failed becomes an api_error).
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <random>
#include <set>

#include "crossbatch/model/config.hpp"
#include "crossbatch/serve/api_error.hpp"
#include "crossbatch/serve/ticket.hpp"
#include "crossbatch/text/chat_template.hpp"
#include "crossbatch/text/tokenizer.hpp"

namespace crossbatch::serve {

// What the routes need from the batcher (type-erased: the routes compile once for every
// dtype and device).
struct generation_backend {
  std::function<std::shared_ptr<ticket>(generation_request)> submit;
  std::function<json()> health;  // the batcher's counters
  bool has_before = false;
  int max_new_tokens = 512;  // the server's limit
  int max_prompt_tokens = 1024;
};

struct prepared_prompt {
  std::string formatted;  // the text fed (chat template applied or not)
  std::vector<int> ids;
};

class model_frontend {
 public:
  model_frontend(const text::tokenizer& tok, std::optional<text::chat_template> tmpl,
                 const model_config& config, std::string after_name, std::string before_name,
                 generation_backend backend)
      : m_tok(tok),
        m_tmpl(std::move(tmpl)),
        after_name(std::move(after_name)),
        before_name(std::move(before_name)),
        backend(std::move(backend)) {
    m_plain_eos = config.eos_token_ids;
    m_chat_eos = m_plain_eos;
    if (m_tmpl) {
      const char* eot = m_tmpl->format == text::chat_format::chatml ? "<|im_end|>" : "<|eot_id|>";
      if (auto id = m_tok.token_to_id(eot);
          id && std::find(m_chat_eos.begin(), m_chat_eos.end(), *id) == m_chat_eos.end())
        m_chat_eos.push_back(*id);
    }
  }

  const text::tokenizer& tokenizer() const { return m_tok; }
  bool has_chat_template() const { return m_tmpl.has_value(); }
  const std::vector<int>& eos(bool chat) const { return chat ? m_chat_eos : m_plain_eos; }

  // Plain text through the tokenizer (with its special tokens, e.g. a BOS).
  prepared_prompt plain(const std::string& text) const {
    text::encode_options eo;
    const auto ids = m_tok.encode(text, eo);
    return {text, std::vector<int>(ids.begin(), ids.end())};
  }
  // Messages through the chat template (which holds the special tokens) with the assistant
  // header appended; `field` names the request field in errors.
  prepared_prompt chat(const std::vector<text::chat_message>& messages,
                       const std::string& field) const {
    if (!m_tmpl)
      throw bad_field(field, "this model has no chat template (tokenizer_config.json)");
    std::string formatted;
    try {
      formatted = m_tmpl->render(messages, /*add_generation_prompt=*/true);
    } catch (const error& e) {
      throw bad_field(field, e.what());
    }
    text::encode_options eo;
    eo.add_special_tokens = false;
    const auto ids = m_tok.encode(formatted, eo);
    return {formatted, std::vector<int>(ids.begin(), ids.end())};
  }
  std::string decode(const std::vector<int>& ids) const {
    const std::vector<std::int32_t> v(ids.begin(), ids.end());
    return m_tok.decode(v);
  }

  // A seed for requests that give none (reported back so the caller can reproduce them).
  std::uint64_t fresh_seed() {
    std::lock_guard lock(m_seed_mutex);
    return m_seeds();
  }

  // Submits every request, then waits for all (so they share the batch); on a refusal the ones
  // already queued are cancelled.
  std::vector<std::shared_ptr<ticket>> run(std::vector<generation_request> requests) {
    auto tickets = submit_all(std::move(requests));
    for (auto& t : tickets) collect(*t);
    return tickets;
  }
  std::vector<std::shared_ptr<ticket>> submit_all(std::vector<generation_request> requests) {
    std::vector<std::shared_ptr<ticket>> tickets;
    try {
      for (auto& r : requests) tickets.push_back(backend.submit(std::move(r)));
    } catch (...) {
      for (auto& t : tickets) t->cancel();
      throw;
    }
    return tickets;
  }
  // Waits for a request and turns a timeout or failure into an api_error.
  static void collect(ticket& t) {
    t.wait_done();
    check_ended_well(t);
  }
  static void check_ended_well(const ticket& t) {
    const auto r = t.reason();
    if (r == finish_reason::timeout)
      throw api_error(504, "timeout", "the request ran past the server's per-request timeout");
    if (r == finish_reason::failed) throw api_error(500, "", "generation failed: " + t.error());
    if (r == finish_reason::cancelled) throw api_error(500, "", "the request was cancelled");
  }

  const std::string after_name, before_name;
  generation_backend backend;

 private:
  const text::tokenizer& m_tok;
  std::optional<text::chat_template> m_tmpl;
  std::vector<int> m_plain_eos, m_chat_eos;
  std::mutex m_seed_mutex;
  std::mt19937_64 m_seeds{std::random_device{}()};
};

}  // namespace crossbatch::serve
