// The API mode's client (pardec/api_generator.hpp) over a fake transport: the request it sends
// (URL, key header, model, messages, greedy), the reply it reads (content, usage), retries with
// doubling back-off on no reply / 429 / 5xx, immediate errors on other 4xx naming the status and
// the server's message, and errors on replies that are not chat completions.
#define BOOST_TEST_MODULE pardec_api_generator
#include <deque>

#include "crossbatch/pardec/api_generator.hpp"
#include "support.hpp"

using namespace crossbatch;
using namespace crossbatch::pardec;

namespace {

struct fake_server {
  std::deque<http_reply> replies;  // served in order
  std::vector<std::string> urls, bodies;
  std::vector<std::map<std::string, std::string>> headers;
  std::vector<double> timeouts;

  http_post_fn transport() {
    return [this](const std::string& url, const std::string& body, const std::map<std::string, std::string>& h,
                  double timeout) {
      urls.push_back(url), bodies.push_back(body), headers.push_back(h), timeouts.push_back(timeout);
      BOOST_REQUIRE(!replies.empty());
      auto r = replies.front();
      replies.pop_front();
      return r;
    };
  }
};

std::string completion(const std::string& text, int prompt = 11, int completion_tokens = 3) {
  return nlohmann::json{{"object", "chat.completion"},
                        {"choices", {{{"index", 0}, {"message", {{"role", "assistant"}, {"content", text}}}}}},
                        {"usage", {{"prompt_tokens", prompt}, {"completion_tokens", completion_tokens}}}}
      .dump();
}

api_config config() {
  api_config c;
  c.base = "http://127.0.0.1:8080/v1/";
  c.model = "tiny";
  c.api_key = "sk-test";
  c.timeout_seconds = 7;
  c.max_retries = 2;
  c.backoff_seconds = 0.5;
  return c;
}

const std::vector<conversation> one = {{{"system", "S"}, {"user", "Question (Q1): Why?"}}};

}  // namespace

BOOST_AUTO_TEST_CASE(request_and_reply) {
  fake_server s;
  s.replies = {{200, completion("<answer>because</answer>"), ""}, {200, completion("second", 5, 2), ""}};
  api_generator gen(config(), s.transport(), [](double) { BOOST_ERROR("no retry expected"); });
  auto batch = one;
  batch.push_back({{"user", "Q2"}});
  const auto r = gen.generate(batch, 17);
  BOOST_REQUIRE_EQUAL(r.replies.size(), 2u);
  BOOST_TEST(r.replies[0] == "<answer>because</answer>");
  BOOST_TEST(r.replies[1] == "second");
  BOOST_TEST(r.prompt_tokens == 16);
  BOOST_TEST(r.generated_tokens == 5);
  BOOST_TEST(s.urls[0] == "http://127.0.0.1:8080/v1/chat/completions");
  BOOST_TEST(s.headers[0].at("Authorization") == "Bearer sk-test");
  BOOST_TEST(s.timeouts[0] == 7.0);
  const auto body = nlohmann::json::parse(s.bodies[0]);
  BOOST_TEST(body["model"] == "tiny");
  BOOST_TEST(body["max_tokens"] == 17);
  BOOST_TEST(body["temperature"] == 0);
  BOOST_TEST(body["messages"].size() == 2u);
  BOOST_TEST(body["messages"][1]["content"] == "Question (Q1): Why?");
  // No key: no Authorization header.
  auto c = config();
  c.api_key = "";
  fake_server t;
  t.replies = {{200, completion("x"), ""}};
  api_generator(c, t.transport()).generate(one, 4);
  BOOST_TEST(t.headers[0].count("Authorization") == 0u);
}

BOOST_AUTO_TEST_CASE(retries_with_back_off) {
  fake_server s;
  s.replies = {{0, "", "connection refused"}, {503, "{\"error\": {\"message\": \"busy\"}}", ""}, {200, completion("ok"), ""}};
  std::vector<double> waits;
  api_generator gen(config(), s.transport(), [&](double w) { waits.push_back(w); });
  BOOST_TEST(gen.generate(one, 4).replies[0] == "ok");
  BOOST_TEST((waits == std::vector<double>{0.5, 1.0}));
  BOOST_TEST(gen.retries_done() == 2);
  // Three failures with max_retries 2: gives up, naming the last failure.
  fake_server f;
  f.replies = {{429, "slow down", ""}, {500, "", ""}, {502, "{\"error\": \"bad gateway\"}", ""}};
  api_generator g2(config(), f.transport(), [](double) {});
  try {
    g2.generate(one, 4);
    BOOST_ERROR("no error");
  } catch (const api_error& e) {
    const std::string m = e.what();
    BOOST_TEST(e.status == 502);
    BOOST_TEST(m.find("HTTP 502: bad gateway") != std::string::npos, m);
    BOOST_TEST(m.find("gave up after 3 attempts") != std::string::npos, m);
  }
}

BOOST_AUTO_TEST_CASE(client_errors_are_not_retried) {
  for (int status : {400, 401, 404}) {
    fake_server s;
    s.replies = {{status, "{\"error\": {\"message\": \"model 'tiny' not found\"}}", ""}};
    api_generator gen(config(), s.transport(), [](double) { BOOST_ERROR("4xx must not be retried"); });
    try {
      gen.generate(one, 4);
      BOOST_ERROR("no error for " << status);
    } catch (const api_error& e) {
      const std::string m = e.what();
      BOOST_TEST(e.status == status);
      BOOST_TEST(m.find("HTTP " + std::to_string(status) + ": model 'tiny' not found") != std::string::npos, m);
      BOOST_TEST(m.find("/v1/chat/completions") != std::string::npos, m);
      BOOST_TEST((m.find("API key") != std::string::npos) == (status == 401), m);
    }
    BOOST_TEST(s.urls.size() == 1u);
  }
}

BOOST_AUTO_TEST_CASE(malformed_replies) {
  for (const std::string body : {"not json", "{\"choices\": []}", "{\"choices\": [{\"message\": {\"content\": 5}}]}"}) {
    fake_server s;
    s.replies = {{200, body, ""}};
    api_generator gen(config(), s.transport(), [](double) {});
    BOOST_CHECK_THROW(gen.generate(one, 4), api_error);
  }
  fake_server s;
  BOOST_CHECK_THROW(api_generator(api_config{}, s.transport()), value_error);  // no model
  ::setenv("CROSSBATCH_TEST_API_KEY", "abc", 1);
  BOOST_TEST(api_key_from_env("CROSSBATCH_TEST_API_KEY") == "abc");
  BOOST_TEST(api_key_from_env("CROSSBATCH_TEST_API_KEY_UNSET_XYZ").empty());
}
