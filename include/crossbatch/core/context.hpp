// Run-time state a device needs, passed explicitly to every op (no globals).
// context<cpu> carries the thread count; context<cuda> (crossbatch/cuda.hpp) a stream and handles.
#pragma once

#include "crossbatch/core/device.hpp"

namespace crossbatch {

template <class D>
struct context;

template <>
struct context<cpu> {
  int threads = 1;  // threads Eigen may use for matrix products
};

}  // namespace crossbatch
