// Pieces shared by the fused decode step's GEMV kernels (generate/cuda/fused_decode.cuh: the
// CUDA-core kernel; generate/cuda/fused_gemv_tc.cuh: the tensor-core kernel): the prologue and
// epilogue kinds, the launch arguments, the checked launch of a GEMV configuration
// (generate/fused_launch_config.hpp), 16-byte vector unpacking and the packed argmax key.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>

#include "crossbatch/core/error.hpp"
#include "crossbatch/generate/fused_launch_config.hpp"
#include "crossbatch/ops/activation_kind.hpp"
#include "crossbatch/ops/cuda/common.cuh"
#include "crossbatch/sample/cuda/sample.cuh"

namespace crossbatch {
namespace cuda_detail {

enum class prologue { none, rms, layer };
enum class epilogue { store, act, gated, residual, argmax };

struct fused_gemv_args {
  const void* x;  // (n, in), row stride xs
  index_t xs;
  const void* w;  // (o or 2o for gated, in), row stride ws
  index_t ws;
  const void* bias;  // (o or 2o) or null
  void* out;         // (n, o), row stride os; the residual stream for epilogue::residual
  index_t os;
  const void* nw;  // norm weight / bias (in) for the prologue
  const void* nb;
  unsigned long long* best;  // (n) packed (logit, index) maxima for epilogue::argmax
  float eps;
  activation act;
  int n, in, o, warps_per_row;
};

// The launch limits of the current device (queried once; the process uses one device).
inline const launch_limits& device_launch_limits() {
  static const launch_limits lim = [] {
    launch_limits l;
    int device = 0, v = 0;
    if (cudaGetDevice(&device) != cudaSuccess) return l;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrMaxThreadsPerBlock, device) == cudaSuccess)
      l.max_threads_per_block = v;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlock, device) == cudaSuccess)
      l.default_smem = std::size_t(v);
    if (cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) == cudaSuccess)
      l.optin_smem = std::size_t(std::max(v, int(l.default_smem)));
    if (cudaDeviceGetAttribute(&v, cudaDevAttrMaxGridDimX, device) == cudaSuccess) l.max_grid_x = v;
    cudaGetLastError();  // a failed query leaves no error for the next check
    return l;
  }();
  return lim;
}

// The static shared memory of a kernel as compiled (cudaFuncGetAttributes).
template <class K>
std::size_t compiled_static_smem(K* kernel) {
  cudaFuncAttributes fa{};
  cuda_check(cudaFuncGetAttributes(&fa, kernel), "cudaFuncGetAttributes (fused gemv)");
  return fa.sharedSizeBytes;
}

// Launches a GEMV kernel with configuration l (fused_launch_config.hpp): the launch is checked
// against the device's limits first (a clear value_error instead of cudaErrorInvalidValue), the
// kernel opts in to its dynamic shared memory whenever static + dynamic exceeds the default 48 KB,
// the grid is capped at one wave, and a failed launch is reported here and leaves no error behind
// for the next cudaGetLastError() (the process stays usable). static_smem: the kernel's compiled
// static shared memory (the larger of it and l's count decides the opt-in).
template <class K>
void launch_gemv(const context<cuda>& ctx, const char* name, K* kernel, gemv_launch l,
                 int blocks_per_sm, const fused_gemv_args& a, std::size_t static_smem) {
  const launch_limits& lim = device_launch_limits();
  l.static_smem = std::max(l.static_smem, static_smem);
  const std::string problem = launch_problem(l, lim);
  require<value_error>(problem.empty(), std::string(name) + ": invalid launch: " + problem);
  try {
    if (l.needs_opt_in(lim))
      cuda_check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      int(l.dynamic_smem)),
                 (std::string(name) + ": cudaFuncSetAttribute").c_str());
    int fit = 0;
    cuda_check(
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&fit, kernel, l.threads, l.dynamic_smem),
        (std::string(name) + ": cudaOccupancyMaxActiveBlocksPerMultiprocessor").c_str());
    require<device_error>(fit >= 1, std::string(name) + ": no block of " +
                                        std::to_string(l.threads) + " threads and " +
                                        std::to_string(l.static_smem + l.dynamic_smem) +
                                        " bytes of shared memory fits on an SM");
    const long long wave = (long long)std::max(1, std::min(blocks_per_sm, fit)) * ctx.sm_count;
    const int grid = int(std::min(l.groups, wave));
    fused_gemv_args args = a;
    args.warps_per_row = l.warps_per_row;
    launch(ctx, name, kernel, dim3(unsigned(grid)), dim3(unsigned(l.threads)), l.dynamic_smem,
           args);
  } catch (...) {
    cudaGetLastError();  // the launch error is reported by the exception, not by the next check
    throw;
  }
}

// launch_gemv for one kernel, its compiled static shared memory queried once.
template <void (*Kernel)(fused_gemv_args)>
void launch_gemv(const context<cuda>& ctx, const char* name, const gemv_launch& l,
                 int blocks_per_sm, const fused_gemv_args& a) {
  static const std::size_t compiled = compiled_static_smem(Kernel);
  launch_gemv(ctx, name, Kernel, l, blocks_per_sm, a, compiled);
}

// The 16 / sizeof(T) elements of a 16-byte vector as floats.
template <class T>
__device__ __forceinline__ void unpack(const uint4& v, float* f) {
  const unsigned w[4] = {v.x, v.y, v.z, v.w};
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      f[2 * i] = __uint_as_float(w[i] << 16);
      f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
  } else if constexpr (std::is_same_v<T, __half>) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 p = __half22float2(*reinterpret_cast<const __half2*>(&w[i]));
      f[2 * i] = p.x;
      f[2 * i + 1] = p.y;
    }
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) f[i] = __uint_as_float(w[i]);
  }
}

template <class T>
__device__ __forceinline__ uint4 pack(const float* f) {
  constexpr int vec = 16 / sizeof(T);
  uint4 v;
  T* e = reinterpret_cast<T*>(&v);
#pragma unroll
  for (int i = 0; i < vec; ++i) e[i] = from_f<T>(f[i]);
  return v;
}

// Packed key for the greedy argmax: larger logit first, then the smaller index (CPU argmax's first
// maximum); 0 means no candidate (NaN logits are skipped).
__device__ __forceinline__ unsigned long long argmax_key(float v, int index) {
  return (static_cast<unsigned long long>(float_key(v)) << 32) | static_cast<unsigned>(~index);
}

}  // namespace cuda_detail
}  // namespace crossbatch
