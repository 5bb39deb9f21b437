#!/usr/bin/env bash
# The four training methods (issue 13, helper methods) on the H200, from the repo root, < 10 min (one device command; default 540 s of runs):
#  1. converts the default model (tools/device/prepare_model.sh: the GGUF pieces .devmodel0..2 and
#     the gguf wheel in .whl/) and builds examples/parallel_decoding/train_cross_batch for CUDA
#     (sm_90a, CMake, PCRE2 from .devdeps/root when the system has none);
#  2. examples/cross_batch/run_results.sh with DEVICE=cuda SCALE=full: split-context and normal
#     stories x seeds 0 1 2 x run (plain: lora_lmhead + baseline; scale / gate: the two mixer methods
#     in that mode), 18 train_cross_batch processes at once on the one GPU (each one is latency-bound), each
#     limited to what is left of the budget.
# Writes $OUT/methods/log.txt and $OUT/methods/results.json (the merged run JSON). Then, here:
#   examples/cross_batch/make_results.py results.json examples/cross_batch/RESULTS.md
# METHODS_BUILD_ONLY=1 stops after the build (run it in an earlier call on the same warm machine).
# Sizes through the environment (run_results.sh's TRAIN, VAL, TEST, EPOCHS, TOKENS, SEEDS, JOBS).
# Needs carried: .devmodel0..2 (the default model's GGUF pieces, one a call), .whl/ (the gguf wheel), and
# .devdeps/root when the machine has no PCRE2.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-build/device_out}/methods
mkdir -p "$out"
log=$out/log.txt
: >"$log"
start=$SECONDS
say() { echo "[methods $((SECONDS - start)) s] $*" | tee -a "$log" >&2; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >>"$log" 2>&1

[ -f models/smollm2-135m-instruct/config.json ] || . tools/device/prepare_model.sh >>"$log" 2>&1 &
prep=$!
. tools/device/pcre2_env.sh  # PCRE2 from .devdeps/root when the machine lacks it; sets extra
build=build/device-methods-build
say "configure + build train_cross_batch (CUDA)"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCROSSBATCH_CUDA=ON -DCROSSBATCH_BUILD_TESTS=OFF \
  -DCMAKE_CUDA_ARCHITECTURES=90a-real -DCMAKE_CUDA_FLAGS=-DCROSSBATCH_TRAIN_FLOAT32_ONLY=1 "${extra[@]}" >>"$log" 2>&1 &&
  cmake --build "$build" --target train_cross_batch -j "$(nproc)" >>"$log" 2>&1
rc=$?
wait "$prep"
say "build exit $rc"
[ "$rc" = 0 ] || { tail -30 "$log" >&2; exit 1; }
[ "${METHODS_BUILD_ONLY:-0}" = 1 ] && { say "build only: done"; exit 0; }
[ -f models/smollm2-135m-instruct/config.json ] || { say "no default model (carry .devmodel0..2 and .whl/: tools/device/prepare_model.sh)"; exit 1; }

# Each run stops by then (METHODS_SECONDS, default 540 of the device's 600 s a command; the merge
# and the tails need seconds). In 340 s, 12 processes finished 2 methods each.
left=$((${METHODS_SECONDS:-540} - (SECONDS - start)))
say "runs: $left s left"
DEVICE=cuda SCALE=full BIN=$build WORK=/tmp/methods_work RESULTS=$out/results.json MD=- TIME_LIMIT=$left \
  THREADS=1 examples/cross_batch/run_results.sh >>"$log" 2>&1
rc=$?
for f in /tmp/methods_work/logs/*.log; do
  echo "== $f" >>"$log"
  tr '\r' '\n' <"$f" | grep -v ETA | tail -15 >>"$log"
done
say "done: exit $rc, results in $out/results.json"
exit $rc
