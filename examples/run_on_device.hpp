// What the examples share for --device and --dtype: run a program body once, on the GPU when asked
// for (or, with "auto", when one is present and the program was built with CUDA), else on the CPU,
// in the dtype named. The body is a generic lambda [&]<class T, class D>(context<D>& ctx,
// const char* device_name) -> int.
#pragma once

#include <string>

#include "crossbatch/core/context.hpp"
#include "crossbatch/core/dtype.hpp"
#include "crossbatch/core/error.hpp"
#if CROSSBATCH_WITH_CUDA
#include "crossbatch/cuda.hpp"
#endif

namespace crossbatch::examples {

inline bool cuda_available() {
#if CROSSBATCH_WITH_CUDA
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
#else
  return false;
#endif
}

// device: auto, cpu or cuda; threads: CPU threads (0: all cores).
template <class Body>
int run_on_device(const std::string& device, const std::string& dtype, int threads, Body&& body) {
  if (device == "cuda" && !cuda_available())
    throw value_error("--device cuda: no CUDA device here (or built without CROSSBATCH_CUDA)");
  const bool gpu = device == "cuda" || (device == "auto" && cuda_available());
  return dispatch_dtype(dtype, [&]<class T>() {
#if CROSSBATCH_WITH_CUDA
    if (gpu) {
      context<crossbatch::cuda> ctx;
      return body.template operator()<T, crossbatch::cuda>(ctx, "cuda");
    }
#endif
    (void)gpu;
    context<cpu> ctx = cpu_context(threads);
    return body.template operator()<T, cpu>(ctx, "cpu");
  });
}

}  // namespace crossbatch::examples
