// ARMT on the CPU (include/crossbatch/recurrent/), three suites:
// goldens:
//   The C++ sequential ARMT executor against the PyTorch reference of tools/make_armt_goldens.py
//   (float64 reference, float32 here): every logit of every segment and every layer's A and z after
//   every segment, for the llama and gpt2 cases (three sequences each, short last segments).
// diagonal:
//   The diagonal executor against the sequential one: every logit and every layer's A and z after
//   every segment within 1e-6 of the tensor's scale in float32 (the same association order), segment
//   0 exactly equal at every layer, for N = 1..16 segments on models with more layers than segments
//   and fewer (L = 5 llama, L = 3 gpt2), with short last segments, a batch of sequences of different
//   lengths in lock step, and the amortised mode (sequences streamed back to back); in bfloat16
//   within the dtype's tolerance.
// memory:
//   ARMT's memory really carries information across segments, and bad ARMT inputs fail clearly.
#define BOOST_TEST_MODULE armt
#include <filesystem>

#include "armt_helpers.hpp"

using namespace cbtest;

BOOST_AUTO_TEST_SUITE(goldens)

namespace {

void check_case(const std::string& name) {
  const auto dir = armt_case_dir(name);
  const auto model = armt_model<float>::load(dir + "model");
  std::vector<std::vector<int>> seqs;
  for (int b = 0; b < 3; ++b) seqs.push_back(load_ids(dir + "seq" + std::to_string(b) + "_ids.npy"));
  const auto r = armt_sequential(cpu_context(1), model, seqs, {.record_states = true});
  const double tol = dtype_traits<float>::atol;
  for (int b = 0; b < 3; ++b) {
    const std::string s = dir + "seq" + std::to_string(b);
    const auto want_logits = load_npy<float>(s + "_logits.npy");
    const auto want_A = load_npy<float>(s + "_A.npy");
    const auto want_z = load_npy<float>(s + "_z.npy");
    BOOST_REQUIRE(r.logits[b].shape() == want_logits.shape());
    BOOST_REQUIRE(r.A_trace[b].shape() == want_A.shape());
    BOOST_REQUIRE(r.z_trace[b].shape() == want_z.shape());
    auto st = compare_scaled(r.logits[b], want_logits, tol);
    BOOST_TEST(st.ok(), name << " seq" << b << " logits: " << st.summary());
    st = compare_scaled(r.A_trace[b], want_A, tol);
    BOOST_TEST(st.ok(), name << " seq" << b << " A: " << st.summary());
    st = compare_scaled(r.z_trace[b], want_z, tol);
    BOOST_TEST(st.ok(), name << " seq" << b << " z: " << st.summary());
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(llama_sequential_matches_pytorch) { check_case("llama"); }
BOOST_AUTO_TEST_CASE(gpt2_sequential_matches_pytorch) { check_case("gpt2"); }

// Generation: the last segment's prefill with reads and no writes, then KV-cached decode, against
// the reference's cache-free recomputation (teacher-forced logits at every step, greedy tokens).
namespace {
void check_generation(const std::string& name, bool diagonal) {
  const auto dir = armt_case_dir(name);
  const auto model = armt_model<float>::load(dir + "model");
  const auto ctx = cpu_context(1);
  const std::vector<std::vector<int>> seqs{load_ids(dir + "gen_ids.npy")};
  const auto want_tokens = load_ids(dir + "gen_tokens.npy");
  const auto want_logits = load_npy<float>(dir + "gen_logits.npy");  // (steps, V)
  const index_t steps = want_logits.dim(0), v = want_logits.dim(1);
  auto prefix = armt_prefill_memory(ctx, model, seqs, diagonal);
  BOOST_TEST(prefix.reads[0]);
  batch_session<float> session(ctx, model.base, prefix.last_segment, int(steps));
  armt_step<float> policy(session, model, prefix);
  for (index_t k = 0; k < steps; ++k) {
    if (k == 0) {
      policy.prefill();
    } else {
      tensor<std::int32_t> ids({1});
      ids(0) = want_tokens[k - 1];
      policy.step(ids.view(), nullptr);
    }
    tensor<float> want({1, v});
    std::copy_n(want_logits.data() + k * v, v, want.data());
    const auto st = compare_scaled(session.logits_host(), want, dtype_traits<float>::atol);
    BOOST_TEST(st.ok(), name << " step " << k << " logits: " << st.summary());
  }
  const auto r = armt_generate(ctx, model, seqs, greedy{},
                               generation_options{.max_new_tokens = int(steps), .stop_at_eos = false},
                               diagonal);
  BOOST_TEST(r.tokens[0] == want_tokens, name << ": greedy tokens differ");
}
}  // namespace

BOOST_AUTO_TEST_CASE(llama_generation_matches_pytorch) {
  check_generation("llama", false);
  check_generation("llama", true);
}
BOOST_AUTO_TEST_CASE(gpt2_generation_matches_pytorch) {
  check_generation("gpt2", false);
  check_generation("gpt2", true);
}

BOOST_AUTO_TEST_SUITE_END()  // goldens

BOOST_AUTO_TEST_SUITE(diagonal)

namespace {

constexpr int S = 4, M = 2, D_MEM = 8;

template <class T>
void check_same(const armt_result& got, const armt_result& want, double tol,
                const std::string& what) {
  BOOST_REQUIRE_EQUAL(got.logits.size(), want.logits.size());
  for (std::size_t b = 0; b < want.logits.size(); ++b) {
    const std::string w = what + " seq " + std::to_string(b);
    auto st = compare_scaled(got.logits[b], want.logits[b], tol);
    BOOST_TEST(st.ok(), w << " logits: " << st.summary());
    BOOST_TEST_MESSAGE(w << ": max |logit diff| " << st.max_abs << " of max |logit| " << st.max_ref
                         << ", max |A| " << compare(want.A_trace[b], want.A_trace[b]).max_ref);
    st = compare_scaled(got.A_trace[b], want.A_trace[b], tol);
    BOOST_TEST(st.ok(), w << " A: " << st.summary());
    st = compare_scaled(got.z_trace[b], want.z_trace[b], tol);
    BOOST_TEST(st.ok(), w << " z: " << st.summary());
    // Segment 0 of every layer: exactly the sequential value.
    const index_t a0 = want.A_trace[b].size() / want.A_trace[b].dim(0);
    const index_t z0 = want.z_trace[b].size() / want.z_trace[b].dim(0);
    st = compare(got.A_trace[b].data(), want.A_trace[b].data(), std::size_t(a0));
    BOOST_TEST(st.ok(), w << " segment 0 A not exact: " << st.summary());
    st = compare(got.z_trace[b].data(), want.z_trace[b].data(), std::size_t(z0));
    BOOST_TEST(st.ok(), w << " segment 0 z not exact: " << st.summary());
  }
}

template <class T>
void sweep(const std::string& family, int layers, const std::vector<int>& segment_counts) {
  const auto dir = tiny_armt_dir(family, layers, S, M, D_MEM);
  const auto model = armt_model<T>::load(dir);
  const auto ctx = cpu_context(1);
  const armt_options opt{.record_states = true};
  const double tol = std::is_same_v<T, float> ? 1e-6 : dtype_traits<T>::atol;
  for (int n : segment_counts) {
    // A full-length sequence of n segments, one with a short last segment, one shorter still.
    std::vector<int> lengths{n * S, n * S - 1, std::max(1, (n - 1) * S - 2)};
    const auto seqs = random_sequences(lengths, model.config().vocab_size, 100 + n);
    const auto seq = armt_sequential(ctx, model, seqs, opt);
    const std::string what = family + " L=" + std::to_string(layers) + " N=" + std::to_string(n);
    check_same<T>(armt_diagonal(ctx, model, seqs, opt), seq, tol, what + " lockstep");
    // Amortised: one sequence per slice; compare with each sequence run alone.
    const auto amortised = armt_diagonal(ctx, model, seqs, opt, diagonal_mode::amortised);
    for (std::size_t b = 0; b < seqs.size(); ++b) {
      auto alone = armt_sequential(ctx, model, {seqs[b]}, opt);
      armt_result one;
      one.logits.push_back(amortised.logits[b].clone());
      one.A_trace.push_back(amortised.A_trace[b].clone());
      one.z_trace.push_back(amortised.z_trace[b].clone());
      check_same<T>(one, alone, tol, what + " amortised seq " + std::to_string(b));
    }
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(llama_float32_n1_to_16) {
  std::vector<int> n(16);
  std::iota(n.begin(), n.end(), 1);
  sweep<float>("llama", 5, n);
}

BOOST_AUTO_TEST_CASE(gpt2_float32) { sweep<float>("gpt2", 3, {1, 2, 3, 4, 7}); }

BOOST_AUTO_TEST_CASE(llama_bfloat16) { sweep<bfloat16>("llama", 5, {1, 3, 6, 9}); }

// The diagonal schedule really interleaves: with more segments than layers the ramp-up, full and
// ramp-down steps all occur, and the number of grouped-layer calls is N + L - 1 (checked through
// the identical results above); here: a model whose memory is off equals the base model per
// segment in both executors.
BOOST_AUTO_TEST_CASE(memory_off_is_the_base_model_per_segment) {
  const auto dir = tiny_armt_dir("llama", 3, S, M, D_MEM);
  const auto model = armt_model<float>::load(dir);
  const auto ctx = cpu_context(1);
  const auto seqs = random_sequences({3 * S + 1}, model.config().vocab_size, 5);
  const armt_options off{.memory = false};
  const auto d = armt_diagonal(ctx, model, seqs, off);
  const auto s = armt_sequential(ctx, model, seqs, off);
  BOOST_TEST(compare(d.logits[0], s.logits[0]).ok());
  // Segment 1 alone (as the first segment of its own sequence) gives the same logits when memory
  // is off: no state crosses segments.
  const std::vector<std::vector<int>> second{{seqs[0].begin() + S, seqs[0].begin() + 2 * S}};
  const auto alone = armt_sequential(ctx, model, second, off);
  const auto v = model.config().vocab_size;
  const auto st = compare(d.logits[0].data() + S * v, alone.logits[0].data(), std::size_t(S * v));
  BOOST_TEST(st.ok(), st.summary());
}

BOOST_AUTO_TEST_SUITE_END()  // diagonal

BOOST_AUTO_TEST_SUITE(memory)

namespace {

constexpr int S = 4, M = 2, D_MEM = 4;

// Two sequences with the same last segment and different first segments.
std::vector<std::vector<int>> differing_first_segment(int vocab) {
  auto a = random_sequences({3 * S}, vocab, 7)[0];
  auto b = a;
  for (int i = 0; i < S; ++i) b[i] = (a[i] + 1 + i) % vocab;
  return {a, b};
}

// Max |logit difference| between the two sequences' last segments.
double last_segment_difference(const armt_result& r, int vocab) {
  const std::size_t n = std::size_t(S) * vocab, off = std::size_t(2 * S) * vocab;
  return compare(r.logits[0].data() + off, r.logits[1].data() + off, n).max_abs;
}

template <class E>
auto says(const std::string& part) {
  return [part](const E& e) {
    const bool ok = std::string(e.what()).find(part) != std::string::npos;
    if (!ok) BOOST_TEST_MESSAGE("message was: " << e.what());
    return ok;
  };
}

}  // namespace

BOOST_AUTO_TEST_CASE(an_earlier_segment_changes_the_last_logits_only_through_memory) {
  const auto model = armt_model<float>::load(tiny_armt_dir("llama", 2, S, M, D_MEM, 3, 1.0f));
  const int v = model.config().vocab_size;
  const auto seqs = differing_first_segment(v);
  const auto ctx = cpu_context(1);
  for (const bool diagonal : {false, true}) {
    const auto run = [&](bool memory) {
      const armt_options opt{.memory = memory};
      return diagonal ? armt_diagonal(ctx, model, seqs, opt) : armt_sequential(ctx, model, seqs, opt);
    };
    BOOST_TEST(last_segment_difference(run(true), v) > 1e-2, "memory on: segment 0 must matter");
    BOOST_TEST(last_segment_difference(run(false), v) == 0.0, "memory off: it must not");
  }
  // Generation: the prefill of the (identical) last segments reads different memories.
  std::vector<tensor<float>> first_logits;
  for (const auto& s : seqs) {
    auto prefix = armt_prefill_memory(ctx, model, {s});
    batch_session<float> session(ctx, model.base, prefix.last_segment, 1);
    armt_step<float> policy(session, model, prefix);
    policy.prefill();
    first_logits.push_back(session.logits_host());
  }
  BOOST_TEST(compare(first_logits[0], first_logits[1]).max_abs > 1e-2);
}

BOOST_AUTO_TEST_CASE(zero_value_projection_is_inert) {
  // The reference initialises W_mv to zero: a fresh wrapper's reads add exactly 0.
  const auto model = armt_model<float>::load(tiny_armt_dir("gpt2", 2, S, M, D_MEM, 4, 0.0f));
  const auto seqs = random_sequences({3 * S + 2}, model.config().vocab_size, 8);
  const auto ctx = cpu_context(1);
  const auto on = armt_sequential(ctx, model, seqs);
  const auto off = armt_sequential(ctx, model, seqs, {.memory = false});
  BOOST_TEST(compare(on.logits[0], off.logits[0]).ok());
}

BOOST_AUTO_TEST_CASE(the_goldens_see_the_memory) {
  // Without memory the C++ side misses the reference's later segments (so the golden test can
  // fail), while segment 0, which reads nothing, still matches.
  const auto dir = armt_case_dir("llama");
  const auto model = armt_model<float>::load(dir + "model");
  const auto ids = load_ids(dir + "seq0_ids.npy");
  const auto want = load_npy<float>(dir + "seq0_logits.npy");
  const auto r = armt_sequential(cpu_context(1), model, {ids}, {.memory = false});
  const auto s = std::size_t(model.armt.segment_size) * model.config().vocab_size;
  const double tol = dtype_traits<float>::atol * 10;
  BOOST_TEST(compare(r.logits[0].data(), want.data(), s, tol).ok());
  BOOST_TEST(!compare(r.logits[0].data() + s, want.data() + s, want.size() - s, tol).ok());
}

BOOST_AUTO_TEST_CASE(bad_configs_and_tensors_give_clear_errors) {
  const auto dir = tiny_armt_dir("llama", 2, S, M, D_MEM);
  const auto base = load_config(dir + "/config.json");
  const json good = read_json_file(dir + "/armt_config.json");
  auto with = [&](const std::string& key, json value) {
    json j = good;
    if (value.is_null())
      j.erase(key);
    else
      j[key] = value;
    return j;
  };
  BOOST_CHECK_EXCEPTION(parse_armt_config(with("segment_size", nullptr), base, "x.json"),
                        config_error, says<config_error>("segment_size"));
  BOOST_CHECK_EXCEPTION(parse_armt_config(with("num_mem_tokens", 0), base, "x.json"), config_error,
                        says<config_error>("num_mem_tokens"));
  BOOST_CHECK_EXCEPTION(parse_armt_config(with("d_mem", "64"), base, "x.json"), config_error,
                        says<config_error>("d_mem"));
  BOOST_CHECK_EXCEPTION(parse_armt_config(with("wrap_pos", true), base, "x.json"), config_error,
                        says<config_error>("wrap_pos"));
  BOOST_CHECK_EXCEPTION(parse_armt_config(json::array(), base, "x.json"), config_error,
                        says<config_error>("x.json"));

  // A W_mq of the wrong shape, a missing W_mv, a missing armt_config.json.
  const std::string q = "memory_cell.model.model.layers.1.W_mq.weight";
  save_npy(dir + "/" + q + ".npy", random_tensor<float>({D_MEM + 1, 32}, 1));
  BOOST_CHECK_EXCEPTION(armt_model<float>::load(dir), shape_error, says<shape_error>(q));
  save_npy(dir + "/" + q + ".npy", random_tensor<float>({D_MEM, 32}, 1));
  const std::string v = dir + "/memory_cell.model.model.layers.0.W_mv.weight.npy";
  std::filesystem::remove(v);
  BOOST_CHECK_EXCEPTION(armt_model<float>::load(dir), format_error,
                        says<format_error>("W_mv.weight"));
  save_npy(v, random_tensor<float>({32, 32}, 2));
  const auto model = armt_model<float>::load(dir);  // repaired
  std::filesystem::remove(dir + "/armt_config.json");
  BOOST_CHECK_EXCEPTION(armt_model<float>::load(dir), io_error, says<io_error>("armt_config.json"));

  // Bad inputs.
  const auto ctx = cpu_context(1);
  BOOST_CHECK_EXCEPTION(armt_sequential(ctx, model, {{1, 2}, {}}), value_error,
                        says<value_error>("sequence 1 is empty"));
  BOOST_CHECK_EXCEPTION(armt_diagonal(ctx, model, {{1, 2, 5000}}), value_error,
                        says<value_error>("5000"));
  BOOST_CHECK_EXCEPTION(armt_diagonal(ctx, model, {}), value_error, says<value_error>("no sequences"));
}

BOOST_AUTO_TEST_SUITE_END()  // memory
