// Launch configurations of the fused decode step's GEMVs (generate/cuda/fused_decode.cuh: the
// CUDA-core kernel; generate/cuda/fused_gemv_tc.cuh: the tensor-core kernel) as plain host
// arithmetic, and their validity against a device's launch limits. The launchers take the
// warps-per-row split, the shared memory sizes and the opt-in decision from here, and
// fused_decode_supported() refuses a step with any invalid launch, so
// tests/generate/test_fused_launch_config.cpp checks, without a GPU, the very numbers an H200
// gets at every real shape and batch.
//
// Shared memory: a block may use static + dynamic <= 48 KB by default; above that the kernel
// must opt in (cudaFuncAttributeMaxDynamicSharedMemorySize >= its dynamic bytes) and static +
// dynamic must stay <= the opt-in maximum (227 KB on sm_90). Both counts include the static
// arrays: a dynamic size of exactly 48 KB plus 2 KB of static arrays needs the opt-in.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "crossbatch/generate/fast_path.hpp"
#include "crossbatch/model/config.hpp"

namespace crossbatch {

// What a device allows a launch (defaults: an H200 / sm_90).
struct launch_limits {
  int max_threads_per_block = 1024;
  std::size_t default_smem = 48 * 1024;  // static + dynamic shared memory without the opt-in
  std::size_t optin_smem = 227 * 1024;   // static + dynamic shared memory with the opt-in
  long long max_grid_x = 2147483647;
};

// One GEMV of the step: out (n, o) = epilogue(prologue(x (n, in)) W^T), elem_bytes per element.
struct gemv_shape {
  const char* name = "";
  int n = 0, in = 0, o = 0, elem_bytes = 2;
  bool prologue = false;  // a norm prologue (x rows normalised into dynamic shared memory)
  bool gated = false;     // gate and up rows in one warp
};

// The launch of one GEMV.
struct gemv_launch {
  gemv_shape shape;
  bool tensor_cores = false;
  int rows = 0;   // batch rows the kernel instantiation holds: NT (CUDA cores), 8 NB (tensor cores)
  int loads = 0;  // U: 16-byte loads (k-tiles on tensor cores) a lane keeps in flight
  int warps_per_row = 1;  // warps sharing an output row (CUDA cores) / a 16-row tile (tensor cores)
  int threads = 256;
  long long groups = 0;  // blocks wanted; the launcher caps them at one wave (and at least 1)
  std::size_t static_smem = 0, dynamic_smem = 0;

  // Whether the launch needs cudaFuncAttributeMaxDynamicSharedMemorySize set to dynamic_smem.
  bool needs_opt_in(const launch_limits& l) const {
    return static_smem + dynamic_smem > l.default_smem;
  }
};

namespace launch_detail {

// CUDA-core kernel (fused_gemv_kernel<T, NT, P, E>).
constexpr int cuda_core_rows(int n) {
  return n <= 1 ? 1 : n <= 2 ? 2 : n <= 4 ? 4 : n <= 8 ? 8 : 16;
}
// 16-byte weight loads a lane keeps in flight per row: 8 over the long rows of the o / down
// projections; 4 where the prologue's registers are live too.
constexpr int cuda_core_loads(bool prologue) { return prologue ? 4 : 8; }
// Its static arrays: float red[8][NT * rows2], unsigned long long top[8][NT].
constexpr std::size_t cuda_core_static_smem(int nt, bool gated) {
  return std::size_t(8) * nt * (gated ? 2 : 1) * sizeof(float) +
         std::size_t(8) * nt * sizeof(unsigned long long);
}

// Tensor-core kernel (fused_gemv_tc_kernel<T, NB, P, E>).
constexpr int tc_tiles(int n) { return n <= 8 ? 1 : n <= 16 ? 2 : n <= 32 ? 4 : 8; }
// k-tiles (32 inputs) a lane keeps in flight per pass: two 16-byte loads each (four when gated).
constexpr int tc_loads(int nb, bool gated) { return (gated ? 2 : 4) * (nb <= 2 ? 2 : 1); }
// Its static arrays: float red[8][16][32], unsigned long long top[8][NB * 8].
constexpr std::size_t tc_static_smem(int nb) {
  return std::size_t(8) * 16 * 32 * sizeof(float) +
         std::size_t(8) * nb * 8 * sizeof(unsigned long long);
}
// Row stride (elements) of the normalised rows in shared memory: the row length padded so that
// consecutive rows start 64 bytes apart modulo 128 (the 8 rows of a B fragment load hit
// different banks two by two instead of all the same ones).
constexpr int tc_smem_stride(int in, int elem_bytes) {
  const int bytes = in * elem_bytes;
  const int pad = ((64 - bytes % 128) + 128) % 128;
  return (bytes + pad) / elem_bytes;
}

}  // namespace launch_detail

// Whether the step's GEMVs run on tensor cores for this element size and batch.
inline bool gemv_on_tensor_cores(int elem_bytes, int batch, const fused_decode_options& opt) {
  return elem_bytes == 2 && opt.tensor_cores && batch >= opt.tensor_core_min_batch;
}

// The CUDA-core GEMV's launch. Several warps per output row while a lane would otherwise need
// more than one pass of U loads over its row (each pass is one memory latency after the previous)
// or the rows alone give fewer warps than the target (warps_per_sm * sm_count), as long as a lane
// keeps at least one 16-byte chunk.
inline gemv_launch cuda_core_gemv_launch(const gemv_shape& s, int warps_per_sm, int sm_count) {
  using namespace launch_detail;
  gemv_launch l;
  l.shape = s;
  l.rows = cuda_core_rows(s.n);
  l.loads = cuda_core_loads(s.prologue);
  const int vec = 16 / s.elem_bytes, nvec = s.in / vec;
  const long long want = (long long)(warps_per_sm < 1 ? 1 : warps_per_sm) * sm_count;
  while (l.warps_per_row < 8 && nvec >= 64 * l.warps_per_row &&
         (nvec > 32 * l.loads * l.warps_per_row || (long long)s.o * l.warps_per_row < want))
    l.warps_per_row *= 2;
  const int rows_per_block = 8 / l.warps_per_row;
  l.groups = ((long long)s.o + rows_per_block - 1) / rows_per_block;
  l.static_smem = cuda_core_static_smem(l.rows, s.gated);
  l.dynamic_smem =
      s.prologue ? std::size_t(l.rows) * std::size_t(s.in) * std::size_t(s.elem_bytes) : 0;
  return l;
}

// The tensor-core GEMV's launch (16-bit elements). k split over several warps while a warp would
// need more than one pass over its row tile or the row tiles alone give fewer warps than the
// target, as long as a part keeps two k-tiles.
inline gemv_launch tc_gemv_launch(const gemv_shape& s, int warps_per_sm, int sm_count) {
  using namespace launch_detail;
  gemv_launch l;
  l.shape = s;
  l.tensor_cores = true;
  const int nb = tc_tiles(s.n);
  l.rows = 8 * nb;
  l.loads = tc_loads(nb, s.gated);
  const int nvec = s.in / 8, ktiles = (nvec + 3) / 4, tiles = (s.o + 15) / 16;
  const long long want = (long long)(warps_per_sm < 1 ? 1 : warps_per_sm) * sm_count;
  while (l.warps_per_row < 8 && ktiles >= 2 * l.warps_per_row &&
         (ktiles > l.loads * l.warps_per_row || (long long)tiles * l.warps_per_row < want))
    l.warps_per_row *= 2;
  const int tiles_per_block = 8 / l.warps_per_row;
  l.groups = ((long long)tiles + tiles_per_block - 1) / tiles_per_block;
  l.static_smem = tc_static_smem(nb);
  l.dynamic_smem = s.prologue ? std::size_t(s.n) * std::size_t(tc_smem_stride(s.in, 2)) * 2 : 0;
  return l;
}

inline gemv_launch gemv_launch_for(const gemv_shape& s, const fused_decode_options& opt,
                                   int sm_count) {
  return gemv_on_tensor_cores(s.elem_bytes, s.n, opt)
             ? tc_gemv_launch(s, opt.gemv_warps_per_sm, sm_count)
             : cuda_core_gemv_launch(s, opt.gemv_warps_per_sm, sm_count);
}

// What makes the launch invalid on a device with these limits, in words; empty when it is valid.
inline std::string launch_problem(const gemv_launch& l, const launch_limits& lim) {
  const auto& s = l.shape;
  const auto where = [&] {  // built only for a problem: launchers call this on every launch
    return std::string(s.name) + " (n " + std::to_string(s.n) + ", in " + std::to_string(s.in) +
           ", o " + std::to_string(s.o) + ", " + (l.tensor_cores ? "tensor cores" : "CUDA cores") +
           "): ";
  };
  const int vec = 16 / s.elem_bytes;
  if (s.n < 1 || s.n > l.rows || l.rows > (l.tensor_cores ? 64 : 16))
    return where() + "batch rows " + std::to_string(s.n) + " outside the kernel's " +
           std::to_string(l.rows);
  if (s.in < vec || s.in % vec) return where() + "input size not a positive multiple of 16 bytes";
  if (l.threads < 32 || l.threads % 32 || l.threads > lim.max_threads_per_block)
    return where() + std::to_string(l.threads) + " threads per block";
  if (l.threads != 256) return where() + "the kernels are written for 256 threads (8 warps)";
  if (l.warps_per_row < 1 || 8 % l.warps_per_row)
    return where() + std::to_string(l.warps_per_row) + " warps per row does not divide 8";
  if (l.groups < 1 || l.groups > lim.max_grid_x)
    return where() + "grid of " + std::to_string(l.groups) + " blocks";
  if (l.static_smem + l.dynamic_smem > lim.optin_smem)
    return where() + std::to_string(l.static_smem) + " + " + std::to_string(l.dynamic_smem) +
           " bytes of shared memory exceed the opt-in maximum " + std::to_string(lim.optin_smem);
  return {};
}

// The GEMVs of one fused decode step of model c at this batch, in launch order (a layer's four,
// then the LM head; the layers share shapes).
inline std::vector<gemv_launch> fused_step_gemvs(const model_config& c, int batch, int elem_bytes,
                                                 const fused_decode_options& opt, int sm_count) {
  const int qd = c.num_heads * c.head_dim, width = (c.num_heads + 2 * c.num_kv_heads) * c.head_dim;
  const bool gated = c.kind != family::gpt2;
  const gemv_shape shapes[] = {
      {"qkv", batch, c.hidden_size, width, elem_bytes, true, false},
      {"o", batch, qd, c.hidden_size, elem_bytes, false, false},
      {"up", batch, c.hidden_size, c.intermediate_size, elem_bytes, true, gated},
      {"down", batch, c.intermediate_size, c.hidden_size, elem_bytes, false, false},
      {"lm head", batch, c.hidden_size, c.vocab_size, elem_bytes, true, false}};
  std::vector<gemv_launch> out;
  for (const auto& s : shapes) out.push_back(gemv_launch_for(s, opt, sm_count));
  return out;
}

// The first problem among the step's launches (empty: all valid).
inline std::string fused_step_problem(const model_config& c, int batch, int elem_bytes,
                                      const fused_decode_options& opt, int sm_count,
                                      const launch_limits& lim) {
  for (const auto& l : fused_step_gemvs(c, batch, elem_bytes, opt, sm_count)) {
    auto p = launch_problem(l, lim);
    if (!p.empty()) return p;
  }
  return {};
}

}  // namespace crossbatch
