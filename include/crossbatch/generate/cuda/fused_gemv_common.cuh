// Pieces shared by the fused decode step's GEMV kernels (generate/cuda/fused_decode.cuh: the
// CUDA-core kernel; generate/cuda/fused_gemv_tc.cuh: the tensor-core kernel): the prologue and
// epilogue kinds, the launch arguments, 16-byte vector unpacking and the packed argmax key.
#pragma once

#include <cstdint>
#include <type_traits>

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
