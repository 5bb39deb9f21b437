// Attention mask policies: small structs saying which key slot k a query slot q of sequence s may
// see, plus tile_kind() over a block of queries x keys so kernels skip blocks that are all masked
// (FlexAttention's block-mask idea). Slots are positions in the padded sequence / KV cache.
// Policies hold plain pointers to per-sequence arrays so the same struct works on CPU and GPU.
#pragma once

#include <concepts>
#include <tuple>

#include "crossbatch/core/host_device.hpp"

namespace crossbatch {

enum class tile { empty, full, partial };

// A policy answers allowed(s, q, k) and tile_kind(s, q0, q1, k0, k1) for the half-open block
// [q0, q1) x [k0, k1) (non-empty ranges): empty = no pair allowed, full = every pair allowed.
template <class M>
concept mask_policy = requires(const M& m, int s, int q, int k) {
  { m.allowed(s, q, k) } -> std::convertible_to<bool>;
  { m.tile_kind(s, q, q + 1, k, k + 1) } -> std::same_as<tile>;
};

// Key k visible from query q when k <= q.
struct causal {
  CROSSBATCH_HD bool allowed(int, int q, int k) const { return k <= q; }
  CROSSBATCH_HD tile tile_kind(int, int q0, int q1, int k0, int k1) const {
    if (k0 > q1 - 1) return tile::empty;
    if (k1 - 1 <= q0) return tile::full;
    return tile::partial;
  }
};

// Everything visible (encoders without padding).
struct no_mask {
  CROSSBATCH_HD bool allowed(int, int, int) const { return true; }
  CROSSBATCH_HD tile tile_kind(int, int, int, int, int) const { return tile::full; }
};

// Left padding: the first pad[s] slots of sequence s are padding and never visible.
struct left_padding {
  const int* pad = nullptr;  // (B)
  CROSSBATCH_HD bool allowed(int s, int, int k) const { return k >= pad[s]; }
  CROSSBATCH_HD tile tile_kind(int s, int, int, int k0, int k1) const {
    if (k1 <= pad[s]) return tile::empty;
    if (k0 >= pad[s]) return tile::full;
    return tile::partial;
  }
};

// Right padding: only the first length[s] slots of sequence s are real (BERT batches).
struct right_padding {
  const int* length = nullptr;  // (B)
  CROSSBATCH_HD bool allowed(int s, int, int k) const { return k < length[s]; }
  CROSSBATCH_HD tile tile_kind(int s, int, int, int k0, int k1) const {
    if (k0 >= length[s]) return tile::empty;
    if (k1 <= length[s]) return tile::full;
    return tile::partial;
  }
};

// Sliding window: key k visible from q when q - k < window (the causal part is a separate policy).
struct sliding_window {
  int window = 0;
  CROSSBATCH_HD bool allowed(int, int q, int k) const { return q - k < window; }
  CROSSBATCH_HD tile tile_kind(int, int q0, int q1, int k0, int k1) const {
    if (q0 - (k1 - 1) >= window) return tile::empty;
    if ((q1 - 1) - k0 < window) return tile::full;
    return tile::partial;
  }
};

// Segment isolation (paraphrase fusion): prompt slots carry a segment id, 0 for the shared prefix
// and 1, 2, ... for the isolated segments, non-decreasing along the slots; slots at or after
// gen_start[s] are generated. A prompt query sees the prefix and its own segment; a generated
// query sees everything. segment is (B, stride) row-major.
struct segment_isolation {
  const int* segment = nullptr;    // (B, stride)
  const int* gen_start = nullptr;  // (B)
  int stride = 0;

  CROSSBATCH_HD int seg(int s, int slot) const { return segment[s * stride + slot]; }
  CROSSBATCH_HD bool allowed(int s, int q, int k) const {
    if (q >= gen_start[s]) return true;
    if (k >= gen_start[s]) return false;
    const int sk = seg(s, k);
    return sk == 0 || sk == seg(s, q);
  }
  CROSSBATCH_HD tile tile_kind(int s, int q0, int q1, int k0, int k1) const {
    const int g = gen_start[s];
    if (q0 >= g) return tile::full;    // generated queries see everything
    if (q1 > g) return tile::partial;  // block straddles the prompt/generation border
    if (k0 >= g) return tile::empty;   // prompt queries never see generated keys
    if (k1 > g) return tile::partial;
    // Ids are non-decreasing, so a range's ids span [first, last].
    const int kmin = seg(s, k0), kmax = seg(s, k1 - 1), qmin = seg(s, q0), qmax = seg(s, q1 - 1);
    if (kmax == 0) return tile::full;                                     // keys all shared prefix
    if (qmin == qmax && kmin == qmax && kmax == qmax) return tile::full;  // one segment
    if (kmin > 0 && (kmax < qmin || kmin > qmax)) return tile::empty;     // disjoint segments
    return tile::partial;
  }
};

// Conjunction of policies: allowed when every one allows.
template <class... M>
struct all_of {
  std::tuple<M...> parts;

  all_of() = default;
  CROSSBATCH_HD explicit all_of(M... m) : parts(m...) {}

  CROSSBATCH_HD bool allowed(int s, int q, int k) const {
    return std::apply([&](const M&... m) { return (m.allowed(s, q, k) && ...); }, parts);
  }
  CROSSBATCH_HD tile tile_kind(int s, int q0, int q1, int k0, int k1) const {
    bool all_full = true, any_empty = false;
    const auto record = [&](tile t) {
      any_empty |= t == tile::empty;
      all_full &= t == tile::full;
    };
    std::apply([&](const M&... m) { (record(m.tile_kind(s, q0, q1, k0, k1)), ...); }, parts);
    return any_empty ? tile::empty : all_full ? tile::full : tile::partial;
  }
};

}  // namespace crossbatch
