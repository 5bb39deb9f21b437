// LoRA adapters on a frozen decoder, with peft's semantics: a targeted linear layer computes
// y = W x + b + (alpha / r) * B (A (dropout(x))), A (r, in) kaiming-uniform (a = sqrt(5), i.e.
// U(-1/sqrt(in), 1/sqrt(in))), B (out, r) zero. Adapters are saved as npy files under peft's
// state-dict names (base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight, GPT-2:
// base_model.model.transformer.h.{i}.attn.c_attn.lora_A.weight) plus peft's adapter_config.json,
// and merged into a decoder_model (W += scale B A) or into a converted model directory.
// G is the adapters' element type (float, or double for gradient checks), D the device.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "crossbatch/core/npy.hpp"
#include "crossbatch/core/rng.hpp"
#include "crossbatch/core/transfer.hpp"
#include "crossbatch/model/config.hpp"
#include "crossbatch/model/decoder.hpp"
#include "crossbatch/train/backward/dropout.hpp"
#include "crossbatch/train/optimizer.hpp"

namespace crossbatch {

struct lora_config {
  int rank = 16;
  float alpha = 32;
  float dropout = 0.05f;
  // Generic names q, k, v, o, gate, up, down; Hugging Face names q_proj ... down_proj (llama,
  // qwen2); GPT-2's c_attn (= q, k, v fused), attn.c_proj (o), c_fc (up), mlp.c_proj (down) and
  // c_proj (both). On GPT-2, q/k/v mean its fused c_attn and gate (no gated MLP) is skipped.
  std::vector<std::string> targets = {"q", "k", "v", "o", "gate", "up", "down"};
  std::uint64_t seed = 0;  // adapter initialisation and dropout masks

  float scale() const { return alpha / float(rank); }
};

// Where an adapter sits in a layer. qkv is GPT-2's fused c_attn.
enum class lora_slot : int { q, k, v, o, gate, up, down, qkv };
constexpr int lora_slot_count = 8;

// The rows of the fused weight of the layer that a slot adapts: its output width and input width,
// and its row offset inside decoder_layer's fused tensor (qkv_w for q/k/v/qkv, up_w for gate/up).
struct lora_slot_shape {
  index_t out = 0, in = 0, offset = 0;
};

inline lora_slot_shape lora_shape(const model_config& c, lora_slot s) {
  const index_t C = c.hidden_size, F = c.intermediate_size, qd = index_t(c.num_heads) * c.head_dim,
                kd = index_t(c.num_kv_heads) * c.head_dim;
  switch (s) {
    case lora_slot::q:
      return {qd, C, 0};
    case lora_slot::k:
      return {kd, C, qd};
    case lora_slot::v:
      return {kd, C, qd + kd};
    case lora_slot::qkv:
      return {qd + 2 * kd, C, 0};
    case lora_slot::o:
      return {C, qd, 0};
    case lora_slot::gate:
      return {F, C, 0};
    case lora_slot::up:
      return {F, C, c.kind == family::gpt2 ? 0 : F};
    case lora_slot::down:
      return {C, F, 0};
  }
  return {};
}

// The module's name inside a layer, as Hugging Face spells it (self_attn.q_proj, attn.c_attn ...).
inline std::string lora_module_name(const model_config& c, lora_slot s) {
  if (c.kind == family::gpt2) {
    switch (s) {
      case lora_slot::qkv:
        return "attn.c_attn";
      case lora_slot::o:
        return "attn.c_proj";
      case lora_slot::up:
        return "mlp.c_fc";
      case lora_slot::down:
        return "mlp.c_proj";
      default:
        throw value_error("lora: GPT-2 has no separate q/k/v/gate module");
    }
  }
  static const char* names[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                "mlp.down_proj"};
  require<value_error>(s != lora_slot::qkv, "lora: llama/qwen2 have no fused qkv module");
  return names[int(s)];
}

// peft's target_modules spelling of a slot (suffix-matched module names).
inline std::string lora_peft_target(const model_config& c, lora_slot s) {
  if (c.kind == family::gpt2) {
    switch (s) {
      case lora_slot::qkv:
        return "c_attn";
      case lora_slot::up:
        return "c_fc";
      default:
        return lora_module_name(c, s);  // attn.c_proj, mlp.c_proj
    }
  }
  const std::string m = lora_module_name(c, s);
  return m.substr(m.find('.') + 1);
}

// The slots that config.targets name on a model of this family, in slot order; an unknown name
// is a value_error listing the accepted ones.
inline std::vector<lora_slot> lora_slots(const model_config& c, const std::vector<std::string>& t) {
  require<value_error>(c.is_decoder(), "lora: only decoder models take adapters");
  const bool gpt2 = c.kind == family::gpt2;
  std::array<bool, lora_slot_count> on{};
  for (const auto& name : t) {
    auto set = [&](lora_slot s) { on[int(s)] = true; };
    if (name == "q" || name == "k" || name == "v" || name == "q_proj" || name == "k_proj" ||
        name == "v_proj") {
      if (gpt2)
        set(lora_slot::qkv);
      else
        set(name[0] == 'q' ? lora_slot::q : name[0] == 'k' ? lora_slot::k : lora_slot::v);
    } else if (name == "o" || name == "o_proj" || name == "attn.c_proj") {
      set(lora_slot::o);
    } else if (name == "gate" || name == "gate_proj") {
      if (!gpt2) set(lora_slot::gate);
    } else if (name == "up" || name == "up_proj" || name == "c_fc") {
      set(lora_slot::up);
    } else if (name == "down" || name == "down_proj" || name == "mlp.c_proj") {
      set(lora_slot::down);
    } else if (name == "c_proj") {
      set(lora_slot::o);
      set(lora_slot::down);
    } else if (name == "c_attn") {
      if (gpt2) {
        set(lora_slot::qkv);
      } else {
        set(lora_slot::q), set(lora_slot::k), set(lora_slot::v);
      }
    } else {
      throw value_error("lora: unknown target module '" + name +
                        "' (q, k, v, o, gate, up, down, their *_proj names, or GPT-2's c_attn, "
                        "c_proj, attn.c_proj, c_fc, mlp.c_proj)");
    }
  }
  std::vector<lora_slot> slots;
  for (int s = 0; s < lora_slot_count; ++s)
    if (on[s]) slots.push_back(lora_slot(s));
  return slots;
}

// One adapter: A (r, in), B (out, r) and their gradients (same shapes).
template <class G, class D = cpu>
struct lora_module {
  tensor<G, D> a, b, da, db;
  bool active() const { return !a.empty(); }
};

template <class G, class D = cpu>
class lora_adapters {
 public:
  lora_config config;
  model_config model;
  std::vector<std::array<lora_module<G, D>, lora_slot_count>> layers;  // [layer][slot]

  // Fresh adapters on every targeted module of every layer: A kaiming-uniform from config.seed,
  // B zero, gradients zero.
  static lora_adapters create(const model_config& m, const lora_config& cfg) {
    require<value_error>(cfg.rank > 0,
                         "lora: rank must be positive, got " + std::to_string(cfg.rank));
    require<value_error>(cfg.dropout >= 0 && cfg.dropout < 1,
                         "lora: dropout must be in [0, 1), got " + std::to_string(cfg.dropout));
    lora_adapters ad;
    ad.config = cfg;
    ad.model = m;
    ad.layers.resize(m.num_layers);
    const auto slots = lora_slots(m, cfg.targets);
    require<value_error>(!slots.empty(), "lora: the targets name no module of this model");
    const counter_rng rng{cfg.seed};
    for (int l = 0; l < m.num_layers; ++l)
      for (lora_slot s : slots) {
        const auto sh = lora_shape(m, s);
        tensor<G> a({cfg.rank, sh.in});
        const double bound = 1.0 / std::sqrt(double(sh.in));
        for (index_t i = 0; i < a.size(); ++i)
          a.data()[i] =
              G((2.0 * rng.uniform(lora_stream(l, int(s)), std::uint64_t(i)) - 1.0) * bound);
        ad.set(l, s, a, full<G>({sh.out, cfg.rank}, G(0)));
      }
    return ad;
  }

  float scale() const { return config.scale(); }
  int rank() const { return config.rank; }

  // The adapter of a slot, or null when the slot is not adapted.
  const lora_module<G, D>* find(int layer, lora_slot s) const {
    const auto& m = layers.at(layer)[int(s)];
    return m.active() ? &m : nullptr;
  }
  lora_module<G, D>* find(int layer, lora_slot s) {
    auto& m = layers.at(layer)[int(s)];
    return m.active() ? &m : nullptr;
  }

  // Calls f(layer, slot, module&) for every active adapter.
  template <class F>
  void for_each(F&& f) {
    for (int l = 0; l < int(layers.size()); ++l)
      for (int s = 0; s < lora_slot_count; ++s)
        if (layers[l][s].active()) f(l, lora_slot(s), layers[l][s]);
  }
  template <class F>
  void for_each(F&& f) const {
    for (int l = 0; l < int(layers.size()); ++l)
      for (int s = 0; s < lora_slot_count; ++s)
        if (layers[l][s].active()) f(l, lora_slot(s), layers[l][s]);
  }

  void zero_grad(const context<D>& ctx) {
    for_each([&](int, lora_slot, lora_module<G, D>& m) {
      fill(ctx, m.da.view(), G(0));
      fill(ctx, m.db.view(), G(0));
    });
  }
  // Registers every A and B (with their gradients) with an optimiser.
  void add_to(adamw<G, D>& opt) {
    for_each([&](int, lora_slot, lora_module<G, D>& m) {
      opt.add(m.a, m.da);
      opt.add(m.b, m.db);
    });
  }
  index_t parameter_count() const {
    index_t n = 0;
    for_each([&](int, lora_slot, const lora_module<G, D>& m) { n += m.a.size() + m.b.size(); });
    return n;
  }

  // Sets one adapter's A and B (host tensors of the slot's shapes); gradients zero.
  void set(int layer, lora_slot s, const tensor<G>& a, const tensor<G>& b) {
    const auto sh = lora_shape(model, s);
    expect_shape(a.view(), {config.rank, sh.in}, "lora A of layer " + std::to_string(layer));
    expect_shape(b.view(), {sh.out, config.rank}, "lora B of layer " + std::to_string(layer));
    auto& m = layers.at(layer)[int(s)];
    m.a = to_device<D>(a);
    m.b = to_device<D>(b);
    m.da = to_device<D>(full<G>(a.shape(), G(0)));
    m.db = to_device<D>(full<G>(b.shape(), G(0)));
  }

  // peft's state-dict name of an adapter matrix ("lora_A" or "lora_B").
  std::string tensor_name(int layer, lora_slot s, const char* which) const {
    const std::string prefix = model.kind == family::gpt2 ? "base_model.model.transformer.h."
                                                          : "base_model.model.model.layers.";
    return prefix + std::to_string(layer) + "." + lora_module_name(model, s) + "." + which +
           ".weight";
  }

  // Writes dir/adapter_config.json (peft's fields) and one float32 npy per adapter matrix.
  void save(const std::string& dir) const {
    std::filesystem::create_directories(dir);
    json targets = json::array();
    for (lora_slot s : lora_slots(model, config.targets))
      targets.push_back(lora_peft_target(model, s));
    const json cfg = {{"peft_type", "LORA"},
                      {"task_type", "CAUSAL_LM"},
                      {"r", config.rank},
                      {"lora_alpha", config.alpha},
                      {"lora_dropout", config.dropout},
                      {"target_modules", targets},
                      {"bias", "none"},
                      {"fan_in_fan_out", model.kind == family::gpt2},
                      {"inference_mode", true},
                      {"init_lora_weights", true},
                      {"use_rslora", false},
                      {"modules_to_save", nullptr},
                      {"base_model_name_or_path", nullptr},
                      {"crossbatch_seed", config.seed}};
    std::ofstream f(dir + "/adapter_config.json");
    if (!f) throw io_error(dir + "/adapter_config.json: cannot open for writing");
    f << cfg.dump(2) << "\n";
    for_each([&](int l, lora_slot s, const lora_module<G, D>& m) {
      save_npy(dir + "/" + tensor_name(l, s, "lora_A") + ".npy", as_float(m.a));
      save_npy(dir + "/" + tensor_name(l, s, "lora_B") + ".npy", as_float(m.b));
    });
  }

  // Reads what save() writes (or a peft adapter converted to npy) for a model of config m.
  static lora_adapters load(const std::string& dir, const model_config& m) {
    const std::string path = dir + "/adapter_config.json";
    const json j = read_json_file(path);
    lora_config cfg;
    cfg.rank = required_field<int>(j, "r", path);
    cfg.alpha = required_field<float>(j, "lora_alpha", path);
    cfg.dropout = optional_field<float>(j, "lora_dropout", path).value_or(0.0f);
    cfg.seed = optional_field<std::uint64_t>(j, "crossbatch_seed", path).value_or(0);
    for (const char* flag : {"use_rslora", "use_dora"})
      require<format_error>(!optional_field<bool>(j, flag, path).value_or(false),
                            path + ": " + flag + " adapters are not supported");
    for (const char* pattern : {"rank_pattern", "alpha_pattern"}) {
      const auto p = j.find(pattern);
      require<format_error>(p == j.end() || p->is_null() || p->empty(),
                            path + ": per-module " + pattern + " is not supported");
    }
    require<format_error>(optional_field<std::string>(j, "bias", path).value_or("none") == "none",
                          path + ": trained biases (bias != \"none\") are not supported");
    const auto it = j.find("target_modules");
    require<format_error>(it != j.end() && it->is_array(),
                          path + ": target_modules must be a list of module names");
    cfg.targets.clear();
    for (const auto& t : *it) cfg.targets.push_back(t.get<std::string>());
    require<format_error>(cfg.rank > 0, path + ": r must be positive");
    lora_adapters ad;
    ad.config = cfg;
    ad.model = m;
    ad.layers.resize(m.num_layers);
    const weight_dir w(dir);
    for (int l = 0; l < m.num_layers; ++l)
      for (lora_slot s : lora_slots(m, cfg.targets)) {
        const auto sh = lora_shape(m, s);
        ad.set(l, s, from_float(w.load<float>(ad.tensor_name(l, s, "lora_A"), {cfg.rank, sh.in})),
               from_float(w.load<float>(ad.tensor_name(l, s, "lora_B"), {sh.out, cfg.rank})));
      }
    return ad;
  }

  // scale * B A (out, in) of one adapter, on the host in double.
  std::vector<double> delta(int layer, lora_slot s) const {
    const auto* m = find(layer, s);
    require<value_error>(m != nullptr, "lora: no adapter at this slot");
    const auto a = to_host(m->a), b = to_host(m->b);
    const index_t out = b.dim(0), in = a.dim(1), r = a.dim(0);
    std::vector<double> d(std::size_t(out * in), 0.0);
    for (index_t i = 0; i < out; ++i)
      for (index_t k = 0; k < r; ++k) {
        const double bik = double(b(i, k)) * scale();
        for (index_t j = 0; j < in; ++j) d[i * in + j] += bik * double(a(k, j));
      }
    return d;
  }

 private:
  static tensor<G> from_float(const tensor<float>& f) {
    tensor<G> g(f.shape());
    for (index_t i = 0; i < f.size(); ++i) g.data()[i] = static_cast<G>(f.data()[i]);
    return g;
  }
  static tensor<float> as_float(const tensor<G, D>& t) {
    const auto h = to_host(t);
    tensor<float> f(h.shape());
    for (index_t i = 0; i < h.size(); ++i) f.data()[i] = static_cast<float>(h.data()[i]);
    return f;
  }
};

// The model weight tensor (fused as decoder_layer holds it) that a slot adapts.
template <class T, class D>
tensor<T, D>& lora_target_weight(decoder_layer<T, D>& L, lora_slot s) {
  switch (s) {
    case lora_slot::q:
    case lora_slot::k:
    case lora_slot::v:
    case lora_slot::qkv:
      return L.qkv_w;
    case lora_slot::o:
      return L.o_w;
    case lora_slot::gate:
    case lora_slot::up:
      return L.up_w;
    case lora_slot::down:
      return L.down_w;
  }
  return L.qkv_w;
}

// W += scale * B A for every adapter (the model then computes what model + adapters computed).
template <class T, class G, class D>
void merge_lora(decoder_model<T, D>& model, const lora_adapters<G, D>& ad) {
  require<value_error>(int(ad.layers.size()) == model.config.num_layers,
                       "merge_lora: adapters of " + std::to_string(ad.layers.size()) +
                           " layers for a model of " + std::to_string(model.config.num_layers));
  ad.for_each([&](int l, lora_slot s, const lora_module<G, D>&) {
    auto& w = lora_target_weight(model.layers[l], s);
    const auto sh = lora_shape(model.config, s);
    const auto d = ad.delta(l, s);
    auto h = to_host(w);
    require<shape_error>(
        h.dim(1) == sh.in && h.dim(0) >= sh.offset + sh.out,
        "merge_lora: weight " + to_string(h.shape()) + " does not fit the adapter");
    for (index_t i = 0; i < sh.out; ++i)
      for (index_t j = 0; j < sh.in; ++j) {
        T& x = h(sh.offset + i, j);
        x = static_cast<T>(static_cast<double>(static_cast<float>(x)) + d[i * sh.in + j]);
      }
    w = to_device<D>(h);
  });
}

// Writes dst: a copy of the converted model directory src (config.json, tokenizer files, every
// npy) whose adapted weights hold W + scale B A, readable by decoder_model::load. dst must not
// be src; existing files in dst are overwritten.
template <class G, class D>
void write_merged_model(const std::string& src, const lora_adapters<G, D>& ad,
                        const std::string& dst) {
  namespace fs = std::filesystem;
  require<io_error>(fs::is_directory(src), "write_merged_model: " + src + " is not a directory");
  fs::create_directories(dst);
  require<value_error>(!fs::equivalent(src, dst),
                       "write_merged_model: the output directory is the input model " + src);
  const model_config c = load_config(src + "/config.json");
  require<value_error>(c.kind == ad.model.kind && c.num_layers == int(ad.layers.size()) &&
                           c.hidden_size == ad.model.hidden_size,
                       "write_merged_model: the adapters were made for another model than " + src);
  for (const auto& e : fs::directory_iterator(src))
    if (e.is_regular_file())
      fs::copy_file(e.path(), fs::path(dst) / e.path().filename(),
                    fs::copy_options::overwrite_existing);
  const weight_dir w(src);
  const std::string gpt2_prefix = w.has("transformer.wte.weight") ? "transformer." : "";
  ad.for_each([&](int l, lora_slot s, const lora_module<G, D>&) {
    const auto sh = lora_shape(c, s);
    const auto d = ad.delta(l, s);
    if (c.kind == family::gpt2) {
      // Conv1D stores (in, out): element (j, i) of the file is W(i, j).
      const std::string name =
          gpt2_prefix + "h." + std::to_string(l) + "." + lora_module_name(c, s) + ".weight";
      auto t = load_npy<float>(w.file(name));
      require<shape_error>(
          t.rank() == 2 && t.dim(0) == sh.in && t.dim(1) >= sh.out,
          w.file(name) + ": shape " + to_string(t.shape()) + " does not fit the adapter");
      for (index_t i = 0; i < sh.out; ++i)
        for (index_t j = 0; j < sh.in; ++j) t(j, i) = float(double(t(j, i)) + d[i * sh.in + j]);
      save_npy((fs::path(dst) / (name + ".npy")).string(), t);
    } else {
      const std::string name =
          "model.layers." + std::to_string(l) + "." + lora_module_name(c, s) + ".weight";
      auto t = load_npy<float>(w.file(name), {sh.out, sh.in});
      for (index_t i = 0; i < t.size(); ++i) t.data()[i] = float(double(t.data()[i]) + d[i]);
      save_npy((fs::path(dst) / (name + ".npy")).string(), t);
    }
  });
}

}  // namespace crossbatch
