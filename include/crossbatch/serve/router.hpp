// Dispatch of one HTTP request (method, path, body) to the reference and OpenAI routes, plus
// GET /health. Every failure is a JSON error naming what is wrong: an unknown route (404,
// "route"), a known route with another method (405, "method"), a body that is not a JSON object
// (400, "body"), a bad field (400, its name), a full queue (429), a timeout (504); an unexpected
// exception is a 500. Nothing a client sends can take the server down.
#pragma once

#include <map>

#include "crossbatch/serve/openai_routes.hpp"
#include "crossbatch/serve/reference_routes.hpp"

namespace crossbatch::serve {

class router {
 public:
  explicit router(model_frontend& f) : m_f(f), m_reference(f), m_openai(f) {
    post("/generate_lda", [this](const json& j) { return m_reference.generate_lda(j); });
    post("/generate_lda_batch", [this](const json& j) { return m_reference.generate_lda_batch(j); });
    post("/generate", [this](const json& j) { return m_reference.generate(j); });
    get("/tokenizer_compatibility", [this] { return m_reference.tokenizer_compatibility(); });
    post("/v1/completions", [this](const json& j) { return m_openai.completions(j); });
    post("/v1/chat/completions", [this](const json& j) { return m_openai.chat_completions(j); });
    get("/v1/models", [this] { return m_openai.models(); });
    get("/health", [this] {
      json h = m_f.backend.health ? m_f.backend.health() : json::object();
      h["status"] = "ok";
      h["model_after"] = m_f.after_name;
      h["model_before"] = m_f.backend.has_before ? json(m_f.before_name) : json(nullptr);
      return http_reply{200, h};
    });
  }

  reference_routes& reference() { return m_reference; }

  http_reply handle(const std::string& method, const std::string& path, const std::string& body) {
    try {
      const auto route = m_routes.find(path);
      if (route == m_routes.end())
        throw api_error(404, "route", "no route " + path + " (see examples/serve/README.md)");
      const auto handler = route->second.find(method);
      if (handler == route->second.end()) {
        std::string allowed;
        for (const auto& [m, h] : route->second) allowed += (allowed.empty() ? "" : ", ") + m;
        throw api_error(405, "method", method + " " + path + ": method not allowed (allowed: " +
                                           allowed + ")");
      }
      return handler->second(body);
    } catch (const api_error& e) {
      return http_reply::error(e);
    } catch (const std::exception& e) {
      return http_reply::error(api_error(500, "", std::string("internal error: ") + e.what()));
    }
  }

 private:
  using handler = std::function<http_reply(const std::string&)>;
  void post(const std::string& path, std::function<http_reply(const json&)> h) {
    m_routes[path]["POST"] = [h](const std::string& body) { return h(parse_body(body)); };
  }
  void get(const std::string& path, std::function<http_reply()> h) {
    m_routes[path]["GET"] = [h](const std::string&) { return h(); };
  }

  model_frontend& m_f;
  reference_routes m_reference;
  openai_routes m_openai;
  std::map<std::string, std::map<std::string, handler>> m_routes;
};

}  // namespace crossbatch::serve
