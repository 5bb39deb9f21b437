// The routes (serve/router.hpp) without HTTP or a model: a fake backend records the generation
// requests the routes make and finishes them with fixed tokens. Checks that the reference routes'
// defaults and ranges (max_new_tokens 80 in 1..512, temperature 0.8 > 0, top_p 0.95 in (0, 1],
// alpha 1.0 in 0..10, do_sample true, apply_chat_template true) and the OpenAI fields
// (temperature 0 = greedy, lda_alpha, model = the before model, n and seeds, ignore_eos) become
// the right requests, that the responses carry the reference's field names, and that bad input of
// every kind is a 4xx naming its field (fields.hpp's typed reads included).
#define BOOST_TEST_MODULE serve_routes
#include "crossbatch/serve/router.hpp"
#include "tiny_models.hpp"

using namespace crossbatch;
using namespace crossbatch::serve;

namespace {

struct fake_backend_fixture {
  text::tokenizer tok = text::tokenizer::from_file(cbtest::data_dir() + "/text/gpt2/tokenizer.json");
  model_config config = parse_config(json{{"model_type", "llama"},
                                          {"vocab_size", 1500},
                                          {"hidden_size", 32},
                                          {"num_hidden_layers", 1},
                                          {"num_attention_heads", 4},
                                          {"intermediate_size", 8},
                                          {"max_position_embeddings", 4096},
                                          {"eos_token_id", 0}},
                                     "fake config");
  std::vector<generation_request> seen;
  std::unique_ptr<model_frontend> frontend;
  std::unique_ptr<router> routes;

  explicit fake_backend_fixture(bool before = true) {
    generation_backend b;
    b.has_before = before;
    b.max_new_tokens = 100;
    b.submit = [this](generation_request r) {
      if (r.prompt.empty()) throw bad_field(r.prompt_field, "empty");
      seen.push_back(r);
      auto t = std::make_shared<ticket>(int(r.prompt.size()));
      for (int i = 0; i < 3; ++i) t->push(40 + i);
      t->finish(finish_reason::length);
      return t;
    };
    frontend = std::make_unique<model_frontend>(tok, text::chat_template::from_name("chatml"),
                                                config, "after", "before", b);
    routes = std::make_unique<router>(*frontend);
  }
  http_reply post(const std::string& path, const json& body) {
    return routes->handle("POST", path, body.dump());
  }
  // The field a bad request names (its status must be `status`).
  std::string field(const std::string& path, const std::string& body, int status = 400,
                    const std::string& method = "POST") {
    const auto r = routes->handle(method, path, body);
    BOOST_TEST(r.status == status, path << " " << body << " -> " << r.body.dump());
    const auto& p = r.body["error"]["param"];
    return p.is_null() ? "<none>" : p.get<std::string>();
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(reference_defaults_and_fields) {
  fake_backend_fixture f;
  const auto r = f.post("/generate_lda", {{"prompt", "Hello"}});
  BOOST_TEST(r.status == 200);
  BOOST_REQUIRE(f.seen.size() == 1u);
  const auto& q = f.seen[0];
  BOOST_TEST(q.max_new_tokens == 80);
  BOOST_TEST(q.sampling.temperature == 0.8f);
  BOOST_TEST(q.sampling.top_p == 0.95f);
  BOOST_TEST(q.sampling.do_sample);
  BOOST_TEST(q.source.kind == logit_source::lda);
  BOOST_TEST(q.source.alpha == 1.0f);
  BOOST_TEST(q.stop_at_eos);
  for (const char* k : {"prompt", "formatted_prompt", "completion", "text", "alpha", "model_after",
                        "model_before", "tokens_generated", "stopped_early"})
    BOOST_TEST(r.body.contains(k), k);
  BOOST_TEST(r.body["tokens_generated"] == 3);
  BOOST_TEST(r.body["formatted_prompt"].get<std::string>().find("<|im_start|>user\nHello") !=
             std::string::npos);
  // The batch route: fixed length, prompt i with seed + i.
  f.seen.clear();
  const auto b = f.post("/generate_lda_batch",
                        {{"prompts", {"a", "b"}}, {"seed", 7}, {"alpha", 2}, {"do_sample", false}});
  BOOST_TEST(b.status == 200);
  BOOST_REQUIRE(f.seen.size() == 2u);
  BOOST_TEST(f.seen[0].seed == 7u);
  BOOST_TEST(f.seen[1].seed == 8u);
  BOOST_TEST(!f.seen[1].stop_at_eos);
  BOOST_TEST(!f.seen[1].sampling.do_sample);
  BOOST_TEST(b.body["batch_size"] == 2);
  BOOST_TEST(b.body["results"].size() == 2u);
  // /generate: one request per model, the same seed.
  f.seen.clear();
  BOOST_TEST(f.post("/generate", {{"prompt", "x"}, {"seed", 3}}).status == 200);
  BOOST_REQUIRE(f.seen.size() == 2u);
  BOOST_TEST(f.seen[0].source.kind == logit_source::after);
  BOOST_TEST(f.seen[1].source.kind == logit_source::before);
  BOOST_TEST(f.seen[1].seed == 3u);
}

BOOST_AUTO_TEST_CASE(openai_fields_become_requests) {
  fake_backend_fixture f;
  auto r = f.post("/v1/completions", {{"prompt", "Hi"}, {"temperature", 0}, {"n", 2}, {"seed", 5},
                                      {"ignore_eos", true}});
  BOOST_TEST(r.status == 200);
  BOOST_REQUIRE(f.seen.size() == 2u);
  BOOST_TEST(!f.seen[0].sampling.do_sample);  // temperature 0: greedy
  BOOST_TEST(f.seen[0].max_new_tokens == 16);
  BOOST_TEST(!f.seen[0].stop_at_eos);
  BOOST_TEST(f.seen[1].seed == 6u);
  BOOST_TEST(r.body["choices"].size() == 2u);
  BOOST_TEST(r.body["usage"]["completion_tokens"] == 6);
  f.seen.clear();
  r = f.post("/v1/chat/completions",
             {{"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"lda_alpha", 4}});
  BOOST_TEST(r.status == 200);
  BOOST_TEST(f.seen.at(0).source.kind == logit_source::lda);
  BOOST_TEST(f.seen.at(0).source.alpha == 4.0f);
  BOOST_TEST(r.body["choices"][0]["message"]["role"] == "assistant");
  f.seen.clear();
  r = f.post("/v1/completions", {{"prompt", {1, 2, 3}}, {"model", "before"}});
  BOOST_TEST(f.seen.at(0).source.kind == logit_source::before);
  BOOST_TEST(f.seen.at(0).prompt == std::vector<int>({1, 2, 3}));
  // A stream answers with a writer that ends with [DONE].
  r = f.post("/v1/completions", {{"prompt", "Hi"}, {"stream", true}});
  BOOST_REQUIRE(bool(r.stream));
  std::string all;
  BOOST_TEST(r.stream([&](std::string_view s) {
    all += s;
    return true;
  }));
  BOOST_TEST(all.ends_with("data: [DONE]\n\n"));
  BOOST_TEST(all.find("\"finish_reason\":\"length\"") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(bad_input_names_the_field) {
  fake_backend_fixture f;
  BOOST_TEST(f.field("/v1/completions", "{oops") == "body");
  BOOST_TEST(f.field("/v1/completions", "3") == "body");
  BOOST_TEST(f.field("/v1/completions", R"({"prompt": "x", "max_tokens": 101})") == "max_tokens");
  BOOST_TEST(f.field("/v1/completions", R"({"prompt": "x", "max_tokens": 3.0})") == "max_tokens");
  BOOST_TEST(f.field("/v1/completions", R"({"prompt": "x", "temperature": "hot"})") == "temperature");
  BOOST_TEST(f.field("/v1/completions", R"({"prompt": "x", "top_p": 1.01})") == "top_p");
  BOOST_TEST(f.field("/v1/completions", R"({"prompt": "x", "seed": -3})") == "seed");
  BOOST_TEST(f.field("/v1/completions", R"({"prompt": "x", "seed": 1.5})") == "seed");
  BOOST_TEST(f.field("/v1/completions", R"({"prompt": "x", "stop": "\n"})") == "stop");
  BOOST_TEST(f.field("/v1/completions", R"({"prompt": "x", "echo": true})") == "echo");
  BOOST_TEST(f.field("/v1/completions", R"({"prompt": []})") == "prompt");
  BOOST_TEST(f.field("/v1/completions", R"({"prompt": [[1], "a", 2]})") == "prompt[2]");
  BOOST_TEST(f.field("/v1/completions", R"({"prompt": "x", "model": "m"})", 404) == "model");
  BOOST_TEST(f.field("/v1/completions", R"({"prompt": "x", "model": "before", "lda_alpha": 1})") ==
             "lda_alpha");
  BOOST_TEST(f.field("/v1/chat/completions", R"({"messages": [{"role": "user"}]})") ==
             "messages[0].content");
  BOOST_TEST(f.field("/v1/chat/completions", R"({"messages": "hi"})") == "messages");
  BOOST_TEST(f.field("/generate_lda", R"({"prompt": "x", "alpha": -0.1})") == "alpha");
  BOOST_TEST(f.field("/generate_lda", R"({"prompt": "x", "max_new_tokens": 101})") ==
             "max_new_tokens");
  BOOST_TEST(f.field("/generate_lda", R"({"prompt": "x", "temperature": 0})") == "temperature");
  BOOST_TEST(f.field("/generate_lda", R"({"prompt": "x", "apply_chat_template": "yes"})") ==
             "apply_chat_template");
  BOOST_TEST(f.field("/generate_lda", R"({"prompt": "x", "system_prompt": "s",
                                          "apply_chat_template": false})") == "system_prompt");
  BOOST_TEST(f.field("/generate_lda", R"({})") == "prompt");
  BOOST_TEST(f.field("/generate_lda_batch", R"({"prompts": ["a", null]})") == "prompts[1]");
  BOOST_TEST(f.field("/nowhere", "{}", 404) == "route");
  BOOST_TEST(f.field("/generate_lda", "", 405, "GET") == "method");
  BOOST_TEST(f.field("/v1/models", "", 405, "POST") == "method");
  // Without a before model, LDA is refused naming the LDA field.
  fake_backend_fixture plain(false);
  BOOST_TEST(plain.field("/generate_lda", R"({"prompt": "x"})") == "alpha");
  BOOST_TEST(plain.field("/v1/completions", R"({"prompt": "x", "lda_alpha": 0})") == "lda_alpha");
  BOOST_TEST(plain.field("/v1/completions", R"({"prompt": "x", "model": "before"})", 404) == "model");
}
