#!/usr/bin/env bash
# Per-kernel profile of the batch-1 decode step on the device machine: Nsight Compute over a window
# of exactly one step's kernels (after the prefill and a few steps) of bench_decode's fused+pdl mode
# on the Qwen2.5-0.5B shape, for each binary given (e.g. the previous and the current build), then
# ncu_table.py's per-kernel table. The CSVs and tables go to $OUT (else build/profile).
#   bench/decode/profile.sh BIN:KERNELS_PER_STEP [...]    e.g. build/device/bench/decode/bench_decode:123
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-build/profile}
mkdir -p "$out"
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
kernels='regex:fused_gemv|rope_attention|rope_kv|attention_decode|attention_combine|argmax|advance|embedding'
metrics=gpu__time_duration.sum,dram__bytes_read.sum,launch__grid_size,launch__registers_per_thread,sm__warps_active.avg.pct_of_peak_sustained_active
for spec in "$@"; do
  bin=${spec%%:*}
  per=${spec##*:}
  name=$(basename "$bin")
  timeout 100 "$ncu" --clock-control none --graph-profiling node -k "$kernels" --launch-skip 400 --launch-count "$per" \
    --metrics "$metrics" --csv --page raw --log-file "$out/ncu_$name.csv" \
    "$bin" --shapes qwen2.5-0.5b --batches 1 --modes fused+pdl --reps 1 --new 12 >"/tmp/ncu_$name.err" 2>&1
  echo "ncu $name: exit $?"
  python3 bench/decode/ncu_table.py "$out/ncu_$name.csv" "$name" | tee "$out/ncu_$name.txt" || tail -5 "/tmp/ncu_$name.err"
done
