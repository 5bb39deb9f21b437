// Activation functions by name, as config.json spells them, and their scalar definitions shared
// by the CPU ops and the CUDA kernels.
#pragma once

#include <cmath>
#include <string>

#include "crossbatch/core/error.hpp"
#include "crossbatch/core/host_device.hpp"

namespace crossbatch {

enum class activation { gelu_tanh, gelu_erf, silu, relu, tanh };

inline activation activation_from_name(const std::string& name) {
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast")
    return activation::gelu_tanh;
  if (name == "gelu") return activation::gelu_erf;
  if (name == "silu" || name == "swish") return activation::silu;
  if (name == "relu") return activation::relu;
  if (name == "tanh") return activation::tanh;
  throw config_error("unsupported activation '" + name +
                     "' (gelu, gelu_new, gelu_pytorch_tanh, silu, relu)");
}

CROSSBATCH_HD inline float apply_activation(activation a, float x) {
  switch (a) {
    case activation::gelu_tanh:
      return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    case activation::gelu_erf:
      return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
    case activation::silu:
      return x / (1.0f + expf(-x));
    case activation::relu:
      return x > 0 ? x : 0.0f;
    case activation::tanh:
      return tanhf(x);
  }
  return x;
}

}  // namespace crossbatch
