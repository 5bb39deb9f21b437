// G linear layers at once on the GPU, one cuBLASLt strided-batched matmul: member g computes
// out_g (N, O) = x_g (N, I) @ W_g (O, I)^T + bias_g, with x_g = x + g * N * I, out_g likewise and
// W_g = w + g * O * I, bias_g = bias + g * O: weights stacked per layer [G, O, I] (the diagonal
// ARMT schedule passes the stack of layers lo..hi). Float accumulation, true float32 for float.
#pragma once

#include <cublasLt.h>

#include "crossbatch/ops/cuda/linear.cuh"

namespace crossbatch {

// out (G, N, O), x (G, N, I), w (G, O, I), bias (G, O) or empty; all contiguous.
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
  if (g == 0 || n == 0 || o == 0) return;
  using namespace cuda_detail;
  using C = cuda_t<T>;
  const cudaDataType_t type = cuda_data_type<C>();
  const C* bp = bias.data ? dev(bias.data) : nullptr;
  const int aligns = int(pointer_alignment(out.data) | (pointer_alignment(x.data) << 9)) ^
                     int(pointer_alignment(w.data) << 18);
  // The plan cache's key: the batch count rides in the first field (plain linear uses < 16).
  const context<cuda>::plan_key key{int(16 * g + int(type) * 2 + (bp != nullptr)), o, n, in,
                                    -1, -1, -1, aligns};
  auto* plan = ctx.find_plan(key);
  if (!plan) {
    context<cuda>::matmul_plan p;
    cublas_check(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F),
                 "cublasLtMatmulDescCreate");
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta));
    cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb));
    if (bp) {
      const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
      const std::int64_t bias_stride = o;
      cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi));
      cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp, sizeof(bp));
      cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE, &bias_stride,
                                     sizeof(bias_stride));
    }
    // Column-major view: out_g^T (o, n) = W_g (in, o)^T x_g^T (in, n).
    cublas_check(cublasLtMatrixLayoutCreate(&p.a, type, in, o, in), "layout A");
    cublas_check(cublasLtMatrixLayoutCreate(&p.b, type, in, n, in), "layout B");
    cublas_check(cublasLtMatrixLayoutCreate(&p.c, type, o, n, o), "layout C");
    const std::int32_t count = std::int32_t(g);
    const std::int64_t sa = o * in, sb = n * in, sc = n * o;
    for (auto [layout, stride] : {std::pair{p.a, sa}, {p.b, sb}, {p.c, sc}}) {
      cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count,
                                       sizeof(count));
      cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                       &stride, sizeof(stride));
    }
    cublasLtMatmulPreference_t pref = nullptr;
    cublas_check(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
    const std::size_t wsb = ctx.lt_workspace_bytes;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb,
                                         sizeof(wsb));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const auto st =
        cublasLtMatmulAlgoGetHeuristic(ctx.lt, p.op, p.a, p.b, p.c, p.c, pref, 1, &result, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0)
      throw device_error("strided_batched_linear: cuBLASLt found no algorithm for " +
                         std::to_string(g) + " x (" + std::to_string(n) + " x " +
                         std::to_string(in) + ") @ (" + std::to_string(o) + " x " +
                         std::to_string(in) + ")^T");
    p.algo = result.algo;
    plan = &ctx.add_plan(key, p);
  }
  if (bp)
    cublas_check(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp,
                                                sizeof(bp)),
                 "set BIAS_POINTER");
  const float alpha = 1.0f, beta = 0.0f;
  cublas_check(cublasLtMatmul(ctx.lt, plan->op, &alpha, dev(w.data), plan->a, dev(x.data),
                              plan->b, &beta, dev(out.data), plan->c, dev(out.data), plan->c,
                              &plan->algo, ctx.lt_workspace, ctx.lt_workspace_bytes, ctx.stream),
                 "cublasLtMatmul (strided batched)");
}

}  // namespace crossbatch
