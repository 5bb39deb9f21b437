// The four training methods of the reference (train_cross_batch) through the model itself
// (train/backward/decoder_backward.hpp: lora_decoder), device-generic:
//   baseline         the LM head                        (model frozen, no mixing)
//   crossbatch       the LM head + a cross-batch mixer   (model frozen)
//   lora_lmhead      LoRA adapters + the LM head
//   lora_crossbatch  LoRA adapters + the LM head + the mixer
// freeze_base_model (the reference's --freeze-base-model): the mixer alone (adapters, head frozen).
// Teacher forcing on "<answer>{gold}</answer>" + end-of-turn (train/qa_batch.hpp); the mean
// cross-entropy over a batch's answer tokens. The mixer acts at mix layer k (transformers'
// hidden_states index, -1 = the final-normed output) on the states that predict the answer tokens,
// step by step as the generator mixes:
//   k = L:             logits = head(mix(final_norm(h_L)))
//   k < L, continue:   embed -> layers [0, k) -> mix the answer rows in the residual stream ->
//                      layers [k, L) -> final norm -> head; backward in reverse, through the mixer
//                      into the layers before it
//   k < L, project:    logits = head(final_norm(mix(h_k))) (project_raw: without the norm)
// AdamW (weight decay 0.01), cosine decay from lr to min_lr, global-norm clipping 1.0, all
// trainable tensors float32 on the device.
#pragma once

#include <chrono>
#include <cmath>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "crossbatch/generate/cross_batch.hpp"
#include "crossbatch/mix/weights.hpp"
#include "crossbatch/model/decoder.hpp"
#include "crossbatch/train/backward/decoder_backward.hpp"
#include "crossbatch/train/backward/lora.hpp"
#include "crossbatch/train/mixer_backward.hpp"
#include "crossbatch/train/mixer_input_backward.hpp"
#include "crossbatch/train/optimizer.hpp"
#include "crossbatch/train/qa_batch.hpp"
#include "crossbatch/train/trainer.hpp"

namespace crossbatch {

enum class train_method { baseline, crossbatch, lora_lmhead, lora_crossbatch };

inline const char* to_string(train_method m) {
  switch (m) {
    case train_method::baseline: return "baseline";
    case train_method::crossbatch: return "crossbatch";
    case train_method::lora_lmhead: return "lora_lmhead";
    case train_method::lora_crossbatch: return "lora_crossbatch";
  }
  return "?";
}
inline train_method train_method_from_name(const std::string& s) {
  for (auto m : {train_method::baseline, train_method::crossbatch, train_method::lora_lmhead,
                 train_method::lora_crossbatch})
    if (s == to_string(m)) return m;
  throw value_error("unknown method '" + s + "' (baseline, crossbatch, lora_lmhead, lora_crossbatch)");
}
inline bool has_mixer(train_method m) {
  return m == train_method::crossbatch || m == train_method::lora_crossbatch;
}
inline bool has_lora(train_method m) {
  return m == train_method::lora_lmhead || m == train_method::lora_crossbatch;
}

struct method_options {
  train_method method = train_method::baseline;
  bool freeze_base_model = false;  // train the mixer only (a method with a mixer)
  bool use_gate = false;           // question-aware gate instead of the scalar scale
  int mix_layer = -1;              // transformers' hidden_states index
  mix_projection projection = mix_projection::continue_layers;  // for k < L
  int num_heads = 8;
  mixer_init mixer_init_values;    // the reference: q/k/v ~ N(0, 0.02), out = 0, s = sigmoid(-3)
  lora_config lora;                // r 16, alpha 32, dropout 0.05, q,k,v,o,gate,up,down
  int epochs = 1;
  int batch_size = 8;              // contexts (whole question groups) per batch
  float lr = 1e-4f, min_lr = 1e-6f, warmup_ratio = 0.0f;
  adamw_options adam;              // weight decay 0.01, clipping 1.0
  std::uint64_t seed = 13;         // mixer init, adapter init, batch order, dropout

  bool trains_head() const { return !freeze_base_model; }
  bool trains_adapters() const { return has_lora(method) && !freeze_base_model; }
  bool trains_mixer() const { return has_mixer(method); }
};

// The reference's mixer init: projections ~ N(0, 0.02), output projection 0, scale sigmoid(-3).
inline mixer_init reference_mixer_init() {
  mixer_init m;
  m.proj_std = 0.02f;
  m.out_std = 0.0f;
  m.mix = 1.0f / (1.0f + std::exp(3.0f));
  return m;
}

// Token-weighted sums of one pass over a data set.
struct qa_losses {
  double loss_sum = 0;
  long tokens = 0;
  int batches = 0;
  double seconds = 0, grad_norm_sum = 0;
  long control_same_pairs = 0;  // control: partner pairs that still share a group

  double loss() const { return tokens ? loss_sum / double(tokens) : 0.0; }
  double grad_norm() const { return batches ? grad_norm_sum / batches : 0.0; }
};

// (batch index, batches, running totals) after every batch.
using qa_batch_callback = std::function<void(int, int, const qa_losses&)>;

// G: adapters, head, mixer, gradients, optimiser state and the residual stream (float; double on
// the CPU for gradient checks, where G == T).
template <class T, class D, class G = std::conditional_t<std::is_same_v<D, cpu>, T, float>>
class method_trainer {
 public:

  method_trainer(const context<D>& ctx, const decoder_model<T, D>& model, const method_options& opt)
      : m_ctx(ctx),
        m_model(model),
        m_opt(opt),
        m_L(model.config.num_layers),
        m_k(has_mixer(opt.method) ? resolve_mix_layer(opt.mix_layer, model.config.num_layers)
                                  : model.config.num_layers),
        m_adapters(make_adapters(model, opt)),
        m_decoder(model, has_lora(opt.method) ? &m_adapters : nullptr),
        m_head(head_from_model<G, D>(model)),
        m_norm(head_input_for<G, D>(model, -1, mix_projection::project)),
        m_adam(opt.adam) {
    require(!opt.freeze_base_model || has_mixer(opt.method),
            std::string("--freeze-base-model trains the mixer alone: method ") + to_string(opt.method) +
                " has no mixer, so nothing would train");
    if (opt.trains_head()) {
      m_head_grad = to_device<D>(full<G>(m_head.shape(), G(0)));
      m_adam.add(m_head, m_head_grad);
    }
    if (opt.trains_mixer()) {
      mixer_config c;
      c.kind = mixer_kind::attention;
      c.combine = opt.use_gate ? combine_mode::gate : combine_mode::scale;
      c.hidden_size = model.config.hidden_size;
      c.num_heads = opt.num_heads;
      m_mixer = init_mixer<G>(c, opt.seed, opt.mixer_init_values).template cast<G, D>();
      m_mixer_grad = zeros_like_config<G, D>(c);
      for (auto& [name, t] : m_mixer->parameters()) m_adam.add(*t, *m_mixer_grad->slot(name));
    }
    if (opt.trains_adapters()) register_adapters();
  }

  const method_options& options() const { return m_opt; }
  int mix_layer() const { return m_k; }
  const tensor<G, D>& head() const { return m_head; }
  const std::optional<mixer_weights<G, D>>& mixer() const { return m_mixer; }
  const lora_adapters<G, D>& adapters() const { return m_adapters; }
  lora_adapters<G, D>& adapters() { return m_adapters; }
  const tensor<G, D>& head_grad() const { return m_head_grad; }
  const std::optional<mixer_weights<G, D>>& mixer_grad() const { return m_mixer_grad; }
  const lr_schedule* schedule() const { return m_schedule ? &*m_schedule : nullptr; }

  // One epoch over `ex` (batches of options().batch_size groups, reshuffled every epoch).
  qa_losses train_epoch(const std::vector<qa_example>& ex, int epoch, const qa_batch_callback& cb = {}) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto batches = context_batches(ex, m_opt.batch_size, m_opt.seed * 1000003 + epoch + 1);
    if (!m_schedule) {
      const int total = std::max(1, int(batches.size()) * m_opt.epochs);
      m_schedule = lr_schedule{m_opt.lr, int(m_opt.warmup_ratio * total), total,
                               m_opt.lr > 0 ? m_opt.min_lr / m_opt.lr : 0.0f};
    }
    qa_losses s;
    for (std::size_t bi = 0; bi < batches.size(); ++bi) {
      const auto b = batch_of(ex, batches[bi], false, nullptr);
      m_adam.zero_grad(m_ctx);
      if (m_opt.trains_adapters()) zero_adapter_grads();
      const auto r = run(b, true);
      s.loss_sum += r.first;
      s.tokens += r.second;
      ++s.batches;
      if (r.second > 0) {
        const float lr = m_schedule->at(m_adam.steps_taken());
        s.grad_norm_sum += m_adam.step(m_ctx, lr);
      }
      if (cb) cb(int(bi), int(batches.size()), s);
    }
    s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return s;
  }

  // Answer-token loss on `ex` without training (batches in data order); control: every question
  // mixes with as many questions of other groups as it has siblings.
  qa_losses evaluate(const std::vector<qa_example>& ex, bool control = false, bool with_mixer = true) {
    const auto t0 = std::chrono::steady_clock::now();
    qa_losses s;
    for (const auto& which : context_batches(ex, m_opt.batch_size)) {
      long same = 0;
      const auto b = batch_of(ex, which, control, &same);
      const auto r = run(b, false, with_mixer);
      s.loss_sum += r.first;
      s.tokens += r.second;
      s.control_same_pairs += same;
      ++s.batches;
    }
    s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return s;
  }

  // Takes the trained parts of a checkpoint of the same method (train/method_checkpoint.hpp): its
  // head, mixer and adapters replace this trainer's.
  void load(const cross_batch_checkpoint& parts, const lora_adapters<G, D>* adapters) {
    const auto& c = m_model.config;
    require<shape_error>(parts.hidden_size == c.hidden_size && parts.num_layers == c.num_layers,
                         "method_trainer::load: checkpoint of another model");
    if (parts.has_head()) m_head = cast_to<G, D>(parts.lm_head);
    require(parts.mixer.has_value() == m_mixer.has_value(), "method_trainer::load: the checkpoint " +
                std::string(parts.mixer ? "has" : "has no") + " mixer, method " + to_string(m_opt.method) +
                (m_mixer ? " has one" : " has none"));
    if (parts.mixer) {
      require(parts.mixer->config.same_shapes(m_mixer->config) && parts.mixer->config.combine == m_mixer->config.combine,
              "method_trainer::load: the checkpoint's mixer differs from this method's (scale/gate, heads)");
      m_mixer = parts.mixer->template cast<G, D>();
    }
    if (adapters) {
      require(has_lora(m_opt.method), "method_trainer::load: adapters for a method without LoRA");
      adapters->for_each([&](int l, lora_slot s, const lora_module<G, D>& m) {
        auto* mine = m_adapters.find(l, s);
        require(mine != nullptr, "method_trainer::load: the checkpoint adapts a module this trainer does not");
        mine->a = to_device<D>(to_host(m.a));
        mine->b = to_device<D>(to_host(m.b));
      });
    }
  }

  // The trained head (if trained) and mixer as a cross-batch checkpoint (float32, host).
  cross_batch_checkpoint parts() const {
    cross_batch_checkpoint ck;
    ck.method = to_string(m_opt.method);
    if (m_mixer) ck.mixer = m_mixer->template cast<float, cpu>();
    if (m_opt.trains_head()) {
      const auto h = to_host(m_head);
      ck.lm_head = tensor<float>(h.shape());
      for (index_t i = 0; i < h.size(); ++i) ck.lm_head.data()[i] = static_cast<float>(h.data()[i]);
    }
    ck.mix_layer = m_mixer ? m_opt.mix_layer : -1;
    ck.projection = m_k < m_L ? m_opt.projection : mix_projection::project;
    ck.hidden_size = m_model.config.hidden_size;
    ck.vocab_size = m_model.config.vocab_size;
    ck.num_layers = m_L;
    return ck;
  }

  // Forward (and with train, backward) of one batch: (summed loss, tokens). Gradients of the
  // mean loss accumulate into the registered gradient tensors.
  std::pair<double, long> run(const qa_batch& b, bool train, bool with_mixer = true) {
    using cv = tensor_view<const G, D>;
    const index_t B = b.batch, Tn = b.length, C = m_model.config.hidden_size, BT = B * Tn,
                  Tm = b.steps, R = Tm * B, N = b.tokens();
    if (N == 0) return {0.0, 0};
    const bool mixing = m_mixer && with_mixer;
    const int k = mixing ? m_k : m_L;
    const bool cont = mixing && k < m_L && m_opt.projection == mix_projection::continue_layers;
    const bool adapters = train && m_opt.trains_adapters();
    // Which layers need a backward pass: all of them for the adapters; [k, L) so that the
    // gradient reaches the mixer in continue mode; none otherwise.
    const int low_end = mixing && k < m_L ? k : m_L;  // forward [0, low_end) first
    const bool grad_hi = train && (adapters || (cont && m_opt.trains_mixer()));
    upload(b);
    token_batch tb = tokens_of(b);
    tensor<G, D> x({BT, C});
    m_decoder.embed(m_ctx, tb, x.view());
    m_decoder.forward(m_ctx, tb, 0, low_end, x.view(), m_saved_lo, adapters);
    tensor<G, D> H({R, C}), M({R, C});  // answer-grid states before / after mixing
    auto step = [&](tensor<G, D>& t, index_t s) { return tensor_view<G, D>(t.data() + s * B * C, {B, C}); };
    auto grp = [&](index_t s) { return tensor_view<const std::int32_t, D>(m_grid_groups.data() + s * B, {B}); };
    if (m_ws.size() < std::size_t(Tm)) m_ws.resize(std::size_t(Tm));
    auto mix_grid = [&](tensor<G, D>& in, tensor<G, D>& out) {
      for (index_t s = 0; s < Tm; ++s) mixer_forward(m_ctx, *m_mixer, step(out, s), cv(step(in, s)), grp(s), m_ws[s]);
    };
    tensor<G, D> feat_pre({N, C}), feat({N, C});  // head input before / after the final norm
    bool normed = true;
    if (mixing && k < m_L) {
      gather_rows(m_ctx, H.view(), cv(x.view()), ints(m_grid_rows));
      mix_grid(H, M);
      if (cont) {
        scatter_rows(m_ctx, x.view(), cv(M.view()), ints(m_grid_rows));
        m_decoder.forward(m_ctx, tb, k, m_L, x.view(), m_saved_hi, grad_hi);
        gather_rows(m_ctx, feat_pre.view(), cv(x.view()), ints(m_token_rows));
      } else {
        gather_rows(m_ctx, feat_pre.view(), cv(M.view()), ints(m_token_grid));
        normed = m_opt.projection == mix_projection::project;
      }
      if (normed) final_norm(feat.view(), cv(feat_pre.view()));
      else copy_rows(m_ctx, feat.view(), cv(feat_pre.view()));
    } else {
      gather_rows(m_ctx, H.view(), cv(x.view()), ints(m_grid_rows));
      tensor<G, D> Hn({R, C});
      final_norm(Hn.view(), cv(H.view()));
      if (mixing) mix_grid(Hn, M);
      gather_rows(m_ctx, feat.view(), cv((mixing ? M : Hn).view()), ints(m_token_grid));
      H = std::move(Hn);  // the mixer's input at k = L
    }
    tensor<G, D> logits({N, index_t(m_head.dim(0))});
    gemm(m_ctx, logits.view(), cv(feat.view()), cv(m_head.view()), false, true);
    const double loss = softmax_xent(m_ctx, logits.view(), ints(m_targets), train ? G(1) / G(N) : G(0));
    if (!train) return {loss, long(N)};

    // Backward.
    if (m_opt.trains_head())
      gemm(m_ctx, m_head_grad.view(), cv(logits.view()), cv(feat.view()), true, false, G(1), G(1));
    const bool need_dx = m_opt.trains_mixer() || adapters;
    if (!need_dx) return {loss, long(N)};
    tensor<G, D> dfeat({N, C});
    gemm(m_ctx, dfeat.view(), cv(logits.view()), cv(m_head.view()), false, false);
    tensor<G, D> dx({BT, C}), dM({R, C}), dH({R, C});
    auto mixer_back = [&](tensor<G, D>& in, bool input_grad) {
      for (index_t s = 0; s < Tm; ++s) {
        mixer_backward(m_ctx, *m_mixer, *m_mixer_grad, cv(step(in, s)), cv(step(dM, s)), m_ws[s], m_bw);
        if (input_grad) mixer_input_backward(m_ctx, *m_mixer, step(dH, s), cv(step(in, s)), cv(step(dM, s)), m_ws[s], m_bw);
      }
    };
    if (mixing && k < m_L) {
      tensor<G, D> dpre({N, C});
      if (normed) final_norm_backward(dpre.view(), cv(dfeat.view()), cv(feat_pre.view()));
      else copy_rows(m_ctx, dpre.view(), cv(dfeat.view()));
      if (cont) {
        fill(m_ctx, dx.view(), G(0));
        scatter_rows(m_ctx, dx.view(), cv(dpre.view()), ints(m_token_rows));
        m_decoder.backward(m_ctx, dx.view(), k, m_L, m_saved_hi);  // dx: d loss / d (layer-k input)
        gather_rows(m_ctx, dM.view(), cv(dx.view()), ints(m_grid_rows));
      } else {
        fill(m_ctx, dM.view(), G(0));
        scatter_rows(m_ctx, dM.view(), cv(dpre.view()), ints(m_token_grid));
        fill(m_ctx, dx.view(), G(0));
      }
      mixer_back(H, adapters);
      if (!adapters) return {loss, long(N)};
      // The mixed rows' gradient goes through the mixer to its input (residual path included).
      scatter_rows(m_ctx, dx.view(), cv(dH.view()), ints(m_grid_rows));
      m_decoder.backward(m_ctx, dx.view(), 0, k, m_saved_lo);
      return {loss, long(N)};
    }
    fill(m_ctx, dM.view(), G(0));
    scatter_rows(m_ctx, dM.view(), cv(dfeat.view()), ints(m_token_grid));
    if (mixing) mixer_back(H, adapters);
    else copy_rows(m_ctx, dH.view(), cv(dM.view()));
    if (!adapters) return {loss, long(N)};
    // dH is d loss / d final_norm(h_L) on the grid: through the final norm to the residual stream.
    tensor<G, D> Hraw({R, C}), dHraw({R, C});
    gather_rows(m_ctx, Hraw.view(), cv(x.view()), ints(m_grid_rows));
    final_norm_backward(dHraw.view(), cv(dH.view()), cv(Hraw.view()));
    fill(m_ctx, dx.view(), G(0));
    scatter_rows(m_ctx, dx.view(), cv(dHraw.view()), ints(m_grid_rows));
    m_decoder.backward(m_ctx, dx.view(), 0, m_L, m_saved_lo);
    return {loss, long(N)};
  }

  // The batch of examples `which` of ex (their groups, or the control's regrouping).
  static qa_batch batch_of(const std::vector<qa_example>& ex, const std::vector<std::size_t>& which, bool control,
                           long* same_pairs) {
    std::vector<const qa_example*> p;
    std::vector<int> groups;
    for (std::size_t i : which) {
      p.push_back(&ex[i]);
      groups.push_back(ex[i].group);
    }
    if (control) groups = control_groups(groups, same_pairs);
    return make_qa_batch(p, groups);
  }

 private:
  static lora_adapters<G, D> make_adapters(const decoder_model<T, D>& model, const method_options& opt) {
    lora_config c = opt.lora;
    c.seed = opt.seed;
    return lora_adapters<G, D>::create(model.config, c);
  }
  void register_adapters() {
    m_adapters.add_to(m_adam);
  }
  void zero_adapter_grads() { m_adapters.zero_grad(m_ctx); }

  token_batch tokens_of(const qa_batch& b) const {
    token_batch t;
    t.batch = b.batch;
    t.length = b.length;
    t.ids = b.ids;
    t.valid = b.valid;
    t.positions = b.positions;
    return t;
  }

  void final_norm(tensor_view<G, D> out, tensor_view<const G, D> in) const {
    frozen_norm(m_ctx, m_norm.kind, out, in, m_norm.weight.view(), m_norm.bias.view(), m_norm.eps);
  }
  void final_norm_backward(tensor_view<G, D> dx, tensor_view<const G, D> dy, tensor_view<const G, D> x) const {
    frozen_norm_backward(m_ctx, m_norm.kind, dx, dy, x, m_norm.weight.view(), m_norm.eps);
  }

  template <class S, class E>
  static tensor<S, E> cast_to(const tensor<float>& h) {
    tensor<S> t(h.shape());
    for (index_t i = 0; i < h.size(); ++i) t.data()[i] = static_cast<S>(h.data()[i]);
    return to_device<E>(t);
  }
  static tensor_view<const std::int32_t, D> ints(const tensor<std::int32_t, D>& t) { return t.view(); }
  static void put(tensor<std::int32_t, D>& dst, const std::vector<std::int32_t>& src) {
    require(!src.empty(), "method_trainer: empty index list");
    if (dst.size() != index_t(src.size())) dst = tensor<std::int32_t, D>({index_t(src.size())});
    device_traits<D>::upload(dst.data(), src.data(), sizeof(std::int32_t) * src.size());
  }
  void upload(const qa_batch& b) {
    put(m_grid_rows, b.grid_rows);
    put(m_grid_groups, b.grid_groups);
    put(m_token_grid, b.token_grid);
    put(m_token_rows, b.token_rows);
    put(m_targets, b.targets);
  }

  const context<D>& m_ctx;
  const decoder_model<T, D>& m_model;
  method_options m_opt;
  int m_L, m_k;
  lora_adapters<G, D> m_adapters;
  lora_decoder<T, G, D> m_decoder;
  lora_activations<G, D> m_saved_lo, m_saved_hi;
  tensor<G, D> m_head, m_head_grad;
  head_input<G, D> m_norm;
  std::optional<mixer_weights<G, D>> m_mixer, m_mixer_grad;
  adamw<G, D> m_adam;
  std::optional<lr_schedule> m_schedule;
  tensor<std::int32_t, D> m_grid_rows, m_grid_groups, m_token_grid, m_token_rows, m_targets;
  std::vector<mixer_workspace<G, D>> m_ws;
  mixer_backward_workspace<G, D> m_bw;
};

}  // namespace crossbatch
