// Training throughput of `lora_lmhead` (LoRA r 16 / alpha 32 / dropout 0.05 on q, k, v, o, gate,
// up, down + a trainable LM head, AdamW with clipping at 1.0: train/cuda/multi_adamw.cuh) on
// random-weight models of real shapes in bfloat16 (float32 adapters, head, optimiser state and
// residual stream), next to PyTorch + peft on the same GPU in the same run
// (bench/lora/peft_reference.py, see tools/device/lora.sh).
//
//   bench_lora --prepare --work DIR [--shapes a,b] [--batch 8] [--seq 256]
//       writes DIR/<shape>/{model/ (config.json + float32 npy), tokens.npy (B, T) int32,
//       adapters/ (peft names; A kaiming-uniform, B zero)} for the reference script.
//   bench_lora --work DIR --reference peft.json [--steps 10] [--warmup 3] [--json out.json]
//       checks the first step (dropout off) against the reference: mean loss, LM-head gradient
//       norm and adapter gradient norm within bfloat16's tolerance (dtype_traits), then times
//       warm-up + timed steps with dropout on. Prints a table (ours tok/s, peft tok/s, ratio)
//       and exits 1 on a mismatch (or a missing reference).
//   --device cpu runs the same pipeline on the CPU in float32 (tiny shapes: a check of the
//       pipeline on machines without a GPU); --shapes accepts tiny-llama, tiny-qwen2 too.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "crossbatch/core/npy.hpp"
#include "crossbatch/cuda.hpp"
#include "crossbatch/model/decoder.hpp"
#include "crossbatch/model/random_weights.hpp"
#include "crossbatch/train/backward/decoder_backward.hpp"
#include "crossbatch/train/cuda/backward_ops.cuh"
#include "crossbatch/train/cuda/lm_loss.cuh"
#include "crossbatch/train/cuda/multi_adamw.cuh"
#include "crossbatch/train/optimizer.hpp"
#include "decode/random_model.cuh"  // bench::shape_config

using namespace crossbatch;

namespace {

struct options {
  std::vector<std::string> shapes = {"smollm2-135m", "qwen2.5-0.5b"};
  int batch = 8, seq = 256, steps = 10, warmup = 3;
  std::string work = "build/bench_lora", reference, json_path, device = "cuda";
  bool prepare = false;
  float lr = 1e-4f;
};

json shape_json(const std::string& name) {
  if (name == "tiny-llama" || name == "tiny-qwen2")
    return {{"model_type", name.substr(5)},
            {"vocab_size", 301},
            {"hidden_size", 64},
            {"num_hidden_layers", 2},
            {"num_attention_heads", 4},
            {"num_key_value_heads", 2},
            {"intermediate_size", 96},
            {"max_position_embeddings", 512},
            {"rms_norm_eps", 1e-6},
            {"rope_theta", 10000.0},
            {"tie_word_embeddings", name == "tiny-llama"}};
  return bench::shape_config(name);
}

lora_config bench_lora_config() {
  return lora_config{.rank = 16, .alpha = 32, .dropout = 0.05f, .seed = 1};
}

void prepare(const options& o, const std::string& shape) {
  const std::string dir = o.work + "/" + shape;
  std::filesystem::create_directories(dir);
  const json cj = shape_json(shape);
  write_random_model(dir + "/model", cj, 1234);
  const auto cfg = parse_config(cj, shape);
  std::mt19937 gen(77);
  std::uniform_int_distribution<int> tok(0, cfg.vocab_size - 1);
  tensor<std::int32_t> ids({o.batch, o.seq});
  for (index_t i = 0; i < ids.size(); ++i) ids.data()[i] = tok(gen);
  save_npy(dir + "/tokens.npy", ids);
  lora_adapters<float>::create(cfg, bench_lora_config()).save(dir + "/adapters");
  std::fprintf(stderr, "prepared %s in %s\n", shape.c_str(), dir.c_str());
}

token_batch load_batch(const std::string& dir) {
  const auto ids = load_npy<std::int32_t>(dir + "/tokens.npy");
  require<shape_error>(ids.rank() == 2, dir + "/tokens.npy: need (B, T)");
  std::vector<std::vector<std::int32_t>> rows;
  for (index_t b = 0; b < ids.dim(0); ++b)
    rows.emplace_back(ids.data() + b * ids.dim(1), ids.data() + (b + 1) * ids.dim(1));
  return make_token_batch(rows, 0);
}

struct step_result {
  double loss = 0, head_grad_norm = 0, lora_grad_norm = 0;
};

template <class T, class D>
struct trainer_state {
  decoder_model<T, D> model;
  lora_adapters<float, D> ad;
  tensor<float, D> head, head_grad, x, dx;
  lora_activations<float, D> saved;
};

// One lora_lmhead step's forward + backward (gradients zeroed first); returns loss and norms.
template <class T, class D, class Opt>
step_result loss_and_grads(const context<D>& ctx, lora_decoder<T, float, D>& dec,
                           trainer_state<T, D>& s, Opt& opt, const token_batch& batch, bool norms) {
  opt.zero_grad(ctx);
  const int layers = dec.config().num_layers;
  dec.embed(ctx, batch, s.x.view());
  dec.forward(ctx, batch, 0, layers, s.x.view(), s.saved, true);
  lm_loss_result r;
  if constexpr (std::is_same_v<D, crossbatch::cuda>)
    r = lm_loss_mixed(ctx, s.model, tensor_view<const float, D>(s.x.view()),
                      tensor_view<const float, D>(s.head.view()), batch.targets, s.head_grad.view(),
                      s.dx.view());
  else
    r = dec.lm_loss(ctx, s.x.view(), s.head.view(), batch.targets, s.head_grad.view(), s.dx.view());
  dec.backward(ctx, s.dx.view(), 0, layers, s.saved);
  step_result out;
  out.loss = r.mean();
  if (!norms) return out;
  out.head_grad_norm = std::sqrt(sum_squares(ctx, tensor_view<const float, D>(s.head_grad.view())));
  double ss = 0;
  s.ad.for_each([&](int, lora_slot, lora_module<float, D>& m) {
    ss += sum_squares(ctx, tensor_view<const float, D>(m.da.view()));
    ss += sum_squares(ctx, tensor_view<const float, D>(m.db.view()));
  });
  out.lora_grad_norm = std::sqrt(ss);
  return out;
}

struct shape_result {
  std::string shape;
  step_result first;
  double tok_s = 0, ms_per_step = 0, last_loss = 0;
  index_t params = 0, tokens = 0;
};

template <class T, class D>
shape_result run_shape(const options& o, const std::string& shape) {
  static const context<D> ctx = [] {
    if constexpr (std::is_same_v<D, cpu>)
      return cpu_context(0);
    else
      return context<crossbatch::cuda>(0);
  }();
  const std::string dir = o.work + "/" + shape;
  trainer_state<T, D> s{
      decoder_model<T, D>::load(dir + "/model"),
      lora_adapters<float, D>::load(dir + "/adapters", load_config(dir + "/model/config.json")),
      {},
      {},
      {},
      {},
      {}};
  const auto& cfg = s.model.config;
  const token_batch batch = load_batch(dir);
  lora_decoder<T, float, D> dec(s.model, &s.ad);
  const index_t n = batch.tokens(), C = cfg.hidden_size;
  {
    const auto fh = dec.frozen_head();  // (V, C) float copy of the tied / separate head
    s.head = tensor<float, D>(fh.shape);
    device_traits<D>::copy(s.head.data(), fh.data, sizeof(float) * fh.size());
  }
  s.head_grad = tensor<float, D>(s.head.shape());
  s.x = tensor<float, D>({n, C});
  s.dx = tensor<float, D>({n, C});
  // CUDA: multi_adamw (three launches a step, no host sync); CPU: adamw. Same maths.
  using optimizer =
      std::conditional_t<std::is_same_v<D, crossbatch::cuda>, multi_adamw, adamw<float, D>>;
  optimizer opt(adamw_options{});
  s.ad.for_each([&](int, lora_slot, lora_module<float, D>& m) {
    opt.add(m.a, m.da);
    opt.add(m.b, m.db);
  });
  opt.add(s.head, s.head_grad);

  shape_result res;
  res.shape = shape;
  res.params = s.ad.parameter_count() + s.head.size();
  res.tokens = n;
  // the check step: dropout off, so that the reference sees the same function
  const float p = s.ad.config.dropout;
  s.ad.config.dropout = 0.0f;
  res.first = loss_and_grads(ctx, dec, s, opt, batch, true);
  s.ad.config.dropout = p;
  auto step = [&] {
    const auto r = loss_and_grads(ctx, dec, s, opt, batch, false);
    opt.step(ctx, o.lr);
    return r;
  };
  for (int i = 0; i < o.warmup; ++i) step();
  if constexpr (std::is_same_v<D, crossbatch::cuda>) ctx.synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < o.steps; ++i) {
    res.last_loss = step().loss;
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "\r%s: step %d/%d, %.0f tok/s, ETA %.0f s   ", shape.c_str(), i + 1,
                 o.steps, double(n) * (i + 1) / el, el / (i + 1) * (o.steps - i - 1));
  }
  if constexpr (std::is_same_v<D, crossbatch::cuda>) ctx.synchronize();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "\n");
  res.ms_per_step = 1e3 * secs / std::max(1, o.steps);
  res.tok_s = double(n) * o.steps / secs;
  return res;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::size_t a = 0;
  while (a <= s.size()) {
    const auto b = s.find(',', a);
    out.push_back(s.substr(a, b == std::string::npos ? std::string::npos : b - a));
    if (b == std::string::npos) break;
    a = b + 1;
  }
  return out;
}

// Scalar reductions (a mean loss, gradient norms over millions of elements) of two bfloat16
// pipelines: within 4 bf16 epsilons (3.1 %) relative. On the CPU (float32 ours vs bf16 peft,
// tiny shapes) they agree to 0.1 %.
bool close(double got, double want) {
  return std::isfinite(got) && std::isfinite(want) &&
         std::fabs(got - want) <= 4.0 * dtype_traits<bfloat16>::epsilon * std::fabs(want);
}

}  // namespace

int main(int argc, char** argv) try {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto val = [&]() -> std::string {
      require(i + 1 < argc, k + " needs a value");
      return argv[++i];
    };
    if (k == "--prepare")
      o.prepare = true;
    else if (k == "--work")
      o.work = val();
    else if (k == "--shapes")
      o.shapes = split(val());
    else if (k == "--batch")
      o.batch = std::stoi(val());
    else if (k == "--seq")
      o.seq = std::stoi(val());
    else if (k == "--steps")
      o.steps = std::stoi(val());
    else if (k == "--warmup")
      o.warmup = std::stoi(val());
    else if (k == "--reference")
      o.reference = val();
    else if (k == "--json")
      o.json_path = val();
    else if (k == "--device")
      o.device = val();
    else if (k == "--lr")
      o.lr = std::stof(val());
    else
      throw value_error("unknown option " + k);
  }
  require(o.device == "cuda" || o.device == "cpu", "--device must be cuda or cpu");
  if (o.prepare) {
    for (const auto& s : o.shapes) prepare(o, s);
    return 0;
  }
  json ref;
  if (!o.reference.empty()) ref = read_json_file(o.reference);
  bool ok = true;
  json out = json::array();
  std::printf("lora_lmhead training on %s (%s), %d warm-up + %d timed steps\n", o.device.c_str(),
              o.device == "cuda" ? "bfloat16 weights" : "float32", o.warmup, o.steps);
  std::printf("%-14s %12s %12s %7s %10s %10s %10s %10s  %s\n", "shape", "ours tok/s", "peft tok/s",
              "ratio", "loss", "peft loss", "|g_head|", "peft", "check");
  for (const auto& shape : o.shapes) {
    const shape_result r = o.device == "cuda" ? run_shape<bfloat16, crossbatch::cuda>(o, shape)
                                              : run_shape<float, cpu>(o, shape);
    json j = {{"shape", shape},
              {"device", o.device},
              {"tokens_per_step", r.tokens},
              {"tok_s", r.tok_s},
              {"ms_per_step", r.ms_per_step},
              {"loss", r.first.loss},
              {"head_grad_norm", r.first.head_grad_norm},
              {"lora_grad_norm", r.first.lora_grad_norm},
              {"last_loss", r.last_loss},
              {"trainable_parameters", r.params}};
    double peft_tok = 0;
    std::string verdict = "no reference";
    if (ref.is_object() && ref.contains(shape)) {
      const json& p = ref[shape];
      peft_tok = p.at("tok_s").get<double>();
      const bool good = close(r.first.loss, p.at("loss").get<double>()) &&
                        close(r.first.head_grad_norm, p.at("head_grad_norm").get<double>()) &&
                        close(r.first.lora_grad_norm, p.at("lora_grad_norm").get<double>());
      verdict = good ? "ok" : "MISMATCH";
      ok &= good;
      j["peft"] = p;
      j["ratio"] = r.tok_s / peft_tok;
      j["check"] = verdict;
      if (p.contains("compiled_tok_s"))
        j["ratio_vs_compiled"] = r.tok_s / p["compiled_tok_s"].get<double>();
    } else {
      ok = false;
    }
    std::printf(
        "%-14s %12.0f %12.0f %7.2f %10.4f %10.4f %10.4f %10.4f  %s\n", shape.c_str(), r.tok_s,
        peft_tok, peft_tok > 0 ? r.tok_s / peft_tok : 0.0, r.first.loss,
        ref.is_object() && ref.contains(shape) ? ref[shape]["loss"].get<double>() : 0.0,
        r.first.head_grad_norm,
        ref.is_object() && ref.contains(shape) ? ref[shape]["head_grad_norm"].get<double>() : 0.0,
        verdict.c_str());
    std::printf(
        "%-14s %lld tokens/step; adapter |g| ours %.5g, peft %.5g; %.1f ms/step; loss "
        "after %d steps %.4f\n",
        "", static_cast<long long>(r.tokens), r.first.lora_grad_norm,
        ref.is_object() && ref.contains(shape) ? ref[shape]["lora_grad_norm"].get<double>() : 0.0,
        r.ms_per_step, o.warmup + o.steps, r.last_loss);
    std::fflush(stdout);
    out.push_back(j);
  }
  if (!o.json_path.empty()) std::ofstream(o.json_path) << out.dump(2) << "\n";
  if (!ok) std::printf("FAILED: a shape has no reference or differs from it\n");
  return ok ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_lora: %s\n", e.what());
  return 2;
}
