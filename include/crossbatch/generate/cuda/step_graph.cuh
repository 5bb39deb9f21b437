// One decode step captured as a CUDA graph and replayed (the graph driver,
// generate/cuda/graph_driver.cuh).
#pragma once

#include <cuda_runtime.h>

#include "crossbatch/core/cuda_context.hpp"
#include "crossbatch/core/error.hpp"

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

  bool ready() const { return m_exec != nullptr; }
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

}  // namespace crossbatch
