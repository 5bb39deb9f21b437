#!/usr/bin/env bash
# LoRA training on the GPU (issue 13, helper lora-cuda), from the repo root on the H200, < 6 min:
#  1. builds tests/cuda/test_lora_backward.cu and bench/lora/bench_lora.cu with nvcc for sm_90a
#     (header-only Boost.Test, no CMake, no PCRE2), in parallel;
#  2. runs the test (every CUDA backward op = the CPU op for float32 and bfloat16 activations;
#     whole tiny llama / qwen2 / gpt2 models CUDA = CPU in loss and gradients; one AdamW step);
#  3. the bench: bench_lora --prepare writes random-weight SmolLM2-135M and Qwen2.5-0.5B shapes,
#     a token batch (8 x 256) and the initial adapters; bench/lora/peft_reference.py trains
#     PyTorch + peft on them (eager; LORA_COMPILE=1 adds torch.compile); bench_lora trains ours,
#     checks its first step (loss, head and adapter gradient norms, dropout off) against peft's
#     and prints the table (exit 1 on a mismatch).
# Needs carried: .whl/peft-0.21.2-py3-none-any.whl, .whl/accelerate-1.15.0-py3-none-any.whl and
# .whl/psutil-7.2.2-cp36-abi3-manylinux2010_x86_64.manylinux_2_12_x86_64.manylinux_2_28_x86_64.whl
# (`pip download --no-deps peft accelerate psutil` into .whl/; installed with --no-index --no-deps
# into /tmp/site). Writes $OUT/lora/lora.log and $OUT/lora/bench_lora.json.
#   LORA_SHAPES=smollm2-135m LORA_STEPS=5 tools/device/lora.sh     # fewer / shorter runs
# Local smoke test without a GPU (prebuilt binaries in BIN, tiny shapes, float32 on the CPU):
#   LORA_DEVICE=cpu LORA_SHAPES=tiny-llama,tiny-qwen2 LORA_PREPARE="--batch 4 --seq 32" \
#     BIN=build/hc-loracuda tools/device/lora.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-build/device_lora}/lora
mkdir -p "$out"
log=$out/lora.log
: >"$log"
bin=${BIN:-/tmp/lora_device}
device=${LORA_DEVICE:-cuda}
work=/tmp/lora_work
rm -rf "$work"
mkdir -p "$bin" "$work"
shapes=${LORA_SHAPES:-smollm2-135m,qwen2.5-0.5b}
steps=${LORA_STEPS:-10}
flags=(-std=c++20 -O3 -DNDEBUG --expt-relaxed-constexpr -diag-suppress 20012
  -gencode=arch=compute_90a,code=sm_90a -Iinclude -Itests -Ibench -I/usr/include/eigen3)
status=0
say() { echo "[lora $SECONDS s] $*" >>"$log"; }
say "$(date -u) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
p1=0 p2=0
if [ -z "${BIN:-}" ]; then
  say "build (nvcc, parallel)"
  nvcc "${flags[@]}" -DCROSSBATCH_BOOST_TEST_INCLUDED "-DCROSSBATCH_TEST_DATA=\"$PWD/tests/data\"" \
    "-DCROSSBATCH_SOURCE_DIR=\"$PWD\"" tests/cuda/test_lora_backward.cu -o "$bin/test_lora_backward" \
    -lcublasLt -lcublas >"$bin/build_test.log" 2>&1 &
  p1=$!
  nvcc "${flags[@]}" bench/lora/bench_lora.cu -o "$bin/bench_lora" -lcublasLt -lcublas \
    >"$bin/build_bench.log" 2>&1 &
  p2=$!
fi
# peft (and what it imports that the image lacks) from the carried wheels, meanwhile
site=/tmp/site
python3 -m pip install -q --no-index --no-deps --target "$site" .whl/peft-*.whl .whl/accelerate-*.whl \
  .whl/psutil-*.whl >>"$log" 2>&1 || { say "pip install of the carried wheels FAILED"; status=1; }
export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
if ((p1)); then
  wait $p1 || { say "BUILD FAILED: test_lora_backward"; cat "$bin/build_test.log" >>"$log"; status=1; }
  wait $p2 || { say "BUILD FAILED: bench_lora"; cat "$bin/build_bench.log" >>"$log"; status=1; }
fi
say "build done"
if [ -x "$bin/test_lora_backward" ] && [ "$device" = cuda ]; then
  say "tests/cuda/test_lora_backward"
  timeout 90 "$bin/test_lora_backward" --log_level=test_suite >>"$log" 2>&1 ||
    { say "test_lora_backward: FAILED (rc $?)"; status=1; }
fi
if [ -x "$bin/bench_lora" ]; then
  say "bench_lora --prepare ($shapes)"
  timeout 120 "$bin/bench_lora" --prepare --work "$work" --shapes "$shapes" ${LORA_PREPARE:-} >>"$log" 2>&1 ||
    { say "bench_lora --prepare FAILED"; status=1; }
  say "peft reference"
  timeout 150 python3 bench/lora/peft_reference.py --work "$work" --shapes "$shapes" --steps "$steps" \
    --device "$device" --json "$work/peft.json" ${LORA_COMPILE:+--compile} >>"$log" 2>&1 ||
    { say "peft_reference.py FAILED (rc $?)"; status=1; }
  say "bench_lora (ours) against the reference"
  left=$((340 - SECONDS))
  ((left > 30)) || left=30
  timeout "$left" "$bin/bench_lora" --device "$device" --work "$work" --shapes "$shapes" --steps "$steps" \
    --reference "$work/peft.json" --json "$out/bench_lora.json" >>"$log" 2>&1 ||
    { say "bench_lora: FAILED (rc $?)"; status=1; }
fi
say "done, status $status"
tail -40 "$log"
exit $status
