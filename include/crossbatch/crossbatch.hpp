// Umbrella header for the CPU library: core, ops, models, generation, text and evaluation.
// The CUDA backend adds crossbatch/cuda.hpp on top of this (compile that with nvcc).
#pragma once

#include "crossbatch/core/context.hpp"
#include "crossbatch/core/device.hpp"
#include "crossbatch/core/dtype.hpp"
#include "crossbatch/core/error.hpp"
#include "crossbatch/core/npy.hpp"
#include "crossbatch/core/rng.hpp"
#include "crossbatch/core/tensor.hpp"
#include "crossbatch/core/transfer.hpp"
#include "crossbatch/eval/squad.hpp"
#include "crossbatch/eval/squad_metrics.hpp"
#include "crossbatch/generate/generate.hpp"
#include "crossbatch/generate/score.hpp"
#include "crossbatch/model/bert.hpp"
#include "crossbatch/model/decoder.hpp"
#include "crossbatch/text/batch.hpp"
#include "crossbatch/text/chat_template.hpp"
#include "crossbatch/text/decode_stream.hpp"
#include "crossbatch/text/tokenizer.hpp"
