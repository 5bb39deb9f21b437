// The backward pass of a cross-batch mixer (mix/mixer.hpp): given dL/d(out) of one forward pass,
// whose intermediates are still in its workspace, accumulate (+=) the gradients of every mixer
// parameter. The input states come from the frozen model, so no gradient is returned for them.
// Device-generic: the ops are train/ops.hpp (CPU) and train/cuda/ops.cuh (CUDA).
#pragma once

#include "crossbatch/mix/mixer.hpp"
#include "crossbatch/train/ops.hpp"

namespace crossbatch {

// Scratch of the backward pass for B samples.
template <class S, class D = cpu>
struct mixer_backward_workspace {
  index_t batch = -1;
  tensor<S, D> dinfo, dgl, dx;  // (B, C)
  tensor<S, D> da1, du;         // (B, G)
  tensor<S, D> dz;              // (B, 3C)
  tensor<S, D> dproj;           // (B, 3C) or (B, 2C)

  mixer_config config;

  void reserve(const mixer_config& c, index_t b) {
    if (b == batch && c.same_shapes(config)) return;
    config = c;
    const index_t C = c.hidden_size, G = c.gate_width();
    dinfo = tensor<S, D>({b, C});
    dx = tensor<S, D>({b, C});
    dproj = tensor<S, D>({b, c.proj_rows()});
    if (c.combine == combine_mode::gate) {
      dgl = tensor<S, D>({b, C});
      da1 = tensor<S, D>({b, G});
      du = tensor<S, D>({b, G});
      dz = tensor<S, D>({b, 3 * C});
    }
    batch = b;
  }
};

// grads += dL/dparameters for the forward pass out = mix(h) whose intermediates are in ws, given
// dy = dL/dout (B, C).
template <class S, class D>
void mixer_backward(const context<D>& ctx, const mixer_weights<S, D>& w, mixer_weights<S, D>& grads,
                    tensor_view<const S, D> h, tensor_view<const S, D> dy,
                    const mixer_workspace<S, D>& ws, mixer_backward_workspace<S, D>& bw) {
  using cv = tensor_view<const S, D>;
  const auto& c = w.config;
  const index_t b = h.shape[0], C = c.hidden_size;
  require<shape_error>(ws.batch == b && dy.shape == h.shape,
                       "mixer_backward: workspace of another batch");
  bw.reserve(c, b);
  const cv info = ws.cross_term(c);
  combine_backward(ctx, c.combine, bw.dinfo.view(), grads.mix.view(), bw.dgl.view(), dy, h, info,
                   w.mix.view(), cv(ws.gate_logits.view()),
                   tensor_view<const std::int32_t, D>(ws.partners.view()));
  if (c.combine == combine_mode::gate) {
    gemm(ctx, grads.gate_w2.view(), cv(bw.dgl.view()), cv(ws.a1.view()), true, false, S(1), S(1));
    col_sum(ctx, grads.gate_b2.view(), cv(bw.dgl.view()));
    gemm(ctx, bw.da1.view(), cv(bw.dgl.view()), w.gate_w2.view(), false, false);
    gelu_backward(ctx, bw.du.view(), cv(bw.da1.view()), cv(ws.u.view()));
    gemm(ctx, grads.gate_w1.view(), cv(bw.du.view()), cv(ws.z.view()), true, false, S(1), S(1));
    col_sum(ctx, grads.gate_b1.view(), cv(bw.du.view()));
    gemm(ctx, bw.dz.view(), cv(bw.du.view()), w.gate_w1.view(), false, false);
    gate_input_backward(ctx, bw.dinfo.view(), grads.ln_h_w.view(), grads.ln_h_b.view(),
                        grads.ln_a_w.view(), grads.ln_a_b.view(), cv(bw.dz.view()), h, info,
                        cv(ws.ln_stats.view()), w.ln_h_w.view(), w.ln_h_b.view(), w.ln_a_w.view(),
                        w.ln_a_b.view());
  }
  cv dx = bw.dinfo.view();
  if (c.kind == mixer_kind::attention) {
    gemm(ctx, grads.out.view(), cv(bw.dinfo.view()), cv(ws.x.view()), true, false, S(1), S(1));
    gemm(ctx, bw.dx.view(), cv(bw.dinfo.view()), w.out.view(), false, false);
    dx = bw.dx.view();
  }
  const index_t pw = c.proj_rows();
  auto pcol = [&](const tensor<S, D>& t, index_t start) {
    return tensor_view<S, D>(const_cast<S*>(t.data()) + start, {b, C}, {pw, 1});
  };
  const bool cosine = c.kind == mixer_kind::embedding;
  cross_attend_backward(ctx, pcol(bw.dproj, 0), pcol(bw.dproj, cosine ? 0 : C),
                        pcol(bw.dproj, cosine ? C : 2 * C), dx, cv(ws.probs.view()),
                        cv(ws.inv_norms.view()), cv(pcol(ws.proj, 0)),
                        cv(pcol(ws.proj, cosine ? 0 : C)), cv(pcol(ws.proj, cosine ? C : 2 * C)),
                        c.heads(), c.score_scale(), cosine);
  gemm(ctx, grads.proj.view(), cv(bw.dproj.view()), h, true, false, S(1), S(1));
}

}  // namespace crossbatch
