// The C++ sequential ARMT executor against the PyTorch reference of tools/make_armt_goldens.py
// (float64 reference, float32 here): every logit of every segment and every layer's A and z after
// every segment, for the llama and gpt2 cases (three sequences each, short last segments).
#define BOOST_TEST_MODULE armt_goldens
#include "armt_helpers.hpp"

using namespace cbtest;

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
