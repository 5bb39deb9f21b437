// Evaluation of cross-batch generation on SQuAD-format files (the reference's main.py): standard
// batched generation vs cross-batch generation, untrained or from a checkpoint, EM/F1 per method,
// batches formed from questions of the same context. All methods of a run share one prefill per
// batch (batch_session::fork) unless a mixer continues through the layers from an intermediate one.
//   cross_batch_eval --data stories_split_test.json --run_comparison --checkpoint ckpt/crossbatch
// Writes a JSON file of results and predictions (--output) and prints a table.
#include <CLI/CLI.hpp>
#include <fstream>
#include <map>
#include <optional>

#include "common.hpp"
#include "crossbatch/generate/cross_batch.hpp"
#include "crossbatch/mix/mixer.hpp"
#include "crossbatch/train/checkpoint.hpp"

using namespace crossbatch;
using cbx::json;

namespace {

struct method {
  std::string name;
  std::optional<cross_batch_mixer<float>> mixer;  // none: no mixing
  tensor<float> head;                             // empty: the model's own head
  int mix_layer = -1, k = 0;                      // as given, and resolved to [0, L]
  mix_projection projection = mix_projection::project;
  std::map<std::string, std::string> predictions;
  std::vector<double> em, f1, lenient;
  double seconds = 0;
  long tokens = 0;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Cross-batch generation: evaluation on SQuAD-format data (EM/F1)");
  std::string model_dir = "models/smollm2-135m-instruct", data, baseline_checkpoint, output,
              mix_method = "attention", combine = "scale", projection = "project", scope = "group";
  int mix_layer = -1, batch_size = 4, max_new_tokens = 32, num_heads = 8, threads = 0;
  std::size_t max_samples = 100;
  std::uint64_t seed = 0;
  std::vector<std::string> checkpoints;
  bool run_comparison = false, also_untrained = false, quiet = false;
  app.add_option("--model_name,--model", model_dir,
                 "model directory (config.json, tokenizer.json, npy weights)");
  app.add_option(
         "--data", data,
         "SQuAD-format JSON file (split-context files: each question sees its visible part)")
      ->required();
  app.add_option("--mix_method", mix_method, "attention or mixer (embedding mixer)");
  app.add_option("--combine", combine, "alpha, scale or gate");
  app.add_option("--mix_layer", mix_layer,
                 "hidden_states index to mix (-1 = last, after the final norm)");
  app.add_option("--projection", projection,
                 "intermediate layers: project, project_raw or continue");
  app.add_option("--num_heads", num_heads, "heads of the cross-batch attention");
  app.add_option("--batch_size", batch_size, "questions per batch (whole contexts are packed)");
  app.add_option("--max_samples", max_samples, "questions to evaluate (whole contexts; 0 = all)");
  app.add_option("--max_new_tokens", max_new_tokens, "tokens generated per question at most");
  app.add_flag("--run_comparison", run_comparison, "also evaluate standard generation");
  app.add_option(
      "--checkpoint", checkpoints,
      "trained cross-batch checkpoint directories (mixer and maybe LM head); several allowed");
  app.add_option("--baseline_checkpoint", baseline_checkpoint,
                 "trained LM-head-only checkpoint: adds that method");
  app.add_flag("--also_untrained", also_untrained,
               "with --checkpoint: also evaluate a fresh (untrained) mixer");
  app.add_option("--mix_scope", scope,
                 "group: only questions of one context mix; batch: the whole batch mixes");
  app.add_option("--seed", seed, "seed of the untrained mixer");
  app.add_option("--threads", threads, "CPU threads (0 = all cores)");
  app.add_option("--output", output, "JSON file for results and predictions");
  app.add_flag("--quiet", quiet, "no progress line");
  CLI11_PARSE(app, argc, argv);

  try {
    context<cpu> ctx = cpu_context(threads);
    const auto model = decoder_model<float>::load(model_dir);
    const auto& mc = model.config;
    const cbx::prompter prompt(model_dir);
    const auto examples = cbx::load_examples(data, max_samples);
    require(!examples.empty(), data + ": no questions");
    require(scope == "group" || scope == "batch", "--mix_scope must be group or batch");

    // Mixers: the checkpoints' (each with its own layer and projection) and an untrained one with
    // the first checkpoint's configuration, or the flags' when there is no checkpoint.
    std::vector<cross_batch_checkpoint> cks;
    for (const auto& dir : checkpoints) {
      cks.push_back(load_checkpoint(dir, &mc));
      require(cks.back().mixer.has_value(),
              dir + ": a " + cks.back().method +
                  " checkpoint has no mixer (use --baseline_checkpoint)");
    }
    mixer_config cfg;
    if (!cks.empty()) {
      cfg = cks.front().mixer->config;
      mix_layer = cks.front().mix_layer;
      projection = to_string(cks.front().projection);
    } else {
      cfg.kind = mixer_kind_from_name(mix_method);
      cfg.combine = combine_mode_from_name(combine);
      cfg.hidden_size = mc.hidden_size;
      cfg.num_heads = num_heads;
    }
    const mix_projection proj = mix_projection_from_name(projection);
    const int L = mc.num_layers, k = resolve_mix_layer(mix_layer, L);

    std::vector<method> methods;
    auto add = [&](std::string name, std::optional<cross_batch_mixer<float>> m, tensor<float> head,
                   int layer, mix_projection pr) {
      method x;
      x.name = std::move(name);
      x.mixer = std::move(m);
      x.head = std::move(head);
      x.mix_layer = x.mixer ? layer : -1;
      x.k = resolve_mix_layer(x.mix_layer, L);
      x.projection = x.mixer ? pr : mix_projection::project;
      methods.push_back(std::move(x));
    };
    if (run_comparison || !baseline_checkpoint.empty()) add("standard", std::nullopt, {}, -1, proj);
    if (!baseline_checkpoint.empty()) {
      auto b = load_checkpoint(baseline_checkpoint, &mc);
      require(b.has_head(), baseline_checkpoint + ": no trained LM head");
      add("standard + trained head (baseline)", std::nullopt, std::move(b.lm_head), -1, proj);
    }
    if (cks.empty() || also_untrained)
      add("cross-batch (untrained)", cross_batch_mixer<float>(init_mixer<float>(cfg, seed)), {},
          mix_layer, proj);
    for (auto& ck : cks) {
      const auto& c = ck.mixer->config;
      const std::string name = std::string("cross-batch (trained ") + to_string(c.kind) + "/" +
                               to_string(c.combine) + " @" +
                               std::to_string(resolve_mix_layer(ck.mix_layer, L)) +
                               (ck.has_head() ? ", mixer + head)" : ", mixer)");
      add(name, cross_batch_mixer<float>(ck.mixer->cast<float>()), std::move(ck.lm_head),
          ck.mix_layer, ck.projection);
    }
    // One prefill per distinct layer whose states the methods mix; a mixer that continues through
    // the layers from an intermediate one cannot share a prefill.
    auto shares = [&](const method& m) {
      return !(m.projection == mix_projection::continue_layers && m.k < L);
    };
    std::vector<int> layers;
    for (const auto& m : methods)
      if (shares(m) && (m.mixer || layers.empty()) &&
          std::find(layers.begin(), layers.end(), m.k) == layers.end())
        layers.push_back(m.k);
    const bool shared_prefill = std::all_of(methods.begin(), methods.end(), shares);

    std::cerr << "model " << model_dir << " (" << mc.num_layers << " layers, C=" << mc.hidden_size
              << "), " << examples.size() << " questions from " << data << ", batch " << batch_size
              << ", mixer " << to_string(cfg.kind) << "/" << to_string(cfg.combine) << " at layer "
              << k << " (" << to_string(proj) << "), " << methods.size() << " method(s), "
              << ctx.threads << " thread(s)\n";

    const auto batches = cbx::context_batches(examples, batch_size);
    cbx::progress bar("eval", examples.size());
    double prefill_seconds = 0;
    std::size_t done = 0;
    for (const auto& batch : batches) {
      std::vector<std::vector<int>> prompts;
      std::vector<int> groups;
      for (std::size_t i : batch) {
        prompts.push_back(prompt.prompt(examples[i]));
        groups.push_back(scope == "group" ? examples[i].group : 0);
      }
      cross_batch_options opt;
      opt.max_new_tokens = max_new_tokens;
      opt.eos_ids = {prompt.end_id};
      for (int e : mc.eos_token_ids) opt.eos_ids.push_back(e);
      opt.pad_id = prompt.end_id;
      opt.groups = groups;
      opt.mix_layer = mix_layer;
      opt.projection = proj;

      const auto t0 = std::chrono::steady_clock::now();
      const index_t B = index_t(batch.size());
      std::vector<batch_session<float>> bases;
      std::vector<tensor<float>> states;
      for (int layer : layers) {
        bases.emplace_back(ctx, model, prompts, max_new_tokens);
        states.emplace_back(shape_t{B, mc.hidden_size});
        auto& base = bases.back();
        base.prefill_until(layer);
        if (layer < L)
          copy_rows(ctx, states.back().view(), tensor_view<const float>(base.newest_residual()));
        base.resume(false);
        if (layer == L) copy_rows(ctx, states.back().view(), base.hidden());
      }
      prefill_seconds +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      for (auto& m : methods) {
        const auto t1 = std::chrono::steady_clock::now();
        const tensor_view<const float> head =
            m.head.empty() ? tensor_view<const float>{} : m.head.view();
        cross_batch_options o = opt;
        o.mix_layer = m.mix_layer;
        o.projection = m.projection;
        generation_result r;
        const auto at = std::find(layers.begin(), layers.end(), m.k);
        if (!m.mixer) {
          identity_mixer id;
          auto s = bases.front().fork();
          r = cross_batch_decode(ctx, s, s.hidden(), id, greedy{}, o, head);
        } else if (shares(m) && at != layers.end()) {
          const std::size_t i = std::size_t(at - layers.begin());
          auto s = bases[i].fork();
          tensor<float> mixed({B, mc.hidden_size}), normed({B, mc.hidden_size});
          const auto first =
              mix_and_project(ctx, model, *m.mixer, tensor_view<const float>(states[i].view()), m.k,
                              m.projection, groups, mixed, normed);
          r = cross_batch_decode(ctx, s, first, *m.mixer, greedy{}, o, head);
        } else {
          r = cross_batch_generate(ctx, model, prompts, *m.mixer, greedy{}, o, head);
        }
        m.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
        for (std::size_t j = 0; j < batch.size(); ++j) {
          const auto& e = examples[batch[j]];
          auto toks = r.tokens[j];
          if (r.stopped_at_eos[j]) toks.pop_back();
          m.tokens += long(r.tokens[j].size());
          const std::string answer = cbx::extract_answer(prompt.decode(toks));
          m.predictions[e.id] = answer;
          const auto s = score_answer(answer, e.answers);
          m.em.push_back(s.exact_match);
          m.f1.push_back(s.f1);
          m.lenient.push_back(s.lenient);
        }
      }
      done += batch.size();
      if (!quiet) {
        char extra[96];
        std::snprintf(extra, sizeof extra, " (%s EM %.1f F1 %.1f)", methods.back().name.c_str(),
                      mean_percent(methods.back().em), mean_percent(methods.back().f1));
        bar.update(done, extra);
      }
    }

    json out = {{"model", model_dir},
                {"data", data},
                {"questions", examples.size()},
                {"batch_size", batch_size},
                {"max_new_tokens", max_new_tokens},
                {"mix_scope", scope},
                {"mixer", cfg.to_json()},
                {"mix_layer", mix_layer},
                {"mix_layer_resolved", k},
                {"projection", to_string(proj)},
                {"checkpoints", checkpoints},
                {"baseline_checkpoint", baseline_checkpoint},
                {"threads", ctx.threads},
                {"prefill_seconds", prefill_seconds},
                {"prompt_version", cbx::prompt_version},
                {"methods", json::array()},
                {"predictions", json::object()}};
    std::printf("\n| Method | Exact Match | F1 Score |\n|--------|-------------|----------|\n");
    for (const auto& m : methods) {
      std::printf("| %s | %.2f | %.2f |\n", m.name.c_str(), mean_percent(m.em), mean_percent(m.f1));
      out["methods"].push_back({{"name", m.name},
                                {"mix_layer", m.k},
                                {"projection", to_string(m.projection)},
                                {"exact_match", mean_percent(m.em)},
                                {"f1", mean_percent(m.f1)},
                                {"lenient", mean_percent(m.lenient)},
                                {"questions", m.em.size()},
                                {"decode_seconds", m.seconds},
                                {"generated_tokens", m.tokens}});
      out["predictions"][m.name] = m.predictions;
    }
    std::printf(
        "\n%zu questions in %zu batches, %.1f s (prefill %.1f s for %zu layer(s), shared by all "
        "methods: %s)\n",
        examples.size(), batches.size(), bar.elapsed(), prefill_seconds, layers.size(),
        shared_prefill ? "yes" : "no");
    if (!output.empty()) {
      std::filesystem::path p(output);
      if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
      std::ofstream f(output);
      f << out.dump(2) << "\n";
      if (!f) throw io_error(output + ": write failed");
      std::cerr << "wrote " << output << "\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "cross_batch_eval: error: " << e.what() << "\n";
    return 1;
  }
}
