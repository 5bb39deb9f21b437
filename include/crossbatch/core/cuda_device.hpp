// The CUDA device's memory traits: plain cudaMalloc/cudaFree (never managed memory) and copies,
// plus cuda_check(), which turns a failed CUDA runtime call into a device_error naming the call.
// Host code only: compiles with any C++ compiler given the CUDA include path.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "crossbatch/core/device.hpp"
#include "crossbatch/core/error.hpp"

namespace crossbatch {

// Throws device_error("what: cudaErrorX (message)") unless e is cudaSuccess.
inline void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw device_error(std::string(what) + ": " + cudaGetErrorName(e) + " (" +
                       cudaGetErrorString(e) + ")");
}

// The copies run on the legacy default stream, which orders them after work queued on any
// blocking stream (context<cuda> creates a blocking stream), so to_host() after ops is safe.
template <>
struct device_traits<cuda> {
  static void* allocate(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    void* p = nullptr;
    cuda_check(cudaMalloc(&p, bytes),
               ("cudaMalloc of " + std::to_string(bytes) + " bytes").c_str());
    return p;
  }
  static void free(void* p) noexcept {
    if (p) cudaFree(p);
  }
  static void copy(void* dst, const void* src, std::size_t bytes) {
    if (bytes)
      cuda_check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice),
                 "cudaMemcpy device to device");
  }
  static void upload(void* dst, const void* src, std::size_t bytes) {
    if (bytes)
      cuda_check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy host to device");
  }
  static void download(void* dst, const void* src, std::size_t bytes) {
    if (bytes)
      cuda_check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy device to host");
  }
};

// Number of CUDA devices, 0 when there is no driver or no device (never throws).
inline int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

}  // namespace crossbatch
