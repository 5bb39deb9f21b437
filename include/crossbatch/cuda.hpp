// Umbrella header for the CUDA backend (compile with nvcc): context<cuda>, device_traits<cuda>, the
// CUDA overloads of every op (found by ADL from the device-generic templates such as
// decoder_model<T, cuda>), attention, device samplers and the graph-captured generation loop.
// Element types are the CPU's (float, Eigen::half, Eigen::bfloat16); see core/cuda_type.cuh.
#pragma once

#include "crossbatch/attention/cuda/attention.cuh"
#include "crossbatch/core/cuda_context.hpp"
#include "crossbatch/core/cuda_device.hpp"
#include "crossbatch/core/cuda_type.cuh"
#include "crossbatch/generate/cuda/graph_driver.cuh"
#include "crossbatch/ops/cuda/activation.cuh"
#include "crossbatch/ops/cuda/embedding.cuh"
#include "crossbatch/ops/cuda/linear.cuh"
#include "crossbatch/ops/cuda/norm.cuh"
#include "crossbatch/ops/cuda/rope.cuh"
#include "crossbatch/ops/cuda/softmax.cuh"
#include "crossbatch/sample/cuda/sample.cuh"
