// Hook points of decoder_block (model/decoder.hpp): code that runs on the residual stream before a
// block, after its attention and after the block (cross-batch mixing at layer k, ARMT's memory
// read and write). Every hook of no_hooks does nothing; the fused CUDA decode step is chosen only
// when a call's hooks are exactly no_hooks, so the default path stays the fast one.
#pragma once

#include <type_traits>

#include "crossbatch/core/context.hpp"
#include "crossbatch/core/tensor.hpp"

namespace crossbatch {

// x is the residual stream (B, T, C) of the call; a hook may read or change it in place.
template <class H, class T, class D>
concept block_hooks = requires(H& h, const context<D>& ctx, int layer, tensor_view<T, D> x) {
  h.before_block(ctx, layer, x);
  h.after_attention(ctx, layer, x);
  h.after_block(ctx, layer, x);
};

struct no_hooks {
  // A hook whose after_attention changes x sets this: the block then normalises x again for the
  // MLP (otherwise the MLP's input is the norm fused into the attention's residual add).
  static constexpr bool edits_after_attention = false;
  template <class Ctx, class X>
  void before_block(const Ctx&, int, X) const {}
  template <class Ctx, class X>
  void after_attention(const Ctx&, int, X) const {}
  template <class Ctx, class X>
  void after_block(const Ctx&, int, X) const {}
};

// A base for hooks that fill in only some of the three points.
struct hooks_base : no_hooks {};

template <class H>
inline constexpr bool is_no_hooks = std::is_same_v<std::remove_cvref_t<H>, no_hooks>;

}  // namespace crossbatch
