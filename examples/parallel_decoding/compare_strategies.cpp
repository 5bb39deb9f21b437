// Parallel decoding strategies over groups of related questions (the reference's
// scripts/compare_strategies.py): reads a data set in its original format, groups its questions,
// answers every group with each strategy (all_in_one, sequential, batch, collab_llm, collab_bert,
// collab_hidden, finetuned) on the local engine, scores the answers, and writes the reference's
// results layout: <json-out>/config.json and <json-out>/full_results.json ({config, contexts:
// [{context, questions_text, gold_answers, strategies: {name: {answers, metrics, prompt_tokens,
// generated_tokens, latency, batches, dag_edges?}}}], summary, by_group_size}); prints a summary
// table per strategy and accuracy by group size.
//   compare_strategies --dataset squad --data data/pardec/squad_groups.json \
//     --model-name models/smollm2-135m-instruct --context-count 10 --json-out out/pardec
#include <CLI/CLI.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>

#include "../cross_batch/common.hpp"  // cbx::progress (the progress line with rate and ETA)
#include "crossbatch/pardec/api_generator.hpp"
#include "crossbatch/pardec/bert_questions.hpp"
#include "crossbatch/pardec/call_log.hpp"
#include "crossbatch/pardec/dataset.hpp"
#include "crossbatch/pardec/lora_strategies.hpp"  // lora_lmhead, lora_crossbatch (train_cross_batch)
#include "crossbatch/pardec/llm_judge.hpp"
#include "crossbatch/pardec/scoring.hpp"
#include "crossbatch/pardec/strategies.hpp"
#include "crossbatch/train/checkpoint.hpp"
#include "run_on_device.hpp"
#if CROSSBATCH_PARDEC_HTTPLIB
#include <httplib.h>
#endif

using namespace crossbatch;
using namespace crossbatch::pardec;
using json = nlohmann::json;

namespace {

const std::vector<std::string> known_strategies = {
    "all_in_one", "sequential", "batch", "collab_llm", "collab_bert", "collab_hidden", "finetuned",
    "lora_lmhead", "lora_crossbatch"};

struct options {
  std::string dataset = "squad", data, model = "models/smollm2-135m-instruct",
              strategies = "all_in_one,sequential,batch,collab_llm";
  std::string json_out, split = "validation", cmb_subset = "CMB-Clin", bert_model, embedding_model;
  std::string collab_hidden_checkpoint, collab_hidden_mix_method, baseline_checkpoint;
  std::string lora_lmhead_checkpoint, lora_crossbatch_checkpoint;
  std::string device = "cpu", dtype = "float32";
  int context_count = 10, min_questions = 3, max_questions = 5, max_new_tokens = 96, threads = 0;
  int collab_hidden_mix_layer = 1000;  // 1000: the checkpoint's
  std::uint64_t seed = 13;
  bool no_llm_deps = false, quality_hard_only = false, quiet = false, use_api = false;
  std::string api_base = "https://openrouter.ai/api/v1", api_model,
              api_key_env = "OPENROUTER_API_KEY";
  double api_timeout = 120;
  int api_retries = 3;
  // --judge: the LLM judge of long-form answers, through the API client.
  bool judge = false;
  std::string judge_api_base, judge_model, judge_api_key_env = "OPENROUTER_API_KEY";
  int judge_max_new_tokens = 128;
  std::string dump_calls;  // --dump-calls FILE: every generation call, for bench/pardec
  int max_dependencies = 3, dependency_max_new_tokens = 512;
  double min_confidence = 0.45, cost_weight = 0.0, bert_attention_threshold = 0.02,
         similarity_threshold = 0.5;
};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i <= s.size()) {
    const std::size_t j = std::min(s.find(',', i), s.size());
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

json edges_json(const std::vector<dependency_edge>& edges) {
  json a = json::array();
  for (const auto& e : edges)
    a.push_back({{"from", question_label(e.parent)},
                 {"to", question_label(e.child)},
                 {"confidence", e.confidence},
                 {"reason", e.reason}});
  return a;
}

// cpp-httplib as the API client's transport: one POST per call, connect/read/write timeouts.
http_post_fn httplib_transport() {
#if CROSSBATCH_PARDEC_HTTPLIB
  return [](const std::string& url, const std::string& body,
            const std::map<std::string, std::string>& headers, double timeout) -> http_reply {
    const auto scheme_end = url.find("://");
    const auto path_start = url.find('/', scheme_end == std::string::npos ? 0 : scheme_end + 3);
    const std::string origin = url.substr(0, path_start),
                      path = path_start == std::string::npos ? "/" : url.substr(path_start);
    httplib::Client client(origin);
    if (!client.is_valid())
      return {0, "", "cannot make a client for " + origin + " (https needs OpenSSL support)"};
    const auto secs = static_cast<time_t>(timeout);
    const auto usecs = static_cast<time_t>((timeout - double(secs)) * 1e6);
    client.set_connection_timeout(secs, usecs);
    client.set_read_timeout(secs, usecs);
    client.set_write_timeout(secs, usecs);
    httplib::Headers h;
    for (const auto& [k, v] : headers)
      if (k != "Content-Type") h.emplace(k, v);
    const auto res = client.Post(path, h, body, "application/json");
    if (!res) return {0, "", httplib::to_string(res.error())};
    return {res->status, res->body, ""};
  };
#else
  throw value_error(
      "--use-api: built without cpp-httplib (apt install libcpp-httplib-dev and reconfigure)");
#endif
}

// The headline metric of a style for the by-size table.
std::string headline(answer_style s) {
  switch (s) {
    case answer_style::multiple_choice:
      return "acc";
    case answer_style::long_form:
      return "rougeL";
    default:
      return "strict_acc";
  }
}

template <class T, class D>
int run(const options& o, context<D>& ctx, const char* device_name) {
  const auto strategies = split_list(o.strategies);
  for (const auto& s : strategies)
    require(
        std::find(known_strategies.begin(), known_strategies.end(), s) != known_strategies.end(),
        "--strategies: unknown strategy '" + s +
            "' (known: all_in_one, sequential, batch, collab_llm, "
            "collab_bert, collab_hidden, finetuned, lora_lmhead, lora_crossbatch)");
  require(!o.data.empty(), "--data: the data set file is required");
  std::optional<decoder_model<T, D>> model;
  std::optional<local_generator<T, D>> local;
  std::optional<api_generator> api;
  if (o.use_api) {
    for (const auto& s : strategies)
      require(
          s != "collab_hidden" && s != "finetuned" && s != "lora_lmhead" && s != "lora_crossbatch",
          "--use-api: " + s + " needs the model's hidden states or head (local inference only)");
    api_config cfg;
    cfg.base = o.api_base;
    cfg.model = o.api_model;
    cfg.api_key = api_key_from_env(o.api_key_env);
    cfg.timeout_seconds = o.api_timeout;
    cfg.max_retries = o.api_retries;
    api.emplace(cfg, httplib_transport());
  } else {
    model.emplace(decoder_model<T, D>::load(o.model));
    local.emplace(ctx, *model, text::tokenizer::from_file(o.model + "/tokenizer.json"),
                  text::chat_template::from_tokenizer_config(o.model));
  }
  chat_generator& gen =
      o.use_api ? static_cast<chat_generator&>(*api) : static_cast<chat_generator&>(*local);

  std::optional<api_generator> judge;
  if (o.judge) {
    api_config cfg;
    cfg.base = o.judge_api_base.empty() ? o.api_base : o.judge_api_base;
    cfg.model = o.judge_model;
    require(!cfg.model.empty(), "--judge needs --judge-model");
    cfg.api_key = api_key_from_env(o.judge_api_key_env);
    cfg.timeout_seconds = o.api_timeout;
    cfg.max_retries = o.api_retries;
    judge.emplace(cfg, httplib_transport());
  }
  require(o.dump_calls.empty() || !o.use_api,
          "--dump-calls: local inference only (the dump holds the local tokenizer's ids)");

  std::optional<bert_questions<float>> bert, embedder;
  context<cpu> host = cpu_context(o.threads);
  const bool wants_bert =
      std::find(strategies.begin(), strategies.end(), "collab_bert") != strategies.end();
  if (wants_bert) {
    require(!o.bert_model.empty(),
            "collab_bert needs --bert-model-name (a converted BERT directory)");
    bert.emplace(bert_questions<float>::load(o.bert_model));
  }
  dataset_request req;
  req.name = o.dataset;
  req.path = o.data;
  req.grouping = {o.context_count, o.min_questions, o.max_questions, o.seed, true};
  req.cmb_subset = o.cmb_subset;
  req.quality_hard_only = o.quality_hard_only;
  req.similarity_threshold = o.similarity_threshold;
  if (o.dataset == "triviaqa_sim") {
    require(!o.embedding_model.empty(),
            "triviaqa_sim needs --embedding-model (a converted all-MiniLM-L6-v2)");
    embedder.emplace(bert_questions<float>::load(o.embedding_model));
    req.embed = [&](const std::vector<std::string>& t) { return embedder->embed(host, t); };
  }
  const auto groups = read_dataset(req);
  require(!groups.empty(), o.data + ": no group has at least --min-questions questions");
  require(!o.judge || groups.front().style == answer_style::long_form,
          "--judge: the LLM judge rates long-form answers (CMB-Clin style); " + o.dataset +
              " has " + style_name(groups.front().style) + " answers");

  // collab_hidden / finetuned: checkpoints as examples/cross_batch's trainer writes them.
  std::optional<hidden_mixing<T, D>> collab_hidden, finetuned;
  auto device_head = [&](const tensor<float>& h) {
    tensor<T> t(h.shape());
    for (index_t i = 0; i < h.size(); ++i) t.data()[i] = static_cast<T>(h.data()[i]);
    return to_device<D>(t);
  };
  for (const auto& s : strategies) {
    if (s == "collab_hidden") {
      require(!o.collab_hidden_checkpoint.empty(),
              "collab_hidden needs --collab-hidden-checkpoint");
      auto ck = load_checkpoint(o.collab_hidden_checkpoint, &model->config);
      require(ck.mixer.has_value(),
              o.collab_hidden_checkpoint + ": a " + ck.method + " checkpoint has no mixer");
      if (!o.collab_hidden_mix_method.empty())
        require(mixer_kind_from_name(o.collab_hidden_mix_method) == ck.mixer->config.kind,
                "--collab-hidden-mix-method " + o.collab_hidden_mix_method +
                    " differs from the checkpoint's " + to_string(ck.mixer->config.kind));
      hidden_mixing<T, D> m;
      m.mixer.emplace(ck.mixer->template cast<T, D>());
      m.mix_layer = o.collab_hidden_mix_layer != 1000 ? o.collab_hidden_mix_layer : ck.mix_layer;
      resolve_mix_layer(m.mix_layer, model->config.num_layers);
      m.projection = ck.projection;
      if (ck.has_head()) m.lm_head = device_head(ck.lm_head);
      collab_hidden = std::move(m);
    }
    if (s == "finetuned") {
      require(!o.baseline_checkpoint.empty(), "finetuned needs --baseline-checkpoint");
      auto ck = load_checkpoint(o.baseline_checkpoint, &model->config);
      require(ck.has_head(), o.baseline_checkpoint + ": no trained LM head");
      hidden_mixing<T, D> m;
      m.lm_head = device_head(ck.lm_head);
      finetuned = std::move(m);
    }
  }
  // lora_lmhead / lora_crossbatch: train_cross_batch checkpoints (adapters merged into a copy).
  std::map<std::string, std::unique_ptr<trained_strategy<T, D>>> trained;
  for (const auto& s : strategies)
    if (s == "lora_lmhead" || s == "lora_crossbatch") {
      const auto& dir = s == "lora_lmhead" ? o.lora_lmhead_checkpoint : o.lora_crossbatch_checkpoint;
      require(!dir.empty(), s + " needs --" + (s == "lora_lmhead" ? "lora-lmhead" : "lora-crossbatch") + "-checkpoint");
      trained[s] = std::make_unique<trained_strategy<T, D>>(trained_strategy<T, D>::load(ctx, o.model, dir, s));
    }

  strategy_options sopt;
  sopt.max_new_tokens = o.max_new_tokens;
  sopt.no_llm_deps = o.no_llm_deps;
  sopt.dependency_max_new_tokens = o.dependency_max_new_tokens;
  sopt.selection.max_dependencies = o.max_dependencies;
  sopt.selection.min_confidence = o.min_confidence;
  sopt.selection.cost_weight = o.cost_weight;
  sopt.bert_attention_threshold = o.bert_attention_threshold;

  json config = {{"model", o.use_api ? o.api_model : o.model},
                 {"use_api", o.use_api},
                 {"api_base", o.use_api ? o.api_base : ""},
                 {"dataset", o.dataset},
                 {"data", o.data},
                 {"split", o.split},
                 {"context_count", o.context_count},
                 {"min_questions", o.min_questions},
                 {"max_questions", o.max_questions},
                 {"max_new_tokens", o.max_new_tokens},
                 {"seed", o.seed},
                 {"strategies", strategies},
                 {"no_llm_deps", o.no_llm_deps},
                 {"max_dependencies", o.max_dependencies},
                 {"dependency_max_new_tokens", o.dependency_max_new_tokens},
                 {"min_confidence", o.min_confidence},
                 {"cost_weight", o.cost_weight},
                 {"bert_model", o.bert_model},
                 {"bert_attention_threshold", o.bert_attention_threshold},
                 {"collab_hidden_checkpoint", o.collab_hidden_checkpoint},
                 {"baseline_checkpoint", o.baseline_checkpoint},
                 {"lora_lmhead_checkpoint", o.lora_lmhead_checkpoint},
                 {"lora_crossbatch_checkpoint", o.lora_crossbatch_checkpoint},
                 {"device", device_name},
                 {"dtype", dtype_traits<T>::name},
                 {"groups", groups.size()},
                 {"decoding", "greedy"},
                 {"threads", o.threads},
                 {"judge_model", o.judge ? o.judge_model : ""}};
  std::size_t total_q = 0;
  for (const auto& g : groups) total_q += g.questions.size();
  std::cerr << "compare_strategies: " << groups.size() << " groups (" << total_q
            << " questions) from " << o.data << ", model "
            << (o.use_api ? o.api_model + " at " + o.api_base : o.model) << " on "
            << (o.use_api ? "the API" : device_name) << ", strategies " << o.strategies << "\n";

  std::map<std::string, strategy_totals> totals;
  std::map<std::string, judge_totals> judged;
  recording_generator recorder(gen);
  json dump_groups = json::array();
  std::map<std::string, std::map<std::size_t, strategy_totals>> by_size;
  json contexts = json::array();
  cbx::progress bar("groups", groups.size(), "groups");
  for (std::size_t gi = 0; gi < groups.size(); ++gi) {
    const auto& g = groups[gi];
    sopt.prompt = {g.style, o.dataset == "squad"};
    json entry = {{"id", g.id},
                  {"context", g.context},
                  {"questions_text", json::array()},
                  {"gold_answers", json::array()},
                  {"strategies", json::object()}};
    for (std::size_t k = 0; k < g.questions.size(); ++k) {
      entry["questions_text"].push_back(question_text(g.questions[k]));
      entry["gold_answers"].push_back(g.questions[k].answers);
      if (!g.questions[k].context.empty())
        entry["question_contexts"][question_label(k)] = g.questions[k].context;
    }
    json dump_entry = {{"id", g.id}, {"questions", g.questions.size()}, {"strategies", json::object()}};
    for (const auto& s : strategies) {
      strategy_run r;
      recorder.clear();
      chat_generator& sgen = o.dump_calls.empty() ? gen : recorder;
      if (s == "batch")
        r = run_batch(sgen, g, sopt);
      else if (s == "all_in_one")
        r = run_all_in_one(sgen, g, sopt);
      else if (s == "sequential")
        r = run_sequential(sgen, g, sopt);
      else if (s == "collab_llm")
        r = run_collab_llm(sgen, g, sopt);
      else if (s == "collab_bert")
        r = run_collab_bert(
            sgen, g,
            [&](const std::vector<std::string>& q) { return bert->attention_scores(host, q); },
            sopt);
      else if (s == "collab_hidden")
        r = run_mixed(*local, g, *collab_hidden, s, sopt);
      else if (trained.count(s))
        r = trained[s]->run(g, sopt);
      else
        r = run_mixed(*local, g, *finetuned, s, sopt);
      std::vector<metric_values> per;
      json answers = json::object(), metrics = json::object(), raw = json::object();
      for (std::size_t k = 0; k < g.questions.size(); ++k) {
        per.push_back(score_question(g.questions[k], r.answers[k], g.style));
        answers[question_label(k)] = r.answers[k].text;
        raw[question_label(k)] = r.replies[k];
      }
      strategy_totals one;
      one.add_group(per, r.prompt_tokens, r.generated_tokens, r.latency, r.batches);
      for (const auto& [m, _] : one.metric_sum) metrics[m] = one.metric(m);
      json sj = {{"answers", answers},
                 {"raw_replies", raw},
                 {"metrics", metrics},
                 {"prompt_tokens", r.prompt_tokens},
                 {"generated_tokens", r.generated_tokens},
                 {"latency", r.latency},
                 {"batches", r.batches}};
      if (r.dag_edges) sj["dag_edges"] = edges_json(*r.dag_edges);
      if (!r.note.empty()) sj["note"] = r.note;
      if (!o.dump_calls.empty())
        dump_entry["strategies"][s] = {{"latency", r.latency}, {"calls", to_json(recorder.calls())}};
      if (judge) {
        std::vector<std::string> qs, refs, ans, replies;
        for (std::size_t k = 0; k < g.questions.size(); ++k) {
          qs.push_back(question_text(g.questions[k]));
          refs.push_back(g.questions[k].answers.at(0));
          ans.push_back(r.answers[k].text);
        }
        const auto scores =
            judge_answers(*judge, g.context, qs, refs, ans, o.judge_max_new_tokens, &replies);
        json jj = json::object();
        for (std::size_t k = 0; k < scores.size(); ++k) {
          jj[question_label(k)] = to_json(scores[k]);
          jj[question_label(k)]["reply"] = replies[k];
          judged[s].add(scores[k]);
        }
        sj["judge"] = jj;
      }
      entry["strategies"][s] = sj;
      totals[s].add_group(per, r.prompt_tokens, r.generated_tokens, r.latency, r.batches);
      by_size[s][g.questions.size()].add_group(per, r.prompt_tokens, r.generated_tokens, r.latency,
                                               r.batches);
    }
    contexts.push_back(std::move(entry));
    if (!o.dump_calls.empty()) dump_groups.push_back(std::move(dump_entry));
    if (!o.quiet) bar.update(gi + 1);
  }

  // Summary table.
  const answer_style style = groups.front().style;
  std::vector<std::string> cols;
  if (style == answer_style::multiple_choice)
    cols = {"acc"};
  else if (style == answer_style::long_form)
    cols = {"bleu4", "rouge1", "rouge2", "rougeL"};
  else
    cols = {"strict_acc", "f1", "lenient_acc"};
  std::printf("\n| Strategy |");
  for (const auto& c : cols)
    std::printf(" %s |", c == "strict_acc"    ? "EM"
                         : c == "lenient_acc" ? "Lenient"
                         : c == "f1"          ? "F1"
                                              : c.c_str());
  std::printf(" prompt tok | gen tok | latency s | batches |\n|---|");
  for (std::size_t i = 0; i < cols.size(); ++i) std::printf("---|");
  std::printf("---|---|---|---|\n");
  json summary = json::object();
  for (const auto& s : strategies) {
    const auto& t = totals[s];
    json j = t.to_json();
    if (judge) j["judge"] = judged[s].to_json();
    summary[s] = j;
    std::printf("| %s |", s.c_str());
    for (const auto& c : cols) std::printf(" %.3f |", t.metric(c));
    std::printf(" %.1f | %.1f | %.3f | %.2f |\n", double(j["avg_prompt_tokens"]),
                double(j["avg_generated_tokens"]), double(j["avg_latency"]),
                double(j["avg_batches"]));
  }
  // Accuracy by group size.
  std::set<std::size_t> sizes;
  for (const auto& g : groups) sizes.insert(g.questions.size());
  const std::string h = headline(style);
  std::printf("\n%s by group size (questions per group):\n| Strategy |", h.c_str());
  for (auto n : sizes) std::printf(" %zu |", n);
  std::printf("\n|---|");
  for (std::size_t i = 0; i < sizes.size(); ++i) std::printf("---|");
  std::printf("\n");
  json size_json = json::object();
  for (const auto& s : strategies) {
    std::printf("| %s |", s.c_str());
    for (auto n : sizes) {
      const auto& t = by_size[s][n];
      size_json[s][std::to_string(n)] = t.to_json();
      std::printf(" %.3f (%ld) |", t.metric(h), t.questions);
    }
    std::printf("\n");
  }
  if (judge) {
    std::printf("\nLLM judge (%s), mean 1-5 over the scored answers (scored / answers):\n| Strategy |",
                o.judge_model.c_str());
    for (const auto& c : judge_criteria()) std::printf(" %s |", c.c_str());
    std::printf("\n|---|---|---|---|---|\n");
    for (const auto& s : strategies) {
      const json j = judged[s].to_json();
      std::printf("| %s |", s.c_str());
      for (const auto& c : judge_criteria())
        if (j[c].is_null())
          std::printf(" - (0/%ld) |", long(j["answers"]));
        else
          std::printf(" %.2f (%ld/%ld) |", double(j[c]), long(j[c + "_scored"]), long(j["answers"]));
      std::printf("\n");
    }
  }
  if (!o.dump_calls.empty()) {
    namespace fs = std::filesystem;
    const fs::path p(o.dump_calls);
    if (p.has_parent_path()) fs::create_directories(p.parent_path());
    std::ofstream f(p);
    f << json{{"engine", "crossbatch"},
              {"model", o.model},
              {"device", device_name},
              {"dtype", dtype_traits<T>::name},
              {"threads", o.threads},
              {"stop_ids", local->stop_ids()},
              {"pad_id", local->stop_ids().front()},
              {"groups", dump_groups}}
             .dump()
      << "\n";
    if (!f) throw io_error(o.dump_calls + ": write failed");
    std::cerr << "wrote the generation calls to " << o.dump_calls << "\n";
  }
  if (!o.json_out.empty()) {
    namespace fs = std::filesystem;
    fs::create_directories(o.json_out);
    auto write = [&](const std::string& name, const json& j) {
      const std::string p = o.json_out + "/" + name;
      std::ofstream f(p);
      f << j.dump(2) << "\n";
      if (!f) throw io_error(p + ": write failed");
    };
    write("config.json", config);
    write("full_results.json", {{"config", config},
                                {"contexts", contexts},
                                {"summary", summary},
                                {"by_group_size", size_json}});
    std::cerr << "wrote " << o.json_out << "/config.json and full_results.json\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app("Parallel decoding strategies over groups of related questions");
  app.add_option("--dataset", o.dataset,
                 "squad, hotpot, quac, drop, quality, cmb, triviaqa, triviaqa_sim");
  app.add_option("--data", o.data, "the data set file, in its original format")->required();
  app.add_option("--model-name,--model", o.model,
                 "model directory (config.json, tokenizer.json, npy weights)");
  app.add_option("--context-count", o.context_count, "groups to evaluate (0: all)")
      ->check(CLI::Range(0, 1000000));
  app.add_option("--min-questions", o.min_questions, "questions per group at least")
      ->check(CLI::Range(1, 1000));
  app.add_option("--max-questions", o.max_questions, "questions per group at most")
      ->check(CLI::Range(1, 1000));
  app.add_option("--max-new-tokens", o.max_new_tokens,
                 "tokens per answer (all_in_one: x questions)")
      ->check(CLI::Range(1, 100000));
  app.add_option("--strategies", o.strategies,
                 "comma-separated: all_in_one, sequential, batch, collab_llm, collab_bert, "
                 "collab_hidden, finetuned, lora_lmhead, lora_crossbatch");
  app.add_option("--json-out", o.json_out, "results folder (config.json, full_results.json)");
  app.add_option("--seed", o.seed, "grouping / shuffling seed");
  app.add_option("--split", o.split, "recorded in the config (the file given is the split)");
  app.add_flag("--no-llm-deps", o.no_llm_deps,
               "collab_llm: heuristic dependencies instead of the model's");
  app.add_option("--max-dependencies", o.max_dependencies, "edges per question at most")
      ->check(CLI::Range(0, 1000));
  app.add_option("--dependency-max-new-tokens", o.dependency_max_new_tokens,
                 "collab_llm: tokens of the dependency request (the reference: 512)")
      ->check(CLI::Range(1, 100000));
  app.add_option("--min-confidence", o.min_confidence, "drop edges below this confidence");
  app.add_option("--cost-weight", o.cost_weight, "score = confidence - weight x token cost");
  app.add_option("--bert-model-name", o.bert_model, "converted BERT directory for collab_bert");
  app.add_option("--bert-attention-threshold", o.bert_attention_threshold,
                 "collab_bert edge threshold");
  app.add_option("--collab-hidden-checkpoint", o.collab_hidden_checkpoint,
                 "cross-batch mixer checkpoint directory");
  app.add_option("--collab-hidden-mix-method", o.collab_hidden_mix_method,
                 "attention or mixer (checked against the checkpoint)");
  app.add_option("--collab-hidden-mix-layer", o.collab_hidden_mix_layer,
                 "hidden_states index to mix (-1 last; default: the checkpoint's)");
  app.add_option("--baseline-checkpoint", o.baseline_checkpoint,
                 "trained LM head checkpoint for finetuned");
  app.add_option("--lora-lmhead-checkpoint", o.lora_lmhead_checkpoint,
                 "train_cross_batch lora_lmhead checkpoint directory (LoRA + head)");
  app.add_option("--lora-crossbatch-checkpoint", o.lora_crossbatch_checkpoint,
                 "train_cross_batch lora_crossbatch checkpoint directory (LoRA + head + mixer)");
  app.add_option("--cmb-subset", o.cmb_subset, "CMB-Clin, random, subdomain or context");
  app.add_flag("--quality-hard-only", o.quality_hard_only,
               "QuALITY: only questions marked difficult");
  app.add_option("--similarity-threshold", o.similarity_threshold,
                 "triviaqa_sim: cosine threshold");
  app.add_option("--embedding-model", o.embedding_model,
                 "triviaqa_sim: converted sentence-embedding BERT");
  app.add_option("--device", o.device, "auto, cpu or cuda");
  app.add_option("--dtype", o.dtype, "float32, float16 or bfloat16");
  app.add_option("--threads", o.threads, "CPU threads (0: all cores)");
  app.add_flag("--quiet", o.quiet, "no progress line");
  app.add_flag("--use-api", o.use_api,
               "generate through an OpenAI-compatible server instead of the local model");
  app.add_option("--api-base", o.api_base, "the server's base URL, up to and including /v1");
  app.add_option("--api-model", o.api_model, "model id sent to the server");
  app.add_option("--api-key-env", o.api_key_env,
                 "environment variable holding the API key (unset: no key)");
  app.add_option("--api-timeout", o.api_timeout, "seconds per request (connect, read, write)")
      ->check(CLI::Range(0.1, 100000.0));
  app.add_option("--api-retries", o.api_retries,
                 "retries of a failed request (no reply, 429, 5xx), back-off 1 s doubling")
      ->check(CLI::Range(0, 100));
  app.add_flag("--judge", o.judge,
               "rate long-form answers with an LLM judge through the API client (fluency, "
               "relevance, completeness, proficiency, 1-5)");
  app.add_option("--judge-api-base", o.judge_api_base,
                 "the judge server's base URL, up to and including /v1 (default: --api-base)");
  app.add_option("--judge-model,--eval-model", o.judge_model, "the judge's model id");
  app.add_option("--judge-api-key-env", o.judge_api_key_env,
                 "environment variable holding the judge's API key (unset: no key)");
  app.add_option("--judge-max-new-tokens", o.judge_max_new_tokens, "tokens of each judge reply")
      ->check(CLI::Range(1, 100000));
  app.add_option("--dump-calls", o.dump_calls,
                 "write every generation call (conversations, prompt ids, generated ids) to this "
                 "JSON file, for bench/pardec's transformers replay");
  CLI11_PARSE(app, argc, argv);
  try {
    return examples::run_on_device(o.device, o.dtype, o.threads,
                                   [&]<class T, class D>(context<D>& ctx, const char* name) {
                                     return run<T, D>(o, ctx, name);
                                   });
  } catch (const std::exception& e) {
    std::cerr << "compare_strategies: error: " << e.what() << "\n";
    return 1;
  }
}
