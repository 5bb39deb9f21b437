// The ARMT executors on the GPU: the same schedules as recurrent/sequential.hpp and
// recurrent/diagonal.hpp (lockstep mode), with the memory in float32 on the device
// (recurrent/cuda/memory.cuh). The diagonal step is one grouped layer: when every member holds
// the same number of sequences (always for batch 1), each of the four projections is ONE cuBLASLt
// strided-batched matmul over the layers' weights stacked [L, O, I] starting at layer lo
// (ops/cuda/strided_batched_linear.cuh); norms run per member with that member's weights, RoPE,
// attention and the MLP activation once over the whole group.
#pragma once

#include <map>
#include <span>
#include <vector>

#include "crossbatch/ops/cuda/strided_batched_linear.cuh"
#include "crossbatch/recurrent/armt_run.hpp"
#include "crossbatch/recurrent/diagonal.hpp"
#include "crossbatch/recurrent/cuda/memory.cuh"

namespace crossbatch {

// The decoder's per-layer weights stacked [L, ...] on the device (strided-batched operands).
template <class T>
struct stacked_layers {
  tensor<T, cuda> qkv_w, qkv_b, o_w, o_b, up_w, up_b, down_w, down_b;

  explicit stacked_layers(const decoder_model<T, cuda>& m) {
    auto stack = [&](auto member) {
      const auto& first = m.layers[0].*member;
      if (first.empty()) return tensor<T, cuda>();
      shape_t s = first.shape();
      s.insert(s.begin(), index_t(m.layers.size()));
      tensor<T, cuda> t(s);
      for (std::size_t l = 0; l < m.layers.size(); ++l)
        cuda_check(cudaMemcpy(t.data() + l * first.size(), (m.layers[l].*member).data(),
                              sizeof(T) * first.size(), cudaMemcpyDeviceToDevice),
                   "stack layer weights");
      return t;
    };
    using L = decoder_layer<T, cuda>;
    qkv_w = stack(&L::qkv_w), qkv_b = stack(&L::qkv_b), o_w = stack(&L::o_w), o_b = stack(&L::o_b);
    up_w = stack(&L::up_w), up_b = stack(&L::up_b), down_w = stack(&L::down_w);
    down_b = stack(&L::down_b);
  }
};

// An ARMT model on the device.
template <class T>
struct cuda_armt {
  decoder_model<T, cuda> base;
  armt_config armt;
  tensor<T, cuda> memory, memory_pos;     // (M, C), (M, C) or empty
  std::vector<device_armt_layer> layers;  // float32
  const model_config& config() const { return base.config; }

  static cuda_armt load(const std::string& dir, const std::string& armt_dir = "") {
    cuda_armt m;
    m.base = decoder_model<T, cuda>::load(dir);
    const std::string adir = armt_dir.empty() ? dir : armt_dir;
    m.armt = load_armt_config(adir + "/armt_config.json", m.base.config);
    auto w = armt_weights<T, cuda>::load(adir, m.armt, m.base.config);
    m.memory = std::move(w.memory);
    m.memory_pos = std::move(w.memory_pos);
    m.layers = upload_armt_layers(w.layers);
    return m;
  }
};

namespace armt_cuda {

// Per-call device buffers of the segment inputs: ids, positions, memory rows.
template <class T>
void segment_input(const context<cuda>& ctx, const cuda_armt<T>& m, const armt_cell& cell,
                   std::span<const int> tokens, tensor_view<T, cuda> x,
                   tensor<std::int32_t, cuda>& scratch) {
  const auto& a = m.armt;
  const index_t c = m.config().hidden_size, len = cell.len, mem = a.num_mem_tokens;
  std::vector<std::int32_t> host(2 * len + 2 * mem);
  for (index_t i = 0; i < len; ++i) host[i] = tokens[cell.start + i], host[len + i] = int(i);
  for (index_t j = 0; j < mem; ++j) host[2 * len + j] = int(j), host[2 * len + mem + j] = int(len + j);
  if (scratch.size() < index_t(host.size())) scratch = tensor<std::int32_t, cuda>({index_t(host.size())});
  device_traits<cuda>::upload(scratch.data(), host.data(), sizeof(std::int32_t) * host.size());
  auto ids = [&](index_t off, index_t n) {
    return tensor_view<const std::int32_t, cuda>(scratch.data() + off, {n});
  };
  m.base.embed_tokens(ctx, x.narrow(0, 0, len), ids(0, len), ids(len, len));
  auto xm = x.narrow(0, len, mem);
  embedding(ctx, xm, ids(2 * len, mem), tensor_view<const T, cuda>(m.memory.view()));
  if (m.config().kind == family::gpt2) {
    if (a.wrap_pos)
      embedding(ctx, xm, ids(2 * len, mem), tensor_view<const T, cuda>(m.memory_pos.view()), true);
    else
      embedding(ctx, xm, ids(2 * len + mem, mem), tensor_view<const T, cuda>(m.base.pos_embed.view()),
                true);
  }
  const index_t pad = a.segment_size - len;
  if (pad > 0)
    cuda_check(cudaMemsetAsync(x.data + (len + mem) * c, 0, sizeof(T) * pad * c, ctx.stream),
               "zero pad rows");
}

inline tensor<std::int32_t, cuda> positions(const armt_config& a, index_t sequences) {
  std::vector<std::int32_t> host(a.rows() * sequences);
  for (index_t s = 0; s < sequences; ++s) segment_positions(a, host.data() + s * a.rows());
  tensor<std::int32_t, cuda> t({index_t(host.size())});
  device_traits<cuda>::upload(t.data(), host.data(), sizeof(std::int32_t) * host.size());
  return t;
}

inline void record(armt_result& r, const armt_cell& cell, int l, const device_memory_state& s) {
  if (r.A_trace.empty()) return;
  const index_t C = s.At.dim(1), K = s.At.dim(2), layers = s.At.dim(0);
  std::vector<float> at(C * K), z(K);
  device_traits<cuda>::download(at.data(), s.At.data() + l * C * K, sizeof(float) * C * K);
  device_traits<cuda>::download(z.data(), s.z.data() + l * K, sizeof(float) * K);
  float* A = r.A_trace[cell.seq].data() + (cell.seg * layers + l) * K * C;
  for (index_t c = 0; c < C; ++c)
    for (index_t k = 0; k < K; ++k) A[k * C + c] = at[c * K + k];
  std::copy(z.begin(), z.end(), r.z_trace[cell.seq].data() + (cell.seg * layers + l) * K);
}

template <class T>
void emit_logits(const context<cuda>& ctx, const cuda_armt<T>& m,
                 const std::vector<std::vector<armt_cell>>& plan, const armt_cell& cell,
                 tensor_view<const T, cuda> x, const armt_options& opt, armt_result& r,
                 tensor<T, cuda>& hidden, tensor<T, cuda>& logits) {
  const bool last = cell.seg + 1 == int(plan[cell.seq].size());
  if (!opt.all_logits && !last) return;
  const index_t len = cell.len, v = m.config().vocab_size;
  auto h = tensor_view<T, cuda>(hidden.data(), {len, m.config().hidden_size});
  auto lg = tensor_view<T, cuda>(logits.data(), {len, v});
  m.base.final_norm(ctx, h, x.narrow(0, 0, len));
  m.base.logits(ctx, lg, h);
  const auto host = to_host(tensor_view<const T, cuda>(lg));
  float* out = r.logits[cell.seq].data() + (opt.all_logits ? index_t(cell.start) * v : 0);
  for (index_t i = 0; i < len * v; ++i) out[i] = static_cast<float>(host.data()[i]);
}

template <class T>
struct memory_hooks : hooks_base {
  const cuda_armt<T>& model;
  std::span<const armt_cell> cells;
  std::span<device_memory_state> states;
  bool enabled = true;
  memory_scratch* scratch = nullptr;
  armt_result* record_into = nullptr;

  void before_block(const context<cuda>& ctx, int l, tensor_view<T, cuda> x) const {
    if (!enabled) return;
    for (std::size_t b = 0; b < cells.size(); ++b)
      if (!cells[b].first())
        memory_read(ctx, x.select(b).narrow(0, 0, cells[b].len + model.armt.num_mem_tokens),
                    model.layers[l], states[cells[b].seq], l, model.armt, *scratch);
  }
  void after_block(const context<cuda>& ctx, int l, tensor_view<T, cuda> x) const {
    if (!enabled) return;
    for (std::size_t b = 0; b < cells.size(); ++b) {
      const auto& c = cells[b];
      memory_write(ctx,
                   tensor_view<const T, cuda>(x.select(b).narrow(0, c.len, model.armt.num_mem_tokens)),
                   model.layers[l], states[c.seq], l, c.first(), model.armt, *scratch);
      if (record_into) record(*record_into, c, l, states[c.seq]);
    }
  }
};

template <class T>
void norm_of(const context<cuda>& ctx, const model_config& c, tensor_view<T, cuda> out,
             tensor_view<const T, cuda> x, const tensor<T, cuda>& w, const tensor<T, cuda>& b) {
  if (c.kind == family::gpt2)
    layer_norm(ctx, out, x, tensor_view<const T, cuda>(w.view()), tensor_view<const T, cuda>(b.view()),
               c.norm_eps);
  else
    rms_norm(ctx, out, x, tensor_view<const T, cuda>(w.view()), c.norm_eps);
}

// Layers [lo, lo + G) of a stack as a (G, ...) view.
template <class T>
tensor_view<const T, cuda> layer_range(const tensor<T, cuda>& t, int lo, index_t g) {
  if (t.empty()) return {};
  shape_t s = t.shape();
  const index_t per = t.size() / s[0];
  s[0] = g;
  return tensor_view<const T, cuda>(t.data() + lo * per, s);
}

}  // namespace armt_cuda

template <class T>
armt_result armt_sequential(const context<cuda>& ctx, const cuda_armt<T>& m,
                            const std::vector<std::vector<int>>& seqs,
                            const armt_options& opt = {}) {
  const auto& c = m.config();
  const auto& a = m.armt;
  const auto plan = plan_segments(a, c, seqs);
  armt_result r = armt_detail::make_result(c, a, plan, opt);
  const index_t t = a.rows(), batch = index_t(seqs.size());
  std::size_t segments = 0;
  for (const auto& p : plan) segments = std::max(segments, p.size());
  std::vector<device_memory_state> states;
  for (std::size_t b = 0; b < seqs.size(); ++b) states.emplace_back(c.num_layers, a.d_key(), c.hidden_size);
  decoder_workspace<T, cuda> ws(c, batch * t);
  memory_scratch sc(t, c.hidden_size, a);
  tensor<T, cuda> x({batch, t, c.hidden_size}), hidden({t, c.hidden_size}), logits({t, c.vocab_size});
  tensor<std::int32_t, cuda> ids;
  const auto pos = armt_cuda::positions(a, batch);
  kv_cache<T, cuda> cache;
  index_t cache_batch = -1;
  for (std::size_t s = 0; s < segments; ++s) {
    std::vector<armt_cell> cells;
    for (const auto& p : plan)
      if (s < p.size()) cells.push_back(p[s]);
    const index_t b = index_t(cells.size());
    auto xs = tensor_view<T, cuda>(x.data(), {b, t, c.hidden_size});
    for (index_t i = 0; i < b; ++i)
      armt_cuda::segment_input(ctx, m, cells[i], std::span<const int>(seqs[cells[i].seq]),
                               xs.select(i), ids);
    if (cache_batch != b) cache = m.base.make_cache(int(b), int(t)), cache_batch = b;
    armt_cuda::memory_hooks<T> hooks{{}, m, cells, states, opt.memory, &sc,
                                     opt.record_states ? &r : nullptr};
    m.base.run_layers(ctx, xs, tensor_view<const std::int32_t, cuda>(pos.data(), {b * t}), cache,
                      0, causal{}, 0, c.num_layers, ws, hooks);
    for (index_t i = 0; i < b; ++i)
      armt_cuda::emit_logits(ctx, m, plan, cells[i], tensor_view<const T, cuda>(xs.select(i)), opt,
                             r, hidden, logits);
  }
  ctx.synchronize();
  for (std::size_t b = 0; b < seqs.size(); ++b) r.states[b] = states[b].to_host_state();
  return r;
}

// grouped_gemm: the four projections as strided-batched matmuls when the members are uniform
// (false: one matmul per member, the sequential executor's exact calls). mode: lockstep or
// amortised (one segment per slice, sequences back to back), as on the CPU.
template <class T>
armt_result armt_diagonal(const context<cuda>& ctx, const cuda_armt<T>& m,
                          const stacked_layers<T>& stack, const std::vector<std::vector<int>>& seqs,
                          const armt_options& opt = {}, bool grouped_gemm = true,
                          diagonal_mode mode = diagonal_mode::lockstep) {
  using namespace armt_cuda;
  const auto& c = m.config();
  const auto& a = m.armt;
  const auto plan = plan_segments(a, c, seqs);
  armt_result r = armt_detail::make_result(c, a, plan, opt);
  std::vector<std::vector<armt_cell>> slices;
  if (mode == diagonal_mode::amortised) {
    for (const auto& p : plan)
      for (const auto& cell : p) slices.push_back({cell});
  } else {
    for (std::size_t s = 0;; ++s) {
      std::vector<armt_cell> slice;
      for (const auto& p : plan)
        if (s < p.size()) slice.push_back(p[s]);
      if (slice.empty()) break;
      slices.push_back(std::move(slice));
    }
  }
  const int layers = c.num_layers, J = int(slices.size()), steps = J + layers - 1;
  const index_t t = a.rows(), cd = c.hidden_size;
  const index_t h = c.num_heads, hkv = c.num_kv_heads, dh = c.head_dim;
  index_t widest = 0;
  for (int i = 0; i < steps; ++i) {
    index_t w = 0;
    for (int l = std::max(0, i - J + 1); l <= std::min(i, layers - 1); ++l) w += index_t(slices[i - l].size());
    widest = std::max(widest, w);
  }
  std::vector<device_memory_state> states;
  for (std::size_t b = 0; b < seqs.size(); ++b) states.emplace_back(layers, a.d_key(), c.hidden_size);
  decoder_workspace<T, cuda> w(c, widest * t);
  kv_cache<T, cuda> kv(1, int(widest), int(hkv), int(t), int(dh));
  memory_scratch sc(t, cd, a);
  const auto pos = armt_cuda::positions(a, widest);
  tensor<T, cuda> hidden({t, cd}), logits({t, c.vocab_size});
  tensor<std::int32_t, cuda> ids;
  // Slice j's residual stream lives in ring[j % L] from step j to step j + L - 1 (allocated once:
  // a cudaFree per segment would synchronise the device every step).
  index_t widest_slice = 0;
  for (const auto& sl : slices) widest_slice = std::max(widest_slice, index_t(sl.size()));
  std::vector<tensor<T, cuda>> ring;
  for (int k = 0; k < std::min(layers, J); ++k) ring.emplace_back(shape_t{widest_slice, t, cd});
  auto live = [&](int j) {
    return tensor_view<T, cuda>(ring[j % layers].data(), {index_t(slices[j].size()), t, cd});
  };
  const index_t width = w.qkv.dim(1);
  for (int i = 0; i < steps; ++i) {
    const int lo = std::max(0, i - J + 1), hi = std::min(i, layers - 1);
    const index_t g_count = hi - lo + 1;
    if (i < J)
      for (std::size_t k = 0; k < slices[i].size(); ++k)
        armt_cuda::segment_input(ctx, m, slices[i][k], std::span<const int>(seqs[slices[i][k].seq]),
                                 live(i).select(index_t(k)), ids);
    // Members in layer order; member g's rows start at offset[g] * T.
    std::vector<index_t> offset, count;
    index_t seqs_in = 0;
    bool uniform = true;
    for (int l = lo; l <= hi; ++l) {
      offset.push_back(seqs_in);
      count.push_back(index_t(slices[i - l].size()));
      seqs_in += count.back();
      uniform = uniform && count.back() == count.front();
    }
    const index_t n = seqs_in * t;
    auto xg = [&](int l) { return live(i - l); };
    auto x2 = [&](int l) {
      auto v = xg(l);
      return v.reshape({v.shape[0] * t, cd});
    };
    auto rows = [&](tensor<T, cuda>& buf, int l) {
      const index_t g = l - lo;
      return tensor_view<T, cuda>(buf.data() + offset[g] * t * buf.dim(1), {count[g] * t, buf.dim(1)});
    };
    auto cv = [](tensor_view<T, cuda> v) { return tensor_view<const T, cuda>(v); };
    if (opt.memory)
      for (int l = lo; l <= hi; ++l) {
        const auto& slice = slices[i - l];
        for (std::size_t k = 0; k < slice.size(); ++k)
          if (!slice[k].first())
            memory_read(ctx, xg(l).select(index_t(k)).narrow(0, 0, slice[k].len + a.num_mem_tokens),
                        m.layers[l], states[slice[k].seq], l, a, sc);
      }
    // The grouped layer (decoder_block's ops in its order).
    const bool batched = grouped_gemm && uniform;
    auto project = [&](tensor<T, cuda>& out, tensor<T, cuda>& in, const tensor<T, cuda>& w_stack,
                       const tensor<T, cuda>& b_stack, auto member_w, auto member_b) {
      if (batched) {
        const index_t rows_per = count[0] * t;
        strided_batched_linear(
            ctx, tensor_view<T, cuda>(out.data(), {g_count, rows_per, out.dim(1)}),
            tensor_view<const T, cuda>(in.data(), {g_count, rows_per, in.dim(1)}),
            layer_range(w_stack, lo, g_count), layer_range(b_stack, lo, g_count));
      } else {
        for (int l = lo; l <= hi; ++l)
          linear(ctx, rows(out, l), cv(rows(in, l)),
                 tensor_view<const T, cuda>((m.base.layers[l].*member_w).view()),
                 tensor_view<const T, cuda>((m.base.layers[l].*member_b).view()));
      }
    };
    using LW = decoder_layer<T, cuda>;
    for (int l = lo; l <= hi; ++l)
      norm_of(ctx, c, rows(w.h, l), cv(x2(l)), m.base.layers[l].norm1_w, m.base.layers[l].norm1_b);
    project(w.qkv, w.h, stack.qkv_w, stack.qkv_b, &LW::qkv_w, &LW::qkv_b);
    auto part = [&](index_t off, index_t heads) {
      return tensor_view<T, cuda>(w.qkv.data() + off, {seqs_in, t, heads, dh}, {t * width, width, dh, 1});
    };
    auto q = part(0, h), k = part(h * dh, hkv), v = part((h + hkv) * dh, hkv);
    const auto posv = tensor_view<const std::int32_t, cuda>(pos.data(), {n});
    if (c.uses_rope()) {
      apply_rope(ctx, tensor_view<T, cuda>(q.data, {n, h, dh}, {width, dh, 1}), posv,
                 tensor_view<const float, cuda>(m.base.inv_freq.view()));
      apply_rope(ctx, tensor_view<T, cuda>(k.data, {n, hkv, dh}, {width, dh, 1}), posv,
                 tensor_view<const float, cuda>(m.base.inv_freq.view()));
    }
    auto keys = kv.keys(0).narrow(0, 0, seqs_in), values = kv.values(0).narrow(0, 0, seqs_in);
    write_kv(ctx, keys, cv(k), 0);
    write_kv(ctx, values, cv(v), 0);
    attention(ctx, tensor_view<T, cuda>(w.attn.data(), {seqs_in, t, h, dh}), cv(q), cv(keys),
              cv(values), causal{}, attention_shape{0, int(t), 1.0f / std::sqrt(float(dh))});
    project(w.o, w.attn, stack.o_w, stack.o_b, &LW::o_w, &LW::o_b);
    for (int l = lo; l <= hi; ++l)
      residual_norm(ctx, c.kind == family::gpt2 ? norm_kind::layer : norm_kind::rms, x2(l),
                    cv(rows(w.o, l)), rows(w.h, l),
                    tensor_view<const T, cuda>(m.base.layers[l].norm2_w.view()),
                    tensor_view<const T, cuda>(m.base.layers[l].norm2_b.view()), c.norm_eps);
    project(w.mlp, w.h, stack.up_w, stack.up_b, &LW::up_w, &LW::up_b);
    auto mlp = tensor_view<const T, cuda>(w.mlp.data(), {n, w.mlp.dim(1)});
    auto act = tensor_view<T, cuda>(w.act.data(), {n, w.act.dim(1)});
    if (c.kind == family::gpt2)
      activate(ctx, c.act, act, mlp);
    else
      gated_activation(ctx, c.act, act, mlp);
    project(w.h, w.act, stack.down_w, stack.down_b, &LW::down_w, &LW::down_b);
    for (int l = lo; l <= hi; ++l) add_inplace(ctx, x2(l), cv(rows(w.h, l)));
    if (opt.memory)
      for (int l = lo; l <= hi; ++l) {
        const auto& slice = slices[i - l];
        for (std::size_t kk = 0; kk < slice.size(); ++kk) {
          const auto& cell = slice[kk];
          memory_write(ctx,
                       tensor_view<const T, cuda>(xg(l).select(index_t(kk)).narrow(0, cell.len, a.num_mem_tokens)),
                       m.layers[l], states[cell.seq], l, cell.first(), a, sc);
          if (opt.record_states) record(r, cell, l, states[cell.seq]);
        }
      }
    if (hi == layers - 1) {
      const int j = i - (layers - 1);
      for (std::size_t kk = 0; kk < slices[j].size(); ++kk)
        emit_logits(ctx, m, plan, slices[j][kk], tensor_view<const T, cuda>(live(j).select(index_t(kk))),
                    opt, r, hidden, logits);
    }
  }
  ctx.synchronize();
  for (std::size_t b = 0; b < seqs.size(); ++b) r.states[b] = states[b].to_host_state();
  return r;
}

}  // namespace crossbatch
