// The mixed-precision LM loss of a lora_decoder<T, G, cuda>: the contract of lora_decoder::lm_loss
// (teacher-forced cross-entropy of the final layer's output x (N, C) through the final norm and a
// head (V, C) of type G, head_grad +=, dx =, gradients of the mean loss times grad_scale), with the
// three head products on tensor cores: the normalised states are rounded to T, the head to a T
// copy (once per call), the logit gradients to T; logits, softmax and every gradient stay float.
// For T = float it computes what lm_loss computes, through cuBLASLt instead of the tiled SGEMM.
#pragma once

#include <vector>

#include "crossbatch/model/decoder.hpp"
#include "crossbatch/train/backward/decoder_backward.hpp"
#include "crossbatch/train/cuda/backward_ops.cuh"

namespace crossbatch {

template <class T, class G>
lm_loss_result lm_loss_mixed(const context<cuda>& ctx, const decoder_model<T, cuda>& model,
                             tensor_view<const G, cuda> x, tensor_view<const G, cuda> head,
                             const std::vector<std::int32_t>& targets,
                             tensor_view<G, cuda> head_grad, tensor_view<G, cuda> dx,
                             double grad_scale = 1) {
  static_assert(std::is_same_v<G, float>, "lm_loss_mixed: G is float32");
  using namespace cuda_detail;
  const auto& cfg = model.config;
  const index_t n = x.shape[0], c = cfg.hidden_size, v = head.shape[0];
  require<shape_error>(
      x.shape == shape_t{n, c} && head.shape == shape_t{v, c} && index_t(targets.size()) == n,
      "lm_loss_mixed: x " + to_string(x.shape) + ", head " + to_string(head.shape) + ", " +
          std::to_string(targets.size()) + " targets");
  require<shape_error>(!head_grad.data || head_grad.shape == head.shape,
                       "lm_loss_mixed: head_grad " + to_string(head_grad.shape));
  std::vector<std::int32_t> rows, tgt;
  for (index_t i = 0; i < n; ++i)
    if (targets[i] >= 0) rows.push_back(std::int32_t(i)), tgt.push_back(targets[i]);
  lm_loss_result r;
  r.tokens = int(rows.size());
  if (dx.data) fill(ctx, dx, G(0));
  if (rows.empty()) return r;
  const index_t m = index_t(rows.size());
  using KC = cuda_t<T>;
  auto view_of = [](auto* p, shape_t s) {
    using E = std::remove_pointer_t<decltype(p)>;
    return tensor_view<E, cuda>(p, std::move(s));
  };
  scratch<std::int32_t> drows(ctx, m), dtgt(ctx, m);
  cuda_check(cudaMemcpyAsync(drows.get(), rows.data(), sizeof(std::int32_t) * m,
                             cudaMemcpyHostToDevice, ctx.stream),
             "lm_loss_mixed: upload rows");
  cuda_check(cudaMemcpyAsync(dtgt.get(), tgt.data(), sizeof(std::int32_t) * m,
                             cudaMemcpyHostToDevice, ctx.stream),
             "lm_loss_mixed: upload targets");
  ctx.synchronize();  // the host vectors may go
  const tensor_view<const std::int32_t, cuda> rows_v = view_of(drows.get(), {m}),
                                              tgt_v = view_of(dtgt.get(), {m});
  scratch<float> xc(ctx, m * c), logits(ctx, m * v);
  scratch<KC> nc(ctx, m * c);
  const auto xc_v = view_of(xc.get(), {m, c});
  const auto nc_v = view_of(reinterpret_cast<T*>(nc.get()), {m, c});
  const auto logits_v = view_of(logits.get(), {m, v});
  gather_rows(ctx, xc_v, x, rows_v);
  const norm_kind kind = cfg.kind == family::gpt2 ? norm_kind::layer : norm_kind::rms;
  norm_forward(ctx, kind, nc_v, cv(xc_v), model.final_w.view(), model.final_b.view(), cfg.norm_eps);
  const as_type<T, const G> head_k(ctx, head, "lm_loss_mixed head");
  const tensor_view<const T, cuda> head_t(reinterpret_cast<const T*>(head_k.p), {v, c},
                                          {head_k.ld, 1});
  product(ctx, logits_v, cv(nc_v), head_t, false, true, 1.0f, 0.0f, "lm_loss_mixed logits");
  const bool grad = head_grad.data || dx.data;
  r.sum = softmax_xent(ctx, logits_v, tgt_v, grad ? float(grad_scale / double(m)) : 0.0f);
  if (!grad) return r;
  const as_type<T, float> dl_k(ctx, logits_v, "lm_loss_mixed dlogits");
  const tensor_view<const T, cuda> dl_t(reinterpret_cast<const T*>(dl_k.p), {m, v}, {dl_k.ld, 1});
  if (head_grad.data)
    product(ctx, head_grad, dl_t, cv(nc_v), true, false, 1.0f, 1.0f, "lm_loss_mixed head_grad");
  if (dx.data) {
    scratch<float> dnc(ctx, m * c), dxc(ctx, m * c);
    const auto dnc_v = view_of(dnc.get(), {m, c}), dxc_v = view_of(dxc.get(), {m, c});
    product(ctx, dnc_v, dl_t, head_t, false, false, 1.0f, 0.0f, "lm_loss_mixed dx");
    fill(ctx, dxc_v, 0.0f);
    norm_backward(ctx, kind, dxc_v, cv(dnc_v), cv(xc_v), model.final_w.view(), cfg.norm_eps);
    scatter_rows(ctx, dx, cv(dxc_v), rows_v);
  }
  return r;  // the scratch buffers are released in stream order
}

}  // namespace crossbatch
