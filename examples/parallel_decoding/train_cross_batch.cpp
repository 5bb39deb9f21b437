// Training of the reference's four methods (scripts/train_cross_batch.py) through the model:
// baseline (LM head), crossbatch (LM head + cross-batch mixer), lora_lmhead (LoRA + head),
// lora_crossbatch (LoRA + head + mixer), in sequence, each from the same base model; checkpoints in
// <save-dir>/<model>_<method>/ (train/method_checkpoint.hpp), which compare_strategies loads
// (--lora-lmhead-checkpoint, --lora-crossbatch-checkpoint, --baseline-checkpoint,
// --collab-hidden-checkpoint). After training each method is evaluated on the validation groups
// (carved from the training file) and the test groups (--eval-data): answer-token loss (and, for
// the mixer methods, without the mixer and with the like-for-like control: as many partners from
// other groups as siblings) and EM / F1 / lenient of greedy answers under the batch strategy's
// prompts. JSON history with --json-out.
//   train_cross_batch --dataset squad --data stories_split_train.json --eval-data stories_split_test.json \
//     --max-samples 200 --eval-samples 50 --epochs 1 --batch-size 8 --save-dir outputs/checkpoints
#include <CLI/CLI.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "../cross_batch/common.hpp"  // cbx::progress (the progress line with rate and ETA)
#include "crossbatch/pardec/lora_strategies.hpp"
#include "crossbatch/pardec/scoring.hpp"
#include "crossbatch/train/lora_trainer.hpp"
#include "crossbatch/train/method_checkpoint.hpp"
#include "crossbatch/train/qa_examples.hpp"
#include "run_on_device.hpp"
#if CROSSBATCH_WITH_CUDA
#include "crossbatch/train/cuda/backward_ops.cuh"  // lora_decoder, mixer backward and head ops on CUDA
#endif

using namespace crossbatch;
using json = nlohmann::json;

namespace {

struct options {
  std::string dataset = "squad", data, eval_data, model = "models/smollm2-135m-instruct",
              save_dir = "outputs/checkpoints", methods = "baseline,crossbatch,lora_lmhead,lora_crossbatch",
              json_out, device = "cpu", dtype = "float32", projection = "continue",
              lora_targets = "q,k,v,o,gate,up,down";
  int max_samples = 0, eval_samples = 0, val_samples = 0, min_questions = 1, max_questions = 5, epochs = 1,
      batch_size = 8, threads = 0, mix_layer = -1, num_heads = 8, lora_rank = 16, max_new_tokens = 32;
  float lr = 1e-4f, min_lr = 1e-6f, weight_decay = 0.01f, max_grad_norm = 1.0f, lora_alpha = 32,
        lora_dropout = 0.05f;
  std::uint64_t seed = 13;
  bool force = false, use_gate = false, freeze_base_model = false, quiet = false, no_generate = false;
};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');)
    if (!x.empty()) out.push_back(x);
  return out;
}

std::string model_name(const std::string& dir) {
  auto p = std::filesystem::path(dir);
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

// EM / F1 / lenient of greedy answers of `strategy` over `groups` (percent).
template <class T, class D>
int run_training(const options& o, context<D>& ctx, const char* device_name);

// The history so far (written after every method, so that a run stopped early keeps its results).
void write_history(const std::string& path, const json& history) {
  if (path.empty()) return;
  std::filesystem::path p(path);
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
  std::ofstream f(path);
  f << history.dump(2) << "\n";
  if (!f) throw io_error(path + ": write failed");
}

template <class T, class D>
json generation_scores(pardec::trained_strategy<T, D>& strategy, const std::vector<pardec::question_group>& groups,
                       const qa_tokenizer& qt, int max_new_tokens, const std::string& label, bool quiet,
                       json* answers_out = nullptr) {
  pardec::strategy_totals totals;
  pardec::strategy_options so;
  so.max_new_tokens = max_new_tokens;
  cbx::progress bar(label, groups.size(), "groups");
  long generated = 0;
  for (std::size_t gi = 0; gi < groups.size(); ++gi) {
    const auto& g = groups[gi];
    so.prompt = qt.style(g);
    const auto r = strategy.run(g, so);
    std::vector<pardec::metric_values> per;
    for (std::size_t k = 0; k < g.questions.size(); ++k) {
      per.push_back(pardec::score_question(g.questions[k], r.answers[k], g.style));
      if (answers_out) (*answers_out)[g.questions[k].id] = r.answers[k].text;
    }
    totals.add_group(per, r.prompt_tokens, r.generated_tokens, r.latency, r.batches);
    generated += r.generated_tokens;
    if (!quiet) bar.update(gi + 1);
  }
  return {{"em", 100 * totals.metric("strict_acc")},
          {"f1", 100 * totals.metric("f1")},
          {"lenient", 100 * totals.metric("lenient_acc")},
          {"questions", totals.questions},
          {"generated_tokens", generated},
          {"seconds", bar.elapsed()}};
}

template <class T, class D>
int run(const options& o, context<D>& ctx, const char* device_name) {
#ifdef CROSSBATCH_TRAIN_FLOAT32_ONLY  // a faster build (tools/device/methods.sh): float32 only
  constexpr bool built = std::is_same_v<T, float>;
#else
  constexpr bool built = std::is_same_v<T, float> || std::is_same_v<T, bfloat16>;
#endif
  if constexpr (std::is_same_v<D, cpu> && !std::is_same_v<T, float>) {
    throw value_error(std::string("--dtype ") + dtype_traits<T>::name +
                      ": training on the CPU runs in float32 (bfloat16 weights on CUDA only)");
  } else if constexpr (!built) {
    throw value_error(std::string("--dtype ") + dtype_traits<T>::name +
                      ": not built for training (float32, and bfloat16 on CUDA)");
  } else {
    return run_training<T, D>(o, ctx, device_name);
  }
}

template <class T, class D>
int run_training(const options& o, context<D>& ctx, const char* device_name) {
  namespace fs = std::filesystem;
  require(!o.data.empty(), "--data: the training file is required");
  const auto model = decoder_model<T, D>::load(o.model);
  const auto& mc = model.config;
  const auto qt = qa_tokenizer::from_model_dir(o.model, o.dataset == "squad");

  // Groups: training (and validation carved from its end) from --data, test from --eval-data.
  pardec::dataset_request req;
  req.name = o.dataset;
  req.path = o.data;
  req.grouping = {0, o.min_questions, o.max_questions, o.seed, true};
  auto pool = read_training_groups(req);
  require(!pool.empty(), o.data + ": no group with at least --min-questions questions");
  std::vector<pardec::question_group> val;
  if (o.val_samples > 0) {
    require(int(pool.size()) > o.val_samples,
            "--val-samples " + std::to_string(o.val_samples) + " leaves no training group of " +
                std::to_string(pool.size()));
    val.assign(pool.end() - o.val_samples, pool.end());
    pool.resize(pool.size() - std::size_t(o.val_samples));
  }
  if (o.max_samples > 0 && int(pool.size()) > o.max_samples) pool.resize(std::size_t(o.max_samples));
  std::vector<pardec::question_group> test;
  if (!o.eval_data.empty()) {
    req.path = o.eval_data;
    test = read_training_groups(req);
    if (o.eval_samples > 0 && int(test.size()) > o.eval_samples) test.resize(std::size_t(o.eval_samples));
  }
  const auto train_ex = qt.examples(pool), val_ex = qt.examples(val), test_ex = qt.examples(test);
  long train_tokens = 0;
  for (const auto& e : train_ex) train_tokens += long(e.prompt.size() + e.target.size() - 1);
  std::cerr << "train_cross_batch: " << pool.size() << " training groups (" << train_ex.size() << " questions, "
            << train_tokens << " tokens), " << val.size() << " validation, " << test.size()
            << " test groups; model " << o.model << " on " << device_name << " (" << dtype_traits<T>::name
            << ")\n";

  method_options base;
  base.freeze_base_model = o.freeze_base_model;
  base.use_gate = o.use_gate;
  base.mix_layer = o.mix_layer;
  base.projection = mix_projection_from_name(o.projection);
  base.num_heads = o.num_heads;
  base.mixer_init_values = reference_mixer_init();
  base.lora.rank = o.lora_rank;
  base.lora.alpha = o.lora_alpha;
  base.lora.dropout = o.lora_dropout;
  base.lora.targets = split_list(o.lora_targets);
  base.epochs = o.epochs;
  base.batch_size = o.batch_size;
  base.lr = o.lr;
  base.min_lr = o.min_lr;
  base.adam.weight_decay = o.weight_decay;
  base.adam.max_grad_norm = o.max_grad_norm;
  base.seed = o.seed;

  json config = {{"model", o.model},        {"dataset", o.dataset},         {"data", o.data},
                 {"eval_data", o.eval_data}, {"max_samples", o.max_samples}, {"eval_samples", o.eval_samples},
                 {"val_samples", o.val_samples}, {"min_questions", o.min_questions},
                 {"max_questions", o.max_questions}, {"epochs", o.epochs}, {"batch_size", o.batch_size},
                 {"lr", o.lr}, {"min_lr", o.min_lr}, {"weight_decay", o.weight_decay},
                 {"max_grad_norm", o.max_grad_norm}, {"use_gate", o.use_gate},
                 {"freeze_base_model", o.freeze_base_model}, {"mix_layer", o.mix_layer},
                 {"projection", o.projection}, {"num_heads", o.num_heads},
                 {"lora", {{"rank", o.lora_rank}, {"alpha", o.lora_alpha}, {"dropout", o.lora_dropout},
                           {"targets", split_list(o.lora_targets)}}},
                 {"seed", o.seed}, {"device", device_name}, {"dtype", dtype_traits<T>::name},
                 {"max_new_tokens", o.max_new_tokens}, {"train_groups", pool.size()},
                 {"train_questions", train_ex.size()}, {"train_tokens", train_tokens},
                 {"val_groups", val.size()}, {"val_questions", val_ex.size()}, {"test_groups", test.size()},
                 {"test_questions", test_ex.size()}};
  json history = {{"config", config}, {"methods", json::object()}};

  // The frozen model with its own head (losses, and greedy answers of the batch strategy).
  {
    method_options f = base;
    f.method = train_method::baseline;
    method_trainer<T, D> frozen(ctx, model, f);
    json fj;
    for (auto [name, ex] : {std::pair{"val", &val_ex}, std::pair{"test", &test_ex}})
      if (!ex->empty()) fj[name]["loss"] = frozen.evaluate(*ex).loss();
    if (!o.no_generate) {
      pardec::trained_strategy<T, D> s(ctx, o.model, "frozen", cross_batch_checkpoint{}, nullptr);
      if (!val.empty()) fj["val"].update(generation_scores(s, val, qt, o.max_new_tokens, "frozen val", o.quiet));
      if (!test.empty()) fj["test"].update(generation_scores(s, test, qt, o.max_new_tokens, "frozen test", o.quiet));
    }
    history["frozen"] = fj;
    write_history(o.json_out, history);
    std::cerr << "frozen model: " << fj.dump() << "\n";
  }

  for (const auto& name : split_list(o.methods)) {
    method_options mo = base;
    mo.method = train_method_from_name(name);
    const std::string dir = o.save_dir + "/" + model_name(o.model) + "_" + name;
    if (fs::exists(dir + "/checkpoint.json") && !o.force) {
      std::cerr << name << ": " << dir << " exists, not retrained (--force retrains)\n";
      history["methods"][name] = {{"checkpoint", dir}, {"skipped", "exists"}};
      continue;
    }
    if (o.freeze_base_model && !has_mixer(mo.method)) {
      std::cerr << name << ": skipped: --freeze-base-model trains the mixer alone and " << name
                << " has none\n";
      history["methods"][name] = {{"skipped", "freeze-base-model: no mixer"}};
      continue;
    }
    method_trainer<T, D> tr(ctx, model, mo);
    json mj = {{"checkpoint", dir}, {"epochs", json::array()}};
    long tokens_seen = 0;
    double seconds = 0;
    for (int e = 0; e < o.epochs; ++e) {
      std::optional<cbx::progress> bar;
      const auto s = tr.train_epoch(train_ex, e, [&](int bi, int nb, const qa_losses& run) {
        if (o.quiet) return;
        if (!bar) bar.emplace(name + " epoch " + std::to_string(e + 1), std::size_t(nb), "batches");
        char extra[64];
        std::snprintf(extra, sizeof extra, " loss %.4f", run.loss());
        bar->update(std::size_t(bi + 1), extra);
      });
      tokens_seen += train_tokens;
      seconds += s.seconds;
      json ej = {{"epoch", e + 1}, {"loss", s.loss()}, {"grad_norm", s.grad_norm()}, {"seconds", s.seconds},
                 {"answer_tokens", s.tokens}, {"tokens_per_second", s.seconds > 0 ? train_tokens / s.seconds : 0}};
      if (!val_ex.empty()) ej["val_loss"] = tr.evaluate(val_ex).loss();
      mj["epochs"].push_back(ej);
      std::cerr << name << " epoch " << e + 1 << ": " << ej.dump() << "\n";
    }
    mj["train_seconds"] = seconds;
    mj["tokens_per_second"] = seconds > 0 ? tokens_seen / seconds : 0;
    for (auto [split, ex] : {std::pair{"val", &val_ex}, std::pair{"test", &test_ex}}) {
      if (ex->empty()) continue;
      mj[split]["loss"] = tr.evaluate(*ex).loss();
      if (has_mixer(mo.method)) {
        mj[split]["loss_without_mixer"] = tr.evaluate(*ex, false, false).loss();
        const auto c = tr.evaluate(*ex, true);
        mj[split]["loss_control"] = c.loss();
        mj[split]["control_same_group_pairs"] = c.control_same_pairs;
      }
    }
    auto parts = tr.parts();
    const json info = {{"config", config}, {"epochs", mj["epochs"]}};
    save_method_checkpoint<D>(dir, name, parts, has_lora(mo.method) ? &tr.adapters() : nullptr, info);
    std::cerr << name << ": saved " << dir << "\n";
    if (!o.no_generate) {
      pardec::trained_strategy<T, D> s(ctx, o.model, name, parts, has_lora(mo.method) ? &tr.adapters() : nullptr);
      json answers = json::object();
      if (!val.empty()) mj["val"].update(generation_scores(s, val, qt, o.max_new_tokens, name + " val", o.quiet));
      if (!test.empty())
        mj["test"].update(generation_scores(s, test, qt, o.max_new_tokens, name + " test", o.quiet, &answers));
      mj["test_answers"] = answers;
    }
    history["methods"][name] = mj;
    write_history(o.json_out, history);
    std::printf("| %s | %s | %s |\n", name.c_str(),
                mj.contains("val") ? mj["val"].dump().c_str() : "-", mj.contains("test") ? mj["test"].dump().c_str() : "-");
    std::fflush(stdout);
  }
  write_history(o.json_out, history);
  if (!o.json_out.empty()) std::cerr << "wrote " << o.json_out << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app("Training of the reference's four methods (baseline, crossbatch, lora_lmhead, lora_crossbatch)");
  app.add_option("--dataset", o.dataset, "squad, hotpot, quac, drop, quality, cmb, triviaqa (the data file's format)");
  app.add_option("--data", o.data, "training data file (validation groups are carved from its end)")->required();
  app.add_option("--eval-data", o.eval_data, "test data file (reported once per method)");
  app.add_option("--model,--model-name", o.model, "model directory (config.json, tokenizer.json, npy weights)");
  app.add_option("--max-samples", o.max_samples, "training groups (contexts) at most (0: all)")->check(CLI::Range(0, 100000000));
  app.add_option("--eval-samples", o.eval_samples, "test groups at most (0: all)")->check(CLI::Range(0, 100000000));
  app.add_option("--val-samples", o.val_samples, "validation groups taken from the end of the training file")
      ->check(CLI::Range(0, 100000000));
  app.add_option("--min-questions", o.min_questions, "questions per group at least")->check(CLI::Range(1, 1000));
  app.add_option("--max-questions", o.max_questions, "questions per group at most")->check(CLI::Range(1, 1000));
  app.add_option("--epochs", o.epochs, "training epochs")->check(CLI::Range(1, 100000));
  app.add_option("--batch-size", o.batch_size, "groups (contexts) per batch")->check(CLI::Range(1, 100000));
  app.add_option("--lr", o.lr, "peak learning rate (AdamW), cosine decay to --min-lr")->check(CLI::Range(0.0f, 10.0f));
  app.add_option("--min-lr", o.min_lr, "learning rate at the end of the cosine decay");
  app.add_option("--weight-decay", o.weight_decay, "AdamW weight decay");
  app.add_option("--max-grad-norm", o.max_grad_norm, "gradient clipping (global norm; <= 0: none)");
  app.add_option("--save-dir", o.save_dir, "checkpoints go to <save-dir>/<model>_<method>/");
  app.add_flag("--force", o.force, "retrain methods whose checkpoint exists");
  app.add_flag("--use-gate", o.use_gate, "question-aware gate instead of the scalar scale");
  app.add_flag("--freeze-base-model", o.freeze_base_model,
               "train the cross-batch mixer alone (adapters and head stay as they are)");
  app.add_option("--methods", o.methods, "comma list of baseline, crossbatch, lora_lmhead, lora_crossbatch");
  app.add_option("--mix-layer", o.mix_layer, "hidden_states index the mixer acts on (-1: final-normed output)");
  app.add_option("--projection", o.projection, "at an intermediate mix layer: continue, project or project_raw");
  app.add_option("--num-heads", o.num_heads, "heads of the cross-batch attention");
  app.add_option("--lora-rank", o.lora_rank, "LoRA rank r")->check(CLI::Range(1, 4096));
  app.add_option("--lora-alpha", o.lora_alpha, "LoRA alpha (scale = alpha / r)");
  app.add_option("--lora-dropout", o.lora_dropout, "LoRA dropout on the adapters' input")->check(CLI::Range(0.0f, 0.99f));
  app.add_option("--lora-targets", o.lora_targets, "comma list of modules (q,k,v,o,gate,up,down or HF names)");
  app.add_option("--max-new-tokens", o.max_new_tokens, "tokens per answer in the evaluation")->check(CLI::Range(1, 100000));
  app.add_flag("--no-generate", o.no_generate, "losses only (no greedy answers, no EM / F1)");
  app.add_option("--json-out", o.json_out, "JSON file with the configuration, history and results");
  app.add_option("--seed", o.seed, "grouping, initialisation, batch order and dropout seed");
  app.add_option("--device", o.device, "auto, cpu or cuda");
  app.add_option("--dtype", o.dtype, "model weights: float32, float16 or bfloat16 (trained parts: float32)");
  app.add_option("--threads", o.threads, "CPU threads (0: all cores)");
  app.add_flag("--quiet", o.quiet, "no progress line");
  CLI11_PARSE(app, argc, argv);
  try {
    for (const auto& m : split_list(o.methods)) train_method_from_name(m);
    return examples::run_on_device(o.device, o.dtype, o.threads, [&]<class T, class D>(context<D>& ctx, const char* name) {
      return run<T, D>(o, ctx, name);
    });
  } catch (const std::exception& e) {
    std::cerr << "train_cross_batch: error: " << e.what() << "\n";
    return 1;
  }
}
