// Linear layers on the GPU: out = x W^T (+ b), W in the Hugging Face (out, in) layout.
// Up to 8 rows of x (decode) go through a bandwidth-bound GEMV kernel: one warp per output
// feature, 16-byte weight loads, the bias fused. Larger calls go through cuBLASLt (float
// accumulation for half/bfloat16, true float32 for float, bias epilogue), with the heuristic's
// plan cached in the context so that graph capture and repeated calls skip the query.
#pragma once

#include <cublasLt.h>

#include <cstdint>
#include <type_traits>

#include "crossbatch/ops/cuda/common.cuh"

namespace crossbatch {
namespace cuda_detail {

template <class T>
__device__ __forceinline__ float dot16(const uint4& a, const uint4& b) {
  constexpr int vec = 16 / sizeof(T);
  const T* pa = reinterpret_cast<const T*>(&a);
  const T* pb = reinterpret_cast<const T*>(&b);
  float s = 0;
#pragma unroll
  for (int i = 0; i < vec; ++i) s += to_f(pa[i]) * to_f(pb[i]);
  return s;
}

// out (n, o) = x (n, in) W (o, in)^T + bias; n <= NT. One warp per output feature.
template <class T, int NT>
__global__ void __launch_bounds__(256)
    gemv_kernel(T* out, index_t os, const T* x, index_t xs, const T* w, index_t ws, const T* bias,
                int n, int in, int o) {
  grid_dependency();
  constexpr int vec = 16 / sizeof(T), unroll = 4;
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= o) return;
  const uint4* wr = reinterpret_cast<const uint4*>(w + row * ws);
  const int nvec = in / vec;
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
  for (int c0 = lane; c0 < nvec; c0 += 32 * unroll) {
    uint4 wv[unroll];
#pragma unroll
    for (int u = 0; u < unroll; ++u) {
      const int c = c0 + 32 * u;
      wv[u] = c < nvec ? __ldcs(wr + c) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < unroll; ++u) {
      const int c = c0 + 32 * u;
      if (c < nvec) {
#pragma unroll
        for (int t = 0; t < NT; ++t)
          if (t < n)
            acc[t] += dot16<T>(wv[u], __ldg(reinterpret_cast<const uint4*>(x + t * xs) + c));
      }
    }
  }
  const float b = bias ? to_f(bias[row]) : 0.0f;
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    const float s = warp_sum(acc[t]);
    if (lane == t && t < n) out[t * os + row] = from_f<T>(s + b);
  }
}

// The heuristic's first cuBLASLt algorithm for a planned product D = op(A) op(B) (C = D) whose
// operands start at pa, pb and pc (their alignments bound the choice), within the context's
// workspace; false when cuBLASLt offers none.
inline bool lt_first_algorithm(const context<cuda>& ctx, cublasLtMatmulDesc_t op,
                               cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                               cublasLtMatrixLayout_t c, const void* pa, const void* pb,
                               const void* pc, cublasLtMatmulAlgo_t& algo) {
  cublasLtMatmulPreference_t pref = nullptr;
  cublas_check(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
  const std::size_t wsb = ctx.lt_workspace_bytes;
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb,
                                       sizeof(wsb));
  const std::uint32_t al_a = std::uint32_t(pointer_alignment(pa)),
                      al_b = std::uint32_t(pointer_alignment(pb)),
                      al_c = std::uint32_t(pointer_alignment(pc));
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a,
                                       sizeof(al_a));
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b,
                                       sizeof(al_b));
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c,
                                       sizeof(al_c));
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c,
                                       sizeof(al_c));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const auto st = cublasLtMatmulAlgoGetHeuristic(ctx.lt, op, a, b, c, c, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0) return false;
  algo = result.algo;
  return true;
}

template <class T>
constexpr cudaDataType_t cuda_data_type() {
  if constexpr (std::is_same_v<T, float>)
    return CUDA_R_32F;
  else if constexpr (std::is_same_v<T, __half>)
    return CUDA_R_16F;
  else
    return CUDA_R_16BF;
}

template <class T>
void lt_matmul(const context<cuda>& ctx, T* out, index_t ldc, const T* x, index_t ldb, const T* w,
               index_t lda, const T* bias, index_t n, index_t in, index_t o) {
  const cudaDataType_t type = cuda_data_type<T>();
  const int aligns =
      int(pointer_alignment(out) | (pointer_alignment(x) << 9)) ^ int(pointer_alignment(w) << 18);
  const context<cuda>::plan_key key{
      int(type) * 2 + (bias != nullptr), o, n, in, lda, ldb, ldc, aligns};
  auto* plan = ctx.find_plan(key);
  if (!plan) {
    context<cuda>::matmul_plan p;
    cublas_check(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F),
                 "cublasLtMatmulDescCreate");
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cublas_check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)),
                 "set TRANSA");
    cublas_check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)),
                 "set TRANSB");
    if (bias) {
      const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
      cublas_check(
          cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)),
          "set EPILOGUE");
      cublas_check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                  sizeof(bias)),
                   "set BIAS_POINTER");
    }
    // Column-major view of the row-major problem: out^T (o, n) = W (in, o)^T x^T (in, n).
    cublas_check(cublasLtMatrixLayoutCreate(&p.a, type, in, o, lda), "layout A");
    cublas_check(cublasLtMatrixLayoutCreate(&p.b, type, in, n, ldb), "layout B");
    cublas_check(cublasLtMatrixLayoutCreate(&p.c, type, o, n, ldc), "layout C");
    const bool found = lt_first_algorithm(ctx, p.op, p.a, p.b, p.c, w, x, out, p.algo);
    if (!found)
      throw device_error("linear: cuBLASLt found no algorithm for (" + std::to_string(n) + " x " +
                         std::to_string(in) + ") @ (" + std::to_string(o) + " x " +
                         std::to_string(in) + ")^T");
    plan = &ctx.add_plan(key, p);
  }
  if (bias)
    cublas_check(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                sizeof(bias)),
                 "set BIAS_POINTER");
  const float alpha = 1.0f, beta = 0.0f;
  cublas_check(
      cublasLtMatmul(ctx.lt, plan->op, &alpha, w, plan->a, x, plan->b, &beta, out, plan->c, out,
                     plan->c, &plan->algo, ctx.lt_workspace, ctx.lt_workspace_bytes, ctx.stream),
      "cublasLtMatmul");
}

template <class T, int NT>
void gemv(const context<cuda>& ctx, T* out, index_t os, const T* x, index_t xs, const T* w,
          index_t ws, const T* bias, int n, int in, int o) {
  constexpr int warps = 8;
  launch(ctx, "linear (gemv)", gemv_kernel<T, NT>, dim3(unsigned((o + warps - 1) / warps)),
         dim3(32 * warps), 0, out, os, x, xs, w, ws, bias, n, in, o);
}

}  // namespace cuda_detail

// Largest row count that takes the GEMV path.
inline constexpr index_t linear_gemv_max_rows = 8;

// out (N, O) = x (N, I) @ w (O, I)^T + bias (O) when bias has data.
template <class T>
void linear(const context<cuda>& ctx, tensor_view<T, cuda> out, tensor_view<const T, cuda> x,
            tensor_view<const T, cuda> w, tensor_view<const T, cuda> bias = {}) {
  require<shape_error>(x.rank() == 2 && w.rank() == 2 && out.rank() == 2,
                       "linear: x, w and out must be 2-D");
  const index_t n = x.shape[0], in = x.shape[1], o = w.shape[0];
  require<shape_error>(w.shape[1] == in && out.shape[0] == n && out.shape[1] == o,
                       "linear: x " + to_string(x.shape) + ", w " + to_string(w.shape) + ", out " +
                           to_string(out.shape) + " do not fit");
  require<shape_error>(!bias.data || bias.shape == shape_t{o},
                       "linear: bias must be (" + std::to_string(o) + ",)");
  if (n == 0 || o == 0) return;
  using namespace cuda_detail;
  using C = cuda_t<T>;
  const index_t ldc = row_stride(out, "linear out"), ldb = row_stride(x, "linear x"),
                lda = row_stride(w, "linear w");
  const C* bp = bias.data ? dev(bias.data) : nullptr;
  constexpr index_t vec = 16 / sizeof(C);
  const bool vec_ok = in % vec == 0 && ldb % vec == 0 && lda % vec == 0 &&
                      pointer_alignment(x.data) >= 16 && pointer_alignment(w.data) >= 16;
  if (n <= linear_gemv_max_rows && vec_ok) {
    auto* op = dev(out.data);
    auto* xp = dev(x.data);
    auto* wp = dev(w.data);
    if (n == 1)
      gemv<C, 1>(ctx, op, ldc, xp, ldb, wp, lda, bp, int(n), int(in), int(o));
    else if (n == 2)
      gemv<C, 2>(ctx, op, ldc, xp, ldb, wp, lda, bp, int(n), int(in), int(o));
    else if (n <= 4)
      gemv<C, 4>(ctx, op, ldc, xp, ldb, wp, lda, bp, int(n), int(in), int(o));
    else
      gemv<C, 8>(ctx, op, ldc, xp, ldb, wp, lda, bp, int(n), int(in), int(o));
    return;
  }
  lt_matmul<C>(ctx, dev(out.data), ldc, dev(x.data), ldb, dev(w.data), lda, bp, n, in, o);
}

}  // namespace crossbatch
