// The CUDA ops of training through the frozen decoder: the same names, argument order and
// contracts as train/backward/ops.hpp (the CPU reference), for activations T = float | bfloat16
// (| half) and gradients / adapters G = float. Unlike the CPU ops, the views of one call may have
// different element types (mixed precision): a matrix product computes in the lowest precision
// among its operands and output (bfloat16 tensor cores, float accumulation, through cuBLASLt),
// converting the others on the fly; every elementwise op computes in float.
// Attention materialises the (B, H, T, T) scores per layer call (batched cuBLASLt products per
// kv head, so GQA gradients sum inside the product) and recomputes them in the backward pass
// from the saved log-sum-exp. Temporaries come from the stream-ordered pool (no device sync).
// Reductions are deterministic except embedding_backward (float atomics).
#pragma once

#include <memory>
#include <type_traits>
#include <vector>

#include "crossbatch/ops/cpu/norm.hpp"  // norm_kind
#include "crossbatch/ops/cuda/norm.cuh"  // norm_threads
#include "crossbatch/ops/cuda/rope.cuh"
#include "crossbatch/train/backward/ops.hpp"
#include "crossbatch/train/cuda/backward_kernels.cuh"
#include "crossbatch/train/cuda/matmul.cuh"
#include "crossbatch/train/cuda/ops.cuh"

namespace crossbatch {
namespace cuda_detail {

template <class T>
inline constexpr bool is_element_v =
    std::is_same_v<T, float> || std::is_same_v<T, bfloat16> || std::is_same_v<T, half>;

// The compute type of a product over element types Ts: the one that is not float (at most one
// such type may appear), else float.
template <class... Ts>
struct lowest {
  using type = float;
};
template <class T, class... Ts>
struct lowest<T, Ts...> {
  using rest = typename lowest<Ts...>::type;
  static_assert(std::is_same_v<T, float> || std::is_same_v<rest, float> || std::is_same_v<T, rest>,
                "mixed precision: one product may mix float with one other element type only");
  using type = std::conditional_t<std::is_same_v<T, float>, rest, T>;
};
template <class... Ts>
using lowest_t = typename lowest<std::remove_const_t<Ts>...>::type;

// The kernel-side element type of a (possibly const) element type, as a kernel template argument.
template <class X>
using kt = cuda_t<std::remove_const_t<X>>;

inline unsigned ew_blocks(index_t n) { return blocks_for(n, 256, 8192); }

// A 2-D view's elements as kernel type K: the view itself when it already holds K, else a
// contiguous converted copy in pool memory.
template <class K, class X>
struct as_type {
  using KC = cuda_t<K>;
  std::unique_ptr<scratch<KC>> buf;
  const KC* p = nullptr;
  index_t ld = 0;
  as_type(const context<cuda>& ctx, tensor_view<X, cuda> v, const char* what) {
    const index_t rows = v.shape[0], cols = v.shape[1], vs = row_stride(v, what);
    if constexpr (std::is_same_v<K, std::remove_const_t<X>>) {
      p = dev(v.data);
      ld = vs;
    } else {
      buf = std::make_unique<scratch<KC>>(ctx, rows * cols);
      launch(ctx, "convert", convert_kernel<KC, kt<X>>, dim3(ew_blocks(rows * cols)), dim3(256), 0,
             buf->get(), cols, dev(v.data), vs, rows, cols, 1.0f);
      p = buf->get();
      ld = cols;
    }
  }
};

// c (M, N) = alpha op(a) op(b) + beta c for any mix of float with one other element type.
template <class C, class X, class W>
void product(const context<cuda>& ctx, tensor_view<C, cuda> c, tensor_view<X, cuda> a,
             tensor_view<W, cuda> b, bool ta, bool tb, float alpha, float beta, const char* op) {
  using K = lowest_t<C, X, W>;
  const index_t m = ta ? a.shape[1] : a.shape[0], k = ta ? a.shape[0] : a.shape[1];
  const index_t kb = tb ? b.shape[1] : b.shape[0], n = tb ? b.shape[0] : b.shape[1];
  require<shape_error>(a.rank() == 2 && b.rank() == 2 && k == kb && c.shape == shape_t{m, n},
                       std::string(op) + ": " + to_string(a.shape) + (ta ? "^T" : "") + " x " +
                           to_string(b.shape) + (tb ? "^T" : "") + " -> " + to_string(c.shape));
  if (m == 0 || n == 0) return;
  const index_t ldc = row_stride(c, op);
  if (k == 0) {
    if (beta == 0.0f)  // an empty sum
      cuda_check(cudaMemset2DAsync(c.data, sizeof(C) * ldc, 0, sizeof(C) * n, m, ctx.stream),
                 "product: zero c");
    return;
  }
  const as_type<K, X> ak(ctx, a, op);
  const as_type<K, W> bk(ctx, b, op);
  matmul_raw(ctx, dev(c.data), ldc, ak.p, ak.ld, bk.p, bk.ld, m, n, k, ta, tb, alpha, beta);
}

template <class T>
tensor_view<const T, cuda> cv(tensor_view<T, cuda> v) {
  return v;
}

}  // namespace cuda_detail

// Inputs are tensor_view<X, cuda> with X deduced const or not (so mutable views pass too); every
// input has its own element type.

// ---- linear layers (frozen W in the (out, in) layout) ----

// y (N, O) = x (N, I) W^T (+ b (O) when b has data).
template <class Y, class X, class W, class B = const float>
void linear_forward(const context<cuda>& ctx, tensor_view<Y, cuda> y, tensor_view<X, cuda> x,
                    tensor_view<W, cuda> w, tensor_view<B, cuda> b = {}) {
  using namespace cuda_detail;
  product(ctx, y, x, w, false, true, 1.0f, 0.0f, "linear_forward");
  if (b.data) {
    require<shape_error>(b.size() == y.shape[1], "linear_forward: bias " + to_string(b.shape) +
                                                     " for output " + to_string(y.shape));
    launch(ctx, "bias_add", bias_add_kernel<cuda_t<Y>, kt<B>>, dim3(ew_blocks(y.size())), dim3(256),
           0, dev(y.data), row_stride(y, "y"), dev(b.data), y.shape[0], y.shape[1]);
  }
}

// dx (N, I) = dy (N, O) W (O, I), or += when accumulate.
template <class G, class DY, class W>
void linear_backward_input(const context<cuda>& ctx, tensor_view<G, cuda> dx,
                           tensor_view<DY, cuda> dy, tensor_view<W, cuda> w,
                           bool accumulate = false) {
  cuda_detail::product(ctx, dx, dy, w, false, false, 1.0f, accumulate ? 1.0f : 0.0f,
                       "linear_backward_input");
}

// ---- LoRA adapter: y += scale * B (A (dropout(x))) ----

// y (N, O) += scale * xd A^T B^T, xd (N, I) = dropout(x) and u (N, r) = xd A^T written.
template <class Y, class X, class GA, class GB, class G>
void lora_forward(const context<cuda>& ctx, tensor_view<Y, cuda> y, tensor_view<X, cuda> x,
                  tensor_view<GA, cuda> a, tensor_view<GB, cuda> b, float scale, float p,
                  std::uint64_t seed, std::uint64_t stream, tensor_view<G, cuda> xd,
                  tensor_view<G, cuda> u) {
  using namespace cuda_detail;
  using namespace backward_detail;
  const index_t n = x.shape[0], in = x.shape[1], r = a.shape[0], out = b.shape[0];
  require_rows(a, r, in, "lora_forward", "A");
  require_rows(b, out, r, "lora_forward", "B");
  require_rows(y, n, out, "lora_forward", "y");
  require_rows(xd, n, in, "lora_forward", "xd");
  require_rows(u, n, r, "lora_forward", "u");
  require<shape_error>(xd.contiguous(), "lora_forward: xd must be contiguous");
  launch(ctx, "lora_dropout", dropout_kernel<cuda_t<G>, kt<X>>, dim3(ew_blocks(n * in)), dim3(256),
         0, dev(xd.data), dev(x.data), row_stride(x, "lora_forward x"), n, in, seed, stream, p);
  product(ctx, u, cv(xd), a, false, true, 1.0f, 0.0f, "lora_forward");
  product(ctx, y, cv(u), b, false, true, scale, 1.0f, "lora_forward");
}

// The backward pass of lora_forward given dy (N, O): dA (r, I) +=, dB (O, r) +=, dx (N, I) +=.
// du (N, r) and dxd (N, I) are scratch.
template <class G, class DX, class DY, class XD, class U, class GA, class GB>
void lora_backward(const context<cuda>& ctx, tensor_view<G, cuda> da, tensor_view<G, cuda> db,
                   tensor_view<DX, cuda> dx, tensor_view<DY, cuda> dy, tensor_view<XD, cuda> xd,
                   tensor_view<U, cuda> u, tensor_view<GA, cuda> a, tensor_view<GB, cuda> b,
                   float scale, float p, std::uint64_t seed, std::uint64_t stream,
                   tensor_view<G, cuda> du, tensor_view<G, cuda> dxd) {
  using namespace cuda_detail;
  using namespace backward_detail;
  const index_t n = xd.shape[0], in = xd.shape[1], r = a.shape[0], out = b.shape[0];
  require_rows(dy, n, out, "lora_backward", "dy");
  require_rows(dx, n, in, "lora_backward", "dx");
  require_rows(du, n, r, "lora_backward", "du");
  product(ctx, db, dy, u, true, false, scale, 1.0f, "lora_backward dB");
  product(ctx, du, dy, b, false, false, scale, 0.0f, "lora_backward du");
  product(ctx, da, cv(du), xd, true, false, 1.0f, 1.0f, "lora_backward dA");
  if (p <= 0.0f) {
    product(ctx, dx, cv(du), a, false, false, 1.0f, 1.0f, "lora_backward dx");
    return;
  }
  require_rows(dxd, n, in, "lora_backward", "dxd");
  static_assert(std::is_same_v<G, float>, "lora_backward: adapters are float32");
  product(ctx, dxd, cv(du), a, false, false, 1.0f, 0.0f, "lora_backward dxd");
  launch(ctx, "lora_dropout_backward", dropout_backward_kernel<cuda_t<DX>>, dim3(ew_blocks(n * in)),
         dim3(256), 0, dev(dx.data), row_stride(dx, "dx"), static_cast<const float*>(dxd.data),
         row_stride(dxd, "dxd"), n, in, seed, stream, p, true);
}

// ---- normalisation with frozen weights ----

// out (N, C) = norm(x) * w (+ b for LayerNorm), in float.
template <class O, class X, class W, class B>
void norm_forward(const context<cuda>& ctx, norm_kind kind, tensor_view<O, cuda> out,
                  tensor_view<X, cuda> x, tensor_view<W, cuda> w, tensor_view<B, cuda> b,
                  float eps) {
  using namespace cuda_detail;
  const index_t n = x.shape[0], c = x.shape[1];
  require<shape_error>(
      out.shape == x.shape && w.size() == c && (kind != norm_kind::layer || b.size() == c),
      "norm_forward: x " + to_string(x.shape) + ", out " + to_string(out.shape));
  launch(ctx, "norm_forward", norm_forward_kernel<cuda_t<O>, kt<X>, kt<W>>, dim3(unsigned(n)),
         dim3(norm_threads(c)), 0, kind == norm_kind::layer, dev(out.data), row_stride(out, "out"),
         dev(x.data), row_stride(x, "x"), dev(w.data),
         kind == norm_kind::layer ? dev(b.data) : nullptr, int(c), eps);
  static_assert(std::is_same_v<std::remove_const_t<W>, std::remove_const_t<B>>,
                "norm_forward: w and b of one type");
}

// dx (N, C) += d norm(x) / dx applied to dy (N, C); dw, db (C) += when they have data.
template <class G, class DY, class X, class W>
void norm_backward(const context<cuda>& ctx, norm_kind kind, tensor_view<G, cuda> dx,
                   tensor_view<DY, cuda> dy, tensor_view<X, cuda> x, tensor_view<W, cuda> w,
                   float eps, tensor_view<G, cuda> dw = {}, tensor_view<G, cuda> db = {}) {
  using namespace cuda_detail;
  const index_t n = x.shape[0], c = x.shape[1];
  require<shape_error>(dx.shape == x.shape && dy.shape == x.shape && w.size() == c &&
                           dx.contiguous() && dy.contiguous(),
                       "norm_backward: x " + to_string(x.shape) + ", dy " + to_string(dy.shape) +
                           ", dx " + to_string(dx.shape));
  const bool layer = kind == norm_kind::layer, want_dw = dw.data, want_db = db.data && layer;
  static_assert(std::is_same_v<G, float>, "norm_backward: gradients are float32");
  scratch<float> pw(ctx, want_dw ? n * c : 0), pb(ctx, want_db ? n * c : 0);
  launch(ctx, "norm_backward", norm_backward_kernel<cuda_t<G>, kt<DY>, kt<X>, kt<W>>,
         dim3(unsigned(n)), dim3(norm_threads(c)), 0, layer, dev(dx.data), dev(dy.data),
         dev(x.data), row_stride(x, "x"), dev(w.data), pw.get(), pb.get(), int(c), eps, true);
  if (want_dw)
    launch(ctx, "column_sum", column_sum_kernel, dim3(blocks_for(c, 128)), dim3(128), 0, dw.data,
           static_cast<const float*>(pw.get()), int(n), int(c));
  if (want_db)
    launch(ctx, "column_sum", column_sum_kernel, dim3(blocks_for(c, 128)), dim3(128), 0, db.data,
           static_cast<const float*>(pb.get()), int(n), int(c));
}

// ---- rotary position embedding ----

// x (N, H, Dh) rotated in place (positions and inv_freq in device memory); x may be strided.
template <class T>
void rope_forward(const context<cuda>& ctx, tensor_view<T, cuda> x,
                  tensor_view<const std::int32_t, cuda> positions,
                  tensor_view<const float, cuda> inv_freq) {
  require<shape_error>(x.rank() == 3 && x.strides[2] == 1, "rope_forward: x " + to_string(x.shape));
  apply_rope(ctx, x, positions, inv_freq);
}

// dx (N, H, Dh) in place: the inverse rotation.
template <class G>
void rope_backward(const context<cuda>& ctx, tensor_view<G, cuda> dx,
                   tensor_view<const std::int32_t, cuda> positions,
                   tensor_view<const float, cuda> inv_freq) {
  require<shape_error>(
      dx.rank() == 3 && dx.shape[0] == positions.size() && dx.shape[2] == 2 * inv_freq.size() &&
          dx.strides[2] == 1,
      "rope_backward: x " + to_string(dx.shape) + " does not fit positions / inv_freq");
  using namespace cuda_detail;
  const index_t total = dx.shape[0] * dx.shape[1] * (dx.shape[2] / 2);
  launch(ctx, "rope_backward", rope_backward_kernel<cuda_t<G>>, dim3(ew_blocks(total)), dim3(256),
         0, dev(dx.data), dx.strides[0], dx.strides[1], dx.strides[2], positions.data,
         inv_freq.data, int(dx.shape[1]), int(dx.shape[2] / 2), total);
}

// ---- attention: causal within a row, keys masked by valid, grouped-query heads ----

namespace cuda_detail {
struct attention_dims {
  index_t b, t, h, d, hkv, group;
};
template <class V>
void check_bthd(const V& v, const attention_dims& a, index_t heads, const char* op,
                const char* what) {
  require<shape_error>(
      v.rank() == 4 && v.shape == shape_t{a.b, a.t, heads, a.d} && v.strides[3] == 1,
      std::string(op) + ": " + what + " must be " + to_string({a.b, a.t, heads, a.d}) +
          " with unit last stride, got " + to_string(v.shape));
}
// packed (B, heads, T, Dh) in type K from a (B, T, heads, Dh) view.
template <class K, class X>
void pack(const context<cuda>& ctx, cuda_t<K>* packed, tensor_view<X, cuda> x, float scale = 1.0f) {
  launch(ctx, "attention pack", pack_heads_kernel<cuda_t<K>, kt<X>>, dim3(ew_blocks(x.size())),
         dim3(256), 0, packed, dev(x.data), x.strides[0], x.strides[1], x.strides[2],
         int(x.shape[0]), int(x.shape[1]), int(x.shape[2]), int(x.shape[3]), scale);
}
template <class O, class P>
void unpack(const context<cuda>& ctx, tensor_view<O, cuda> x, const P* packed) {
  launch(ctx, "attention unpack", unpack_heads_kernel<cuda_t<O>, P>, dim3(ew_blocks(x.size())),
         dim3(256), 0, dev(x.data), x.strides[0], x.strides[1], x.strides[2], packed,
         int(x.shape[0]), int(x.shape[1]), int(x.shape[2]), int(x.shape[3]), false);
}
inline int softmax_threads(index_t t) { return t >= 1024 ? 512 : t >= 256 ? 256 : 128; }

// s (B*H, T, T) f32 = scale q k^T per (b, kv head) block of g query heads; then p = masked
// softmax (lse written, or read back when recompute).
template <class K>
void scores_and_probs(const context<cuda>& ctx, const attention_dims& a, float* s, cuda_t<K>* p,
                      float* lse, const cuda_t<K>* qp, const cuda_t<K>* kp,
                      const std::int32_t* valid, float scale, bool recompute) {
  const index_t gt = a.group * a.t;
  matmul_raw(ctx, s, a.t, qp, a.d, kp, a.d, gt, a.t, a.d, false, true, scale, 0.0f, a.b * a.hkv,
             gt * a.d, a.t * a.d, gt * a.t);
  launch(ctx, "masked_softmax", masked_softmax_kernel<cuda_t<K>>, dim3(unsigned(a.b * a.h * a.t)),
         dim3(softmax_threads(a.t)), 0, p, lse, static_cast<const float*>(s), valid, int(a.h),
         int(a.t), recompute);
}
}  // namespace cuda_detail

// out (B, T, H, Dh) = softmax(q k^T * scale + mask) v; lse (B, H, T) (contiguous) written.
// valid (B*T) in device memory.
template <class O, class L, class T, class TK, class TV, class I>
void attention_forward_train(const context<cuda>& ctx, tensor_view<O, cuda> out,
                             tensor_view<L, cuda> lse, tensor_view<T, cuda> q,
                             tensor_view<TK, cuda> k, tensor_view<TV, cuda> v,
                             tensor_view<I, cuda> valid, float scale) {
  static_assert(std::is_same_v<std::remove_const_t<T>, std::remove_const_t<TK>> &&
                    std::is_same_v<std::remove_const_t<T>, std::remove_const_t<TV>> &&
                    std::is_same_v<std::remove_const_t<I>, std::int32_t>,
                "attention_forward_train: q, k, v of one type; valid int32");
  using namespace cuda_detail;
  static_assert(std::is_same_v<std::remove_const_t<L>, float>,
                "attention_forward_train: lse is float32");
  require<shape_error>(
      q.rank() == 4 && k.rank() == 4 && k.shape[2] > 0 && q.shape[2] % k.shape[2] == 0,
      "attention_forward_train: q " + to_string(q.shape) + ", k " + to_string(k.shape));
  const attention_dims a{q.shape[0], q.shape[1], q.shape[2],
                         q.shape[3], k.shape[2], q.shape[2] / k.shape[2]};
  const char* op = "attention_forward_train";
  check_bthd(q, a, a.h, op, "q");
  check_bthd(k, a, a.hkv, op, "k");
  check_bthd(v, a, a.hkv, op, "v");
  check_bthd(out, a, a.h, op, "out");
  require<shape_error>(
      lse.shape == shape_t{a.b, a.h, a.t} && lse.contiguous() && valid.size() == a.b * a.t &&
          valid.contiguous(),
      "attention_forward_train: lse " + to_string(lse.shape) + ", valid " + to_string(valid.shape));
  if (a.b * a.t == 0) return;
  using K = lowest_t<T>;
  using KC = cuda_t<K>;
  const index_t gt = a.group * a.t;
  scratch<KC> qp(ctx, q.size()), kp(ctx, k.size()), vp(ctx, v.size()),
      p(ctx, a.b * a.h * a.t * a.t), op_(ctx, q.size());
  scratch<float> s(ctx, a.b * a.h * a.t * a.t);
  pack<K>(ctx, qp.get(), q);
  pack<K>(ctx, kp.get(), k);
  pack<K>(ctx, vp.get(), v);
  scores_and_probs<K>(ctx, a, s.get(), p.get(), lse.data, qp.get(), kp.get(), valid.data, scale,
                      false);
  // o (g*T, Dh) = p (g*T, T) v (T, Dh) per (b, kv head)
  matmul_raw(ctx, op_.get(), a.d, p.get(), a.t, vp.get(), a.d, gt, a.d, a.t, false, false, 1.0f,
             0.0f, a.b * a.hkv, gt * a.t, a.t * a.d, gt * a.d);
  unpack(ctx, out, static_cast<const KC*>(op_.get()));
}

// The backward pass given dout (B, T, H, Dh): dq (B, T, H, Dh) =, dk, dv (B, T, Hkv, Dh) =.
// Probabilities are recomputed from q, k and lse; sum_j p dp stands for dout . out (equal up to
// rounding), so `out` is only checked.
template <class G, class DO, class O, class T, class TK, class TV, class L, class I>
void attention_backward(const context<cuda>& ctx, tensor_view<G, cuda> dq, tensor_view<G, cuda> dk,
                        tensor_view<G, cuda> dv, tensor_view<DO, cuda> dout,
                        tensor_view<O, cuda> out, tensor_view<T, cuda> q, tensor_view<TK, cuda> k,
                        tensor_view<TV, cuda> v, tensor_view<L, cuda> lse,
                        tensor_view<I, cuda> valid, float scale) {
  static_assert(std::is_same_v<std::remove_const_t<T>, std::remove_const_t<TK>> &&
                    std::is_same_v<std::remove_const_t<T>, std::remove_const_t<TV>> &&
                    std::is_same_v<std::remove_const_t<I>, std::int32_t>,
                "attention_backward: q, k, v of one type; valid int32");
  using namespace cuda_detail;
  static_assert(std::is_same_v<std::remove_const_t<L>, float>,
                "attention_backward: lse is float32");
  require<shape_error>(
      q.rank() == 4 && k.rank() == 4 && k.shape[2] > 0 && q.shape[2] % k.shape[2] == 0,
      "attention_backward: q " + to_string(q.shape) + ", k " + to_string(k.shape));
  const attention_dims a{q.shape[0], q.shape[1], q.shape[2],
                         q.shape[3], k.shape[2], q.shape[2] / k.shape[2]};
  const char* op = "attention_backward";
  check_bthd(q, a, a.h, op, "q");
  check_bthd(k, a, a.hkv, op, "k");
  check_bthd(v, a, a.hkv, op, "v");
  check_bthd(out, a, a.h, op, "out");
  check_bthd(dout, a, a.h, op, "dout");
  check_bthd(dq, a, a.h, op, "dq");
  check_bthd(dk, a, a.hkv, op, "dk");
  check_bthd(dv, a, a.hkv, op, "dv");
  require<shape_error>(
      lse.shape == shape_t{a.b, a.h, a.t} && lse.contiguous() && valid.size() == a.b * a.t &&
          valid.contiguous(),
      "attention_backward: lse " + to_string(lse.shape) + ", valid " + to_string(valid.shape));
  if (a.b * a.t == 0) return;
  using K = lowest_t<T>;
  using KC = cuda_t<K>;
  const index_t gt = a.group * a.t, blocks = a.b * a.hkv, tt = a.b * a.h * a.t * a.t;
  scratch<KC> qp(ctx, q.size()), kp(ctx, k.size()), vp(ctx, v.size()), dop(ctx, q.size()),
      p(ctx, tt);
  scratch<float> s(ctx, tt), dqp(ctx, q.size()), dkp(ctx, k.size()), dvp(ctx, v.size());
  pack<K>(ctx, qp.get(), q);
  pack<K>(ctx, kp.get(), k);
  pack<K>(ctx, vp.get(), v);
  pack<K>(ctx, dop.get(), dout);
  scores_and_probs<K>(ctx, a, s.get(), p.get(), const_cast<float*>(lse.data), qp.get(), kp.get(),
                      valid.data, scale, true);
  // dv (T, Dh) = p^T (T, g*T) do (g*T, Dh)
  matmul_raw(ctx, dvp.get(), a.d, p.get(), a.t, dop.get(), a.d, a.t, a.d, gt, true, false, 1.0f,
             0.0f, blocks, gt * a.t, gt * a.d, a.t * a.d);
  // dp (g*T, T) = do (g*T, Dh) v^T, into s
  matmul_raw(ctx, s.get(), a.t, dop.get(), a.d, vp.get(), a.d, gt, a.t, a.d, false, true, 1.0f,
             0.0f, blocks, gt * a.d, a.t * a.d, gt * a.t);
  // ds = scale p (dp - sum p dp), over p
  launch(ctx, "softmax_backward", softmax_backward_kernel<KC>, dim3(unsigned(a.b * a.h * a.t)),
         dim3(softmax_threads(a.t)), 0, p.get(), static_cast<const float*>(s.get()), int(a.t),
         scale);
  // dq (g*T, Dh) = ds (g*T, T) k (T, Dh); dk (T, Dh) = ds^T (T, g*T) q (g*T, Dh)
  matmul_raw(ctx, dqp.get(), a.d, p.get(), a.t, kp.get(), a.d, gt, a.d, a.t, false, false, 1.0f,
             0.0f, blocks, gt * a.t, a.t * a.d, gt * a.d);
  matmul_raw(ctx, dkp.get(), a.d, p.get(), a.t, qp.get(), a.d, a.t, a.d, gt, true, false, 1.0f,
             0.0f, blocks, gt * a.t, gt * a.d, a.t * a.d);
  unpack(ctx, dq, static_cast<const float*>(dqp.get()));
  unpack(ctx, dk, static_cast<const float*>(dkp.get()));
  unpack(ctx, dv, static_cast<const float*>(dvp.get()));
}

// ---- MLP activations ----

// out = act(x), elementwise; contiguous, equal sizes.
template <class O, class X>
void activation_forward(const context<cuda>& ctx, activation a, tensor_view<O, cuda> out,
                        tensor_view<X, cuda> x) {
  require<shape_error>(out.size() == x.size() && out.contiguous() && x.contiguous(),
                       "activation_forward: shapes differ");
  using namespace cuda_detail;
  launch(ctx, "activation_forward", activation_forward_kernel<cuda_t<O>, kt<X>>,
         dim3(ew_blocks(x.size())), dim3(256), 0, a, dev(out.data), dev(x.data), x.size());
}

// dx = dy * act'(x) (=).
template <class G, class DY, class X>
void activation_backward(const context<cuda>& ctx, activation a, tensor_view<G, cuda> dx,
                         tensor_view<DY, cuda> dy, tensor_view<X, cuda> x) {
  require<shape_error>(dx.size() == x.size() && dy.size() == x.size() && dx.contiguous() &&
                           dy.contiguous() && x.contiguous(),
                       "activation_backward: shapes differ");
  using namespace cuda_detail;
  launch(ctx, "activation_backward", activation_backward_kernel<cuda_t<G>, kt<DY>, kt<X>>,
         dim3(ew_blocks(x.size())), dim3(256), 0, a, dev(dx.data), dev(dy.data), dev(x.data),
         x.size());
}

// out (N, F) = act(gate) * up with gate_up (N, 2F) = [gate | up].
template <class O, class X>
void gated_activation_forward(const context<cuda>& ctx, activation a, tensor_view<O, cuda> out,
                              tensor_view<X, cuda> gate_up) {
  const index_t n = out.shape[0], f = out.shape[1];
  require<shape_error>(out.rank() == 2 && gate_up.shape == shape_t{n, 2 * f} && out.contiguous() &&
                           gate_up.contiguous(),
                       "gated_activation_forward: out " + to_string(out.shape) + ", gate_up " +
                           to_string(gate_up.shape));
  using namespace cuda_detail;
  launch(ctx, "gated_activation_forward", gated_forward_kernel<cuda_t<O>, kt<X>>,
         dim3(ew_blocks(n * f)), dim3(256), 0, a, dev(out.data), dev(gate_up.data), n, f);
}

// dgate_up (N, 2F) = the gradient of gated_activation_forward given dout (N, F) (=).
template <class G, class DO, class X>
void gated_activation_backward(const context<cuda>& ctx, activation a,
                               tensor_view<G, cuda> dgate_up, tensor_view<DO, cuda> dout,
                               tensor_view<X, cuda> gate_up) {
  const index_t n = dout.shape[0], f = dout.shape[1];
  require<shape_error>(dgate_up.shape == shape_t{n, 2 * f} && gate_up.shape == dgate_up.shape &&
                           dgate_up.contiguous() && gate_up.contiguous() && dout.contiguous(),
                       "gated_activation_backward: dout " + to_string(dout.shape) + ", gate_up " +
                           to_string(gate_up.shape));
  using namespace cuda_detail;
  launch(ctx, "gated_activation_backward", gated_backward_kernel<cuda_t<G>, kt<DO>, kt<X>>,
         dim3(ew_blocks(n * f)), dim3(256), 0, a, dev(dgate_up.data), dev(dout.data),
         dev(gate_up.data), n, f);
}

// ---- embeddings and the residual stream ----

namespace cuda_detail {
inline void check_ids(tensor_view<const std::int32_t, cuda> ids, index_t vocab, const char* op) {
  require<shape_error>(ids.contiguous(), std::string(op) + ": ids must be contiguous");
  std::vector<std::int32_t> h(ids.size());
  device_traits<cuda>::download(h.data(), ids.data, sizeof(std::int32_t) * h.size());
  for (std::size_t i = 0; i < h.size(); ++i)
    require(h[i] >= 0 && h[i] < vocab,
            std::string(op) + ": id " + std::to_string(h[i]) + " at position " + std::to_string(i) +
                " is outside the table of " + std::to_string(vocab) + " rows");
}
}  // namespace cuda_detail

// x (N, C) (+)= table[ids[n]] (V, C); an id outside [0, V) is a value_error naming it (the ids
// are read back to the host for the check).
template <class X, class W>
void embedding_forward(const context<cuda>& ctx, tensor_view<X, cuda> x,
                       tensor_view<const std::int32_t, cuda> ids, tensor_view<W, cuda> table,
                       bool accumulate = false) {
  using namespace cuda_detail;
  const index_t n = ids.size(), c = table.shape[1];
  require<shape_error>(x.shape == shape_t{n, c}, "embedding_forward: x " + to_string(x.shape) +
                                                     " for " + std::to_string(n) +
                                                     " ids of a table " + to_string(table.shape));
  check_ids(ids, table.shape[0], "embedding_forward");
  launch(ctx, "embedding_forward", embedding_forward_kernel<cuda_t<X>, kt<W>>, dim3(unsigned(n)),
         dim3(c >= 256 ? 256 : 128), 0, dev(x.data), row_stride(x, "x"), ids.data, dev(table.data),
         row_stride(table, "table"), int(c), accumulate);
}

// dtable (V, C) += scatter-add of dx (N, C) by ids (N) (float atomics: the order of the additions
// into one row is not fixed).
template <class G, class DX>
void embedding_backward(const context<cuda>& ctx, tensor_view<G, cuda> dtable,
                        tensor_view<DX, cuda> dx, tensor_view<const std::int32_t, cuda> ids) {
  using namespace cuda_detail;
  static_assert(std::is_same_v<G, float>, "embedding_backward: the table gradient is float32");
  const index_t n = ids.size(), c = dtable.shape[1];
  require<shape_error>(dx.shape == shape_t{n, c}, "embedding_backward: dx " + to_string(dx.shape) +
                                                      ", table " + to_string(dtable.shape));
  check_ids(ids, dtable.shape[0], "embedding_backward");
  launch(ctx, "embedding_backward", embedding_backward_kernel<kt<DX>>, dim3(unsigned(n)),
         dim3(c >= 256 ? 256 : 128), 0, dtable.data, row_stride(dtable, "dtable"), dev(dx.data),
         row_stride(dx, "dx"), ids.data, int(dtable.shape[0]), int(c));
}

// x (N, C) += y (N, C).
template <class X, class Y>
void residual_add(const context<cuda>& ctx, tensor_view<X, cuda> x, tensor_view<Y, cuda> y) {
  using namespace cuda_detail;
  require<shape_error>(x.shape == y.shape && x.rank() == 2,
                       "residual_add: " + to_string(x.shape) + " vs " + to_string(y.shape));
  launch(ctx, "residual_add", add_rows_kernel<cuda_t<X>, kt<Y>>, dim3(ew_blocks(x.size())),
         dim3(256), 0, dev(x.data), row_stride(x, "x"), dev(y.data), row_stride(y, "y"), x.shape[0],
         x.shape[1]);
}

// dst (N, C) = src (N, C) converted to dst's element type (row-strided views). Same-type copies
// also go through mix/cuda/ops.cuh's copy_rows.
template <class DS, class SR>
void convert_rows(const context<cuda>& ctx, tensor_view<DS, cuda> dst, tensor_view<SR, cuda> src) {
  using namespace cuda_detail;
  require<shape_error>(dst.shape == src.shape && dst.rank() == 2,
                       "convert_rows: " + to_string(dst.shape) + " vs " + to_string(src.shape));
  launch(ctx, "convert_rows", convert_kernel<cuda_t<DS>, kt<SR>>, dim3(ew_blocks(dst.size())),
         dim3(256), 0, dev(dst.data), row_stride(dst, "dst"), dev(src.data), row_stride(src, "src"),
         dst.shape[0], dst.shape[1], 1.0f);
}

}  // namespace crossbatch
