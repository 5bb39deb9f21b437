// The vectorised CPU attention (ops/cpu/attention.hpp behind attention()) against a float64
// softmax(q k^T scale + mask) v computed here from the stored inputs: float32, bfloat16 and float16
// caches, GQA ratios 1 and 3, context lengths 1, 7, 300 and 1300 (decode beyond 512 keys takes the
// merged key-split path unless probabilities are asked for), decode (one query) and prefill (up to
// 37 queries ending at the newest slot), causal / causal + left padding / causal + segment
// isolation, head dims with and without a 16-lane tail, 1 and 2 threads (which must agree
// bitwise). Slots the kernel must never read hold NaN: every slot at or beyond kv_len, and the
// padding slots of a left-padded sequence (masked for every query), so a kernel that reads a masked
// key or value into a sum fails.
#define BOOST_TEST_MODULE cpu_attention_kernel
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "crossbatch/attention/attention.hpp"
#include "reference_attention.hpp"
#include "support.hpp"

using namespace crossbatch;

namespace {

enum class mask_kind { causal, padded, segmented };
const char* name(mask_kind m) {
  return m == mask_kind::causal ? "causal" : m == mask_kind::padded ? "padded" : "segmented";
}

template <class T>
void check_case(int group, int kv_len, mask_kind mk, bool decode, int d, unsigned seed) {
  const int b = 2, hkv = 2, h = hkv * group, slots = kv_len + 5;
  const int tq = decode ? 1 : std::min(kv_len, 37), q_start = kv_len - tq;
  const std::string what = std::string(dtype_traits<T>::name) + " group " + std::to_string(group) +
                           " kv_len " + std::to_string(kv_len) + " " + name(mk) +
                           (decode ? " decode" : " prefill") + " D " + std::to_string(d);
  auto q = cbtest::random_tensor<T>({b, tq, h, d}, seed, -3.f, 3.f);
  auto k = cbtest::random_tensor<T>({b, hkv, slots, d}, seed + 1);
  auto v = cbtest::random_tensor<T>({b, hkv, slots, d}, seed + 2);
  const T nan = static_cast<T>(std::numeric_limits<float>::quiet_NaN());
  const auto poison = [&, kw = k.view(), vw = v.view()](int bi, int slot) {
    for (int kh = 0; kh < hkv; ++kh)
      for (int j = 0; j < d; ++j) kw(bi, kh, slot, j) = vw(bi, kh, slot, j) = nan;
  };
  for (int bi = 0; bi < b; ++bi)
    for (int slot = kv_len; slot < slots; ++slot) poison(bi, slot);

  // Sequence 1 is left padded by a third of the context (padding slots poisoned); segments: a
  // shared prefix (id 0), then segments of a quarter of the context, generated slots from
  // gen_start on (sequence 0's queries are partly generated, sequence 1's all prompt in decode).
  std::vector<int> pad = {0, kv_len / 3};
  std::vector<int> gen = {std::max(q_start, kv_len - tq / 2 - 1), kv_len};
  std::vector<int> seg(std::size_t(b) * kv_len);
  const int prefix = std::max(1, kv_len / 5), seg_len = std::max(1, kv_len / 4);
  for (int bi = 0; bi < b; ++bi)
    for (int i = 0; i < kv_len; ++i)
      seg[bi * kv_len + i] = i < prefix ? 0 : i < gen[bi] ? 1 + (i - prefix) / seg_len : -1;
  if (mk == mask_kind::padded)
    for (int slot = 0; slot < pad[1]; ++slot) poison(1, slot);

  const float scale = 1.0f / std::sqrt(float(d));
  const auto run = [&](const auto& mask) {
    std::vector<double> want_out, want_probs;
    cbtest::reference_attention<T>(q.view(), k.view(), v.view(), mask, q_start, kv_len, scale,
                                   want_out, want_probs);
    // Without probabilities at 1 and 2 threads (a long decode takes the key-split path), with
    // them at 1 and 2 threads (always the whole-row path).
    tensor<T> out1({b, tq, h, d}), out2({b, tq, h, d}), outp1({b, tq, h, d}), outp2({b, tq, h, d});
    tensor<float> probs1({b, h, tq, kv_len}), probs2({b, h, tq, kv_len});
    const attention_shape shape{q_start, kv_len, scale};
    attention(cpu_context(1), out1.view(), q.view(), k.view(), v.view(), mask, shape);
    attention(cpu_context(2), out2.view(), q.view(), k.view(), v.view(), mask, shape);
    attention(cpu_context(1), outp1.view(), q.view(), k.view(), v.view(), mask, shape,
              probs1.view());
    attention(cpu_context(2), outp2.view(), q.view(), k.view(), v.view(), mask, shape,
              probs2.view());
    // Float arithmetic on exactly stored inputs: the float tolerance, plus one unit of T's
    // precision for the output's rounding to T.
    const double atol = dtype_traits<float>::atol,
                 rtol = dtype_traits<float>::rtol + dtype_traits<T>::epsilon;
    const auto so = cbtest::compare(out1, want_out, atol, rtol);
    BOOST_TEST(so.ok(), what << ": out vs float64: " << so.summary());
    const auto sop = cbtest::compare(outp1, want_out, atol, rtol);
    BOOST_TEST(sop.ok(), what << ": out (with probs) vs float64: " << sop.summary());
    const auto sp = cbtest::compare(probs1, want_probs, atol, dtype_traits<float>::rtol);
    BOOST_TEST(sp.ok(), what << ": probs vs float64: " << sp.summary());
    const auto st = cbtest::compare(out2, out1), stp = cbtest::compare(outp2, outp1),
               sq = cbtest::compare(probs2, probs1);
    BOOST_TEST(st.ok(), what << ": out at 2 threads vs 1: " << st.summary());
    BOOST_TEST(stp.ok(), what << ": out (with probs) at 2 threads vs 1: " << stp.summary());
    BOOST_TEST(sq.ok(), what << ": probs at 2 threads vs 1: " << sq.summary());
  };
  switch (mk) {
    case mask_kind::causal:
      run(causal{});
      break;
    case mask_kind::padded:
      run(all_of<causal, left_padding>(causal{}, left_padding{pad.data()}));
      break;
    case mask_kind::segmented:
      run(all_of<causal, segment_isolation>(causal{},
                                            segment_isolation{seg.data(), gen.data(), kv_len}));
      break;
  }
}

template <class T>
void check_dtype(unsigned seed) {
  for (int group : {1, 3})
    for (int kv_len : {1, 7, 300, 1300})
      for (mask_kind mk : {mask_kind::causal, mask_kind::padded, mask_kind::segmented})
        for (bool decode : {true, false})
          if (decode || kv_len <= 300)  // the long context for the decode split path only
            check_case<T>(group, kv_len, mk, decode, 64, seed += 3);
}

}  // namespace

BOOST_AUTO_TEST_CASE(float32_cache) { check_dtype<float>(100); }
BOOST_AUTO_TEST_CASE(bfloat16_cache) { check_dtype<bfloat16>(200); }
BOOST_AUTO_TEST_CASE(float16_cache) { check_dtype<half>(300); }

// Head dims that leave a partial 16-lane vector (and one above 64, the weighted sum's step).
BOOST_AUTO_TEST_CASE(odd_head_dims) {
  for (int d : {24, 72}) {
    check_case<float>(3, 300, mask_kind::segmented, false, d, 400 + d);
    check_case<half>(3, 300, mask_kind::padded, true, d, 500 + d);
    check_case<bfloat16>(1, 7, mask_kind::causal, false, d, 600 + d);
  }
}

// A decode row whose every key is padding (and poisoned) gives zeros on the key-split path too.
BOOST_AUTO_TEST_CASE(fully_padded_decode_row_is_zero) {
  const int kv_len = 1300, d = 64;
  auto q = cbtest::random_tensor<half>({2, 1, 3, d}, 7);
  auto k = cbtest::random_tensor<half>({2, 1, kv_len, d}, 8);
  auto v = cbtest::random_tensor<half>({2, 1, kv_len, d}, 9);
  auto kw = k.view(), vw = v.view();
  for (int slot = 0; slot < kv_len; ++slot)
    for (int j = 0; j < d; ++j) kw(1, 0, slot, j) = vw(1, 0, slot, j) = half(NAN);
  std::vector<int> pad = {0, kv_len};
  for (int threads : {1, 2}) {
    tensor<half> out({2, 1, 3, d});
    attention(cpu_context(threads), out.view(), q.view(), k.view(), v.view(),
              all_of<causal, left_padding>(causal{}, left_padding{pad.data()}),
              {kv_len - 1, kv_len, 0.125f});
    auto ov = out.view();
    bool zeros = true, finite = true;
    for (int hh = 0; hh < 3; ++hh)
      for (int j = 0; j < d; ++j) {
        zeros &= float(ov(1, 0, hh, j)) == 0.0f;
        finite &= std::isfinite(float(ov(0, 0, hh, j)));
      }
    BOOST_TEST(zeros, "threads " << threads << ": the fully padded row is not zero");
    BOOST_TEST(finite, "threads " << threads << ": the unpadded row is not finite");
  }
}
