#!/usr/bin/env bash
# The fused decode step at batch 1-64 (issue 15, GPU part; issue 10's batch-16 LDA target) on the
# device machine, in under 5 minutes: builds tests/cuda/test_fused_decode.cu (nvcc, header-only
# Boost.Test), bench_decode and bench_lda (CMake, sm_90a) in parallel, runs the test (fused step =
# run_layers at the three real shapes, float32 / bfloat16, batch 1-64; batch invariance; the
# counted static shared memory = the compiled kernels'), then bench_decode on the SmolLM2-135M and
# Qwen2.5-0.5B shapes (bf16, batch 1/8/16/32, modes fused+pdl / graph+pdl = unfused; batch 64:
# graph+pdl and fused+pdl/m64 (the fused step above the default max_batch 32); the GEMV switches
# at batch 1, 4, 8 and 16), then bench_lda at batch 16, then compute-sanitizer memcheck of the
# fused step at SmolLM2 batch 64. Writes $OUT/decode/log.txt (everything, the tables last) and $OUT/decode/result.json
# (exit codes, bench_decode's rows, bench_lda's JSON). Needs no model and no carried files beyond
# .devdeps/ (PCRE2, for the CMake targets, when the machine lacks it).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-build/device_out}/decode
mkdir -p "$out"
log=$out/log.txt
: >"$log"
build=build/device-decode
mkdir -p "$build/tests"
t0=$(date +%s)
stamp() { echo "[$(($(date +%s) - t0)) s] $*" >>"$log"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >>"$log" 2>&1

. tools/device/pcre2_env.sh  # PCRE2 from .devdeps/root when the machine lacks it; sets extra

# Build: the test with nvcc (as tools/device_check.sh does), the benchmarks with CMake, at once.
. tools/device/nvcc_flags.sh  # sets nvcc_flags
stamp "build"
(timeout 240 nvcc "${nvcc_flags[@]}" tests/cuda/test_fused_decode.cu -o "$build/tests/cuda_test_fused_decode" \
  -lcublasLt -lcublas >"$build/build_test.log" 2>&1 || echo "BUILD FAILED: test_fused_decode" >>"$build/build_test.log") &
{
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCROSSBATCH_CUDA=ON -DCROSSBATCH_BUILD_TESTS=OFF \
    -DCMAKE_CUDA_ARCHITECTURES=90a-real "${extra[@]}" >"$build/configure.log" 2>&1 &&
    timeout 240 cmake --build "$build" -j "$(nproc)" --target bench_decode bench_lda -- -k 0 >"$build/build_bench.log" 2>&1
} || echo "BUILD FAILED: benchmarks" >>"$build/build_bench.log"
wait
cat "$build/build_test.log" "$build/build_bench.log" | grep -E "error|BUILD FAILED" | head -40 >>"$log"
test_bin=$build/tests/cuda_test_fused_decode
decode_bin=$build/bench/decode/bench_decode
lda_bin=$build/bench/lda/bench_lda

stamp "test_fused_decode"
test_rc=127
if [ -x "$test_bin" ]; then
  timeout 90 "$test_bin" --log_level=test_suite --report_level=short --color_output=false >"$build/test.log" 2>&1
  test_rc=$?
  grep -E "error|fatal|failure|Test module|passed|skipped|path A =" "$build/test.log" | head -120 >>"$log"
  echo "test_fused_decode: exit $test_rc" >>"$log"
fi

stamp "bench_decode"
decode_rc=127
rm -f "$build/decode.json" "$build/decode_64.json" "$build/decode_tune.json" "$build/lda.json"
if [ -x "$decode_bin" ]; then
  timeout 80 "$decode_bin" --shapes smollm2-135m,qwen2.5-0.5b --batches 1,8,16,32 \
    --modes fused+pdl,graph+pdl --json "$build/decode.json" >"$build/decode.log" 2>&1
  decode_rc=$?
  # Batch 64: the plain layers first (the reference), then the fused step with max_batch 64 (m64).
  timeout 40 "$decode_bin" --shapes smollm2-135m,qwen2.5-0.5b --batches 64 --modes graph+pdl \
    --tune "m64" --json "$build/decode_64.json" >>"$build/decode.log" 2>&1
  rc64=$?
  # The GEMV switches: tensor cores from batch 1 on (t1; the default starts at 2), CUDA cores only
  # (-cc). At batch 16, m8 (the step before: plain layers) is the graph+pdl row above.
  timeout 40 "$decode_bin" --shapes smollm2-135m,qwen2.5-0.5b --batches 1,4,8,16 --modes fused+pdl \
    --tune "t1;w16b8-cc" --json "$build/decode_tune.json" >>"$build/decode.log" 2>&1
  tune_rc=$?
  ((decode_rc == 0)) && decode_rc=$rc64
  ((decode_rc == 0)) && decode_rc=$tune_rc
  cat "$build/decode.log" >>"$log"
  echo "bench_decode: exit $decode_rc" >>"$log"
fi

stamp "bench_lda"
lda_rc=127
if [ -x "$lda_bin" ]; then
  timeout 60 "$lda_bin" --shape smollm2-135m --batch 16 --json "$build/lda.json" >"$build/lda.log" 2>&1
  lda_rc=$?
  cat "$build/lda.log" >>"$log"
  echo "bench_lda: exit $lda_rc" >>"$log"
fi
# compute-sanitizer memcheck of the fused step at SmolLM2 batch 64 (tensor-core GEMV through m64,
# after the plain layers ("fused" is the plain layers at 64 by default); prompt 128 as in the run
# that hit an illegal address, 4 new tokens), when the time allows (the whole script
# stays under 5 minutes).
memcheck_rc=-1
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
left=$((285 - ($(date +%s) - t0)))  # seconds left of the 5 minutes, less the summary
if [ -x "$decode_bin" ] && [ -n "$sanitizer" ] && ((left >= 30)); then
  stamp "memcheck"
  timeout $((left < 70 ? left : 70)) "$sanitizer" --tool memcheck --error-exitcode 9 "$decode_bin" --shapes smollm2-135m \
    --batches 64 --modes fused --tune m64 --new 4 --reps 1 >"$build/memcheck.log" 2>&1
  memcheck_rc=$?
  grep -E "ERROR SUMMARY|Invalid|out of bounds|at 0x|by thread|logits|failed" "$build/memcheck.log" | head -30 >>"$log"
  echo "memcheck bench_decode (smollm2 batch 64): exit $memcheck_rc (124: timed out, not a failure)" >>"$log"
else
  echo "memcheck skipped (compute-sanitizer: '${sanitizer}', elapsed $(($(date +%s) - t0)) s)" >>"$log"
fi
stamp "done"

python3 - "$build" "$out/result.json" "$test_rc" "$decode_rc" "$lda_rc" "$memcheck_rc" >>"$log" 2>&1 <<'PY'
import json, pathlib, sys
build, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
def lines(p):
    try:
        return [json.loads(l) for l in open(p) if l.strip().startswith("{")]
    except OSError:
        return []
rows = [r for r in lines(build / "decode.json") + lines(build / "decode_64.json")
        + lines(build / "decode_tune.json") if r.get("kind") == "decode"]
try:
    lda = json.loads((build / "lda.json").read_text())
except (OSError, ValueError):
    lda = None
res = {"exit": {"test_fused_decode": int(sys.argv[3]), "bench_decode": int(sys.argv[4]),
                "bench_lda": int(sys.argv[5]), "memcheck": int(sys.argv[6])}, "decode": rows, "lda": lda}
dest.write_text(json.dumps(res, indent=1) + "\n")
print("== summary: ms per decode step (bf16, prompt 128, 128 new) ==")
print("| shape | batch | mode | route | ms/step | tok/s | vs fused+pdl batch 1 | check |")
print("|---|---|---|---|---|---|---|---|")
base = {r["shape"]: r["ms_per_step"] for r in rows if r["batch"] == 1 and r["mode"] == "fused+pdl"}
for r in rows:
    b1 = base.get(r["shape"])
    rel = f"{r['ms_per_step'] / b1:.2f}x" if b1 else ""
    print(f"| {r['shape']} | {r['batch']} | {r['mode']} | {r.get('route', '')} | {r['ms_per_step']:.4f} "
          f"| {r['tokens_per_s']:.0f} | {rel} | {r['check']} ({r['max_logit_err']:.1e}) |")
if lda:
    print(f"bench_lda batch {lda['batch']}: {lda['ratio']:.2f}x one prompt at a time (target >= 10x), "
          f"LDA step {lda['lda_step_ms_batch']:.4f} ms vs {lda['lda_step_ms_1']:.4f} ms at batch 1, "
          f"single-model step {lda['single_step_ms_batch']:.4f} / {lda['single_step_ms_1']:.4f} ms, "
          f"route {lda.get('route_batch')}, check {lda['check']}")
print("exit codes:", res["exit"])
PY
tail -n 60 "$log"
((test_rc == 0 && decode_rc == 0 && lda_rc == 0 && (memcheck_rc == -1 || memcheck_rc == 0 || memcheck_rc == 124)))
