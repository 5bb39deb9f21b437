// The CPU attention kernel behind attention() (attention/attention.hpp): one work unit is a set of
// query rows that share a KV head (the grouped heads of some query tokens of one sequence), so
// every key and value row is read, and widened from 16 bits, once for all of them.
//   pass 1: scores s[r][k] = (q_r . k_k) * scale for the key blocks the mask does not report empty,
//           16 keys at a time (16 accumulators, one transposing horizontal sum); masked keys -inf;
//   softmax of each row over its own visible key range (vectorised exp, float sums);
//   pass 2: out_r = sum_k p[r][k] v_k over the same blocks, keys with p == 0 skipped (masked slots
//           are never read into a sum, as before).
// Decode over a long context runs one unit per key split instead (unnormalised exp(s - m), their
// sum l and the weighted sum, per row), merged by merge_splits with the usual max rescaling.
// Every row's arithmetic depends only on that row and the key blocks, not on which rows share its
// unit, so the result is the same for any thread count. AVX-512 when the compiler targets it
// (gemv.hpp's loads and conversions), plain loops otherwise.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "crossbatch/attention/mask.hpp"
#include "crossbatch/core/tensor.hpp"
#include "crossbatch/ops/cpu/gemv.hpp"

#ifdef CROSSBATCH_GEMV_AVX512
#include <Eigen/Core>  // Eigen::internal::pexp<Packet16f>
#endif

namespace crossbatch::cpu_detail {

inline constexpr int key_tile = 16;  // keys per score/weighted-sum step

#ifdef CROSSBATCH_GEMV_AVX512
inline __mmask16 first_lanes(index_t n) {
  return n >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << n) - 1);
}

// The 16 horizontal sums of a[0..15], in order, as one vector (45 shuffles/adds instead of 16
// separate reductions).
inline __m512 sum16(const __m512* a) {
  __m512 b[8], c[4], d[2];
  for (int i = 0; i < 8; ++i)  // per 128-bit lane: [x0+x2, y0+y2, x1+x3, y1+y3]
    b[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]),
                         _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
  for (int i = 0; i < 4; ++i)  // per 128-bit lane: the lane's sums of keys 4i .. 4i+3
    c[i] = _mm512_add_ps(_mm512_shuffle_ps(b[2 * i], b[2 * i + 1], 0x44),
                         _mm512_shuffle_ps(b[2 * i], b[2 * i + 1], 0xEE));
  for (int i = 0; i < 2; ++i)
    d[i] = _mm512_add_ps(_mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  return _mm512_add_ps(_mm512_shuffle_f32x4(d[0], d[1], _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(d[0], d[1], _MM_SHUFFLE(3, 1, 3, 1)));
}
#endif

// dst[0, d) = float(src[0, d)).
template <class T>
inline void widen_row(const T* src, index_t d, float* dst) {
#ifdef CROSSBATCH_GEMV_AVX512
  index_t j = 0;
  for (; j + 16 <= d; j += 16) _mm512_storeu_ps(dst + j, load16(src + j));
  if (j < d) {
    const __mmask16 m = first_lanes(d - j);
    _mm512_mask_storeu_ps(dst + j, m, load16(src + j, m));
  }
#else
  for (index_t j = 0; j < d; ++j) dst[j] = weight_to_float(src[j]);
#endif
}

// n <= 16 rows (`stride` elements apart, d wide) as 16 float rows: a full tile of float rows is
// used in place; otherwise the rows are widened into buf (16 x d) and rows n..15 zeroed. Returns
// the rows and sets their stride.
template <class T>
inline const float* float_tile(const T* rows, index_t stride, int n, index_t d, float* buf,
                               index_t& tile_stride) {
  if constexpr (std::is_same_v<T, float>) {
    if (n == key_tile) {
      tile_stride = stride;
      return rows;
    }
  }
  tile_stride = d;
  for (int i = 0; i < n; ++i) widen_row(rows + i * stride, d, buf + i * d);
  std::fill(buf + n * d, buf + key_tile * d, 0.0f);
  return buf;
}

// s[i] = (q . k_i) * scale for the first n of the 16 tile rows k_i (stride ks, d wide).
inline void scores16(const float* q, const float* k, index_t ks, index_t d, float scale, int n,
                     float* s) {
#ifdef CROSSBATCH_GEMV_AVX512
  __m512 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_setzero_ps();
  index_t j = 0;
  for (; j + 16 <= d; j += 16) {
    const __m512 qv = _mm512_loadu_ps(q + j);
    for (int i = 0; i < 16; ++i)
      acc[i] = _mm512_fmadd_ps(_mm512_loadu_ps(k + i * ks + j), qv, acc[i]);
  }
  if (j < d) {
    const __mmask16 m = first_lanes(d - j);
    const __m512 qv = _mm512_maskz_loadu_ps(m, q + j);
    for (int i = 0; i < 16; ++i)
      acc[i] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, k + i * ks + j), qv, acc[i]);
  }
  _mm512_mask_storeu_ps(s, first_lanes(n), _mm512_mul_ps(sum16(acc), _mm512_set1_ps(scale)));
#else
  for (int i = 0; i < n; ++i) {
    const float* ki = k + i * ks;
    float a = 0;
    for (index_t j = 0; j < d; ++j) a += q[j] * ki[j];
    s[i] = a * scale;
  }
#endif
}

// acc[0, d) += p[i] v_i for the tile rows i < n with p[i] != 0 (v stride vs).
inline void weighted_sum(const float* p, int n, const float* v, index_t vs, index_t d, float* acc) {
#ifdef CROSSBATCH_GEMV_AVX512
  for (index_t j = 0; j < d; j += 64) {  // up to four accumulators held across the keys
    const index_t w = std::min<index_t>(64, d - j);
    const int chunks = int((w + 15) / 16);
    const __mmask16 last = first_lanes(w - 16 * (chunks - 1));
    __m512 a[4];
    for (int c = 0; c < 4; ++c)
      a[c] = c < chunks ? _mm512_maskz_loadu_ps(c + 1 < chunks ? 0xffff : last, acc + j + 16 * c)
                        : _mm512_setzero_ps();
    for (int i = 0; i < n; ++i) {
      if (p[i] == 0.0f) continue;
      const __m512 pv = _mm512_set1_ps(p[i]);
      const float* vi = v + i * vs + j;
      if (chunks == 4) {
        for (int c = 0; c < 3; ++c) a[c] = _mm512_fmadd_ps(pv, _mm512_loadu_ps(vi + 16 * c), a[c]);
        a[3] = _mm512_fmadd_ps(pv, _mm512_maskz_loadu_ps(last, vi + 48), a[3]);
      } else {
        for (int c = 0; c < chunks; ++c)
          a[c] = _mm512_fmadd_ps(
              pv, _mm512_maskz_loadu_ps(c + 1 < chunks ? 0xffff : last, vi + 16 * c), a[c]);
      }
    }
    for (int c = 0; c < chunks; ++c)
      _mm512_mask_storeu_ps(acc + j + 16 * c, c + 1 < chunks ? 0xffff : last, a[c]);
  }
#else
  for (int i = 0; i < n; ++i) {
    if (p[i] == 0.0f) continue;
    const float* vi = v + i * vs;
    for (index_t j = 0; j < d; ++j) acc[j] += p[i] * vi[j];
  }
#endif
}

// x[i] = exp(x[i] - m) for i < n (-inf entries give exactly 0, where Eigen's exp would give a
// tiny positive value); returns their float sum. Vectorised with Eigen's exp.
inline float exp_shifted(float* x, index_t n, float m) {
  constexpr float ninf = -std::numeric_limits<float>::infinity();
#ifdef CROSSBATCH_GEMV_AVX512
  const __m512 mv = _mm512_set1_ps(m), nv = _mm512_set1_ps(ninf);
  __m512 sum = _mm512_setzero_ps();
  for (index_t j = 0; j < n; j += 16) {
    const __mmask16 lanes = first_lanes(n - j);
    const __m512 v = _mm512_mask_loadu_ps(nv, lanes, x + j);
    const __mmask16 live = _mm512_cmp_ps_mask(v, nv, _CMP_NEQ_OQ);
    const __m512 e = _mm512_maskz_mov_ps(live, Eigen::internal::pexp(_mm512_sub_ps(v, mv)));
    _mm512_mask_storeu_ps(x + j, lanes, e);
    sum = _mm512_add_ps(sum, e);
  }
  return _mm512_reduce_add_ps(sum);
#else
  float s = 0;
  for (index_t i = 0; i < n; ++i) s += (x[i] = x[i] == ninf ? 0.0f : std::exp(x[i] - m));
  return s;
#endif
}

inline float max_of(const float* x, index_t n) {
  float m = -std::numeric_limits<float>::infinity();
  for (index_t i = 0; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

// Softmax of x[0, n) in place as softmax_row (ops/cpu/softmax.hpp): max subtracted, -inf entries
// get 0, an all -inf row becomes zeros.
inline void softmax_span(float* x, index_t n) {
  const float m = max_of(x, n);
  if (m == -std::numeric_limits<float>::infinity()) {
    std::fill(x, x + n, 0.0f);
    return;
  }
  const float inv = 1.0f / exp_shifted(x, n, m);
#ifdef CROSSBATCH_GEMV_AVX512
  const __m512 iv = _mm512_set1_ps(inv);
  for (index_t j = 0; j < n; j += 16) {
    const __mmask16 lanes = first_lanes(n - j);
    _mm512_mask_storeu_ps(x + j, lanes, _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes, x + j), iv));
  }
#else
  for (index_t i = 0; i < n; ++i) x[i] *= inv;
#endif
}

// Per-thread scratch, kept between calls (pool threads live for the process).
struct attention_scratch {
  std::vector<float> q, scores, acc, tile_buf;
  std::vector<int> lo, hi;
  std::vector<tile> kinds;
  static attention_scratch& local() {
    static thread_local attention_scratch s;
    return s;
  }
};

// A row's partial result over one key split (decode): running max m, sum of exp(s - m) l, and
// acc[d] = sum exp(s - m) v. The splits of a row are merged by merge_splits.
inline index_t split_floats(index_t d) { return d + 2; }  // [m, l, acc...]

// One work unit: query tokens [t0, t1) x the heads [h0, h1) of KV head kvh's group, sequence bi,
// over the key blocks [kb0, kb1). q, out (B, Tq, H, D); keys, values (B, Hkv, S, D) with unit
// stride along D; probs (B, H, Tq, kv_len) or empty. With `partial`, the unit covers one key split
// and writes each row's (m, l, acc) there (row r at r * partial_stride) instead of out and probs.
template <class T, class M>
void attention_unit(tensor_view<T> out, tensor_view<const T> q, tensor_view<const T> keys,
                    tensor_view<const T> values, const M& mask, int q_start, int kv_len,
                    float scale, int block, tensor_view<float> probs, index_t bi, index_t kvh,
                    index_t t0, index_t t1, index_t h0, index_t h1, int kb0, int kb1,
                    float* partial = nullptr, index_t partial_stride = 0) {
  constexpr float ninf = -std::numeric_limits<float>::infinity();
  const index_t d = q.shape[3], group = q.shape[2] / keys.shape[1];
  const index_t nh = h1 - h0, rows = (t1 - t0) * nh;
  const index_t sstride = (index_t(kv_len) + 15) / 16 * 16;
  const int s = int(bi);
  auto& w = attention_scratch::local();
  w.q.resize(rows * d);
  w.scores.resize(rows * sstride);
  w.acc.assign(rows * d, 0.0f);
  w.tile_buf.resize(key_tile * d);
  w.lo.resize(rows);
  w.hi.resize(rows);
  w.kinds.resize(kb1);
  // Row r = (token t0 + r / nh, head kvh * group + h0 + r % nh).
  const auto head = [&](index_t r) { return kvh * group + h0 + r % nh; };
  const auto token = [&](index_t r) { return t0 + r / nh; };
  for (index_t r = 0; r < rows; ++r) {
    const T* qr = &q(bi, token(r), head(r), 0);
    if (q.strides[3] == 1)
      widen_row(qr, d, &w.q[r * d]);
    else
      for (index_t j = 0; j < d; ++j) w.q[r * d + j] = weight_to_float(q(bi, token(r), head(r), j));
    std::fill_n(&w.scores[r * sstride], kv_len, ninf);
    // The row's own visible key range, by its own tile kinds (independent of the unit).
    const int qs = q_start + int(token(r));
    w.lo[r] = kv_len, w.hi[r] = 0;
    for (int kb = kb0; kb < kb1; ++kb) {
      const int k0 = kb * block, k1 = std::min(kv_len, k0 + block);
      if (mask.tile_kind(s, qs, qs + 1, k0, k1) == tile::empty) continue;
      w.lo[r] = std::min(w.lo[r], k0), w.hi[r] = k1;
    }
  }
  const int qs0 = q_start + int(t0), qs1 = q_start + int(t1);
  index_t ts = 0;
  // Pass 1: scores.
  for (int kb = kb0; kb < kb1; ++kb) {
    const int k0 = kb * block, k1 = std::min(kv_len, k0 + block);
    const tile kind = w.kinds[kb] = mask.tile_kind(s, qs0, qs1, k0, k1);
    if (kind == tile::empty) continue;
    for (int c0 = k0; c0 < k1; c0 += key_tile) {
      const int n = std::min(key_tile, k1 - c0);
      const float* kt =
          float_tile(&keys(bi, kvh, c0, 0), keys.strides[2], n, d, w.tile_buf.data(), ts);
      for (index_t r = 0; r < rows; ++r)
        scores16(&w.q[r * d], kt, ts, d, scale, n, &w.scores[r * sstride + c0]);
    }
    if (kind == tile::partial)
      for (index_t r = 0; r < rows; ++r) {
        const int qs = q_start + int(token(r));
        float* sr = &w.scores[r * sstride];
        for (int k = k0; k < k1; ++k)
          if (!mask.allowed(s, qs, k)) sr[k] = ninf;
      }
  }
  // Softmax over each row's visible range (a split: exp(s - m), unnormalised); outside it every
  // probability is 0.
  for (index_t r = 0; r < rows; ++r) {
    float* sr = &w.scores[r * sstride];
    if (partial) {
      float* pr = partial + r * partial_stride;
      pr[0] = -std::numeric_limits<float>::infinity(), pr[1] = 0;
      if (w.lo[r] < w.hi[r]) {
        pr[0] = max_of(sr + w.lo[r], w.hi[r] - w.lo[r]);
        if (pr[0] == ninf)
          std::fill(sr + w.lo[r], sr + w.hi[r], 0.0f);
        else
          pr[1] = exp_shifted(sr + w.lo[r], w.hi[r] - w.lo[r], pr[0]);
      }
    } else {
      if (w.lo[r] < w.hi[r]) softmax_span(sr + w.lo[r], w.hi[r] - w.lo[r]);
      std::fill(sr, sr + std::min(w.lo[r], kv_len), 0.0f);
      std::fill(sr + std::max(w.hi[r], w.lo[r]), sr + kv_len, 0.0f);
    }
  }
  // Pass 2: weighted sums of the values.
  for (int kb = kb0; kb < kb1; ++kb) {
    if (w.kinds[kb] == tile::empty) continue;
    const int k0 = kb * block, k1 = std::min(kv_len, k0 + block);
    for (int c0 = k0; c0 < k1; c0 += key_tile) {
      const int n = std::min(key_tile, k1 - c0);
      const float* vt =
          float_tile(&values(bi, kvh, c0, 0), values.strides[2], n, d, w.tile_buf.data(), ts);
      for (index_t r = 0; r < rows; ++r)
        weighted_sum(&w.scores[r * sstride + c0], n, vt, ts, d, &w.acc[r * d]);
    }
  }
  if (partial) {
    for (index_t r = 0; r < rows; ++r)
      std::copy_n(&w.acc[r * d], d, partial + r * partial_stride + 2);
    return;
  }
  for (index_t r = 0; r < rows; ++r) {
    const index_t ti = token(r), hi = head(r);
    for (index_t j = 0; j < d; ++j) out(bi, ti, hi, j) = static_cast<T>(w.acc[r * d + j]);
    if (probs.data)
      for (int k = 0; k < kv_len; ++k) probs(bi, hi, ti, k) = w.scores[r * sstride + k];
  }
}

// out[0, d) = the softmax-weighted sum of one row from its key splits' (m, l, acc) (splits x
// split_floats(d), `stride` floats apart): sum_s exp(m_s - M) acc_s / sum_s exp(m_s - M) l_s with
// M the largest m_s; zeros when no split saw a key.
template <class T>
void merge_splits(const float* parts, index_t splits, index_t stride, index_t d, T* out,
                  index_t out_stride) {
  float m = -std::numeric_limits<float>::infinity();
  for (index_t i = 0; i < splits; ++i) m = std::max(m, parts[i * stride]);
  std::vector<float> acc(d, 0.0f);
  float l = 0;
  if (m != -std::numeric_limits<float>::infinity())
    for (index_t i = 0; i < splits; ++i) {
      const float* p = parts + i * stride;
      if (p[1] == 0.0f) continue;
      const float wgt = std::exp(p[0] - m);
      l += wgt * p[1];
      for (index_t j = 0; j < d; ++j) acc[j] += wgt * p[2 + j];
    }
  const float inv = l > 0 ? 1.0f / l : 0.0f;
  for (index_t j = 0; j < d; ++j) out[j * out_stride] = static_cast<T>(acc[j] * inv);
}

}  // namespace crossbatch::cpu_detail
