// AdamW (decoupled weight decay, bias-corrected moments, as torch.optim.AdamW), global
// gradient-norm clipping (torch.nn.utils.clip_grad_norm_) and the learning-rate schedule: linear
// warm-up to the peak, then cosine decay to min_ratio * peak. Device-generic over the ops of
// train/ops.hpp.
#pragma once

#include <cmath>
#include <vector>

#include "crossbatch/core/transfer.hpp"
#include "crossbatch/train/ops.hpp"

namespace crossbatch {

struct adamw_options {
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  float weight_decay = 0.01f;
  float max_grad_norm = 1.0f;  // <= 0: no clipping
};

struct lr_schedule {
  float peak = 1e-4f;
  int warmup_steps = 0;
  int total_steps = 1;
  float min_ratio = 0.0f;

  // Learning rate of optimiser step `step` (0-based).
  float at(int step) const {
    if (step < warmup_steps) return peak * float(step + 1) / float(warmup_steps);
    const int decay = std::max(1, total_steps - warmup_steps);
    const float progress = std::min(1.0f, float(step - warmup_steps) / float(decay));
    const float cosine = 0.5f * (1.0f + std::cos(3.14159265358979f * progress));
    return peak * (min_ratio + (1.0f - min_ratio) * cosine);
  }
};

template <class S, class D = cpu>
class adamw {
 public:
  explicit adamw(adamw_options o = {}) : m_opt(o) {}

  // Registers a parameter and the tensor its gradient accumulates in (same shape).
  void add(tensor<S, D>& param, tensor<S, D>& grad) {
    require<shape_error>(param.shape() == grad.shape(),
                         "adamw: parameter and gradient shapes differ");
    const auto zeros = full<S>(param.shape(), S(0));
    slot s{&param, &grad, to_device<D>(zeros), to_device<D>(zeros)};
    m_slots.push_back(std::move(s));
  }
  void zero_state(const context<D>& ctx) {
    for (auto& s : m_slots) {
      fill(ctx, s.m.view(), S(0));
      fill(ctx, s.v.view(), S(0));
    }
    m_step = 0;
  }
  void zero_grad(const context<D>& ctx) {
    for (auto& s : m_slots) fill(ctx, s.grad->view(), S(0));
  }
  // Global L2 norm of the registered gradients.
  double grad_norm(const context<D>& ctx) const {
    double ss = 0;
    for (const auto& s : m_slots) ss += sum_squares(ctx, tensor_view<const S, D>(s.grad->view()));
    return std::sqrt(ss);
  }
  // Clips the gradients to max_grad_norm (by scaling inside the update) and takes one step at
  // learning rate lr. Returns the gradient norm before clipping.
  double step(const context<D>& ctx, float lr) {
    const double norm = grad_norm(ctx);
    float scale = 1.0f;
    if (m_opt.max_grad_norm > 0 && norm > m_opt.max_grad_norm)
      scale = float(m_opt.max_grad_norm / (norm + 1e-6));
    ++m_step;
    for (auto& s : m_slots)
      adamw_update(ctx, s.param->view(), tensor_view<const S, D>(s.grad->view()), s.m.view(),
                   s.v.view(), lr, m_opt.beta1, m_opt.beta2, m_opt.eps, m_opt.weight_decay, m_step,
                   scale);
    return norm;
  }
  int steps_taken() const { return m_step; }
  const adamw_options& options() const { return m_opt; }

 private:
  struct slot {
    tensor<S, D>* param;
    tensor<S, D>* grad;
    tensor<S, D> m, v;
  };
  adamw_options m_opt;
  std::vector<slot> m_slots;
  int m_step = 0;
};

}  // namespace crossbatch
