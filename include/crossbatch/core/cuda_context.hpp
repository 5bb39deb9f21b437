// context<cuda>: what the CUDA ops need at run time, passed explicitly (no globals): a blocking
// stream, a cuBLASLt handle with its workspace, a scratch buffer for split-KV attention, and the
// device-resident slot shift that lets one captured CUDA graph serve every decode step.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <string>
#include <tuple>

#include "crossbatch/core/context.hpp"
#include "crossbatch/core/cuda_device.hpp"

namespace crossbatch {

inline void cublas_check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw device_error(std::string(what) + ": cuBLAS status " +
                       std::to_string(static_cast<int>(s)));
}

template <>
struct context<cuda> {
  // Graph replay: when set, this device int is added to every slot index the ops take from the
  // host (write_kv's start, attention's q_start and kv_len), so a graph captured once at base
  // slot s0 runs step i at slot s0 + *slot_shift. Kernels then size their grids for the cache
  // capacity rather than kv_len. Null in ordinary (eager) use.
  const int* slot_shift = nullptr;
  // Launch kernels with programmatic dependent launch (Hopper): a kernel's blocks may be
  // scheduled while its predecessor drains; each kernel waits (griddepcontrol.wait) before
  // touching memory, so results are the same.
  bool pdl = false;
  // Prefill attention of 16-bit models (head size 64 or 128) on tensor cores
  // (attention/cuda/prefill_tc.cuh); false: the CUDA-core kernel, for comparison.
  bool tensor_core_attention = true;

  cudaStream_t stream = nullptr;
  cublasLtHandle_t lt = nullptr;
  void* lt_workspace = nullptr;
  std::size_t lt_workspace_bytes = 32u << 20;
  void* scratch = nullptr;  // split-KV partial results
  std::size_t scratch_bytes = 64u << 20;
  int device = 0;
  int sm_count = 0;

  explicit context(int device_id = 0) : device(device_id) {
    cuda_check(cudaSetDevice(device), "cudaSetDevice");
    cuda_check(cudaStreamCreate(&stream), "cudaStreamCreate");
    cublas_check(cublasLtCreate(&lt), "cublasLtCreate");
    cuda_check(cudaMalloc(&lt_workspace, lt_workspace_bytes), "cudaMalloc cuBLASLt workspace");
    cuda_check(cudaMalloc(&scratch, scratch_bytes), "cudaMalloc attention scratch");
    cuda_check(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device),
               "cudaDeviceGetAttribute");
  }
  ~context() {
    if (stream) cudaStreamSynchronize(stream);
    for (auto& [key, plan] : m_plans) release(plan);
    if (lt) cublasLtDestroy(lt);
    cudaFree(lt_workspace);
    cudaFree(scratch);
    if (stream) cudaStreamDestroy(stream);
  }
  context(const context&) = delete;
  context& operator=(const context&) = delete;

  // Waits for everything queued on the stream; rethrows an asynchronous kernel error.
  void synchronize() const { cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize"); }

  // A cached cuBLASLt plan (descriptors and the heuristic's algorithm) per matmul problem, so that
  // repeated calls (and graph capture) skip the heuristic query.
  struct matmul_plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  using plan_key = std::tuple<int, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                              std::int64_t, std::int64_t, int>;
  matmul_plan* find_plan(const plan_key& k) const {
    auto it = m_plans.find(k);
    return it == m_plans.end() ? nullptr : &it->second;
  }
  matmul_plan& add_plan(const plan_key& k, const matmul_plan& p) const { return m_plans[k] = p; }

 private:
  static void release(matmul_plan& p) {
    if (p.op) cublasLtMatmulDescDestroy(p.op);
    if (p.a) cublasLtMatrixLayoutDestroy(p.a);
    if (p.b) cublasLtMatrixLayoutDestroy(p.b);
    if (p.c) cublasLtMatrixLayoutDestroy(p.c);
  }
  mutable std::map<plan_key, matmul_plan> m_plans;
};

}  // namespace crossbatch
