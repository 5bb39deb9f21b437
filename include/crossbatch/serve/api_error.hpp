// The errors a serving request can end in: an HTTP status, the request field at fault ("" when
// none is) and a message; to_json() gives the body every route answers with (OpenAI's error
// layout, the same on the reference routes): {"error": {"message", "type", "param", "code"}}.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "crossbatch/core/error.hpp"

namespace crossbatch::serve {

using json = nlohmann::json;

struct api_error : value_error {
  int status = 400;
  std::string field;  // the request field at fault, "" when the request as a whole is
  api_error(int http_status, std::string field_name, const std::string& message)
      : value_error(message), status(http_status), field(std::move(field_name)) {}

  std::string type() const {
    if (status == 404) return "not_found_error";
    if (status == 405) return "method_not_allowed";
    if (status == 413) return "request_too_large";
    if (status == 429) return "queue_full";
    if (status == 504) return "timeout";
    if (status >= 500) return "server_error";
    return "invalid_request_error";
  }
  json to_json() const {
    return {{"error",
             {{"message", what()},
              {"type", type()},
              {"param", field.empty() ? json(nullptr) : json(field)},
              {"code", status}}}};
  }
};

// A request field with a wrong value or type: 400 naming it.
inline api_error bad_field(const std::string& field, const std::string& message) {
  return api_error(400, field, "'" + field + "': " + message);
}

}  // namespace crossbatch::serve
