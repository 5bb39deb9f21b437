// Training of the cross-batch parts with the base model frozen, on cached answer states
// (train/features.hpp). Trainable: the mixer and, by flag, the LM head (initialised from the
// model's output embedding, then kept separate: a tied input embedding stays frozen). The
// reference's methods: "baseline" = LM head only, no mixing; "crossbatch" = LM head + mixer;
// "mixer" = mixer only. AdamW with warm-up + cosine decay and gradient clipping; every step also
// reports the baseline loss (the same head on the unmixed states), as the reference's table does.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <random>
#include <vector>

#include "crossbatch/model/decoder.hpp"
#include "crossbatch/train/checkpoint.hpp"
#include "crossbatch/train/features.hpp"
#include "crossbatch/train/objective.hpp"
#include "crossbatch/train/optimizer.hpp"

namespace crossbatch {

struct train_options {
  int epochs = 3;
  int batch_size = 8;           // items per batch (whole context groups packed)
  float learning_rate = 1e-4f;  // peak
  float warmup_ratio = 0.1f;    // of all steps
  float min_lr_ratio = 0.0f;    // cosine decays to this fraction of the peak
  adamw_options adam;
  bool train_head = true;
  bool train_mixer = true;  // false with no mixer: the baseline method
  std::uint64_t seed = 1;   // batch order
};

// Token-weighted means over an epoch or an evaluation (per answer token, natural log).
struct loss_summary {
  double loss = 0, baseline_loss = 0;
  long tokens = 0;
  int batches = 0;
  double seconds = 0;
  double grad_norm = 0;  // mean over steps (training only)

  void add(const objective_result& r) {
    loss += r.loss;
    baseline_loss += r.baseline_loss;
    tokens += r.tokens;
    ++batches;
  }
  loss_summary finished() const {
    loss_summary s = *this;
    if (tokens) s.loss /= double(tokens), s.baseline_loss /= double(tokens);
    if (batches) s.grad_norm /= batches;
    return s;
  }
};

// Called after every batch: (batch index, batches in the epoch, running summary so far).
using batch_callback = std::function<void(int, int, const loss_summary&)>;

template <class S, class D = cpu>
class cross_batch_trainer {
 public:
  // mixer: initial weights, or nullopt for the baseline method. head: the initial LM head (V, C).
  // norm: the model's final norm when the head reads an intermediate layer in project mode.
  cross_batch_trainer(const context<D>& ctx, std::optional<mixer_weights<S, D>> mixer,
                      tensor<S, D> head, head_input<S, D> norm, const train_options& opt)
      : m_ctx(ctx),
        m_opt(opt),
        m_mixer(std::move(mixer)),
        m_head(std::move(head)),
        m_norm(std::move(norm)),
        m_adam(opt.adam) {
    require(!m_opt.train_mixer || m_mixer, "cross_batch_trainer: train_mixer needs a mixer");
    if (m_mixer && m_opt.train_mixer) {
      m_grads = zeros_like_config<S, D>(m_mixer->config);
      for (auto& [name, t] : m_mixer->parameters()) m_adam.add(*t, *m_grads->slot(name));
    }
    if (m_opt.train_head) {
      m_head_grad = to_device<D>(full<S>(m_head.shape(), S(0)));
      m_adam.add(m_head, m_head_grad);
    }
  }

  // One epoch over `data` (batches from pack_groups, reshuffled per epoch).
  loss_summary train_epoch(const answer_states& data, int epoch, int total_epochs,
                           const batch_callback& on_batch = {}) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto batches =
        pack_groups(data.items, m_opt.batch_size, m_opt.seed * 1000003 + epoch + 1);
    if (!m_schedule) {
      const int total = int(batches.size()) * total_epochs;
      m_schedule = lr_schedule{m_opt.learning_rate, int(m_opt.warmup_ratio * total), total,
                               m_opt.min_lr_ratio};
    }
    loss_summary s;
    for (std::size_t bi = 0; bi < batches.size(); ++bi) {
      const auto r = train_step(batch_of(data, batches[bi]));
      s.add(r);
      s.grad_norm += m_last_grad_norm;
      if (on_batch) on_batch(int(bi), int(batches.size()), s.finished());
    }
    s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return s.finished();
  }

  // One optimiser step on one batch.
  objective_result train_step(const answer_batch& b) {
    m_adam.zero_grad(m_ctx);
    const bool mixing = m_mixer.has_value();
    auto r = m_obj.run(m_ctx, b, mixing ? &*m_mixer : nullptr, m_head.view(), m_norm,
                       mixing && m_opt.train_mixer ? &*m_grads : nullptr,
                       m_opt.train_head ? m_head_grad.view() : tensor_view<S, D>{});
    if (r.tokens == 0) return r;
    const float lr = m_schedule ? m_schedule->at(m_adam.steps_taken()) : m_opt.learning_rate;
    m_last_grad_norm = m_adam.step(m_ctx, lr);
    return r;
  }

  // Losses on `data` without updating anything (batches in data order); `partners` other_contexts
  // is the control that mixes each sample with questions of other stories.
  loss_summary evaluate(const answer_states& data, bool with_mixing = true,
                        partner_mode partners = partner_mode::same_context) {
    const auto t0 = std::chrono::steady_clock::now();
    loss_summary s;
    for (const auto& which : pack_groups(data.items, m_opt.batch_size))
      s.add(m_obj.run(m_ctx, batch_of(data, which, partners),
                      with_mixing && m_mixer ? &*m_mixer : nullptr, m_head.view(), m_norm, nullptr,
                      {}));
    s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return s.finished();
  }

  const std::optional<mixer_weights<S, D>>& mixer() const { return m_mixer; }
  const tensor<S, D>& head() const { return m_head; }
  double last_grad_norm() const { return m_last_grad_norm; }
  const lr_schedule* schedule() const { return m_schedule ? &*m_schedule : nullptr; }

  // The trainable parts as a checkpoint (float32 on the host).
  cross_batch_checkpoint checkpoint(const model_config& model, int mix_layer,
                                    mix_projection projection) const {
    cross_batch_checkpoint ck;
    ck.method = !m_mixer ? "baseline" : m_opt.train_head ? "crossbatch" : "mixer";
    if (m_mixer) ck.mixer = m_mixer->template cast<float, cpu>();
    if (m_opt.train_head) {
      const auto h = to_host(m_head);
      ck.lm_head = tensor<float>(h.shape());
      for (index_t i = 0; i < h.size(); ++i) ck.lm_head.data()[i] = float(h.data()[i]);
    }
    ck.mix_layer = mix_layer;
    ck.projection = projection;
    ck.hidden_size = model.hidden_size;
    ck.vocab_size = model.vocab_size;
    ck.num_layers = model.num_layers;
    return ck;
  }

 private:
  const context<D>& m_ctx;
  train_options m_opt;
  std::optional<mixer_weights<S, D>> m_mixer;
  std::optional<mixer_weights<S, D>> m_grads;
  tensor<S, D> m_head, m_head_grad;
  head_input<S, D> m_norm;
  adamw<S, D> m_adam;
  answer_objective<S, D> m_obj;
  std::optional<lr_schedule> m_schedule;
  double m_last_grad_norm = 0;
};

// The model's output embedding (V, C) as S on D (the trainable head's starting point).
template <class S, class D, class T>
tensor<S, D> head_from_model(const decoder_model<T, D>& model) {
  const auto h = to_host(model.output_embedding());
  tensor<S> s(h.shape());
  for (index_t i = 0; i < h.size(); ++i)
    s.data()[i] = static_cast<S>(static_cast<float>(h.data()[i]));
  return to_device<D>(s);
}

// The head input for mix layer k: final norm of the model when k < L in project mode.
template <class S, class D, class T>
head_input<S, D> head_input_for(const decoder_model<T, D>& model, int mix_layer,
                                mix_projection projection) {
  const auto& c = model.config;
  head_input<S, D> h;
  const int k = resolve_mix_layer(mix_layer, c.num_layers);
  require(projection != mix_projection::continue_layers || k == c.num_layers,
          "training: the continue projection at an intermediate layer would need gradients through "
          "the frozen layers "
          "(train with project or project_raw, or at mix_layer -1)");
  h.normalize = k < c.num_layers && projection == mix_projection::project;
  h.kind = c.kind == family::gpt2 ? norm_kind::layer : norm_kind::rms;
  h.eps = c.norm_eps;
  auto conv = [](const tensor<T, D>& t) {
    if (t.empty()) return tensor<S, D>();
    const auto host = to_host(t);
    tensor<S> s(host.shape());
    for (index_t i = 0; i < host.size(); ++i)
      s.data()[i] = static_cast<S>(static_cast<float>(host.data()[i]));
    return to_device<D>(s);
  };
  h.weight = conv(model.final_w);
  h.bias = conv(model.final_b);
  return h;
}

}  // namespace crossbatch
