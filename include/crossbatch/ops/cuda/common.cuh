// Shared pieces of the CUDA ops: kernel launch (with optional programmatic dependent launch and
// error check), the per-kernel dependency wait, warp/block reductions, and view checks.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "crossbatch/core/cuda_context.hpp"
#include "crossbatch/core/cuda_device.hpp"
#include "crossbatch/core/cuda_type.cuh"
#include "crossbatch/core/tensor.hpp"

namespace crossbatch::cuda_detail {

// Every kernel calls this before its first global-memory access. Under programmatic dependent
// launch it waits until the preceding kernel has finished and its writes are visible, then lets
// the next kernel start its blocks early; without it, both are no-ops.
__device__ __forceinline__ void grid_dependency() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Launches kernel<<<grid, block, smem, ctx.stream>>>(args...) and checks the launch.
template <class... P, class... A>
void launch(const context<cuda>& ctx, const char* name, void (*kernel)(P...), dim3 grid, dim3 block,
            std::size_t smem, A&&... args) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = ctx.stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = ctx.pdl ? 1 : 0;
  cuda_check(cudaLaunchKernelEx(&cfg, kernel, static_cast<P>(args)...), name);
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum / max over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the
// result. `red` is 32 floats of shared memory; the function syncs before reusing it.
__device__ __forceinline__ float block_sum(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = lane < warps ? red[lane] : 0.0f;
  return warp_sum(v);
}
__device__ __forceinline__ float block_max(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = lane < warps ? red[lane] : -INFINITY;
  return warp_max(v);
}

// Checks a (rows, cols) view with unit column stride; returns its row stride.
template <class V>
index_t row_stride(const V& v, const std::string& what) {
  require<shape_error>(
      v.rank() == 2 && (v.shape[1] <= 1 || v.strides[1] == 1),
      what + ": need a 2-D view with unit column stride, got " + to_string(v.shape));
  return v.shape[0] <= 1 ? v.shape[1] : v.strides[0];
}

inline unsigned blocks_for(index_t n, int threads, int cap = 65535 * 8) {
  const index_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > cap ? cap : b));
}

// The largest power of two (at most 256) that divides the address: what vector loads may assume.
inline std::int64_t pointer_alignment(const void* p) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  std::int64_t al = 256;
  while (al > 1 && a % al) al /= 2;
  return al;
}

}  // namespace crossbatch::cuda_detail
