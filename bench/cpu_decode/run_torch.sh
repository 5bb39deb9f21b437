#!/usr/bin/env bash
# Runs the CPU decode benchmark and the PyTorch reference in one invocation and prints the table:
# tokens/s of crossbatch vs PyTorch eager (plain KV-cache loop) and transformers generate.
#   bench/cpu_decode/run_torch.sh [build dir]     (needs torch + transformers: pip install torch transformers)
# THREADS=N gives both sides N threads (default 0: all cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build/cpu}
threads=${THREADS:-0}
cmake --build "$build" --target bench_cpu_decode >/dev/null
mkdir -p bench/results
out=bench/results/cpu_decode.json
{ "$build/bench/cpu_decode/bench_cpu_decode" --threads "$threads"; python3 bench/hf_reference.py --threads "$threads"; } > "$out.tmp"
mv "$out.tmp" "$out"
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ours = {r["batch"]: r for r in rows if r["impl"] == "crossbatch"}
print(f"{'batch':>5} {'crossbatch tok/s':>17} {'torch loop tok/s':>17} {'hf generate tok/s':>18} {'vs torch':>9} {'vs generate':>12}")
for b, r in sorted(ours.items()):
    t = next(x for x in rows if x["impl"] == "torch-loop" and x["batch"] == b)
    g = next(x for x in rows if x["impl"] == "hf-generate" and x["batch"] == b)
    o = r["decode_tokens_per_s"]
    print(f"{b:>5} {o:>17.1f} {t['decode_tokens_per_s']:>17.1f} {g['decode_tokens_per_s']:>18.1f} "
          f"{o / t['decode_tokens_per_s']:>8.2f}x {o / g['decode_tokens_per_s']:>11.2f}x")
PY
