// What a route answers, independent of the HTTP library: a status and a JSON body, or a stream of
// server-sent events written through a callback (which returns false once the client is gone).
// `tokens` counts the generated tokens for the request's log line (a stream adds as it goes).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "crossbatch/serve/api_error.hpp"

namespace crossbatch::serve {

// Writes one chunk of the response; false when the client disconnected.
using chunk_writer = std::function<bool(std::string_view)>;

struct http_reply {
  int status = 200;
  json body;
  // Set for `stream: true`: writes every event, returns false when a write failed.
  std::function<bool(const chunk_writer&)> stream;
  std::shared_ptr<std::atomic<int>> tokens = std::make_shared<std::atomic<int>>(0);

  static http_reply error(const api_error& e) { return {e.status, e.to_json()}; }
};

// One server-sent event carrying JSON, and the OpenAI stream terminator.
// Invalid UTF-8 (never produced by the decoder, which writes U+FFFD) is replaced, not thrown.
inline std::string dump_json(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}
inline std::string sse_event(const json& j) { return "data: " + dump_json(j) + "\n\n"; }
inline std::string sse_done() { return "data: [DONE]\n\n"; }

}  // namespace crossbatch::serve
