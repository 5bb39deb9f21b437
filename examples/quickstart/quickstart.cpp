// Quickstart: chat (or plain completion) with a converted model, tokens streamed as they are made,
// prompt and generation speed printed at the end. Runs on the GPU when built with CUDA and one is
// present, else on the CPU.
//   quickstart                                   default model, default question
//   quickstart --prompt "Why is the sky blue?" --max-new-tokens 200 --temperature 0.7 --top-p 0.9
//   quickstart --model models/other --raw --prompt "Once upon a time"
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "crossbatch/generate/generate.hpp"
#include "crossbatch/text/chat_template.hpp"
#include "crossbatch/text/decode_stream.hpp"
#include "crossbatch/text/tokenizer.hpp"
#include "run_on_device.hpp"

using namespace crossbatch;

namespace {

struct options {
  std::string model = "models/smollm2-135m-instruct";
  std::string prompt = "What is the capital of France? Answer in one sentence.";
  std::string system;
  std::string template_name;
  bool raw = false;
  int max_new_tokens = 128;
  float temperature = 0.0f, top_p = 1.0f, min_p = 0.0f;
  int top_k = 0;
  std::uint64_t seed = 0;
  std::string dtype = "float32";
  std::string device = "auto";
  int threads = 0;
};

// The decode driver of each device: host-driven on the CPU, the CUDA graph driver on the GPU (the
// step replayed as one graph; tokens read back, and streamed, every 4 steps).
template <class T>
generation_result generate_streaming(context<cpu>& ctx, const decoder_model<T>& model,
                                     const std::vector<int>& prompt, const sampling_params& sp,
                                     const generation_options& g, const token_callback& cb) {
  return generate(ctx, model, {prompt}, sp, g, cb);
}
#if CROSSBATCH_WITH_CUDA
template <class T>
generation_result generate_streaming(context<crossbatch::cuda>& ctx,
                                     const decoder_model<T, crossbatch::cuda>& model,
                                     const std::vector<int>& prompt, const sampling_params& sp,
                                     const generation_options& g, const token_callback& cb) {
  graph_driver_options driver;
  driver.read_every = 4;
  return graph_generate(ctx, model, {prompt}, sp, g, cb, {}, driver);
}
#endif

template <class T, class D>
int run(const options& o, context<D>& ctx, const text::tokenizer& tok,
        const std::vector<int>& prompt_ids, const std::string& device_name) {
  const auto model = decoder_model<T, D>::load(o.model);
  sampling_params sp;
  sp.do_sample = o.temperature > 0;
  sp.temperature = o.temperature > 0 ? o.temperature : 1.0f;
  sp.top_k = o.top_k;
  sp.top_p = o.top_p;
  sp.min_p = o.min_p;
  generation_options g;
  g.max_new_tokens = o.max_new_tokens;
  g.seed = o.seed;
  if (model.config.eos_token_ids.empty())
    if (auto eos = tok.token_to_id(o.raw ? "<|endoftext|>" : "<|im_end|>")) g.eos_ids = {*eos};
  text::decode_stream stream(tok);
  const auto r = generate_streaming<T>(ctx, model, prompt_ids, sp, g, [&](int, int id) {
    std::cout << stream.step(id) << std::flush;
  });
  std::cout << stream.flush() << "\n";
  const int decoded =
      std::max(0, r.generated_tokens - 1);  // the first token comes from the prefill
  std::fprintf(stderr,
               "\n[%s, %s] prompt: %d tokens in %.3f s (%.1f tokens/s); generation: %d tokens, "
               "%.1f tokens/s\n",
               device_name.c_str(), dtype_traits<T>::name, r.prompt_tokens, r.prefill_seconds,
               r.prompt_tokens / std::max(r.prefill_seconds, 1e-9), r.generated_tokens,
               r.decode_seconds > 0 ? decoded / r.decode_seconds : 0.0);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app("crossbatch quickstart: chat with a converted model");
  app.add_option("--model", o.model, "model directory (config.json, tokenizer.json, *.npy)");
  app.add_option("-p,--prompt", o.prompt, "user message (or the text to continue with --raw)");
  app.add_option("--system", o.system, "system message");
  app.add_option("--template", o.template_name,
                 "chat template name (chatml, smollm2, qwen2.5, llama3...) "
                 "instead of the one in tokenizer_config.json");
  app.add_flag("--raw", o.raw, "no chat template: continue the prompt text");
  app.add_option("-n,--max-new-tokens", o.max_new_tokens, "tokens to generate at most")
      ->check(CLI::Range(1, 100000));
  app.add_option("--temperature", o.temperature, "0: greedy")->check(CLI::Range(0.0, 100.0));
  app.add_option("--top-k", o.top_k)->check(CLI::NonNegativeNumber);
  app.add_option("--top-p", o.top_p)->check(CLI::Range(0.0, 1.0));
  app.add_option("--min-p", o.min_p)->check(CLI::Range(0.0, 1.0));
  app.add_option("--seed", o.seed);
  app.add_option("--dtype", o.dtype, "float32, float16 or bfloat16")
      ->check(CLI::IsMember({"float32", "float16", "bfloat16"}));
  app.add_option("--device", o.device, "auto, cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app.add_option("--threads", o.threads, "CPU threads (0: all cores)");
  CLI11_PARSE(app, argc, argv);

  try {
    if (!std::filesystem::exists(o.model + "/config.json"))
      throw io_error(
          o.model +
          ": no config.json here; run scripts/get_default_model.sh or tools/convert.py first");
    const auto tok = text::tokenizer::from_file(o.model + "/tokenizer.json");
    std::string prompt_text = o.prompt;
    if (!o.raw) {
      const auto tmpl = o.template_name.empty()
                            ? text::chat_template::from_tokenizer_config(o.model)
                            : text::chat_template::from_name(o.template_name);
      std::vector<text::chat_message> messages;
      if (!o.system.empty()) messages.push_back({"system", o.system});
      messages.push_back({"user", o.prompt});
      prompt_text = tmpl.render(messages, /*add_generation_prompt=*/true);
    }
    text::encode_options eo;
    eo.add_special_tokens = o.raw;  // the chat template already holds the special tokens
    const auto ids32 = tok.encode(prompt_text, eo);
    const std::vector<int> ids(ids32.begin(), ids32.end());
    std::cerr << "[" << ids.size() << " prompt tokens]\n";
    return examples::run_on_device(o.device, o.dtype, o.threads,
                                   [&]<class T, class D>(context<D>& ctx, const char* name) {
                                     return run<T, D>(o, ctx, tok, ids, name);
                                   });
  } catch (const crossbatch::error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
