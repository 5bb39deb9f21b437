// Umbrella header for the CPU library: includes every public CPU header.
// The CUDA backend adds crossbatch/cuda.hpp on top of this.
#pragma once

#include "crossbatch/core/context.hpp"
#include "crossbatch/core/device.hpp"
#include "crossbatch/core/dtype.hpp"
#include "crossbatch/core/error.hpp"
#include "crossbatch/core/npy.hpp"
#include "crossbatch/core/rng.hpp"
#include "crossbatch/core/tensor.hpp"
