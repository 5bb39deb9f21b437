// Paraphrase fusion experiment: for a batch of questions, each with N paraphrases, every method of
// the reference on one engine (fusion/paraphrase_fusion.hpp), scored by lemmatised containment
// (eval/lemma.hpp), with cost (tokens, wall time, KV memory) per method. CPU (decode driver) or
// CUDA (graph driver).
//   paraphrase_fusion --dataset myriadlama --num_paraphrases 5 --method all --json out.json
//   paraphrase_fusion --num_paraphrases 1,2,3,4,5 --split test --method all --json out.json
//   paraphrase_fusion --lemmaize --results out.json      (re-score an existing results file)
// Methods: single (each paraphrase alone; also gives oracle), fused, concat, avg, max,
// weighted_avg, weighted_max, all. Prediction = first line of the generation, stripped.
#include "crossbatch/fusion/paraphrase_fusion.hpp"

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>

#include "crossbatch/eval/binomial.hpp"
#include "crossbatch/eval/lemma.hpp"
#include "crossbatch/eval/paraphrase_data.hpp"
#include "crossbatch/text/tokenizer.hpp"
#include "run_on_device.hpp"
#if CROSSBATCH_WITH_CUDA
#include "crossbatch/fusion/cuda/graph_run.cuh"
#endif

using namespace crossbatch;

namespace {

struct options {
  std::string dataset = "myriadlama", data, model = "models/smollm2-135m-instruct";
  std::string num_paraphrases = "5", indexs, method = "all", split = "test";
  bool lemmaize = false;
  std::string results, json_file, lemma_dir;
  int limit = 0, batch_size = 8, max_new_tokens = 20, shots = 3, confidence_samples = 100;
  int max_rows = 512;
  std::vector<std::uint64_t> seeds = {0};
  std::string separator = "\n\n";
  int shared_tail = 3;
  bool restart_positions = false, stop_at_newline = true;
  std::string device = "auto", dtype = "float32";
  int threads = 0;
};

// One evaluated question: its paraphrase prompts (all of them, in order) and gold answers.
struct item {
  paraphrased_question q;
  std::vector<std::vector<int>> prompt_ids;  // per paraphrase
};

std::vector<int> parse_int_list(const std::string& s, const std::string& flag) {
  std::vector<int> out;
  std::stringstream in(s);
  std::string part;
  while (std::getline(in, part, ',')) {
    const auto dash = part.find('-');
    try {
      if (dash != std::string::npos && dash > 0) {
        const int a = std::stoi(part.substr(0, dash)), b = std::stoi(part.substr(dash + 1));
        for (int i = a; i <= b; ++i) out.push_back(i);
      } else {
        out.push_back(std::stoi(part));
      }
    } catch (const std::exception&) {
      throw value_error(flag + " '" + s + "': want integers like 5, 0,2,4 or 1-5");
    }
  }
  if (out.empty()) throw value_error(flag + " is empty");
  return out;
}

std::string first_line(const std::string& g) {
  std::size_t b = g.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  std::size_t e = g.find('\n', b);
  std::string l = g.substr(b, e == std::string::npos ? std::string::npos : e - b);
  while (!l.empty() && std::isspace(static_cast<unsigned char>(l.back()))) l.pop_back();
  return l;
}

// Progress on stderr: done/total, rate, ETA.
class progress {
 public:
  progress(std::string what, int total) : m_what(std::move(what)), m_total(total) {}
  void update(int done) {
    const double s = std::chrono::duration<double>(clock::now() - m_start).count();
    const double rate = done / std::max(s, 1e-9);
    std::fprintf(stderr, "\r%-28s %5d/%d questions  %7.2f q/s  ETA %5.0f s", m_what.c_str(), done,
                 m_total, rate, (m_total - done) / std::max(rate, 1e-9));
    if (done == m_total) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }

 private:
  using clock = std::chrono::steady_clock;
  std::string m_what;
  int m_total;
  clock::time_point m_start = clock::now();
};

struct method_result {
  std::vector<std::string> predictions;  // per question
  std::vector<std::string> generations;
  fusion_cost cost;
};

json cost_json(const fusion_cost& c) {
  return {{"prompt_tokens", c.prompt_tokens},
          {"prompt_slots", c.prompt_slots},
          {"decode_tokens", c.decode_tokens},
          {"kv_bytes", c.kv_bytes},
          {"seconds", c.seconds}};
}

template <class T, class D, class Ctx>
int run(const options& o, Ctx& ctx, const std::string& device_name) {
  const auto tok = text::tokenizer::from_file(o.model + "/tokenizer.json");
  const auto lemmas = english_lemmatizer::load(o.lemma_dir + "/en_lemma_lookup.tsv",
                                               o.lemma_dir + "/en_tokenizer_exceptions.tsv");
  // Questions and prompts.
  std::vector<paraphrased_question> questions;
  std::map<std::string, std::vector<std::string>> shots_of;  // relation -> per template shots
  std::string instruction;
  if (o.dataset == "myriadlama") {
    const auto d = read_myriadlama(o.data);
    for (const auto* f : d.split(o.split)) questions.push_back(myriadlama_question(d, *f));
    for (const auto& [rel, r] : d.relations)
      for (std::size_t i = 0; i < r.templates().size(); ++i)
        shots_of[rel].push_back(myriadlama_shots(d, rel, i, o.shots));
    instruction = myriadlama_instruction;
  } else if (o.dataset == "webqa") {
    auto all = read_webquestions(o.data);
    // The first --shots questions are the few-shot pool (their first paraphrase), not evaluated.
    const std::size_t k = std::min<std::size_t>(o.shots, all.size() - 1);
    std::string shots;
    for (std::size_t i = 0; i < k; ++i)
      shots += (i ? "\n" : "") + ("Q: " + all[i].paraphrases[0] + "\nA: " + all[i].answers[0]);
    for (std::size_t i = k; i < all.size(); ++i) questions.push_back(all[i]);
    shots_of[""] = std::vector<std::string>(64, shots);
    instruction = webquestions_instruction;
  } else {
    throw value_error("--dataset '" + o.dataset + "': want myriadlama or webqa");
  }
  if (o.limit > 0 && int(questions.size()) > o.limit) questions.resize(o.limit);
  require(!questions.empty(), "no questions in split '" + o.split + "' of " + o.data);

  // Paraphrase sets: --indexs (one set) or the first n for each n of --num_paraphrases.
  std::vector<std::vector<int>> sets;
  if (!o.indexs.empty()) {
    sets.push_back(parse_int_list(o.indexs, "--indexs"));
  } else {
    for (int n : parse_int_list(o.num_paraphrases, "--num_paraphrases")) {
      require(n >= 1 && n <= max_combined_models, "--num_paraphrases: 1.." +
                                                      std::to_string(max_combined_models) +
                                                      ", got " + std::to_string(n));
      std::vector<int> s(n);
      for (int i = 0; i < n; ++i) s[i] = i;
      sets.push_back(s);
    }
  }
  std::set<int> used;
  for (const auto& s : sets) used.insert(s.begin(), s.end());
  std::vector<item> items;
  text::encode_options eo;
  for (auto& q : questions) {
    for (int i : used)
      require(i >= 0 && i < int(q.paraphrases.size()),
              "question " + q.uuid + " has " + std::to_string(q.paraphrases.size()) +
                  " paraphrases; paraphrase " + std::to_string(i) + " was asked for");
    item it{q, {}};
    for (std::size_t i = 0; i < q.paraphrases.size(); ++i) {
      const auto& shots = shots_of.at(q.relation);
      const auto prompt =
          qa_prompt(instruction, i < shots.size() ? shots[i] : shots.back(), q.paraphrases[i]);
      const auto ids = tok.encode(prompt, eo);
      it.prompt_ids.emplace_back(ids.begin(), ids.end());
    }
    items.push_back(std::move(it));
  }
  const int nq = static_cast<int>(items.size());

  const auto model = decoder_model<T, D>::load(o.model);
  generation_options g;
  g.max_new_tokens = o.max_new_tokens;
  std::vector<int> eos = model.config.eos_token_ids;
  if (auto e = tok.token_to_id("<|endoftext|>")) eos.push_back(*e);
  const std::vector<int> model_eos = eos;  // dropped from the text; newline stops are kept
  if (o.stop_at_newline)  // the prediction is the first line: tokens holding '\n' end it
    for (int id = 0; id < model.config.vocab_size; ++id) {
      const std::vector<std::int32_t> one{id};
      if (tok.decode(one, false).find('\n') != std::string::npos) eos.push_back(id);
    }
  g.eos_ids = eos;
  g.pad_id = model.config.eos_token_ids.empty() ? 0 : model.config.eos_token_ids[0];
  fusion_prompt_options fo;
  {
    const auto sep = tok.encode(o.separator, text::encode_options{.add_special_tokens = false});
    fo.separator.assign(sep.begin(), sep.end());
  }
  fo.shared_tail = o.shared_tail;
  fo.tail_up_to_common = true;
  fo.restart_positions = o.restart_positions;

#if CROSSBATCH_WITH_CUDA
  std::unique_ptr<graph_driver<T>> driver;
  if constexpr (std::is_same_v<D, crossbatch::cuda>)
    driver = std::make_unique<graph_driver<T>>(ctx);
#endif
  const auto runner = [&](const sampling_params& sp, const generation_options& opt) {
    return [&, sp, opt](auto& policy) -> generation_result {
#if CROSSBATCH_WITH_CUDA
      if constexpr (std::is_same_v<D, crossbatch::cuda>)
        return driver->run(policy, sp, opt, opt.eos_ids);
      else
#endif
        return decode<T, D>(ctx, policy, sp, opt, opt.eos_ids);
    };
  };
  const sampling_params greedy_sp{};
  // HF's defaults under do_sample with temperature/top_p unset: temperature 1, top-k 50.
  const sampling_params sample_sp{.do_sample = true, .temperature = 1.0f, .top_k = 50};

  const auto text_of = [&](const std::vector<int>& t) {
    std::vector<std::int32_t> ids;
    for (int id : t)
      if (std::find(model_eos.begin(), model_eos.end(), id) == model_eos.end()) ids.push_back(id);
    return tok.decode(ids);
  };
  const auto batch_questions = [&](int first, int n, const std::vector<int>& set) {
    std::vector<paraphrase_question> qs;
    for (int i = first; i < first + n; ++i) {
      paraphrase_question q;
      for (int p : set) q.paraphrases.push_back(items[i].prompt_ids[p]);
      qs.push_back(std::move(q));
    }
    return qs;
  };
  // Runs f(first, n) over the questions in batches, with a progress line.
  const auto over_batches = [&](const std::string& what, int per_question_rows, auto&& f) {
    progress bar(what, nq);
    const int b = std::max(1, std::min(o.batch_size, o.max_rows / std::max(1, per_question_rows)));
    for (int first = 0; first < nq; first += b) {
      f(first, std::min(b, nq - first));
      bar.update(std::min(nq, first + b));
    }
  };

  json out;
  out["config"] = {{"dataset", o.dataset},
                   {"data", o.data},
                   {"model", o.model},
                   {"split", o.split},
                   {"questions", nq},
                   {"device", device_name},
                   {"dtype", dtype_traits<T>::name},
                   {"max_new_tokens", o.max_new_tokens},
                   {"shots", o.shots},
                   {"batch_size", o.batch_size},
                   {"separator", o.separator},
                   {"shared_tail", o.shared_tail},
                   {"restart_positions", o.restart_positions},
                   {"confidence_samples", o.confidence_samples},
                   {"seeds", o.seeds},
                   {"stop_at_newline", o.stop_at_newline}};
  json& methods = out["methods"];
  json& records = out["records"];
  const auto is_correct = [&](const std::string& pred, const std::vector<std::string>& answers) {
    std::vector<std::vector<std::string>> a;
    for (const auto& x : answers) a.push_back(lemmas.lemmas(x));
    return lemma_containment(lemmas.lemmas(pred), a);
  };
  const auto record = [&](const std::string& method, const std::vector<int>& set,
                          const method_result& r, const json& extra = json::object()) {
    int correct = 0;
    for (int i = 0; i < nq; ++i) {
      const bool ok = is_correct(r.predictions[i], items[i].q.answers);
      correct += ok;
      json rec = {{"uuid", items[i].q.uuid},
                  {"method", method},
                  {"paraphrases", set},
                  {"answers", items[i].q.answers},
                  {"prediction", r.predictions[i]},
                  {"generation", r.generations[i]},
                  {"correct", ok}};
      for (auto& [k, v] : extra.items()) rec[k] = v;
      records.push_back(rec);
    }
    const auto ci = wilson_interval(correct, nq);
    json m = {{"method", method},
              {"paraphrases", set},
              {"num_paraphrases", set.size()},
              {"correct", correct},
              {"n", nq},
              {"accuracy", ci.rate},
              {"low", ci.low},
              {"high", ci.high},
              {"cost", cost_json(r.cost)}};
    for (auto& [k, v] : extra.items()) m[k] = v;
    methods.push_back(m);
    std::fprintf(stderr, "  %-14s n=%zu  accuracy %.3f [%.3f, %.3f]  %.2f s\n", method.c_str(),
                 set.size(), ci.rate, ci.low, ci.high, r.cost.seconds);
  };

  const bool all = o.method == "all";
  const auto wants = [&](const std::string& m) {
    return all || o.method == m || (m == "single" && o.method == "oracle");
  };
  if (!all && o.method != "oracle") try {
      (void)parse_fusion_method(o.method);
    } catch (const value_error&) {
      throw value_error("--method '" + o.method +
                        "': want single, oracle, fused, concat, avg, max, weighted_avg, "
                        "weighted_max or all");
    }
  const std::vector<int> all_used(used.begin(), used.end());

  // Each paraphrase alone, greedy: the single baselines, the oracle and the greedy answers the
  // confidences compare with.
  std::map<int, method_result> alone;  // paraphrase index -> per question
  const bool need_alone = wants("single") || wants("weighted_avg") || wants("weighted_max");
  if (need_alone) {
    method_result all_rows;
    std::vector<std::vector<std::string>> pred(nq), gen(nq);
    over_batches("single (each paraphrase)", int(all_used.size()), [&](int first, int n) {
      const auto qs = batch_questions(first, n, all_used);
      const auto r = single_generate(ctx, model, qs, g, runner(greedy_sp, g), &all_rows.cost);
      for (int i = 0; i < n; ++i)
        for (std::size_t p = 0; p < all_used.size(); ++p) {
          const auto t = text_of(r.tokens[i * all_used.size() + p]);
          gen[first + i].push_back(t);
          pred[first + i].push_back(first_line(t));
        }
    });
    for (std::size_t p = 0; p < all_used.size(); ++p) {
      method_result m;
      for (int i = 0; i < nq; ++i) {
        m.predictions.push_back(pred[i][p]);
        m.generations.push_back(gen[i][p]);
      }
      m.cost = all_rows.cost;  // shared run: the cost of all paraphrases together
      alone[all_used[p]] = m;
    }
    for (int p : all_used) {
      auto m = alone[p];
      m.cost.seconds /= double(all_used.size());
      if (wants("single")) record("single", {p}, m);
    }
  }
  // Confidence of every paraphrase per seed: share of samples whose lemmas equal the greedy's.
  std::map<std::uint64_t, std::map<int, std::vector<float>>> confidence;  // seed -> p -> per q
  std::map<std::uint64_t, fusion_cost> confidence_cost;
  if (wants("weighted_avg") || wants("weighted_max")) {
    const int s = o.confidence_samples;
    require(s >= 1, "--confidence_samples must be >= 1");
    for (auto seed : o.seeds) {
      generation_options gs = g;
      gs.seed = seed;
      auto& conf = confidence[seed];
      for (int p : all_used) conf[p].assign(nq, 0.0f);
      over_batches("confidence (seed " + std::to_string(seed) + ")", int(all_used.size()) * s,
                   [&](int first, int n) {
                     std::vector<paraphrase_question> qs;
                     for (int i = first; i < first + n; ++i)
                       for (int p : all_used)
                         qs.push_back({std::vector<std::vector<int>>(s, items[i].prompt_ids[p])});
                     const auto r = single_generate(ctx, model, qs, gs, runner(sample_sp, gs),
                                                    &confidence_cost[seed]);
                     int row = 0;
                     for (int i = first; i < first + n; ++i)
                       for (int p : all_used) {
                         const auto greedy_lemmas = lemmas.lemmas(alone[p].predictions[i]);
                         std::vector<std::vector<std::string>> samples;
                         for (int k = 0; k < s; ++k)
                           samples.push_back(lemmas.lemmas(first_line(text_of(r.tokens[row++]))));
                         conf[p][i] = answer_confidence(greedy_lemmas, samples);
                       }
                   });
    }
  }

  for (const auto& set : sets) {
    const int np = static_cast<int>(set.size());
    if (wants("single") && np > 1) {  // the oracle: any paraphrase of the set right
      method_result m;
      int correct = 0;
      for (int i = 0; i < nq; ++i) {
        std::string pred = alone[set[0]].predictions[i];
        for (int p : set)
          if (is_correct(alone[p].predictions[i], items[i].q.answers)) {
            pred = alone[p].predictions[i];
            break;
          }
        correct += is_correct(pred, items[i].q.answers);
        m.predictions.push_back(pred);
        m.generations.push_back("");
      }
      record("oracle", set, m);
    }
    const auto simple = [&](const std::string& name, auto&& call) {
      if (!wants(name)) return;
      method_result m;
      m.predictions.resize(nq);
      m.generations.resize(nq);
      over_batches(name + " n=" + std::to_string(np), name == "fused" || name == "concat" ? 1 : np,
                   [&](int first, int n) {
                     const auto qs = batch_questions(first, n, set);
                     const auto r = call(qs, &m.cost);
                     for (int i = 0; i < n; ++i) {
                       m.generations[first + i] = text_of(r.tokens[i]);
                       m.predictions[first + i] = first_line(m.generations[first + i]);
                     }
                   });
      record(name, set, m);
    };
    const auto run_g = runner(greedy_sp, g);
    simple("fused", [&](const auto& qs, fusion_cost* c) {
      return fused_generate(ctx, model, qs, fo, g, run_g, c);
    });
    simple("concat", [&](const auto& qs, fusion_cost* c) {
      return concat_generate(ctx, model, qs, fo, g, run_g, c);
    });
    simple("avg", [&](const auto& qs, fusion_cost* c) {
      return ensemble_generate(ctx, model, qs, same_combiner<mean_logits_combiner>(qs), g, run_g,
                               c);
    });
    simple("max", [&](const auto& qs, fusion_cost* c) {
      return ensemble_generate(ctx, model, qs, same_combiner<max_prob_combiner>(qs), g, run_g, c);
    });
    for (const std::string name : {"weighted_avg", "weighted_max"}) {
      if (!wants(name)) continue;
      for (auto seed : o.seeds) {
        method_result m;
        m.predictions.resize(nq);
        m.generations.resize(nq);
        over_batches(name + " n=" + std::to_string(np) + " seed " + std::to_string(seed), np,
                     [&](int first, int n) {
                       const auto qs = batch_questions(first, n, set);
                       std::vector<weighted_mean_combiner> combiners;
                       for (int i = first; i < first + n; ++i) {
                         std::vector<float> c;
                         for (int p : set) c.push_back(confidence[seed][p][i]);
                         combiners.push_back(name == "weighted_avg" ? weighted_avg_combiner(c)
                                                                    : weighted_max_combiner(c));
                       }
                       const auto r =
                           ensemble_generate(ctx, model, qs, combiners, g, run_g, &m.cost);
                       for (int i = 0; i < n; ++i) {
                         m.generations[first + i] = text_of(r.tokens[i]);
                         m.predictions[first + i] = first_line(m.generations[first + i]);
                       }
                     });
        // The confidences' sampling is part of the method's cost (for the paraphrases used).
        auto cc = confidence_cost[seed];
        const double share = double(np) / double(all_used.size());
        cc.prompt_tokens = std::int64_t(cc.prompt_tokens * share);
        cc.prompt_slots = std::int64_t(cc.prompt_slots * share);
        cc.decode_tokens = std::int64_t(cc.decode_tokens * share);
        cc.seconds *= share;
        json extra = {{"seed", seed}, {"confidence_cost", cost_json(cc)}};
        record(name, set, m, extra);
      }
    }
  }
  if (!o.json_file.empty()) {
    std::ofstream f(o.json_file);
    if (!f) throw io_error(o.json_file + ": cannot write the JSON file");
    f << out.dump(1) << "\n";
    std::fprintf(stderr, "wrote %s\n", o.json_file.c_str());
  }
  return 0;
}

// --lemmaize: re-score the records of an existing results file with the lemmatiser.
int lemmaize(const options& o) {
  require(!o.results.empty(), "--lemmaize needs --results FILE (a JSON written by --json)");
  const auto lemmas = english_lemmatizer::load(o.lemma_dir + "/en_lemma_lookup.tsv",
                                               o.lemma_dir + "/en_tokenizer_exceptions.tsv");
  json r = read_json_file(o.results);
  if (!r.contains("records") || !r["records"].is_array())
    throw format_error(o.results + ": no 'records' array");
  int changed = 0;
  for (auto& rec : r["records"]) {
    std::vector<std::vector<std::string>> a;
    for (const auto& x : rec.at("answers")) a.push_back(lemmas.lemmas(x.get<std::string>()));
    const auto pl = lemmas.lemmas(rec.at("prediction").get<std::string>());
    const bool ok = lemma_containment(pl, a);
    changed += rec.value("correct", !ok) != ok;
    rec["correct"] = ok;
    rec["prediction_lemmas"] = pl;
    rec["answer_lemmas"] = a;
  }
  std::ofstream(o.results) << r.dump(1) << "\n";
  std::fprintf(stderr, "%s: %zu records lemmatised, %d verdicts changed\n", o.results.c_str(),
               r["records"].size(), changed);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  const std::string root = CROSSBATCH_SOURCE_DIR;
  o.data = root + "/examples/paraphrase_fusion/data/facts";
  o.lemma_dir = root + "/tests/data/fusion";
  CLI::App app("crossbatch paraphrase fusion: fused paraphrases vs ensembles on one engine");
  app.add_option("--dataset", o.dataset, "myriadlama or webqa");
  app.add_option("--data", o.data,
                 "MyriadLAMA directory (facts.jsonl + templates.jsonl) or WebQuestions JSON");
  app.add_option("--model", o.model, "converted model directory");
  app.add_option("--num_paraphrases", o.num_paraphrases,
                 "N, or a list/range (1,2,5 or 1-5): the first N paraphrases");
  app.add_option("--indexs", o.indexs,
                 "explicit paraphrase indices (0,2,4) instead of --num_paraphrases");
  app.add_option("--method", o.method,
                 "single, oracle, fused, concat, avg, max, weighted_avg, weighted_max or all");
  app.add_flag("--lemmaize", o.lemmaize, "re-score --results with the lemmatiser, no generation");
  app.add_option("--results", o.results, "results JSON for --lemmaize");
  app.add_option("--json", o.json_file, "write results (summary per method + every record)");
  app.add_option("--split", o.split,
                 "MyriadLAMA split: validation or test (train is the few-shot pool)");
  app.add_option("--limit", o.limit, "evaluate the first N questions only");
  app.add_option("--batch_size", o.batch_size, "questions per batch");
  app.add_option("--max_rows", o.max_rows,
                 "cap on sequences per batch (ensembles, confidence samples)");
  app.add_option("--max_new_tokens", o.max_new_tokens, "tokens generated per answer");
  app.add_option("--shots", o.shots, "few-shot examples per prompt");
  app.add_option("--confidence_samples", o.confidence_samples,
                 "sampled generations per paraphrase for weighted_* (reference: 100)");
  app.add_option("--seeds", o.seeds, "seeds of the confidence sampling (weighted_*), one run each");
  app.add_option("--separator", o.separator, "text between fused paraphrases");
  app.add_option("--shared_tail", o.shared_tail,
                 "fusion: up to this many last tokens common to all paraphrases see every "
                 "paraphrase (0: the reference's rule)");
  app.add_flag("--restart_positions", o.restart_positions,
               "fusion: positions restart per paraphrase");
  app.add_flag("!--no_stop_at_newline", o.stop_at_newline, "generate past the first line");
  app.add_option("--device", o.device, "auto, cpu or cuda");
  app.add_option("--dtype", o.dtype, "float32, float16 or bfloat16");
  app.add_option("--threads", o.threads, "CPU threads (0: all cores)");
  CLI11_PARSE(app, argc, argv);
  try {
    if (o.lemmaize) return lemmaize(o);
    return examples::run_on_device(o.device, o.dtype, o.threads,
                                   [&]<class T, class D>(context<D>& ctx, const char* name) {
                                     return run<T, D>(o, ctx, name);
                                   });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "paraphrase_fusion: %s\n", e.what());
    return 1;
  }
}
