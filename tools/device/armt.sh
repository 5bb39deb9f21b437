#!/usr/bin/env bash
# ARMT on the H200 (issue 14), from the repo root, < 6 minutes: builds tests/cuda/test_armt.cu and
# bench/armt/bench_armt.cu with nvcc for sm_90a (header-only Boost.Test, no CMake, no PCRE2),
# runs the test (CUDA = PyTorch goldens and CPU, diagonal = sequential on the GPU), then the bench
# (bf16, Llama-3.2-1B and Llama-160M shapes, (S, M) in {512,1024,2048,4096} x 128, 4k..128k tokens;
# exits 1 when the diagonal executor's outputs differ from the sequential one's).
# Writes exactly two files: $OUT/armt/armt.log (everything) and $OUT/armt/bench_armt.json.
# Needs nothing carried: the test fixtures are tracked (tests/data/armt, tests/data/goldens).
#   ARMT_LENGTHS=4096,16384 tools/device/armt.sh    # fewer lengths
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-build/device_armt}/armt
mkdir -p "$out"
log=$out/armt.log
: >"$log"
bin=/tmp/armt_device
mkdir -p "$bin"
flags=(-std=c++20 -O3 -DNDEBUG --expt-relaxed-constexpr -diag-suppress 20012
  -gencode=arch=compute_90a,code=sm_90a -Iinclude -Itests -Ibench -I/usr/include/eigen3)
status=0
{
  echo "== $(date -u) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
  echo "== build (nvcc, parallel)"
} >>"$log"
t0=$SECONDS
nvcc "${flags[@]}" -DCROSSBATCH_BOOST_TEST_INCLUDED "-DCROSSBATCH_TEST_DATA=\"$PWD/tests/data\"" \
  "-DCROSSBATCH_SOURCE_DIR=\"$PWD\"" tests/cuda/test_armt.cu -o "$bin/test_armt" -lcublasLt -lcublas \
  >"$bin/build_test.log" 2>&1 &
p1=$!
nvcc "${flags[@]}" bench/armt/bench_armt.cu -o "$bin/bench_armt" -lcublasLt >"$bin/build_bench.log" 2>&1 &
p2=$!
wait $p1 || { echo "BUILD FAILED: test_armt"; cat "$bin/build_test.log"; status=1; } >>"$log"
wait $p2 || { echo "BUILD FAILED: bench_armt"; cat "$bin/build_bench.log"; status=1; } >>"$log"
echo "build: $((SECONDS - t0)) s" >>"$log"
if [ -x "$bin/test_armt" ]; then
  echo "== tests/cuda/test_armt" >>"$log"
  timeout 90 "$bin/test_armt" --log_level=test_suite >>"$log" 2>&1 || { echo "test_armt: FAILED (rc $?)" >>"$log"; status=1; }
fi
if [ -x "$bin/bench_armt" ]; then
  echo "== bench/armt (bf16)" >>"$log"
  left=$((330 - SECONDS))
  ((left > 30)) || left=30
  timeout "$left" "$bin/bench_armt" --dtype bfloat16 --lengths "${ARMT_LENGTHS:-4096,16384,65536,131072}" \
    --json "$out/bench_armt.json" >>"$log" 2>&1 || { echo "bench_armt: FAILED or timed out (rc $?)" >>"$log"; status=1; }
fi
echo "== done in $SECONDS s, status $status" >>"$log"
tail -40 "$log"
exit $status
