// The key/value cache: per layer, keys and values for B sequences x Hkv heads x S slots x D,
// allocated up front for the longest sequence (no growth during decode). Slot i holds the token at
// index i of the left-padded sequence, so every sequence of a batch advances in lockstep.
#pragma once

#include "crossbatch/core/device.hpp"
#include "crossbatch/core/tensor.hpp"

namespace crossbatch {

template <class T, class D = cpu>
struct kv_cache {
  tensor<T, D> k;  // (L, B, Hkv, S, D)
  tensor<T, D> v;  // (L, B, Hkv, S, D)
  int length = 0;  // slots filled so far, the same for every sequence

  kv_cache() = default;
  kv_cache(int layers, int batch, int kv_heads, int max_slots, int head_dim)
      : k({layers, batch, kv_heads, max_slots, head_dim}),
        v({layers, batch, kv_heads, max_slots, head_dim}) {}

  int layers() const { return static_cast<int>(k.dim(0)); }
  int batch() const { return static_cast<int>(k.dim(1)); }
  int kv_heads() const { return static_cast<int>(k.dim(2)); }
  int capacity() const { return static_cast<int>(k.dim(3)); }
  int head_dim() const { return static_cast<int>(k.dim(4)); }

  tensor_view<T, D> keys(int layer) { return k.view().select(layer); }    // (B, Hkv, S, D)
  tensor_view<T, D> values(int layer) { return v.view().select(layer); }  // (B, Hkv, S, D)
};

}  // namespace crossbatch
