// ARMT's memory really carries information across segments, and bad ARMT inputs fail clearly.
#define BOOST_TEST_MODULE armt_memory
#include <filesystem>

#include "armt_helpers.hpp"

using namespace cbtest;

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
