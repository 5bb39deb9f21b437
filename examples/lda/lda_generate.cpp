// Command-line LDA generator: completions from logits after + alpha (after - before) of two
// converted models that share a vocabulary, a batch of prompts at a time (left-padded), on the CPU
// (decode driver) or on the GPU (both models' steps in one CUDA graph). Prints each completion
// (never the prompt); --json FILE adds one JSON line per prompt in the reference server's fields.
//   lda_generate --after models/a --before models/b --prompt "Hello" --alpha 2
//   lda_generate --after A --before B --prompts-file prompts.txt --chat --fixed-length --json
//   out.jsonl
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "crossbatch/generate/lda.hpp"
#include "crossbatch/model/json_field.hpp"
#include "crossbatch/text/chat_template.hpp"
#include "crossbatch/text/tokenizer.hpp"
#include "run_on_device.hpp"

using namespace crossbatch;

namespace {

struct options {
  std::string after, before;
  std::vector<std::string> prompts;
  std::string prompts_file;
  float alpha = 1.0f;
  float temperature = 0.8f, top_p = 0.95f, min_p = 0.0f;
  int top_k = 0;
  int max_new_tokens = 80;
  bool do_sample = true;
  std::uint64_t seed = 0;
  bool chat = false;
  std::string system;
  bool fixed_length = false;
  int batch_size = 8;
  std::string device = "auto", dtype = "float32";
  std::string json_file;
  int threads = 0;
};

// One prompt as given, as fed (chat template applied or not) and its ids.
struct prepared_prompt {
  std::string text, formatted;
  std::vector<int> ids;
};

std::vector<std::string> read_prompts(const options& o) {
  std::vector<std::string> all = o.prompts;
  if (!o.prompts_file.empty()) {
    std::ifstream in(o.prompts_file);
    if (!in) throw io_error(o.prompts_file + ": cannot open the prompts file");
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!line.empty()) all.push_back(line);
    }
  }
  if (all.empty()) throw value_error("no prompt: give --prompt (repeatable) or --prompts-file");
  for (std::size_t i = 0; i < all.size(); ++i)
    if (all[i].empty()) throw value_error("prompt " + std::to_string(i) + " is empty");
  return all;
}

std::vector<prepared_prompt> prepare(const options& o, const text::tokenizer& tok) {
  std::vector<prepared_prompt> out;
  std::optional<text::chat_template> tmpl;
  if (o.chat) tmpl = text::chat_template::from_tokenizer_config(o.after);
  text::encode_options eo;
  eo.add_special_tokens = !o.chat;  // the chat template already holds the special tokens
  for (const auto& p : read_prompts(o)) {
    prepared_prompt q{p, p, {}};
    if (tmpl) {
      std::vector<text::chat_message> messages;
      if (!o.system.empty()) messages.push_back({"system", o.system});
      messages.push_back({"user", p});
      q.formatted = tmpl->render(messages, /*add_generation_prompt=*/true);
    }
    const auto ids = tok.encode(q.formatted, eo);
    q.ids.assign(ids.begin(), ids.end());
    out.push_back(std::move(q));
  }
  return out;
}

// One batch through the device's driver: decode() on the CPU, the graph driver on CUDA.
template <class T>
generation_result run_batch(const context<cpu>& ctx, const decoder_model<T>& after,
                            const decoder_model<T>& before,
                            const std::vector<std::vector<int>>& prompts, float alpha,
                            const lda_sampling& sp, const generation_options& g) {
  if (sp.do_sample) return lda_generate(ctx, after, before, prompts, alpha, sp, g);
  return lda_generate(ctx, after, before, prompts, alpha, greedy{}, g);
}
#if CROSSBATCH_WITH_CUDA
template <class T>
generation_result run_batch(context<crossbatch::cuda>& ctx,
                            const decoder_model<T, crossbatch::cuda>& after,
                            const decoder_model<T, crossbatch::cuda>& before,
                            const std::vector<std::vector<int>>& prompts, float alpha,
                            const lda_sampling& sp, const generation_options& g) {
  check_same_vocabulary(after.config, before.config);
  check_lda_alpha(alpha);
  batch_session<T, crossbatch::cuda> a(ctx, after, prompts, g.max_new_tokens);
  batch_session<T, crossbatch::cuda> b(ctx, before, prompts, g.max_new_tokens);
  combined_step<T, crossbatch::cuda, left_padded, lda_combiner> policy({&a, &b},
                                                                       lda_combiner{alpha});
  graph_driver<T> driver(ctx);
  auto r = driver.run(policy, sp.to_sampling_params(), g, stop_ids(g, after.config));
  r.prompt_tokens = real_prompt_tokens(a.layout());
  return r;
}
#endif

template <class T, class D, class Ctx>
int run(const options& o, Ctx& ctx, const text::tokenizer& tok,
        const std::vector<prepared_prompt>& prompts, const std::string& device_name) {
  const lda_sampling sp{.do_sample = o.do_sample,
                        .temperature = o.temperature,
                        .top_p = o.top_p,
                        .min_p = o.min_p,
                        .top_k = o.top_k};
  // The device sampler has HF's order: refuse top-k with top-p there before loading anything.
  if constexpr (!std::is_same_v<D, cpu>) (void)sp.to_sampling_params();
  const auto after = decoder_model<T, D>::load(o.after);
  const auto before = decoder_model<T, D>::load(o.before);
  check_same_vocabulary(after.config, before.config);
  generation_options g;
  g.max_new_tokens = o.max_new_tokens;
  g.stop_at_eos = !o.fixed_length;
  g.seed = o.seed;
  if (after.config.eos_token_ids.empty())
    if (auto eos = tok.token_to_id(o.chat ? "<|im_end|>" : "<|endoftext|>")) g.eos_ids = {*eos};
  std::ofstream json_out;
  if (!o.json_file.empty()) {
    json_out.open(o.json_file);
    if (!json_out) throw io_error(o.json_file + ": cannot write the JSON file");
  }
  int generated = 0;
  double seconds = 0;
  for (std::size_t first = 0; first < prompts.size(); first += o.batch_size) {
    const std::size_t n = std::min<std::size_t>(o.batch_size, prompts.size() - first);
    std::vector<std::vector<int>> ids;
    for (std::size_t i = 0; i < n; ++i) ids.push_back(prompts[first + i].ids);
    const auto r = run_batch<T>(ctx, after, before, ids, o.alpha, sp, g);
    generated += r.generated_tokens;
    seconds += r.prefill_seconds + r.decode_seconds;
    for (std::size_t i = 0; i < n; ++i) {
      const auto& p = prompts[first + i];
      const std::vector<std::int32_t> toks(r.tokens[i].begin(), r.tokens[i].end());
      const std::string completion = tok.decode(toks);
      std::cout << "=== [" << first + i << "] " << completion << "\n";
      if (json_out.is_open()) {
        const json line = {{"prompt", p.text},
                           {"formatted_prompt", p.formatted},
                           {"completion", completion},
                           {"text", p.formatted + completion},
                           {"alpha", o.alpha},
                           {"model_after", o.after},
                           {"model_before", o.before},
                           {"tokens_generated", r.tokens[i].size()},
                           {"stopped_early", bool(r.stopped_at_eos[i])},
                           {"completion_ids", r.tokens[i]},
                           {"do_sample", o.do_sample},
                           {"temperature", o.temperature},
                           {"top_p", o.top_p},
                           {"seed", o.seed}};
        json_out << line.dump() << "\n";
      }
    }
  }
  std::fprintf(stderr, "[%s, %s] %zu prompts, %d tokens in %.2f s (%.1f tokens/s)\n",
               device_name.c_str(), dtype_traits<T>::name, prompts.size(), generated, seconds,
               generated / std::max(seconds, 1e-9));
  return 0;
}

void require_model_dir(const std::string& flag, const std::string& dir) {
  if (!std::filesystem::exists(dir + "/config.json"))
    throw io_error(flag + " " + dir +
                   ": no config.json here (a directory written by tools/convert.py)");
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app("crossbatch LDA: sample from after + alpha (after - before) of two models");
  app.add_option("--after", o.after, "the 'after' model directory (converted)")->required();
  app.add_option("--before", o.before, "the 'before' model directory (same vocabulary)")
      ->required();
  app.add_option("-p,--prompt", o.prompts, "a prompt (repeatable)");
  app.add_option("--prompts-file", o.prompts_file, "a file of prompts, one per line");
  app.add_option("--alpha", o.alpha, "amplification of (after - before)")
      ->check(CLI::Range(0.0, 10.0));
  app.add_option("--temperature", o.temperature, "> 0")->check(CLI::Range(1e-6, 100.0));
  app.add_option("--top-p", o.top_p, "nucleus mass in (0, 1] (shifted: keeps the crossing token)")
      ->check(CLI::Range(1e-6, 1.0));
  app.add_option("--min-p", o.min_p, "min-p in [0, 1], after top-p")->check(CLI::Range(0.0, 1.0));
  app.add_option("--top-k", o.top_k, "top-k (0: off), after min-p")->check(CLI::NonNegativeNumber);
  app.add_option("-n,--max-new-tokens", o.max_new_tokens, "tokens to generate")
      ->check(CLI::Range(1, 512));
  app.add_flag("--do-sample,!--greedy", o.do_sample, "sample (default) or take the argmax");
  app.add_option("--seed", o.seed, "RNG seed (row b of a batch draws from stream b)");
  app.add_flag("--chat", o.chat, "apply the after model's chat template to each prompt");
  app.add_option("--system", o.system, "system message (with --chat)");
  app.add_flag("--fixed-length", o.fixed_length, "always generate max-new-tokens (no EOS stop)");
  app.add_option("--batch-size", o.batch_size, "prompts per batch")->check(CLI::Range(1, 256));
  app.add_option("--device", o.device, "auto, cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app.add_option("--dtype", o.dtype, "float32, float16 or bfloat16")
      ->check(CLI::IsMember({"float32", "float16", "bfloat16"}));
  app.add_option("--json", o.json_file, "write one JSON line per prompt to this file");
  app.add_option("--threads", o.threads, "CPU threads (0: all cores)");
  CLI11_PARSE(app, argc, argv);

  try {
    if (!o.system.empty() && !o.chat) throw value_error("--system needs --chat");
    require_model_dir("--after", o.after);
    require_model_dir("--before", o.before);
    const auto tok = text::tokenizer::from_file(o.after + "/tokenizer.json");
    check_same_vocabulary(tok, text::tokenizer::from_file(o.before + "/tokenizer.json"));
    const auto prompts = prepare(o, tok);
    return examples::run_on_device(o.device, o.dtype, o.threads,
                                   [&]<class T, class D>(context<D>& ctx, const char* name) {
                                     return run<T, D>(o, ctx, tok, prompts, name);
                                   });
  } catch (const crossbatch::error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
