#!/usr/bin/env bash
# The four training methods (issue 13, helper methods) on the H200, from the repo root, < 6 min:
#  1. converts the default model (tools/device/prepare_model.sh: the GGUF pieces in .devmodel/ and
#     the gguf wheel in .whl/) and builds examples/parallel_decoding/train_cross_batch for CUDA
#     (sm_90a, CMake, PCRE2 from .devdeps/root when the system has none);
#  2. examples/cross_batch/run_results.sh with DEVICE=cuda SCALE=full: split-context and normal
#     stories x seeds 0 1 2 x mixer mode (scale: all four methods; gate: the two with a mixer),
#     12 train_cross_batch processes at once on the one GPU (each one is latency-bound), each
#     limited to what is left of the budget.
# Writes $OUT/methods/log.txt and $OUT/methods/results.json (the merged run JSON). Then, here:
#   examples/cross_batch/make_results.py results.json examples/cross_batch/RESULTS.md
# METHODS_BUILD_ONLY=1 stops after the build (run it in an earlier call on the same warm machine).
# Sizes through the environment (run_results.sh's TRAIN, VAL, TEST, EPOCHS, TOKENS, SEEDS, JOBS).
# Needs carried: .devmodel/ (the default model's GGUF pieces), .whl/ (the gguf wheel), and
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
[ -f models/smollm2-135m-instruct/config.json ] || { say "no default model (carry .devmodel/ and .whl/)"; exit 1; }

left=$((340 - (SECONDS - start)))  # each run stops by then; the merge and the tails need seconds
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
