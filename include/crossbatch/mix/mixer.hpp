// Cross-batch mixers (DESIGN.md's batch_mixer policy: mix(ctx, hidden (B, C), groups) -> hidden):
// every sample of a batch receives information from the other samples of its group through a
// trainable module: cross_batch_attention (multi-head Q/K/V/O over the batch dimension) or
// embedding_mixer (cosine-similarity weights), combined in alpha, scale or gate mode (config.hpp).
// Self is always excluded; samples of different groups never influence each other; a negative
// group id takes a sample out (finished sequences); a sample with no eligible partner gets its own
// state back exactly. The forward pass is device-generic (CPU ops in mix/cpu_ops.hpp, CUDA ops in
// mix/cuda/ops.cuh) and leaves its intermediates in a workspace that the training backward reads.
#pragma once

#include <concepts>
#include <cstdint>
#include <span>
#include <vector>

#include "crossbatch/core/context.hpp"
#include "crossbatch/core/transfer.hpp"
#include "crossbatch/mix/config.hpp"
#include "crossbatch/mix/cpu_ops.hpp"
#include "crossbatch/mix/weights.hpp"

namespace crossbatch {

// Scratch and intermediates of one forward pass over B samples (device D).
template <class T, class D = cpu>
struct mixer_workspace {
  using A = mix_accum_t<T>;
  index_t batch = -1;
  tensor<T, D> proj;                 // (B, 3C) q|k|v, or (B, 2C) s|v
  tensor<A, D> probs;                // (H, B, B)
  tensor<A, D> inv_norms;            // (B) embedding mixer
  tensor<std::int32_t, D> partners;  // (B) eligible partners per sample
  tensor<T, D> x;         // (B, C) weighted values (the cross term itself for the embedding mixer)
  tensor<T, D> info;      // (B, C) W_o x (attention)
  tensor<T, D> z;         // (B, 3C) gate input
  tensor<A, D> ln_stats;  // (B, 4)
  tensor<T, D> u, a1;     // (B, G) gate pre-activation and GELU
  tensor<T, D> gate_logits;        // (B, C)
  tensor<std::int32_t, D> groups;  // (B) device copy of host groups
  std::vector<int> host_groups;    // what `groups` holds

  mixer_config config;

  void reserve(const mixer_config& c, index_t b) {
    if (b == batch && c.same_shapes(config)) return;
    config = c;
    const index_t C = c.hidden_size, G = c.gate_width();
    proj = tensor<T, D>({b, c.proj_rows()});
    probs = tensor<A, D>({c.heads(), b, b});
    inv_norms = tensor<A, D>({b});
    partners = tensor<std::int32_t, D>({b});
    x = tensor<T, D>({b, C});
    if (c.kind == mixer_kind::attention) info = tensor<T, D>({b, C});
    if (c.combine == combine_mode::gate) {
      z = tensor<T, D>({b, 3 * C});
      ln_stats = tensor<A, D>({b, 4});
      u = tensor<T, D>({b, G});
      a1 = tensor<T, D>({b, G});
      gate_logits = tensor<T, D>({b, C});
    }
    groups = tensor<std::int32_t, D>({b});
    host_groups.clear();
    batch = b;
  }

  // The cross term I (B, C): W_o x for attention, x itself for the embedding mixer.
  tensor_view<const T, D> cross_term(const mixer_config& c) const {
    return c.kind == mixer_kind::attention ? info.view() : x.view();
  }

  // Uploads host group ids (only when they changed) and returns the device view.
  tensor_view<const std::int32_t, D> upload_groups(std::span<const int> g) {
    require<shape_error>(static_cast<index_t>(g.size()) == batch,
                         "mixer: need one group id per sample");
    if (host_groups.size() != g.size() || !std::equal(g.begin(), g.end(), host_groups.begin())) {
      host_groups.assign(g.begin(), g.end());
      std::vector<std::int32_t> h(g.begin(), g.end());
      device_traits<D>::upload(groups.data(), h.data(), sizeof(std::int32_t) * h.size());
    }
    return groups.view();
  }
};

// out (B, C) = mix of h (B, C) (out must not alias h) under groups (B) on the device; intermediates
// stay in ws. h and out may have a row stride.
template <class T, class D>
void mixer_forward(const context<D>& ctx, const mixer_weights<T, D>& w, tensor_view<T, D> out,
                   tensor_view<const T, D> h, tensor_view<const std::int32_t, D> groups,
                   mixer_workspace<T, D>& ws) {
  const auto& c = w.config;
  const index_t b = h.shape[0], C = c.hidden_size;
  require<shape_error>(h.rank() == 2 && h.shape[1] == C && out.shape == h.shape,
                       "mixer: hidden must be (B, " + std::to_string(C) + "), got " +
                           to_string(h.shape) + " -> " + to_string(out.shape));
  require<value_error>(out.data != h.data, "mixer: out must not alias hidden");
  require<shape_error>(groups.size() == b, "mixer: need one group id per sample");
  ws.reserve(c, b);
  mix_linear(ctx, ws.proj.view(), h, w.proj.view());
  const index_t pw = c.proj_rows();
  auto col = [&](index_t start) {
    return tensor_view<const T, D>(ws.proj.data() + start, {b, C}, {pw, 1});
  };
  const bool cosine = c.kind == mixer_kind::embedding;
  cross_attend(ctx, ws.x.view(), ws.probs.view(), ws.inv_norms.view(), ws.partners.view(), col(0),
               col(cosine ? 0 : C), col(cosine ? C : 2 * C), groups, c.heads(), c.score_scale(),
               cosine);
  if (c.kind == mixer_kind::attention)
    mix_linear(ctx, ws.info.view(), tensor_view<const T, D>(ws.x.view()), w.out.view());
  const auto info = ws.cross_term(c);
  if (c.combine == combine_mode::gate) {
    gate_input(ctx, ws.z.view(), ws.ln_stats.view(), h, info, w.ln_h_w.view(), w.ln_h_b.view(),
               w.ln_a_w.view(), w.ln_a_b.view(), c.ln_eps);
    mix_linear(ctx, ws.u.view(), tensor_view<const T, D>(ws.z.view()), w.gate_w1.view(),
               w.gate_b1.view());
    mix_gelu(ctx, ws.a1.view(), tensor_view<const T, D>(ws.u.view()));
    mix_linear(ctx, ws.gate_logits.view(), tensor_view<const T, D>(ws.a1.view()), w.gate_w2.view(),
               w.gate_b2.view());
  }
  mix_combine(ctx, c.combine, out, h, info, w.mix.view(),
              tensor_view<const T, D>(ws.gate_logits.view()),
              tensor_view<const std::int32_t, D>(ws.partners.view()));
}

// A batch_mixer: mix(ctx, out (B, C), hidden (B, C), groups (B)) writes the mixed states.
template <class M, class T, class D>
concept batch_mixer = requires(M& m, const context<D>& ctx, tensor_view<T, D> out,
                               tensor_view<const T, D> h, std::span<const int> groups) {
  {m.mix(ctx, out, h, groups)};
};

// The identity (standard generation through the same code path).
struct identity_mixer {
  template <class T, class D>
  void mix(const context<D>& ctx, tensor_view<T, D> out, tensor_view<const T, D> h,
           std::span<const int>) {
    copy_rows(ctx, out, h);
  }
  template <class T, class D>
  void mix(const context<D>& ctx, tensor_view<T, D> out, tensor_view<const T, D> h,
           tensor_view<const std::int32_t, D>) {
    copy_rows(ctx, out, h);
  }
};

// A trainable mixer with its weights on device D and its own workspace.
template <class T, class D = cpu>
class cross_batch_mixer {
 public:
  mixer_weights<T, D> weights;

  cross_batch_mixer() = default;
  explicit cross_batch_mixer(mixer_weights<T, D> w) : weights(std::move(w)) {
    weights.config.validate();
  }

  const mixer_config& config() const { return weights.config; }

  // out (B, C) = mix(hidden (B, C)) with host group ids (B).
  void mix(const context<D>& ctx, tensor_view<T, D> out, tensor_view<const T, D> hidden,
           std::span<const int> groups) {
    m_ws.reserve(weights.config, hidden.shape[0]);
    mixer_forward(ctx, weights, out, hidden, m_ws.upload_groups(groups), m_ws);
  }
  // Same with group ids already on the device (no host synchronisation; CUDA-graph friendly).
  void mix(const context<D>& ctx, tensor_view<T, D> out, tensor_view<const T, D> hidden,
           tensor_view<const std::int32_t, D> groups) {
    mixer_forward(ctx, weights, out, hidden, groups, m_ws);
  }
  // Returning form: a new (B, C) tensor.
  tensor<T, D> mix(const context<D>& ctx, tensor_view<const T, D> hidden,
                   std::span<const int> groups) {
    tensor<T, D> out(hidden.shape);
    mix(ctx, out.view(), hidden, groups);
    return out;
  }

  const mixer_workspace<T, D>& workspace() const { return m_ws; }
  mixer_workspace<T, D>& workspace() { return m_ws; }

 private:
  mixer_workspace<T, D> m_ws;
};

// Multi-head attention over the batch dimension, fresh (seeded) weights.
template <class T, class D = cpu>
struct cross_batch_attention : cross_batch_mixer<T, D> {
  cross_batch_attention(int hidden_size, int num_heads, combine_mode combine, std::uint64_t seed,
                        const mixer_init& init = {}, float temperature = 1.0f)
      : cross_batch_mixer<T, D>(make(hidden_size, num_heads, combine, seed, init, temperature)) {}
  explicit cross_batch_attention(mixer_weights<T, D> w) : cross_batch_mixer<T, D>(std::move(w)) {
    require(this->weights.config.kind == mixer_kind::attention,
            "cross_batch_attention: weights of another kind");
  }

 private:
  static mixer_weights<T, D> make(int hidden, int heads, combine_mode m, std::uint64_t seed,
                                  const mixer_init& init, float temp) {
    mixer_config c;
    c.kind = mixer_kind::attention;
    c.combine = m;
    c.hidden_size = hidden;
    c.num_heads = heads;
    c.temperature = temp;
    return init_mixer<float>(c, seed, init).template cast<T, D>();
  }
};

// Cosine-similarity weights over the other samples, fresh (seeded) weights.
template <class T, class D = cpu>
struct embedding_mixer : cross_batch_mixer<T, D> {
  embedding_mixer(int hidden_size, combine_mode combine, std::uint64_t seed,
                  const mixer_init& init = {}, float temperature = 1.0f)
      : cross_batch_mixer<T, D>(make(hidden_size, combine, seed, init, temperature)) {}
  explicit embedding_mixer(mixer_weights<T, D> w) : cross_batch_mixer<T, D>(std::move(w)) {
    require(this->weights.config.kind == mixer_kind::embedding,
            "embedding_mixer: weights of another kind");
  }

 private:
  static mixer_weights<T, D> make(int hidden, combine_mode m, std::uint64_t seed,
                                  const mixer_init& init, float temp) {
    mixer_config c;
    c.kind = mixer_kind::embedding;
    c.combine = m;
    c.hidden_size = hidden;
    c.temperature = temp;
    return init_mixer<float>(c, seed, init).template cast<T, D>();
  }
};

}  // namespace crossbatch
