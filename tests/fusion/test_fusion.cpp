// Paraphrase fusion on the CPU (fusion/): a batch of questions with their own numbers of
// paraphrases. Isolation: during the prompt a paraphrase's logits do not depend on the other
// paraphrases (and equal its standalone run when positions restart); the first generated token's
// logits move when any paraphrase changes. Fused generation = a brute-force dense-mask forward of
// the reference's rule. Ensembles (avg, max, weighted) = their formulas on per-paraphrase logits
// stored from independent sessions; with one paraphrase every method is plain generation.
#define BOOST_TEST_MODULE fusion
#include <boost/test/data/test_case.hpp>

#include "crossbatch/fusion/paraphrase_fusion.hpp"
#include "tiny_models.hpp"

using namespace crossbatch;
namespace bdata = boost::unit_test::data;

namespace {

context<cpu> ctx;

struct model_fixture {
  std::string dir;
  decoder_model<float> model;
  explicit model_fixture(const std::string& family, std::uint64_t seed = 3)
      : dir(cbtest::tiny_model_dir(family, seed)), model(decoder_model<float>::load(dir)) {}
  ~model_fixture() { std::filesystem::remove_all(dir); }
  int vocab() const { return model.config.vocab_size; }
};

// Three questions with 3, 1 and 2 paraphrases of different lengths, every paraphrase ending in
// the same cue token 9; separator {7, 8}.
std::vector<paraphrase_question> questions() {
  return {{{{1, 10, 11, 12, 13, 9}, {1, 20, 21, 9}, {1, 30, 31, 32, 33, 34, 9}}},
          {{{2, 40, 41, 42, 9}}},
          {{{3, 50, 51, 9}, {3, 60, 61, 62, 63, 9}}}};
}
const std::vector<int> sep = {7, 8};
fusion_prompt_options fusion_opts(int tail, bool restart = false) {
  return {.separator = sep, .shared_tail = tail, .restart_positions = restart};
}

// Reference rule, written per pair of tokens: run[t] = paraphrase index (0..), -2 - i for the
// i-th separator run, -1 generated. q sees k <= q when q is generated, or both lie in the same
// paraphrase or the same separator run.
std::vector<std::vector<char>> reference_visibility(const std::vector<int>& run) {
  const int n = int(run.size());
  std::vector<std::vector<char>> v(n, std::vector<char>(n, 0));
  for (int q = 0; q < n; ++q)
    for (int k = 0; k <= q; ++k) v[q][k] = run[q] == -1 || run[q] == run[k];
  return v;
}
struct dense_mask {
  const std::vector<std::vector<char>>* visible;
  bool allowed(int, int q, int k) const { return (*visible)[q][k] != 0; }
  tile tile_kind(int, int, int, int, int) const { return tile::partial; }
};
// Logits (T, V) at every position of one unpadded sequence under an explicit mask and positions.
tensor<float> dense_logits(const decoder_model<float>& m, const std::vector<int>& tokens,
                           const std::vector<int>& positions,
                           const std::vector<std::vector<char>>& visible) {
  const auto& c = m.config;
  const int t = int(tokens.size());
  auto cache = m.make_cache(1, t);
  decoder_workspace<float> ws(c, t);
  tensor<float> x({1, t, c.hidden_size}), h({t, c.hidden_size}), logits({t, c.vocab_size});
  tensor<std::int32_t> ids({t}), pos({t});
  for (int i = 0; i < t; ++i) ids(i) = tokens[i], pos(i) = positions[i];
  auto x2 = x.view().reshape({t, c.hidden_size});
  m.embed_tokens(ctx, x2, ids.view(), pos.view());
  m.run_layers(ctx, x.view(), tensor_view<const std::int32_t>(pos.view()), cache, 0,
               dense_mask{&visible}, 0, c.num_layers, ws);
  m.final_norm(ctx, h.view(), tensor_view<const float>(x2));
  m.logits(ctx, logits.view(), tensor_view<const float>(h.view()));
  return logits;
}
tensor<float> row(const tensor<float>& t, int r) {
  tensor<float> out({1, t.dim(1)});
  std::copy_n(&t(r, 0), t.dim(1), out.data());
  return out;
}

// Per-position logits (T_real, V) of sequence s of a fused session after prefill_until(L).
tensor<float> prompt_logits(batch_session<float, cpu, segmented>& s, int seq) {
  const auto& c = s.model().config;
  const auto x = s.residual();
  const int t = s.prompt_length(), pad = s.layout().pad(seq);
  tensor<float> h({t - pad, c.hidden_size}), logits({t - pad, c.vocab_size});
  const tensor_view<const float> rows(x.data + (index_t(seq) * t + pad) * c.hidden_size,
                                      {t - pad, c.hidden_size});
  s.model().final_norm(ctx, h.view(), rows);
  s.model().logits(ctx, logits.view(), tensor_view<const float>(h.view()));
  return logits;
}
tensor<float> slice_rows(const tensor<float>& t, int first, int n) {
  tensor<float> out({n, t.dim(1)});
  std::copy_n(&t(first, 0), index_t(n) * t.dim(1), out.data());
  return out;
}

generation_options fixed(int n, std::uint64_t seed = 0) {
  generation_options o{.max_new_tokens = n};
  o.stop_at_eos = false;
  o.seed = seed;
  return o;
}

}  // namespace

BOOST_DATA_TEST_CASE(a_paraphrase_prompt_ignores_the_others, bdata::make({"llama", "qwen2"}),
                     family) {
  model_fixture f(family);
  const auto qs = questions();
  const auto fused = fused_prompts(qs, sep);
  // The first question's paraphrases 0 and 2 replaced by others of the same lengths: paraphrase
  // 1's logits stay exactly as they were (natural positions do not move).
  auto other = qs;
  for (int p : {0, 2})
    for (auto& id : other[0].paraphrases[p]) id = (id + 37) % f.vocab();
  batch_session<float, cpu, segmented> a(ctx, f.model, fused, 1),
      b(ctx, f.model, fused_prompts(other, sep), 1);
  a.prefill_until(f.model.config.num_layers);
  b.prefill_until(f.model.config.num_layers);
  const auto& span = fused[0].segments[1];
  const int n = span.end - span.begin;
  BOOST_TEST(cbtest::max_abs_diff(slice_rows(prompt_logits(a, 0), span.begin, n).view(),
                                  slice_rows(prompt_logits(b, 0), span.begin, n).view()) == 0.0f);
  // With restarted positions every paraphrase's prompt logits equal its standalone run.
  batch_session<float, cpu, segmented> r(ctx, f.model, fused, 1, segmented{true});
  // (shared_tail 0: each segment is a whole paraphrase prompt.)
  r.prefill_until(f.model.config.num_layers);
  for (int q = 0; q < int(qs.size()); ++q) {
    const auto got = prompt_logits(r, q);
    for (std::size_t p = 0; p < qs[q].paraphrases.size(); ++p) {
      const auto& ids = qs[q].paraphrases[p];
      std::vector<int> pos(ids.size());
      for (std::size_t i = 0; i < ids.size(); ++i) pos[i] = int(i);
      const auto alone =
          dense_logits(f.model, ids, pos, reference_visibility(std::vector<int>(ids.size(), 0)));
      const auto& sp = fused[q].segments[p];
      cbtest::check_close<float>(slice_rows(got, sp.begin, sp.end - sp.begin).view(), alone.view(),
                                 "question " + std::to_string(q) + " paraphrase " +
                                     std::to_string(p) + " vs its standalone run");
    }
  }
}

BOOST_DATA_TEST_CASE(the_first_generated_token_sees_every_paraphrase, bdata::make({1, 0}), tail) {
  model_fixture f("llama");
  const auto qs = questions();
  const auto& model = f.model;
  const int cut = tail;
  const auto first_logits = [&model, cut](const std::vector<paraphrase_question>& q) {
    batch_session<float, cpu, segmented> s(ctx, model, fused_prompts(q, sep, cut), 1);
    s.prefill();
    return s.logits_host();
  };
  const auto base = first_logits(qs);
  const std::size_t last = qs[0].paraphrases.size() - 1;
  for (std::size_t p = 0; p <= last; ++p) {
    auto changed = qs;
    changed[0].paraphrases[p][1] = (changed[0].paraphrases[p][1] + 5) % f.vocab();
    const auto l = first_logits(changed);
    const float moved = cbtest::max_abs_diff(row(base, 0).view(), row(l, 0).view());
    if (tail > 0 || p == last)
      BOOST_TEST(moved > 1e-3f, "changing paraphrase " << p << " leaves the first logits alone");
    else  // shared_tail 0: the prompt's last position belongs to the last paraphrase only
      BOOST_TEST(moved == 0.0f, "paraphrase " << p << " reached the last paraphrase's position");
    // The other questions do not move.
    BOOST_TEST(cbtest::max_abs_diff(row(base, 2).view(), row(l, 2).view()) == 0.0f);
  }
}

BOOST_DATA_TEST_CASE(fused_generation_equals_a_dense_mask_forward,
                     bdata::make({"gpt2", "llama", "qwen2"}) * bdata::make({false, true}) *
                         bdata::make({1, 0}),
                     family, restart, tail) {
  model_fixture f(family);
  const auto qs = questions();
  const int steps = 4;
  const auto opt = fixed(steps);
  const auto r = fused_generate(ctx, f.model, qs, fusion_opts(tail, restart), opt,
                                host_run<float, cpu>(ctx, greedy{}, opt, {}));
  const auto fused = fused_prompts(qs, sep, tail);
  for (std::size_t q = 0; q < qs.size(); ++q) {
    const auto& p = fused[q];
    // Runs, positions (natural or restarted per run, generated after the longest run).
    std::vector<int> run(p.tokens.size()), pos(p.tokens.size());
    int sep_run = 0, longest = 0;
    const std::size_t tail_start = p.tokens.size() - tail;
    for (std::size_t t = 0; t < tail_start; ++t) {
      int start = -1;
      for (std::size_t i = 0; i < p.segments.size(); ++i)
        if (int(t) >= p.segments[i].begin && int(t) < p.segments[i].end)
          run[t] = int(i), start = p.segments[i].begin;
      if (start < 0) {  // a separator token
        if (t == 0 || run[t - 1] >= 0) --sep_run;
        run[t] = sep_run - 1;
        start = int(t);
        while (start > 0 && run[start - 1] == run[t]) --start;
      }
      pos[t] = restart ? int(t) - start : int(t);
      longest = std::max(longest, pos[t] + 1);
    }
    for (std::size_t t = tail_start; t < p.tokens.size(); ++t) {  // the shared tail sees all
      run[t] = -1;
      pos[t] = restart ? longest + int(t - tail_start) : int(t);
    }
    const int next_pos = restart ? longest + tail : int(p.tokens.size());
    // Greedy decoding from dense forwards over the whole sequence, step by step.
    auto tokens = p.tokens;
    std::vector<int> want;
    for (int s = 0; s < steps; ++s) {
      const auto l = dense_logits(f.model, tokens, pos, reference_visibility(run));
      const int next = argmax(std::span<const float>(&l(int(tokens.size()) - 1, 0), f.vocab()));
      want.push_back(next);
      tokens.push_back(next);
      run.push_back(-1);
      pos.push_back(next_pos + s);
    }
    BOOST_TEST(r.tokens[q] == want, family << " question " << q << " tail " << tail);
  }
}

BOOST_AUTO_TEST_CASE(ensembles_equal_their_formulas_on_stored_logits) {
  model_fixture f("llama");
  const auto qs = questions();
  const int v = f.vocab(), steps = 4;
  const std::vector<std::vector<float>> conf = {{0.2f, 0.7f, 0.1f}, {0.4f}, {0.0f, 0.0f}};
  // The direct formulas over rows l[m] (V) of one question.
  enum kind { avg, max, wavg, wmax };
  const auto formula = [&](kind k, const std::vector<tensor<float>>& l, std::size_t q) {
    const std::size_t m = l.size();
    std::vector<double> out(v, 0.0);
    std::vector<double> lse(m, 0.0);
    for (std::size_t i = 0; i < m; ++i) {
      double mx = -1e30, s = 0;
      for (int j = 0; j < v; ++j) mx = std::max(mx, double(l[i](0, j)));
      for (int j = 0; j < v; ++j) s += std::exp(double(l[i](0, j)) - mx);
      lse[i] = mx + std::log(s);
    }
    std::vector<double> w(m, 1.0);
    if (k == wavg) {
      double total = 0;
      for (std::size_t i = 0; i < m; ++i) total += conf[q][i];
      for (std::size_t i = 0; i < m; ++i) w[i] = total > 0 ? conf[q][i] : 1.0;  // zero: equal
    }
    if (k == wmax) {
      std::size_t best = 0;
      for (std::size_t i = 1; i < m; ++i)
        if (conf[q][i] > conf[q][best]) best = i;
      for (std::size_t i = 0; i < m; ++i) w[i] = i == best;
    }
    for (int j = 0; j < v; ++j) {
      if (k == max) {
        double best = 0;  // max of probabilities, then its log
        for (std::size_t i = 0; i < m; ++i) best = std::max(best, std::exp(l[i](0, j) - lse[i]));
        out[j] = std::log(best);
      } else {
        double s = 0, ws = 0;
        for (std::size_t i = 0; i < m; ++i) s += w[i] * l[i](0, j), ws += w[i];
        out[j] = s / ws;
      }
    }
    return out;
  };
  const auto check_kind = [&]<class C>(kind k, std::vector<C> combiners, const std::string& name) {
    const auto rows = paraphrase_rows_of(qs);
    batch_session<float, cpu> s(ctx, f.model, rows.prompts, steps);
    ensemble_step<float, cpu, C> policy(s, rows.offsets, combiners);
    // Independent reference: one batch-1 session per paraphrase, fed the same tokens.
    std::vector<std::unique_ptr<batch_session<float, cpu>>> alone;
    for (const auto& p : rows.prompts)
      alone.push_back(std::make_unique<batch_session<float, cpu>>(
          ctx, f.model, std::vector<std::vector<int>>{p}, steps));
    policy.prefill();
    for (auto& a : alone) a->prefill();
    for (int step = 0; step < steps; ++step) {
      const auto got = to_host(policy.logits());
      std::vector<std::int32_t> next;
      for (int q = 0; q < rows.questions(); ++q) {
        std::vector<tensor<float>> l;
        for (int r = rows.offsets[q]; r < rows.offsets[q + 1]; ++r)
          l.push_back(alone[r]->logits_host());
        const auto want = formula(k, l, q);
        tensor<float> w({1, v});
        for (int j = 0; j < v; ++j) w(0, j) = float(want[j]);
        cbtest::check_close<float>(
            row(got, q).view(), w.view(),
            name + " question " + std::to_string(q) + " step " + std::to_string(step));
        next.push_back(argmax(std::span<const float>(w.data(), v)));
      }
      if (step + 1 == steps) break;
      tensor<std::int32_t> ids({rows.questions()});
      for (int q = 0; q < rows.questions(); ++q) ids(q) = next[q];
      policy.step(tensor_view<const std::int32_t>(ids.view()), nullptr);
      for (int q = 0; q < rows.questions(); ++q)
        for (int r = rows.offsets[q]; r < rows.offsets[q + 1]; ++r) alone[r]->step({next[q]});
    }
  };
  check_kind(avg, same_combiner<mean_logits_combiner>(qs), "avg");
  check_kind(max, same_combiner<max_prob_combiner>(qs), "max");
  std::vector<weighted_mean_combiner> wa, wm;
  for (const auto& c : conf)
    wa.push_back(weighted_avg_combiner(c)), wm.push_back(weighted_max_combiner(c));
  check_kind(wavg, wa, "weighted_avg");
  check_kind(wmax, wm, "weighted_max");
}

BOOST_DATA_TEST_CASE(with_one_paraphrase_every_method_is_plain_generation,
                     bdata::make({false, true}), sampled) {
  model_fixture f("qwen2");
  const std::vector<paraphrase_question> qs = {
      {{{1, 10, 11, 12}}}, {{{2, 40, 41, 42, 43, 44}}}, {{{3, 50}}}};
  std::vector<std::vector<int>> plain;
  for (const auto& q : qs) plain.push_back(q.paraphrases[0]);
  const auto opt = fixed(6, 11);
  const sampling_params sp{.do_sample = sampled, .temperature = 1.0f, .top_k = 50};
  const auto want = generate(ctx, f.model, plain, sp, opt).tokens;
  const auto run = host_run<float, cpu>(ctx, sp, opt, {});
  BOOST_TEST(single_generate(ctx, f.model, qs, opt, run).tokens == want);
  for (bool restart : {false, true})
    for (int tail : {0, 1})
      BOOST_TEST(fused_generate(ctx, f.model, qs, fusion_opts(tail, restart), opt, run).tokens ==
                 want);
  BOOST_TEST(concat_generate(ctx, f.model, qs, fusion_opts(1), opt, run).tokens == want);
  BOOST_TEST(ensemble_generate(ctx, f.model, qs, same_combiner<mean_logits_combiner>(qs), opt, run)
                 .tokens == want);
  BOOST_TEST(
      ensemble_generate(ctx, f.model, qs, same_combiner<max_prob_combiner>(qs), opt, run).tokens ==
      want);
  std::vector<weighted_mean_combiner> w;
  for (std::size_t q = 0; q < qs.size(); ++q) w.push_back(weighted_max_combiner({0.3f}));
  BOOST_TEST(ensemble_generate(ctx, f.model, qs, w, opt, run).tokens == want);
}

BOOST_AUTO_TEST_CASE(costs_count_what_each_method_processes) {
  model_fixture f("llama");
  const auto qs = questions();
  const auto opt = fixed(3);
  const auto run = host_run<float, cpu>(ctx, greedy{}, opt, {});
  fusion_cost fused, avg;
  fused_generate(ctx, f.model, qs, fusion_opts(1), opt, run, &fused);
  ensemble_generate(ctx, f.model, qs, same_combiner<mean_logits_combiner>(qs), opt, run, &avg);
  // Fused: the paraphrases without their cue, 2 + 0 + 1 two-token separators, one cue per
  // question; ensembles: the paraphrases alone.
  BOOST_TEST(fused.prompt_tokens == 26 + 6 + 3);
  BOOST_TEST(avg.prompt_tokens == 32);
  BOOST_TEST(fused.decode_tokens == 3 * 2);  // 3 sequences, 2 fed steps
  BOOST_TEST(avg.decode_tokens == 6 * 2);    // 6 rows
  const auto& c = f.model.config;
  const std::int64_t per_slot = 2 * c.num_layers * c.num_kv_heads * c.head_dim * 4;
  BOOST_TEST(fused.kv_bytes == 3 * (19 + 3) * per_slot);  // longest: 5 + 2 + 3 + 2 + 6 + 1
  BOOST_TEST(avg.kv_bytes == 6 * (7 + 3) * per_slot);     // longest paraphrase: 7
}

BOOST_AUTO_TEST_CASE(bad_batches_are_refused_with_a_reason) {
  model_fixture f("llama");
  const auto opt = fixed(2);
  const auto run = host_run<float, cpu>(ctx, greedy{}, opt, {});
  const auto refused = [&](const std::vector<paraphrase_question>& qs, const std::string& what) {
    try {
      ensemble_generate(ctx, f.model, qs, same_combiner<mean_logits_combiner>(qs), opt, run);
    } catch (const value_error& e) {
      BOOST_TEST(std::string(e.what()).find(what) != std::string::npos, e.what());
      return;
    }
    BOOST_ERROR("accepted: " << what);
  };
  refused({}, "no questions");
  refused({{{{1, 2}}}, {{}}}, "question 1 has no paraphrase");
  refused({{{{1, 2}, {}}}}, "question 0 paraphrase 1 is empty");
  refused({{std::vector<std::vector<int>>(9, {1, 2})}}, "question 0 has 9 rows");
  BOOST_CHECK_THROW(weighted_avg_combiner({0.5f, 1.5f}), value_error);
  BOOST_CHECK_THROW(parse_fusion_method("mean"), value_error);
  BOOST_TEST(to_string(parse_fusion_method("weighted_max")) == "weighted_max");
  const auto all_zero = weighted_avg_combiner({0.0f, 0.0f});
  BOOST_TEST(all_zero.weight[0] == 1.0f);
  BOOST_TEST(all_zero.weight[1] == 1.0f);
  const auto wm = weighted_max_combiner({0.1f, 0.6f, 0.6f});
  BOOST_TEST((wm.weight[0] == 0.0f && wm.weight[1] == 1.0f && wm.weight[2] == 0.0f));
  BOOST_TEST(answer_confidence({"paris"}, {{"paris"}, {"lyon"}, {"paris"}, {"the", "paris"}}) ==
             0.5f);
}
