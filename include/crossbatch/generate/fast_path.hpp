// The fast path a device may offer for a whole decode step without hooks (the fused CUDA step,
// generate/cuda/fused_decode.cuh): its options, and the generic fallback that offers none. A
// batch_session calls fused_decode() (found by argument-dependent lookup, so the CUDA overload
// wins wherever its header is included) and runs the plain layers when it returns false.
#pragma once

#include <cstdint>

#include "crossbatch/model/decoder.hpp"

namespace crossbatch {

// Launch shapes and switches of the fused decode step (bench_decode --tune sweeps them).
struct fused_decode_options {
  bool enabled = true;      // false: always the plain layers (the reference path)
  bool fold_argmax = true;  // greedy: the argmax folded into the LM head (no sampler kernel)
  // A GEMV row gets up to 8 warps until the rows give this many warps per SM.
  int gemv_warps_per_sm = 16;
  // GEMV grid cap per SM (also capped by what fits at once: at most one wave).
  int gemv_blocks_per_sm = 8;
  // Rope + KV write + attention in one kernel for caches up to this capacity (longer: rope_kv and
  // the split-KV attention op).
  bool fused_attention = true;
  int fused_attention_max_len = 1024;
  // Largest batch the fused step takes (above it: the plain layers). 8 gives the step of before
  // the tensor-core GEMV. 16 by default: on the H200 (bench_decode, bf16) the fused step beats the
  // plain layers up to 16 (SmolLM2-135M 0.76 vs 1.22 ms, Qwen2.5-0.5B 1.13 vs 1.28 ms at batch 16)
  // and not above (batch 32: 1.26 vs 1.26 and 1.87 vs 1.52 ms; batch 64 slower still); batch 32
  // and 64 pass tests/cuda/test_fused_decode.cu with max_batch 64.
  int max_batch = 16;
  // 16-bit weights: the GEMVs run on tensor cores (mma.sync) from this many rows on, up to batch
  // 64 (batch 1 stays on the CUDA-core GEMV: one row fills an eighth of an mma tile); false (or
  // float32): the CUDA-core GEMV, batch <= 16. The tensor-core GEMV takes 0.53x the CUDA-core
  // GEMV's step time at batch 8 on an H200 (SmolLM2-135M shape, bench_decode t1).
  bool tensor_cores = true;
  int tensor_core_min_batch = 2;
};

// The generic device has no fused step: the session runs decoder_block layer by layer.
template <class T, class D, class M>
bool fused_decode(const context<D>&, const decoder_model<T, D>&, tensor_view<T, D>,
                  tensor_view<const std::int32_t, D>, kv_cache<T, D>&, int, const M&,
                  decoder_workspace<T, D>&, tensor_view<T, D>, std::uint64_t*,
                  const fused_decode_options&) {
  return false;
}

}  // namespace crossbatch
