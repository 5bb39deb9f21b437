#!/usr/bin/env bash
# Parallel decoding (issue 12) on the device machine (H200), from the repo root, in under 6 minutes:
#  1. builds compare_strategies for CUDA (sm_90a) and converts the default model
#     (tools/device/prepare_model.sh: the GGUF pieces .devmodel0..2 and the gguf wheel in .whl/);
#  2. the RESULTS.md run on CUDA float32: the four strategies x SQuAD-format stories (groups of 1..5),
#     HotpotQA-style multi-context groups (2..4) and QuALITY-style multiple choice (3..5) x 3 data
#     seeds (decoding is greedy, so the seed draws the stories and the question order), <= 130 s;
#  3. the bench (bench/pardec/bench_pardec.py) in the time left (<= 170 s): questions/s of
#     all_in_one, sequential, batch and collab_llm on groups of 5 questions, ours vs transformers
#     replaying the same calls, CUDA float32 and bfloat16 (the CPU leg did not fit in an H200 call:
#     transformers on 16 CPU threads took over 170 s; the CPU comparison is bench/NOTES.md's), with the
#     teacher-forced float32 agreement check (bench exit 1 = a float32 token that is not
#     transformers' greedy choice; the script then exits 1 too).
# Writes $OUT/pardec/log.txt and $OUT/pardec/result.json ({bench, results: {dataset: {seed:
# {config, summary, by_group_size, samples}}}, stages}). Turn it into RESULTS.md with
#   examples/parallel_decoding/make_results.py --device-json result.json \
#     --md examples/parallel_decoding/RESULTS.md --plot examples/parallel_decoding/accuracy_vs_latency.png
# PARDEC_BUILD_ONLY=1 stops after the build (an earlier call on the same warm machine builds while
# the model is still being carried). Local smoke test without a GPU: PARDEC_DEVICE=cpu PARDEC_SCALE=toy PARDEC_THREADS=1 BIN=build/h-pardec \
#   tools/device/pardec.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-build/device_out}/pardec
mkdir -p "$out"
log=$out/log.txt
: >"$log"
start=$SECONDS
say() { echo "[pardec $((SECONDS - start)) s] $*" | tee -a "$log" >&2; }
device=${PARDEC_DEVICE:-cuda}
threads=${PARDEC_THREADS:-$(nproc)}  # CPU threads of both engines
scale=${PARDEC_SCALE:-full}
work=build/device-pardec
rm -rf "$work"  # no stale runs of an earlier call
mkdir -p "$work"
stages="{}"
stage() {  # stage NAME CMD...: runs CMD, logs its status and seconds
  local name=$1 t0=$SECONDS rc
  shift
  say "== $name"
  "$@" >>"$log" 2>&1
  rc=$?
  say "$name: exit $rc, $((SECONDS - t0)) s"
  stages=$(python3 -c "import json,sys; d=json.loads(sys.argv[1]); d[sys.argv[2]]={'exit':int(sys.argv[3]),'seconds':int(sys.argv[4])}; print(json.dumps(d))" \
    "$stages" "$name" "$rc" "$((SECONDS - t0))")
  return $rc
}

[ -f models/smollm2-135m-instruct/config.json ] || . tools/device/prepare_model.sh >>"$log" 2>&1
if [ -n "${BIN:-}" ]; then
  build=$BIN
else
  . tools/device/pcre2_env.sh  # sets extra (PCRE2 from .devdeps/root when missing)
  build=build/device-pardec-build
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >>"$log" 2>&1
  stage configure cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCROSSBATCH_CUDA=ON \
    -DCROSSBATCH_BUILD_TESTS=OFF -DCMAKE_CUDA_ARCHITECTURES=90a-real "${extra[@]}" || exit 1
  stage build cmake --build "$build" --target compare_strategies -j "$(nproc)" || exit 1
fi
bin=$build/examples/parallel_decoding/compare_strategies
[ "${PARDEC_BUILD_ONLY:-0}" = 1 ] && { say "build only: done"; exit 0; }
[ -f models/smollm2-135m-instruct/config.json ] || { say "no default model (carry .devmodel0..2 and .whl/: tools/device/prepare_model.sh)"; exit 1; }

# 2. The RESULTS.md run (first: it is what RESULTS.md needs). Sizes: groups per data set and seed;
# it may use up to 130 s, then the remaining runs are skipped (said in the log; the JSON lists the runs done).
if [ "$scale" = toy ]; then per_size=1 stories=3 squad_groups=2 hotpot_groups=2 quality_groups=1 tokens=6 dep=12 seeds="0"
else per_size=3 stories=24 squad_groups=0 hotpot_groups=6 quality_groups=6 tokens=32 dep=96 seeds="0 1 2"; fi
strategies=all_in_one,sequential,batch,collab_llm
results_start=$SECONDS
for seed in $seeds; do
  for ds in squad hotpot quality; do
    left=$((130 - (SECONDS - results_start)))
    if [ "$left" -lt 10 ]; then say "skipping $ds seed $seed: time budget spent"; continue; fi
    data=$work/data_$seed
    [ -f "$data/squad_groups.json" ] ||
      python3 tools/make_pardec_data.py --out-dir "$data" --seed "$seed" --per-size "$per_size" --stories "$stories" >>"$log" 2>&1
    case $ds in
      squad) args=(--dataset squad --data "$data/squad_groups.json" --context-count "$squad_groups" --min-questions 1 --max-questions 5) ;;
      hotpot) args=(--dataset hotpot --data "$data/hotpot.json" --context-count "$hotpot_groups" --min-questions 2 --max-questions 4) ;;
      quality) args=(--dataset quality --data "$data/quality.jsonl" --context-count "$quality_groups" --min-questions 3 --max-questions 5) ;;
    esac
    stage "run_${ds}_$seed" timeout "$left" "$bin" "${args[@]}" --model-name models/smollm2-135m-instruct \
      --max-new-tokens "$tokens" --dependency-max-new-tokens "$dep" --strategies "$strategies" --seed $((13 + seed)) \
      --device "$device" --dtype float32 --threads "$threads" --quiet --json-out "$work/run_${ds}_$seed"
  done
done

# 3. The bench, in the time left (it writes its JSON after every run, so a timeout keeps the runs done).
if [ "$scale" = toy ]; then bench_groups=1 bench_tokens=4 bench_dep=8; else bench_groups=2 bench_tokens=32 bench_dep=64; fi
devices=cpu
[ "$device" = cuda ] && devices=cuda
bf16=()
[ "$device" = cuda ] && bf16=(--bf16)
left=$((345 - (SECONDS - start)))
[ "$left" -gt 170 ] && left=170
bench_status=1
if [ "$left" -lt 30 ]; then say "bench skipped: time budget spent"; else
stage bench timeout "$left" python3 bench/pardec/bench_pardec.py --binary "$bin" --devices "$devices" --threads "$threads" --budget-s "$left" \
  --groups "$bench_groups" --max-new-tokens "$bench_tokens" --dependency-max-new-tokens "$bench_dep" "${bf16[@]}" \
  --work "$work/bench" --json-out "$work/bench.json"
bench_status=$?
fi
sed -n '/^Questions\/s/,$p' "$log" | tail -n 30 >&2

python3 - "$work" "$out/result.json" "$stages" "$bench_status" >>"$log" 2>&1 <<'PY'
import json, pathlib, sys
work, dest, stages, bench_status = pathlib.Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
out = {"stages": stages, "bench_exit": bench_status, "results": {}}
b = work / "bench.json"
out["bench"] = json.loads(b.read_text()) if b.exists() else None
for p in sorted(work.glob("run_*_*/full_results.json")):
    ds, seed = p.parent.name.split("_")[1:]
    r = json.loads(p.read_text())
    c0 = r["contexts"][0]
    samples = {s: {"question": c0["questions_text"][0], "gold": c0["gold_answers"][0],
                   "reply": v["raw_replies"]["Q1"], "note": v.get("note", "")} for s, v in c0["strategies"].items()}
    notes = {}
    for c in r["contexts"]:
        for s, v in c["strategies"].items():
            if v.get("note"):
                notes.setdefault(s, {}).setdefault(v["note"].split(" (")[0], 0)
                notes[s][v["note"].split(" (")[0]] += 1
    tagged = {}
    for c in r["contexts"]:
        for s, v in c["strategies"].items():
            t = tagged.setdefault(s, [0, 0])
            for reply in v["raw_replies"].values():
                t[0] += "<answer>" in reply
                t[1] += 1
    out["results"].setdefault(ds, {})[seed] = {"config": r["config"], "summary": r["summary"],
                                               "by_group_size": r["by_group_size"], "samples": samples,
                                               "notes": notes, "replies_with_tag": tagged}
pathlib.Path(dest).write_text(json.dumps(out, indent=1) + "\n")
print("result.json: bench %s, %d result runs" % ("present" if out["bench"] else "missing",
                                                 sum(len(v) for v in out["results"].values())))
PY
say "done (bench exit $bench_status)"
[ "$bench_status" = 0 ]
