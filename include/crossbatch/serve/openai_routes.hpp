// The OpenAI-compatible routes: POST /v1/completions, POST /v1/chat/completions (the model's chat
// template; `stream: true` as server-sent events ending with `data: [DONE]`), GET /v1/models.
// Fields: model (optional; the after model's name, or the before model's for its plain
// completions), prompt (a string, a list of strings, a list of token ids or a list of those) /
// messages ([{role, content}], content a string or a list of {type: "text", text} parts),
// max_tokens (completions: 16; chat: min(128, limit); chat also max_completion_tokens),
// temperature = 1 in [0, 2] (0: greedy), top_p = 1 in (0, 1], n = 1 (1..8), seed (default: a
// fresh one), stream = false. Ours: lda_alpha in [0, 10] (LDA with the before model), min_p,
// top_k, ignore_eos (fixed length). `stop` sequences, logprobs, echo, best_of > 1, suffix and
// tools are refused with 400 naming the field rather than ignored.
#pragma once

#include <chrono>

#include "crossbatch/serve/fields.hpp"
#include "crossbatch/serve/http_reply.hpp"
#include "crossbatch/serve/model_frontend.hpp"
#include "crossbatch/text/decode_stream.hpp"

namespace crossbatch::serve {

class openai_routes {
 public:
  explicit openai_routes(model_frontend& f) : m_f(f) {}

  http_reply models() const {
    json data = json::array();
    for (const auto& name : model_names())
      data.push_back({{"id", name}, {"object", "model"}, {"created", 0}, {"owned_by", "crossbatch"}});
    return {200, {{"object", "list"}, {"data", data}}};
  }

  http_reply completions(const json& j) {
    const auto s = read_settings(j, "max_tokens", 16);
    std::vector<std::vector<int>> prompts = read_prompts(j);
    return run(s, prompts, /*chat=*/false);
  }

  http_reply chat_completions(const json& j) {
    const int def = std::min(128, m_f.backend.max_new_tokens);
    auto s = read_settings(j, j.contains("max_completion_tokens") && !j.contains("max_tokens")
                                  ? "max_completion_tokens"
                                  : "max_tokens",
                           def);
    const auto messages = read_messages(j);
    return run(s, {m_f.chat(messages, "messages").ids}, /*chat=*/true);
  }

 private:
  struct settings_t {
    std::string model;
    logit_source source;
    int max_tokens = 16;
    std::string length_field = "max_tokens";
    lda_sampling sampling;
    int n = 1;
    std::uint64_t seed = 0;
    bool stream = false, ignore_eos = false, include_usage = false;
  };

  std::vector<std::string> model_names() const {
    std::vector<std::string> names = {m_f.after_name};
    if (m_f.backend.has_before && m_f.before_name != m_f.after_name)
      names.push_back(m_f.before_name);
    return names;
  }

  settings_t read_settings(const json& j, const std::string& length_field, int default_tokens) {
    for (const char* unsupported : {"stop", "logprobs", "top_logprobs", "suffix", "tools",
                                    "functions", "logit_bias", "response_format"}) {
      const json* v = field_or_null(j, unsupported);
      if (v && !(v->is_boolean() && !v->get<bool>()) && !(v->is_array() && v->empty()))
        throw bad_field(unsupported, "is not supported by this server");
    }
    if (read_bool(j, "echo", false)) throw bad_field("echo", "is not supported by this server");
    if (read_integer(j, "best_of", 1, 1, 1) != 1)
      throw bad_field("best_of", "only 1 is supported");
    settings_t s;
    s.model = read_string(j, "model").value_or(m_f.after_name);
    if (s.model == m_f.after_name) {
      s.source = {logit_source::after};
    } else if (m_f.backend.has_before && s.model == m_f.before_name) {
      s.source = {logit_source::before};
    } else {
      throw api_error(404, "model", "'model': no model named '" + s.model + "' here (see /v1/models)");
    }
    if (const json* a = field_or_null(j, "lda_alpha")) {
      (void)a;
      if (!m_f.backend.has_before)
        throw bad_field("lda_alpha", "LDA needs a before model: start the server with --before-model");
      if (s.source.kind != logit_source::after)
        throw bad_field("lda_alpha", "LDA runs on the after model '" + m_f.after_name + "'");
      s.source = {logit_source::lda, float(read_number(j, "lda_alpha", 0.0, 0.0, 10.0))};
    }
    s.length_field = length_field;
    s.max_tokens =
        int(read_integer(j, length_field, std::min(default_tokens, m_f.backend.max_new_tokens), 1,
                         m_f.backend.max_new_tokens));
    const float temperature = float(read_number(j, "temperature", 1.0, 0.0, 2.0));
    s.sampling.do_sample = temperature > 0.0f;
    s.sampling.temperature = temperature > 0.0f ? temperature : 1.0f;
    s.sampling.top_p = float(read_number(j, "top_p", 1.0, 0.0, 1.0, true));
    s.sampling.min_p = float(read_number(j, "min_p", 0.0, 0.0, 1.0));
    s.sampling.top_k = int(read_integer(j, "top_k", 0, 0, 1 << 30));
    s.n = int(read_integer(j, "n", 1, 1, 8));
    s.seed = read_seed(j, "seed", m_f.fresh_seed());
    s.stream = read_bool(j, "stream", false);
    s.ignore_eos = read_bool(j, "ignore_eos", false);
    if (const json* so = field_or_null(j, "stream_options")) {
      if (!so->is_object()) throw bad_field("stream_options", "must be an object");
      s.include_usage = read_bool(*so, "include_usage", false);
    }
    return s;
  }

  std::vector<std::vector<int>> read_prompts(const json& j) const {
    const json* p = field_or_null(j, "prompt");
    if (!p) throw bad_field("prompt", "is required");
    const auto tokens_of = [&](const json& a, const std::string& name) {
      std::vector<int> ids;
      for (const auto& x : a) {
        if (!x.is_number_integer()) throw bad_field(name, "a token list holds integers only");
        ids.push_back(x.get<int>());
      }
      if (ids.empty()) throw bad_field(name, "must not be empty");
      return ids;
    };
    const auto text_of = [&](const json& s, const std::string& name) {
      if (s.get<std::string>().empty()) throw bad_field(name, "must not be empty");
      auto ids = m_f.plain(s.get<std::string>()).ids;
      if (ids.empty()) throw bad_field(name, "encodes to no tokens");
      return ids;
    };
    if (p->is_string()) return {text_of(*p, "prompt")};
    if (!p->is_array() || p->empty())
      throw bad_field("prompt", "must be a non-empty string, list of strings or list of token ids");
    if ((*p)[0].is_number_integer()) return {tokens_of(*p, "prompt")};
    if (p->size() > 16) throw bad_field("prompt", "at most 16 prompts per request");
    std::vector<std::vector<int>> out;
    for (std::size_t i = 0; i < p->size(); ++i) {
      const std::string name = "prompt[" + std::to_string(i) + "]";
      const auto& e = (*p)[i];
      if (e.is_string())
        out.push_back(text_of(e, name));
      else if (e.is_array())
        out.push_back(tokens_of(e, name));
      else
        throw bad_field(name, "must be a string or a list of token ids");
    }
    return out;
  }

  std::vector<text::chat_message> read_messages(const json& j) const {
    const json* m = field_or_null(j, "messages");
    if (!m) throw bad_field("messages", "is required");
    if (!m->is_array() || m->empty()) throw bad_field("messages", "must be a non-empty list");
    std::vector<text::chat_message> out;
    for (std::size_t i = 0; i < m->size(); ++i) {
      const std::string name = "messages[" + std::to_string(i) + "]";
      const auto& e = (*m)[i];
      if (!e.is_object()) throw bad_field(name, "must be an object {role, content}");
      const auto role = read_string(e, "role");
      if (!role || (*role != "system" && *role != "user" && *role != "assistant"))
        throw bad_field(name + ".role", "must be \"system\", \"user\" or \"assistant\"");
      const json* c = field_or_null(e, "content");
      std::string content;
      if (c && c->is_string()) {
        content = c->get<std::string>();
      } else if (c && c->is_array()) {
        for (const auto& part : *c) {
          if (!part.is_object() || read_string(part, "type").value_or("") != "text" ||
              !read_string(part, "text"))
            throw bad_field(name + ".content", "only text parts {type: \"text\", text} are supported");
          content += *read_string(part, "text");
        }
      } else {
        throw bad_field(name + ".content", "must be a string or a list of text parts");
      }
      out.push_back({*role, content});
    }
    return out;
  }

  std::vector<generation_request> requests(const settings_t& s,
                                           const std::vector<std::vector<int>>& prompts,
                                           bool chat) const {
    std::vector<generation_request> reqs;
    for (std::size_t i = 0; i < prompts.size(); ++i)
      for (int k = 0; k < s.n; ++k) {
        generation_request r;
        r.prompt = prompts[i];
        r.max_new_tokens = s.max_tokens;
        r.stop_at_eos = !s.ignore_eos;
        r.eos_ids = m_f.eos(chat);
        r.sampling = s.sampling;
        r.seed = s.seed + reqs.size();  // choice c draws with seed + c
        r.source = s.source;
        r.prompt_field = chat ? "messages" : prompts.size() > 1 ? "prompt[" + std::to_string(i) + "]" : "prompt";
        r.length_field = s.length_field;
        reqs.push_back(std::move(r));
      }
    return reqs;
  }

  static const char* finish_name(finish_reason r) { return r == finish_reason::eos ? "stop" : "length"; }

  json usage(const std::vector<std::shared_ptr<ticket>>& t) const {
    int prompt = 0, completion = 0;
    for (std::size_t i = 0; i < t.size(); ++i) {
      completion += int(t[i]->tokens().size());
      prompt += t[i]->prompt_tokens();
    }
    return {{"prompt_tokens", prompt}, {"completion_tokens", completion},
            {"total_tokens", prompt + completion}};
  }

  http_reply run(const settings_t& s, const std::vector<std::vector<int>>& prompts, bool chat) {
    const std::string id = std::string(chat ? "chatcmpl-" : "cmpl-") + std::to_string(m_f.fresh_seed() % 1000000000000ULL);
    const long long created = std::chrono::duration_cast<std::chrono::seconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
    const json head = {{"id", id},
                       {"object", chat ? (s.stream ? "chat.completion.chunk" : "chat.completion")
                                       : "text_completion"},
                       {"created", created},
                       {"model", s.model},
                       {"system_fingerprint", "seed-" + std::to_string(s.seed)}};
    if (s.stream) return stream(s, m_f.submit_all(requests(s, prompts, chat)), head, chat);
    const auto tickets = m_f.run(requests(s, prompts, chat));
    json choices = json::array();
    int tokens = 0;
    for (std::size_t c = 0; c < tickets.size(); ++c) {
      const std::string text = m_f.decode(tickets[c]->tokens());
      tokens += int(tickets[c]->tokens().size());
      json choice = {{"index", c}, {"finish_reason", finish_name(tickets[c]->reason())}};
      if (chat)
        choice["message"] = {{"role", "assistant"}, {"content", text}};
      else
        choice["text"] = text, choice["logprobs"] = nullptr;
      choices.push_back(choice);
    }
    http_reply r{200, head};
    r.body["choices"] = choices;
    r.body["usage"] = usage(tickets);
    *r.tokens = tokens;
    return r;
  }

  // Streams every choice's text as it is decoded; a client that goes away cancels the requests.
  http_reply stream(const settings_t& s, std::vector<std::shared_ptr<ticket>> tickets, json head,
                    bool chat) {
    http_reply r;
    auto counter = r.tokens;
    const bool include_usage = s.include_usage;
    r.stream = [this, tickets, head, chat, counter, include_usage](const chunk_writer& write) {
      const auto chunk = [&](std::size_t c, const json& delta_or_text, const json& finish) {
        json j = head;
        json choice = {{"index", c}, {"finish_reason", finish}};
        if (chat)
          choice["delta"] = delta_or_text;
        else
          choice["text"] = delta_or_text, choice["logprobs"] = nullptr;
        j["choices"] = json::array({choice});
        return sse_event(j);
      };
      const auto cancel_all = [&] {
        for (auto& t : tickets) t->cancel();
        return false;
      };
      std::vector<text::decode_stream> decoders;
      std::vector<std::size_t> seen(tickets.size(), 0);
      std::vector<bool> closed(tickets.size(), false);
      for (std::size_t c = 0; c < tickets.size(); ++c) {
        decoders.emplace_back(m_f.tokenizer());
        if (chat && !write(chunk(c, {{"role", "assistant"}, {"content", ""}}, nullptr)))
          return cancel_all();
      }
      std::size_t open = tickets.size();
      while (open > 0) {
        for (std::size_t c = 0; c < tickets.size(); ++c) {
          if (closed[c]) continue;
          const bool done = tickets[c]->wait(seen[c], ticket::clock::now() +
                                                          std::chrono::milliseconds(open > 1 ? 5 : 200));
          const auto toks = tickets[c]->tokens();
          std::string text;
          for (; seen[c] < toks.size(); ++seen[c]) text += decoders[c].step(toks[seen[c]]);
          if (done) text += decoders[c].flush();
          if (!text.empty() &&
              !write(chunk(c, chat ? json{{"content", text}} : json(text), nullptr)))
            return cancel_all();
          if (!done) continue;
          closed[c] = true;
          --open;
          *counter += int(toks.size());
          try {
            model_frontend::check_ended_well(*tickets[c]);
          } catch (const api_error& e) {
            write(sse_event(e.to_json()));
            return cancel_all();
          }
          if (!write(chunk(c, chat ? json::object() : json(""), finish_name(tickets[c]->reason()))))
            return cancel_all();
        }
      }
      if (include_usage) {
        json j = head;
        j["choices"] = json::array();
        j["usage"] = usage(tickets);
        if (!write(sse_event(j))) return false;
      }
      return write(sse_done());
    };
    return r;
  }

  model_frontend& m_f;
};

}  // namespace crossbatch::serve
