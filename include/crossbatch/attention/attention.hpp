// Multi-head / grouped-query attention on the CPU over keys and values laid out (B, Hkv, S, D),
// under any mask policy. Key blocks that the policy reports empty are skipped; queries with no
// visible key (padding slots) produce zeros. The reference for the CUDA kernels. Vectorised, and
// parallel over (sequence, KV head, query block) on ctx.threads threads (ops/cpu/attention.hpp);
// results do not depend on the thread count.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "crossbatch/attention/mask.hpp"
#include "crossbatch/core/context.hpp"
#include "crossbatch/core/tensor.hpp"
#include "crossbatch/ops/cpu/attention.hpp"
#include "crossbatch/ops/cpu/parallel.hpp"
#include "crossbatch/ops/cpu/rope.hpp"
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

// qkv (B * T, width) rows of a fused projection (H q heads, then Hkv k heads, then Hkv v heads
// of D): q and k rotated by positions (B * T) when inv_freq (D / 2) has data, q in place (k's and
// v's parts of qkv are left as they are); k and v written into slots [start, start + T) of the
// cache layers (B, Hkv, S, D), k rotated there. The CUDA form is one kernel.
template <class T>
void rope_write_kv(const context<cpu>& ctx, tensor_view<T> qkv, index_t t, int h, int hkv,
                   in_view<std::int32_t> positions, in_view<float> inv_freq, tensor_view<T> kcache,
                   tensor_view<T> vcache, int start) {
  const index_t n = qkv.rank() == 2 ? qkv.shape[0] : 0,
                d = kcache.rank() == 4 ? kcache.shape[3] : 0;
  require<shape_error>(
      qkv.rank() == 2 && t > 0 && n % t == 0 && qkv.shape[1] >= (h + 2 * hkv) * d &&
          (qkv.shape[1] <= 1 || qkv.strides[1] == 1) && kcache.shape == vcache.shape,
      "rope_write_kv: qkv " + to_string(qkv.shape) + " with T " + std::to_string(t) +
          " does not fit the cache " + to_string(kcache.shape));
  const index_t width = n <= 1 ? qkv.shape[1] : qkv.strides[0], b = n / t;
  auto part = [&](index_t offset, index_t heads) {
    return in_view<T>(qkv.data + offset, {b, t, heads, d}, {t * width, width, d, 1});
  };
  write_kv(ctx, kcache, part(h * d, hkv), start);
  write_kv(ctx, vcache, part((h + hkv) * d, hkv), start);
  if (!inv_freq.data) return;
  apply_rope(ctx, tensor_view<T>(qkv.data, {n, h, d}, {width, d, 1}), positions, inv_freq);
  for (index_t s = 0; s < b; ++s)  // sequence s's new keys: slots (T, Hkv, D) of its cache rows
    apply_rope(ctx,
               tensor_view<T>(&kcache(s, 0, start, 0), {t, hkv, d},
                              {kcache.strides[2], kcache.strides[1], 1}),
               in_view<std::int32_t>(positions.data + s * t, {t}), inv_freq);
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
void attention(const context<cpu>& ctx, tensor_view<T> out, in_view<T> q, in_view<T> keys,
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
  require<shape_error>(keys.strides[3] == 1 && values.strides[3] == 1,
                       "attention: keys and values need unit stride along D");
  require<value_error>(a.block > 0, "attention: key block size must be positive");
  const index_t group = h / hkv;
  const int threads = std::max(1, ctx.threads), nblocks = (a.kv_len + a.block - 1) / a.block;
  tensor_view<const T> qc = q, kc = keys, vc = values;
  // Work units of rows sharing a KV head (ops/cpu/attention.hpp). Decode (one query token) over a
  // long context: a sequence's head group per key split of about 512 keys (whole mask blocks),
  // merged afterwards, so that even batch 1 has units for every thread; the splits do not depend
  // on the thread count. Without probabilities only (those need the whole row).
  const int split_blocks = std::max(1, 512 / a.block);
  const index_t splits = tq == 1 && !probs.data ? (nblocks + split_blocks - 1) / split_blocks : 1;
  if (splits > 1) {
    const index_t f = cpu_detail::split_floats(d);
    std::vector<float> parts(b * h * splits * f);  // (B, H, splits, [m, l, acc (D)])
    cpu_detail::parallel_chunks(threads, b * hkv * splits, [&](index_t u) {
      const index_t sp = u % splits, kvh = u / splits % hkv, bi = u / (splits * hkv);
      const int kb0 = int(sp) * split_blocks, kb1 = std::min(nblocks, kb0 + split_blocks);
      cpu_detail::attention_unit(out, qc, kc, vc, mask, a.q_start, a.kv_len, a.scale, a.block,
                                 probs, bi, kvh, 0, 1, 0, group, kb0, kb1,
                                 &parts[((bi * h + kvh * group) * splits + sp) * f], splits * f);
    });
    for (index_t bi = 0; bi < b; ++bi)
      for (index_t hi = 0; hi < h; ++hi)
        cpu_detail::merge_splits(&parts[(bi * h + hi) * splits * f], splits, f, d,
                                 &out(bi, 0, hi, 0), out.strides[3]);
    return;
  }
  // Otherwise a sequence's head group for about 16 rows (group heads x a few query tokens).
  const index_t tokens_per_unit = tq == 1 ? 1 : std::max<index_t>(1, (16 + group - 1) / group);
  const index_t token_blocks = (tq + tokens_per_unit - 1) / tokens_per_unit;
  cpu_detail::parallel_chunks(threads, b * hkv * token_blocks, [&](index_t u) {
    const index_t tb = u % token_blocks, kvh = u / token_blocks % hkv,
                  bi = u / (token_blocks * hkv);
    const index_t t0 = tb * tokens_per_unit, t1 = std::min(tq, t0 + tokens_per_unit);
    cpu_detail::attention_unit(out, qc, kc, vc, mask, a.q_start, a.kv_len, a.scale, a.block, probs,
                               bi, kvh, t0, t1, 0, group, 0, nblocks);
  });
}

}  // namespace crossbatch
