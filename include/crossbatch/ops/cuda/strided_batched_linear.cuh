// Batched linear layers on the GPU whose results do not depend on the batch count: member g of a
// call computes out_g (n, o) = x_g (n, in) @ w_g (o, in)^T + bias_g with one cuBLASLt
// strided-batched matmul, x_g = x + g * stride_x and likewise for w, out and bias.
//
// Exactness by construction (the diagonal ARMT executor runs G cells in one call, the sequential
// one the same cells one call each, and both must agree bit for bit): the cuBLASLt algorithm is
// PINNED per problem (type, bias, n, in, o, leading dimensions, alignment class), whatever the
// batch count: it is taken once from the heuristic for a batch of `pinned_heuristic_batch`
// members, restricted to algorithms without split-K (reduction scheme NONE, SPLITK_NUM 1), so
// every member's dot products are reduced in the kernel's own fixed order and a member's result
// is the same bits in a call of 1 member as in a call of 16. Every batch count's layouts are
// checked against the pinned algorithm (cublasLtMatmulAlgoCheck); when cuBLASLt refuses it for a
// count, the call falls back to that count's own heuristic and pinned_fallbacks() counts it (the
// GPU tests require it to stay 0).
// Float accumulation; true float32 (no TF32) for float.
#pragma once

#include <cublasLt.h>

#include <atomic>
#include <type_traits>

#include "crossbatch/ops/cuda/linear.cuh"

namespace crossbatch {

// The heuristic is asked for this many members when an algorithm is pinned: the group size of
// the diagonal schedule on the benchmarked models (16 layers for Llama-3.2-1B, 12 for 160M).
inline constexpr int pinned_heuristic_batch = 16;

// How many calls ran with an algorithm other than their problem's pinned one.
inline std::atomic<long>& pinned_fallbacks() {
  static std::atomic<long> n{0};
  return n;
}

namespace cuda_detail {

// The alignment every pointer of a call is assumed to have (at most 16 bytes: what cuBLASLt's
// TMA kernels need), from the pointers, the leading dimensions and the member strides.
inline std::int64_t alignment_class(std::initializer_list<const void*> ptrs,
                                    std::initializer_list<std::int64_t> byte_steps) {
  std::int64_t al = 16;
  for (const void* p : ptrs)
    if (p) al = std::min(al, pointer_alignment(p));
  for (std::int64_t s : byte_steps)
    if (s) al = std::min(al, pointer_alignment(reinterpret_cast<const void*>(std::uintptr_t(s))));
  return al;
}

// A plan (descriptors + algorithm) for `count` members of one problem; the member strides are
// set on the layouts at every call (they do not change the algorithm).
inline context<cuda>::matmul_plan make_batched_plan(cudaDataType_t type, const void* bias,
                                                    std::int64_t sbias, index_t n, index_t in,
                                                    index_t o, index_t ldw, index_t ldx,
                                                    index_t ldo, int count) {
  context<cuda>::matmul_plan p;
  cublas_check(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F),
               "cublasLtMatmulDescCreate");
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  cublas_check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)),
               "set TRANSA");
  cublas_check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)),
               "set TRANSB");
  if (bias) {  // the pointer and the member stride are set again at every call
    const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    cublas_check(
        cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)),
        "set EPILOGUE");
    cublas_check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                sizeof(bias)),
                 "set BIAS_POINTER");
    cublas_check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE,
                                                &sbias, sizeof(sbias)),
                 "set BIAS_BATCH_STRIDE");
  }
  // Column-major view: out_g^T (o, n) = W_g (in, o)^T x_g^T (in, n).
  cublas_check(cublasLtMatrixLayoutCreate(&p.a, type, in, o, ldw), "layout A");
  cublas_check(cublasLtMatrixLayoutCreate(&p.b, type, in, n, ldx), "layout B");
  cublas_check(cublasLtMatrixLayoutCreate(&p.c, type, o, n, ldo), "layout C");
  const std::int32_t c32 = count;
  for (auto* layout : {p.a, p.b, p.c})
    cublas_check(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &c32,
                                                  sizeof(c32)),
                 "set BATCH_COUNT");
  return p;
}

inline void set_batch_strides(const context<cuda>::matmul_plan& p, std::int64_t sw, std::int64_t sx,
                              std::int64_t so) {
  for (auto [layout, stride] : {std::pair{p.a, sw}, {p.b, sx}, {p.c, so}})
    cublas_check(cublasLtMatrixLayoutSetAttribute(
                     layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)),
                 "set STRIDED_BATCH_OFFSET");
}

// The heuristic's first algorithm without split-K for plan p (its layouts' batch count).
// (When the reduction-scheme filter leaves nothing, the unfiltered list is searched.)
inline bool no_split_algorithm(const context<cuda>& ctx, const context<cuda>::matmul_plan& p,
                               std::int64_t align, cublasLtMatmulAlgo_t& algo, bool filter = true) {
  cublasLtMatmulPreference_t pref = nullptr;
  cublas_check(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
  const std::size_t wsb = ctx.lt_workspace_bytes;
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb,
                                       sizeof(wsb));
  const std::uint32_t none = CUBLASLT_REDUCTION_SCHEME_NONE, al = std::uint32_t(align);
  if (filter)
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &none,
                                         sizeof(none));
  for (auto attr :
       {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
    cublasLtMatmulPreferenceSetAttribute(pref, attr, &al, sizeof(al));
  constexpr int want = 32;
  cublasLtMatmulHeuristicResult_t results[want] = {};
  int found = 0;
  const auto st =
      cublasLtMatmulAlgoGetHeuristic(ctx.lt, p.op, p.a, p.b, p.c, p.c, pref, want, results, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0)
    return filter && no_split_algorithm(ctx, p, align, algo, false);
  for (int i = 0; i < found; ++i) {
    std::int32_t split = 1;
    std::size_t written = 0;
    cublasLtMatmulAlgoConfigGetAttribute(&results[i].algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &split,
                                         sizeof(split), &written);
    if (split <= 1) {
      algo = results[i].algo;
      return true;
    }
  }
  // Every candidate splits K: the first one with its split forced to 1, if cuBLASLt accepts it.
  algo = results[0].algo;
  const std::int32_t one = 1;
  const std::uint32_t none_scheme = CUBLASLT_REDUCTION_SCHEME_NONE;
  cublasLtMatmulAlgoConfigSetAttribute(&algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &one, sizeof(one));
  cublasLtMatmulAlgoConfigSetAttribute(&algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &none_scheme,
                                       sizeof(none_scheme));
  cublasLtMatmulHeuristicResult_t check{};
  if (cublasLtMatmulAlgoCheck(ctx.lt, p.op, p.a, p.b, p.c, p.c, &algo, &check) ==
          CUBLAS_STATUS_SUCCESS &&
      check.workspaceSize <= ctx.lt_workspace_bytes)
    return true;
  algo = results[0].algo;  // runs, but its reduction order may depend on the batch count
  ++pinned_fallbacks();
  return true;
}

}  // namespace cuda_detail

// out_g = x_g w_g^T + bias_g for g < count; row-major operands with leading dimensions ldo, ldx,
// ldw and member strides so, sx, sw, sbias (elements). The algorithm is the problem's pinned one.
template <class T>
void pinned_batched_matmul(const context<cuda>& ctx, T* out, index_t ldo, std::int64_t so,
                           const T* x, index_t ldx, std::int64_t sx, const T* w, index_t ldw,
                           std::int64_t sw, const T* bias, std::int64_t sbias, int count, index_t n,
                           index_t in, index_t o) {
  if (count == 0 || n == 0 || o == 0) return;
  using namespace cuda_detail;
  using C = cuda_t<T>;
  require(in > 0 && ldx >= in && ldw >= in && ldo >= o,
          "pinned_batched_matmul: leading dimensions smaller than the rows");
  const cudaDataType_t type = cuda_data_type<C>();
  const std::int64_t e = sizeof(T);
  const std::int64_t align = alignment_class(
      {out, x, w, bias}, {ldo * e, ldx * e, ldw * e, so * e, sx * e, sw * e, sbias * e});
  int align_log = 0;
  while ((std::int64_t(1) << align_log) < align) ++align_log;
  const bool has_bias = bias != nullptr;
  const auto key = [&](int cnt) {
    return context<cuda>::plan_key{-(1 + ((cnt * 8 + align_log) * 64 + int(type)) * 2 + has_bias),
                                   o,
                                   n,
                                   in,
                                   ldw,
                                   ldx,
                                   ldo,
                                   0x41524d54 + int(type)};
  };
  auto* pinned = ctx.find_plan(key(0));
  if (!pinned) {
    auto p =
        make_batched_plan(type, dev(bias), sbias, n, in, o, ldw, ldx, ldo, pinned_heuristic_batch);
    set_batch_strides(p, std::int64_t(o) * ldw, std::int64_t(n) * ldx, std::int64_t(n) * ldo);
    if (!no_split_algorithm(ctx, p, align, p.algo))
      throw device_error("pinned_batched_matmul: cuBLASLt found no algorithm without split-K for " +
                         std::to_string(n) + " x " + std::to_string(in) + " @ (" +
                         std::to_string(o) + " x " + std::to_string(in) + ")^T");
    pinned = &ctx.add_plan(key(0), p);
  }
  auto* plan = ctx.find_plan(key(count));
  if (!plan) {
    auto p = make_batched_plan(type, dev(bias), sbias, n, in, o, ldw, ldx, ldo, count);
    set_batch_strides(p, sw, sx, so);
    p.algo = pinned->algo;
    cublasLtMatmulHeuristicResult_t check{};
    if (cublasLtMatmulAlgoCheck(ctx.lt, p.op, p.a, p.b, p.c, p.c, &p.algo, &check) !=
            CUBLAS_STATUS_SUCCESS ||
        check.workspaceSize > ctx.lt_workspace_bytes) {
      ++pinned_fallbacks();
      if (!no_split_algorithm(ctx, p, align, p.algo))
        throw device_error("pinned_batched_matmul: no algorithm for a batch of " +
                           std::to_string(count));
    }
    plan = &ctx.add_plan(key(count), p);
  }
  set_batch_strides(*plan, sw, sx, so);
  const C* bp = has_bias ? dev(bias) : nullptr;
  if (bp) {
    cublas_check(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp,
                                                sizeof(bp)),
                 "set BIAS_POINTER");
    cublas_check(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE,
                                                &sbias, sizeof(sbias)),
                 "set BIAS_BATCH_STRIDE");
  }
  const float alpha = 1.0f, beta = 0.0f;
  cublas_check(cublasLtMatmul(ctx.lt, plan->op, &alpha, dev(w), plan->a, dev(x), plan->b, &beta,
                              dev(out), plan->c, dev(out), plan->c, &plan->algo, ctx.lt_workspace,
                              ctx.lt_workspace_bytes, ctx.stream),
               "cublasLtMatmul (pinned, batched)");
}

// out (G, N, O) = x (G, N, I) @ w (G, O, I)^T + bias (G, O) or empty; all contiguous. Weights
// stacked per layer [L, O, I]: the diagonal ARMT schedule passes the stack of layers lo..hi.
template <class T>
void strided_batched_linear(const context<cuda>& ctx, tensor_view<T, cuda> out,
                            tensor_view<const T, cuda> x, tensor_view<const T, cuda> w,
                            tensor_view<const T, cuda> bias = {}) {
  require<shape_error>(out.rank() == 3 && x.rank() == 3 && w.rank() == 3,
                       "strided_batched_linear: out, x and w must be 3-D");
  const index_t g = x.shape[0], n = x.shape[1], in = x.shape[2], o = w.shape[1];
  require<shape_error>(w.shape[0] == g && w.shape[2] == in && out.shape == shape_t{g, n, o} &&
                           out.contiguous() && x.contiguous() && w.contiguous(),
                       "strided_batched_linear: x " + to_string(x.shape) + ", w " +
                           to_string(w.shape) + ", out " + to_string(out.shape));
  require<shape_error>(!bias.data || (bias.shape == shape_t{g, o} && bias.contiguous()),
                       "strided_batched_linear: bias must be (G, O)");
  pinned_batched_matmul<T>(ctx, out.data, o, n * o, x.data, in, n * in, w.data, in, o * in,
                           bias.data, o, int(g), n, in, o);
}

}  // namespace crossbatch
