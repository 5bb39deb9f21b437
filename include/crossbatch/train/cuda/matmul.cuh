// General (batched) matrix products of training on the GPU through cuBLASLt, and stream-ordered
// scratch memory. matmul: c (m, n) = alpha op(a) op(b) + beta c for row-major views, op =
// transpose when ta / tb, a and b of one element type A (float or bfloat16/half: tensor cores,
// float accumulation), c of type A or float. Batched form: `batch` products at element strides
// sa, sb, sc. The heuristic's plan is cached per problem (per context), so repeated calls cost one
// cublasLtMatmul. scratch<T>: a buffer from CUDA's stream-ordered pool (cudaMallocAsync on the
// context's stream, freed with cudaFreeAsync), so temporaries of backward ops cost no device sync.
#pragma once

#include <cublasLt.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <tuple>
#include <type_traits>

#include "crossbatch/ops/cuda/common.cuh"
#include "crossbatch/ops/cuda/linear.cuh"  // cuda_data_type

namespace crossbatch {
namespace cuda_detail {

// A device buffer of n elements of T from the stream-ordered pool of ctx's device.
template <class T>
class scratch {
 public:
  scratch(const context<cuda>& ctx, index_t n) : m_stream(ctx.stream), m_n(n) {
    static std::once_flag keep;
    std::call_once(keep, [&] {
      // Keep freed pool memory for reuse instead of returning it at every synchronisation.
      cudaMemPool_t pool;
      if (cudaDeviceGetDefaultMemPool(&pool, ctx.device) == cudaSuccess) {
        std::uint64_t threshold = ~std::uint64_t(0);
        cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold);
      }
    });
    if (n > 0)
      cuda_check(cudaMallocAsync(reinterpret_cast<void**>(&m_p), sizeof(T) * n, m_stream),
                 ("cudaMallocAsync of " + std::to_string(sizeof(T) * n) + " bytes").c_str());
  }
  ~scratch() {
    if (m_p) cudaFreeAsync(m_p, m_stream);
  }
  scratch(const scratch&) = delete;
  scratch& operator=(const scratch&) = delete;
  T* get() const { return m_p; }
  index_t size() const { return m_n; }

 private:
  cudaStream_t m_stream;
  index_t m_n;
  T* m_p = nullptr;
};

struct lt_plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool fallback = false;  // no cuBLASLt algorithm for these layouts / alignments
};

// The product when cuBLASLt has no algorithm (odd leading dimensions or misaligned views): a
// plain 16 x 16 tiled kernel in float, batch = blockIdx.z.
template <class C, class A>
__global__ void fallback_gemm_kernel(C* c, index_t ldc, const A* a, index_t lda, const A* b,
                                     index_t ldb, int m, int n, int k, bool ta, bool tb,
                                     float alpha, float beta, index_t sa, index_t sb, index_t sc) {
  grid_dependency();
  __shared__ float as[16][17], bs[16][17];
  const int tx = threadIdx.x, ty = threadIdx.y;
  a += blockIdx.z * sa;
  b += blockIdx.z * sb;
  c += blockIdx.z * sc;
  const int row = blockIdx.y * 16 + ty, col = blockIdx.x * 16 + tx;
  float acc = 0;
  for (int k0 = 0; k0 < k; k0 += 16) {
    const int ak = k0 + tx, bk = k0 + ty;
    as[ty][tx] = row < m && ak < k
                     ? to_f(ta ? a[index_t(ak) * lda + row] : a[index_t(row) * lda + ak])
                     : 0.0f;
    bs[ty][tx] = bk < k && col < n
                     ? to_f(tb ? b[index_t(col) * ldb + bk] : b[index_t(bk) * ldb + col])
                     : 0.0f;
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < 16; ++kk) acc += as[ty][kk] * bs[kk][tx];
    __syncthreads();
  }
  if (row < m && col < n) {
    C* p = c + index_t(row) * ldc + col;
    *p = from_f<C>(alpha * acc + (beta == 0.0f ? 0.0f : beta * to_f(*p)));
  }
}
// (context, types and transposes, m, n, k, lda, ldb, ldc, batch, sa, sb, sc, alignments)
using lt_key = std::tuple<const void*, int, index_t, index_t, index_t, index_t, index_t, index_t,
                          index_t, index_t, index_t, index_t, int>;
inline std::map<lt_key, lt_plan>& lt_plans() {
  static std::map<lt_key, lt_plan> plans;  // descriptors live for the program
  return plans;
}

// matmul_raw's contract through fallback_gemm_kernel only (also a test hook).
template <class C, class A>
void fallback_matmul_raw(const context<cuda>& ctx, C* c, index_t ldc, const A* a, index_t lda,
                         const A* b, index_t ldb, index_t m, index_t n, index_t k, bool ta, bool tb,
                         float alpha, float beta, index_t batch = 1, index_t sa = 0, index_t sb = 0,
                         index_t sc = 0) {
  require<shape_error>(
      batch <= 65535 && (m + 15) / 16 <= 65535 && (n + 15) / 16 < (index_t(1) << 31),
      "matmul: problem too large for the fallback kernel");
  launch(ctx, "matmul (fallback)", fallback_gemm_kernel<C, A>,
         dim3(unsigned((n + 15) / 16), unsigned((m + 15) / 16), unsigned(batch)), dim3(16, 16), 0,
         c, ldc, a, lda, b, ldb, int(m), int(n), int(k), ta, tb, alpha, beta, sa, sb, sc);
}

inline void set_batch(cublasLtMatrixLayout_t l, index_t batch, index_t stride) {
  const int32_t count = int32_t(batch);
  const std::int64_t st = stride;
  cublas_check(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count,
                                                sizeof(count)),
               "set BATCH_COUNT");
  cublas_check(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &st,
                                                sizeof(st)),
               "set STRIDED_BATCH_OFFSET");
}

// Raw form on device pointers (row-major, leading dimensions in elements).
template <class C, class A>
void matmul_raw(const context<cuda>& ctx, C* c, index_t ldc, const A* a, index_t lda, const A* b,
                index_t ldb, index_t m, index_t n, index_t k, bool ta, bool tb, float alpha,
                float beta, index_t batch = 1, index_t sa = 0, index_t sb = 0, index_t sc = 0) {
  static_assert(std::is_same_v<C, A> || std::is_same_v<C, float>,
                "matmul: c must have a's type or float");
  if (m == 0 || n == 0 || batch == 0) return;
  const cudaDataType_t at = cuda_data_type<A>(), ct = cuda_data_type<C>();
  const int aligns =
      int(pointer_alignment(c) | (pointer_alignment(a) << 9)) ^ int(pointer_alignment(b) << 18);
  const lt_key key{
      &ctx,  int(at) * 64 + int(ct) * 4 + ta * 2 + tb, m, n, k, lda, ldb, ldc, batch, sa, sb, sc,
      aligns};
  auto& plans = lt_plans();
  auto it = plans.find(key);
  if (it == plans.end()) {
    lt_plan p;
    cublas_check(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F),
                 "cublasLtMatmulDescCreate");
    // Column-major view: c^T (n, m) = op(b)^T (n, k) op(a)^T (k, m).
    const cublasOperation_t opa = tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                            opb = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublas_check(
        cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa)),
        "set TRANSA");
    cublas_check(
        cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)),
        "set TRANSB");
    // Layout A' = b as stored: (tb ? k : n) rows x (tb ? n : k) columns, column-major, ld ldb.
    cublas_check(cublasLtMatrixLayoutCreate(&p.a, at, tb ? k : n, tb ? n : k, ldb), "layout A");
    cublas_check(cublasLtMatrixLayoutCreate(&p.b, at, ta ? m : k, ta ? k : m, lda), "layout B");
    cublas_check(cublasLtMatrixLayoutCreate(&p.c, ct, n, m, ldc), "layout C");
    if (batch > 1) {
      set_batch(p.a, batch, sb);
      set_batch(p.b, batch, sa);
      set_batch(p.c, batch, sc);
    }
    // cuBLAS order: its A is our b, its B our a.
    p.fallback = !lt_first_algorithm(ctx, p.op, p.a, p.b, p.c, b, a, c, p.algo);
    it = plans.emplace(key, p).first;
  }
  lt_plan& p = it->second;
  if (!p.fallback) {
    const auto st = cublasLtMatmul(ctx.lt, p.op, &alpha, b, p.a, a, p.b, &beta, c, p.c, c, p.c,
                                   &p.algo, ctx.lt_workspace, ctx.lt_workspace_bytes, ctx.stream);
    if (st == CUBLAS_STATUS_SUCCESS) return;
    if (st != CUBLAS_STATUS_NOT_SUPPORTED && st != CUBLAS_STATUS_INVALID_VALUE)
      cublas_check(st, "cublasLtMatmul");
    p.fallback = true;  // the heuristic's choice refused these operands: use the kernel from now on
  }
  fallback_matmul_raw(ctx, c, ldc, a, lda, b, ldb, m, n, k, ta, tb, alpha, beta, batch, sa, sb, sc);
}

}  // namespace cuda_detail

// c (M, N) = alpha op(a) op(b) + beta c on 2-D row-major views (unit column stride), op =
// transpose when ta / tb; a, b of element type A, c of type A or float (float accumulation).
template <class C, class A>
void matmul(const context<cuda>& ctx, tensor_view<C, cuda> c, tensor_view<const A, cuda> a,
            tensor_view<const A, cuda> b, bool ta, bool tb, float alpha = 1.0f, float beta = 0.0f) {
  using namespace cuda_detail;
  const index_t m = ta ? a.shape[1] : a.shape[0], k = ta ? a.shape[0] : a.shape[1];
  const index_t kb = tb ? b.shape[1] : b.shape[0], n = tb ? b.shape[0] : b.shape[1];
  require<shape_error>(a.rank() == 2 && b.rank() == 2 && k == kb && c.shape == shape_t{m, n},
                       "matmul: " + to_string(a.shape) + (ta ? "^T" : "") + " x " +
                           to_string(b.shape) + (tb ? "^T" : "") + " -> " + to_string(c.shape));
  if (k == 0) {
    require<shape_error>(beta == 0.0f || beta == 1.0f, "matmul: empty inner dimension");
    return;  // beta 1 leaves c; the beta 0 case is not used by training
  }
  matmul_raw(ctx, dev(c.data), row_stride(c, "matmul c"), dev(a.data), row_stride(a, "matmul a"),
             dev(b.data), row_stride(b, "matmul b"), m, n, k, ta, tb, alpha, beta);
}

}  // namespace crossbatch
