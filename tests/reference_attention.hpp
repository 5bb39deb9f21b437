// A float64 brute-force softmax(q k^T scale + mask) v, the reference of the CPU attention tests.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "crossbatch/core/tensor.hpp"

namespace cbtest {

// q (B, Tq, H, D), k and v (B, Hkv, slots, D) of any element type (read as float, then double);
// query t sits at position q_start + t and sees the keys 0..kv_len-1 that mask.allowed admits.
// Writes out (B, Tq, H, D) and probs (B, H, Tq, kv_len), row-major; a row that sees no key gives
// zeros.
template <class T, class M>
void reference_attention(crossbatch::tensor_view<const T> q, crossbatch::tensor_view<const T> k,
                         crossbatch::tensor_view<const T> v, const M& mask, int q_start, int kv_len,
                         double scale, std::vector<double>& out, std::vector<double>& probs) {
  const int b = int(q.shape[0]), tq = int(q.shape[1]), h = int(q.shape[2]), d = int(q.shape[3]),
            hkv = int(k.shape[1]);
  out.assign(std::size_t(b) * tq * h * d, 0.0);
  probs.assign(std::size_t(b) * h * tq * kv_len, 0.0);
  for (int bi = 0; bi < b; ++bi)
    for (int hi = 0; hi < h; ++hi)
      for (int ti = 0; ti < tq; ++ti) {
        const int kvh = hi / (h / hkv), qs = q_start + ti;
        std::vector<double> s(kv_len, -INFINITY);
        double m = -INFINITY;
        for (int kk = 0; kk < kv_len; ++kk) {
          if (!mask.allowed(bi, qs, kk)) continue;
          double dot = 0;
          for (int j = 0; j < d; ++j)
            dot += double(float(q(bi, ti, hi, j))) * double(float(k(bi, kvh, kk, j)));
          s[kk] = dot * scale;
          m = std::max(m, s[kk]);
        }
        double z = 0;
        for (double& x : s) z += (x = std::isinf(x) ? 0.0 : std::exp(x - m));
        double* p = &probs[((std::size_t(bi) * h + hi) * tq + ti) * kv_len];
        for (int kk = 0; kk < kv_len; ++kk) p[kk] = z > 0 ? s[kk] / z : 0.0;
        double* o = &out[((std::size_t(bi) * tq + ti) * h + hi) * d];
        for (int kk = 0; kk < kv_len; ++kk)
          if (p[kk] != 0)
            for (int j = 0; j < d; ++j) o[j] += p[kk] * double(float(v(bi, kvh, kk, j)));
      }
}

}  // namespace cbtest
