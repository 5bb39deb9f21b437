#!/usr/bin/env bash
# Parallel decoding (issue 12) on the device machine: builds compare_strategies for CUDA (sm_90a),
# runs all_in_one, sequential, batch and collab_llm on 10 synthetic SQuAD-format groups of 1..5
# questions on the GPU (float32 and bfloat16) and on the CPU (float32, the reference run), and
# writes $OUT/pardec/log.txt and $OUT/pardec/result.json: per run the summary table, and how many
# replies of the GPU runs equal the CPU's (greedy; float32 kernels round differently, so a few may
# diverge: reported, not failed). Needs the default model: the GGUF pieces in .devmodel/ and the
# gguf wheel in .whl/ (tools/device/prepare_model.sh converts it). Under 6 minutes.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-build/device_out}/pardec
mkdir -p "$out"
log=$out/log.txt
: >"$log"
. tools/device/prepare_model.sh >>"$log" 2>&1
extra=()
if ! pkg-config --exists libpcre2-8 2>/dev/null && [ -d .devdeps/root ]; then
  root=$PWD/.devdeps/root
  mkdir -p /tmp/devdeps-pc
  for f in "$root"/usr/lib/x86_64-linux-gnu/pkgconfig/*.pc; do
    sed "s|^prefix=.*|prefix=$root/usr|" "$f" >/tmp/devdeps-pc/"$(basename "$f")"
  done
  export PKG_CONFIG_PATH=/tmp/devdeps-pc:${PKG_CONFIG_PATH:-}
  export LD_LIBRARY_PATH=$root/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
  extra=(-DCROSSBATCH_PCRE2_INCLUDE="$root/usr/include" -DCROSSBATCH_PCRE2_LIB="$root/usr/lib/x86_64-linux-gnu/libpcre2-8.so")
fi
build=build/device-pardec
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >>"$log" 2>&1
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCROSSBATCH_CUDA=ON -DCROSSBATCH_BUILD_TESTS=OFF \
  -DCMAKE_CUDA_ARCHITECTURES=90a-real "${extra[@]}" >>"$log" 2>&1 || { echo "configure failed" >>"$log"; exit 1; }
cmake --build "$build" --target compare_strategies -j "$(nproc)" >>"$log" 2>&1 || { echo "build failed" >>"$log"; exit 1; }
[ -f models/smollm2-135m-instruct/config.json ] || { echo "no default model (ship .devmodel/ and .whl/)" >>"$log"; exit 1; }
python3 tools/make_pardec_data.py --out-dir "$build/data" --per-size 2 --stories 4 >>"$log" 2>&1
bin=$build/examples/parallel_decoding/compare_strategies
args=(--dataset squad --data "$build/data/squad_groups.json" --context-count 0 --min-questions 1 --max-questions 5
  --max-new-tokens 32 --dependency-max-new-tokens 96 --strategies all_in_one,sequential,batch,collab_llm --quiet)
for run in "cpu float32" "cuda float32" "cuda bfloat16"; do
  set -- $run
  echo "== $1 $2" >>"$log"
  timeout 150 "$bin" "${args[@]}" --device "$1" --dtype "$2" --json-out "$build/run_$1_$2" >>"$log" 2>&1 ||
    echo "run $1 $2 failed (exit $?)" >>"$log"
done
python3 - "$build" "$out/result.json" >>"$log" 2>&1 <<'PY'
import json, pathlib, sys
build, dest = pathlib.Path(sys.argv[1]), sys.argv[2]
runs = {}
for name in ("cpu_float32", "cuda_float32", "cuda_bfloat16"):
    p = build / ("run_" + name) / "full_results.json"
    if p.exists():
        runs[name] = json.loads(p.read_text())
out = {"summary": {k: v["summary"] for k, v in runs.items()}, "agreement_with_cpu": {}}
ref = runs.get("cpu_float32")
for name, r in runs.items():
    if ref is None or name == "cpu_float32":
        continue
    same = total = 0
    for a, b in zip(r["contexts"], ref["contexts"]):
        for s, v in a["strategies"].items():
            for k, text in v["raw_replies"].items():
                total += 1
                same += text == b["strategies"][s]["raw_replies"][k]
    out["agreement_with_cpu"][name] = {"equal_replies": same, "replies": total}
pathlib.Path(dest).write_text(json.dumps(out, indent=1) + "\n")
print(json.dumps(out["agreement_with_cpu"]))
PY
echo "done" >>"$log"
