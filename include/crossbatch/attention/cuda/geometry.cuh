// What every attention kernel is told about its call: the sizes, the strides of q, out and the KV
// cache, the query slots and key count, and the score scale; plus the slot shift of graph replay.
#pragma once

#include "crossbatch/core/tensor.hpp"

namespace crossbatch::cuda_detail {

// Under graph replay (context<cuda>::slot_shift set) slots captured at the base move by *shift.
__device__ __forceinline__ int shifted(int v, const int* shift) { return shift ? v + *shift : v; }

struct attn_geometry {
  int b, tq, h, hkv, d;
  index_t qb, qt, qh;  // q strides (last is 1)
  index_t ob, ot, oh;  // out strides
  index_t kb, kh, ks;  // keys strides (last is 1)
  index_t vb, vh, vs;  // values strides
  int q_start, kv_len;
  float scale;
};

}  // namespace crossbatch::cuda_detail
