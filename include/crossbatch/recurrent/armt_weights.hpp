// The ARMT parameters, read from npy files under the reference's state-dict names (what
// tools/convert_armt.py writes from a trained AssociativeRecurrentWrapper checkpoint):
//   memory_cell.memory                               (M, C)      memory-token embeddings
//   memory_cell.model.<layers>.<l>.W_mq.weight       (d_mem, C)
//   memory_cell.model.<layers>.<l>.W_mk.weight       (d_mem, C)
//   memory_cell.model.<layers>.<l>.W_mv.weight       (C, C)
//   memory_cell.model.<layers>.<l>.W_mb.weight       (1, C),  W_mb.bias (1,)
//   memory_cell.model.transformer.wpe.weight         (P + M, C)  gpt2 with wrap_pos only
// The memory path (projections, DPFP, state) is computed in float32 whatever the model's dtype,
// so its projection weights are kept as float; the memory embeddings are in the model's dtype T.
#pragma once

#include <string>
#include <vector>

#include "crossbatch/core/transfer.hpp"
#include "crossbatch/model/config.hpp"
#include "crossbatch/model/weights.hpp"
#include "crossbatch/recurrent/armt_config.hpp"

namespace crossbatch {

// One layer's associative-memory projections (PyTorch (out, in) layout), float32 on the host.
struct armt_layer_weights {
  tensor<float> w_q;  // (d_mem, C)
  tensor<float> w_k;  // (d_mem, C)
  tensor<float> w_v;  // (C, C)
  tensor<float> w_b;  // (C): the write gate's weight row
  float b_b = 0;      // the write gate's bias
};

template <class T, class D = cpu>
struct armt_weights {
  tensor<T, D> memory;      // (M, C)
  tensor<T, D> memory_pos;  // (M, C): position embeddings of the memory rows (wrap_pos), or empty
  std::vector<armt_layer_weights> layers;

  static std::string layer_name(const armt_config& a, int l, const std::string& what) {
    return "memory_cell.model." + a.layers_attr + "." + std::to_string(l) + "." + what;
  }

  // Loads every tensor from `dir`, checking each shape; errors name the file and the shape.
  static armt_weights load(const std::string& dir, const armt_config& a, const model_config& c) {
    weight_dir w(dir);
    const index_t C = c.hidden_size, M = a.num_mem_tokens, dm = a.d_mem;
    armt_weights out;
    out.memory = to_device<D>(w.load<T>("memory_cell.memory", {M, C}));
    if (a.wrap_pos) {
      const std::string name = "memory_cell.model.transformer.wpe.weight";
      const index_t rows = index_t(a.memory_position_start) + M;
      const auto table = w.load<T>(name, {rows, C});
      tensor<T> tail({M, C});
      std::copy_n(table.data() + a.memory_position_start * C, M * C, tail.data());
      out.memory_pos = to_device<D>(tail);
    }
    for (int l = 0; l < c.num_layers; ++l) {
      armt_layer_weights L;
      L.w_q = w.load<float>(layer_name(a, l, "W_mq.weight"), {dm, C});
      L.w_k = w.load<float>(layer_name(a, l, "W_mk.weight"), {dm, C});
      L.w_v = w.load<float>(layer_name(a, l, "W_mv.weight"), {C, C});
      auto wb = w.load<float>(layer_name(a, l, "W_mb.weight"), {1, C});
      wb.reshape({C});
      L.w_b = std::move(wb);
      L.b_b = w.load<float>(layer_name(a, l, "W_mb.bias"), {1})(0);
      out.layers.push_back(std::move(L));
    }
    return out;
  }
};

}  // namespace crossbatch
