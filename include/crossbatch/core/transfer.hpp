// Moving tensors between host memory and a device: to_device<D>(host) and to_host(device).
// For D = cpu both are deep copies; crossbatch/cuda.hpp gives device_traits<cuda> its copies.
#pragma once

#include "crossbatch/core/device.hpp"
#include "crossbatch/core/tensor.hpp"

namespace crossbatch {

template <class D, class T>
tensor<T, D> to_device(const tensor<T, cpu>& host) {
  tensor<T, D> t(host.shape());
  device_traits<D>::upload(t.data(), host.data(), sizeof(T) * host.size());
  return t;
}

template <class T, class D>
tensor<T, cpu> to_host(const tensor<T, D>& dev) {
  tensor<T, cpu> t(dev.shape());
  device_traits<D>::download(t.data(), dev.data(), sizeof(T) * dev.size());
  return t;
}

template <class T, class D>
tensor<T, cpu> to_host(tensor_view<const T, D> dev) {
  require<shape_error>(dev.contiguous(), "to_host needs a contiguous view");
  tensor<T, cpu> t(dev.shape);
  device_traits<D>::download(t.data(), dev.data, sizeof(T) * dev.size());
  return t;
}

}  // namespace crossbatch
