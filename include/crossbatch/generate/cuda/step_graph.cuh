// What the graph-driven decoders share (graph_generator in generate/cuda/graph_generate.cuh,
// cross_batch_graph_decoder in mix/cuda/graph_decode.cuh): one decode step captured as a CUDA graph
// and replayed, and the host-side reads of the tokens the steps wrote.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "crossbatch/core/cuda_context.hpp"
#include "crossbatch/core/tensor.hpp"
#include "crossbatch/generate/generate.hpp"

namespace crossbatch {

// A callable's launches on a stream, captured once as a graph and replayed with launch().
class step_graph {
 public:
  step_graph() = default;
  ~step_graph() { reset(); }
  step_graph(const step_graph&) = delete;
  step_graph& operator=(const step_graph&) = delete;

  // Captures everything `step()` launches on `stream` (thread-local capture mode); a throwing step
  // leaves no graph behind.
  template <class Step>
  void capture(cudaStream_t stream, Step&& step) {
    reset();
    cuda_check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal),
               "cudaStreamBeginCapture");
    try {
      step();
    } catch (...) {
      cudaGraph_t g = nullptr;
      cudaStreamEndCapture(stream, &g);
      if (g) cudaGraphDestroy(g);
      throw;
    }
    cuda_check(cudaStreamEndCapture(stream, &m_graph), "cudaStreamEndCapture");
    cuda_check(cudaGraphInstantiate(&m_exec, m_graph, 0), "cudaGraphInstantiate");
  }

  void launch(cudaStream_t stream) const {
    require(m_exec != nullptr, "step_graph: launch before capture");
    cuda_check(cudaGraphLaunch(m_exec, stream), "cudaGraphLaunch");
  }

  void reset() {
    if (m_exec) cudaGraphExecDestroy(m_exec);
    if (m_graph) cudaGraphDestroy(m_graph);
    m_exec = nullptr;
    m_graph = nullptr;
  }

 private:
  cudaGraph_t m_graph = nullptr;
  cudaGraphExec_t m_exec = nullptr;
};

// The first `steps` rows of a device token buffer laid out (steps, batch), on the host.
inline std::vector<std::int32_t> read_step_tokens(context<cuda>& ctx,
                                                  const tensor<std::int32_t, cuda>& tokens,
                                                  int steps, int batch) {
  ctx.synchronize();
  std::vector<std::int32_t> host(std::size_t(steps) * batch);
  device_traits<cuda>::download(host.data(), tokens.data(), sizeof(std::int32_t) * host.size());
  return host;
}

// Whether every sequence produced one of `eos` within the first `steps` rows of `tokens` (steps,
// batch).
inline bool all_sequences_finished(const std::vector<std::int32_t>& tokens, int steps, int batch,
                                   const std::vector<int>& eos) {
  for (int b = 0; b < batch; ++b) {
    bool hit = false;
    for (int s = 0; s < steps && !hit; ++s)
      hit = std::find(eos.begin(), eos.end(), tokens[std::size_t(s) * batch + b]) != eos.end();
    if (!hit) return false;
  }
  return true;
}

// Appends each sequence's tokens from `tokens` (steps, batch) to r, up to and including its first
// EOS id when stop_at_eos.
inline void append_step_tokens(generation_result& r, const std::vector<std::int32_t>& tokens,
                               int steps, int batch, const std::vector<int>& eos,
                               bool stop_at_eos) {
  for (int b = 0; b < batch; ++b)
    for (int s = 0; s < steps; ++s) {
      const int id = tokens[std::size_t(s) * batch + b];
      r.tokens[b].push_back(id);
      ++r.generated_tokens;
      if (stop_at_eos && std::find(eos.begin(), eos.end(), id) != eos.end()) {
        r.stopped_at_eos[b] = true;
        break;
      }
    }
}

}  // namespace crossbatch
