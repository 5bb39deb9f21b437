// The ARMT executors on the GPU: the same schedules as recurrent/sequential.hpp and
// recurrent/diagonal.hpp, with the memory in float32 on the device (recurrent/cuda/memory.cuh).
//
// Both executors run every layer through ONE function, grouped_layer(): a group of members, each
// a block of sequences at its own layer (the sequential executor: one member, the diagonal one:
// every active layer of the step). Its four projections go through the pinned strided-batched
// matmul (ops/cuda/strided_batched_linear.cuh): one call over the whole group when the members
// hold the same number of sequences (always for batch 1), else one call per member; RoPE, the
// causal attention over all sequences of the group (recurrent/cuda/segment_attention.cuh: the
// engine's attention op, on tensor cores in 16 bits) and the MLP activation run once over the
// group; norms per member with its layer's weights. The memory reads and writes of a step are
// batched over all its cells (one pinned matmul per run of consecutive layers). Since a member's
// rows get the same kernels, in the same reduction order, whichever group they are in, the
// diagonal executor computes the sequential executor's bits (the GPU tests check it at 1e-6
// relative, and exactly where it must be exact).
// gemm_mode::heuristic is the base model's own linear() (each shape's heuristic algorithm): the
// fastest choice for a lone call but not batch-invariant; the benchmark times the sequential
// executor with it too, so that the speed-up is not bought with a slower sequential baseline.
#pragma once

#include <algorithm>
#include <chrono>
#include <numeric>
#include <span>
#include <vector>

#include "crossbatch/ops/cuda/strided_batched_linear.cuh"
#include "crossbatch/recurrent/armt_run.hpp"
#include "crossbatch/recurrent/diagonal.hpp"
#include "crossbatch/recurrent/cuda/memory.cuh"
#include "crossbatch/recurrent/cuda/segment_attention.cuh"

namespace crossbatch {

// The decoder's per-layer weights stacked [L, ...] on the device (strided-batched operands).
template <class T>
struct stacked_layers {
  tensor<T, cuda> qkv_w, qkv_b, o_w, o_b, up_w, up_b, down_w, down_b;

  stacked_layers() = default;
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

// An ARMT model on the device; `stack` holds the decoder's layers stacked (build it with
// stack_layers() after filling `base` by hand; load() does it).
template <class T>
struct cuda_armt {
  decoder_model<T, cuda> base;
  armt_config armt;
  tensor<T, cuda> memory, memory_pos;  // (M, C), (M, C) or empty
  device_armt_weights layers;          // float32, stacked per layer
  stacked_layers<T> stack;
  const model_config& config() const { return base.config; }
  void stack_layers() { stack = stacked_layers<T>(base); }

  static cuda_armt load(const std::string& dir, const std::string& armt_dir = "") {
    cuda_armt m;
    m.base = decoder_model<T, cuda>::load(dir);
    const std::string adir = armt_dir.empty() ? dir : armt_dir;
    m.armt = load_armt_config(adir + "/armt_config.json", m.base.config);
    auto w = armt_weights<T, cuda>::load(adir, m.armt, m.base.config);
    m.memory = std::move(w.memory);
    m.memory_pos = std::move(w.memory_pos);
    m.layers = upload_armt_layers(w.layers);
    m.stack_layers();
    return m;
  }
};

// How grouped_layer runs its projections.
enum class gemm_mode {
  batched,     // one pinned strided-batched matmul over the group when the members are uniform
  per_member,  // one pinned matmul per member (same bits as batched)
  heuristic,   // linear(): each shape's own heuristic algorithm (not batch-invariant)
};

template <class T>
struct cuda_group_member {
  int layer = 0;
  tensor_view<T, cuda> x;  // (b, T, C): the member's residual stream, in place
};

// Buffers for up to `sequences` sequences of T rows per step.
template <class T>
struct cuda_group_workspace {
  decoder_workspace<T, cuda> block;
  tensor<std::int32_t, cuda> pos;  // (sequences * T): every segment's positions 0 .. T-1
  tensor<std::int32_t, cuda> iota;  // (T + M): 0, 1, ... (ids of memory rows, positions)
  memory_scratch memory;
  index_t sequences = 0, rows = 0;

  cuda_group_workspace(const model_config& c, const armt_config& a, index_t sequences_,
                       index_t memory_cells)
      : block(c, sequences_ * a.rows()),
        memory(memory_cells, c.hidden_size, a),
        sequences(sequences_),
        rows(a.rows()) {
    std::vector<std::int32_t> p(sequences_ * a.rows()), i(a.rows() + a.num_mem_tokens);
    for (index_t s = 0; s < sequences_; ++s) segment_positions(a, p.data() + s * a.rows());
    for (std::size_t k = 0; k < i.size(); ++k) i[k] = std::int32_t(k);
    pos = tensor<std::int32_t, cuda>({index_t(p.size())});
    iota = tensor<std::int32_t, cuda>({index_t(i.size())});
    device_traits<cuda>::upload(pos.data(), p.data(), sizeof(std::int32_t) * p.size());
    device_traits<cuda>::upload(iota.data(), i.data(), sizeof(std::int32_t) * i.size());
  }
};

namespace armt_cuda {

template <class T>
tensor_view<const T, cuda> cv(tensor_view<T, cuda> v) {
  return v;
}

template <class T>
void norm_of(const context<cuda>& ctx, const model_config& c, tensor_view<T, cuda> out,
             tensor_view<const T, cuda> x, const tensor<T, cuda>& w, const tensor<T, cuda>& b) {
  if (c.kind == family::gpt2)
    layer_norm(ctx, out, x, tensor_view<const T, cuda>(w.view()),
               tensor_view<const T, cuda>(b.view()), c.norm_eps);
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

// Every token id of every sequence on the device, back to back.
struct device_tokens {
  tensor<std::int32_t, cuda> ids;
  std::vector<index_t> offset;
  explicit device_tokens(const std::vector<std::vector<int>>& seqs) {
    std::vector<std::int32_t> all;
    for (const auto& s : seqs) offset.push_back(index_t(all.size())), all.insert(all.end(), s.begin(), s.end());
    ids = tensor<std::int32_t, cuda>({index_t(all.size())});
    device_traits<cuda>::upload(ids.data(), all.data(), sizeof(std::int32_t) * all.size());
  }
};

// x (T, C) = the cell's segment input (recurrent/segments.hpp): text embeddings, memory rows,
// zero pad rows. No host transfer: ids and positions are views of device buffers.
template <class T>
void segment_input(const context<cuda>& ctx, const cuda_armt<T>& m, const armt_cell& cell,
                   const device_tokens& tokens, const cuda_group_workspace<T>& ws,
                   tensor_view<T, cuda> x) {
  const auto& a = m.armt;
  const index_t c = m.config().hidden_size, len = cell.len, mem = a.num_mem_tokens;
  auto view = [](const std::int32_t* p, index_t n) { return tensor_view<const std::int32_t, cuda>(p, {n}); };
  m.base.embed_tokens(ctx, x.narrow(0, 0, len), view(tokens.ids.data() + tokens.offset[cell.seq] + cell.start, len),
                      view(ws.iota.data(), len));
  auto xm = x.narrow(0, len, mem);
  embedding(ctx, xm, view(ws.iota.data(), mem), tensor_view<const T, cuda>(m.memory.view()));
  if (m.config().kind == family::gpt2) {
    if (a.wrap_pos)
      embedding(ctx, xm, view(ws.iota.data(), mem), tensor_view<const T, cuda>(m.memory_pos.view()),
                true);
    else
      embedding(ctx, xm, view(ws.iota.data() + len, mem),
                tensor_view<const T, cuda>(m.base.pos_embed.view()), true);
  }
  const index_t pad = a.segment_size - len;
  if (pad > 0)
    cuda_check(cudaMemsetAsync(x.data + (len + mem) * c, 0, sizeof(T) * pad * c, ctx.stream),
               "zero pad rows");
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

// The logits an executor keeps, on the device until the run is over (per sequence (rows, V)).
template <class T>
struct device_logits {
  std::vector<tensor<T, cuda>> rows;
  tensor<T, cuda> hidden;
  device_logits(const std::vector<std::vector<armt_cell>>& plan, const model_config& c,
                const armt_config& a, const armt_options& opt)
      : hidden({a.segment_size, c.hidden_size}) {
    for (const auto& cells : plan)
      rows.emplace_back(shape_t{opt.all_logits ? cells.back().start + cells.back().len
                                               : cells.back().len,
                                c.vocab_size});
  }
  // Final norm + LM head of a finished cell's text rows (x: its (T, C) last-layer output).
  void emit(const context<cuda>& ctx, const cuda_armt<T>& m,
            const std::vector<std::vector<armt_cell>>& plan, const armt_cell& cell,
            tensor_view<const T, cuda> x, const armt_options& opt) {
    const bool last = cell.seg + 1 == int(plan[cell.seq].size());
    if (!opt.all_logits && !last) return;
    const index_t len = cell.len, v = m.config().vocab_size;
    auto h = tensor_view<T, cuda>(hidden.data(), {len, m.config().hidden_size});
    m.base.final_norm(ctx, h, x.narrow(0, 0, len));
    auto out = tensor_view<T, cuda>(rows[cell.seq].data() + (opt.all_logits ? cell.start * v : 0),
                                    {len, v});
    m.base.logits(ctx, out, cv(h));
  }
  void to_result(armt_result& r) const {
    for (std::size_t b = 0; b < rows.size(); ++b) {
      const auto host = to_host(rows[b]);
      float* out = r.logits[b].data();
      for (index_t i = 0; i < host.size(); ++i) out[i] = static_cast<float>(host.data()[i]);
    }
  }
};

// Waits for the device, then downloads the results; keep: the device states are moved there
// (generation continues from them) instead of being downloaded.
template <class T>
void finish(const context<cuda>& ctx, armt_result& r, const device_logits<T>& logits,
            std::vector<device_memory_state>& states, std::chrono::steady_clock::time_point t0,
            std::vector<device_memory_state>* keep) {
  ctx.synchronize();
  r.compute_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  logits.to_result(r);
  if (keep) {
    *keep = std::move(states);
    return;
  }
  for (std::size_t b = 0; b < states.size(); ++b) r.states[b] = states[b].to_host_state();
}

}  // namespace armt_cuda

// One grouped decoder layer: every member's layer on its x (decoder_block's ops in its order).
// Member g's rows lie at workspace row offset (sum of the earlier members' sequences) * T.
template <class T>
void grouped_layer(const context<cuda>& ctx, const cuda_armt<T>& m,
                   std::span<const cuda_group_member<T>> members, cuda_group_workspace<T>& ws,
                   gemm_mode mode = gemm_mode::batched) {
  using namespace armt_cuda;
  const auto& c = m.config();
  const index_t t = ws.rows, cd = c.hidden_size;
  const index_t h = c.num_heads, hkv = c.num_kv_heads, dh = c.head_dim;
  std::vector<index_t> offset, count;
  index_t seqs = 0;
  bool uniform = true;
  for (const auto& g : members) {
    require<shape_error>(g.x.rank() == 3 && g.x.shape[1] == t && g.x.shape[2] == cd,
                         "grouped_layer: member x must be (b, T, C), got " + to_string(g.x.shape));
    offset.push_back(seqs);
    count.push_back(g.x.shape[0]);
    seqs += g.x.shape[0];
    uniform = uniform && count.back() == count.front();
  }
  for (std::size_t g = 1; g < members.size(); ++g)
    require(members[g].layer == members[g - 1].layer + 1,
            "grouped_layer: members must be at consecutive layers");
  require(seqs <= ws.sequences, "grouped_layer: the group holds " + std::to_string(seqs) +
                                    " sequences, the workspace " + std::to_string(ws.sequences));
  const index_t n = seqs * t;
  const int lo = members.front().layer;
  const index_t groups = index_t(members.size());
  auto& w = ws.block;
  auto rows = [&](tensor<T, cuda>& buf, std::size_t g) {
    return tensor_view<T, cuda>(buf.data() + offset[g] * t * buf.dim(1), {count[g] * t, buf.dim(1)});
  };
  auto x2 = [&](std::size_t g) { return members[g].x.reshape({count[g] * t, cd}); };
  const bool one_call = mode == gemm_mode::batched && uniform;
  auto project = [&](tensor<T, cuda>& out, tensor<T, cuda>& in, const tensor<T, cuda>& w_stack,
                     const tensor<T, cuda>& b_stack, auto member_w, auto member_b) {
    if (one_call) {
      const index_t per = count[0] * t;
      strided_batched_linear(ctx, tensor_view<T, cuda>(out.data(), {groups, per, out.dim(1)}),
                             tensor_view<const T, cuda>(in.data(), {groups, per, in.dim(1)}),
                             layer_range(w_stack, lo, groups), layer_range(b_stack, lo, groups));
      return;
    }
    for (std::size_t g = 0; g < members.size(); ++g) {
      const int l = members[g].layer;
      if (mode == gemm_mode::heuristic) {
        linear(ctx, rows(out, g), cv(rows(in, g)),
               tensor_view<const T, cuda>((m.base.layers[l].*member_w).view()),
               tensor_view<const T, cuda>((m.base.layers[l].*member_b).view()));
      } else {
        const index_t per = count[g] * t;
        strided_batched_linear(
            ctx, tensor_view<T, cuda>(rows(out, g).data, {1, per, out.dim(1)}),
            tensor_view<const T, cuda>(rows(in, g).data, {1, per, in.dim(1)}),
            layer_range(w_stack, l, 1), layer_range(b_stack, l, 1));
      }
    }
  };
  using LW = decoder_layer<T, cuda>;
  for (std::size_t g = 0; g < members.size(); ++g)
    norm_of(ctx, c, rows(w.h, g), cv(x2(g)), m.base.layers[members[g].layer].norm1_w,
            m.base.layers[members[g].layer].norm1_b);
  project(w.qkv, w.h, m.stack.qkv_w, m.stack.qkv_b, &LW::qkv_w, &LW::qkv_b);
  const index_t width = w.qkv.dim(1);
  auto part = [&](index_t off, index_t heads) {
    return tensor_view<T, cuda>(w.qkv.data() + off, {seqs, t, heads, dh}, {t * width, width, dh, 1});
  };
  auto q = part(0, h), k = part(h * dh, hkv);
  const auto posv = tensor_view<const std::int32_t, cuda>(ws.pos.data(), {n});
  if (c.uses_rope()) {
    apply_rope(ctx, tensor_view<T, cuda>(q.data, {n, h, dh}, {width, dh, 1}), posv,
               tensor_view<const float, cuda>(m.base.inv_freq.view()));
    apply_rope(ctx, tensor_view<T, cuda>(k.data, {n, hkv, dh}, {width, dh, 1}), posv,
               tensor_view<const float, cuda>(m.base.inv_freq.view()));
  }
  segment_attention(ctx, c, w.attn.data(), static_cast<const T*>(w.qkv.data()), width, seqs, t);
  project(w.o, w.attn, m.stack.o_w, m.stack.o_b, &LW::o_w, &LW::o_b);
  for (std::size_t g = 0; g < members.size(); ++g) {
    const auto& L = m.base.layers[members[g].layer];
    residual_norm(ctx, c.kind == family::gpt2 ? norm_kind::layer : norm_kind::rms, x2(g),
                  cv(rows(w.o, g)), rows(w.h, g), tensor_view<const T, cuda>(L.norm2_w.view()),
                  tensor_view<const T, cuda>(L.norm2_b.view()), c.norm_eps);
  }
  project(w.mlp, w.h, m.stack.up_w, m.stack.up_b, &LW::up_w, &LW::up_b);
  auto mlp = tensor_view<const T, cuda>(w.mlp.data(), {n, w.mlp.dim(1)});
  auto act = tensor_view<T, cuda>(w.act.data(), {n, w.act.dim(1)});
  if (c.kind == family::gpt2)
    activate(ctx, c.act, act, mlp);
  else
    gated_activation(ctx, c.act, act, mlp);
  project(w.h, w.act, m.stack.down_w, m.stack.down_b, &LW::down_w, &LW::down_b);
  for (std::size_t g = 0; g < members.size(); ++g) add_inplace(ctx, x2(g), cv(rows(w.h, g)));
}

namespace armt_cuda {
// The memory cells of one (cell, layer) list: reads start at the segment's row 0, writes at its
// memory rows (row len). Sorted by sequence, then layer, so that runs are as long as they go.
template <class T>
struct cell_lists {
  std::vector<memory_cell<T>> reads, writes;
  std::vector<std::pair<armt_cell, int>> written;  // (cell, layer) in write order
  void clear() { reads.clear(), writes.clear(), written.clear(); }
  void add(const armt_cell& cell, int layer, tensor_view<T, cuda> x, device_memory_state& s,
           index_t c) {
    reads.push_back({x.data, &s, layer, cell.first()});
    writes.push_back({x.data + index_t(cell.len) * c, &s, layer, cell.first()});
    written.push_back({cell, layer});
  }
  void sort() {
    std::vector<std::size_t> idx(reads.size());
    std::iota(idx.begin(), idx.end(), std::size_t(0));
    std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) {
      return std::pair(written[a].first.seq, written[a].second) <
             std::pair(written[b].first.seq, written[b].second);
    });
    auto permute = [&](auto& v) {
      std::remove_reference_t<decltype(v)> out;
      for (auto i : idx) out.push_back(v[i]);
      v = std::move(out);
    };
    permute(reads), permute(writes), permute(written);
  }
  // The reads without first cells (they read nothing; memory_read would skip them anyway).
  std::span<const memory_cell<T>> read_cells() const { return reads; }
};
}  // namespace armt_cuda

// keep_states (both executors): the final device states are moved there, r.states stays empty.
// The sequential executor: segment s of every sequence that has one as one batch, layer after
// layer, each layer one grouped_layer() call of one member between the batch's memory read and
// write.
template <class T>
armt_result armt_sequential(const context<cuda>& ctx, const cuda_armt<T>& m,
                            const std::vector<std::vector<int>>& seqs,
                            const armt_options& opt = {}, gemm_mode mode = gemm_mode::batched,
                            std::vector<device_memory_state>* keep_states = nullptr) {
  using namespace armt_cuda;
  const auto& c = m.config();
  const auto& a = m.armt;
  const auto plan = plan_segments(a, c, seqs);
  armt_result r = armt_detail::make_result(c, a, plan, opt);
  const index_t t = a.rows(), batch = index_t(seqs.size());
  std::size_t segments = 0;
  for (const auto& p : plan) segments = std::max(segments, p.size());
  std::vector<device_memory_state> states;
  for (std::size_t b = 0; b < seqs.size(); ++b) states.emplace_back(c.num_layers, a.d_key(), c.hidden_size);
  cuda_group_workspace<T> ws(c, a, batch, batch);
  const device_tokens tokens(seqs);
  device_logits<T> logits(plan, c, a, opt);
  tensor<T, cuda> x({batch, t, c.hidden_size});
  cell_lists<T> lists;
  ctx.synchronize();  // compute_seconds: from here (buffers allocated, inputs uploaded)
  const auto t0 = std::chrono::steady_clock::now();
  for (std::size_t s = 0; s < segments; ++s) {
    std::vector<armt_cell> cells;
    for (const auto& p : plan)
      if (s < p.size()) cells.push_back(p[s]);
    const index_t b = index_t(cells.size());
    auto xs = tensor_view<T, cuda>(x.data(), {b, t, c.hidden_size});
    for (index_t i = 0; i < b; ++i) segment_input(ctx, m, cells[i], tokens, ws, xs.select(i));
    for (int l = 0; l < c.num_layers; ++l) {
      lists.clear();
      for (index_t i = 0; i < b; ++i)
        lists.add(cells[i], l, xs.select(i), states[cells[i].seq], c.hidden_size);
      if (opt.memory) memory_read<T>(ctx, lists.read_cells(), m.layers, a, ws.memory);
      const cuda_group_member<T> member{l, xs};
      grouped_layer(ctx, m, std::span<const cuda_group_member<T>>(&member, 1), ws, mode);
      if (opt.memory) {
        memory_write<T>(ctx, lists.writes, m.layers, a, ws.memory);
        if (opt.record_states)
          for (const auto& [cell, layer] : lists.written) record(r, cell, layer, states[cell.seq]);
      }
    }
    for (index_t i = 0; i < b; ++i) logits.emit(ctx, m, plan, cells[i], cv(xs.select(i)), opt);
  }
  finish(ctx, r, logits, states, t0, keep_states);
  return r;
}

// The diagonal executor (lockstep or amortised slices, as on the CPU). mode: gemm_mode::batched
// (one strided-batched matmul per projection per step when the members are uniform) or
// per_member; both give the sequential executor's bits.
template <class T>
armt_result armt_diagonal(const context<cuda>& ctx, const cuda_armt<T>& m,
                          const std::vector<std::vector<int>>& seqs, const armt_options& opt = {},
                          gemm_mode mode = gemm_mode::batched,
                          diagonal_mode schedule = diagonal_mode::lockstep,
                          std::vector<device_memory_state>* keep_states = nullptr) {
  using namespace armt_cuda;
  const auto& c = m.config();
  const auto& a = m.armt;
  const auto plan = plan_segments(a, c, seqs);
  armt_result r = armt_detail::make_result(c, a, plan, opt);
  std::vector<std::vector<armt_cell>> slices;
  if (schedule == diagonal_mode::amortised) {
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
  index_t widest = 0, widest_slice = 0;
  for (int i = 0; i < steps; ++i) {
    index_t w = 0;
    for (int l = std::max(0, i - J + 1); l <= std::min(i, layers - 1); ++l)
      w += index_t(slices[i - l].size());
    widest = std::max(widest, w);
  }
  for (const auto& sl : slices) widest_slice = std::max(widest_slice, index_t(sl.size()));
  std::vector<device_memory_state> states;
  for (std::size_t b = 0; b < seqs.size(); ++b) states.emplace_back(layers, a.d_key(), c.hidden_size);
  cuda_group_workspace<T> ws(c, a, widest, widest);
  const device_tokens tokens(seqs);
  device_logits<T> logits(plan, c, a, opt);
  // Slice j's residual stream lives in ring[j % L] from step j to step j + L - 1.
  std::vector<tensor<T, cuda>> ring;
  for (int k = 0; k < std::min(layers, J); ++k) ring.emplace_back(shape_t{widest_slice, t, cd});
  auto live = [&](int j) {
    return tensor_view<T, cuda>(ring[j % layers].data(), {index_t(slices[j].size()), t, cd});
  };
  cell_lists<T> lists;
  ctx.synchronize();  // compute_seconds: from here (buffers allocated, inputs uploaded)
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<cuda_group_member<T>> members;
  for (int i = 0; i < steps; ++i) {
    const int lo = std::max(0, i - J + 1), hi = std::min(i, layers - 1);
    if (i < J)
      for (std::size_t k = 0; k < slices[i].size(); ++k)
        segment_input(ctx, m, slices[i][k], tokens, ws, live(i).select(index_t(k)));
    members.clear();
    lists.clear();
    for (int l = lo; l <= hi; ++l) {
      members.push_back({l, live(i - l)});
      const auto& slice = slices[i - l];
      for (std::size_t k = 0; k < slice.size(); ++k)
        lists.add(slice[k], l, live(i - l).select(index_t(k)), states[slice[k].seq], cd);
    }
    lists.sort();
    if (opt.memory) memory_read<T>(ctx, lists.read_cells(), m.layers, a, ws.memory);
    grouped_layer(ctx, m, std::span<const cuda_group_member<T>>(members), ws, mode);
    if (opt.memory) {
      memory_write<T>(ctx, lists.writes, m.layers, a, ws.memory);
      if (opt.record_states)
        for (const auto& [cell, layer] : lists.written) record(r, cell, layer, states[cell.seq]);
    }
    if (hi == layers - 1) {
      const int j = i - (layers - 1);
      for (std::size_t k = 0; k < slices[j].size(); ++k)
        logits.emit(ctx, m, plan, slices[j][k], cv(live(j).select(index_t(k))), opt);
    }
  }
  finish(ctx, r, logits, states, t0, keep_states);
  return r;
}

}  // namespace crossbatch
