// ARMT's associative memory on the GPU (the CPU form and the formulas: recurrent/
// associative_memory.hpp), batched over the cells of a step. Everything is float32: the state,
// the projection weights (stacked per layer [L, ...]), the features. The state is kept
// transposed, At_l = A_l^T (C, d_key), so that the read q A = q At^T and the update
// At += (beta (v - vbar))^T k are both products of the form x w^T.
//
// A call reads or writes a list of cells (memory_cells: each a row block of some residual stream,
// its sequence's state, its layer). The cells of one sequence at consecutive layers form a run;
// every product is one pinned strided-batched matmul per run (ops/cuda/strided_batched_linear.cuh)
// over that run's layers' weights and states, and every elementwise step is one launch over all
// cells. A cell's result does not depend on which other cells share the call (pinned algorithms,
// no split-K, one fixed shape per cell: T rows for a read, M rows for a write), so the sequential
// executor (one cell per sequence per call) and the diagonal one (a whole diagonal per call)
// compute the same bits.
#pragma once

#include <vector>

#include "crossbatch/cuda.hpp"
#include "crossbatch/ops/cuda/strided_batched_linear.cuh"
#include "crossbatch/recurrent/associative_memory.hpp"

namespace crossbatch {

// Every layer's memory of one sequence on the device: At (L, C, d_key) = A^T, z (L, d_key).
struct device_memory_state {
  tensor<float, cuda> At, z;
  device_memory_state() = default;
  device_memory_state(int layers, int d_key, int hidden)
      : At({layers, hidden, d_key}), z({layers, d_key}) {
    clear();
  }
  void clear() {
    cuda_check(cudaMemset(At.data(), 0, sizeof(float) * At.size()), "cudaMemset At");
    cuda_check(cudaMemset(z.data(), 0, sizeof(float) * z.size()), "cudaMemset z");
  }
  // As a host memory_state (A un-transposed).
  memory_state to_host_state() const {
    const auto at = to_host(At);
    memory_state s(int(At.dim(0)), int(At.dim(2)), int(At.dim(1)));
    const index_t L = At.dim(0), C = At.dim(1), K = At.dim(2);
    const float* src = at.data();
    float* dst = s.A.data();
    for (index_t l = 0; l < L; ++l)
      for (index_t c = 0; c < C; ++c)
        for (index_t k = 0; k < K; ++k) dst[(l * K + k) * C + c] = src[(l * C + c) * K + k];
    s.z = to_host(z);
    return s;
  }
};

// Every layer's memory projections on the device (float32), stacked per layer.
struct device_armt_weights {
  tensor<float, cuda> w_q, w_k;  // (L, d_mem, C)
  tensor<float, cuda> w_v;       // (L, C, C)
  tensor<float, cuda> w_b;       // (L, 1, C)
  std::vector<float> b_b;        // (L): the write gate's biases
  int layers() const { return int(b_b.size()); }
};

inline device_armt_weights upload_armt_layers(const std::vector<armt_layer_weights>& h) {
  require(!h.empty(), "upload_armt_layers: no layers");
  const index_t L = index_t(h.size()), dm = h[0].w_q.dim(0), C = h[0].w_q.dim(1);
  tensor<float> q({L, dm, C}), k({L, dm, C}), v({L, C, C}), b({L, 1, C});
  device_armt_weights d;
  for (index_t l = 0; l < L; ++l) {
    std::copy_n(h[l].w_q.data(), dm * C, q.data() + l * dm * C);
    std::copy_n(h[l].w_k.data(), dm * C, k.data() + l * dm * C);
    std::copy_n(h[l].w_v.data(), C * C, v.data() + l * C * C);
    std::copy_n(h[l].w_b.data(), C, b.data() + l * C);
    d.b_b.push_back(h[l].b_b);
  }
  d.w_q = to_device<cuda>(q), d.w_k = to_device<cuda>(k), d.w_v = to_device<cuda>(v);
  d.w_b = to_device<cuda>(b);
  return d;
}

// One cell of a memory call: `rows` rows of width C at x (row stride C), its sequence's state,
// its layer; first: segment 0 of its sequence (a read leaves it alone, a write uses vbar = 0,
// gamma = 1).
template <class T>
struct memory_cell {
  T* x = nullptr;
  device_memory_state* state = nullptr;
  int layer = 0;
  bool first = false;
};

namespace armt_cuda {
using namespace cuda_detail;

inline constexpr int table_cells = 32;  // cells per launch (kernel-parameter tables)

// The per-launch table of cell pointers (passed by value as a kernel parameter).
template <class C>
struct cell_table {
  C* x[table_cells];
  float* At[table_cells];
  float* z[table_cells];
  float bias[table_cells];
  int first[table_cells];
};

// Per-cell scratch sizes rounded up to 64 floats: every cell's block starts 256-byte aligned.
inline index_t padded(index_t n) { return (n + 63) / 64 * 64; }

// xf[c] (rows, cols) = float(x_c)
template <class C>
__global__ void gather_widen_kernel(float* xf, index_t cell_stride, cell_table<C> t, index_t n) {
  grid_dependency();
  const C* x = t.x[blockIdx.y];
  float* out = xf + blockIdx.y * cell_stride;
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
       i += index_t(gridDim.x) * blockDim.x)
    out[i] = to_f(x[i]);
}

// phi (rows, 2 nu d) of x (rows, d) for every cell, as dpfp() on the CPU.
static __global__ void dpfp_kernel(float* phi, index_t phi_stride, const float* x,
                                   index_t x_stride, index_t rows, int d, int nu) {
  grid_dependency();
  const int w = 2 * d;
  const index_t total = rows * w * nu;
  const float* xc = x + blockIdx.y * x_stride;
  float* pc = phi + blockIdx.y * phi_stride;
  for (index_t e = blockIdx.x * index_t(blockDim.x) + threadIdx.x; e < total;
       e += index_t(gridDim.x) * blockDim.x) {
    const index_t r = e / (index_t(w) * nu);
    const int col = int(e % (index_t(w) * nu)), j = col / w + 1, i = col % w;
    const int i2 = ((i - j) % w + w) % w;
    const float* xr = xc + r * d;
    const float a = i < d ? fmaxf(xr[i], 0.0f) : fmaxf(-xr[i - d], 0.0f);
    const float b = i2 < d ? fmaxf(xr[i2], 0.0f) : fmaxf(-xr[i2 - d], 0.0f);
    pc[e] = a * b;
  }
}

// x_c = C(xf + num / (den + eps)) for every cell that is not its sequence's first.
template <class C>
__global__ void read_finish_kernel(cell_table<C> t, const float* xf, const float* num,
                                   index_t stride, const float* den, index_t den_stride,
                                   index_t rows, index_t cols) {
  grid_dependency();
  const int c = blockIdx.y;
  if (t.first[c]) return;
  C* x = t.x[c];
  const float* xc = xf + c * stride;
  const float* nc = num + c * stride;
  const float* dc = den + c * den_stride;
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < rows * cols;
       i += index_t(gridDim.x) * blockDim.x)
    x[i] = from_f<C>(xc[i] + nc[i] / (dc[i / cols] + armt_eps));
}

// Block (j, c): memory row j of cell c. v_j = (v_j - vbar_j / den_j) * beta_j (ka = k A before the
// division; not for a first cell), gamma_j.
template <class C>
__global__ void write_prep_kernel(cell_table<C> t, float* v, index_t v_stride, const float* ka,
                                  const float* kz, index_t col_stride, const float* k,
                                  index_t k_stride, const float* logit, float* gamma,
                                  index_t gamma_stride, index_t cols, int d_key, bool correction) {
  grid_dependency();
  __shared__ float red[32];
  const index_t j = blockIdx.x;
  const int c = blockIdx.y;
  const bool first = t.first[c];
  const float* kr = k + c * k_stride + j * d_key;
  float sq = 0;
  for (int i = threadIdx.x; i < d_key; i += blockDim.x) sq += kr[i] * kr[i];
  sq = block_sum(sq, red);
  const float den = first ? 1.0f : kz[c * col_stride + j] + armt_eps;
  const float beta = 1.0f / (1.0f + expf(-(logit[c * col_stride + j] + t.bias[c])));
  float* vr = v + c * v_stride + j * cols;
  const float* kar = ka + c * v_stride + j * cols;
  for (index_t i = threadIdx.x; i < cols; i += blockDim.x) {
    float x = vr[i];
    if (!first) x -= kar[i] / den;
    vr[i] = x * beta;
  }
  if (threadIdx.x == 0)
    gamma[c * gamma_stride + j] =
        first || !correction ? 1.0f : fminf(fmaxf(1.0f - den / (sq + armt_eps), 0.0f), 1.0f);
}

// out[c] (cols, rows) = in[c] (rows, cols)^T for every cell.
static __global__ void transpose_kernel(float* out, index_t out_stride, const float* in,
                                        index_t in_stride, index_t rows, index_t cols) {
  grid_dependency();
  const float* ic = in + blockIdx.y * in_stride;
  float* oc = out + blockIdx.y * out_stride;
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < rows * cols;
       i += index_t(gridDim.x) * blockDim.x)
    oc[(i % cols) * rows + i / cols] = ic[i];
}

// At_c += delta[c] (n_a), z_c += dz[c] (n_z) for every cell.
template <class C>
__global__ void accumulate_kernel(cell_table<C> t, const float* delta, index_t delta_stride,
                                  index_t n_a, const float* dz, index_t dz_stride, index_t n_z) {
  grid_dependency();
  const int c = blockIdx.y;
  float* At = t.At[c];
  float* z = t.z[c];
  const float* dc = delta + c * delta_stride;
  const float* zc = dz + c * dz_stride;
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n_a + n_z;
       i += index_t(gridDim.x) * blockDim.x) {
    if (i < n_a)
      At[i] += dc[i];
    else
      z[i - n_a] += zc[i - n_a];
  }
}

inline dim3 grid(index_t n, int cells) { return dim3(blocks_for(n, 256, 4096), unsigned(cells)); }
}  // namespace armt_cuda

// Scratch for up to `cells` cells per call (reads of T rows, writes of M rows).
struct memory_scratch {
  index_t cells = 0, t = 0, m = 0, c = 0, dm = 0, k = 0;
  // per-cell strides (floats)
  index_t s_x = 0, s_proj = 0, s_phi = 0, s_col = 0, s_delta = 0, s_mt = 0, s_kt = 0, s_g = 0,
          s_dz = 0;
  tensor<float, cuda> xf, proj, phi, num, col, v, kz, vt, kt, delta, gamma, dz;
  memory_scratch() = default;
  memory_scratch(index_t cells_, index_t hidden, const armt_config& a)
      : cells(std::min<index_t>(cells_, armt_cuda::table_cells)),
        t(a.rows()),
        m(a.num_mem_tokens),
        c(hidden),
        dm(a.d_mem),
        k(a.d_key()) {
    using armt_cuda::padded;
    s_x = padded(t * c), s_proj = padded(t * dm), s_phi = padded(t * k), s_col = padded(t);
    s_delta = padded(c * k), s_mt = padded(c * m), s_kt = padded(k * m), s_g = padded(m),
    s_dz = padded(k);
    auto buf = [&](index_t per) { return tensor<float, cuda>({cells * per}); };
    xf = buf(s_x), proj = buf(s_proj), phi = buf(s_phi), num = buf(s_x), col = buf(s_col);
    v = buf(s_x), kz = buf(s_col), vt = buf(s_mt), kt = buf(s_kt), delta = buf(s_delta);
    gamma = buf(s_g), dz = buf(s_dz);
  }
};

namespace armt_cuda {

// Runs: maximal spans of cells of one sequence at consecutive layers.
template <class T>
std::vector<std::pair<int, int>> runs_of(const memory_cell<T>* cells, int n) {
  std::vector<std::pair<int, int>> runs;  // (first cell, count)
  for (int i = 0; i < n; ++i) {
    if (!runs.empty()) {
      auto& [s, cnt] = runs.back();
      const auto& prev = cells[s + cnt - 1];
      if (prev.state == cells[i].state && prev.layer + 1 == cells[i].layer) {
        ++cnt;
        continue;
      }
    }
    runs.push_back({i, 1});
  }
  return runs;
}

template <class T>
cell_table<cuda_t<T>> table_of(const memory_cell<T>* cells, int n, const device_armt_weights& w,
                               index_t row_offset, index_t c) {
  cell_table<cuda_t<T>> t{};
  for (int i = 0; i < n; ++i) {
    t.x[i] = dev(cells[i].x + row_offset * c);
    t.At[i] = cells[i].state->At.data() + cells[i].layer * cells[i].state->At.dim(1) *
                                              cells[i].state->At.dim(2);
    t.z[i] = cells[i].state->z.data() + cells[i].layer * cells[i].state->z.dim(1);
    t.bias[i] = w.b_b[cells[i].layer];
    t.first[i] = cells[i].first;
  }
  return t;
}

// out[c] (n, o) = x[c] (n, in) w_run(layer of c)^T for every run: one pinned batched matmul each.
template <class T, class W>
void per_run(const context<cuda>& ctx, const std::vector<std::pair<int, int>>& runs,
             const memory_cell<T>* cells, float* out, index_t s_out, const float* x, index_t s_x,
             W weight_of, std::int64_t s_w, index_t n, index_t in, index_t o) {
  for (auto [first, count] : runs)
    pinned_batched_matmul<float>(ctx, out + first * s_out, o, s_out, x + first * s_x, in, s_x,
                                 weight_of(cells[first]), in, s_w, nullptr, 0, count, n, in, o);
}

}  // namespace armt_cuda

// Every cell's read: x_c (T, C) += (q A_l) / (q . z_l + eps), q = phi(x_c W_mq,l^T); first cells
// are left alone. All T rows of a cell are read (pad rows of a short segment stay zero: phi(0) =
// 0), so every read has the same shape.
// rows: rows per cell (default T; generation reads its prefill and decode rows, at most T).
template <class T>
void memory_read(const context<cuda>& ctx, std::span<const memory_cell<T>> cells,
                 const device_armt_weights& w, const armt_config& a, memory_scratch& sc,
                 index_t rows = -1) {
  using namespace armt_cuda;
  const index_t t = rows < 0 ? sc.t : rows, c = sc.c, k = sc.k, dm = sc.dm;
  require(t <= sc.t, "memory_read: " + std::to_string(t) + " rows per cell, scratch for " +
                         std::to_string(sc.t));
  for (std::size_t off = 0; off < cells.size(); off += std::size_t(sc.cells)) {
    const int n = int(std::min<std::size_t>(std::size_t(sc.cells), cells.size() - off));
    const auto* cl = cells.data() + off;
    const auto runs = runs_of(cl, n);
    const auto table = table_of(cl, n, w, 0, c);
    launch(ctx, "armt widen", gather_widen_kernel<cuda_t<T>>, grid(t * c, n), dim3(256), 0,
           sc.xf.data(), sc.s_x, table, t * c);
    per_run(ctx, runs, cl, sc.proj.data(), sc.s_proj, sc.xf.data(), sc.s_x,
            [&](const memory_cell<T>& e) { return w.w_q.data() + e.layer * dm * c; }, dm * c, t,
            c, dm);
    launch(ctx, "armt dpfp", dpfp_kernel, grid(t * k, n), dim3(256), 0, sc.phi.data(), sc.s_phi,
           sc.proj.data(), sc.s_proj, t, int(dm), a.nu);
    per_run(ctx, runs, cl, sc.num.data(), sc.s_x, sc.phi.data(), sc.s_phi,
            [&](const memory_cell<T>& e) { return e.state->At.data() + e.layer * c * k; }, c * k,
            t, k, c);
    per_run(ctx, runs, cl, sc.col.data(), sc.s_col, sc.phi.data(), sc.s_phi,
            [&](const memory_cell<T>& e) { return e.state->z.data() + e.layer * k; }, k, t, k, 1);
    launch(ctx, "armt read", read_finish_kernel<cuda_t<T>>, grid(t * c, n), dim3(256), 0, table,
           sc.xf.data(), sc.num.data(), sc.s_x, sc.col.data(), sc.s_col, t, c);
  }
}

// Every cell's write from its memory rows x_c + len_c (M, C), given as the cell's x here.
template <class T>
void memory_write(const context<cuda>& ctx, std::span<const memory_cell<T>> cells,
                  const device_armt_weights& w, const armt_config& a, memory_scratch& sc) {
  using namespace armt_cuda;
  const index_t m = sc.m, c = sc.c, k = sc.k, dm = sc.dm;
  for (std::size_t off = 0; off < cells.size(); off += std::size_t(sc.cells)) {
    const int n = int(std::min<std::size_t>(std::size_t(sc.cells), cells.size() - off));
    const auto* cl = cells.data() + off;
    const auto runs = runs_of(cl, n);
    const auto table = table_of(cl, n, w, 0, c);
    launch(ctx, "armt widen", gather_widen_kernel<cuda_t<T>>, grid(m * c, n), dim3(256), 0,
           sc.xf.data(), sc.s_x, table, m * c);
    per_run(ctx, runs, cl, sc.proj.data(), sc.s_proj, sc.xf.data(), sc.s_x,
            [&](const memory_cell<T>& e) { return w.w_k.data() + e.layer * dm * c; }, dm * c, m,
            c, dm);
    launch(ctx, "armt dpfp", dpfp_kernel, grid(m * k, n), dim3(256), 0, sc.phi.data(), sc.s_phi,
           sc.proj.data(), sc.s_proj, m, int(dm), a.nu);
    per_run(ctx, runs, cl, sc.v.data(), sc.s_x, sc.xf.data(), sc.s_x,
            [&](const memory_cell<T>& e) { return w.w_v.data() + e.layer * c * c; }, c * c, m, c,
            c);
    per_run(ctx, runs, cl, sc.col.data(), sc.s_col, sc.xf.data(), sc.s_x,
            [&](const memory_cell<T>& e) { return w.w_b.data() + e.layer * c; }, c, m, c, 1);
    // k A and k . z (zero for a first cell: its state is still zero; write_prep ignores them).
    per_run(ctx, runs, cl, sc.num.data(), sc.s_x, sc.phi.data(), sc.s_phi,
            [&](const memory_cell<T>& e) { return e.state->At.data() + e.layer * c * k; }, c * k,
            m, k, c);
    per_run(ctx, runs, cl, sc.kz.data(), sc.s_col, sc.phi.data(), sc.s_phi,
            [&](const memory_cell<T>& e) { return e.state->z.data() + e.layer * k; }, k, m, k, 1);
    launch(ctx, "armt write prep", write_prep_kernel<cuda_t<T>>, dim3(unsigned(m), unsigned(n)),
           dim3(256), 0, table, sc.v.data(), sc.s_x, sc.num.data(), sc.kz.data(), sc.s_col,
           sc.phi.data(), sc.s_phi, sc.col.data(), sc.gamma.data(), sc.s_g, c, int(k),
           a.correction);
    launch(ctx, "armt transpose", transpose_kernel, grid(m * c, n), dim3(256), 0, sc.vt.data(),
           sc.s_mt, sc.v.data(), sc.s_x, m, c);
    launch(ctx, "armt transpose", transpose_kernel, grid(m * k, n), dim3(256), 0, sc.kt.data(),
           sc.s_kt, sc.phi.data(), sc.s_phi, m, k);
    // delta (C, d_key) = v^T k, dz (1, d_key) = gamma^T k: products over the M rows.
    for (auto [first, count] : runs) {
      pinned_batched_matmul<float>(ctx, sc.delta.data() + first * sc.s_delta, k, sc.s_delta,
                                   sc.vt.data() + first * sc.s_mt, m, sc.s_mt,
                                   sc.kt.data() + first * sc.s_kt, m, sc.s_kt, nullptr, 0, count,
                                   c, m, k);
      pinned_batched_matmul<float>(ctx, sc.dz.data() + first * sc.s_dz, k, sc.s_dz,
                                   sc.gamma.data() + first * sc.s_g, m, sc.s_g,
                                   sc.kt.data() + first * sc.s_kt, m, sc.s_kt, nullptr, 0, count,
                                   1, m, k);
    }
    launch(ctx, "armt add", accumulate_kernel<cuda_t<T>>, grid(c * k + k, n), dim3(256), 0, table,
           sc.delta.data(), sc.s_delta, c * k, sc.dz.data(), sc.s_dz, k);
  }
}

}  // namespace crossbatch
