// Element types on the GPU. The templates are instantiated with the same element types on both
// devices (float, Eigen::half, Eigen::bfloat16), so a decoder_model<bfloat16, cuda> loads through
// the CPU loader and uploads bits unchanged. Kernels never see the Eigen types: each op
// reinterprets its pointers with dev() to cuda_t<T> (float, __half, __nv_bfloat16), which have the
// same size and bit layout (checked below), and computes in float through to_f()/from_f<>().
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "crossbatch/core/dtype.hpp"

namespace crossbatch {

template <class T>
struct cuda_type {
  using type = T;
};
template <>
struct cuda_type<half> {
  using type = __half;
};
template <>
struct cuda_type<bfloat16> {
  using type = __nv_bfloat16;
};

template <class T>
using cuda_t =
    std::conditional_t<std::is_const_v<T>, const typename cuda_type<std::remove_const_t<T>>::type,
                       typename cuda_type<T>::type>;

static_assert(sizeof(half) == sizeof(__half) && alignof(half) == alignof(__half));
static_assert(sizeof(bfloat16) == sizeof(__nv_bfloat16) &&
              alignof(bfloat16) == alignof(__nv_bfloat16));

// The kernel-side pointer for a host-side element pointer (same bits).
template <class T>
cuda_t<T>* dev(T* p) {
  return reinterpret_cast<cuda_t<T>*>(p);
}

namespace cuda_detail {

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }

template <class T>
__device__ __forceinline__ T from_f(float x);
template <>
__device__ __forceinline__ float from_f<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __half from_f<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// Rounds a float to T and back (mirrors the CPU's intermediate casts).
template <class T>
__device__ __forceinline__ float round_to(float x) {
  return to_f(from_f<T>(x));
}

}  // namespace cuda_detail
}  // namespace crossbatch
