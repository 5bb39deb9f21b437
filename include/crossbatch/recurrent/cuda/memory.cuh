// ARMT's associative memory on the GPU (the CPU form and the formulas: recurrent/
// associative_memory.hpp). Everything is float32: the state, the projection weights, the
// features. Every product is a cuBLASLt matmul (cuda_detail::lt_matmul: out = x w^T); the state
// is kept transposed, At_l = A_l^T (C, d_key), so that the read q A = q At^T and the update
// At += (beta (v - vbar))^T k are both of that form. Small kernels do the DPFP map and the
// elementwise steps, in the same order as the CPU code.
#pragma once

#include <vector>

#include "crossbatch/cuda.hpp"
#include "crossbatch/recurrent/associative_memory.hpp"

namespace crossbatch {

// Every layer's memory of one sequence on the device: At (L, C, d_key) = A^T, z (L, d_key).
struct device_memory_state {
  tensor<float, cuda> At, z;
  device_memory_state() = default;
  device_memory_state(int layers, int d_key, int hidden)
      : At({layers, hidden, d_key}), z({layers, d_key}) {
    cuda_check(cudaMemset(At.data(), 0, sizeof(float) * At.size()), "cudaMemset At");
    cuda_check(cudaMemset(z.data(), 0, sizeof(float) * z.size()), "cudaMemset z");
  }
  // As a host memory_state (A un-transposed).
  memory_state to_host_state() const {
    const auto at = to_host(At);
    memory_state s(int(At.dim(0)), int(At.dim(2)), int(At.dim(1)));
    const index_t L = At.dim(0), C = At.dim(1), K = At.dim(2);
    for (index_t l = 0; l < L; ++l)
      for (index_t c = 0; c < C; ++c)
        for (index_t k = 0; k < K; ++k) s.A(l, k, c) = at(l, c, k);
    s.z = to_host(z);
    return s;
  }
};

// One layer's memory projections on the device (float32).
struct device_armt_layer {
  tensor<float, cuda> w_q, w_k, w_v, w_b;  // (d_mem, C), (d_mem, C), (C, C), (1, C)
  float b_b = 0;
};

inline std::vector<device_armt_layer> upload_armt_layers(const std::vector<armt_layer_weights>& h) {
  std::vector<device_armt_layer> out;
  for (const auto& L : h) {
    device_armt_layer d;
    d.w_q = to_device<cuda>(L.w_q);
    d.w_k = to_device<cuda>(L.w_k);
    d.w_v = to_device<cuda>(L.w_v);
    d.w_b = to_device<cuda>(L.w_b);
    d.w_b.reshape({1, L.w_b.size()});
    d.b_b = L.b_b;
    out.push_back(std::move(d));
  }
  return out;
}

// Scratch for reads of up to `rows` rows and writes of M rows.
struct memory_scratch {
  tensor<float, cuda> xf, proj, phi, num, den, kz, v, vt, kt, delta, gamma, dz;
  memory_scratch() = default;
  memory_scratch(index_t rows, index_t hidden, const armt_config& a)
      : xf({rows, hidden}),
        proj({rows, a.d_mem}),
        phi({rows, a.d_key()}),
        num({rows, hidden}),
        den({rows, 1}),
        kz({a.num_mem_tokens, 1}),
        v({a.num_mem_tokens, hidden}),
        vt({hidden, a.num_mem_tokens}),
        kt({a.d_key(), a.num_mem_tokens}),
        delta({hidden, a.d_key()}),
        gamma({1, a.num_mem_tokens}),
        dz({1, a.d_key()}) {}
};

namespace armt_cuda {
using namespace cuda_detail;

template <class T>
__global__ void widen_kernel(float* out, const T* x, index_t rows, index_t cols, index_t ld) {
  grid_dependency();
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < rows * cols;
       i += index_t(gridDim.x) * blockDim.x)
    out[i] = to_f(x[(i / cols) * ld + i % cols]);
}

// phi (rows, 2 nu d) of x (rows, d), as dpfp() on the CPU.
static __global__ void dpfp_kernel(float* phi, const float* x, index_t rows, int d, int nu) {
  grid_dependency();
  const int w = 2 * d;
  const index_t total = rows * w * nu;
  for (index_t e = blockIdx.x * index_t(blockDim.x) + threadIdx.x; e < total;
       e += index_t(gridDim.x) * blockDim.x) {
    const index_t r = e / (index_t(w) * nu);
    const int col = int(e % (index_t(w) * nu)), j = col / w + 1, i = col % w;
    const int i2 = ((i - j) % w + w) % w;
    const float* xr = x + r * d;
    const float a = i < d ? fmaxf(xr[i], 0.0f) : fmaxf(-xr[i - d], 0.0f);
    const float b = i2 < d ? fmaxf(xr[i2], 0.0f) : fmaxf(-xr[i2 - d], 0.0f);
    phi[e] = a * b;
  }
}

// h = T(xf + num / (den + eps)), h with row stride ld.
template <class T>
__global__ void read_finish_kernel(T* h, index_t ld, const float* xf, const float* num,
                                   const float* den, index_t rows, index_t cols) {
  grid_dependency();
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < rows * cols;
       i += index_t(gridDim.x) * blockDim.x) {
    const index_t r = i / cols;
    h[r * ld + i % cols] = from_f<T>(xf[i] + num[i] / (den[r] + armt_eps));
  }
}

// One block per memory row j: v_j = (v_j - vbar_j / den_j) * beta_j (vbar = k A before dividing;
// absent for the first segment), gamma_j.
static __global__ void write_prep_kernel(float* v, const float* ka, const float* kz, const float* k,
                                  const float* logit, float bias, float* gamma, index_t cols,
                                  int d_key, bool first, bool correction) {
  grid_dependency();
  __shared__ float red[32];
  const index_t j = blockIdx.x;
  float sq = 0;
  for (int i = threadIdx.x; i < d_key; i += blockDim.x) sq += k[j * d_key + i] * k[j * d_key + i];
  sq = block_sum(sq, red);
  const float den = first ? 1.0f : kz[j] + armt_eps;
  const float beta = 1.0f / (1.0f + expf(-(logit[j] + bias)));
  for (index_t c = threadIdx.x; c < cols; c += blockDim.x) {
    float x = v[j * cols + c];
    if (!first) x -= ka[j * cols + c] / den;
    v[j * cols + c] = x * beta;
  }
  if (threadIdx.x == 0)
    gamma[j] = first || !correction ? 1.0f : fminf(fmaxf(1.0f - den / (sq + armt_eps), 0.0f), 1.0f);
}

static __global__ void transpose_kernel(float* out, const float* in, index_t rows, index_t cols) {
  grid_dependency();
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < rows * cols;
       i += index_t(gridDim.x) * blockDim.x)
    out[(i % cols) * rows + i / cols] = in[i];
}

static __global__ void accumulate_kernel(float* a, const float* b, index_t n) {
  grid_dependency();
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
       i += index_t(gridDim.x) * blockDim.x)
    a[i] += b[i];
}

// out (n, o) = x (n, in) w (o, in)^T, all float, contiguous.
inline void mm(const context<cuda>& ctx, float* out, const float* x, const float* w, index_t n,
               index_t in, index_t o) {
  lt_matmul<float>(ctx, out, o, x, in, w, in, nullptr, n, in, o);
}

inline dim3 grid(index_t n) { return dim3(blocks_for(n, 256, 4096)); }
}  // namespace armt_cuda

// h (rows, C) += (q A_l) / (q . z_l + eps), q = phi(h W_mq^T).
template <class T>
void memory_read(const context<cuda>& ctx, tensor_view<T, cuda> h, const device_armt_layer& w,
                 device_memory_state& s, int l, const armt_config& a, memory_scratch& sc) {
  using namespace armt_cuda;
  const index_t rows = h.shape[0], c = h.shape[1], k = a.d_key();
  const index_t ld = row_stride(h, "memory_read h");
  launch(ctx, "armt widen", widen_kernel<cuda_t<T>>, grid(rows * c), dim3(256), 0,
         sc.xf.data(), dev(h.data), rows, c, ld);
  mm(ctx, sc.proj.data(), sc.xf.data(), w.w_q.data(), rows, c, a.d_mem);
  launch(ctx, "armt dpfp", dpfp_kernel, grid(rows * k), dim3(256), 0, sc.phi.data(),
         sc.proj.data(), rows, a.d_mem, a.nu);
  mm(ctx, sc.num.data(), sc.phi.data(), s.At.data() + l * c * k, rows, k, c);
  mm(ctx, sc.den.data(), sc.phi.data(), s.z.data() + l * k, rows, k, 1);
  launch(ctx, "armt read", read_finish_kernel<cuda_t<T>>, grid(rows * c), dim3(256), 0,
         dev(h.data), ld, sc.xf.data(), sc.num.data(), sc.den.data(), rows, c);
}

// Layer l's write from the memory rows m (M, C); first: segment 0 of the sequence.
template <class T>
void memory_write(const context<cuda>& ctx, tensor_view<const T, cuda> m,
                  const device_armt_layer& w, device_memory_state& s, int l, bool first,
                  const armt_config& a, memory_scratch& sc) {
  using namespace armt_cuda;
  const index_t rows = m.shape[0], c = m.shape[1], k = a.d_key();
  float* At = s.At.data() + l * c * k;
  float* z = s.z.data() + l * k;
  launch(ctx, "armt widen", widen_kernel<cuda_t<T>>, grid(rows * c), dim3(256), 0,
         sc.xf.data(), dev(m.data), rows, c, row_stride(m, "memory_write m"));
  mm(ctx, sc.proj.data(), sc.xf.data(), w.w_k.data(), rows, c, a.d_mem);
  launch(ctx, "armt dpfp", dpfp_kernel, grid(rows * k), dim3(256), 0, sc.phi.data(),
         sc.proj.data(), rows, a.d_mem, a.nu);
  mm(ctx, sc.v.data(), sc.xf.data(), w.w_v.data(), rows, c, c);
  mm(ctx, sc.den.data(), sc.xf.data(), w.w_b.data(), rows, c, 1);  // the gate's logits
  if (!first) {  // num = k A (vbar before the division), kz = k . z
    mm(ctx, sc.num.data(), sc.phi.data(), At, rows, k, c);
    mm(ctx, sc.kz.data(), sc.phi.data(), z, rows, k, 1);
  }
  launch(ctx, "armt write prep", write_prep_kernel, dim3(unsigned(rows)), dim3(256), 0,
         sc.v.data(), sc.num.data(), sc.kz.data(), sc.phi.data(), sc.den.data(), w.b_b,
         sc.gamma.data(), c, int(k), first, a.correction);
  launch(ctx, "armt transpose", transpose_kernel, grid(rows * c), dim3(256), 0, sc.vt.data(),
         sc.v.data(), rows, c);
  launch(ctx, "armt transpose", transpose_kernel, grid(rows * k), dim3(256), 0, sc.kt.data(),
         sc.phi.data(), rows, k);
  mm(ctx, sc.delta.data(), sc.vt.data(), sc.kt.data(), c, rows, k);  // (C, d_key)
  launch(ctx, "armt add", accumulate_kernel, grid(c * k), dim3(256), 0, At, sc.delta.data(), c * k);
  mm(ctx, sc.dz.data(), sc.gamma.data(), sc.kt.data(), 1, rows, k);  // (1, d_key)
  launch(ctx, "armt add", accumulate_kernel, grid(k), dim3(256), 0, z, sc.dz.data(), k);
}

}  // namespace crossbatch
