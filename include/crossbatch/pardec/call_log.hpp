// A record of every generation call a strategy makes, for replaying the same calls on another
// engine (bench/pardec/hf_strategies.py runs them through transformers): recording_generator wraps
// any chat_generator, forwards each call and keeps what went in and came out — the conversations,
// max_new_tokens, and with local inference the templated prompt ids and the generated ids (stop
// token included where a row stopped). compare_strategies --dump-calls writes these records.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "crossbatch/pardec/chat_generator.hpp"

namespace crossbatch::pardec {

struct recorded_call {
  std::vector<conversation> batch;
  int max_new_tokens = 0;
  generated_batch result;
};

class recording_generator : public chat_generator {
 public:
  explicit recording_generator(chat_generator& inner) : m_inner(inner) {}

  generated_batch generate(const std::vector<conversation>& batch, int max_new_tokens) override {
    auto r = m_inner.generate(batch, max_new_tokens);
    m_calls.push_back({batch, max_new_tokens, r});
    return r;
  }

  const std::vector<recorded_call>& calls() const { return m_calls; }
  void clear() { m_calls.clear(); }

 private:
  chat_generator& m_inner;
  std::vector<recorded_call> m_calls;
};

// One call as JSON: {max_new_tokens, seconds, conversations: [[{role, content}]], replies,
// prompt_ids: [[int]], token_ids: [[int]]} (the id lists empty through the API).
inline nlohmann::json to_json(const recorded_call& c) {
  nlohmann::json convs = nlohmann::json::array();
  for (const auto& conv : c.batch) {
    nlohmann::json m = nlohmann::json::array();
    for (const auto& msg : conv) m.push_back({{"role", msg.role}, {"content", msg.content}});
    convs.push_back(std::move(m));
  }
  return {{"max_new_tokens", c.max_new_tokens}, {"seconds", c.result.seconds},
          {"conversations", convs},             {"replies", c.result.replies},
          {"prompt_ids", c.result.prompt_ids},  {"token_ids", c.result.token_ids}};
}

inline nlohmann::json to_json(const std::vector<recorded_call>& calls) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& c : calls) a.push_back(to_json(c));
  return a;
}

}  // namespace crossbatch::pardec
