// Diagonal batching of ARMT (issue 14).
//   diagonal_batching speed    --model DIR [--armt DIR] --tokens N ...
//       one long random input through the sequential and the diagonal executor: time, working
//       memory, exactness (every last-segment logit, every layer's final A and z)
//   diagonal_batching babilong --model DIR [--armt DIR] (--data DIR --task qa1 --length 4k |
//                               --generate qa1 --filler-words 2000) ...
//       BABILong-style question answering, greedy answers scored as BABILong does, with either
//       executor (or both, to compare their accuracy and time)
//   --random-armt S,M,D_MEM writes random ARMT parameters for the base model into --armt DIR
//   first (an untrained memory: it answers BABILong at chance).
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "babilong.hpp"
#include "crossbatch/recurrent/armt_generate.hpp"
#include "crossbatch/recurrent/random_armt.hpp"
#include "crossbatch/text/tokenizer.hpp"
#include "run_on_device.hpp"
#if CROSSBATCH_WITH_CUDA
#include "crossbatch/recurrent/cuda/generate.cuh"
#endif

using namespace crossbatch;

namespace {

struct options {
  std::string mode, model, armt, random_armt, json_file, device = "cpu", dtype = "float32";
  int tokens = 8192, threads = 0, max_new_tokens = 8, samples = 20, facts = 6,
      filler_words = 1000;
  std::string data, task = "qa1", length = "0k", generate_task;
  std::string executor = "both";
  std::uint64_t seed = 1;
};

using clock_type = std::chrono::steady_clock;
double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// Bytes of the state and of the activations each executor keeps alive (float32 state; hidden
// states and workspaces in T), against a full-attention KV cache of the same input.
template <class T, class M>
json memory_report(const M& m, index_t n) {
  const auto& c = m.config();
  const auto& a = m.armt;
  const index_t t = a.rows(), segs = a.segments(int(n)), L = c.num_layers;
  const index_t state = L * (index_t(a.d_key()) * c.hidden_size + a.d_key()) * 4;
  const index_t row = (c.hidden_size * 3 + index_t(c.num_heads + 2 * c.num_kv_heads) * c.head_dim +
                       3 * index_t(c.intermediate_size)) * index_t(sizeof(T));
  const index_t group = std::min(segs, L);
  return {{"armt_state_bytes", state},
          {"sequential_activation_bytes", t * row},
          {"diagonal_activation_bytes", group * t * row},
          {"full_attention_kv_cache_bytes",
           2 * L * c.num_kv_heads * c.head_dim * n * index_t(sizeof(T))}};
}

// sequential(seqs, opt) and diagonal(seqs, opt) run the executors of the device.
template <class T, class M, class Seq, class Diag>
int speed(const options& o, int threads, const M& m, Seq&& sequential, Diag&& diagonal,
          const char* device) {
  std::mt19937 gen(unsigned(o.seed));
  std::uniform_int_distribution<int> id(0, m.config().vocab_size - 1);
  std::vector<std::vector<int>> seqs(1, std::vector<int>(o.tokens));
  for (int& t : seqs[0]) t = id(gen);
  const armt_options opt{.all_logits = false};
  sequential(std::vector<std::vector<int>>(1, std::vector<int>(seqs[0].begin(),
             seqs[0].begin() + std::min(o.tokens, 2 * m.armt.segment_size))), opt);  // warm-up
  auto t0 = clock_type::now();
  const auto seq = sequential(seqs, opt);
  const double t_seq = seconds_since(t0);
  t0 = clock_type::now();
  const auto diag = diagonal(seqs, opt);
  const double t_diag = seconds_since(t0);
  auto rel = [](const tensor<float>& a, const tensor<float>& b) {
    double d = 0, s = 0;
    for (index_t i = 0; i < a.size(); ++i) {
      const double x = double(a.data()[i]) - b.data()[i];
      if (!std::isfinite(x)) return INFINITY * 1.0;
      d = std::max(d, std::fabs(x));
      s = std::max(s, std::fabs(double(b.data()[i])));
    }
    return d / std::max(s, 1.0);
  };
  const double e_logits = rel(diag.logits[0], seq.logits[0]);
  const double e_A = rel(diag.states[0].A, seq.states[0].A);
  const double e_z = rel(diag.states[0].z, seq.states[0].z);
  const double tol = std::is_same_v<T, float> ? 1e-6 : dtype_traits<T>::rtol;
  const bool exact = e_logits <= tol && e_A <= tol && e_z <= tol;
  const int segs = m.armt.segments(o.tokens);
  json r = {{"tokens", o.tokens},
            {"segments", segs},
            {"layers", m.config().num_layers},
            {"device", device},
            {"segment_size", m.armt.segment_size},
            {"num_mem_tokens", m.armt.num_mem_tokens},
            {"dtype", dtype_traits<T>::name},
            {"threads", threads},
            {"sequential_seconds", t_seq},
            {"diagonal_seconds", t_diag},
            {"speedup", t_seq / t_diag},
            {"layer_calls_sequential", segs * m.config().num_layers},
            {"grouped_steps_diagonal", segs + m.config().num_layers - 1},
            {"max_rel_diff_logits", e_logits},
            {"max_rel_diff_A", e_A},
            {"max_rel_diff_z", e_z},
            {"tolerance", tol},
            {"exact", exact},
            {"memory", memory_report<T>(m, o.tokens)}};
  const int L = m.config().num_layers;
  std::printf("%d tokens, %d segments x %d layers (%s, %s)\n", o.tokens, segs, L,
              dtype_traits<T>::name, device);
  std::printf("| executor | seconds | layer calls |\n|---|---|---|\n");
  std::printf("| sequential | %.3f | %d |\n| diagonal | %.3f | %d grouped steps |\n", t_seq,
              segs * L, t_diag, segs + L - 1);
  std::printf("speed-up %.2fx; diagonal vs sequential: logits %.2e, A %.2e, z %.2e relative "
              "(tolerance %.0e): %s\n",
              t_seq / t_diag, e_logits, e_A, e_z, tol, exact ? "exact" : "MISMATCH");
  std::printf("memory: %s\n", r["memory"].dump().c_str());
  if (!o.json_file.empty()) std::ofstream(o.json_file) << r.dump(2) << "\n";
  return exact ? 0 : 1;
}

// M: armt_model<T> (CPU) or cuda_armt<T>; armt_generate of the device runs it.
template <class T, class D, class M>
int evaluate(const options& o, const context<D>& ctx, const M& m, const text::tokenizer& tok,
             const char* device) {
  std::vector<babilong::sample> samples;
  std::string task = o.task;
  if (!o.generate_task.empty()) {
    task = o.generate_task;
    babilong::generator g(o.seed);
    for (int i = 0; i < o.samples; ++i) samples.push_back(g.make(task, o.facts, o.filler_words));
  } else {
    if (o.data.empty()) throw value_error("babilong: give --data DIR or --generate qa1|qa2");
    samples = babilong::read(o.data, task, o.length);
    if (int(samples.size()) > o.samples) samples.resize(o.samples);
  }
  std::vector<std::string> executors;
  if (o.executor == "both" || o.executor == "sequential") executors.push_back("sequential");
  if (o.executor == "both" || o.executor == "diagonal") executors.push_back("diagonal");
  json out = {{"task", task}, {"samples", samples.size()}, {"device", device},
              {"dtype", dtype_traits<T>::name}, {"results", json::array()}};
  for (const auto& ex : executors) {
    int correct = 0;
    long tokens = 0;
    const auto t0 = clock_type::now();
    for (std::size_t i = 0; i < samples.size(); ++i) {
      const auto& s = samples[i];
      const std::string prompt = s.input + "\n\nQuestion: " + s.question + "\nAnswer:";
      const auto ids32 = tok.encode(prompt);
      const std::vector<int> ids(ids32.begin(), ids32.end());
      tokens += long(ids.size());
      const auto r = armt_generate(ctx, m, {ids}, greedy{},
                                   generation_options{.max_new_tokens = o.max_new_tokens},
                                   ex == "diagonal");
      const std::vector<std::int32_t> ans(r.tokens[0].begin(), r.tokens[0].end());
      const std::string answer = tok.decode(ans);
      correct += babilong::compare_answers(s.target, answer, s.question, task);
      const double el = seconds_since(t0);
      std::fprintf(stderr, "\r[%s] %zu/%zu samples, %.2f samples/s, ETA %.0f s   ", ex.c_str(),
                   i + 1, samples.size(), (i + 1) / el, el / (i + 1) * (samples.size() - i - 1));
    }
    std::fprintf(stderr, "\n");
    const double secs = seconds_since(t0);
    const double acc = samples.empty() ? 0 : double(correct) / samples.size();
    std::printf("| %s | %s | %zu samples | accuracy %.3f | %.2f s | %.0f prompt tokens/sample |\n",
                task.c_str(), ex.c_str(), samples.size(), acc, secs,
                samples.empty() ? 0.0 : double(tokens) / samples.size());
    out["results"].push_back({{"executor", ex}, {"accuracy", acc}, {"seconds", secs},
                              {"prompt_tokens", tokens}});
  }
  if (!o.json_file.empty()) std::ofstream(o.json_file) << out.dump(2) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app("crossbatch ARMT with diagonal batching: speed/exactness and BABILong evaluation");
  app.add_option("mode", o.mode, "speed or babilong")
      ->required()
      ->check(CLI::IsMember({"speed", "babilong"}));
  app.add_option("--model", o.model, "base model directory (config.json, npy, tokenizer.json)")
      ->required();
  app.add_option("--armt", o.armt, "ARMT directory (armt_config.json + npy); default --model");
  app.add_option("--random-armt", o.random_armt,
                 "S,M,D_MEM: first write random ARMT parameters into --armt");
  app.add_option("--tokens", o.tokens, "speed: input length")->check(CLI::PositiveNumber);
  app.add_option("--data", o.data, "babilong: directory of BABILong files");
  app.add_option("--task", o.task, "babilong: qa1..qa5");
  app.add_option("--length", o.length, "babilong: 0k, 1k, 2k, 4k, ..., 128k");
  app.add_option("--generate", o.generate_task, "babilong: generate qa1 or qa2 samples instead");
  app.add_option("--facts", o.facts, "generated samples: facts per sample")->check(CLI::Range(1, 100));
  app.add_option("--filler-words", o.filler_words, "generated samples: filler words per sample");
  app.add_option("--samples", o.samples, "babilong: samples (at most)")->check(CLI::PositiveNumber);
  app.add_option("--executor", o.executor, "babilong: sequential, diagonal or both")
      ->check(CLI::IsMember({"sequential", "diagonal", "both"}));
  app.add_option("--max-new-tokens", o.max_new_tokens, "babilong: answer length");
  app.add_option("--dtype", o.dtype, "float32 or bfloat16")
      ->check(CLI::IsMember({"float32", "bfloat16"}));
  app.add_option("--device", o.device, "auto, cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app.add_option("--threads", o.threads, "CPU threads (0: all cores)");
  app.add_option("--seed", o.seed, "input / generator seed");
  app.add_option("--json", o.json_file, "write the results as JSON here");
  CLI11_PARSE(app, argc, argv);
  try {
    if (o.armt.empty()) o.armt = o.model;
    if (!o.random_armt.empty()) {
      int s = 0, mm = 0, d = 0;
      if (std::sscanf(o.random_armt.c_str(), "%d,%d,%d", &s, &mm, &d) != 3 || s <= 0 || mm <= 0 ||
          d <= 0)
        throw value_error("--random-armt: expected S,M,D_MEM (positive integers), got '" +
                          o.random_armt + "'");
      write_random_armt(o.armt, load_config(o.model + "/config.json"), s, mm, d, o.seed);
    }
    return examples::run_on_device(
        o.device, o.dtype, o.threads, [&]<class T, class D>(context<D>& ctx, const char*) -> int {
          if constexpr (!std::is_same_v<D, cpu>) {
#if CROSSBATCH_WITH_CUDA
            const auto m = cuda_armt<T>::load(o.model, o.armt);
            if (o.mode == "speed")
              return speed<T>(
                  o, 0, m,
                  [&](const auto& s, const auto& opt) { return armt_sequential(ctx, m, s, opt); },
                  [&](const auto& s, const auto& opt) { return armt_diagonal(ctx, m, s, opt); },
                  "cuda");
            const auto tok = text::tokenizer::from_file(o.model + "/tokenizer.json");
            return evaluate<T>(o, ctx, m, tok, "cuda");
#else
            throw value_error("built without CUDA");
#endif
          } else {
            const auto m = armt_model<T>::load(o.model, o.armt);
            if (o.mode == "speed")
              return speed<T>(
                  o, ctx.threads, m,
                  [&](const auto& s, const auto& opt) { return armt_sequential(ctx, m, s, opt); },
                  [&](const auto& s, const auto& opt) { return armt_diagonal(ctx, m, s, opt); },
                  "cpu");
            const auto tok = text::tokenizer::from_file(o.model + "/tokenizer.json");
            return evaluate<T>(o, ctx, m, tok, "cpu");
          }
        });
  } catch (const crossbatch::error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
