// All CPU ops (Eigen and plain loops) and the CPU attention.
#pragma once

#include "crossbatch/attention/attention.hpp"
#include "crossbatch/ops/cpu/activation.hpp"
#include "crossbatch/ops/cpu/embedding.hpp"
#include "crossbatch/ops/cpu/linear.hpp"
#include "crossbatch/ops/cpu/norm.hpp"
#include "crossbatch/ops/cpu/rope.hpp"
#include "crossbatch/ops/cpu/softmax.hpp"
