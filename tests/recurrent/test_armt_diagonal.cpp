// The diagonal executor against the sequential one: every logit and every layer's A and z after
// every segment within 1e-6 of the tensor's scale in float32 (the same association order), segment
// 0 exactly equal at every layer, for N = 1..16 segments on models with more layers than segments
// and fewer (L = 5 llama, L = 3 gpt2), with short last segments, a batch of sequences of different
// lengths in lock step, and the amortised mode (sequences streamed back to back); in bfloat16
// within the dtype's tolerance.
#define BOOST_TEST_MODULE armt_diagonal
#include "armt_helpers.hpp"

using namespace cbtest;

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
