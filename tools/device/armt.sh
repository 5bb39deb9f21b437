#!/usr/bin/env bash
# ARMT on the H200 (issue 14), from the repo root, < 6 minutes. Builds tests/cuda/test_armt.cu
# and bench/armt/bench_armt.cu with nvcc for sm_90a (header-only Boost.Test, no CMake, no PCRE2),
# then runs
#   1. the GPU test: pinned strided-batched matmul batch-invariant; CUDA sequential = PyTorch
#      goldens and CPU; diagonal (fast path and per-member) = sequential within 1e-6 in float32
#      for N = 1..16, batches 1/2/3, amortised; bf16 within dtype tolerance; CUDA generation =
#      PyTorch goldens and CPU (the CUDA generation check);
#   2. the bench (bf16, random weights): Llama-3.2-1B then Llama-160M shape, (S, M) in
#      {1024,512,2048,4096} x 128, 4k..128k tokens, full-attention prefill up to ARMT_FULL_MAX
#      (32k: our full attention at 128k takes ~90 s), each shape within its time budget
#      (ARMT_BUDGETS, seconds; rows past it are listed as skipped in the JSON); exits 1 when the
#      diagonal executor's outputs differ from the sequential one's.
# Writes two files: $OUT/armt/armt.log (everything, the tables included) and
# $OUT/armt/bench_armt.json (python3 bench/armt/report.py turns it into the table and the plot).
# Needs nothing carried: the test fixtures are tracked (tests/data/armt).
#   ARMT_LENGTHS=4096,16384 ARMT_BUDGETS=100,40 tools/device/armt.sh
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
  echo "== $(git log -1 --format='%h %s' 2>/dev/null)"
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
  t1=$SECONDS
  timeout 100 "$bin/test_armt" --log_level=test_suite >>"$log" 2>&1 || { echo "test_armt: FAILED (rc $?)" >>"$log"; status=1; }
  echo "test: $((SECONDS - t1)) s" >>"$log"
fi
if [ -x "$bin/bench_armt" ]; then
  echo "== bench/armt (bf16)" >>"$log"
  left=$((340 - SECONDS))
  ((left > 30)) || left=30
  # Budgets per shape, in seconds of the bench's own clock (it stops starting rows past them).
  budgets=${ARMT_BUDGETS:-$((left * 68 / 100)),$((left * 22 / 100))}
  echo "bench: $left s left, budgets $budgets" >>"$log"
  timeout "$left" "$bin/bench_armt" --dtype bfloat16 --shapes llama-1b,llama-160m \
    --configs 1024x128,512x128,2048x128,4096x128 \
    --lengths "${ARMT_LENGTHS:-4096,8192,16384,32768,65536,131072}" --full-max "${ARMT_FULL_MAX:-32768}" \
    --budgets "$budgets" --json "$out/bench_armt.json" >>"$log" 2>&1 || { echo "bench_armt: FAILED or timed out (rc $?)" >>"$log"; status=1; }
  python3 bench/armt/report.py "$out/bench_armt.json" >>"$log" 2>&1 || true
fi
echo "== done in $SECONDS s, status $status" >>"$log"
tail -60 "$log"
exit $status
