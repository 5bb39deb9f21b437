#!/usr/bin/env bash
# Where a batch-1 prefill of 512 tokens spends its time (issue 15's prefill target), on the device
# machine: Nsight Compute times every kernel of bench_decode's warm-up prefill (SmolLM2-135M shape,
# bf16, random weights, plain layers, prompt 512) and bench/decode/ncu_table.py sums them by kernel
# and grid; the bench's own row (wall time of the same prefill, median of 3) stands beside the sum (a
# wall time above the sum points to host-side launch overhead). Exits non-zero when bench_decode's
# logits check or the profile fails. Needs bench_decode built (tools/device/decode.sh builds it in
# build/device-decode; BIN overrides). Writes $OUT/prefill/{ncu.csv,kernels.txt,bench.log}.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-build/device_out}/prefill
mkdir -p "$out"
bin=${BIN:-build/device-decode/bench/decode/bench_decode}
shape=${SHAPE:-smollm2-135m}
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
[ -x "$bin" ] || { echo "prefill_profile: no $bin" >&2; exit 1; }
"$bin" --shapes "$shape" --batches 1 --prompt 512 --new 2 --modes graph+pdl,fused+pdl >"$out/bench.log" 2>&1
bench_rc=$?
grep -E "^$shape" "$out/bench.log"
[ -n "$ncu" ] || { echo "prefill_profile: no ncu" >&2; exit 1; }
# The first launches: the random weights (fill_uniform), then the warm-up run's prefill (30 layers
# of 12 kernels) and its first steps.
timeout 240 "$ncu" --clock-control none --launch-count "${LAUNCHES:-800}" --metrics gpu__time_duration.sum,launch__grid_size \
  --csv --page raw --log-file "$out/ncu.csv" "$bin" --shapes "$shape" --batches 1 --prompt 512 --new 2 \
  --modes graph+pdl --reps 1 >"$out/ncu_run.log" 2>&1
ncu_rc=$?
echo "ncu: exit $ncu_rc"
python3 bench/decode/ncu_table.py "$out/ncu.csv" "$shape prefill, 512 tokens, batch 1" | tee "$out/kernels.txt"
((bench_rc == 0 && ncu_rc == 0))
