// Every CUDA op against the CPU op on fresh random inputs in float32, float16 and bfloat16, with
// the tolerances of dtype_traits: embedding, norms, residual norm, linear (GEMV and cuBLASLt paths,
// with and without bias, strided rows), activations, rope on strided views, softmax/log-softmax,
// write_kv, rope_write_kv (with and without rope, device slot shift), attention (prefill and
// split-KV decode, GQA, every mask policy, probs, device slot shift) and the device samplers
// (greedy exact, seeded draws equal to the CPU's, deterministic).
#define BOOST_TEST_MODULE cuda_ops
#include "gpu_main.hpp"
// gpu_main.hpp first: it configures Boost.Test for everything below.

#include "crossbatch/cuda.hpp"
#include "crossbatch/ops/cpu.hpp"
#include "support.hpp"

using namespace crossbatch;
using namespace cbgpu;

namespace {

unsigned seed_counter = 1000;
unsigned fresh_seed() { return seed_counter++; }

template <class T>
tensor<T> rnd(shape_t s, float lo = -1.f, float hi = 1.f) {
  return cbtest::random_tensor<T>(std::move(s), fresh_seed(), lo, hi);
}

// Compares a device result with a CPU result; scale widens the tolerance for long reductions.
template <class T, class U>
void check(const tensor<U, gpu>& got, const tensor<U>& want, const std::string& what,
           float scale = 1.f) {
  gctx().synchronize();
  auto g = down(got);
  cbtest::check_close<T>(tensor_view<const U>(g.view()), tensor_view<const U>(want.view()),
                         what + " (" + dtype_traits<T>::name + ")", scale);
}

tensor<std::int32_t> ints(std::vector<int> v) {
  tensor<std::int32_t> t({index_t(v.size())});
  for (std::size_t i = 0; i < v.size(); ++i) t.data()[i] = v[i];
  return t;
}

}  // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(embedding_matches_cpu, T, dtypes) {
  auto table = rnd<T>({50, 24});
  auto ids = ints({3, 0, 49, 7, 7});
  auto base = rnd<T>({5, 24});
  for (bool acc : {false, true}) {
    auto want = base.clone();
    embedding(hctx, want.view(), c(ids), c(table), acc);
    auto got = up(base);
    auto dids = up(ids);
    embedding(gctx(), got.view(), c(dids), c(up(table)), acc);
    check<T>(got, want, acc ? "embedding accumulate" : "embedding");
  }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(norms_match_cpu, T, dtypes) {
  for (index_t cdim : {16, 200, 896, 3000}) {
    auto x = rnd<T>({7, cdim}, -3, 3), w = rnd<T>({cdim}, 0.5, 1.5), b = rnd<T>({cdim});
    tensor<T> want({7, cdim});
    layer_norm(hctx, want.view(), c(x), c(w), c(b), 1e-5f);
    tensor<T, gpu> got({7, cdim});
    auto dx = up(x), dw = up(w), db = up(b);
    layer_norm(gctx(), got.view(), c(dx), c(dw), c(db), 1e-5f);
    check<T>(got, want, "layer_norm C=" + std::to_string(cdim));
    rms_norm(hctx, want.view(), c(x), c(w), 1e-6f);
    rms_norm(gctx(), got.view(), c(dx), c(dw), 1e-6f);
    check<T>(got, want, "rms_norm C=" + std::to_string(cdim));
    // Strided rows: every other row of a (14, C) buffer.
    auto big = rnd<T>({14, cdim});
    auto dbig = up(big);
    tensor_view<const T> hs(big.data(), {7, cdim}, {2 * cdim, 1});
    tensor_view<const T, gpu> ds(dbig.data(), {7, cdim}, {2 * cdim, 1});
    rms_norm(hctx, want.view(), hs, c(w), 1e-6f);
    rms_norm(gctx(), got.view(), ds, c(dw), 1e-6f);
    check<T>(got, want, "rms_norm strided");
    for (norm_kind kind : {norm_kind::layer, norm_kind::rms}) {
      auto delta = rnd<T>({7, cdim});
      auto hx = x.clone();
      auto gx = up(x);
      residual_norm(hctx, kind, hx.view(), c(delta), want.view(), c(w), c(b), 1e-5f);
      residual_norm(gctx(), kind, gx.view(), c(up(delta)), got.view(), c(dw), c(db), 1e-5f);
      check<T>(gx, hx, "residual_norm x");
      check<T>(got, want, "residual_norm out");
    }
  }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(linear_matches_cpu, T, dtypes) {
  // (n, in, out): GEMV rows 1..8, cuBLASLt above, odd sizes that miss the vector path.
  const std::vector<std::array<index_t, 3>> shapes = {
      {1, 64, 96}, {2, 128, 40},   {3, 96, 33}, {5, 64, 64},   {8, 256, 130},
      {9, 64, 96}, {64, 128, 200}, {4, 37, 19}, {130, 96, 77}, {1, 896, 1000}};
  for (auto [n, in, o] : shapes) {
    auto x = rnd<T>({n, in}), w = rnd<T>({o, in}), b = rnd<T>({o});
    auto dx = up(x), dw = up(w), db = up(b);
    for (bool bias : {false, true}) {
      tensor<T> want({n, o});
      linear(hctx, want.view(), c(x), c(w), bias ? c(b) : tensor_view<const T>{});
      tensor<T, gpu> got({n, o});
      linear(gctx(), got.view(), c(dx), c(dw), bias ? c(db) : tensor_view<const T, gpu>{});
      check<T>(got, want,
               "linear " + std::to_string(n) + "x" + std::to_string(in) + "->" + std::to_string(o),
               1.f + float(in) / 256.f);
    }
  }
  // A strided x: columns [8, 8 + in) of a wider buffer (the q part of a fused projection).
  auto wide = rnd<T>({3, 200}), w = rnd<T>({50, 64});
  auto dwide = up(wide), dw = up(w);
  tensor_view<const T> hx(wide.data() + 8, {3, 64}, {200, 1});
  tensor_view<const T, gpu> gx(dwide.data() + 8, {3, 64}, {200, 1});
  tensor<T> want({3, 50});
  tensor<T, gpu> got({3, 50});
  linear(hctx, want.view(), hx, c(w));
  linear(gctx(), got.view(), gx, c(dw));
  check<T>(got, want, "linear strided x", 1.25f);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(elementwise_match_cpu, T, dtypes) {
  for (activation a :
       {activation::gelu_tanh, activation::gelu_erf, activation::silu, activation::relu}) {
    auto x = rnd<T>({6, 70}, -4, 4);
    tensor<T> want({6, 70});
    tensor<T, gpu> got({6, 70});
    activate(hctx, a, want.view(), c(x));
    activate(gctx(), a, got.view(), c(up(x)));
    check<T>(got, want, "activate");
    auto gu = rnd<T>({6, 140}, -4, 4);
    gated_activation(hctx, a, want.view(), c(gu));
    gated_activation(gctx(), a, got.view(), c(up(gu)));
    check<T>(got, want, "gated_activation");
  }
  auto x = rnd<T>({1000}), y = rnd<T>({1000});
  auto gx = up(x);
  add_inplace(hctx, x.view(), c(y));
  add_inplace(gctx(), gx.view(), c(up(y)));
  check<T>(gx, x, "add_inplace");
}

BOOST_AUTO_TEST_CASE_TEMPLATE(rope_matches_cpu_on_strided_views, T, dtypes) {
  const index_t n = 5, h = 3, d = 16, width = 80;  // q of 3 heads inside rows of 80
  auto buf = rnd<T>({n, width});
  auto pos = ints({0, 1, 7, 300, 4095});
  rope_parameters rp;
  const auto f = rope_inv_freq(rp, int(d));
  tensor<float> inv({d / 2});
  std::copy(f.begin(), f.end(), inv.data());
  auto gbuf = up(buf);
  apply_rope(hctx, tensor_view<T>(buf.data() + 16, {n, h, d}, {width, d, 1}), c(pos), c(inv));
  apply_rope(gctx(), tensor_view<T, gpu>(gbuf.data() + 16, {n, h, d}, {width, d, 1}), c(up(pos)),
             c(up(inv)));
  check<T>(gbuf, buf, "apply_rope", 2.f);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(softmax_matches_cpu, T, dtypes) {
  for (index_t v : {10, 4000, 151936}) {
    auto x = rnd<T>({3, v}, -8, 8);
    tensor<float> want({3, v});
    tensor<float, gpu> got({3, v});
    auto gx = up(x);
    softmax(hctx, want.view(), c(x));
    softmax(gctx(), got.view(), c(gx));
    check<float>(got, want, "softmax");
    log_softmax(hctx, want.view(), c(x));
    log_softmax(gctx(), got.view(), c(gx));
    check<float>(got, want, "log_softmax", 10.f);
  }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(write_kv_matches_cpu, T, dtypes) {
  const index_t b = 2, t = 3, h = 2, d = 8, s = 10, width = 5 * h * d;
  auto cache = rnd<T>({b, h, s, d});
  auto fused = rnd<T>({b, t, width});
  auto gcache = up(cache);
  auto gfused = up(fused);
  auto part = [&](auto* p) { return p + 2 * h * d; };
  write_kv(hctx, cache.view(),
           tensor_view<const T>(part(fused.data()), {b, t, h, d}, {t * width, width, d, 1}), 4);
  write_kv(gctx(), gcache.view(),
           tensor_view<const T, gpu>(part(gfused.data()), {b, t, h, d}, {t * width, width, d, 1}),
           4);
  check<T>(gcache, cache, "write_kv");
}

namespace {

// Device copy of a host int array, kept alive for the mask.
struct dints {
  tensor<int, gpu> t;
  explicit dints(const std::vector<int>& v) {
    tensor<int> h({index_t(v.size())});
    std::copy(v.begin(), v.end(), h.data());
    t = up(h);
  }
  const int* ptr() const { return t.data(); }
};

template <class T, class HM, class DM>
void attention_case(const std::string& what, const HM& hmask, const DM& dmask, int b, int tq, int h,
                    int hkv, int d, int q_start, int kv_len, bool probs = false,
                    bool strided_q = false) {
  const int cap = kv_len + 5;
  const index_t width = strided_q ? index_t(h + 2 * hkv) * d : index_t(h) * d;
  auto qbuf = rnd<T>({b, tq, width}, -2, 2);
  auto k = rnd<T>({b, hkv, cap, d}, -2, 2), v = rnd<T>({b, hkv, cap, d});
  const shape_t qs{b, tq, h, d}, qst{tq * width, width, d, 1};
  auto gq = up(qbuf), gk = up(k), gv = up(v);
  tensor<T> want({b, tq, h, d});
  tensor<T, gpu> got({b, tq, h, d});
  tensor<float> hp({b, h, tq, kv_len});
  tensor<float, gpu> gp({b, h, tq, kv_len});
  const attention_shape a{q_start, kv_len, 1.0f / std::sqrt(float(d))};
  attention(hctx, want.view(), tensor_view<const T>(qbuf.data(), qs, qst), c(k), c(v), hmask, a,
            probs ? hp.view() : tensor_view<float>{});
  attention(gctx(), got.view(), tensor_view<const T, gpu>(gq.data(), qs, qst), c(gk), c(gv), dmask,
            a, probs ? gp.view() : tensor_view<float, gpu>{});
  check<T>(got, want, "attention " + what);
  if (probs) check<T>(gp, hp, "attention probs " + what);
}

}  // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(rope_write_kv_matches_cpu, T, dtypes) {
  // B 2 x T 3 rows of a fused projection (H 4 q heads, Hkv 2 k and 2 v heads of D 16) in rows of
  // width 140 (a gap after the v heads); slots [5, 8) of caches with capacity 12; with and without
  // rope; the device slot shift (base 3 + shift 2) gives the same slots.
  const index_t b = 2, t = 3, h = 4, hkv = 2, d = 16, cap = 12, width = 140;
  auto qkv = rnd<T>({b * t, width});
  auto kc = rnd<T>({b, hkv, cap, d}), vc = rnd<T>({b, hkv, cap, d});
  auto pos = ints({5, 6, 7, 0, 1, 4095});
  rope_parameters rp;
  const auto f = rope_inv_freq(rp, int(d));
  tensor<float> inv({d / 2});
  std::copy(f.begin(), f.end(), inv.data());
  auto gpos = up(pos);
  auto ginv = up(inv);
  for (bool rope : {true, false})
    for (bool shifted : {false, true}) {
      const std::string what = std::string("rope_write_kv") + (rope ? "" : " (no rope)") +
                               (shifted ? " (slot shift)" : "");
      auto hq = qkv.clone(), hk = kc.clone(), hv = vc.clone();
      auto gq = up(qkv), gk = up(kc), gv = up(vc);
      rope_write_kv(hctx, hq.view(), t, int(h), int(hkv), c(pos),
                    rope ? c(inv) : tensor_view<const float>{}, hk.view(), hv.view(), 5);
      dints shift({2});
      if (shifted) gctx().slot_shift = shift.ptr();
      rope_write_kv(gctx(), gq.view(), t, int(h), int(hkv), c(gpos),
                    rope ? c(ginv) : tensor_view<const float, gpu>{}, gk.view(), gv.view(),
                    shifted ? 3 : 5);
      gctx().slot_shift = nullptr;
      check<T>(gq, hq, what + " q", 2.f);
      check<T>(gk, hk, what + " keys", 2.f);
      check<T>(gv, hv, what + " values");
    }
  // Bad shapes are refused on both devices.
  BOOST_CHECK_THROW(
      rope_write_kv(hctx, qkv.view(), 4, int(h), int(hkv), c(pos), c(inv), kc.view(), vc.view(), 0),
      shape_error);
  auto gk = up(kc), gv = up(vc), gq = up(qkv);
  BOOST_CHECK_THROW(rope_write_kv(gctx(), gq.view(), t, int(h), int(hkv), c(gpos), c(ginv),
                                  gk.view(), gv.view(), 10),
                    value_error);
}

// Every case on both prefill kernels where the dtype has two (16-bit: tensor cores for D 64 and
// 128, else CUDA cores).
template <class T>
void attention_cases();

BOOST_AUTO_TEST_CASE_TEMPLATE(attention_matches_cpu, T, dtypes) {
  for (bool tc : {true, false}) {
    if (!tc && std::is_same_v<T, float>) continue;  // float has the CUDA-core kernel only
    BOOST_TEST_CONTEXT("tensor_core_attention=" << tc) {
      gctx().tensor_core_attention = tc;
      attention_cases<T>();
    }
  }
  gctx().tensor_core_attention = true;
}

template <class T>
void attention_cases() {
  const std::vector<int> pad = {0, 5, 70};
  dints dpad(pad);
  const auto hm = all_of<causal, left_padding>(causal{}, left_padding{pad.data()});
  const auto dm = all_of<causal, left_padding>(causal{}, left_padding{dpad.ptr()});
  for (int d : {16, 64, 128}) {
    const std::string ds = " D=" + std::to_string(d);
    attention_case<T>("prefill causal+pad" + ds, hm, dm, 3, 100, 4, 2, d, 0, 100, false, true);
    attention_case<T>("decode causal+pad" + ds, hm, dm, 3, 1, 4, 2, d, 120, 121, false, true);
    attention_case<T>("decode 2 tokens" + ds, hm, dm, 3, 2, 6, 3, d, 50, 52);
    attention_case<T>("long decode (split KV)" + ds, hm, dm, 1, 1, 4, 1, d, 3000, 3001);
    attention_case<T>("prefill after cache" + ds, hm, dm, 3, 37, 4, 4, d, 80, 117);
  }
  attention_case<T>("odd head dim", causal{}, causal{}, 2, 9, 2, 1, 24, 0, 9);
  attention_case<T>("head dim 12 decode", causal{}, causal{}, 2, 1, 2, 1, 12, 30, 31);
  attention_case<T>("probs", hm, dm, 3, 20, 4, 2, 16, 60, 80, true);
  attention_case<T>("no mask", no_mask{}, no_mask{}, 2, 33, 2, 2, 32, 0, 33);
  const sliding_window sw{17};
  attention_case<T>("sliding window", all_of<causal, sliding_window>(causal{}, sw),
                    all_of<causal, sliding_window>(causal{}, sw), 2, 150, 2, 1, 64, 0, 150);
  // Segment isolation: prefix 0 (10 slots), segments 1..4 (20 slots each), generation from 90.
  std::vector<int> seg(2 * 100, 0), gen = {90, 90};
  for (int s = 0; s < 2; ++s)
    for (int i = 10; i < 90; ++i) seg[s * 100 + i] = 1 + (i - 10) / 20;
  dints dseg(seg), dgen(gen);
  const segment_isolation hs{seg.data(), gen.data(), 100}, gs{dseg.ptr(), dgen.ptr(), 100};
  attention_case<T>("segment isolation prefill", hs, gs, 2, 90, 4, 2, 64, 0, 90);
  attention_case<T>("segment isolation generated", hs, gs, 2, 1, 4, 2, 64, 95, 96);
  attention_case<T>("segment isolation probs", hs, gs, 2, 90, 2, 2, 16, 0, 90, true);
  // Several key tiles of every kind and a ragged last query tile: 300 queries after 45 cached
  // slots, GQA 6:2, left padding reaching into the second tile.
  const std::vector<int> pad2 = {0, 77};
  dints dpad2(pad2);
  for (int d : {64, 128})
    attention_case<T>("long prefill after cache D=" + std::to_string(d),
                      all_of<causal, left_padding>(causal{}, left_padding{pad2.data()}),
                      all_of<causal, left_padding>(causal{}, left_padding{dpad2.ptr()}), 2, 300, 6,
                      2, d, 45, 345, false, true);
}

BOOST_AUTO_TEST_CASE(attention_slot_shift_reads_device_offset) {
  // The same decode step expressed as host slots (q_start 40) and as base 30 + device shift 10.
  using T = float;
  const int b = 2, h = 4, hkv = 2, d = 64, cap = 64;
  auto q = rnd<T>({b, 1, h, d}), k = rnd<T>({b, hkv, cap, d}), v = rnd<T>({b, hkv, cap, d});
  auto gq = up(q), gk = up(k), gv = up(v);
  tensor<T, gpu> ref({b, 1, h, d}), got({b, 1, h, d});
  attention(gctx(), ref.view(), c(gq), c(gk), c(gv), causal{}, attention_shape{40, 41, 0.125f});
  dints shift({10});
  gctx().slot_shift = shift.ptr();
  attention(gctx(), got.view(), c(gq), c(gk), c(gv), causal{}, attention_shape{30, 31, 0.125f});
  gctx().slot_shift = nullptr;
  check<T>(got, down(ref), "shifted attention");
}

BOOST_AUTO_TEST_CASE_TEMPLATE(greedy_matches_cpu, T, dtypes) {
  const index_t b = 5, v = 50000;
  auto logits = rnd<T>({b, v}, -5, 5);
  logits(1, 777) = T(9.f);  // ties: the first maximum wins
  logits(1, 778) = T(9.f);
  tensor<std::int32_t, gpu> ids({b});
  sample_greedy(gctx(), c(up(logits)), ids.view());
  auto got = down(ids);
  for (index_t i = 0; i < b; ++i) {
    std::vector<float> row(v);
    for (index_t j = 0; j < v; ++j) row[j] = float(logits(i, j));
    BOOST_TEST(got(i) == argmax(std::span<const float>(row)));
  }
}

BOOST_AUTO_TEST_CASE(sampling_matches_cpu_and_is_deterministic) {
  const index_t b = 16, v = 3000;
  std::vector<sampling_params> settings = {
      {true, 1.0f, 0, 1.0f, 0.0f},  {true, 0.7f, 50, 1.0f, 0.0f},   {true, 1.0f, 0, 0.9f, 0.0f},
      {true, 1.3f, 0, 1.0f, 0.05f}, {true, 0.8f, 40, 0.95f, 0.02f}, {true, 1.0f, 1, 1.0f, 0.0f}};
  const counter_rng rng{1234};
  int agree = 0, total = 0;
  for (const auto& p : settings) {
    for (std::uint64_t step = 0; step < 8; ++step) {
      tensor<float> logits({b, v});
      std::mt19937 gen(fresh_seed());
      std::normal_distribution<float> nd(0, 3);
      for (index_t i = 0; i < logits.size(); ++i) logits.data()[i] = nd(gen);
      auto glog = up(logits);
      tensor<std::int32_t, gpu> ids({b}), again({b});
      sample(gctx(), p, c(glog), ids.view(), rng, step);
      sample(gctx(), p, c(glog), again.view(), rng, step);
      auto g1 = down(ids), g2 = down(again);
      std::vector<std::int32_t> want(b);
      auto hl = logits.clone();
      sample(hctx, p, hl.view(), std::span(want), rng, step);
      for (index_t i = 0; i < b; ++i) {
        BOOST_REQUIRE(g1(i) == g2(i));  // deterministic
        BOOST_REQUIRE(g1(i) >= 0 && g1(i) < v);
        // the id must survive the CPU filters
        auto row = std::vector<float>(&logits(i, 0), &logits(i, 0) + v);
        temperature{p.temperature}.apply(row);
        top_k{p.top_k}.apply(row);
        top_p{p.top_p}.apply(row);
        min_p{p.min_p}.apply(row);
        BOOST_CHECK_MESSAGE(row[g1(i)] > -INFINITY,
                            "id " << g1(i) << " was filtered out on the CPU");
        agree += g1(i) == want[i];
        ++total;
      }
    }
  }
  // Ids differ from the CPU only where float summation order moves a boundary.
  BOOST_TEST_MESSAGE("device and CPU draws agree " << agree << " / " << total);
  BOOST_TEST(agree >= total * 97 / 100, agree << " of " << total << " draws agree with the CPU");
}
