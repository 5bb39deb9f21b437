// The API mode of the strategies: a chat_generator over an OpenAI-compatible server
// (POST {base}/chat/completions with {model, messages, max_tokens, temperature: 0}), greedy, one
// request per conversation. HTTP-free: the transport is a function (examples/parallel_decoding
// passes cpp-httplib's client; tests pass a fake), so this header needs no HTTP library. Timeouts
// are the transport's; failures of the transport, 429 and 5xx are retried with exponential back-off
// up to max_retries times; any other 4xx, and a reply that is not a chat completion, stop with an
// api_error naming the URL, the status and the server's message. The key comes from an environment
// variable and is sent as "Authorization: Bearer ...".
#pragma once

#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "crossbatch/core/error.hpp"
#include "crossbatch/pardec/chat_generator.hpp"

namespace crossbatch::pardec {

struct api_error : error {
  int status = 0;  // HTTP status; 0 when the transport failed (no reply)
  api_error(const std::string& what, int s) : error(what), status(s) {}
};

struct http_reply {
  int status = 0;     // 0: no reply (the transport's error says why)
  std::string body;
  std::string error;  // transport failure: connection refused, timeout, ...
};

// (url, JSON body, headers, timeout seconds) -> reply.
using http_post_fn = std::function<http_reply(const std::string&, const std::string&,
                                              const std::map<std::string, std::string>&, double)>;

struct api_config {
  std::string base = "https://openrouter.ai/api/v1";  // --api-base (up to and including /v1)
  std::string model;                                   // --api-model
  std::string api_key;                                 // from the environment; empty: no header
  double timeout_seconds = 120;
  int max_retries = 3;
  double backoff_seconds = 1.0;  // first wait; doubled after every retry
};

// The key in environment variable `name`; "" when unset (a local server needs none).
inline std::string api_key_from_env(const std::string& name) {
  const char* v = name.empty() ? nullptr : std::getenv(name.c_str());
  return v ? std::string(v) : std::string();
}

class api_generator : public chat_generator {
 public:
  using sleep_fn = std::function<void(double)>;

  api_generator(api_config cfg, http_post_fn post, sleep_fn sleep = {})
      : m_cfg(std::move(cfg)), m_post(std::move(post)), m_sleep(std::move(sleep)) {
    require(!m_cfg.model.empty(), "--use-api needs --api-model");
    require(bool(m_post), "api_generator: no HTTP transport");
    require(m_cfg.max_retries >= 0, "api retries must be >= 0");
    if (!m_sleep)
      m_sleep = [](double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); };
    while (!m_cfg.base.empty() && m_cfg.base.back() == '/') m_cfg.base.pop_back();
  }

  std::string url() const { return m_cfg.base + "/chat/completions"; }

  // The request body for one conversation.
  nlohmann::json request(const conversation& c, int max_new_tokens) const {
    nlohmann::json messages = nlohmann::json::array();
    for (const auto& m : c) messages.push_back({{"role", m.role}, {"content", m.content}});
    return {{"model", m_cfg.model}, {"messages", messages}, {"max_tokens", max_new_tokens},
            {"temperature", 0}, {"stream", false}};
  }

  generated_batch generate(const std::vector<conversation>& batch, int max_new_tokens) override {
    const auto t0 = std::chrono::steady_clock::now();
    generated_batch out;
    for (const auto& c : batch) {
      const auto j = call(request(c, max_new_tokens).dump());
      out.replies.push_back(content_of(j));
      if (auto u = j.find("usage"); u != j.end() && u->is_object()) {
        out.prompt_tokens += u->value("prompt_tokens", 0L);
        out.generated_tokens += u->value("completion_tokens", 0L);
      }
    }
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return out;
  }

  int retries_done() const { return m_retries; }

 private:
  static bool retryable(int status) { return status == 0 || status == 429 || status >= 500; }

  // The server's message of an error body ({"error": {"message": ...}} or the raw text).
  static std::string server_message(const std::string& body) {
    auto j = nlohmann::json::parse(body, nullptr, false);
    if (!j.is_discarded() && j.is_object()) {
      if (auto e = j.find("error"); e != j.end()) {
        if (e->is_object() && e->contains("message") && (*e)["message"].is_string()) return (*e)["message"];
        if (e->is_string()) return *e;
      }
    }
    return body.size() > 300 ? body.substr(0, 300) + "..." : body;
  }

  nlohmann::json call(const std::string& body) {
    std::map<std::string, std::string> headers{{"Content-Type", "application/json"}};
    if (!m_cfg.api_key.empty()) headers["Authorization"] = "Bearer " + m_cfg.api_key;
    double wait = m_cfg.backoff_seconds;
    for (int attempt = 0;; ++attempt) {
      const http_reply r = m_post(url(), body, headers, m_cfg.timeout_seconds);
      if (r.status >= 200 && r.status < 300) {
        auto j = nlohmann::json::parse(r.body, nullptr, false);
        if (j.is_discarded() || !j.is_object())
          throw api_error(url() + ": status " + std::to_string(r.status) + " but the reply is not a JSON object", r.status);
        return j;
      }
      const std::string what = r.status == 0 ? "no reply (" + r.error + ")"
                                             : "HTTP " + std::to_string(r.status) + ": " + server_message(r.body);
      if (!retryable(r.status))
        throw api_error(url() + ": " + what + (r.status == 401 || r.status == 403 ? " (check the API key variable)" : ""),
                        r.status);
      if (attempt >= m_cfg.max_retries)
        throw api_error(url() + ": " + what + " (gave up after " + std::to_string(attempt + 1) + " attempts)", r.status);
      ++m_retries;
      m_sleep(wait);
      wait *= 2;
    }
  }

  std::string content_of(const nlohmann::json& j) const {
    const auto ch = j.find("choices");
    if (ch == j.end() || !ch->is_array() || ch->empty())
      throw api_error(url() + ": reply without choices[0]", 200);
    const auto& c = (*ch)[0];
    if (c.contains("message") && c["message"].is_object() && c["message"].contains("content")) {
      const auto& content = c["message"]["content"];
      if (content.is_string()) return content;
      if (content.is_null()) return "";
    }
    throw api_error(url() + ": choices[0].message.content missing or not a string", 200);
  }

  api_config m_cfg;
  http_post_fn m_post;
  sleep_fn m_sleep;
  int m_retries = 0;
};

}  // namespace crossbatch::pardec
