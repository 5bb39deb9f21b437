// Prefill attention on tensor cores for 16-bit q, K and V (head size D = 64 or 128), in the manner
// of FlashAttention-2: a block of 4 warps owns 64 queries of one head (16 a warp, held as mma A
// fragments for the whole call) and walks the key tiles of BK keys; per tile S = q K^T and
// O += P V are m16n8k16 mmas with float accumulation, the online softmax runs in float on the S
// fragments (base 2, the scale folded in), and P goes back to the mma as 16-bit A fragments
// straight from the S registers. Tiles arrive by cp.async into a double buffer (the next
// non-empty tile is in flight while the current one is used); rows past kv_len are zero-filled.
// The mask's tile_kind() decides per tile: empty for the block's 64 queries, the tile is never
// loaded; empty for a warp's 16, that warp skips it; full, no per-element test; partial,
// allowed() on every score. A query row that sees no key gets zeros (as the CUDA-core kernel and
// the CPU reference). P is rounded to 16 bits before P V (the row sums are not), as FlashAttention
// does: within the dtype's tolerance, not bit-equal to the CUDA-core path.
#pragma once

#include <cmath>

#include "crossbatch/attention/cuda/geometry.cuh"
#include "crossbatch/attention/mask.hpp"
#include "crossbatch/ops/cuda/common.cuh"
#include "crossbatch/ops/cuda/mma.cuh"

namespace crossbatch::cuda_detail {

constexpr int prefill_tc_bq = 64, prefill_tc_threads = 128;

template <int D>
constexpr int prefill_tc_bk() {
  return D >= 128 ? 32 : 64;  // two buffers of K and V stay under 48 KB of shared memory
}

template <class T, class M, int D>
__global__ void __launch_bounds__(prefill_tc_threads)
    attention_prefill_tc_kernel(T* out, const T* q, const T* keys, const T* values, M mask,
                                attn_geometry g, const int* shift) {
  grid_dependency();
  constexpr int BQ = prefill_tc_bq, BK = prefill_tc_bk<D>();
  constexpr int LD = D + 8;   // smem row stride (elements): ldmatrix rows fall in distinct banks
  constexpr int CPR = D / 8;  // 16-byte chunks a K / V row
  constexpr int KD = D / 16;  // k-steps of q K^T over the head size
  constexpr int NS = BK / 8;  // 8-key score tiles per warp
  constexpr int ND = D / 8;   // 8-column output tiles per warp
  __shared__ __align__(16) T ks[2][BK * LD];  // (buffer, key, D) padded
  __shared__ __align__(16) T vs[2][BK * LD];

  const int b = blockIdx.z, hi = blockIdx.y, qt = blockIdx.x;
  const int kvh = hi / (g.h / g.hkv);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int gr = lane >> 2, tg = lane & 3;     // fragment row group, thread in group
  const int mat = lane >> 3, mrow = lane & 7;  // ldmatrix: which matrix this lane addresses
  const int q_start = shifted(g.q_start, shift), kv_len = shifted(g.kv_len, shift);
  const int qa = q_start + qt * BQ, qb = q_start + min(g.tq, (qt + 1) * BQ);  // block's slots
  const int w0 = qt * BQ + warp * 16;                                         // warp's first query
  const int wa = q_start + w0, wb = q_start + min(g.tq, w0 + 16);  // warp's slots (maybe none)
  const int r0 = w0 + gr, r1 = r0 + 8;                             // this thread's query rows
  const float scale2 = g.scale * 1.4426950408889634f;              // scores in base 2

  // q fragments (16 x D a warp): qf[k] covers head columns [16k, 16k + 16).
  unsigned qf[KD][4];
  {
    const T* qbase = q + b * g.qb + hi * g.qh;
    auto pair = [&](int r, int col) {
      return r < g.tq ? *reinterpret_cast<const unsigned*>(qbase + r * g.qt + col) : 0u;
    };
#pragma unroll
    for (int k = 0; k < KD; ++k) {
      qf[k][0] = pair(r0, 16 * k + 2 * tg);
      qf[k][1] = pair(r1, 16 * k + 2 * tg);
      qf[k][2] = pair(r0, 16 * k + 8 + 2 * tg);
      qf[k][3] = pair(r1, 16 * k + 8 + 2 * tg);
    }
  }

  const T* kbase = keys + b * g.kb + kvh * g.kh;
  const T* vbase = values + b * g.vb + kvh * g.vh;
  auto fetch = [&](int buf, int k0) {  // tile [k0, k0 + BK) into buffer buf, one commit group
    for (int e = threadIdx.x; e < BK * CPR; e += prefill_tc_threads) {
      const int kk = e / CPR, c = e % CPR;
      const bool ok = k0 + kk < kv_len;
      const int key = ok ? k0 + kk : 0;
      cp_async_16_or_zero(&ks[buf][kk * LD + c * 8], kbase + key * g.ks + c * 8, ok);
      cp_async_16_or_zero(&vs[buf][kk * LD + c * 8], vbase + key * g.vs + c * 8, ok);
    }
    cp_async_commit();
  };
  auto next_tile = [&](int k0) {  // the first tile at or after k0 the block's queries can see
    while (k0 < kv_len && mask.tile_kind(b, qa, qb, k0, min(kv_len, k0 + BK)) == tile::empty)
      k0 += BK;
    return k0;
  };

  float o[ND][4];  // output fragments: rows (r0, r1) x columns 8n + (2tg, 2tg + 1)
#pragma unroll
  for (int n = 0; n < ND; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;  // running max / partial sums

  int k0 = next_tile(0), buf = 0;
  if (k0 < kv_len) fetch(0, k0);
  while (k0 < kv_len) {
    const int next = next_tile(k0 + BK);
    __syncthreads();  // every warp is done with buffer buf ^ 1
    if (next < kv_len) {
      fetch(buf ^ 1, next);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // tile k0 is in buffer buf for every thread
    const int k1 = min(kv_len, k0 + BK);
    const tile kind = wa < wb ? mask.tile_kind(b, wa, wb, k0, k1) : tile::empty;
    if (kind != tile::empty) {
      const T* kt = ks[buf];
      const T* vt = vs[buf];
      // S (16 x BK) = q K^T.
      float s[NS][4];
#pragma unroll
      for (int j = 0; j < NS; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
      for (int kd = 0; kd < KD; ++kd) {
#pragma unroll
        for (int j = 0; j < NS; j += 2) {
          unsigned r[4];  // K rows 8j .. 8j + 15 x head columns 16kd .. 16kd + 15
          ldmatrix_x4(r, kt + (8 * j + mrow + (mat >> 1) * 8) * LD + 16 * kd + (mat & 1) * 8);
          mma_16816<T>(s[j], qf[kd][0], qf[kd][1], qf[kd][2], qf[kd][3], r[0], r[1]);
          mma_16816<T>(s[j + 1], qf[kd][0], qf[kd][1], qf[kd][2], qf[kd][3], r[2], r[3]);
        }
      }
      // Mask, scale, running max.
      float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
      for (int j = 0; j < NS; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int key = k0 + 8 * j + 2 * tg + (e & 1), row = e < 2 ? r0 : r1;
          bool ok = key < k1 && row < g.tq;
          if (ok && kind == tile::partial) ok = mask.allowed(b, q_start + row, key);
          s[j][e] = ok ? s[j][e] * scale2 : -INFINITY;
        }
        mx0 = fmaxf(mx0, fmaxf(s[j][0], s[j][1]));
        mx1 = fmaxf(mx1, fmaxf(s[j][2], s[j][3]));
      }
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
      const float n0 = fmaxf(m0, mx0), n1 = fmaxf(m1, mx1);
      const float u0 = n0 == -INFINITY ? 0.0f : n0, u1 = n1 == -INFINITY ? 0.0f : n1;
      const float c0 = exp2f(m0 - u0), c1 = exp2f(m1 - u1);  // 0 while nothing was seen
      m0 = n0;
      m1 = n1;
      l0 *= c0;
      l1 *= c1;
#pragma unroll
      for (int n = 0; n < ND; ++n) {
        o[n][0] *= c0;
        o[n][1] *= c0;
        o[n][2] *= c1;
        o[n][3] *= c1;
      }
#pragma unroll
      for (int j = 0; j < NS; ++j) {
        s[j][0] = exp2f(s[j][0] - u0);
        s[j][1] = exp2f(s[j][1] - u0);
        s[j][2] = exp2f(s[j][2] - u1);
        s[j][3] = exp2f(s[j][3] - u1);
        l0 += s[j][0] + s[j][1];
        l1 += s[j][2] + s[j][3];
      }
      // O (16 x D) += P (16 x BK) V (BK x D); P's A fragments are the S fragments, 16 keys each.
#pragma unroll
      for (int kk = 0; kk < BK / 16; ++kk) {
        const unsigned p0 = pack2<T>(s[2 * kk][0], s[2 * kk][1]),
                       p1 = pack2<T>(s[2 * kk][2], s[2 * kk][3]),
                       p2 = pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                       p3 = pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
        for (int n = 0; n < ND; n += 2) {
          unsigned r[4];  // V rows 16kk .. 16kk + 15 x columns 8n .. 8n + 15, transposed
          ldmatrix_x4_trans(r, vt + (16 * kk + mrow + (mat & 1) * 8) * LD + 8 * n + (mat >> 1) * 8);
          mma_16816<T>(o[n], p0, p1, p2, p3, r[0], r[1]);
          mma_16816<T>(o[n + 1], p0, p1, p2, p3, r[2], r[3]);
        }
      }
    }
    buf ^= 1;
    k0 = next;
  }

  // Row sums over the 4 threads of a row, then out = O / l.
  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  const float i0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, i1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
  T* obase = out + b * g.ob + hi * g.oh + 2 * tg;
#pragma unroll
  for (int n = 0; n < ND; ++n) {
    if (r0 < g.tq)
      *reinterpret_cast<unsigned*>(obase + r0 * g.ot + 8 * n) =
          pack2<T>(o[n][0] * i0, o[n][1] * i0);
    if (r1 < g.tq)
      *reinterpret_cast<unsigned*>(obase + r1 * g.ot + 8 * n) =
          pack2<T>(o[n][2] * i1, o[n][3] * i1);
  }
}

// Whether the tensor-core kernel takes a call: 16-bit elements, D of 64 or 128, K / V rows 16-byte
// aligned (kv_aligned), q and out pairs 4-byte aligned.
template <class T>
bool prefill_tc_fits(const attn_geometry& g, bool kv_aligned, const void* q, const void* out) {
  if constexpr (std::is_same_v<T, float>) {
    return false;
  } else {
    const bool even = g.qb % 2 == 0 && g.qt % 2 == 0 && g.qh % 2 == 0 && g.ob % 2 == 0 &&
                      g.ot % 2 == 0 && g.oh % 2 == 0;
    return (g.d == 64 || g.d == 128) && kv_aligned && even && pointer_alignment(q) >= 4 &&
           pointer_alignment(out) >= 4;
  }
}

template <class T, class M>
void launch_prefill_tc(const context<cuda>& ctx, T* out, const T* q, const T* keys, const T* values,
                       const M& mask, const attn_geometry& g) {
  const dim3 grid(unsigned((g.tq + prefill_tc_bq - 1) / prefill_tc_bq), unsigned(g.h),
                  unsigned(g.b));
  if (g.d == 64)
    launch(ctx, "attention (prefill, tensor cores)", attention_prefill_tc_kernel<T, M, 64>, grid,
           dim3(prefill_tc_threads), 0, out, q, keys, values, mask, g, ctx.slot_shift);
  else
    launch(ctx, "attention (prefill, tensor cores)", attention_prefill_tc_kernel<T, M, 128>, grid,
           dim3(prefill_tc_threads), 0, out, q, keys, values, mask, g, ctx.slot_shift);
}

}  // namespace crossbatch::cuda_detail
