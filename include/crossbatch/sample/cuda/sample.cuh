// Sampling on the GPU, one block per row of logits (B, V), with the CPU samplers' semantics
// (sample/sampler.hpp, filters.hpp): greedy = first maximum; sampling_params = temperature, then
// top-k (ties with the k-th kept), top-p (HF nucleus: drop ascending tokens while the cumulative
// probability stays <= 1 - p), min-p, then an inverse-CDF draw in id order with
// u = counter_rng.uniform(stream = streams[b] or b, counter = step). No sorting: each filter is a
// threshold on the logit, found by bisection over the order-preserving integer image of the
// floats, every count and mass a fixed-order block reduction, so a seed gives the same ids run
// after run. Ids can differ from the CPU's only where float summation order moves a boundary.
// Under graph replay the step is shifted by *context<cuda>::slot_shift like the slots.
#pragma once

#include <cstdint>
#include <cub/block/block_scan.cuh>

#include "crossbatch/core/rng.hpp"
#include "crossbatch/ops/cuda/common.cuh"
#include "crossbatch/sample/sampler.hpp"

namespace crossbatch {
namespace cuda_detail {

constexpr int sample_threads = 1024;

// Order-preserving map float -> uint32 (larger float, larger key) and back.
__device__ __forceinline__ std::uint32_t float_key(float f) {
  const std::uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float key_float(std::uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

template <class T>
__global__ void __launch_bounds__(1024)
    argmax_kernel(std::int32_t* ids, const T* logits, index_t stride, int v) {
  grid_dependency();
  __shared__ float sv[32];
  __shared__ int si[32];
  const T* row = logits + blockIdx.x * stride;
  float best = -INFINITY;
  int bi = v;  // first maximum: smallest index among equals
  for (int j = threadIdx.x; j < v; j += blockDim.x) {
    const float x = to_f(row[j]);
    if (x > best || (bi == v && x == best)) {
      best = x;
      bi = j;
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, best, o);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (ov > best || (ov == best && oi < bi)) {
      best = ov;
      bi = oi;
    }
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    sv[warp] = best;
    si[warp] = bi;
  }
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x >> 5;
    best = lane < warps ? sv[lane] : -INFINITY;
    bi = lane < warps ? si[lane] : v;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, best, o);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (ov > best || (ov == best && oi < bi)) {
        best = ov;
        bi = oi;
      }
    }
    if (lane == 0) ids[blockIdx.x] = bi < v ? bi : 0;
  }
}

struct sample_settings {
  float temperature;
  int top_k;
  float top_p, min_p;
};

// Smallest key t in [key(-inf), key(+inf)] with pred(t) true, by bisection, for a predicate
// monotone in t (false...true) and true at +inf. Every thread gets the same answer.
template <class P>
__device__ std::uint32_t lowest_key(P pred) {
  std::uint32_t lo = float_key(-INFINITY), hi = float_key(INFINITY);
  while (lo < hi) {
    const std::uint32_t mid = lo + (hi - lo) / 2;
    if (pred(mid))
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

template <class T>
__global__ void __launch_bounds__(1024)
    sample_kernel(std::int32_t* ids, const T* logits, index_t stride, int v, sample_settings s,
                  counter_rng rng, std::uint64_t step, const int* shift,
                  const std::uint64_t* streams) {
  grid_dependency();
  using scan = cub::BlockScan<float, sample_threads>;
  __shared__ typename scan::TempStorage scan_storage;
  __shared__ float red[32];
  __shared__ int chosen;
  const T* row = logits + blockIdx.x * stride;
  auto x_at = [&](int j) { return to_f(row[j]) / s.temperature; };
  float m = -INFINITY;
  for (int j = threadIdx.x; j < v; j += blockDim.x) m = fmaxf(m, x_at(j));
  m = block_max(m, red);

  // top-k: keep x >= the k-th largest value; the k-th is the largest t with count(x >= t) >= k,
  // i.e. one below the lowest t with count(x >= t) < k.
  float lo_x = -INFINITY;
  if (s.top_k > 0 && s.top_k < v) {
    const std::uint32_t first_short = lowest_key([&](std::uint32_t t) {
      const float tf = key_float(t);
      float c = 0;
      for (int j = threadIdx.x; j < v; j += blockDim.x) c += x_at(j) >= tf ? 1.0f : 0.0f;
      return block_sum(c, red) < float(s.top_k);
    });
    lo_x = key_float(first_short - 1);
  }
  // top-p on the top-k survivors: keep x_i with F(x_i) > 1 - p, F(t) = mass of survivors <= t
  // over their total; the lowest kept value is the lowest survivor value t with F(t) > 1 - p.
  if (s.top_p < 1.0f) {
    float z = 0;
    for (int j = threadIdx.x; j < v; j += blockDim.x) {
      const float x = x_at(j);
      if (x >= lo_x) z += expf(x - m);
    }
    z = block_sum(z, red);
    const float limit = (1.0f - s.top_p) * z;
    const float lo = lo_x;
    const std::uint32_t t = lowest_key([&](std::uint32_t k) {
      const float tf = key_float(k);
      float f = 0;
      for (int j = threadIdx.x; j < v; j += blockDim.x) {
        const float x = x_at(j);
        if (x >= lo && x <= tf) f += expf(x - m);
      }
      return block_sum(f, red) > limit;
    });
    lo_x = fmaxf(lo_x, key_float(t));
  }
  // min-p: probability >= p * max probability, i.e. exp(x - m) >= p.
  if (s.min_p > 0.0f) lo_x = fmaxf(lo_x, m + logf(s.min_p));
  lo_x = fminf(lo_x, m);  // the most likely token always stays

  // Inverse CDF in id order: thread i owns a contiguous chunk; scan the chunk masses.
  const int chunk = (v + blockDim.x - 1) / blockDim.x;
  const int j0 = threadIdx.x * chunk, j1 = min(v, j0 + chunk);
  float local = 0;
  for (int j = j0; j < j1; ++j) {
    const float x = x_at(j);
    if (x >= lo_x) local += expf(x - m);
  }
  float before = 0, total = 0;
  scan(scan_storage).ExclusiveSum(local, before, total);
  const std::uint64_t stream = streams ? streams[blockIdx.x] : std::uint64_t(blockIdx.x);
  const std::uint64_t counter = step + (shift ? std::uint64_t(*shift) : 0u);
  const float target = rng.uniform(stream, counter) * total;
  if (threadIdx.x == 0) chosen = -1;
  __syncthreads();
  if (local > 0 && target >= before && target < before + local) {
    float cum = before;
    int last = -1;
    for (int j = j0; j < j1; ++j) {
      const float x = x_at(j);
      if (x < lo_x) continue;
      cum += expf(x - m);
      last = j;
      if (target < cum) break;
    }
    chosen = last;
  }
  __syncthreads();
  if (threadIdx.x == 0 && chosen < 0) {
    // target beyond the rounded total: the last possible id.
    for (int j = v - 1; j >= 0; --j)
      if (x_at(j) >= lo_x) {
        chosen = j;
        break;
      }
  }
  __syncthreads();
  if (threadIdx.x == 0) ids[blockIdx.x] = chosen;
}

}  // namespace cuda_detail

// ids (B) = argmax of each row of logits (B, V), first maximum on ties.
template <class T>
void sample_greedy(const context<cuda>& ctx, tensor_view<const T, cuda> logits,
                   tensor_view<std::int32_t, cuda> ids) {
  require<shape_error>(logits.rank() == 2 && ids.size() == logits.shape[0] && ids.contiguous(),
                       "sample: logits (B, V) and ids (B) disagree");
  using namespace cuda_detail;
  launch(ctx, "sample (greedy)", argmax_kernel<cuda_t<T>>, dim3(unsigned(logits.shape[0])),
         dim3(sample_threads), 0, ids.data, dev(logits.data), row_stride(logits, "sample logits"),
         int(logits.shape[1]));
}

// ids (B) = one draw per row of logits (B, V) under sampling_params (greedy when !do_sample);
// row b uses stream streams[b] (or b) and counter `step` (+ *ctx.slot_shift under graph replay).
template <class T>
void sample(const context<cuda>& ctx, const sampling_params& p, tensor_view<const T, cuda> logits,
            tensor_view<std::int32_t, cuda> ids, const counter_rng& rng, std::uint64_t step,
            tensor_view<const std::uint64_t, cuda> streams = {}) {
  if (!p.do_sample) return sample_greedy(ctx, logits, ids);
  require(p.temperature > 0,
          "temperature must be > 0 (use greedy for 0), got " + std::to_string(p.temperature));
  require(p.top_k >= 0, "top_k must be >= 0, got " + std::to_string(p.top_k));
  require(p.top_p > 0 && p.top_p <= 1, "top_p must be in (0, 1], got " + std::to_string(p.top_p));
  require(p.min_p >= 0 && p.min_p <= 1, "min_p must be in [0, 1], got " + std::to_string(p.min_p));
  require<shape_error>(logits.rank() == 2 && ids.size() == logits.shape[0] && ids.contiguous(),
                       "sample: logits (B, V) and ids (B) disagree");
  require<shape_error>(!streams.data || streams.size() == ids.size(),
                       "sample: streams must be (B)");
  using namespace cuda_detail;
  const sample_settings s{p.temperature, p.top_k, p.top_p, p.min_p};
  launch(ctx, "sample", sample_kernel<cuda_t<T>>, dim3(unsigned(logits.shape[0])),
         dim3(sample_threads), 0, ids.data, dev(logits.data), row_stride(logits, "sample logits"),
         int(logits.shape[1]), s, rng, step, ctx.slot_shift, streams.data);
}

// The greedy sampler on the device.
template <class T>
void sample(const context<cuda>& ctx, const greedy&, tensor_view<const T, cuda> logits,
            tensor_view<std::int32_t, cuda> ids, const counter_rng&, std::uint64_t,
            tensor_view<const std::uint64_t, cuda> = {}) {
  sample_greedy(ctx, logits, ids);
}

}  // namespace crossbatch
