#!/usr/bin/env bash
# Prefill on the device machine (issue 15's prefill targets, issue 11's fusion prefill), in one call
# of under 10 minutes: builds tests/cuda/test_ops, test_model, test_fusion and test_engine (nvcc,
# header-only Boost.Test) and bench_attention, bench_decode, bench_paraphrase (CMake, sm_90a) in
# parallel; runs the tests (every attention case on both prefill kernels, CUDA = goldens, fusion
# and engine on the GPU), compute-sanitizer memcheck of the attention cases, bench_attention
# (CUDA-core vs tensor-core prefill, outputs checked), bench_decode's 512-token prefill at batch 1
# and 8 with --prefill-probe (host enqueue, eager wall, graph replay) on the SmolLM2-135M and
# Qwen2.5-0.5B shapes, and bench_paraphrase. Writes $OUT/prefill/log.txt (the tables last) and the
# benches' JSON there. Exits non-zero when a build, test or check fails. TESTS and BENCHES (words of
# "attention decode decode64 paraphrase"; decode64: decode at batch 1 and 64, prompt 128, 128 new)
# choose a subset.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-build/device_out}/prefill
mkdir -p "$out"
log=$out/log.txt
: >"$log"
build=build/device-prefill
mkdir -p "$build/tests"
t0=$(date +%s)
stamp() { echo "[$(($(date +%s) - t0)) s] $*" >>"$log"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >>"$log" 2>&1
status=0

. tools/device/pcre2_env.sh  # PCRE2 from .devdeps/root when the machine lacks it; sets extra

tests=(${TESTS:-test_ops test_model test_fusion test_engine})
. tools/device/nvcc_flags.sh  # sets nvcc_flags
stamp "build"
for t in "${tests[@]}"; do
  (timeout 420 nvcc "${nvcc_flags[@]}" "tests/cuda/$t.cu" -o "$build/tests/cuda_$t" -lcublasLt -lcublas \
    >"$build/build_$t.log" 2>&1 || echo "BUILD FAILED: $t" >>"$build/build_$t.log") &
done
benches=" ${BENCHES:-attention decode paraphrase} "
targets=()
[[ $benches == *" attention "* ]] && targets+=(bench_attention)
[[ $benches == *" decode"* ]] && targets+=(bench_decode)
[[ $benches == *" paraphrase "* ]] && targets+=(bench_paraphrase)
if ((${#targets[@]})); then
  { cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCROSSBATCH_CUDA=ON -DCROSSBATCH_BUILD_TESTS=OFF \
      -DCMAKE_CUDA_ARCHITECTURES=90a-real "${extra[@]}" >"$build/configure.log" 2>&1 &&
      timeout 420 cmake --build "$build" -j "$(nproc)" --target "${targets[@]}" -- -k 0 \
        >"$build/build_bench.log" 2>&1; } || echo "BUILD FAILED: benchmarks" >>"$build/build_bench.log"
fi
wait
stamp "built"
cat "$build"/build_*.log | grep -E "error|BUILD FAILED" | head -40 >>"$log"

for t in "${tests[@]}"; do
  bin=$build/tests/cuda_$t
  [ -x "$bin" ] || { echo "test $t: not built" >>"$log"; status=1; continue; }
  stamp "test $t"
  timeout 300 "$bin" --log_level=test_suite --report_level=short --color_output=false >"$build/test_$t.log" 2>&1
  rc=$?
  grep -E "error|fatal|failure|Test module|passed|skipped" "$build/test_$t.log" | head -60 >>"$log"
  echo "test $t: exit $rc" >>"$log"
  ((rc == 0)) || status=1
done

sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [ -x "$build/tests/cuda_test_ops" ] && [ -n "$sanitizer" ]; then
  stamp "memcheck attention"
  timeout 150 "$sanitizer" --tool memcheck --error-exitcode 9 "$build/tests/cuda_test_ops" \
    --run_test='attention_matches_cpu*' >"$build/memcheck.log" 2>&1
  rc=$?
  grep -E "ERROR SUMMARY|Invalid|out of bounds|at 0x|by thread" "$build/memcheck.log" | head -20 >>"$log"
  echo "memcheck test_ops attention: exit $rc (124: timed out)" >>"$log"
  ((rc == 0 || rc == 124)) || status=1
fi

run_bench() {  # name, timeout, command...
  local name=$1 limit=$2
  shift 2
  [ -x "$1" ] || { echo "$name: not built" >>"$log"; status=1; return; }
  stamp "$name"
  timeout "$limit" "$@" >"$build/$name.log" 2>&1
  local rc=$?
  cat "$build/$name.log" >>"$log"
  echo "$name: exit $rc" >>"$log"
  ((rc == 0)) || status=1
}
[[ $benches == *" attention "* ]] &&
  run_bench bench_attention 60 "$build/bench/attention/bench_attention" --json "$out/attention.json"
[[ $benches == *" decode "* ]] &&
  run_bench bench_decode_prefill 120 "$build/bench/decode/bench_decode" --shapes smollm2-135m,qwen2.5-0.5b \
    --batches 1,8 --prompt 512 --new 2 --modes graph+pdl --prefill-probe 1 --json "$out/decode_prefill.json"
[[ $benches == *" decode64 "* ]] &&
  run_bench bench_decode_64 150 "$build/bench/decode/bench_decode" --shapes smollm2-135m,qwen2.5-0.5b \
    --batches 1,64 --modes fused+pdl,graph+pdl --json "$out/decode_64.json"
[[ $benches == *" paraphrase "* ]] &&
  run_bench bench_paraphrase 120 "$build/bench/paraphrase/bench_paraphrase" --json "$out/paraphrase.json"
stamp "done"
echo "== tables ==" >>"$log"
grep -E "prefill probe|graph\+pdl|speedup|^causal|^segment|^dense|isolation / causal|fused|ensemble|exit" \
  "$log" | tail -40 >>"$log"
tail -n 45 "$log"
exit $status
