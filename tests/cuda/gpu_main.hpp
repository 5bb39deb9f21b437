// Entry point of the gpu-labelled suites: exits 77 (ctest's skip code for these tests) after
// printing "no CUDA device: skipping" when the machine has no GPU, otherwise runs Boost.Test.
// Include first, after defining BOOST_TEST_MODULE. Also helpers to move tensors to the GPU.
#pragma once

// CROSSBATCH_BOOST_TEST_INCLUDED selects the header-only Boost.Test (machines whose Boost lacks
// the compiled unit_test_framework, such as the device machine of tools/device_check.sh).
#define BOOST_TEST_NO_MAIN
#define BOOST_TEST_ALTERNATIVE_INIT_API
#ifdef CROSSBATCH_BOOST_TEST_INCLUDED
#include <boost/test/included/unit_test.hpp>
#else
#include <boost/test/unit_test.hpp>
#endif
#include <boost/mpl/list.hpp>
#include <cstdio>

#include "crossbatch/core/context.hpp"
#include "crossbatch/core/cuda_context.hpp"
#include "crossbatch/core/cuda_device.hpp"
#include "crossbatch/core/dtype.hpp"
#include "crossbatch/core/transfer.hpp"

int main(int argc, char** argv) {
  if (crossbatch::cuda_device_count() == 0) {
    std::puts("no CUDA device: skipping");
    return 77;
  }
  return boost::unit_test::unit_test_main(&init_unit_test, argc, argv);
}

namespace cbgpu {
using gpu = crossbatch::cuda;  // crossbatch::cuda; plain `cuda` clashes with CCCL's namespace
using dtypes = boost::mpl::list<float, crossbatch::half, crossbatch::bfloat16>;

// The suite's GPU context (created on first use, after main's skip check) and a CPU context.
inline crossbatch::context<gpu>& gctx() {
  static crossbatch::context<gpu> ctx;
  return ctx;
}
inline crossbatch::context<crossbatch::cpu> hctx;

template <class T>
crossbatch::tensor<T, gpu> up(const crossbatch::tensor<T>& h) {
  return crossbatch::to_device<gpu>(h);
}
template <class T>
crossbatch::tensor<T> down(const crossbatch::tensor<T, gpu>& d) {
  return crossbatch::to_host(d);
}
template <class T, class D>
crossbatch::tensor_view<const T, D> c(crossbatch::tensor_view<T, D> v) {
  return v;
}
template <class T, class D>
crossbatch::tensor_view<const T, D> c(const crossbatch::tensor<T, D>& t) {
  return t.view();
}
}  // namespace cbgpu
