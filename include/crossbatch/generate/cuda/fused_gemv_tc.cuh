// The fused decode step's GEMV on tensor cores, for 16-bit weights and batches of up to 64 rows:
// out = epilogue(prologue(x) W^T + b) with mma.sync m16n8k16 (bf16 / f16 inputs, float
// accumulation), the weights streamed from memory once per step for every batch row.
//
// A warp owns a tile of 16 output rows (W rows: the mma's A operand) and NB tiles of 8 batch rows
// (x rows: the B operand, NB = ceil(n / 8)). A k-tile is 32 inputs: lane (g = lane / 4,
// t = lane % 4) loads the 16-byte chunk t of W rows g and g + 8 and of x row g of each batch tile,
// and feeds them to two mmas. This permutes k inside the tile identically for A and B (a dot
// product does not depend on the order of its terms), so every operand is one 16-byte load
// straight into the fragment registers, with no shared-memory staging of the weights. The 8 warps
// of a block split the k-tiles of their row tile into `ks` parts (fused_gemv_args::warps_per_row)
// and add the parts in a fixed order through shared memory; blocks stride over the row tiles (at
// most one wave), the next tile's weights in flight while a tile is reduced and stored, and the
// first ones fetched before the grid-dependency wait (no kernel of the step writes weights).
// The norm prologue copies the n rows of x into shared memory with cp.async (every load in flight
// at once) and normalises them in place, one warp a row, with the rounding points of norm().
// Every output element is a function of its own x row only, summed in an order that does not
// depend on the batch row's position (a duplicated prompt gets identical outputs).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "crossbatch/generate/cuda/fused_gemv_common.cuh"
#include "crossbatch/ops/cuda/mma.cuh"

namespace crossbatch {
namespace cuda_detail {

// Row stride (elements) of the normalised rows in shared memory (fused_launch_config.hpp).
template <class T>
__host__ __device__ constexpr int tc_smem_stride(int in) {
  return launch_detail::tc_smem_stride(in, int(sizeof(T)));
}

// k-tiles (32 inputs) a lane keeps in flight per pass (fused_launch_config.hpp).
template <int NB, epilogue E>
constexpr int tc_loads() {
  return launch_detail::tc_loads(NB, E == epilogue::gated);
}

// The norm prologue: x rows [0, n) -> xn (n, stride) in shared memory, normalised as norm() does.
template <class T, prologue P>
__device__ __forceinline__ void tc_norm_rows(T* xn, int stride, const fused_gemv_args& a) {
  constexpr int vec = 8;
  const int nvec = a.in / vec, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const T* x = static_cast<const T*>(a.x);
  for (int i = threadIdx.x; i < a.n * nvec; i += blockDim.x) {
    const int r = i / nvec, c = i % nvec;
    cp_async_16(xn + r * stride + c * vec, x + r * a.xs + c * vec);
  }
  cp_async_wait_all();
  __syncthreads();
  const uint4* nw = static_cast<const uint4*>(a.nw);
  const uint4* nb = static_cast<const uint4*>(a.nb);
  for (int r = warp; r < a.n; r += 8) {
    uint4* row = reinterpret_cast<uint4*>(xn + r * stride);
    float mean = 0.0f;
    if constexpr (P == prologue::layer) {
      float s = 0.0f;
      for (int c = lane; c < nvec; c += 32) {
        float f[vec];
        unpack<T>(row[c], f);
#pragma unroll
        for (int e = 0; e < vec; ++e) s += f[e];
      }
      mean = warp_sum(s) / a.in;
    }
    float ss = 0.0f;
    for (int c = lane; c < nvec; c += 32) {
      float f[vec];
      unpack<T>(row[c], f);
#pragma unroll
      for (int e = 0; e < vec; ++e) ss += (f[e] - mean) * (f[e] - mean);
    }
    const float inv = 1.0f / sqrtf(warp_sum(ss) / a.in + a.eps);
    for (int c = lane; c < nvec; c += 32) {
      float f[vec], g[vec], o[vec];
      unpack<T>(row[c], f);
      unpack<T>(__ldg(nw + c), g);
      if constexpr (P == prologue::rms) {
#pragma unroll
        for (int e = 0; e < vec; ++e) o[e] = g[e] * round_to<T>(f[e] * inv);
      } else {
        float bb[vec];
        unpack<T>(__ldg(nb + c), bb);
#pragma unroll
        for (int e = 0; e < vec; ++e) o[e] = (f[e] - mean) * inv * g[e] + bb[e];
      }
      row[c] = pack<T>(o);
    }
  }
  __syncthreads();
}

// out = epilogue(prologue(x) W^T + b) for n <= 8 NB rows of x on tensor cores (see the top).
template <class T, int NB, prologue P, epilogue E>
__global__ void __launch_bounds__(256) fused_gemv_tc_kernel(fused_gemv_args a) {
  static_assert(sizeof(T) == 2, "tensor-core GEMV: 16-bit types only");
  constexpr int R2 = E == epilogue::gated ? 2 : 1;  // gate and up tiles
  constexpr int U = tc_loads<NB, E>();
  constexpr int FR = R2 * NB * 4;  // accumulator floats per lane
  constexpr int RED = 16;          // floats per lane per round of the cross-warp reduction
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ float red[8][RED][32];
  __shared__ unsigned long long top[8][NB * 8];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int ks = a.warps_per_row, tiles_per_block = 8 / ks, part = warp % ks;
  const int nvec = a.in / 8, ktiles = (nvec + 3) / 4, passes = (ktiles + ks * U - 1) / (ks * U);
  const int row_tiles = (a.o + 15) / 16,
            groups = (row_tiles + tiles_per_block - 1) / tiles_per_block;
  const index_t o = a.o;
  const T* w = static_cast<const T*>(a.w);
  const T* bias = static_cast<const T*>(a.bias);
  T* out = static_cast<T*>(a.out);
  int group = blockIdx.x, pass = 0;
  int row0 = (group * tiles_per_block + warp / ks) * 16;
  uint4 wv[R2][U][2];  // [gate/up][k-tile][row g / g + 8]
  float bv[R2][2];
  auto fetch = [&]() {
#pragma unroll
    for (int r = 0; r < R2; ++r)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int row = row0 + g + 8 * h;
        bv[r][h] = bias && row < o ? to_f(bias[row + r * o]) : 0.0f;
      }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = ((pass * U + u) * ks + part) * 4 + t;
#pragma unroll
      for (int r = 0; r < R2; ++r)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int row = row0 + g + 8 * h;
          wv[r][u][h] = row < o && c < nvec
                            ? __ldcs(reinterpret_cast<const uint4*>(w + (row + r * o) * a.ws) + c)
                            : make_uint4(0, 0, 0, 0);
        }
    }
  };
  fetch();
  grid_dependency();
  T* xn = reinterpret_cast<T*>(smem_raw);  // (n, stride) normalised rows when P != none
  const int stride = tc_smem_stride<T>(a.in);
  if constexpr (P != prologue::none) tc_norm_rows<T, P>(xn, stride, a);
  const T* xg = static_cast<const T*>(a.x);
  // The residual epilogue's old values of this lane's outputs: [batch tile][row g / g + 8][2t + j].
  float old[NB][2][2];
  auto load_old = [&]() {
#pragma unroll
    for (int nt = 0; nt < NB; ++nt)
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          const int row = row0 + g + 8 * h, bi = nt * 8 + 2 * t + j;
          old[nt][h][j] = E == epilogue::residual && part == 0 && row < o && bi < a.n
                              ? to_f(__ldcg(out + index_t(bi) * a.os + row))
                              : 0.0f;
        }
  };
  if constexpr (E == epilogue::residual) load_old();
  float acc[R2][NB][4];
  auto clear = [&]() {
#pragma unroll
    for (int r = 0; r < R2; ++r)
#pragma unroll
      for (int nt = 0; nt < NB; ++nt)
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[r][nt][i] = 0.0f;
  };
  clear();
  unsigned long long best[NB][2];  // argmax: this lane's best key of batch row nt * 8 + 2t + j
#pragma unroll
  for (int nt = 0; nt < NB; ++nt) best[nt][0] = best[nt][1] = 0;
  for (;;) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int kt = (pass * U + u) * ks + part;  // warp-uniform: the mmas see the whole warp
      if (kt < ktiles) {
        const int c = kt * 4 + t;
#pragma unroll
        for (int nt = 0; nt < NB; ++nt) {
          const int bi = nt * 8 + g;
          uint4 xv = make_uint4(0, 0, 0, 0);
          if (bi < a.n && c < nvec) {
            if constexpr (P == prologue::none)
              xv = __ldcg(reinterpret_cast<const uint4*>(xg + bi * a.xs) + c);
            else
              xv = reinterpret_cast<const uint4*>(xn + bi * stride)[c];
          }
#pragma unroll
          for (int r = 0; r < R2; ++r) {
            mma_16816<T>(acc[r][nt], wv[r][u][0].x, wv[r][u][1].x, wv[r][u][0].y, wv[r][u][1].y,
                         xv.x, xv.y);
            mma_16816<T>(acc[r][nt], wv[r][u][0].z, wv[r][u][1].z, wv[r][u][0].w, wv[r][u][1].w,
                         xv.z, xv.w);
          }
        }
      }
    }
    const int done_row0 = row0;
    float done_bias[R2][2];
#pragma unroll
    for (int r = 0; r < R2; ++r) done_bias[r][0] = bv[r][0], done_bias[r][1] = bv[r][1];
    const bool tile_done = ++pass == passes;
    if (tile_done) {
      pass = 0;
      group += gridDim.x;
      row0 = (group * tiles_per_block + warp / ks) * 16;
    }
    const bool more = group < groups;
    if (more) fetch();  // the next pass's loads fly while this tile is reduced and stored
    if (tile_done) {
      if (ks > 1) {
        // Parts 1 .. ks - 1 of each row tile added to part 0's accumulators, in part order.
#pragma unroll
        for (int base = 0; base < FR; base += RED) {
          if (part != 0)
#pragma unroll
            for (int i = 0; i < RED; ++i)
              if (base + i < FR)
                red[warp][i][lane] =
                    acc[(base + i) / (NB * 4)][((base + i) / 4) % NB][(base + i) % 4];
          __syncthreads();
          if (part == 0)
            for (int p = 1; p < ks; ++p)
#pragma unroll
              for (int i = 0; i < RED; ++i)
                if (base + i < FR)
                  acc[(base + i) / (NB * 4)][((base + i) / 4) % NB][(base + i) % 4] +=
                      red[warp + p][i][lane];
          __syncthreads();
        }
      }
      if (part == 0) {
#pragma unroll
        for (int nt = 0; nt < NB; ++nt)
#pragma unroll
          for (int h = 0; h < 2; ++h)
#pragma unroll
            for (int j = 0; j < 2; ++j) {
              const int row = done_row0 + g + 8 * h, bi = nt * 8 + 2 * t + j;
              if (row < o && bi < a.n) {
                const float v0 = round_to<T>(acc[0][nt][2 * h + j] + done_bias[0][h]);
                T* dst = out + index_t(bi) * a.os + row;
                if constexpr (E == epilogue::store || E == epilogue::argmax)
                  *dst = from_f<T>(v0);
                else if constexpr (E == epilogue::act)
                  *dst = from_f<T>(apply_activation(a.act, v0));
                else if constexpr (E == epilogue::gated) {
                  const float v1 = round_to<T>(acc[R2 - 1][nt][2 * h + j] + done_bias[R2 - 1][h]);
                  *dst = from_f<T>(round_to<T>(apply_activation(a.act, v0)) * v1);
                } else
                  *dst = from_f<T>(old[nt][h][j] + v0);
                if constexpr (E == epilogue::argmax)
                  if (v0 == v0) best[nt][j] = max(best[nt][j], argmax_key(v0, row));
              }
            }
      }
      clear();
      if constexpr (E == epilogue::residual)
        if (more) load_old();
    }
    if (!more) break;
  }
  if constexpr (E == epilogue::argmax) {
    // Per batch row: the maximum over the lanes of equal t (rows g), then over the warps.
#pragma unroll
    for (int nt = 0; nt < NB; ++nt)
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        unsigned long long k = best[nt][j];
#pragma unroll
        for (int s = 4; s < 32; s <<= 1) k = max(k, __shfl_xor_sync(0xffffffffu, k, s));
        if (g == 0) top[warp][nt * 8 + 2 * t + j] = k;
      }
    __syncthreads();
    if (threadIdx.x < a.n) {
      unsigned long long m = 0;
#pragma unroll
      for (int k = 0; k < 8; ++k) m = max(m, top[k][threadIdx.x]);
      if (m) atomicMax(a.best + threadIdx.x, m);
    }
  }
}

// The tensor-core GEMV for n <= 64 rows (a.n), 16-bit T, launched as l says
// (fused_launch_config.hpp: tc_gemv_launch).
template <class T, prologue P, epilogue E>
void fused_gemv_tc(const context<cuda>& ctx, const fused_gemv_args& a, const gemv_launch& l,
                   int blocks_per_sm) {
  const char* name = "fused gemv (tensor cores)";
  switch (launch_detail::tc_tiles(a.n)) {
    case 1:
      return launch_gemv<fused_gemv_tc_kernel<T, 1, P, E>>(ctx, name, l, blocks_per_sm, a);
    case 2:
      return launch_gemv<fused_gemv_tc_kernel<T, 2, P, E>>(ctx, name, l, blocks_per_sm, a);
    case 4:
      return launch_gemv<fused_gemv_tc_kernel<T, 4, P, E>>(ctx, name, l, blocks_per_sm, a);
    default:
      return launch_gemv<fused_gemv_tc_kernel<T, 8, P, E>>(ctx, name, l, blocks_per_sm, a);
  }
}

}  // namespace cuda_detail
}  // namespace crossbatch
