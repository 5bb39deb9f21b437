// The training objective of cross-batch generation with the base model frozen: next-token
// cross-entropy on answer tokens with teacher forcing. The frozen model's states at the mix layer
// (one row per answer token: the state that predicts it) are inputs; at answer step t the samples
// of a batch that are still inside their answer mix (per group), exactly as the generator mixes the
// samples that have not finished; the mixed states go through the final norm (project mode at an
// intermediate layer) and the LM head. The baseline is the same head on the unmixed states.
#pragma once

#include <cstdint>
#include <vector>

#include "crossbatch/core/transfer.hpp"
#include "crossbatch/mix/mixer.hpp"
#include "crossbatch/ops/cpu/norm.hpp"
#include "crossbatch/train/mixer_backward.hpp"
#include "crossbatch/train/ops.hpp"

namespace crossbatch {

// One batch on the host: B samples, up to T answer tokens each.
struct answer_batch {
  int batch = 0, steps = 0;  // B, T
  std::vector<float>
      states;               // (T * B, C): row t * B + i is sample i's state predicting its token t
  std::vector<int> groups;  // (T * B): group id, -1 where sample i has no token t
  std::vector<std::int32_t> rows;     // (N): the rows that hold a token, in (t, i) order
  std::vector<std::int32_t> targets;  // (N): the token each of those rows predicts
  int tokens() const { return static_cast<int>(rows.size()); }
};

// Builds a batch from per-sample states (length_i, C) and targets (length_i); group ids per sample.
inline answer_batch make_answer_batch(const std::vector<const float*>& states,
                                      const std::vector<std::vector<std::int32_t>>& targets,
                                      const std::vector<int>& groups, int hidden) {
  answer_batch a;
  a.batch = static_cast<int>(targets.size());
  require(states.size() == targets.size() && groups.size() == targets.size(),
          "make_answer_batch: sizes differ");
  for (const auto& t : targets) a.steps = std::max(a.steps, static_cast<int>(t.size()));
  a.states.assign(std::size_t(a.steps) * a.batch * hidden, 0.0f);
  a.groups.assign(std::size_t(a.steps) * a.batch, -1);
  for (int t = 0; t < a.steps; ++t)
    for (int i = 0; i < a.batch; ++i) {
      if (t >= static_cast<int>(targets[i].size())) continue;
      const int row = t * a.batch + i;
      std::copy_n(states[i] + std::size_t(t) * hidden, hidden,
                  a.states.begin() + std::size_t(row) * hidden);
      a.groups[row] = groups[i];
      a.rows.push_back(row);
      a.targets.push_back(targets[i][t]);
    }
  return a;
}

// What the head reads: the mixed state itself (mix at the final-normed output, or project_raw), or
// its final norm (project mode at an intermediate layer).
template <class S, class D = cpu>
struct head_input {
  bool normalize = false;
  norm_kind kind = norm_kind::rms;
  tensor<S, D> weight, bias;  // the model's final norm (C); bias only for LayerNorm
  float eps = 1e-5f;
};

struct objective_result {
  double loss = 0;           // summed over tokens, with mixing
  double baseline_loss = 0;  // summed over tokens, same head, no mixing
  int tokens = 0;
};

// Forward (and, on request, backward) of the objective on one batch. Holds the device copy of the
// batch and every intermediate.
template <class S, class D = cpu>
class answer_objective {
 public:
  // grads may be null (loss only). mixer may be null (no mixing: the "baseline" method, loss ==
  // baseline_loss). head_grad (V, C) may be null (head frozen). Gradients accumulate (+=) and are
  // of the mean loss over the batch's tokens.
  objective_result run(const context<D>& ctx, const answer_batch& batch,
                       const mixer_weights<S, D>* mixer, tensor_view<const S, D> head,
                       const head_input<S, D>& norm, mixer_weights<S, D>* mixer_grads,
                       tensor_view<S, D> head_grad, bool baseline = true) {
    using cv = tensor_view<const S, D>;
    const index_t C = head.shape[1], V = head.shape[0], B = batch.batch, T = batch.steps,
                  N = batch.tokens();
    require<shape_error>(batch.states.size() == std::size_t(T * B * C),
                         "answer_objective: states do not fit (T*B, C)");
    upload(batch, C, V);
    objective_result r;
    r.tokens = static_cast<int>(N);
    if (N == 0) return r;
    // Mixed states per step.
    if (mixer) {
      if (m_ws.size() < std::size_t(T)) m_ws.resize(T);
      for (index_t t = 0; t < T; ++t)
        mixer_forward(ctx, *mixer, step_rows(m_y, t, B), cv(step_rows(m_h, t, B)), group_row(t, B),
                      m_ws[t]);
    }
    const auto& src = mixer ? m_y : m_h;
    gather_rows(ctx, m_yc.view(), cv(src.view()),
                tensor_view<const std::int32_t, D>(m_rows.view()));
    cv feat = m_yc.view();
    if (norm.normalize) {
      frozen_norm(ctx, norm.kind, m_nc.view(), cv(m_yc.view()), norm.weight.view(),
                  norm.bias.view(), norm.eps);
      feat = m_nc.view();
    }
    gemm(ctx, m_logits.view(), feat, head, false, true);
    const bool grad = (mixer && mixer_grads) || head_grad.data;
    r.loss =
        softmax_xent(ctx, m_logits.view(), tensor_view<const std::int32_t, D>(m_targets.view()),
                     grad ? S(1) / S(N) : S(0));
    if (grad) {
      if (head_grad.data) gemm(ctx, head_grad, cv(m_logits.view()), feat, true, false, S(1), S(1));
      if (mixer && mixer_grads) {
        gemm(ctx, m_dfeat.view(), cv(m_logits.view()), head, false, false);
        if (norm.normalize) {
          frozen_norm_backward(ctx, norm.kind, m_dyc.view(), cv(m_dfeat.view()), cv(m_yc.view()),
                               norm.weight.view(), norm.eps);
          scatter(ctx, cv(m_dyc.view()));
        } else {
          scatter(ctx, cv(m_dfeat.view()));
        }
        for (index_t t = 0; t < T; ++t)
          mixer_backward(ctx, *mixer, *mixer_grads, cv(step_rows(m_h, t, B)),
                         cv(step_rows(m_dy, t, B)), m_ws[t], m_bw);
      }
    }
    if (!mixer) {
      r.baseline_loss = r.loss;
    } else if (baseline) {
      gather_rows(ctx, m_yc.view(), cv(m_h.view()),
                  tensor_view<const std::int32_t, D>(m_rows.view()));
      cv bfeat = m_yc.view();
      if (norm.normalize) {
        frozen_norm(ctx, norm.kind, m_nc.view(), cv(m_yc.view()), norm.weight.view(),
                    norm.bias.view(), norm.eps);
        bfeat = m_nc.view();
      }
      gemm(ctx, m_logits.view(), bfeat, head, false, true);
      r.baseline_loss = softmax_xent(ctx, m_logits.view(),
                                     tensor_view<const std::int32_t, D>(m_targets.view()), S(0));
    }
    return r;
  }

 private:
  static tensor_view<S, D> step_rows(tensor<S, D>& t, index_t step, index_t b) {
    return tensor_view<S, D>(t.data() + step * b * t.dim(1), {b, t.dim(1)});
  }
  tensor_view<const std::int32_t, D> group_row(index_t step, index_t b) const {
    return tensor_view<const std::int32_t, D>(m_groups.data() + step * b, {b});
  }

  template <class U>
  static void ensure(tensor<U, D>& t, const shape_t& s) {
    if (t.shape() != s) t = tensor<U, D>(s);
  }

  void upload(const answer_batch& a, index_t C, index_t V) {
    const index_t rows = index_t(a.steps) * a.batch, n = a.tokens();
    ensure(m_h, {rows, C});
    ensure(m_y, {rows, C});
    ensure(m_dy, {rows, C});
    ensure(m_groups, {rows});
    ensure(m_rows, {n});
    ensure(m_targets, {n});
    ensure(m_yc, {n, C});
    ensure(m_nc, {n, C});
    ensure(m_dfeat, {n, C});
    ensure(m_dyc, {n, C});
    ensure(m_logits, {n, V});
    tensor<S> h({rows, C});
    for (index_t i = 0; i < h.size(); ++i) h.data()[i] = static_cast<S>(a.states[i]);
    device_traits<D>::upload(m_h.data(), h.data(), sizeof(S) * h.size());
    upload_ints(m_groups, a.groups);
    upload_ints(m_rows, a.rows);
    upload_ints(m_targets, a.targets);
  }
  template <class V>
  static void upload_ints(tensor<std::int32_t, D>& dst, const std::vector<V>& src) {
    std::vector<std::int32_t> h(src.begin(), src.end());
    device_traits<D>::upload(dst.data(), h.data(), sizeof(std::int32_t) * h.size());
  }
  void scatter(const context<D>& ctx, tensor_view<const S, D> dyc) {
    fill(ctx, m_dy.view(), S(0));
    scatter_rows(ctx, m_dy.view(), dyc, tensor_view<const std::int32_t, D>(m_rows.view()));
  }

  tensor<S, D> m_h, m_y, m_dy, m_yc, m_nc, m_dfeat, m_dyc, m_logits;
  tensor<std::int32_t, D> m_groups, m_rows, m_targets;
  std::vector<mixer_workspace<S, D>> m_ws;
  mixer_backward_workspace<S, D> m_bw;
};

}  // namespace crossbatch
