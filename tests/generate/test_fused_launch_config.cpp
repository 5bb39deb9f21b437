// The fused CUDA decode step's GEMV launch configurations (generate/fused_launch_config.hpp, the
// numbers the launchers in generate/cuda/fused_decode.cuh and fused_gemv_tc.cuh use), checked
// without a GPU against an H200's limits (1024 threads per block, 48 KB shared memory without the
// opt-in, 227 KB with it, 132 SMs) at the three real shapes (GPT-2 124M, SmolLM2-135M,
// Qwen2.5-0.5B), float32 and bfloat16, batch 1-64 under the default options and the switches.
// Per launch: the launch is valid, static + dynamic shared memory is counted (the opt-in is asked
// for whenever the sum exceeds 48 KB: the first H200 run failed with cudaErrorInvalidValue at
// GPT-2 float32 batch 9-16 (48 KB dynamic + 1.5 KB static) and SmolLM2 bfloat16 batch 32
// (38 KB dynamic + 18 KB static), neither of which opted in), the kernel holds the batch rows, the
// warp split divides the block. Hand-computed cases pin the arithmetic, and launch_problem() must
// report the broken configurations it exists to catch.
#define BOOST_TEST_MODULE fused_launch_config
#include <boost/test/unit_test.hpp>
#include <string>

#include "crossbatch/generate/fused_launch_config.hpp"

using namespace crossbatch;

namespace {

const launch_limits h200{};  // 1024 threads, 48 KB default, 227 KB opt-in
constexpr int h200_sms = 132;

model_config shape(const std::string& name) {
  model_config c;
  if (name == "gpt2-124m") {
    c.kind = family::gpt2;
    c.hidden_size = 768, c.num_heads = 12, c.num_kv_heads = 12, c.head_dim = 64;
    c.intermediate_size = 3072, c.vocab_size = 50257, c.num_layers = 12;
  } else if (name == "smollm2-135m") {
    c.kind = family::llama;
    c.hidden_size = 576, c.num_heads = 9, c.num_kv_heads = 3, c.head_dim = 64;
    c.intermediate_size = 1536, c.vocab_size = 49152, c.num_layers = 30;
  } else {
    c.kind = family::qwen2;
    c.hidden_size = 896, c.num_heads = 14, c.num_kv_heads = 2, c.head_dim = 64;
    c.intermediate_size = 4864, c.vocab_size = 151936, c.num_layers = 24;
  }
  return c;
}

// Every GEMV launch of the step at this shape, element size and batch is valid on an H200, asks
// for the opt-in exactly when static + dynamic exceeds 48 KB, and routes as the options say.
void check_step(const std::string& name, int elem_bytes, int batch,
                const fused_decode_options& opt) {
  const auto c = shape(name);
  const bool tc = gemv_on_tensor_cores(elem_bytes, batch, opt);
  if (batch > (tc ? 64 : 16)) return;  // the plain layers (fused_decode_supported says no)
  const std::string at = name + " " + std::to_string(elem_bytes) + "-byte batch " +
                         std::to_string(batch) + (tc ? " tensor cores" : " CUDA cores");
  BOOST_TEST(fused_step_problem(c, batch, elem_bytes, opt, h200_sms, h200).empty(), at);
  for (const auto& l : fused_step_gemvs(c, batch, elem_bytes, opt, h200_sms)) {
    const std::string what = at + " " + l.shape.name;
    BOOST_TEST(launch_problem(l, h200).empty(), what << ": " << launch_problem(l, h200));
    BOOST_TEST(l.tensor_cores == tc, what);
    BOOST_TEST(l.rows >= batch, what);
    BOOST_TEST(l.groups >= 1, what);
    BOOST_TEST((l.warps_per_row == 1 || l.warps_per_row == 2 || l.warps_per_row == 4 ||
                l.warps_per_row == 8),
               what);
    const std::size_t total = l.static_smem + l.dynamic_smem;
    BOOST_TEST(l.needs_opt_in(h200) == (total > 48 * 1024), what);
    BOOST_TEST(total <= 227 * 1024, what);
    BOOST_TEST((l.dynamic_smem == 0) == !l.shape.prologue, what);
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_launch_is_valid_at_the_real_shapes_batch_1_to_64) {
  fused_decode_options cc;  // the CUDA-core GEMV only (and float32 always)
  cc.tensor_cores = false;
  fused_decode_options tc1;  // tensor cores from batch 1 on
  tc1.tensor_core_min_batch = 1;
  for (const std::string name : {"gpt2-124m", "smollm2-135m", "qwen2.5-0.5b"})
    for (int elem : {4, 2})
      for (int batch = 1; batch <= 64; ++batch)
        for (const auto& opt : {fused_decode_options{}, cc, tc1})
          check_step(name, elem, batch, opt);
}

// The two launches of the first H200 run that failed with cudaErrorInvalidValue: they need the
// opt-in although their dynamic shared memory alone is at most 48 KB.
BOOST_AUTO_TEST_CASE(the_failed_launches_of_the_first_device_run_opt_in) {
  const fused_decode_options opt;
  // GPT-2 float32 batch 16, qkv: CUDA-core kernel of 16 rows, 16 x 768 x 4 = 48 KB of normalised
  // rows plus red[8][16] floats (512 B) and top[8][16] 64-bit keys (1 KB).
  const auto g = fused_step_gemvs(shape("gpt2-124m"), 16, 4, opt, h200_sms);
  BOOST_TEST(!g[0].tensor_cores);
  BOOST_TEST(g[0].rows == 16);
  BOOST_TEST(g[0].dynamic_smem == 49152u);
  BOOST_TEST(g[0].static_smem == 512u + 1024u);
  BOOST_TEST(g[0].needs_opt_in(h200));
  // SmolLM2 bfloat16 batch 32, qkv: tensor-core kernel of 4 batch tiles; rows of 576 x 2 = 1152 B
  // padded to 1216 B: 32 x 1216 = 38912 B, plus red[8][16][32] floats (16 KB) and top[8][32] keys.
  const auto s = fused_step_gemvs(shape("smollm2-135m"), 32, 2, opt, h200_sms);
  BOOST_TEST(s[0].tensor_cores);
  BOOST_TEST(s[0].rows == 32);
  BOOST_TEST(s[0].dynamic_smem == 38912u);
  BOOST_TEST(s[0].static_smem == 16384u + 2048u);
  BOOST_TEST(s[0].needs_opt_in(h200));
  // Qwen2.5 bfloat16 batch 32 (which passed): 32 x 1856 = 59392 B, over 48 KB by itself.
  const auto q = fused_step_gemvs(shape("qwen2.5-0.5b"), 32, 2, opt, h200_sms);
  BOOST_TEST(q[0].dynamic_smem == 59392u);
  BOOST_TEST(q[0].needs_opt_in(h200));
  // Below the line: SmolLM2 bfloat16 batch 16, 16 x 1216 + 16384 + 1024 = 36864 B.
  const auto s16 = fused_step_gemvs(shape("smollm2-135m"), 16, 2, opt, h200_sms);
  BOOST_TEST(s16[0].static_smem + s16[0].dynamic_smem == 36864u);
  BOOST_TEST(!s16[0].needs_opt_in(h200));
}

// The split arithmetic by hand (16 warps per SM target: 2112 warps on 132 SMs).
BOOST_AUTO_TEST_CASE(warp_split_and_grid_by_hand) {
  const fused_decode_options opt;
  // SmolLM2 bfloat16 batch 1, CUDA cores. qkv: in 576 = 72 chunks of 16 B, U = 4: 72 >= 64 and
  // 960 rows < 2112 warps: 2 warps per row; 72 < 128 stops there; 4 rows a block: 240 blocks.
  const auto l = fused_step_gemvs(shape("smollm2-135m"), 1, 2, opt, h200_sms);
  BOOST_TEST(!l[0].tensor_cores);
  BOOST_TEST(l[0].loads == 4);
  BOOST_TEST(l[0].warps_per_row == 2);
  BOOST_TEST(l[0].groups == 240);
  BOOST_TEST(l[0].static_smem == 32u + 64u);
  BOOST_TEST(l[0].dynamic_smem == 1152u);
  // down: in 1536 = 192 chunks, U = 8, 576 rows: 2 (576 < 2112), 4 (1152 < 2112), then
  // 192 < 256 stops; 2 rows a block: 288 blocks; no prologue, no dynamic shared memory.
  BOOST_TEST(l[3].loads == 8);
  BOOST_TEST(l[3].warps_per_row == 4);
  BOOST_TEST(l[3].groups == 288);
  BOOST_TEST(l[3].dynamic_smem == 0u);
  // batch 2 goes to the tensor cores by default (tensor_core_min_batch 2), batch 1 does not.
  BOOST_TEST(gemv_on_tensor_cores(2, 2, opt));
  BOOST_TEST(!gemv_on_tensor_cores(2, 1, opt));
  BOOST_TEST(!gemv_on_tensor_cores(4, 2, opt));
  // SmolLM2 bfloat16 batch 32, tensor cores, qkv: 18 k-tiles, U = 4, 60 row tiles: the k split
  // doubles while 18 > 4 x split (1, 2, 4) and then 18 > 16 (8); one row tile a block: 60 blocks.
  const auto t = fused_step_gemvs(shape("smollm2-135m"), 32, 2, opt, h200_sms);
  BOOST_TEST(t[0].loads == 4);
  BOOST_TEST(t[0].warps_per_row == 8);
  BOOST_TEST(t[0].groups == 60);
  // gated up at batch 16 (NB 2): U = 2 x 2 = 4.
  const auto u = fused_step_gemvs(shape("smollm2-135m"), 16, 2, opt, h200_sms);
  BOOST_TEST(u[2].shape.gated);
  BOOST_TEST(u[2].loads == 4);
}

// launch_problem() reports what it exists to catch.
BOOST_AUTO_TEST_CASE(launch_problem_reports_broken_configurations) {
  gemv_shape s{"qkv", 16, 768, 2304, 4, true, false};
  const auto good = cuda_core_gemv_launch(s, 16, h200_sms);
  BOOST_TEST(launch_problem(good, h200).empty());
  auto l = good;
  l.threads = 2048;
  BOOST_TEST(launch_problem(l, h200).find("threads") != std::string::npos);
  l = good;
  l.groups = 0;
  BOOST_TEST(launch_problem(l, h200).find("grid") != std::string::npos);
  l = good;
  l.warps_per_row = 3;
  BOOST_TEST(launch_problem(l, h200).find("warps per row") != std::string::npos);
  l = good;
  l.dynamic_smem = 227 * 1024;
  BOOST_TEST(launch_problem(l, h200).find("opt-in maximum") != std::string::npos);
  s.n = 17;  // more rows than the CUDA-core kernel's 16
  BOOST_TEST(!launch_problem(cuda_core_gemv_launch(s, 16, h200_sms), h200).empty());
  s.n = 16;
  s.in = 770;  // not a multiple of 16 bytes
  BOOST_TEST(!launch_problem(cuda_core_gemv_launch(s, 16, h200_sms), h200).empty());
  // A device with less opt-in shared memory (an sm_86 part: 99 KB) refuses the batch-64 tensor-core
  // LM head of Qwen2.5 (64 x 1856 B + 20 KB static = 136 KB).
  launch_limits small;
  small.optin_smem = 99 * 1024;
  const auto q = fused_step_gemvs(shape("qwen2.5-0.5b"), 64, 2, fused_decode_options{}, h200_sms);
  BOOST_TEST(launch_problem(q[4], h200).empty());
  BOOST_TEST(!launch_problem(q[4], small).empty());
  BOOST_TEST(
      !fused_step_problem(shape("qwen2.5-0.5b"), 64, 2, fused_decode_options{}, h200_sms, small)
           .empty());
}
