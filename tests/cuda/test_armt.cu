// ARMT on the GPU (recurrent/cuda/): the pinned strided-batched matmul is batch-invariant (a
// member's bits do not depend on the batch count) and equals a CPU product within the dtype's
// tolerance; the CUDA sequential executor matches the PyTorch goldens and the CPU executor
// (float32); the CUDA diagonal executor matches the CUDA sequential one on its fast path
// (strided-batched grouped matmuls, batched memory updates) and with one matmul per member:
// every logit and every layer's A and z after every segment within 1e-6 of the tensor's scale in
// float32 and segment 0 exact, within the dtype's tolerance in bfloat16; for N = 1..16 segments on
// a 5-layer model (L > N and L < N), short last segments, batches of 1, 2 (uniform groups) and 3
// (groups of unequal size), and the amortised mode (sequences streamed back to back).
// Generation on the GPU (last segment prefilled with reads and no writes, KV-cached decode): the
// PyTorch goldens' teacher-forced logits and greedy tokens, and the CPU's tokens and logits for a
// batch of three (one of a single segment, which reads nothing).
#define BOOST_TEST_MODULE cuda_armt
#include "gpu_main.hpp"
// gpu_main.hpp first: it configures Boost.Test for everything below.

#include <random>

#include "crossbatch/recurrent/cuda/generate.cuh"
#include "recurrent/armt_helpers.hpp"

using namespace crossbatch;
using namespace cbgpu;
using cbtest::compare;
using cbtest::compare_scaled;

namespace {

void check_same(const armt_result& got, const armt_result& want, double tol, bool exact_first,
                const std::string& what) {
  BOOST_REQUIRE_EQUAL(got.logits.size(), want.logits.size());
  for (std::size_t b = 0; b < want.logits.size(); ++b) {
    const std::string w = what + " seq " + std::to_string(b);
    auto st = compare_scaled(got.logits[b], want.logits[b], tol);
    BOOST_TEST(st.ok(), w << " logits: " << st.summary());
    BOOST_TEST_MESSAGE(w << ": max |logit diff| " << st.max_abs);
    if (want.A_trace.empty()) continue;
    BOOST_REQUIRE(!got.A_trace.empty());
    st = compare_scaled(got.A_trace[b], want.A_trace[b], tol);
    BOOST_TEST(st.ok(), w << " A: " << st.summary());
    st = compare_scaled(got.z_trace[b], want.z_trace[b], tol);
    BOOST_TEST(st.ok(), w << " z: " << st.summary());
    if (!exact_first) continue;
    const std::size_t a0 = std::size_t(want.A_trace[b].size() / want.A_trace[b].dim(0));
    const std::size_t z0 = std::size_t(want.z_trace[b].size() / want.z_trace[b].dim(0));
    BOOST_TEST(compare(got.A_trace[b].data(), want.A_trace[b].data(), a0).ok(),
               w << " segment 0 A not exact");
    BOOST_TEST(compare(got.z_trace[b].data(), want.z_trace[b].data(), z0).ok(),
               w << " segment 0 z not exact");
  }
}

armt_result pick(const armt_result& r, std::size_t b) {
  armt_result out;
  out.logits.push_back(r.logits[b].clone());
  if (!r.A_trace.empty()) {
    out.A_trace.push_back(r.A_trace[b].clone());
    out.z_trace.push_back(r.z_trace[b].clone());
  }
  return out;
}

template <class T>
void batch_invariance(index_t n, index_t in, index_t o, bool bias) {
  constexpr int G = 16;
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> u(-1, 1);
  auto fill = [&](shape_t s) {
    tensor<T> t(std::move(s));
    for (index_t i = 0; i < t.size(); ++i) t.data()[i] = T(u(gen));
    return t;
  };
  const auto x = fill({G, n, in}), w = fill({G, o, in}), b = fill({G, o});
  const auto dx = to_device<gpu>(x), dw = to_device<gpu>(w), db = to_device<gpu>(b);
  tensor<T, gpu> all({G, n, o}), one({1, n, o});
  auto bias_range = [&](index_t g0, index_t cnt) {
    return bias ? tensor_view<const T, gpu>(db.data() + g0 * o, {cnt, o}) : tensor_view<const T, gpu>();
  };
  for (int count : {1, 3, G}) {
    strided_batched_linear(gctx(), tensor_view<T, gpu>(all.data(), {count, n, o}),
                           tensor_view<const T, gpu>(dx.data(), {count, n, in}),
                           tensor_view<const T, gpu>(dw.data(), {count, o, in}), bias_range(0, count));
    const auto host_all = to_host(all);
    for (int g = 0; g < count; ++g) {
      strided_batched_linear(gctx(), one.view(), tensor_view<const T, gpu>(dx.data() + g * n * in, {1, n, in}),
                             tensor_view<const T, gpu>(dw.data() + g * o * in, {1, o, in}),
                             bias_range(g, 1));
      const auto host_one = to_host(one);
      const std::string what = std::string(dtype_traits<T>::name) + " " + std::to_string(n) + "x" +
                               std::to_string(in) + "x" + std::to_string(o) + " member " +
                               std::to_string(g) + " of " + std::to_string(count);
      BOOST_TEST(compare(host_all.data() + g * n * o, host_one.data(), std::size_t(n * o)).ok(),
                 what << ": batched bits differ from the lone call");
      // An independent product on the host (double accumulation).
      tensor<float> want({n, o});
      for (index_t r = 0; r < n; ++r)
        for (index_t j = 0; j < o; ++j) {
          double s = bias ? double(float(b.data()[g * o + j])) : 0.0;
          for (index_t k = 0; k < in; ++k)
            s += double(float(x.data()[(g * n + r) * in + k])) * double(float(w.data()[(g * o + j) * in + k]));
          want.data()[r * o + j] = float(s);
        }
      tensor<float> got({n, o});
      for (index_t i = 0; i < n * o; ++i) got.data()[i] = float(host_one.data()[i]);
      const auto st = compare(got, want, dtype_traits<T>::atol * std::sqrt(double(in)), dtype_traits<T>::rtol);
      BOOST_TEST(st.ok(), what << " vs host: " << st.summary());
    }
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(pinned_matmul_is_batch_invariant) {
  batch_invariance<float>(6, 32, 96, true);
  batch_invariance<float>(256, 384, 200, false);
  batch_invariance<float>(2, 2, 48, false);  // the memory write's gamma^T k shape
  batch_invariance<bfloat16>(6, 32, 96, false);
  batch_invariance<bfloat16>(130, 256, 512, true);
  BOOST_TEST(pinned_fallbacks().load() == 0, "calls that ran without their pinned algorithm");
}

BOOST_AUTO_TEST_CASE(sequential_matches_pytorch_and_cpu) {
  for (const std::string name : {"llama", "gpt2"}) {
    const auto dir = cbtest::armt_case_dir(name);
    const auto gm = cuda_armt<float>::load(dir + "model");
    const auto cm = armt_model<float>::load(dir + "model");
    std::vector<std::vector<int>> seqs;
    for (int b = 0; b < 3; ++b)
      seqs.push_back(cbtest::load_ids(dir + "seq" + std::to_string(b) + "_ids.npy"));
    const armt_options opt{.record_states = true};
    const auto g = armt_sequential(gctx(), gm, seqs, opt);
    const auto h = armt_sequential(cpu_context(1), cm, seqs, opt);
    check_same(g, h, dtype_traits<float>::atol, false, name + " CUDA vs CPU");
    for (int b = 0; b < 3; ++b) {
      const auto want = load_npy<float>(dir + "seq" + std::to_string(b) + "_logits.npy");
      const auto st = compare_scaled(g.logits[b], want, dtype_traits<float>::atol);
      BOOST_TEST(st.ok(), name << " seq" << b << " CUDA vs PyTorch: " << st.summary());
    }
    check_same(armt_diagonal(gctx(), gm, seqs, opt), h, dtype_traits<float>::atol, false,
               name + " CUDA diagonal vs CPU");
    check_same(armt_diagonal(gctx(), gm, seqs, opt), g, 1e-6, true,
               name + " CUDA diagonal vs CUDA sequential");
  }
}

template <class T>
void sweep(const std::vector<int>& counts) {
  constexpr int S = 4, M = 2, D_MEM = 8;
  const auto dir = cbtest::tiny_armt_dir("llama", 5, S, M, D_MEM);
  const auto m = cuda_armt<T>::load(dir);
  const bool f32 = std::is_same_v<T, float>;
  const double tol = f32 ? 1e-6 : dtype_traits<T>::atol;
  const armt_options opt{.record_states = true};
  for (int n : counts) {
    const std::string what = std::string(dtype_traits<T>::name) + " N=" + std::to_string(n);
    // Batch 3 of unequal lengths (short last segments; groups of unequal size at the ends).
    const auto seqs = cbtest::random_sequences({n * S, n * S - 1, std::max(1, (n - 1) * S - 2)},
                                               m.config().vocab_size, 100 + n);
    const auto seq = armt_sequential(gctx(), m, seqs, opt);
    check_same(armt_diagonal(gctx(), m, seqs, opt), seq, tol, f32, what + " batch 3 fast path");
    check_same(armt_diagonal(gctx(), m, seqs, opt, gemm_mode::per_member), seq, tol, f32,
               what + " batch 3 per-member matmuls");
    // Batch 1 and batch 2 of equal lengths: every step's members are uniform, so every
    // projection of a step is one strided-batched matmul.
    const std::vector<std::vector<int>> one{seqs[1]}, two{seqs[0], seqs[0]};
    const auto alone = armt_sequential(gctx(), m, one, opt);
    check_same(armt_diagonal(gctx(), m, one, opt), alone, tol, f32, what + " batch 1 fast path");
    const auto pair = armt_sequential(gctx(), m, two, opt);
    check_same(armt_diagonal(gctx(), m, two, opt), pair, tol, f32, what + " batch 2 fast path");
    // Amortised: the three sequences streamed back to back; sequence 1 against it alone.
    const auto amortised =
        armt_diagonal(gctx(), m, seqs, opt, gemm_mode::batched, diagonal_mode::amortised);
    check_same(pick(amortised, 1), alone, tol, f32, what + " amortised");
  }
  BOOST_TEST(pinned_fallbacks().load() == 0, "calls that ran without their pinned algorithm");
}

BOOST_AUTO_TEST_CASE(diagonal_equals_sequential_float32) {
  std::vector<int> n(16);
  std::iota(n.begin(), n.end(), 1);
  sweep<float>(n);
}
BOOST_AUTO_TEST_CASE(diagonal_equals_sequential_bfloat16) { sweep<bfloat16>({1, 4, 9, 16}); }

// CUDA generation against the PyTorch reference's cache-free recomputation (as the CPU suite).
void check_generation(const std::string& name, bool diagonal) {
  const auto dir = cbtest::armt_case_dir(name);
  const auto model = cuda_armt<float>::load(dir + "model");
  const std::vector<std::vector<int>> seqs{cbtest::load_ids(dir + "gen_ids.npy")};
  const auto want_tokens = cbtest::load_ids(dir + "gen_tokens.npy");
  const auto want_logits = load_npy<float>(dir + "gen_logits.npy");  // (steps, V)
  const index_t steps = want_logits.dim(0), v = want_logits.dim(1);
  auto prefix = armt_prefill_memory(gctx(), model, seqs, diagonal);
  BOOST_TEST(prefix.reads[0]);
  batch_session<float, gpu> session(gctx(), model.base, prefix.last_segment, int(steps));
  cuda_armt_step<float> policy(session, model, prefix);
  tensor<std::int32_t, gpu> ids({1});
  for (index_t k = 0; k < steps; ++k) {
    if (k == 0) {
      policy.prefill();
    } else {
      const std::int32_t id = want_tokens[k - 1];
      device_traits<gpu>::upload(ids.data(), &id, sizeof(id));
      policy.step(tensor_view<const std::int32_t, gpu>(ids.view()), nullptr);
    }
    tensor<float> want({1, v});
    std::copy_n(want_logits.data() + k * v, v, want.data());
    const auto got = to_host(policy.logits());
    const auto st = compare_scaled(got, want, dtype_traits<float>::atol);
    BOOST_TEST(st.ok(), name << " CUDA step " << k << " logits: " << st.summary());
  }
  const auto r = armt_generate(gctx(), model, seqs, greedy{},
                               generation_options{.max_new_tokens = int(steps), .stop_at_eos = false},
                               diagonal);
  BOOST_TEST(r.tokens[0] == want_tokens, name << ": CUDA greedy tokens differ");
}

BOOST_AUTO_TEST_CASE(generation_matches_pytorch) {
  for (const std::string name : {"llama", "gpt2"}) {
    check_generation(name, false);
    check_generation(name, true);
  }
}

BOOST_AUTO_TEST_CASE(generation_matches_cpu) {
  constexpr int S = 4, M = 2, D_MEM = 8;
  const auto dir = cbtest::tiny_armt_dir("llama", 3, S, M, D_MEM);
  const auto gm = cuda_armt<float>::load(dir);
  const auto cm = armt_model<float>::load(dir);
  const auto seqs = cbtest::random_sequences({11, 4, 9}, gm.config().vocab_size, 5);
  const generation_options opt{.max_new_tokens = 6, .stop_at_eos = false};
  const auto want = armt_generate(cpu_context(1), cm, seqs, greedy{}, opt, true);
  for (bool diagonal : {false, true}) {
    const auto got = armt_generate(gctx(), gm, seqs, greedy{}, opt, diagonal);
    for (std::size_t b = 0; b < seqs.size(); ++b)
      BOOST_TEST(got.tokens[b] == want.tokens[b],
                 "sequence " << b << (diagonal ? " (diagonal)" : " (sequential)")
                             << ": CUDA greedy tokens differ from the CPU's");
  }
  // The last segments' prefill logits (reads, no writes) within float32 tolerance.
  auto gp = armt_prefill_memory(gctx(), gm, seqs, true);
  auto cp = armt_prefill_memory(cpu_context(1), cm, seqs, true);
  BOOST_TEST(!gp.reads[1]);
  batch_session<float, gpu> gs(gctx(), gm.base, gp.last_segment, 1);
  batch_session<float> cs(cpu_context(1), cm.base, cp.last_segment, 1);
  cuda_armt_step<float> gpol(gs, gm, gp);
  armt_step<float> cpol(cs, cm, cp);
  gpol.prefill();
  cpol.prefill();
  const auto st = compare_scaled(to_host(gpol.logits()), cs.logits_host(), dtype_traits<float>::atol);
  BOOST_TEST(st.ok(), "prefill logits CUDA vs CPU: " << st.summary());
}
