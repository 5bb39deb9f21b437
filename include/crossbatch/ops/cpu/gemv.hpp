// Small-batch GEMV for CPU decode: y (N, O) = x (N, I) W (O, I)^T for N <= 16, W in float32,
// bfloat16 or float16 (widened to float in registers), x and y in float, accumulation in float;
// on cores with AVX512_BF16, bfloat16 W against bfloat16 x by vdpbf16ps instead (no widening).
// Batch-1 decode reads every weight once per token, so the kernel is a single sequential stream:
// one W row at a time (four concurrent row streams measured 32 GB/s where one stream reaches the
// core's 38-40 GB/s), dotted with up to four x rows per pass while it sits in L1. AVX-512 with
// F16C-style conversions (vcvtph2ps, bf16 by a 16-bit shift) when the compiler targets it
// (-march=native on an AVX-512 machine), a portable `omp simd` loop otherwise.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>

#include "crossbatch/core/dtype.hpp"
#include "crossbatch/core/tensor.hpp"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && !defined(__CUDACC__)
#include <immintrin.h>
#define CROSSBATCH_GEMV_AVX512 1
#if defined(__AVX512BF16__) && !defined(CROSSBATCH_NO_BF16_DOT)  // the latter for A/B runs
#define CROSSBATCH_GEMV_BF16_DOT 1  // bfloat16 x against bfloat16 W by vdpbf16ps
#endif
#endif

namespace crossbatch::cpu_detail {

// The float value of one stored weight (portable path).
template <class W>
inline float weight_to_float(W w) {
  if constexpr (std::is_same_v<W, float>) {
    return w;
  } else if constexpr (std::is_same_v<W, bfloat16>) {
    const std::uint32_t bits = std::uint32_t(Eigen::numext::bit_cast<std::uint16_t>(w)) << 16;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  } else {
    return static_cast<float>(w);
  }
}

#ifdef CROSSBATCH_GEMV_AVX512
// 16 consecutive weights as 16 floats; the masked form reads only the lanes in m.
template <class W>
inline __m512 load16(const W* p) {
  if constexpr (std::is_same_v<W, float>) {
    return _mm512_loadu_ps(p);
  } else {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    if constexpr (std::is_same_v<W, bfloat16>)
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
    else
      return _mm512_cvtph_ps(v);
  }
}
template <class W>
inline __m512 load16(const W* p, __mmask16 m) {
  if constexpr (std::is_same_v<W, float>) {
    return _mm512_maskz_loadu_ps(m, p);
  } else {
    const __m256i v = _mm256_maskz_loadu_epi16(m, p);
    if constexpr (std::is_same_v<W, bfloat16>)
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
    else
      return _mm512_cvtph_ps(v);
  }
}
#endif

// out[k] = w . x[k] for k < K: one weight row (in elements) against K float rows.
template <int K, class W>
inline void dot_row(const W* w, const float* const* x, index_t in, float* out) {
#ifdef CROSSBATCH_GEMV_AVX512
  constexpr int U = K == 1 ? 4 : 2;  // vectors per step: independent FMA chains
  __m512 acc[K][U];
  for (int k = 0; k < K; ++k)
    for (int u = 0; u < U; ++u) acc[k][u] = _mm512_setzero_ps();
  index_t j = 0;
  for (; j + 16 * U <= in; j += 16 * U)
    for (int u = 0; u < U; ++u) {
      const __m512 wv = load16(w + j + 16 * u);
      for (int k = 0; k < K; ++k)
        acc[k][u] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x[k] + j + 16 * u), acc[k][u]);
    }
  for (; j + 16 <= in; j += 16) {
    const __m512 wv = load16(w + j);
    for (int k = 0; k < K; ++k)
      acc[k][0] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x[k] + j), acc[k][0]);
  }
  if (j < in) {
    const __mmask16 m = static_cast<__mmask16>((1u << (in - j)) - 1);
    const __m512 wv = load16(w + j, m);
    for (int k = 0; k < K; ++k)
      acc[k][0] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x[k] + j), acc[k][0]);
  }
  for (int k = 0; k < K; ++k) {
    __m512 s = acc[k][0];
    for (int u = 1; u < U; ++u) s = _mm512_add_ps(s, acc[k][u]);
    out[k] = _mm512_reduce_add_ps(s);
  }
#else
  for (int k = 0; k < K; ++k) {
    const float* xk = x[k];
    float a = 0;
#pragma omp simd reduction(+ : a)
    for (index_t j = 0; j < in; ++j) a += weight_to_float(w[j]) * xk[j];
    out[k] = a;
  }
#endif
}

// out[k] = w . x[k] for k < K, K > 1: each weight vector is loaded once and multiplied into
// the K rows of x held in registers, one accumulator per row.
template <int K, class W>
inline void dot_rows(const W* w, const float* const* x, index_t in, float* out) {
#ifdef CROSSBATCH_GEMV_AVX512
  __m512 acc[K];
  for (int k = 0; k < K; ++k) acc[k] = _mm512_setzero_ps();
  index_t j = 0;
  for (; j + 16 <= in; j += 16) {
    const __m512 wv = load16(w + j);
    for (int k = 0; k < K; ++k) acc[k] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x[k] + j), acc[k]);
  }
  if (j < in) {
    const __mmask16 m = static_cast<__mmask16>((1u << (in - j)) - 1);
    const __m512 wv = load16(w + j, m);
    for (int k = 0; k < K; ++k)
      acc[k] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x[k] + j), acc[k]);
  }
  for (int k = 0; k < K; ++k) out[k] = _mm512_reduce_add_ps(acc[k]);
#else
  dot_row<K>(w, x, in, out);
#endif
}

#ifdef CROSSBATCH_GEMV_BF16_DOT
// out[k] = w . x[k] for k < K, weights and x both bfloat16: vdpbf16ps multiplies 32 pairs exactly
// (8-bit significands) and adds them to 16 float lanes, so a weight is used as stored, with no
// widening, and x is read at half the bytes. The same float sums as dot_rows up to the order of
// the additions (and subnormal products flushed to zero).
template <int K>
inline void dot_rows_bf16(const bfloat16* w, const bfloat16* const* x, index_t in, float* out) {
  constexpr int U = K == 1 ? 2 : 1;  // vectors per step: independent accumulation chains
  __m512 acc[K][U];
  for (int k = 0; k < K; ++k)
    for (int u = 0; u < U; ++u) acc[k][u] = _mm512_setzero_ps();
  auto pairs = [](const bfloat16* p) { return (__m512bh)_mm512_loadu_si512(p); };
  index_t j = 0;
  for (; j + 32 * U <= in; j += 32 * U)
    for (int u = 0; u < U; ++u) {
      const __m512bh wv = pairs(w + j + 32 * u);
      for (int k = 0; k < K; ++k)
        acc[k][u] = _mm512_dpbf16_ps(acc[k][u], wv, pairs(x[k] + j + 32 * u));
    }
  for (; j + 32 <= in; j += 32) {
    const __m512bh wv = pairs(w + j);
    for (int k = 0; k < K; ++k) acc[k][0] = _mm512_dpbf16_ps(acc[k][0], wv, pairs(x[k] + j));
  }
  if (j < in) {  // masked lanes load as +0
    const __mmask32 m = static_cast<__mmask32>((std::uint64_t(1) << (in - j)) - 1);
    const __m512bh wv = (__m512bh)_mm512_maskz_loadu_epi16(m, w + j);
    for (int k = 0; k < K; ++k)
      acc[k][0] = _mm512_dpbf16_ps(acc[k][0], wv, (__m512bh)_mm512_maskz_loadu_epi16(m, x[k] + j));
  }
  for (int k = 0; k < K; ++k) {
    __m512 s = acc[k][0];
    for (int u = 1; u < U; ++u) s = _mm512_add_ps(s, acc[k][u]);
    out[k] = _mm512_reduce_add_ps(s);
  }
}
#endif

// Whether gemv_rows takes x in the weights' own 16-bit type (bfloat16 with vdpbf16ps) rather than
// in float: linear() then skips widening x.
template <class W>
inline constexpr bool gemv_native_x =
#ifdef CROSSBATCH_GEMV_BF16_DOT
    std::is_same_v<W, bfloat16>;
#else
    false;
#endif

// out[k] = w . x[k] for k < K by the kernel for x's type: float x through dot_row (one row) or
// dot_rows, bfloat16 x through dot_rows_bf16.
template <int K, class W, class X>
inline void dot_group(const W* w, const X* const* x, index_t in, float* out) {
  if constexpr (!std::is_same_v<X, float>) {
#ifdef CROSSBATCH_GEMV_BF16_DOT
    dot_rows_bf16<K>(w, x, in, out);
#endif
  } else if constexpr (K == 1) {
    dot_row<1>(w, x, in, out);
  } else {
    dot_rows<K>(w, x, in, out);
  }
}

// Asks for one weight row's cache lines ahead of their use (see gemv_rows).
template <class W>
inline void prefetch_row([[maybe_unused]] const W* row, [[maybe_unused]] index_t in) {
#ifdef CROSSBATCH_GEMV_AVX512
  const char* p = reinterpret_cast<const char*>(row);
  for (index_t b = 0; b < in * index_t(sizeof(W)); b += 64) _mm_prefetch(p + b, _MM_HINT_T0);
#endif
}

// Whether gemv_rows prefetches weight rows: on Intel cores, where it pays (below), and not on
// others: on the AMD EPYC dev machine (Zen 4) it costs 5-40 % (SmolLM2-135M decode, same minute,
// one / two threads without it: bfloat16 47.1 -> 65.8 / 57.6 -> 81.1 tok/s, float32 33.6 -> 35.7
// / 44.0 -> 45.2).
// CROSSBATCH_GEMV_PREFETCH=0 / 1 in the environment overrides the choice (benchmarks).
inline bool prefetch_weight_rows() {
  static const bool on = [] {
    if (const char* e = std::getenv("CROSSBATCH_GEMV_PREFETCH")) return std::string(e) != "0";
#if defined(__GNUC__) && !defined(__CUDACC__) && (defined(__x86_64__) || defined(__i386__))
    return __builtin_cpu_is("intel") != 0;
#else
    return false;
#endif
  }();
  return on;
}

// y(i, r) = W_r . x_i for rows r in [r0, r1) of W (row stride w_stride) and every row i < n of
// x (row stride x_stride); y has row stride y_stride. All float except W. One weight row at a
// time (a single sequential stream), dotted with up to four x rows per pass; for more than four
// x rows the rows [r0, r1) are passed over once per group of four (callers pass blocks of about
// 64 KiB of W, which the later passes find in L2: measured 1.8x faster at N = 16 than cycling
// all groups over each row). On Intel cores (prefetch_weight_rows) weight rows are prefetched
// about 4 KiB ahead: the hardware prefetcher alone leaves the stream short where widening 16-bit
// weights doubles the instructions per byte (Intel Xeon dev machine, one thread, 1.2 GB of bf16
// rows: 7.5 GB/s without, 10.1 GB/s with) and
// at the start of each matrix (float32 SmolLM2 decode +5 % on one thread, +10 % on two, though a
// single long float32 stream gains nothing).
// X is float, or W itself where gemv_native_x<W> (bfloat16 rows dotted by dot_rows_bf16).
template <class W, class X = float>
void gemv_rows(const W* w, index_t w_stride, index_t in, const X* x, index_t x_stride, index_t n,
               float* y, index_t y_stride, index_t r0, index_t r1) {
  static_assert(std::is_same_v<X, float> || (std::is_same_v<X, W> && gemv_native_x<W>),
                "gemv_rows: x is float, or bfloat16 against bfloat16 weights with vdpbf16ps");
  const X* xs[4];
  float out[4];
  const index_t ahead = std::max<index_t>(1, 4096 / std::max<index_t>(1, in * index_t(sizeof(W))));
  const bool prefetch = prefetch_weight_rows();
  for (index_t i = 0; i < n; i += 4) {
    const int k = int(std::min<index_t>(4, n - i));
    for (int q = 0; q < k; ++q) xs[q] = x + (i + q) * x_stride;
    for (index_t r = r0; r < r1; ++r) {
      const W* wr = w + r * w_stride;
      if (prefetch && r + ahead < r1) prefetch_row(w + (r + ahead) * w_stride, in);
      switch (k) {
        case 4:
          dot_group<4>(wr, xs, in, out);
          break;
        case 3:
          dot_group<3>(wr, xs, in, out);
          break;
        case 2:
          dot_group<2>(wr, xs, in, out);
          break;
        default:
          dot_group<1>(wr, xs, in, out);
          break;
      }
      for (int q = 0; q < k; ++q) y[(i + q) * y_stride + r] = out[q];
    }
  }
}

}  // namespace crossbatch::cpu_detail
