// AdamW over many float32 tensors on the GPU in three launches per step, with no host sync: the
// global gradient norm (deterministic two-pass reduction over fixed chunks), the clipping factor
// computed on the device, and one update kernel over every chunk of every tensor. The same maths
// as train/optimizer.hpp's adamw<float, cuda> (clip when norm > max_grad_norm by
// max / (norm + 1e-6), bias-corrected moments, decoupled weight decay), which makes one
// sum_squares round trip per tensor; tests/cuda/test_lora_backward.cu checks them equal.
#pragma once

#include <cmath>
#include <vector>

#include "crossbatch/train/cuda/matmul.cuh"  // scratch
#include "crossbatch/train/optimizer.hpp"    // adamw_options

namespace crossbatch {
namespace cuda_detail {

struct adamw_chunk {
  float* p;
  const float* g;
  float* m;
  float* v;
  int n;
};
constexpr int adamw_chunk_elems = 1 << 16;

static __global__ void chunk_sum_squares_kernel(float* part, const adamw_chunk* chunks) {
  grid_dependency();
  __shared__ float red[32];
  const adamw_chunk c = chunks[blockIdx.x];
  float s = 0;
  for (int i = threadIdx.x; i < c.n; i += blockDim.x) s += c.g[i] * c.g[i];
  s = block_sum(s, red);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}

// state[0] = norm, state[1] = the gradient scale of this step.
static __global__ void clip_scale_kernel(float* state, const float* part, int parts,
                                         float max_norm) {
  grid_dependency();
  __shared__ float red[32];
  float s = 0;
  for (int i = threadIdx.x; i < parts; i += blockDim.x) s += part[i];
  s = block_sum(s, red);
  if (threadIdx.x == 0) {
    const float norm = sqrtf(s);
    state[0] = norm;
    state[1] = max_norm > 0 && norm > max_norm ? max_norm / (norm + 1e-6f) : 1.0f;
  }
}

static __global__ void chunk_adamw_kernel(const adamw_chunk* chunks, const float* state, float lr,
                                          float b1, float b2, float eps, float wd, float c1,
                                          float c2) {
  grid_dependency();
  const adamw_chunk c = chunks[blockIdx.x];
  const float gscale = state[1];
  for (int i = threadIdx.x; i < c.n; i += blockDim.x) {
    const float gi = c.g[i] * gscale;
    const float mi = b1 * c.m[i] + (1.0f - b1) * gi, vi = b2 * c.v[i] + (1.0f - b2) * gi * gi;
    c.m[i] = mi;
    c.v[i] = vi;
    c.p[i] -= lr * ((mi / c1) / (sqrtf(vi / c2) + eps) + wd * c.p[i]);
  }
}

static __global__ void chunk_zero_grad_kernel(const adamw_chunk* chunks) {
  grid_dependency();
  const adamw_chunk c = chunks[blockIdx.x];
  float* g = const_cast<float*>(c.g);
  for (int i = threadIdx.x; i < c.n; i += blockDim.x) g[i] = 0.0f;
}

}  // namespace cuda_detail

class multi_adamw {
 public:
  explicit multi_adamw(adamw_options o = {}) : m_opt(o) {}

  // Registers a parameter and its gradient (same shape, float32, contiguous) before the first
  // step() / zero_grad(); their buffers must not be reallocated afterwards.
  void add(tensor<float, cuda>& param, tensor<float, cuda>& grad) {
    require<shape_error>(param.shape() == grad.shape(),
                         "multi_adamw: parameter and gradient shapes differ");
    require<value_error>(m_chunks.empty(), "multi_adamw: add() after the first step()");
    m_params.push_back({&param, &grad});
  }

  // One step at learning rate lr (clipping to max_grad_norm first); queued on ctx's stream.
  void step(const context<cuda>& ctx, float lr) {
    using namespace cuda_detail;
    if (m_chunks.empty()) build();
    ++m_step;
    const double c1 = 1.0 - std::pow(double(m_opt.beta1), m_step),
                 c2 = 1.0 - std::pow(double(m_opt.beta2), m_step);
    const unsigned chunks = unsigned(m_host.size());
    launch(ctx, "multi_adamw norm", chunk_sum_squares_kernel, dim3(chunks), dim3(256), 0,
           m_part.data(), static_cast<const adamw_chunk*>(m_chunks.data_ptr()));
    launch(ctx, "multi_adamw clip", clip_scale_kernel, dim3(1), dim3(1024), 0, m_state.data(),
           static_cast<const float*>(m_part.data()), int(chunks), m_opt.max_grad_norm);
    launch(ctx, "multi_adamw update", chunk_adamw_kernel, dim3(chunks), dim3(256), 0,
           static_cast<const adamw_chunk*>(m_chunks.data_ptr()),
           static_cast<const float*>(m_state.data()), lr, m_opt.beta1, m_opt.beta2, m_opt.eps,
           m_opt.weight_decay, float(c1), float(c2));
  }

  // Zeroes every registered gradient in one launch.
  void zero_grad(const context<cuda>& ctx) {
    using namespace cuda_detail;
    if (m_chunks.empty()) build();
    launch(ctx, "multi_adamw zero_grad", chunk_zero_grad_kernel, dim3(unsigned(m_host.size())),
           dim3(256), 0, static_cast<const adamw_chunk*>(m_chunks.data_ptr()));
  }

  // The gradient norm of the last step, before clipping (waits for it).
  double last_grad_norm(const context<cuda>& ctx) const {
    ctx.synchronize();
    float h = 0;
    device_traits<cuda>::download(&h, m_state.data(), sizeof(float));
    return h;
  }
  int steps() const { return m_step; }

 private:
  struct byte_buffer {  // device memory for the chunk table
    tensor<std::uint8_t, cuda> t;
    void* data_ptr() const { return const_cast<std::uint8_t*>(t.data()); }
    bool empty() const { return t.empty(); }
  };
  void build() {
    using namespace cuda_detail;
    index_t total = 0;
    for (const auto& [p, g] : m_params) total += p->size();
    require<value_error>(total > 0, "multi_adamw: no parameters");
    m_m = tensor<float, cuda>({total});
    m_v = tensor<float, cuda>({total});
    cuda_check(cudaMemset(m_m.data(), 0, sizeof(float) * total), "multi_adamw: zero m");
    cuda_check(cudaMemset(m_v.data(), 0, sizeof(float) * total), "multi_adamw: zero v");
    index_t off = 0;
    for (const auto& [p, g] : m_params) {
      for (index_t s = 0; s < p->size(); s += adamw_chunk_elems)
        m_host.push_back({p->data() + s, g->data() + s, m_m.data() + off + s, m_v.data() + off + s,
                          int(std::min<index_t>(adamw_chunk_elems, p->size() - s))});
      off += p->size();
    }
    m_chunks.t = tensor<std::uint8_t, cuda>({index_t(sizeof(adamw_chunk) * m_host.size())});
    device_traits<cuda>::upload(m_chunks.t.data(), m_host.data(),
                                sizeof(adamw_chunk) * m_host.size());
    m_part = tensor<float, cuda>({index_t(m_host.size())});
    m_state = tensor<float, cuda>({2});
  }

  adamw_options m_opt;
  std::vector<std::pair<tensor<float, cuda>*, tensor<float, cuda>*>> m_params;
  std::vector<cuda_detail::adamw_chunk> m_host;
  byte_buffer m_chunks;
  tensor<float, cuda> m_m, m_v, m_part, m_state;
  int m_step = 0;
};

}  // namespace crossbatch
