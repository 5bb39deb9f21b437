// ARMT on the GPU (recurrent/cuda/): the CUDA sequential executor against the PyTorch goldens and
// the CPU executor (float32), and the CUDA diagonal executor against the CUDA sequential one:
// with one matmul per member (the sequential executor's exact calls) every logit and every
// layer's A and z after every segment within 1e-6 of the tensor's scale and segment 0 exact; with
// the strided-batched grouped matmuls within 1e-6; in bfloat16 within the dtype's tolerance; for
// N = 1..16 segments on a 5-layer model (L > N and L < N), short last segments, batch 3, and the
// amortised mode (sequences streamed back to back).
#define BOOST_TEST_MODULE cuda_armt
#include "gpu_main.hpp"
// gpu_main.hpp first: it configures Boost.Test for everything below.

#include "crossbatch/recurrent/cuda/executors.cuh"
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

}  // namespace

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
    const stacked_layers<float> stack(gm.base);
    check_same(armt_diagonal(gctx(), gm, stack, seqs, opt), h, dtype_traits<float>::atol, false,
               name + " CUDA diagonal vs CPU");
  }
}

template <class T>
void sweep(const std::vector<int>& counts) {
  constexpr int S = 4, M = 2, D_MEM = 8;
  const auto dir = cbtest::tiny_armt_dir("llama", 5, S, M, D_MEM);
  const auto m = cuda_armt<T>::load(dir);
  const stacked_layers<T> stack(m.base);
  const bool f32 = std::is_same_v<T, float>;
  const double tol = f32 ? 1e-6 : dtype_traits<T>::atol;
  const armt_options opt{.record_states = true};
  for (int n : counts) {
    const auto seqs = cbtest::random_sequences({n * S, n * S - 1, std::max(1, (n - 1) * S - 2)},
                                               m.config().vocab_size, 100 + n);
    const auto seq = armt_sequential(gctx(), m, seqs, opt);
    const std::string what = std::string(dtype_traits<T>::name) + " N=" + std::to_string(n);
    check_same(armt_diagonal(gctx(), m, stack, seqs, opt, false), seq, tol, f32,
               what + " per-member matmuls");
    // Batch 1: every step's members are uniform, so the strided-batched path runs.
    const std::vector<std::vector<int>> one{seqs[1]};
    const auto alone = armt_sequential(gctx(), m, one, opt);
    check_same(armt_diagonal(gctx(), m, stack, one, opt, true), alone, tol, false,
               what + " strided-batched");
    // Amortised: the three sequences streamed back to back; sequence 1 against it alone.
    const auto amortised =
        armt_diagonal(gctx(), m, stack, seqs, opt, true, diagonal_mode::amortised);
    armt_result pick;
    pick.logits.push_back(amortised.logits[1].clone());
    pick.A_trace.push_back(amortised.A_trace[1].clone());
    pick.z_trace.push_back(amortised.z_trace[1].clone());
    check_same(pick, alone, tol, false, what + " amortised");
  }
}

BOOST_AUTO_TEST_CASE(diagonal_equals_sequential_float32) {
  std::vector<int> n(16);
  std::iota(n.begin(), n.end(), 1);
  sweep<float>(n);
}
BOOST_AUTO_TEST_CASE(diagonal_equals_sequential_bfloat16) { sweep<bfloat16>({1, 4, 9}); }
