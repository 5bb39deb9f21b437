// The generation engine on the CPU: the ported drivers give the tokens the pre-engine loops gave
// (tests/data/port_outputs.json, recorded at commit 14aa177 with the old generate() and
// cross_batch_generate()); the segmented layout equals a brute-force dense-mask forward, keeps
// segments independent and lets the suffix and generated tokens see every segment; layouts reject
// bad spans; block hooks run where they say; logit combiners match their formulas and LDA with
// alpha 0 (or two identical models) is the plain model.
#define BOOST_TEST_MODULE engine
#include <boost/test/data/test_case.hpp>
#include <fstream>

#include "crossbatch/generate/cross_batch.hpp"
#include "crossbatch/generate/generate.hpp"
#include "mix/mix_helpers.hpp"
#include "tiny_models.hpp"

using namespace crossbatch;
namespace bdata = boost::unit_test::data;

namespace {

const std::vector<std::string> families = {"gpt2", "llama", "qwen2"};
context<cpu> ctx;

struct model_fixture {
  std::string dir;
  decoder_model<float> model;
  explicit model_fixture(const std::string& family, std::uint64_t seed = 1)
      : dir(cbtest::tiny_model_dir(family, seed)), model(decoder_model<float>::load(dir)) {}
  ~model_fixture() { std::filesystem::remove_all(dir); }
};

// Logits (T, V) of every position of `tokens` (one sequence, no padding) under an explicit
// dense mask visible[q][k] and explicit positions: the reference the layouts are checked against.
struct dense_mask {
  const std::vector<std::vector<char>>* visible;
  bool allowed(int, int q, int k) const { return (*visible)[q][k] != 0; }
  tile tile_kind(int, int, int, int, int) const { return tile::partial; }
};
tensor<float> dense_logits(const decoder_model<float>& m, const std::vector<int>& tokens,
                           const std::vector<int>& positions,
                           const std::vector<std::vector<char>>& visible) {
  const auto& c = m.config;
  const int t = static_cast<int>(tokens.size());
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

// The fusion rule written out per pair of tokens: segment ids per token (0 prefix, -1 suffix and
// generated, i > 0 an isolated run); q sees k when k <= q and (q is in the suffix, or k is in the
// prefix, or both are in the same run).
std::vector<std::vector<char>> fusion_visibility(const std::vector<int>& run) {
  const int n = static_cast<int>(run.size());
  std::vector<std::vector<char>> v(n, std::vector<char>(n, 0));
  for (int q = 0; q < n; ++q)
    for (int k = 0; k <= q; ++k) v[q][k] = run[q] == -1 || run[k] == 0 || run[k] == run[q];
  return v;
}

// Logits (T_real, V) of sequence s from a session paused after all layers (its residual stream).
tensor<float> session_logits(batch_session<float, cpu, segmented>& s, int seq) {
  const auto& c = s.model().config;
  const auto x = s.residual();  // (B, T, C)
  const int t = s.prompt_length(), pad = s.layout().pad(seq);
  tensor<float> h({t - pad, c.hidden_size}), logits({t - pad, c.vocab_size});
  const tensor_view<const float> rows(x.data + (index_t(seq) * t + pad) * c.hidden_size,
                                      {t - pad, c.hidden_size});
  s.model().final_norm(ctx, h.view(), rows);
  s.model().logits(ctx, logits.view(), tensor_view<const float>(h.view()));
  return logits;
}

tensor<float> rows(const tensor<float>& t, int first, int n) {
  tensor<float> out({n, t.dim(1)});
  std::copy_n(&t(first, 0), n * t.dim(1), out.data());
  return out;
}

// Two sequences of different lengths: prefix, three paraphrase segments with separators, suffix.
std::vector<segmented_prompt> fusion_prompts() {
  return {
      segmented_prompt::join({1, 2, 3}, {{10, 11, 12, 13}, {20, 21}, {30, 31, 32}}, {7}, {8, 9}),
      segmented_prompt::join({4}, {{40, 41}, {50, 51, 52, 53, 54}}, {}, {6})};
}
// Per token of p: 0 prefix, -1 suffix, i > 0 the i-th isolated run (segments and separator runs).
std::vector<int> runs_of(const segmented_prompt& p) {
  std::vector<int> run(p.tokens.size(), 0);
  const int prefix = p.segments.front().begin, suffix = p.segments.back().end;
  int id = 0;
  for (int t = prefix; t < suffix; ++t) {
    bool in_span = false, starts = false;
    for (const auto& s : p.segments) {
      in_span |= t >= s.begin && t < s.end;
      starts |= t == s.begin || t == s.end;
    }
    if (starts) ++id;
    run[t] = id;
    (void)in_span;
  }
  for (std::size_t t = suffix; t < p.tokens.size(); ++t) run[t] = -1;
  return run;
}

}  // namespace

BOOST_DATA_TEST_CASE(ported_drivers_give_the_pre_engine_tokens, bdata::make(families), family) {
  std::ifstream in(cbtest::data_dir() + "/port_outputs.json");
  BOOST_REQUIRE(in);
  const json want = json::parse(in)[family];
  const std::vector<std::vector<int>> prompts = {
      {5, 9, 13, 2, 7, 7, 30}, {3}, {11, 12, 40, 41}, {8, 8, 1, 60, 2}};
  model_fixture f(family, 7);
  generation_options o{.max_new_tokens = 12};
  o.stop_at_eos = false;
  BOOST_TEST(generate(ctx, f.model, prompts, greedy{}, o).tokens ==
             want["greedy"].get<std::vector<std::vector<int>>>());
  sampling_params sp{.do_sample = true, .temperature = 0.9f, .top_k = 20, .top_p = 0.95f};
  o.seed = 42;
  BOOST_TEST(generate(ctx, f.model, prompts, sp, o).tokens ==
             want["sampled"].get<std::vector<std::vector<int>>>());
  int checked = 0;
  for (auto v : cbtest::all_variants()) {
    auto cfg = cbtest::variant_config(v, f.model.config.hidden_size, 4, 16);
    cross_batch_mixer<float> mixer(cbtest::random_mixer<float>(cfg, 3, 0.3f));
    for (int layer : {-1, 1, 0})
      for (auto proj : {mix_projection::project, mix_projection::project_raw,
                        mix_projection::continue_layers}) {
        cross_batch_options co;
        co.max_new_tokens = 8;
        co.stop_at_eos = false;
        co.mix_layer = layer;
        co.projection = proj;
        co.groups = {0, 1, 0, 1};
        const std::string key = v.name() + "/" + std::to_string(layer) + "/" + to_string(proj);
        BOOST_TEST(cross_batch_generate(ctx, f.model, prompts, mixer, greedy{}, co).tokens ==
                       want["cross_batch"][key].get<std::vector<std::vector<int>>>(),
                   key);
        ++checked;
      }
  }
  BOOST_TEST(checked == 54);
}

BOOST_DATA_TEST_CASE(segmented_prefill_equals_a_dense_mask_forward,
                     bdata::make(families) * bdata::make({false, true}), family, restart) {
  model_fixture f(family);
  const auto prompts = fusion_prompts();
  batch_session<float, cpu, segmented> s(ctx, f.model, prompts, 4, segmented{restart});
  s.prefill_until(f.model.config.num_layers);
  for (int seq = 0; seq < 2; ++seq) {
    const auto& p = prompts[seq];
    const auto run = runs_of(p);
    // Positions: natural, or each run restarting at the prefix length and the suffix following
    // the longest run.
    std::vector<int> pos(p.tokens.size());
    const int prefix = p.segments.front().begin;
    int longest = 0;
    for (std::size_t t = 0; t < pos.size(); ++t) {
      pos[t] = int(t);
      if (restart && run[t] > 0) {
        int start = int(t);
        while (start > 0 && run[start - 1] == run[t]) --start;
        pos[t] = prefix + int(t) - start;
        longest = std::max(longest, pos[t] - prefix + 1);
      }
    }
    if (restart)
      for (std::size_t t = p.segments.back().end, i = 0; t < pos.size(); ++t, ++i)
        pos[t] = prefix + longest + int(i);
    const int pad = s.layout().pad(seq);
    for (std::size_t t = 0; t < pos.size(); ++t)
      BOOST_TEST(s.layout().positions(seq, pad + int(t)) == pos[t]);
    const auto want = dense_logits(f.model, p.tokens, pos, fusion_visibility(run));
    const auto got = session_logits(s, seq);
    cbtest::check_close<float>(got.view(), want.view(),
                               family + " sequence " + std::to_string(seq));
  }
}

BOOST_DATA_TEST_CASE(segments_are_isolated_and_the_suffix_sees_them_all, bdata::make(families),
                     family) {
  model_fixture f(family);
  auto prompts = fusion_prompts();
  batch_session<float, cpu, segmented> a(ctx, f.model, prompts, 2);
  a.prefill_until(f.model.config.num_layers);
  const auto base = session_logits(a, 0);
  // Change the second segment of sequence 0 (same length).
  auto changed = prompts;
  for (int t = changed[0].segments[1].begin; t < changed[0].segments[1].end; ++t)
    changed[0].tokens[t] += 40;
  batch_session<float, cpu, segmented> b(ctx, f.model, changed, 2);
  b.prefill_until(f.model.config.num_layers);
  const auto other = session_logits(b, 0);
  const auto& sp = prompts[0].segments;
  // Prefix, first segment, separators before segment 2 and the third segment: unchanged, exactly.
  const int third = sp[2].begin, third_len = sp[2].end - sp[2].begin;
  BOOST_TEST(cbtest::max_abs_diff(rows(base, 0, sp[1].begin).view(),
                                  rows(other, 0, sp[1].begin).view()) == 0.0f);
  BOOST_TEST(cbtest::max_abs_diff(rows(base, third, third_len).view(),
                                  rows(other, third, third_len).view()) == 0.0f);
  // The changed segment and the suffix (which sees every segment) move.
  BOOST_TEST(cbtest::max_abs_diff(rows(base, sp[1].begin, 2).view(),
                                  rows(other, sp[1].begin, 2).view()) > 1e-3f);
  const int last = int(prompts[0].tokens.size()) - 1;
  BOOST_TEST(cbtest::max_abs_diff(rows(base, last, 1).view(), rows(other, last, 1).view()) > 1e-3f);
  // Sequence 1 is untouched by sequence 0's change.
  BOOST_TEST(cbtest::max_abs_diff(session_logits(a, 1).view(), session_logits(b, 1).view()) ==
             0.0f);
}

BOOST_DATA_TEST_CASE(generated_tokens_see_every_segment, bdata::make(families), family) {
  model_fixture f(family);
  const auto prompts = fusion_prompts();
  // Decode three tokens with the session, then recompute each step densely (generated tokens see
  // everything before them).
  batch_session<float, cpu, segmented> s(ctx, f.model, prompts, 3);
  s.prefill();
  std::vector<std::vector<int>> fed(2);
  for (int step = 1; step < 3; ++step) {
    const auto l = s.logits_host();
    std::vector<std::int32_t> next;
    for (int q = 0; q < 2; ++q) {
      next.push_back(argmax(std::span<const float>(&l(q, 0), f.model.config.vocab_size)));
      fed[q].push_back(next.back());
    }
    s.step(next);
  }
  const auto got = s.logits_host();
  for (int q = 0; q < 2; ++q) {
    auto tokens = prompts[q].tokens;
    auto run = runs_of(prompts[q]);
    std::vector<int> pos;
    for (std::size_t t = 0; t < tokens.size() + fed[q].size(); ++t) pos.push_back(int(t));
    for (int id : fed[q]) tokens.push_back(id), run.push_back(-1);
    const auto want = dense_logits(f.model, tokens, pos, fusion_visibility(run));
    tensor<float> got_row({1, f.model.config.vocab_size});
    std::copy_n(&got(q, 0), got_row.size(), got_row.data());
    cbtest::check_close<float>(got_row.view(), rows(want, int(tokens.size()) - 1, 1).view(),
                               family + " step logits of sequence " + std::to_string(q));
  }
}

BOOST_AUTO_TEST_CASE(segmented_layout_rejects_bad_spans) {
  model_fixture f("llama");
  const auto make = [&](std::vector<segment_span> spans) {
    return batch_session<float, cpu, segmented>(
        ctx, f.model, {segmented_prompt{{1, 2, 3, 4, 5, 6}, std::move(spans)}}, 2);
  };
  BOOST_CHECK_THROW(make({{2, 4}, {3, 5}}), value_error);  // overlapping
  BOOST_CHECK_THROW(make({{3, 5}, {1, 2}}), value_error);  // out of order
  BOOST_CHECK_THROW(make({{4, 9}}), value_error);          // past the tokens
  BOOST_CHECK_THROW(make({{2, 2}}), value_error);          // empty
  BOOST_CHECK_NO_THROW(make({{1, 3}, {3, 6}}));
  // No spans: the whole prompt is the prefix, i.e. plain causal attention.
  batch_session<float, cpu, segmented> s(ctx, f.model, {segmented_prompt{{1, 2, 3, 4}, {}}}, 1);
  batch_session<float> plain(ctx, f.model, {{1, 2, 3, 4}}, 1);
  s.prefill();
  plain.prefill();
  BOOST_TEST(cbtest::max_abs_diff(s.logits_host().view(), plain.logits_host().view()) == 0.0f);
}

// Hooks: one that only observes changes nothing; one that zeroes the residual stream before the
// last block makes the logits those of the last block on zeros.
struct counting_hook : hooks_base {
  int* before;
  int* attention;
  int* after;
  void before_block(const context<cpu>&, int, tensor_view<float>) const { ++*before; }
  void after_attention(const context<cpu>&, int, tensor_view<float>) const { ++*attention; }
  void after_block(const context<cpu>&, int, tensor_view<float>) const { ++*after; }
};
struct zero_after_attention : hooks_base {
  static constexpr bool edits_after_attention = true;
  int layer;
  void after_attention(const context<cpu>&, int l, tensor_view<float> x) const {
    if (l == layer) std::fill_n(x.data, x.size(), 0.0f);
  }
};
struct zero_before : hooks_base {
  int layer;
  void before_block(const context<cpu>&, int l, tensor_view<float> x) const {
    if (l == layer) std::fill_n(x.data, x.size(), 0.0f);
  }
};

BOOST_DATA_TEST_CASE(block_hooks_run_at_their_points, bdata::make(families), family) {
  model_fixture f(family);
  const std::vector<std::vector<int>> prompts = {{5, 9, 13, 2}, {3, 4}};
  const int L = f.model.config.num_layers;
  batch_session<float> plain(ctx, f.model, prompts, 2), hooked(ctx, f.model, prompts, 2);
  plain.prefill();
  int before = 0, attention = 0, after = 0;
  hooked.prefill(counting_hook{{}, &before, &attention, &after});
  BOOST_TEST(before == L);
  BOOST_TEST(attention == L);
  BOOST_TEST(after == L);
  BOOST_TEST(cbtest::max_abs_diff(plain.logits_host().view(), hooked.logits_host().view()) == 0.0f);
  plain.step({7, 8});
  tensor<std::int32_t> ids({2});
  ids(0) = 7, ids(1) = 8;
  hooked.step(tensor_view<const std::int32_t>(ids.view()),
              counting_hook{{}, &before, &attention, &after});
  BOOST_TEST(before == 2 * L);
  BOOST_TEST(cbtest::max_abs_diff(plain.logits_host().view(), hooked.logits_host().view()) == 0.0f);
  // Zeroed input to the last block at every position: two different prompts of one length then
  // give equal logits (the last block sees the same zeros at the same positions); without the
  // hook they differ.
  const std::vector<std::vector<int>> two = {{5, 9, 13, 2}, {7, 1, 1, 3}};
  auto newest = [&](batch_session<float>& s) {
    const auto z = s.logits_host();
    return std::pair{rows(z, 0, 1), rows(z, 1, 1)};
  };
  batch_session<float> zeroed(ctx, f.model, two, 1), unhooked(ctx, f.model, two, 1);
  zeroed.prefill(zero_before{{}, L - 1});
  unhooked.prefill();
  const auto [z0, z1] = newest(zeroed);
  const auto [u0, u1] = newest(unhooked);
  BOOST_TEST(cbtest::max_abs_diff(z0.view(), z1.view()) == 0.0f);
  BOOST_TEST(cbtest::max_abs_diff(u0.view(), u1.view()) > 1e-3f);
  // Zeroed after the last block's attention: the MLP sees norm(0) for both prompts (the block
  // normalises again because the hook says it edits x).
  batch_session<float> za(ctx, f.model, two, 1);
  za.prefill(zero_after_attention{{}, L - 1});
  const auto [a0, a1] = newest(za);
  BOOST_TEST(cbtest::max_abs_diff(a0.view(), a1.view()) == 0.0f);
}

BOOST_AUTO_TEST_CASE(combiners_match_their_formulas) {
  const int b = 3, v = 50, m = 3;
  std::vector<tensor<float>> in;
  for (int i = 0; i < m; ++i) in.push_back(cbtest::random_tensor<float>({b, v}, 10 + i, -4, 4));
  std::vector<tensor_view<const float>> views;
  for (auto& t : in) views.push_back(t.view());
  const std::span<const tensor_view<const float>> all(views);
  tensor<float> out({b, v}), want({b, v});
  auto lse = [&](int i, int r) {
    double mx = -1e30, s = 0;
    for (int j = 0; j < v; ++j) mx = std::max(mx, double(in[i](r, j)));
    for (int j = 0; j < v; ++j) s += std::exp(double(in[i](r, j)) - mx);
    return mx + std::log(s);
  };
  auto check = [&](auto combiner, auto formula, std::span<const tensor_view<const float>> use,
                   const std::string& what) {
    combine_logits(ctx, combiner, out.view(), use);
    for (int r = 0; r < b; ++r)
      for (int j = 0; j < v; ++j) want(r, j) = float(formula(r, j));
    cbtest::check_close<float>(out.view(), want.view(), what);
  };
  check(
      identity_combiner{}, [&](int r, int j) { return in[0](r, j); }, all.first(1), "identity");
  check(
      lda_combiner{0.7f}, [&](int r, int j) { return 1.7 * in[0](r, j) - 0.7 * in[1](r, j); },
      all.first(2), "lda");
  check(
      mean_logits_combiner{},
      [&](int r, int j) { return (double(in[0](r, j)) + in[1](r, j) + in[2](r, j)) / 3; }, all,
      "mean");
  check(
      max_prob_combiner{},
      [&](int r, int j) {
        double best = 0;
        for (int i = 0; i < m; ++i) best = std::max(best, std::exp(in[i](r, j) - lse(i, r)));
        return std::log(best);
      },
      all, "max of probabilities");
  check(
      weighted_mean_combiner::from({1, 2, 5}),
      [&](int r, int j) {
        return (double(in[0](r, j)) + 2.0 * in[1](r, j) + 5.0 * in[2](r, j)) / 8;
      },
      all, "weighted mean");
  BOOST_CHECK_THROW(combine_logits(ctx, lda_combiner{}, out.view(), all), value_error);
  BOOST_CHECK_THROW(combine_logits(ctx, weighted_mean_combiner::from({0, 0, 0}), out.view(), all),
                    value_error);
}

BOOST_DATA_TEST_CASE(lda_reduces_to_the_after_model, bdata::make(families), family) {
  model_fixture after(family, 1), before(family, 2);
  const std::vector<std::vector<int>> prompts = {{5, 9, 13, 2, 7}, {3}, {11, 12, 40}};
  generation_options o{.max_new_tokens = 6};
  o.stop_at_eos = false;
  const auto& eos = stop_ids(o, after.model.config);
  const auto plain = generate(ctx, after.model, prompts, greedy{}, o);
  auto lda = [&, &after = after.model](const decoder_model<float>& second, float alpha,
                                       bool sample) {
    batch_session<float> a(ctx, after, prompts, o.max_new_tokens),
        b(ctx, second, prompts, o.max_new_tokens);
    combined_step<float, cpu, left_padded, lda_combiner> policy({&a, &b}, lda_combiner{alpha});
    if (!sample) return decode<float, cpu>(ctx, policy, greedy{}, o, eos);
    sampling_params sp{.do_sample = true, .temperature = 0.8f, .top_p = 0.9f};
    return decode<float, cpu>(ctx, policy, sp, o, eos);
  };
  BOOST_TEST(lda(before.model, 0.0f, false).tokens == plain.tokens);  // alpha 0: the after model
  BOOST_TEST(lda(after.model, 3.0f, false).tokens == plain.tokens);   // identical models
  sampling_params sp{.do_sample = true, .temperature = 0.8f, .top_p = 0.9f};
  BOOST_TEST(lda(before.model, 0.0f, true).tokens ==
             generate(ctx, after.model, prompts, sp, o).tokens);
  // A real difference at alpha 2 (the two random models disagree).
  BOOST_TEST(lda(before.model, 2.0f, false).tokens != plain.tokens);
  // Models of different vocabularies are refused.
  batch_session<float> a(ctx, after.model, prompts, 1);
  auto other_dir = cbtest::scratch_dir("other_vocab").string();
  auto cfg = cbtest::tiny_config(family);
  cfg["vocab_size"] = 120;
  write_random_model(other_dir, cfg, 3, 2.0f);
  const auto other = decoder_model<float>::load(other_dir);
  batch_session<float> c(ctx, other, prompts, 1);
  using policy_t = combined_step<float, cpu, left_padded, lda_combiner>;
  BOOST_CHECK_THROW(policy_t({&a, &c}, lda_combiner{1.0f}), value_error);
  std::filesystem::remove_all(other_dir);
}

BOOST_AUTO_TEST_CASE(ensemble_of_identical_models_is_the_model) {
  model_fixture f("qwen2");
  const std::vector<std::vector<int>> prompts = {{5, 9, 13, 2, 7}, {3, 1}};
  generation_options o{.max_new_tokens = 5};
  o.stop_at_eos = false;
  const auto plain = generate(ctx, f.model, prompts, greedy{}, o);
  batch_session<float> a(ctx, f.model, prompts, 5), b(ctx, f.model, prompts, 5);
  combined_step<float, cpu, left_padded, max_prob_combiner> maxp({&a, &b});
  const auto& eos = stop_ids(o, f.model.config);
  const auto by_max = decode<float, cpu>(ctx, maxp, greedy{}, o, eos);
  BOOST_TEST(by_max.tokens == plain.tokens);
  batch_session<float> c(ctx, f.model, prompts, 5), d(ctx, f.model, prompts, 5);
  combined_step<float, cpu, left_padded, mean_logits_combiner> mean({&c, &d});
  const auto by_mean = decode<float, cpu>(ctx, mean, greedy{}, o, eos);
  BOOST_TEST(by_mean.tokens == plain.tokens);
}
