// Training of the cross-batch module with the base model frozen (the reference's train.py):
// the frozen model's answer states at the mix layer are computed once and cached; then the methods
// train on them: "baseline" (LM head only, no mixing), "crossbatch" (LM head + mixer), "mixer"
// (mixer only). Every epoch prints the training loss beside the baseline loss (same head, no
// mixing) and the frozen model's loss, and the held-out losses; checkpoints go to
// save_dir/<method>.
//   cross_batch_train --train_data stories_split_train.json --eval_data stories_split_test.json \
//                     --method baseline,crossbatch --num_epochs 3 --save_dir ckpt
#include <CLI/CLI.hpp>
#include <fstream>
#include <functional>
#include <sstream>

#include "common.hpp"
#include "crossbatch/train/trainer.hpp"

using namespace crossbatch;
using cbx::json;

namespace {

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');)
    if (!x.empty()) out.push_back(x);
  return out;
}

// Answer states of a data file, from the cache when its provenance matches.
answer_states states_for(const context<cpu>& ctx, const decoder_model<float>& model,
                         const std::string& model_dir, const cbx::prompter& prompt,
                         const std::string& path, std::size_t max_samples, int mix_layer, int batch,
                         const std::string& cache_dir, bool quiet) {
  const auto examples = cbx::load_examples(path, max_samples);
  require(!examples.empty(), path + ": no questions");
  const int k = resolve_mix_layer(mix_layer, model.config.num_layers);
  namespace fs = std::filesystem;
  const json info = {{"model", fs::weakly_canonical(model_dir).string()},
                     {"hidden_size", model.config.hidden_size},
                     {"layers", model.config.num_layers},
                     {"data", fs::weakly_canonical(path).string()},
                     {"data_bytes", fs::file_size(path)},
                     {"questions", examples.size()},
                     {"mix_layer", k},
                     {"prompt", cbx::prompt_version},
                     {"system", cbx::system_prompt}};
  char key[32];
  std::snprintf(key, sizeof key, "%016zx", std::hash<std::string>{}(info.dump()));
  const std::string dir =
      cache_dir + "/" + fs::path(path).stem().string() + "-L" + std::to_string(k) + "-" + key;
  if (fs::exists(dir + "/items.json")) {
    auto s = answer_states::load(dir);
    if (s.info == info) {
      std::cerr << "answer states: " << dir << " (cached, " << s.items.size() << " questions, "
                << s.rows() << " tokens)\n";
      return s;
    }
  }
  std::vector<std::vector<int>> prompts, answers;
  std::vector<int> groups;
  std::vector<std::string> ids;
  std::size_t prompt_tokens = 0;
  for (const auto& e : examples) {
    prompts.push_back(prompt.prompt(e));
    answers.push_back(prompt.answer(e));
    groups.push_back(e.group);
    ids.push_back(e.id);
    prompt_tokens += prompts.back().size();
  }
  std::cerr << "answer states of " << path << ": " << examples.size() << " questions, "
            << prompt_tokens << " prompt tokens, layer " << k << "\n";
  cbx::progress bar("frozen model", examples.size());
  auto s = extract_answer_states(ctx, model, prompts, answers, groups, ids, mix_layer, batch,
                                 [&](std::size_t d, std::size_t) {
                                   if (!quiet) bar.update(d);
                                 });
  s.info = info;
  s.save(dir);
  std::cerr << "answer states: " << dir << " (" << s.rows() << " tokens, "
            << cbx::progress::clock_text(bar.elapsed()) << ")\n";
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Cross-batch generation: training with the base model frozen");
  std::string model_dir = "models/smollm2-135m-instruct", train_data, eval_data,
              save_dir = "checkpoints", methods_arg = "crossbatch", mix_method = "attention",
              combine = "scale", projection = "project", cache_dir = "build/cross_batch/cache",
              output;
  int mix_layer = -1, num_epochs = 3, batch_size = 8, num_heads = 8, threads = 0, extract_batch = 8;
  std::size_t max_samples = 5000, eval_samples = 0;
  float learning_rate = 1e-4f, weight_decay = 0.01f, warmup_ratio = 0.1f, max_grad_norm = 1.0f,
        init_mix = 0.05f;
  std::uint64_t seed = 0;
  bool quiet = false;
  app.add_option("--model_name,--model", model_dir, "model directory");
  app.add_option("--train_data", train_data, "SQuAD-format training file")->required();
  app.add_option("--eval_data", eval_data, "held-out SQuAD-format file (losses every epoch)");
  app.add_option(
      "--method", methods_arg,
      "comma list of baseline (head only), crossbatch (head + mixer), mixer (mixer only)");
  app.add_option("--mix_method", mix_method, "attention or mixer");
  app.add_option("--combine", combine, "alpha, scale or gate");
  app.add_option("--mix_layer", mix_layer, "hidden_states index to mix (-1 = last)");
  app.add_option("--projection", projection, "intermediate layers: project or project_raw");
  app.add_option("--num_heads", num_heads, "heads of the cross-batch attention");
  app.add_option("--num_epochs", num_epochs, "epochs");
  app.add_option("--batch_size", batch_size, "questions per batch (whole contexts packed)");
  app.add_option("--learning_rate", learning_rate, "peak learning rate (AdamW)");
  app.add_option("--weight_decay", weight_decay, "AdamW weight decay");
  app.add_option("--warmup_ratio", warmup_ratio,
                 "fraction of steps of linear warm-up, then cosine decay");
  app.add_option("--max_grad_norm", max_grad_norm, "gradient clipping (global norm)");
  app.add_option("--init_mix", init_mix, "initial alpha/scale of the mixer");
  app.add_option("--max_samples", max_samples, "training questions (whole contexts; 0 = all)");
  app.add_option("--eval_samples", eval_samples, "held-out questions (0 = all)");
  app.add_option("--save_dir", save_dir, "checkpoints are written to save_dir/<method>");
  app.add_option("--cache_dir", cache_dir, "where the frozen model's answer states are cached");
  app.add_option("--extract_batch", extract_batch, "sequences per frozen-model prefill");
  app.add_option("--seed", seed, "mixer initialisation and batch order");
  app.add_option("--threads", threads, "CPU threads (0 = all cores)");
  app.add_option("--output", output, "JSON file with the per-epoch history");
  app.add_flag("--quiet", quiet, "no progress line");
  CLI11_PARSE(app, argc, argv);

  try {
    context<cpu> ctx = cpu_context(threads);
    const auto model = decoder_model<float>::load(model_dir);
    const auto& mc = model.config;
    const cbx::prompter prompt(model_dir);
    const mix_projection proj = mix_projection_from_name(projection);
    const auto train = states_for(ctx, model, model_dir, prompt, train_data, max_samples, mix_layer,
                                  extract_batch, cache_dir, quiet);
    std::optional<answer_states> held;
    if (!eval_data.empty())
      held = states_for(ctx, model, model_dir, prompt, eval_data, eval_samples, mix_layer,
                        extract_batch, cache_dir, quiet);

    mixer_config cfg;
    cfg.kind = mixer_kind_from_name(mix_method);
    cfg.combine = combine_mode_from_name(combine);
    cfg.hidden_size = mc.hidden_size;
    cfg.num_heads = num_heads;
    mixer_init init;
    init.mix = init_mix;

    train_options opt;
    opt.epochs = num_epochs;
    opt.batch_size = batch_size;
    opt.learning_rate = learning_rate;
    opt.warmup_ratio = warmup_ratio;
    opt.adam.weight_decay = weight_decay;
    opt.adam.max_grad_norm = max_grad_norm;
    opt.seed = seed + 1;

    // The frozen model's loss (original head, no mixing): the reference table's baseline column.
    double frozen_train = 0, frozen_held = 0;
    {
      cross_batch_trainer<float> frozen(ctx, std::nullopt, head_from_model<float>(model),
                                        head_input_for<float>(model, mix_layer, proj), [&] {
                                          auto o = opt;
                                          o.train_head = false;
                                          o.train_mixer = false;
                                          return o;
                                        }());
      frozen_train = frozen.evaluate(train).loss;
      if (held) frozen_held = frozen.evaluate(*held).loss;
      std::cerr << "frozen model loss: train " << frozen_train
                << (held ? ", held-out " + std::to_string(frozen_held) : "") << "\n";
    }

    json history = {{"model", model_dir},
                    {"train_data", train_data},
                    {"eval_data", eval_data},
                    {"mixer", cfg.to_json()},
                    {"mix_layer", mix_layer},
                    {"projection", to_string(proj)},
                    {"epochs", num_epochs},
                    {"batch_size", batch_size},
                    {"learning_rate", learning_rate},
                    {"weight_decay", weight_decay},
                    {"warmup_ratio", warmup_ratio},
                    {"max_grad_norm", max_grad_norm},
                    {"init_mix", init_mix},
                    {"train_questions", train.items.size()},
                    {"train_tokens", train.rows()},
                    {"held_out_questions", held ? held->items.size() : 0},
                    {"held_out_tokens", held ? held->rows() : 0},
                    {"frozen_train_loss", frozen_train},
                    {"frozen_held_out_loss", frozen_held},
                    {"threads", ctx.threads},
                    {"methods", json::object()}};
    std::vector<std::pair<std::string, loss_summary>> finals;
    for (const auto& method : split_list(methods_arg)) {
      require(method == "baseline" || method == "crossbatch" || method == "mixer",
              "unknown method '" + method + "' (baseline, crossbatch, mixer)");
      train_options o = opt;
      o.train_mixer = method != "baseline";
      o.train_head = method != "mixer";
      std::optional<mixer_weights<float>> mixer;
      if (o.train_mixer) mixer = init_mixer<float>(cfg, seed, init);
      cross_batch_trainer<float> tr(ctx, std::move(mixer), head_from_model<float>(model),
                                    head_input_for<float>(model, mix_layer, proj), o);
      std::printf("\n%s (%s): %zu train / %zu held-out questions, %d epochs\n", method.c_str(),
                  method == "baseline"     ? "LM head only, no mixing"
                  : method == "crossbatch" ? "LM head + mixer"
                                           : "mixer only",
                  train.items.size(), held ? held->items.size() : std::size_t(0), num_epochs);
      std::printf(
          "| Epoch | Loss | Baseline Loss | Improvement | Frozen model | Held-out loss | Held-out "
          "baseline | Time |\n");
      std::printf(
          "|-------|------|---------------|-------------|--------------|---------------|-----------"
          "--------|------|\n");
      json epochs = json::array();
      loss_summary last_held;
      if (held) {
        const auto h0 = tr.evaluate(*held);
        std::printf("| 0 | - | - | - | %.4f | %.4f | %.4f | - |\n", frozen_train, h0.loss,
                    h0.baseline_loss);
        epochs.push_back({{"epoch", 0},
                          {"held_out_loss", h0.loss},
                          {"held_out_baseline_loss", h0.baseline_loss}});
      }
      for (int e = 0; e < num_epochs; ++e) {
        std::optional<cbx::progress> bar;
        const auto s =
            tr.train_epoch(train, e, num_epochs, [&](int bi, int nb, const loss_summary& run) {
              if (quiet) return;
              if (!bar)
                bar.emplace(method + " epoch " + std::to_string(e + 1), std::size_t(nb), "batches");
              char extra[96];
              std::snprintf(extra, sizeof extra, " loss %.4f baseline %.4f", run.loss,
                            run.baseline_loss);
              bar->update(std::size_t(bi + 1), extra);
            });
        loss_summary h;
        if (held) h = tr.evaluate(*held);
        std::printf("| %d | %.4f | %.4f | %+.4f | %.4f | %s | %s | %s |\n", e + 1, s.loss,
                    s.baseline_loss, s.baseline_loss - s.loss, frozen_train,
                    held ? std::to_string(h.loss).c_str() : "-",
                    held ? std::to_string(h.baseline_loss).c_str() : "-",
                    cbx::progress::clock_text(s.seconds).c_str());
        std::fflush(stdout);
        epochs.push_back({{"epoch", e + 1},
                          {"loss", s.loss},
                          {"baseline_loss", s.baseline_loss},
                          {"improvement", s.baseline_loss - s.loss},
                          {"frozen_loss", frozen_train},
                          {"grad_norm", s.grad_norm},
                          {"tokens", s.tokens},
                          {"seconds", s.seconds},
                          {"held_out_loss", held ? h.loss : 0.0},
                          {"held_out_baseline_loss", held ? h.baseline_loss : 0.0}});
        last_held = h;
      }
      // Control: the same trained mixer with partners from other stories of the batch.
      loss_summary foreign;
      if (held && o.train_mixer) {
        foreign = tr.evaluate(*held, true, partner_mode::other_contexts);
        std::printf(
            "held-out with partners from other contexts (control): %.4f (same context: %.4f, no "
            "mixing: %.4f)\n",
            foreign.loss, last_held.loss, last_held.baseline_loss);
      }
      auto ck = tr.checkpoint(mc, mix_layer, proj);
      ck.info = {{"train_data", train_data},
                 {"eval_data", eval_data},
                 {"epochs", epochs},
                 {"options", history}};
      ck.info["options"].erase("methods");
      const std::string dir = save_dir + "/" + method;
      save_checkpoint(dir, ck);
      std::cerr << "saved " << dir << "\n";
      history["methods"][method] = {{"epochs", epochs}, {"checkpoint", dir}};
      if (held && o.train_mixer)
        history["methods"][method]["held_out_other_contexts_loss"] = foreign.loss;
      finals.push_back({method, last_held});
    }
    if (held) {
      std::printf("\nHeld-out answer-token loss (nats/token, %zu tokens); frozen model %.4f\n",
                  held->rows(), frozen_held);
      std::printf(
          "| Method | With mixing | Same head, no mixing "
          "|\n|--------|-------------|----------------------|\n");
      for (const auto& [name, h] : finals)
        std::printf("| %s | %.4f | %.4f |\n", name.c_str(), h.loss, h.baseline_loss);
    }
    if (!output.empty()) {
      std::filesystem::path p(output);
      if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
      std::ofstream f(output);
      f << history.dump(2) << "\n";
      if (!f) throw io_error(output + ": write failed");
      std::cerr << "wrote " << output << "\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "cross_batch_train: error: " << e.what() << "\n";
    return 1;
  }
}
