// The gradient of a cross-batch mixer's output with respect to its input states, for training
// through the model (the states come from layers with trainable LoRA adapters, so the gradient
// must reach them): call right after mixer_backward (train/mixer_backward.hpp), whose workspace
// still holds the projection and gate-input gradients of the same pass.
//   out = h + s * I(h)      (scale)      dh = dy + d(I)/dh
//   out = h + g(h, I) * I   (gate)       dh = dy + d(I)/dh + d(LN_h(h))/dh of the gate input
// with I = W_o attend(h W_q, h W_k, h W_v): d(I)/dh = dproj W_proj. Alpha mode ((1 - a) h + a I)
// is refused here. Device-generic: gemm/copy on the device; the gate's LayerNorm-of-h part (B x C
// per step, small) is computed on the host.
#pragma once

#include <vector>

#include "crossbatch/core/transfer.hpp"
#include "crossbatch/train/mixer_backward.hpp"

namespace crossbatch {

// dh (B, C) = d loss / d h for the forward pass out = mix(h) whose intermediates are in ws and
// whose mixer_backward has just run with bw; dy (B, C) = d loss / d out. dh is overwritten.
template <class S, class D>
void mixer_input_backward(const context<D>& ctx, const mixer_weights<S, D>& w,
                          tensor_view<S, D> dh, tensor_view<const S, D> h,
                          tensor_view<const S, D> dy, const mixer_workspace<S, D>& ws,
                          const mixer_backward_workspace<S, D>& bw) {
  using cv = tensor_view<const S, D>;
  const auto& c = w.config;
  require(c.combine != combine_mode::alpha,
          "training through the model: the mixer's alpha mode ((1 - a) h + a I) is not supported; "
          "use scale or gate");
  require<shape_error>(dh.shape == h.shape && dy.shape == h.shape && bw.batch == h.shape[0],
                       "mixer_input_backward: shapes differ or mixer_backward did not run");
  const index_t b = h.shape[0], C = c.hidden_size;
  copy_rows(ctx, dh, dy);  // the residual path
  gemm(ctx, dh, cv(bw.dproj.view()), w.proj.view(), false, false, S(1), S(1));
  if (c.combine != combine_mode::gate) return;
  // Gate input z = [LN_h(h), LN_a(I), LN_h(h) * LN_a(I)]: the LN_h part (frozen statistics).
  const auto hz = to_host(cv(bw.dz.view()));
  const auto hh = to_host(h);
  const auto hinfo = to_host(ws.cross_term(c));
  const auto stats = to_host(tensor_view<const mix_accum_t<S>, D>(ws.ln_stats.view()));
  const auto lw = to_host(w.ln_h_w.view()), aw = to_host(w.ln_a_w.view()), ab = to_host(w.ln_a_b.view());
  require<shape_error>(dh.contiguous(), "mixer_input_backward: dh must be contiguous");
  auto sum = to_host(cv(dh));  // dy + d(I)/dh so far; the LN_h part is added here
  std::vector<S> g(C);
  for (index_t i = 0; i < b; ++i) {
    const S mh = S(stats(i, 0)), ih = S(stats(i, 1)), ma = S(stats(i, 2)), ia = S(stats(i, 3));
    S mean_g = 0, mean_gx = 0;
    for (index_t j = 0; j < C; ++j) {
      const S xh = (hh(i, j) - mh) * ih;
      const S la = (hinfo(i, j) - ma) * ia * aw.data()[j] + ab.data()[j];
      const S dlh = hz(i, j) + hz(i, 2 * C + j) * la;  // d z_h + d (z_h * z_a) * z_a
      g[j] = dlh * lw.data()[j];
      mean_g += g[j];
      mean_gx += g[j] * xh;
    }
    mean_g /= S(C);
    mean_gx /= S(C);
    for (index_t j = 0; j < C; ++j) sum(i, j) += ih * (g[j] - mean_g - (hh(i, j) - mh) * ih * mean_gx);
  }
  device_traits<D>::upload(dh.data, sum.data(), sizeof(S) * sum.size());
}

}  // namespace crossbatch
