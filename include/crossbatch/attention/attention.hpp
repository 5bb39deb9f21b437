// Multi-head / grouped-query attention on the CPU over keys and values laid out (B, Hkv, S, D),
// under any mask policy. Key blocks that the policy reports empty are skipped; queries with no
// visible key (padding slots) produce zeros. The reference for the CUDA kernels.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "crossbatch/attention/mask.hpp"
#include "crossbatch/core/context.hpp"
#include "crossbatch/core/tensor.hpp"
#include "crossbatch/ops/cpu/softmax.hpp"

namespace crossbatch {

// Copies new keys/values (B, T, Hkv, D) into slots [start, start+T) of a cache layer (B, Hkv, S,
// D).
template <class T>
void write_kv(const context<cpu>&, tensor_view<T> cache, in_view<T> fresh, int start) {
  const index_t b = fresh.shape[0], t = fresh.shape[1], h = fresh.shape[2], d = fresh.shape[3];
  require<shape_error>(
      cache.shape[0] == b && cache.shape[1] == h && cache.shape[3] == d,
      "write_kv: cache " + to_string(cache.shape) + " vs new " + to_string(fresh.shape));
  require<value_error>(start + t <= cache.shape[2],
                       "write_kv: slots " + std::to_string(start) + "+" + std::to_string(t) +
                           " exceed the cache capacity " + std::to_string(cache.shape[2]));
  for (index_t i = 0; i < b; ++i)
    for (index_t j = 0; j < t; ++j)
      for (index_t k = 0; k < h; ++k)
        std::copy_n(&fresh(i, j, k, 0), d, &cache(i, k, start + j, 0));
}

struct attention_shape {
  int q_start = 0;  // slot of the first query
  int kv_len = 0;   // slots [0, kv_len) hold keys
  float scale = 1;  // usually 1/sqrt(D)
  int block = 64;   // key block size for tile skipping
};

// out (B, Tq, H, D) = softmax(q k^T * scale + mask) v, with q (B, Tq, H, D) and
// keys, values (B, Hkv, S, D); H must be a multiple of Hkv (grouped-query attention).
// probs, when given (B, H, Tq, kv_len), receives the attention probabilities.
template <class T, mask_policy M>
void attention(const context<cpu>&, tensor_view<T> out, in_view<T> q, in_view<T> keys,
               in_view<T> values, const M& mask, const attention_shape& a,
               tensor_view<float> probs = {}) {
  const index_t b = q.shape[0], tq = q.shape[1], h = q.shape[2], d = q.shape[3],
                hkv = keys.shape[1];
  require<shape_error>(q.rank() == 4 && keys.rank() == 4 && keys.shape == values.shape &&
                           keys.shape[0] == b && keys.shape[3] == d && h % hkv == 0 &&
                           out.shape == q.shape,
                       "attention: q " + to_string(q.shape) + ", keys " + to_string(keys.shape) +
                           ", out " + to_string(out.shape));
  require<value_error>(a.kv_len <= keys.shape[2], "attention: kv_len beyond the cache");
  require<shape_error>(!probs.data || probs.shape == shape_t{b, h, tq, a.kv_len},
                       "attention: probs must be (B, H, Tq, kv_len)");
  const index_t group = h / hkv, s_len = a.kv_len;
  std::vector<float> qv(d), scores(s_len), acc(d);
  std::vector<char> live(s_len);
  for (index_t bi = 0; bi < b; ++bi) {
    for (index_t hi = 0; hi < h; ++hi) {
      const index_t kvh = hi / group;
      for (index_t ti = 0; ti < tq; ++ti) {
        const int qs = a.q_start + static_cast<int>(ti);
        for (index_t j = 0; j < d; ++j) qv[j] = static_cast<float>(q(bi, ti, hi, j));
        std::fill(scores.begin(), scores.end(), -std::numeric_limits<float>::infinity());
        for (int k0 = 0; k0 < s_len; k0 += a.block) {
          const int k1 = std::min<int>(s_len, k0 + a.block);
          const tile kind = mask.tile_kind(static_cast<int>(bi), qs, qs + 1, k0, k1);
          if (kind == tile::empty) continue;
          for (int k = k0; k < k1; ++k) {
            if (kind == tile::partial && !mask.allowed(static_cast<int>(bi), qs, k)) continue;
            const T* kr = &keys(bi, kvh, k, 0);
            float dot = 0;
            for (index_t j = 0; j < d; ++j) dot += qv[j] * static_cast<float>(kr[j]);
            scores[k] = dot * a.scale;
          }
        }
        softmax_row(scores.data(), s_len);
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (index_t k = 0; k < s_len; ++k) {
          if (scores[k] == 0.0f) continue;
          const T* vr = &values(bi, kvh, k, 0);
          for (index_t j = 0; j < d; ++j) acc[j] += scores[k] * static_cast<float>(vr[j]);
        }
        for (index_t j = 0; j < d; ++j) out(bi, ti, hi, j) = static_cast<T>(acc[j]);
        if (probs.data)
          for (index_t k = 0; k < s_len; ++k) probs(bi, hi, ti, k) = scores[k];
      }
    }
  }
}

}  // namespace crossbatch
