#!/usr/bin/env bash
# Where a decode step spends its time at a given batch (issue 15's batch-64 target), on the device
# machine: builds bench_decode with nvcc (BIN overrides), runs it once for its own row, then
#   - Nsight Systems (when the image has nsys) over a 128-step run: every kernel's summed GPU time,
#     CUDA-graph nodes traced one by one, i.e. the times as they overlap under PDL;
#   - Nsight Compute over the first LAUNCHES kernels of a 3-step run (each kernel alone, flushed
#     caches): per-kernel time, DRAM bytes and grid. The weight fill, the prefill and the steps
#     are all in ncu.csv; one step lies between two advance kernels (bench/NOTES.md's batch-64
#     table was read that way).
# SHAPE (smollm2-135m), BATCH (64), MODE (fused+pdl: the session's default route for the batch).
# Writes $OUT/profile/{bench.log,ncu.csv} and, with nsys, nsys_cuda_gpu_kern_sum.csv. Exits
# non-zero when bench_decode's check fails.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-build/device_out}/profile
mkdir -p "$out"
shape=${SHAPE:-smollm2-135m}
batch=${BATCH:-64}
mode=${MODE:-fused+pdl}
bin=${BIN:-/tmp/decode_profile/bench_decode}
if [ ! -x "$bin" ]; then
  mkdir -p "$(dirname "$bin")"
  . tools/device/nvcc_flags.sh
  timeout 400 nvcc "${nvcc_flags[@]}" -Ibench bench/decode/bench_decode.cu -o "$bin" -lcublasLt -lcublas \
    >"$out/build.log" 2>&1 || { echo "decode_profile: build failed"; tail -20 "$out/build.log"; exit 1; }
fi
"$bin" --shapes "$shape" --batches "$batch" --modes "$mode" --reps 3 >"$out/bench.log" 2>&1
rc=$?
grep -E "^$shape|check|FAIL" "$out/bench.log" | head
nsys=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
if [ -n "$nsys" ]; then
  timeout 150 "$nsys" profile -t cuda --cuda-graph-trace=node -o "$out/run" --force-overwrite true \
    "$bin" --shapes "$shape" --batches "$batch" --modes "$mode" --reps 1 >"$out/nsys_run.log" 2>&1
  echo "nsys: exit $?"
  "$nsys" stats --report cuda_gpu_kern_sum --format csv --output "$out/nsys" "$out/run.nsys-rep" \
    >"$out/nsys_stats.log" 2>&1
  echo "nsys stats: exit $?"
  ls "$out"
  rm -f "$out/run.nsys-rep" "$out/run.sqlite"
else
  echo "decode_profile: no nsys"
fi
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
if [ -n "$ncu" ]; then
  timeout "${NCU_TIMEOUT:-150}" "$ncu" --clock-control none --graph-profiling node --launch-count "${LAUNCHES:-2500}" \
    --metrics gpu__time_duration.sum,dram__bytes_read.sum,launch__grid_size --csv --page raw \
    --log-file "$out/ncu.csv" "$bin" --shapes "$shape" --batches "$batch" --modes "$mode" --reps 1 --new 3 \
    >"$out/ncu_run.log" 2>&1
  echo "ncu: exit $?"
fi
exit $rc
