// Run-time state a device needs, passed explicitly to every op (no globals).
// context<cpu> carries the thread count; context<cuda> (crossbatch/cuda.hpp) a stream and handles.
#pragma once

#include <algorithm>
#include <thread>

#include "crossbatch/core/device.hpp"

namespace crossbatch {

template <class D>
struct context;

template <>
struct context<cpu> {
  int threads = 1;  // threads Eigen may use for matrix products
};

// A CPU context with `threads` threads; 0 (or less) means one per hardware thread.
inline context<cpu> cpu_context(int threads) {
  return {.threads = threads > 0
                         ? threads
                         : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))};
}

}  // namespace crossbatch
