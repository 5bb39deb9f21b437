#!/usr/bin/env bash
# Paraphrase fusion on the H200, one command from the repository root (no network):
#   OUT=/some/dir bash tools/device/fusion.sh
# Needs the default model (tools/device/prepare_model.sh: its three pieces .devmodel0..2 carried in
# three calls on one warm machine) and the gguf wheel in .whl/; PCRE2 from .devdeps/root when the machine lacks it (as tools/device_check.sh).
# Steps: convert the model (tools/convert.py), build paraphrase_fusion + bench_paraphrase (CMake,
# sm_90a) and tests/cuda/test_fusion.cu (nvcc, header-only Boost.Test), run the gpu test, the
# bench, then the experiment: fused variants (shared tail 0/3 x natural/restarted positions) on
# the validation split, the best by mean accuracy over 2..5 paraphrases, then every method on the
# test split for 1..5 paraphrases (weighted_* over 3 confidence seeds of 100 samples). Writes two
# files:
#   $OUT/fusion/fusion.log   everything printed
#   $OUT/fusion/fusion.json  {"test", "validation", "choice", "bench", "meta"}
# examples/paraphrase_fusion/make_results.py turns fusion.json into RESULTS.md.
#   bash tools/device/fusion.sh quick   only the gpu test and the bench (no model needed), the bench
#                                       also at 64 questions and on the Qwen2.5-0.5B shape.
set -uo pipefail
quick=0
[ "${1:-}" = quick ] && quick=1
cd "$(dirname "$0")/../.."
out=${OUT:-build/device_fusion}/fusion
mkdir -p "$out"
exec > >(tee "$out/fusion.log") 2>&1
work=$(mktemp -d /tmp/fusion.XXXX)
start=$SECONDS
say() { echo "[fusion $((SECONDS - start)) s] $*"; }
status=0

# The model.
if ((quick == 0)) && [ ! -f models/smollm2-135m-instruct/config.json ] || [ ! -f models/smollm2-135m-instruct/model.embed_tokens.weight.npy ]; then
  . tools/device/prepare_model.sh
fi
((quick)) || [ -f models/smollm2-135m-instruct/config.json ] || { say "no converted model"; exit 1; }
say "model ready"

# PCRE2 (the crossbatch target needs it), as in tools/device_check.sh.
. tools/device/pcre2_env.sh  # PCRE2 from .devdeps/root when the machine lacks it; sets extra

# Build: the gpu test with nvcc directly, the example and the bench with CMake, in parallel.
build=build/device-fusion
mkdir -p "$build"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
(nvcc -std=c++20 -O3 -DNDEBUG --expt-relaxed-constexpr -diag-suppress 20012 \
  -gencode=arch=compute_90a,code=sm_90a -Iinclude -Itests -I/usr/include/eigen3 \
  -DCROSSBATCH_BOOST_TEST_INCLUDED "-DCROSSBATCH_TEST_DATA=\"$PWD/tests/data\"" "-DCROSSBATCH_SOURCE_DIR=\"$PWD\"" \
  tests/cuda/test_fusion.cu -o "$build/cuda_test_fusion" -lcublasLt -lcublas >"$work/build_test.log" 2>&1 ||
  echo "BUILD FAILED: test_fusion") &
test_build=$!
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCROSSBATCH_CUDA=ON -DCROSSBATCH_BUILD_TESTS=OFF \
  -DCMAKE_CUDA_ARCHITECTURES=90a-real "${extra[@]}" >"$work/configure.log" 2>&1 || { tail -30 "$work/configure.log"; status=1; }
cmake --build "$build" -j "$(nproc)" --target paraphrase_fusion bench_paraphrase -- -k 0 >"$work/build.log" 2>&1 ||
  { grep -E "error" -A3 "$work/build.log" | head -40; status=1; }
# Not a bare `wait`: it would also wait for the tee of the log (a process substitution) forever.
wait "$test_build"
grep -E "error" -A3 "$work/build_test.log" | head -20
say "built"

# The gpu test.
gpu_test=-1
if [ -x "$build/cuda_test_fusion" ]; then
  timeout 120 "$build/cuda_test_fusion" --log_level=test_suite --report_level=short --color_output=false >"$work/test.log" 2>&1
  gpu_test=$?
  grep -E "error|fatal|Test module|failure|passed|skipped" "$work/test.log" | head -40
fi
say "gpu test: exit $gpu_test"
((gpu_test == 0)) || status=1

# The bench.
bench=$build/bench/paraphrase/bench_paraphrase
if [ -x "$bench" ]; then
  timeout 120 "$bench" --json "$work/bench.json" || status=1
  if ((quick)); then
    timeout 120 "$bench" --batch 64 --reps 3 --json "$work/bench_b64.json" || status=1
    timeout 120 "$bench" --shape qwen2.5-0.5b --reps 3 --json "$work/bench_qwen.json" || status=1
  fi
fi
say "bench done"

# The experiment (examples/paraphrase_fusion/run_experiment.sh: validation variants, then test).
pf=$build/examples/paraphrase_fusion/paraphrase_fusion
if ((quick == 0)) && [ -x "$pf" ]; then
  timeout 300 bash examples/paraphrase_fusion/run_experiment.sh "$pf" "$work/experiment.json" \
    --model models/smollm2-135m-instruct --device cuda --dtype float32 --batch_size 8 \
    --max_rows 2048 || status=1
fi
say "experiment done"

python3 - "$work" "$out/fusion.json" "$gpu_test" <<'PY'
import json, os, sys
work, dst, gpu_test = sys.argv[1], sys.argv[2], int(sys.argv[3])
def load(p):
    return json.load(open(p)) if os.path.exists(p) else None
out = load(os.path.join(work, "experiment.json")) or {}
out["bench"] = load(os.path.join(work, "bench.json"))
for extra in ("bench_b64", "bench_qwen"):
    if load(os.path.join(work, extra + ".json")) is not None:
        out[extra] = load(os.path.join(work, extra + ".json"))
out["meta"] = {"gpu_test_exit": gpu_test, "device": os.popen(
    "nvidia-smi --query-gpu=name --format=csv,noheader").read().strip()}
json.dump(out, open(dst, "w"))
print(f"wrote {dst} ({os.path.getsize(dst)} bytes)")
PY
say "done, status $status"
rm -rf "$work"
sleep 1  # let tee flush the log
exit $status
