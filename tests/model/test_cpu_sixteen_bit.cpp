// 16-bit CPU models (weights and activations bfloat16 or float16, loaded from the float32 npy and
// converted at load; float accumulation in the GEMV) against the float32 model, through prefill
// and KV-cached decode steps of every decoder family; and the thread count changing no bit of a
// float32 decode.
#define BOOST_TEST_MODULE cpu_sixteen_bit
#include <cstring>

#include "crossbatch/generate/batch_session.hpp"
#include "support.hpp"
#include "tiny_models.hpp"

using namespace crossbatch;
namespace fs = std::filesystem;

namespace {

// Logits (B, V) after the prefill and after each of `steps` decode steps that feed `feed[k]`.
template <class T>
std::vector<tensor<float>> session_logits(const std::string& dir, int threads,
                                          const std::vector<std::vector<std::int32_t>>& feed) {
  const auto m = decoder_model<T>::load(dir);
  const context<cpu> ctx = cpu_context(threads);
  batch_session<T> s(ctx, m, {{1, 5, 9, 2, 7}, {3, 8, 4}}, int(feed.size()) + 1);
  s.prefill();
  std::vector<tensor<float>> out;
  out.push_back(s.logits_host());
  for (const auto& ids : feed) {
    s.step(ids);
    out.push_back(s.logits_host());
  }
  return out;
}

// The float model's greedy tokens, fed to every model so that all decode the same sequence.
std::vector<std::vector<std::int32_t>> greedy_feed(const std::string& dir, int steps) {
  std::vector<std::vector<std::int32_t>> feed;
  for (int k = 0; k < steps; ++k) {
    const auto all = session_logits<float>(dir, 1, feed);
    const auto& l = all.back();
    std::vector<std::int32_t> next;
    for (index_t b = 0; b < l.dim(0); ++b) {
      const float* row = l.data() + b * l.dim(1);
      next.push_back(std::int32_t(std::max_element(row, row + l.dim(1)) - row));
    }
    feed.push_back(next);
  }
  return feed;
}

}  // namespace

BOOST_AUTO_TEST_CASE(bfloat16_and_float16_decode_tracks_float32_in_every_family) {
  for (const std::string family : {"gpt2", "llama", "qwen2"}) {
    // Unit-gain random weights (scale 1: every product keeps activations and logits O(1), the
    // regime the dtype tolerances are stated for; tiny_model_dir's scale-2 weights amplify each
    // layer's rounding error by their gain).
    const auto dir = cbtest::scratch_dir("sixteen_bit_" + family).string();
    write_random_model(dir, cbtest::tiny_config(family), 11);
    const auto feed = greedy_feed(dir, 5);
    const auto f = session_logits<float>(dir, 1, feed);
    for (int threads : {1, 2}) {
      const auto b = session_logits<bfloat16>(dir, threads, feed);
      const auto h = session_logits<half>(dir, threads, feed);
      for (std::size_t k = 0; k < f.size(); ++k) {
        const std::string at = family + ", " + std::to_string(threads) + " thread(s), " +
                               (k ? "decode step " + std::to_string(k) : std::string("prefill"));
        // Logits are O(1); the factor 2 covers the two layers' rounding in the 16-bit type.
        cbtest::check_close<bfloat16>(b[k].view(), f[k].view(), "bfloat16 vs float32, " + at, 2.f);
        cbtest::check_close<half>(h[k].view(), f[k].view(), "float16 vs float32, " + at, 2.f);
      }
    }
    fs::remove_all(dir);
  }
}

BOOST_AUTO_TEST_CASE(two_threads_decode_bitwise_like_one) {
  // A vocabulary of 6000 makes the LM head (6000 x 32) several GEMV chunks, so both threads work.
  auto config = cbtest::tiny_config("qwen2");
  config["vocab_size"] = 6000;
  const auto dir = cbtest::scratch_dir("sixteen_bit_threads").string();
  write_random_model(dir, config, 12, 2.0f);
  const auto feed = greedy_feed(dir, 3);
  const auto one = session_logits<float>(dir, 1, feed);
  const auto two = session_logits<float>(dir, 2, feed);
  for (std::size_t k = 0; k < one.size(); ++k)
    BOOST_TEST(std::memcmp(one[k].data(), two[k].data(), sizeof(float) * one[k].size()) == 0,
               "step " << k);
  fs::remove_all(dir);
}
