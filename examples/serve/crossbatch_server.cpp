// crossbatch_server: serves one converted model (plain) or an after/before pair (LDA) over HTTP
// with continuous batching (include/crossbatch/serve/batcher.hpp): the reference's routes
// (/generate_lda, /generate_lda_batch, /generate, /tokenizer_compatibility), the OpenAI API
// (/v1/completions, /v1/chat/completions with streaming, /v1/models) and /health.
//   crossbatch_server --model models/smollm2-135m-instruct --port 8000
//   crossbatch_server --model AFTER --before-model BEFORE --max-batch 16
// --port 0 picks a free port; the first line on stdout is "listening on http://HOST:PORT".
// One log line per request on stderr: method, route, status, generated tokens, milliseconds.
#include <CLI/CLI.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "crossbatch/serve/batcher.hpp"
#include "crossbatch/serve/router.hpp"
#include "run_on_device.hpp"
// After Eigen: the OpenSSL/resolver headers httplib pulls in define macros Eigen's names meet.
#include <httplib.h>

using namespace crossbatch;
using namespace crossbatch::serve;

namespace {

struct options {
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string model, before_model;
  int max_batch = 8, max_queue = 64, max_prompt_tokens = 1024, max_new_tokens = 512;
  std::size_t max_body_bytes = 1 << 20;
  double timeout_s = 120;
  int http_threads = 0;
  std::string device = "auto", dtype = "float32";
  int threads = 0;
};

httplib::Server* g_server = nullptr;
void on_signal(int) {
  if (g_server) g_server->stop();
}

std::string model_name(const std::string& dir) {
  auto p = std::filesystem::path(dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

// Per HTTP thread: when the request being handled started and how many tokens it generated.
thread_local const httplib::Request* t_request = nullptr;
thread_local std::chrono::steady_clock::time_point t_start;
thread_local std::shared_ptr<std::atomic<int>> t_tokens;

void send(const http_reply& reply, httplib::Response& res) {
  res.status = reply.status;
  if (!reply.stream) {
    res.set_content(dump_json(reply.body), "application/json");
    return;
  }
  res.set_header("Cache-Control", "no-cache");
  auto stream = reply.stream;
  res.set_chunked_content_provider("text/event-stream",
                                   [stream](std::size_t, httplib::DataSink& sink) {
                                     const bool ok = stream([&](std::string_view s) {
                                       return sink.is_writable() && sink.write(s.data(), s.size());
                                     });
                                     if (ok) sink.done();
                                     return ok;
                                   });
}

template <class T, class D>
int run_server(const options& o, context<D>& ctx, const text::tokenizer& tok,
          std::optional<text::chat_template> tmpl, const char* device_name) {
  const auto after = decoder_model<T, D>::load(o.model);
  std::optional<decoder_model<T, D>> before;
  if (!o.before_model.empty()) before.emplace(decoder_model<T, D>::load(o.before_model));
  const batcher_limits limits{.max_batch = o.max_batch,
                              .max_queue = o.max_queue,
                              .max_prompt_tokens = o.max_prompt_tokens,
                              .max_new_tokens = o.max_new_tokens,
                              .timeout = std::chrono::milliseconds(long(o.timeout_s * 1000))};
  batcher<T, D> engine(ctx, after, before ? &*before : nullptr, limits);
  engine.start();
  generation_backend backend{
      .submit = [&](generation_request r) { return engine.submit(std::move(r)); },
      .health =
          [&] {
            const auto s = engine.stats();
            return json{{"running", s.running},     {"queued", s.queued},
                        {"steps", s.steps},         {"tokens", s.tokens},
                        {"completed", s.completed}, {"rejected", s.rejected},
                        {"max_batch", o.max_batch}, {"device", device_name},
                        {"dtype", dtype_traits<T>::name}};
          },
      .has_before = before.has_value(),
      .max_new_tokens = o.max_new_tokens,
      .max_prompt_tokens = o.max_prompt_tokens};
  std::string after_name = model_name(o.model), before_name;
  if (before) {
    before_name = model_name(o.before_model);
    if (before_name == after_name) before_name += "-before";
  }
  model_frontend frontend(tok, std::move(tmpl), after.config, after_name, before_name, backend);
  router routes(frontend);
  routes.reference().max_batch_prompts = std::size_t(o.max_queue);

  httplib::Server svr;
  const int http_threads = o.http_threads > 0 ? o.http_threads
                                              : std::min(512, o.max_batch + o.max_queue + 8);
  svr.new_task_queue = [http_threads] { return new httplib::ThreadPool(http_threads); };
  svr.set_payload_max_length(o.max_body_bytes);
  svr.set_keep_alive_max_count(1000);
  const auto handler = [&](const httplib::Request& req, httplib::Response& res) {
    const auto reply = routes.handle(req.method, req.path, req.body);
    t_tokens = reply.tokens;
    send(reply, res);
  };
  for (auto add : {&httplib::Server::Get, &httplib::Server::Post, &httplib::Server::Put,
                   &httplib::Server::Delete, &httplib::Server::Patch})
    (svr.*add)(".*", handler);
  svr.Options(".*", handler);
  svr.set_pre_routing_handler([](const httplib::Request& req, httplib::Response&) {
    t_request = &req;
    t_start = std::chrono::steady_clock::now();
    t_tokens.reset();
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // Errors httplib answers itself (413 body too large, 400 unparsable request) get a JSON body.
  svr.set_error_handler([&](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    const std::string field = res.status == 413 ? "body" : "";
    const std::string what = res.status == 413 ? "the body is larger than the server's limit of " +
                                                     std::to_string(o.max_body_bytes) + " bytes"
                                               : "the request could not be parsed";
    res.set_content(api_error(res.status, field, what).to_json().dump(), "application/json");
  });
  svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    res.status = 500;
    res.set_content(api_error(500, "", "internal error").to_json().dump(), "application/json");
  });
  svr.set_logger([](const httplib::Request& req, const httplib::Response& res) {
    const double ms = t_request == &req ? std::chrono::duration<double, std::milli>(
                                              std::chrono::steady_clock::now() - t_start)
                                              .count()
                                        : 0.0;
    const int tokens = t_request == &req && t_tokens ? t_tokens->load() : 0;
    std::fprintf(stderr, "[serve] %s %s %d tokens=%d ms=%.1f\n", req.method.c_str(),
                 req.path.c_str(), res.status, tokens, ms);
    t_request = nullptr;
  });

  // Debian's libcpp-httplib listens with a backlog of 5 (CPPHTTPLIB_LISTEN_BACKLOG, compiled into
  // the library): a burst of concurrent clients would overflow it and wait for SYN retries.
  // Capture the listening socket and listen on it again with a deeper backlog.
  socket_t listen_fd = INVALID_SOCKET;
  svr.set_socket_options([&listen_fd](socket_t fd) {
    listen_fd = fd;
    int yes = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));  // inherited by accepted ones
  });
  int port = o.port;
  if (port == 0) {
    port = svr.bind_to_any_port(o.host);
  } else if (!svr.bind_to_port(o.host, port)) {
    port = -1;
  }
  if (port < 0) throw io_error("cannot listen on " + o.host + ":" + std::to_string(o.port));
  if (listen_fd != INVALID_SOCKET) ::listen(listen_fd, 1024);
  std::printf("listening on http://%s:%d\n", o.host.c_str(), port);
  std::fflush(stdout);
  std::fprintf(stderr, "[serve] %s%s%s on %s/%s, max batch %d, queue %d, chat template: %s\n",
               after_name.c_str(), before ? " with before model " : "", before_name.c_str(),
               device_name, dtype_traits<T>::name, o.max_batch, o.max_queue,
               frontend.has_chat_template() ? "yes" : "no");
  g_server = &svr;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  svr.listen_after_bind();
  g_server = nullptr;
  engine.stop();
  return 0;
}

void require_model_dir(const std::string& flag, const std::string& dir) {
  if (!std::filesystem::exists(dir + "/config.json"))
    throw io_error(flag + " " + dir + ": no config.json here (a directory written by tools/convert.py)");
  if (!std::filesystem::exists(dir + "/tokenizer.json"))
    throw io_error(flag + " " + dir + ": no tokenizer.json here");
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app("crossbatch_server: continuous-batching HTTP server (reference LDA routes + OpenAI API)");
  app.add_option("--host", o.host, "address to listen on");
  app.add_option("--port", o.port, "port (0: any free port)")->check(CLI::Range(0, 65535));
  app.add_option("--model", o.model, "the (after) model directory (converted)")->required();
  app.add_option("--before-model", o.before_model, "the before model (LDA; same vocabulary)");
  app.add_option("--max-batch", o.max_batch, "rows stepped together (1: one request at a time)")
      ->check(CLI::Range(1, 1024));
  app.add_option("--max-queue", o.max_queue, "requests waiting for a row (more: 429)")
      ->check(CLI::Range(1, 100000));
  app.add_option("--max-body-bytes", o.max_body_bytes, "request body limit (more: 413)")
      ->check(CLI::Range(std::size_t(64), std::size_t(1) << 30));
  app.add_option("--max-prompt-tokens", o.max_prompt_tokens, "prompt limit in tokens")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--max-new-tokens", o.max_new_tokens, "limit of max_new_tokens / max_tokens")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--timeout", o.timeout_s, "per-request timeout in seconds (504 after)")
      ->check(CLI::Range(0.001, 1e6));
  app.add_option("--http-threads", o.http_threads, "HTTP worker threads (0: batch + queue + 8)");
  app.add_option("--device", o.device, "auto, cpu or cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app.add_option("--dtype", o.dtype, "float32, float16 or bfloat16")
      ->check(CLI::IsMember({"float32", "float16", "bfloat16"}));
  app.add_option("--threads", o.threads, "CPU threads (0: all cores)");
  CLI11_PARSE(app, argc, argv);
  try {
    require_model_dir("--model", o.model);
    const auto tok = text::tokenizer::from_file(o.model + "/tokenizer.json");
    if (!o.before_model.empty()) {
      require_model_dir("--before-model", o.before_model);
      check_same_vocabulary(tok, text::tokenizer::from_file(o.before_model + "/tokenizer.json"));
    }
    std::optional<text::chat_template> tmpl;
    try {
      tmpl = text::chat_template::from_tokenizer_config(o.model);
    } catch (const error& e) {
      std::fprintf(stderr, "[serve] no chat template (%s): /v1/chat/completions and "
                           "apply_chat_template answer 400\n", e.what());
    }
    return examples::run_on_device(o.device, o.dtype, o.threads,
                                   [&]<class T, class D>(context<D>& ctx, const char* name) {
                                     return run_server<T, D>(o, ctx, tok, tmpl, name);
                                   });
  } catch (const crossbatch::error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
