#!/usr/bin/env bash
# Regenerates examples/cross_batch/RESULTS.md: synthetic stories (normal and split-context), the
# frozen model's answer states, training of the baseline (LM head only) and crossbatch (LM head +
# mixer) methods with the per-epoch loss table, and EM/F1 of standard vs cross-batch untrained vs
# trained generation, on the default model on the CPU. Everything goes to build/cross_batch/.
#   examples/cross_batch/run_results.sh            (about an hour on 2 cores)
# Sizes can be changed through the environment: TRAIN_Q, TEST_Q, EPOCHS, LR, THREADS; VARIANTS="split"
# (or "full") reruns one variant and keeps the other's logs.
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${MODEL:-models/smollm2-135m-instruct}
TRAIN_Q=${TRAIN_Q:-400}
TEST_Q=${TEST_Q:-160}
EPOCHS=${EPOCHS:-5}
LR=${LR:-3e-4}
BATCH=${BATCH:-8}
VARIANTS=${VARIANTS:-split full}
THREADS=${THREADS:-1}  # one thread is the fastest on a shared 2-core machine (OpenMP barriers spin)
OUT=build/cross_batch
[ -f "$MODEL/config.json" ] || scripts/get_default_model.sh
cmake -S . -B build/mix -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/mix --target cross_batch_train cross_batch_eval bench_cross_batch_cpu -j2
BIN=build/mix/examples/cross_batch
mkdir -p "$OUT/logs"
python3 tools/make_stories.py --out-dir "$OUT/data" --seed 0 --train 300 --test 100

train() {  # variant data-prefix log-name extra-flags...
  local variant=$1 prefix=$2 name=$3
  shift 3
  /usr/bin/time -f "%e s" -o "$OUT/logs/$name.time" \
    "$BIN/cross_batch_train" --model_name "$MODEL" --train_data "$OUT/data/${prefix}_train.json" \
    --eval_data "$OUT/data/${prefix}_test.json" --max_samples "$TRAIN_Q" --eval_samples "$TEST_Q" --mix_method attention \
    --num_epochs "$EPOCHS" --batch_size "$BATCH" --learning_rate "$LR" --threads "$THREADS" --quiet \
    --output "$OUT/logs/$name.json" "$@" | tee "$OUT/logs/$name.md"
}
for variant in $VARIANTS; do
  prefix=$([ "$variant" = split ] && echo stories_split || echo stories)
  # The reference's methods with its default mixer (attention, scale mode, last layer) ...
  train $variant $prefix "train_$variant" --method baseline,crossbatch --combine scale --mix_layer -1 --save_dir "$OUT/ckpt/$variant"
  # ... and the question-aware gate.
  train $variant $prefix "train_${variant}_gate" --method crossbatch --combine gate --mix_layer -1 --save_dir "$OUT/ckpt/$variant/gate"
  if [ "$variant" = split ]; then
    # An intermediate layer in project mode (final norm + head on the mixed layer-20 states).
    train $variant $prefix "train_${variant}_gate-layer20" --method crossbatch --combine gate --mix_layer 20 \
      --projection project --save_dir "$OUT/ckpt/$variant/gate-layer20"
  fi
  /usr/bin/time -f "%e s" -o "$OUT/logs/eval_$variant.time" \
    "$BIN/cross_batch_eval" --model_name "$MODEL" --data "$OUT/data/${prefix}_test.json" --max_samples "$TEST_Q" \
    --batch_size "$BATCH" --max_new_tokens 16 --run_comparison \
    --checkpoint "$OUT/ckpt/$variant/crossbatch" "$OUT/ckpt/$variant/gate/crossbatch" \
    --baseline_checkpoint "$OUT/ckpt/$variant/baseline" --also_untrained --threads "$THREADS" --quiet \
    --output "$OUT/logs/eval_$variant.json" | tee "$OUT/logs/eval_$variant.md"
done
"build/mix/bench/cross_batch/bench_cross_batch_cpu" --model-dir "$MODEL" --batch 8 --prompt 64 --new-tokens 16 --groups 2 \
  --repeats 3 --threads "$THREADS" | tee "$OUT/logs/bench_cpu.txt"
python3 examples/cross_batch/make_results.py "$OUT/logs" examples/cross_batch/RESULTS.md
