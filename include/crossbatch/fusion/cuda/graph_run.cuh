// The run of paraphrase fusion's front end (fusion/paraphrase_fusion.hpp) on the GPU: the graph
// driver with the device sampler, the step policy's whole step in one CUDA graph.
#pragma once

#include "crossbatch/fusion/cuda/grouped_combine.cuh"
#include "crossbatch/fusion/paraphrase_fusion.hpp"
#include "crossbatch/generate/cuda/graph_driver.cuh"

namespace crossbatch {

template <class T>
auto graph_run(graph_driver<T>& driver, const sampling_params& params,
               const generation_options& opt, const std::vector<int>& eos) {
  // opt and eos are copied: the run may outlive temporaries passed here.
  return [&driver, params, opt, eos](auto& policy) { return driver.run(policy, params, opt, eos); };
}

}  // namespace crossbatch
