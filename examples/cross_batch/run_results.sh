#!/usr/bin/env bash
# Regenerates examples/cross_batch/RESULTS.md: the reference's four training methods (baseline,
# crossbatch, lora_lmhead, lora_crossbatch; examples/parallel_decoding/train_cross_batch) on
# synthetic split-context and normal stories (tools/make_stories.py), 3 seeds, the mixer's mode
# (scale or gate) chosen per method on the validation groups, the test groups reported once:
# answer-token loss (with the mixer, without it, and the like-for-like control: as many partners
# from other stories) and EM / F1 / lenient of greedy answers under the batch strategy's prompts.
#   examples/cross_batch/run_results.sh     CPU, SCALE=small: the reduced run of RESULTS.md (split stories,
#                                           3 seeds x three runs; ~40 min on 2 shared cores, 3 runs at a time)
#   DEVICE=cuda SCALE=full BIN=build/cuda examples/cross_batch/run_results.sh     (tools/device/methods.sh)
# Environment: DEVICE cpu|cuda, SCALE small|full, BIN (build dir holding
# examples/parallel_decoding/train_cross_batch; default: builds build/mix on the CPU), WORK (scratch,
# default build/cross_batch/methods), SEEDS ("0 1 2"), THREADS (CPU), JOBS (parallel runs; CUDA:
# all at once), VARIANTS ("split normal"), MODES ("plain scale gate": plain trains the two methods
# without a mixer, scale and gate the two with one), RESULTS (merged JSON, default $WORK/results.json), MD (default
# examples/cross_batch/RESULTS.md; MD=- skips it), TIME_LIMIT (seconds per run, 0 = none).
set -uo pipefail
cd "$(dirname "$0")/../.."
DEVICE=${DEVICE:-cpu}
SCALE=${SCALE:-small}
MODEL=${MODEL:-models/smollm2-135m-instruct}
WORK=${WORK:-build/cross_batch/methods}
SEEDS=${SEEDS:-0 1 2}
MODES=${MODES:-plain scale gate}
THREADS=${THREADS:-1}
RESULTS=${RESULTS:-$WORK/results.json}
MD=${MD:-examples/cross_batch/RESULTS.md}
TIME_LIMIT=${TIME_LIMIT:-0}
if [ "$SCALE" = full ]; then
  # groups (contexts) of 1-5 questions; ~3.7 questions and ~450 tokens per group
  TRAIN=${TRAIN:-80} VAL=${VAL:-24} TEST=${TEST:-60} EPOCHS=${EPOCHS:-2} TOKENS=${TOKENS:-24}
  JOBS=${JOBS:-18}
  VARIANTS=${VARIANTS:-split normal}
else
  TRAIN=${TRAIN:-10} VAL=${VAL:-4} TEST=${TEST:-8} EPOCHS=${EPOCHS:-1} TOKENS=${TOKENS:-12}
  JOBS=${JOBS:-3}
  VARIANTS=${VARIANTS:-split}
fi
LR=${LR:-5e-4}
BATCH=${BATCH:-4}
[ -f "$MODEL/config.json" ] || scripts/get_default_model.sh
if [ -z "${BIN:-}" ]; then
  BIN=build/mix
  cmake -S . -B "$BIN" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BIN" --target train_cross_batch -j2 || exit 1
fi
bin=$BIN/examples/parallel_decoding/train_cross_batch
mkdir -p "$WORK/logs"
python3 tools/make_stories.py --out-dir "$WORK/data" --seed 0 --train 300 --test 100 >&2 || exit 1
start=$SECONDS

# One run: variant (split|normal) seed mode (plain|scale|gate). The plain run trains the two
# methods without a mixer, the scale and gate runs the two with one in that mode (LoRA first: a run
# stopped by TIME_LIMIT keeps what it finished, its JSON is written after every method). Three runs
# of two methods each, so that no run is twice as long as the others (an H200 call of 340 s cut off
# every run that trained all four).
one() {
  local variant=$1 seed=$2 mode=$3 prefix methods flags=()
  prefix=$([ "$variant" = split ] && echo stories_split || echo stories)
  case $mode in
    plain) methods=lora_lmhead,baseline ;;
    scale) methods=lora_crossbatch,crossbatch ;;
    gate) methods=lora_crossbatch,crossbatch flags=(--use-gate) ;;
    *) echo "run_results.sh: MODES: unknown mode '$mode' (plain, scale, gate)" >&2; exit 2 ;;
  esac
  local name=${variant}_s${seed}_${mode}
  local cmd=("$bin" --dataset squad --data "$WORK/data/${prefix}_train.json" --eval-data "$WORK/data/${prefix}_test.json"
    --model "$MODEL" --max-samples "$TRAIN" --val-samples "$VAL" --eval-samples "$TEST" --min-questions 1 --max-questions 5
    --epochs "$EPOCHS" --batch-size "$BATCH" --lr "$LR" --seed "$seed" --methods "$methods" "${flags[@]}"
    --save-dir "$WORK/ckpt/$name" --force --device "$DEVICE" --threads "$THREADS" --max-new-tokens "$TOKENS" --quiet
    --json-out "$WORK/logs/$name.json")
  [ "$TIME_LIMIT" -gt 0 ] && cmd=(timeout "$TIME_LIMIT" "${cmd[@]}")
  rm -f "$WORK/logs/$name.json"
  "${cmd[@]}" >"$WORK/logs/$name.log" 2>&1
  echo "[methods $((SECONDS - start)) s] $name: exit $?" >&2
}
running=0
for seed in $SEEDS; do
  for variant in $VARIANTS; do
    for mode in $MODES; do
      one "$variant" "$seed" "$mode" &
      running=$((running + 1))
      if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
    done
  done
done
wait
python3 - "$WORK/logs" "$RESULTS" "$DEVICE" "$SCALE" "$((SECONDS - start))" <<'EOF'
import json, pathlib, subprocess, sys, datetime, platform
logs, out, device, scale, seconds = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
runs = []
for f in sorted(logs.glob("*.json")):
    if f.stat().st_size == 0:
        continue
    variant, seed, mode = f.stem.split("_")
    runs.append({"variant": variant, "seed": int(seed[1:]), "mode": mode, "history": json.loads(f.read_text())})
def finished(stem):
    j = logs / (stem + ".json")
    if not j.exists():
        return False
    h = json.loads(j.read_text())
    want = 2  # every run trains two methods
    return len([m for m in h.get("methods", {}).values() if "skipped" not in m]) == want
missing = sorted(p.stem for p in logs.glob("*.log") if not finished(p.stem))
try:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
except OSError:
    commit = "?"
meta = {"device": device, "scale": scale, "seconds": seconds, "commit": commit,
        "date": datetime.date.today().isoformat(), "host": platform.node(), "failed_runs": missing}
pathlib.Path(out).parent.mkdir(parents=True, exist_ok=True)
pathlib.Path(out).write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
print(f"wrote {out}: {len(runs)} runs, failed: {missing}", file=sys.stderr)
EOF
for f in "$WORK"/logs/*.log; do
  if ! [ -f "${f%.log}.json" ]; then echo "== $f (failed)" >&2; tail -5 "$f" >&2; fi
done
if [ "$MD" != - ]; then python3 examples/cross_batch/make_results.py "$RESULTS" "$MD"; fi
