// The backward passes of training through the frozen decoder against central finite differences
// in float64: every op of train/backward/ops.hpp on its own (linear, LoRA with dropout, RMSNorm and
// LayerNorm, RoPE, attention with causal + key-padding masks and grouped-query heads, the MLP
// activations, embedding), then the whole model of each family (llama-like with GQA and a tied
// head, qwen2-like with qkv bias, gpt2-like with LayerNorm, gelu_new and learned positions) on a
// padded batch: adapter, head and input gradients, with and without adapter dropout, through the
// split layer API. Also: float32 gradients agree with float64 ones.
#define BOOST_TEST_MODULE train_lora_backward
#include <filesystem>
#include <functional>

#include "crossbatch/train/backward/decoder_backward.hpp"
#include "lora_test_inputs.hpp"
#include "tiny_models.hpp"

using namespace crossbatch;

namespace {

context<cpu> ctx;
constexpr double fd_eps = 1e-6;

// Central differences of loss() over the elements of p (every `step`-th one) against the analytic
// gradient g. FD in float64 is good to ~1e-9 relative; the bound leaves room for curvature.
void fd_check(tensor_view<double> p, tensor_view<const double> g,
              const std::function<double()>& loss, const std::string& what, index_t step = 1) {
  BOOST_REQUIRE_MESSAGE(p.size() == g.size(), what << ": parameter and gradient sizes differ");
  cbtest::diff_stats st;  // finite differences (got) against the analytic gradient (want)
  for (index_t i = 0; i < p.size(); i += step) {
    double& x = p.data[i];
    const double keep = x;
    x = keep + fd_eps;
    const double up = loss();
    x = keep - fd_eps;
    const double down = loss();
    x = keep;
    st.add((up - down) / (2 * fd_eps), g.data[i]);
  }
  const double scale = std::max(1e-3, st.max_ref);
  BOOST_TEST(st.max_abs < 1e-6 * scale + 1e-8,
             what << ": |fd - analytic| " << st.summary() << " (scale " << scale << ")");
  BOOST_TEST(st.max_ref > 0, what << ": the gradient is identically zero");
}

tensor<double> rnd(shape_t s, unsigned seed, float lo = -1, float hi = 1) {
  return cbtest::random_tensor<double>(std::move(s), seed, lo, hi);
}
double dot(tensor_view<const double> a, tensor_view<const double> b) {
  double s = 0;
  for (index_t i = 0; i < a.size(); ++i) s += a.data[i] * b.data[i];
  return s;
}
// Sum over a 2-D (possibly row-strided) view of v * r with r contiguous.
double dot2(tensor_view<const double> v, tensor_view<const double> r) {
  double s = 0;
  for (index_t i = 0; i < v.shape[0]; ++i)
    for (index_t j = 0; j < v.shape[1]; ++j) s += v(i, j) * r.data[i * v.shape[1] + j];
  return s;
}
tensor_view<double> block(tensor<double>& t, index_t offset, index_t width) {
  return {t.data() + offset, {t.dim(0), width}, {t.dim(1), 1}};
}

}  // namespace

BOOST_AUTO_TEST_CASE(linear_input_gradient) {
  auto x = rnd({5, 7}, 1), w = rnd({4, 7}, 2), b = rnd({4}, 3), r = rnd({5, 4}, 4);
  tensor<double> y({5, 4});
  auto loss = [&] {
    linear_forward(ctx, y.view(), x.view(), w.view(), b.view());
    return dot(y.view(), r.view());
  };
  auto dx = rnd({5, 7}, 5);
  const auto dx0 = dx.clone();
  linear_backward_input(ctx, dx.view(), r.view(), w.view(), /*accumulate=*/true);
  for (index_t i = 0; i < dx.size(); ++i) dx.data()[i] -= dx0.data()[i];
  fd_check(x.view(), dx.view(), loss, "linear dx (accumulated)");
  linear_backward_input(ctx, dx.view(), r.view(), w.view());
  fd_check(x.view(), dx.view(), loss, "linear dx");
  auto db = full<double>({4}, 0.0);
  col_sum(ctx, db.view(), r.view());  // the bias gradient a trainable bias would take
  fd_check(b.view(), db.view(), loss, "linear bias");
}

BOOST_AUTO_TEST_CASE(lora_adapter_gradients_with_dropout) {
  // x and y are column blocks of wider buffers (as q/k/v of a fused projection).
  for (float p : {0.0f, 0.3f}) {
    auto xbuf = rnd({6, 10}, 11), ybuf = rnd({6, 9}, 12);
    auto a = rnd({3, 7}, 13), bm = rnd({5, 3}, 14), r = rnd({6, 5}, 15);
    tensor<double> xd({6, 7}), u({6, 3}), du({6, 3}), dxd({6, 7});
    const auto y0 = ybuf.clone();
    auto loss = [&] {
      std::copy(y0.data(), y0.data() + y0.size(), ybuf.data());
      lora_forward(ctx, block(ybuf, 2, 5), block(xbuf, 3, 7), a.view(), bm.view(), 1.7f, p, 99, 4,
                   xd.view(), u.view());
      return dot2(block(ybuf, 2, 5), r.view());
    };
    loss();
    auto da = full<double>({3, 7}, 0.0), db = full<double>({5, 3}, 0.0);
    auto dxbuf = full<double>({6, 10}, 0.0);
    lora_backward(ctx, da.view(), db.view(), block(dxbuf, 3, 7), r.view(), xd.view(), u.view(),
                  a.view(), bm.view(), 1.7f, p, 99, 4, du.view(), dxd.view());
    const std::string what = "lora p=" + std::to_string(p);
    fd_check(a.view(), da.view(), loss, what + " dA");
    fd_check(bm.view(), db.view(), loss, what + " dB");
    fd_check(xbuf.view(), dxbuf.view(), loss, what + " dx");
    if (p > 0) {
      int dropped = 0;
      for (index_t i = 0; i < xd.size(); ++i) dropped += xd.data()[i] == 0.0;
      BOOST_TEST(dropped > 0, "dropout 0.3 dropped nothing of 42 inputs");
      BOOST_TEST(dropped < 42);
    }
  }
}

BOOST_AUTO_TEST_CASE(norm_gradients) {
  for (auto kind : {norm_kind::rms, norm_kind::layer}) {
    auto x = rnd({4, 9}, 21, -2, 2), w = rnd({9}, 22, 0.5, 1.5), b = rnd({9}, 23),
         r = rnd({4, 9}, 24);
    tensor<double> y({4, 9});
    auto loss = [&] {
      norm_forward(ctx, kind, y.view(), x.view(), w.view(), b.view(), 1e-5f);
      return dot(y.view(), r.view());
    };
    auto dx = full<double>({4, 9}, 0.0), dw = full<double>({9}, 0.0), db = full<double>({9}, 0.0);
    norm_backward(ctx, kind, dx.view(), r.view(), x.view(), w.view(), 1e-5f, dw.view(), db.view());
    const std::string what = kind == norm_kind::rms ? "rms_norm" : "layer_norm";
    fd_check(x.view(), dx.view(), loss, what + " dx");
    fd_check(w.view(), dw.view(), loss, what + " dw");
    if (kind == norm_kind::layer) fd_check(b.view(), db.view(), loss, what + " db");
  }
}

BOOST_AUTO_TEST_CASE(rope_gradient) {
  // (N, H, Dh) = (3, 2, 6) inside a (3, 20) buffer at column 4.
  auto buf = rnd({3, 20}, 31), r = rnd({3, 2, 6}, 32);
  tensor<std::int32_t> pos({3});
  pos.data()[0] = 0, pos.data()[1] = 5, pos.data()[2] = 37;
  tensor<float> inv({3});
  for (int i = 0; i < 3; ++i) inv.data()[i] = std::pow(10000.0f, -2.0f * i / 6.0f);
  auto view = [&](tensor<double>& t) {
    return tensor_view<double>(t.data() + 4, {3, 2, 6}, {20, 6, 1});
  };
  auto loss = [&] {
    auto copy = buf.clone();
    rope_forward(ctx, view(copy), pos.view(), inv.view());
    double s = 0;
    const auto v = view(copy);
    for (index_t n = 0; n < 3; ++n)
      for (index_t h = 0; h < 2; ++h)
        for (index_t d = 0; d < 6; ++d) s += v(n, h, d) * r(n, h, d);
    return s;
  };
  auto dbuf = full<double>({3, 20}, 0.0);
  auto dv = view(dbuf);
  for (index_t n = 0; n < 3; ++n)
    for (index_t h = 0; h < 2; ++h)
      for (index_t d = 0; d < 6; ++d) dv(n, h, d) = r(n, h, d);
  rope_backward(ctx, dv, pos.view(), inv.view());
  fd_check(buf.view(), dbuf.view(), loss, "rope dx");
}

BOOST_AUTO_TEST_CASE(attention_gradients_with_masks_and_gqa) {
  // B 2, T 5, H 4, Hkv 2, Dh 3 in a fused (N, (H + 2 Hkv) Dh) buffer; row 1's first key is
  // padding (its query 0 sees nothing) and its last token too.
  const index_t B = 2, T = 5, H = 4, Hkv = 2, Dh = 3, W = (H + 2 * Hkv) * Dh;
  auto qkv = rnd({B * T, W}, 41, -1.5, 1.5), r = rnd({B, T, H, Dh}, 42);
  tensor<std::int32_t> valid({B * T});
  const int v[] = {1, 1, 1, 1, 1, 0, 1, 1, 1, 0};
  std::copy(v, v + B * T, valid.data());
  auto part = [&](tensor<double>& t, index_t off, index_t heads) {
    return tensor_view<double>(t.data() + off, {B, T, heads, Dh}, {T * W, W, Dh, 1});
  };
  tensor<double> out({B, T, H, Dh}), lse({B, H, T});
  const float scale = 1.0f / std::sqrt(3.0f);
  auto loss = [&] {
    attention_forward_train(ctx, out.view(), lse.view(), part(qkv, 0, H), part(qkv, H * Dh, Hkv),
                            part(qkv, (H + Hkv) * Dh, Hkv), valid.view(), scale);
    return dot(out.view(), r.view());
  };
  loss();
  for (index_t h = 0; h < H; ++h) {
    BOOST_TEST(std::isinf(lse(1, h, 0)), "a query without visible keys has lse -inf");
    for (index_t d = 0; d < Dh; ++d) BOOST_TEST(out(1, 0, h, d) == 0.0);
  }
  auto dqkv = rnd({B * T, W}, 43);  // overwritten
  attention_backward(ctx, part(dqkv, 0, H), part(dqkv, H * Dh, Hkv),
                     part(dqkv, (H + Hkv) * Dh, Hkv), r.view(), out.view(), part(qkv, 0, H),
                     part(qkv, H * Dh, Hkv), part(qkv, (H + Hkv) * Dh, Hkv), lse.view(),
                     valid.view(), scale);
  fd_check(qkv.view(), dqkv.view(), loss, "attention dq dk dv");
}

BOOST_AUTO_TEST_CASE(activation_gradients) {
  for (auto a : {activation::gelu_tanh, activation::gelu_erf, activation::silu, activation::relu,
                 activation::tanh}) {
    auto x = rnd({3, 8}, 51, -3, 3), r = rnd({3, 8}, 52);
    tensor<double> y({3, 8}), dx({3, 8});
    auto loss = [&] {
      activation_forward(ctx, a, y.view(), x.view());
      return dot(y.view(), r.view());
    };
    activation_backward(ctx, a, dx.view(), r.view(), x.view());
    fd_check(x.view(), dx.view(), loss, "activation " + std::to_string(int(a)));
    // the S-precision forward is the inference op's formula
    for (index_t i = 0; i < x.size(); ++i) {
      loss();
      BOOST_TEST(std::fabs(y.data()[i] - apply_activation(a, float(x.data()[i]))) < 1e-5);
    }
  }
  for (auto a : {activation::silu, activation::gelu_tanh}) {
    auto gu = rnd({3, 12}, 53, -3, 3), r = rnd({3, 6}, 54);
    tensor<double> y({3, 6}), dgu({3, 12});
    auto loss = [&] {
      gated_activation_forward(ctx, a, y.view(), gu.view());
      return dot(y.view(), r.view());
    };
    gated_activation_backward(ctx, a, dgu.view(), r.view(), gu.view());
    fd_check(gu.view(), dgu.view(), loss, "gated activation " + std::to_string(int(a)));
  }
}

BOOST_AUTO_TEST_CASE(embedding_gradient_scatter_adds) {
  auto table = rnd({6, 4}, 61), r = rnd({5, 4}, 62);
  tensor<std::int32_t> ids({5});
  const int v[] = {2, 0, 2, 5, 2};  // repeats accumulate
  std::copy(v, v + 5, ids.data());
  tensor<double> x({5, 4});
  auto loss = [&] {
    embedding_forward(ctx, x.view(), ids.view(), table.view());
    return dot(x.view(), r.view());
  };
  auto dt = full<double>({6, 4}, 0.0);
  embedding_backward(ctx, dt.view(), r.view(), ids.view());
  fd_check(table.view(), dt.view(), loss, "embedding dtable");
  ids.data()[1] = 6;
  BOOST_CHECK_THROW(embedding_forward(ctx, x.view(), ids.view(), table.view()), value_error);
}

// ---- the whole model ----

namespace {

struct family_case {
  std::string family;
  float dropout;
};

// A padded batch: row 1 is shorter; row 0's first target is ignored too.
token_batch model_batch() {
  auto b = make_token_batch({{1, 5, 9, 2, 7, 3}, {4, 8, 6, 11}}, 0);
  b.targets[0] = -1;
  return b;
}

}  // namespace

BOOST_AUTO_TEST_CASE(whole_model_matches_finite_differences) {
  for (const auto& fc :
       {family_case{"llama", 0.0f}, family_case{"qwen2", 0.0f}, family_case{"gpt2", 0.0f},
        family_case{"llama", 0.25f}, family_case{"gpt2", 0.25f}}) {
    const std::string what = fc.family + " dropout " + std::to_string(fc.dropout);
    const auto dir = cbtest::tiny_model_dir(fc.family, 5);
    const auto model = cast_model<double>(decoder_model<float>::load(dir));
    std::filesystem::remove_all(dir);
    const auto& c = model.config;
    auto ad = lora_adapters<double>::create(
        c, lora_config{.rank = 2, .alpha = 3, .dropout = fc.dropout, .seed = 7});
    cbtest::randomize_lora_b(ad, 20, 0.4f);
    lora_decoder<double> dec(model, &ad);
    const auto batch = model_batch();
    const index_t n = batch.tokens(), C = c.hidden_size;
    // a trainable head (a copy of the frozen one, perturbed)
    tensor<double> head({c.vocab_size, C});
    {
      const auto fh = dec.frozen_head();
      for (index_t i = 0; i < head.size(); ++i) head.data()[i] = fh.data[i] * 0.9;
    }
    auto head_grad = full<double>(head.shape(), 0.0);
    // analytic: split at layer 1 (embed -> [0,1) -> [1,L) -> loss -> backward [1,L) -> [0,1))
    tensor<double> x0({n, C}), x({n, C}), dx({n, C});
    lora_activations<double> saved;
    dec.reset_dropout();
    dec.embed(ctx, batch, x0.view());
    std::copy(x0.data(), x0.data() + x0.size(), x.data());
    dec.forward(ctx, batch, 0, 1, x.view(), saved, true);
    dec.forward(ctx, batch, 1, c.num_layers, x.view(), saved, true);
    const auto r =
        dec.lm_loss(ctx, x.view(), head.view(), batch.targets, head_grad.view(), dx.view());
    BOOST_TEST(r.tokens == 7);
    dec.backward(ctx, dx.view(), 1, c.num_layers, saved);
    dec.backward(ctx, dx.view(), 0, 1, saved);
    // the same gradients from the one-call form
    {
      lora_adapters<double> ad2 = lora_adapters<double>::create(c, ad.config);
      ad.for_each([&](int l, lora_slot s, lora_module<double>& m) {
        ad2.set(l, s, m.a.clone(), m.b.clone());
      });
      lora_decoder<double> dec2(model, &ad2);
      auto hg2 = full<double>(head.shape(), 0.0);
      const auto r2 = dec2.loss_and_backward(ctx, batch, head.view(), hg2.view());
      BOOST_TEST(std::fabs(r2.mean() - r.mean()) < 1e-12, what << ": loss_and_backward's loss");
      BOOST_TEST(cbtest::compare_views(hg2.view(), head_grad.view(), 1e-12).ok());
      ad.for_each([&](int l, lora_slot s, lora_module<double>& m) {
        BOOST_TEST(cbtest::compare_views(ad2.find(l, s)->da.view(), m.da.view(), 1e-12).ok(),
                   what << ": loss_and_backward's dA");
      });
    }
    // loss from a given input x0 (same dropout masks as the analytic pass)
    auto loss_from = [&](const tensor<double>& in) {
      tensor<double> xs = in.clone();
      lora_activations<double> s2;
      dec.reset_dropout();
      dec.forward(ctx, batch, 0, 1, xs.view(), s2, true);
      dec.forward(ctx, batch, 1, c.num_layers, xs.view(), s2, true);
      return dec.lm_loss(ctx, xs.view(), head.view(), batch.targets, {}, {}).mean();
    };
    auto loss = [&] { return loss_from(x0); };
    BOOST_TEST(std::fabs(loss() - r.mean()) < 1e-12, what << ": the recomputed loss differs");
    ad.for_each([&](int l, lora_slot s, lora_module<double>& m) {
      const std::string name = what + " layer " + std::to_string(l) + " " + lora_module_name(c, s);
      fd_check(m.a.view(), m.da.view(), loss, name + " dA", 7);
      fd_check(m.b.view(), m.db.view(), loss, name + " dB", 5);
    });
    fd_check(head.view(), head_grad.view(), loss, what + " head", 13);
    fd_check(x0.view(), dx.view(), loss, what + " input dx", 3);
  }
}

BOOST_AUTO_TEST_CASE(float32_gradients_agree_with_float64) {
  for (const std::string fam : {"llama", "qwen2", "gpt2"}) {
    const auto dir = cbtest::tiny_model_dir(fam, 6);
    const auto m64 = cast_model<double>(decoder_model<float>::load(dir));
    const auto m32 = decoder_model<float>::load(dir);
    std::filesystem::remove_all(dir);
    const lora_config cfg{.rank = 4, .alpha = 8, .dropout = 0.1f, .seed = 3};
    auto a64 = lora_adapters<double>::create(m64.config, cfg);
    cbtest::randomize_lora_b(a64, 30, 0.4f);
    auto a32 = lora_adapters<float>::create(m32.config, cfg);
    a64.for_each([&](int l, lora_slot s, lora_module<double>& m) {
      tensor<float> a(m.a.shape()), b(m.b.shape());
      for (index_t i = 0; i < a.size(); ++i) a.data()[i] = float(m.a.data()[i]);
      for (index_t i = 0; i < b.size(); ++i) b.data()[i] = float(m.b.data()[i]);
      a32.set(l, s, a, b);
    });
    lora_decoder<double> d64(m64, &a64);
    lora_decoder<float> d32(m32, &a32);
    const auto batch = model_batch();
    const auto r64 = d64.loss_and_backward(ctx, batch, d64.frozen_head());
    const auto r32 = d32.loss_and_backward(ctx, batch, d32.frozen_head());
    BOOST_TEST(std::fabs(r64.mean() - r32.mean()) < 1e-4 * r64.mean(), fam << ": loss");
    a64.for_each([&](int l, lora_slot s, lora_module<double>& m) {
      const auto* f = a32.find(l, s);
      for (auto [g32, g64, which] :
           {std::tuple{&f->da, &m.da, "dA"}, std::tuple{&f->db, &m.db, "dB"}}) {
        const auto st = cbtest::compare(*g32, *g64);
        const double scale = std::max(1e-3, st.max_ref);
        // float32 keeps ~7 digits; the pass through two layers is a few dozen operations deep.
        BOOST_TEST(st.max_abs < double(dtype_traits<float>::rtol) * scale,
                   fam << " layer " << l << " " << lora_module_name(m64.config, s) << " " << which
                       << ": " << st.summary());
      }
    });
  }
}

BOOST_AUTO_TEST_CASE(dropout_mask_is_a_pure_function_of_its_counter) {
  // The CPU's block-wise row fill equals the per-element function the CUDA kernels call, drops a
  // share p of the elements, scales the rest by 1 / (1 - p), and differs between streams.
  const float p = 0.25f;
  const std::uint64_t n = 10000;
  std::vector<float> row(n), other(n);
  lora_dropout_factors(42, lora_stream(1, 3), 3, n, p, row.data());
  lora_dropout_factors(42, lora_stream(1, 4), 3, n, p, other.data());
  std::uint64_t dropped = 0, same = 0;
  for (std::uint64_t k = 0; k < n; ++k) {
    BOOST_TEST(row[k] == lora_dropout_factor(42, lora_stream(1, 3), 3 + k, p));
    BOOST_TEST((row[k] == 0.0f || row[k] == 1.0f / (1.0f - p)));
    dropped += row[k] == 0.0f;
    same += row[k] == other[k];
  }
  // binomial(10000, 0.25): sd 43; 6 sd either side
  BOOST_TEST(std::fabs(double(dropped) - 2500.0) < 260.0, dropped << " of 10000 dropped");
  BOOST_TEST(same < 0.8 * n, "two streams give (nearly) the same mask");
  lora_dropout_factors(42, 0, 0, 8, 0.0f, row.data());
  for (int k = 0; k < 8; ++k) BOOST_TEST(row[k] == 1.0f);
}

BOOST_AUTO_TEST_CASE(lm_loss_in_chunks_equals_one_pass) {
  const auto dir = cbtest::tiny_model_dir("qwen2", 9);
  const auto model = cast_model<double>(decoder_model<float>::load(dir));
  std::filesystem::remove_all(dir);
  lora_decoder<double> dec(model, nullptr);
  const auto batch = model_batch();
  const index_t n = batch.tokens(), C = model.config.hidden_size, V = model.config.vocab_size;
  const auto x = rnd({n, C}, 71, -2, 2);
  tensor<double> dx1({n, C}), dx3({n, C});
  auto hg1 = full<double>({V, C}, 0.0), hg3 = full<double>({V, C}, 0.0);
  const auto r1 =
      dec.lm_loss(ctx, x.view(), dec.frozen_head(), batch.targets, hg1.view(), dx1.view());
  dec.loss_chunk_rows = 3;  // 7 targets: chunks of 3, 3, 1
  const auto r3 =
      dec.lm_loss(ctx, x.view(), dec.frozen_head(), batch.targets, hg3.view(), dx3.view());
  BOOST_TEST(r1.tokens == 7);
  BOOST_TEST(r3.tokens == 7);
  BOOST_TEST(std::fabs(r1.sum - r3.sum) < 1e-12 * r1.sum);
  BOOST_TEST(cbtest::compare_views(dx3.view(), dx1.view(), 1e-14).ok());
  BOOST_TEST(cbtest::compare_views(hg3.view(), hg1.view(), 1e-14).ok());
  int zero_rows = 0;  // rows without a target get no gradient
  for (index_t i = 0; i < n; ++i) {
    if (batch.targets[i] >= 0) continue;
    bool zero = true;
    for (index_t j = 0; j < C; ++j) zero &= dx1(i, j) == 0.0;
    zero_rows += zero;
  }
  BOOST_TEST(zero_rows == int(n) - 7);
}
