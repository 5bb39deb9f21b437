#!/usr/bin/env bash
# Regenerates the CPU block of examples/parallel_decoding/RESULTS.md and accuracy_vs_latency_cpu.png: synthetic
# SQuAD-format groups of 1..5 questions (tools/make_pardec_data.py), every local strategy that
# needs no checkpoint on the default model, on the CPU, greedy.
#   examples/parallel_decoding/run_results.sh
# Sizes through the environment: PER_SIZE (groups per size 1..5), MAX_NEW_TOKENS, DEP_TOKENS
# (collab_llm's dependency request), STRATEGIES, THREADS, BUILD (build directory).
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${MODEL:-models/smollm2-135m-instruct}
PER_SIZE=${PER_SIZE:-6}
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-24}
DEP_TOKENS=${DEP_TOKENS:-96}
STRATEGIES=${STRATEGIES:-all_in_one,sequential,batch,collab_llm}
THREADS=${THREADS:-1}  # one thread is the fastest on a shared 2-core machine
BUILD=${BUILD:-build/pardec}
OUT=$BUILD/pardec_results
[ -f "$MODEL/config.json" ] || scripts/get_default_model.sh
cmake --preset cpu -B "$BUILD" >/dev/null
cmake --build "$BUILD" --target compare_strategies -j2
python3 tools/make_pardec_data.py --out-dir "$OUT/data" --seed 0 --per-size "$PER_SIZE"
start=$(date +%s)
"$BUILD/examples/parallel_decoding/compare_strategies" --dataset squad --data "$OUT/data/squad_groups.json" \
  --model-name "$MODEL" --context-count 0 --min-questions 1 --max-questions 5 \
  --max-new-tokens "$MAX_NEW_TOKENS" --dependency-max-new-tokens "$DEP_TOKENS" --strategies "$STRATEGIES" \
  --seed 13 --threads "$THREADS" --json-out "$OUT/run" | tee "$OUT/table.txt"
secs=$(( $(date +%s) - start ))
python3 examples/parallel_decoding/make_results.py "$OUT/run" --md examples/parallel_decoding/RESULTS.md \
  --plot examples/parallel_decoding/accuracy_vs_latency_cpu.png \
  --note "Size: $PER_SIZE groups per group size 1..5 ($((PER_SIZE * 15)) questions), max_new_tokens $MAX_NEW_TOKENS, collab_llm dependency request $DEP_TOKENS tokens (the reference: 512), $THREADS CPU thread(s) on a shared 2-core machine: the run took $secs s. A small run: each cell of the by-size table holds a handful of questions, so differences of a few points are noise."
echo "wrote examples/parallel_decoding/RESULTS.md ($secs s)"
