#!/usr/bin/env bash
# The cross-batch GPU checks in one command on the device machine (as tools/device_check.sh does for
# the core): builds the gpu-labelled tests tests/cuda/test_mix.cu and test_mix_train.cu against
# header-only Boost.Test with nvcc for sm_90a, runs them, then builds and runs
# bench/cross_batch/bench_cross_batch (batch 32, SmolLM2-135M shape, bf16 and float32, with and
# without programmatic dependent launch). Logs and JSON go to $OUT (else build/device_cross_batch/).
#   bench/cross_batch/device_run.sh [test] [bench]      (default: both)
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-build/device_cross_batch}
build=build/device_cross_batch/bin
mkdir -p "$out" "$build"
stages=("$@")
((${#stages[@]})) || stages=(test bench)
has() { local s; for s in "${stages[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }
status=0
flags=(-std=c++20 -O3 -DNDEBUG --expt-relaxed-constexpr -diag-suppress 20012 -gencode=arch=compute_90a,code=sm_90a
  -Iinclude -Itests -I/usr/include/eigen3 -DCROSSBATCH_BOOST_TEST_INCLUDED "-DCROSSBATCH_TEST_DATA=\"$PWD/tests/data\""
  "-DCROSSBATCH_SOURCE_DIR=\"$PWD\"")
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"

if has test; then
  for t in test_mix test_mix_train; do
    (nvcc "${flags[@]}" "tests/cuda/$t.cu" -o "$build/cuda_$t" -lcublasLt -lcublas >"$out/build_$t.log" 2>&1 || echo "BUILD FAILED: $t") &
  done
fi
if has bench; then
  (nvcc "${flags[@]}" bench/cross_batch/bench_cross_batch.cu -o "$build/bench_cross_batch" -lcublasLt -lcublas \
    >"$out/build_bench.log" 2>&1 || echo "BUILD FAILED: bench_cross_batch") &
fi
wait

if has test; then
  for t in test_mix test_mix_train; do
    grep -E "error" "$out/build_$t.log" | head -20
    timeout 400 "$build/cuda_$t" --log_level=test_suite --report_level=short --color_output=false >"$out/test_$t.log" 2>&1
    rc=$?
    echo "test $t: exit $rc"
    ((rc == 0)) || status=1
    grep -E "error|fatal|failure|passed|skipped|Test module" "$out/test_$t.log" | head -40
  done
fi

if has bench; then
  grep -E "error" "$out/build_bench.log" | head -20
  rm -f "$out/cross_batch.json"
  for dtype in bf16 float32; do
    for pdl in 1 0; do
      "$build/bench_cross_batch" --dtype "$dtype" --pdl "$pdl" --batch 32 --json "$out/cross_batch.json" 2>&1 |
        tee -a "$out/bench_cross_batch.log" || status=1
    done
  done
fi
exit $status
