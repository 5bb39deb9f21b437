#!/usr/bin/env bash
# llama.cpp's CUDA backend next to bench_decode on the device machine (issue 15: decode at batch
# 1 / 8 / 64 and prefill of 512 tokens at batch 1 / 8, same shapes, 16-bit weights, same run).
#   Here, once: bench/llama_cpp/pack_source.sh   (llama.cpp's source into .devdeps/, carried)
#   There:      bench/llama_cpp/run_cuda.sh build   then, in the next call, run_cuda.sh bench
#               (or run_cuda.sh all in one call, when the build fits)
# build: unpacks the source to /tmp/llama_cpp_src and builds llama-bench and llama-batched-bench
#   (GGML_CUDA, sm_90a) in /tmp/llama_cpp_build in a detached process session (it outlives the
#   call, as long as the machine stays warm); meanwhile builds bench_decode (CMake, build/device-llama)
#   and writes the random-weight GGUFs of each shape (bench_decode --config, make_gguf.py) in BF16
#   and F16; waits for llama.cpp until BUILD_WAIT seconds (default 500) have passed.
# bench: waits for llama.cpp's build, then for each shape, alternating: bench_decode decode
#   (prompt 128, 128 new tokens, batch 1/8/64, fused+pdl, graph+pdl and fused+pdl/m64; every mode's
#   logits checked against the plain path, exit 1 on a mismatch) and prefill (prompt 512, batch
#   1/8), then llama-batched-bench (-npp 128 -ntg 128 -npl 1,8,64 and -npp 512 -ntg 1 -npl 1,8,
#   flash attention auto) and llama-bench (pp512, tg128) on each GGUF type; then summarize.py.
# Writes $OUT/llama_cuda/{log.txt,ours.jsonl,llama.jsonl,summary.md,result.json}.
set -uo pipefail
cd "$(dirname "$0")/../.."
stage=${1:-all}
out=${OUT:-build/device_out}/llama_cuda
src=/tmp/llama_cpp_src
lb=/tmp/llama_cpp_build
ggufs=/tmp/llama_gguf
build=${BUILD_DIR:-build/device-llama}  # BUILD_DIR: reuse another build tree (e.g. tools/device/prefill.sh's)
shapes=(${SHAPES:-smollm2-135m qwen2.5-0.5b})
types=(${TYPES:-bf16 f16})
mkdir -p "$out"
log=$out/log.txt
t0=$(date +%s)
stamp() { echo "[$(($(date +%s) - t0)) s] $*" | tee -a "$log" >&2; }

if [ "$stage" = llama-build ]; then  # the detached build (started by the build stage)
  rc=0
  if [ ! -d "$src/ggml" ]; then
    mkdir -p "$src" && tar xJf .devdeps/llama_cpp_src.tar.xz -C "$src" || rc=$?
  fi
  [ $rc = 0 ] && cmake -S "$src" -B "$lb" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90a-real -DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF || rc=$?
  [ $rc = 0 ] && cmake --build "$lb" --target llama-bench llama-batched-bench -j "$(nproc)" || rc=$?
  echo $rc >/tmp/llama_build.rc
  exit $rc
fi

wait_llama() {  # up to $1 seconds for the detached build; 0 when it succeeded
  local until=$(($(date +%s) + $1))
  while [ ! -f /tmp/llama_build.rc ] && [ "$(date +%s)" -lt "$until" ]; do sleep 5; done
  if [ ! -f /tmp/llama_build.rc ]; then
    stamp "llama.cpp still building: $(grep -o '^\[[0-9]*/[0-9]*\]' /tmp/llama_build.log | tail -1)"
    return 1
  fi
  [ "$(cat /tmp/llama_build.rc)" = 0 ] || { stamp "llama.cpp build FAILED"; grep -E "error" /tmp/llama_build.log | head -20 >>"$log"; return 2; }
}

if [ "$stage" = build ] || [ "$stage" = all ]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >>"$log" 2>&1
  if [ ! -f /tmp/llama_build.rc ] && ! pgrep -f "run_cuda.sh llama-build" >/dev/null; then
    stamp "llama.cpp: building in the background ($(nproc) jobs)"
    setsid bash "$PWD/bench/llama_cpp/run_cuda.sh" llama-build >/tmp/llama_build.log 2>&1 </dev/null &
  fi
  . tools/device/pcre2_env.sh
  stamp "bench_decode: building"
  { cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCROSSBATCH_CUDA=ON -DCROSSBATCH_BUILD_TESTS=OFF \
      -DCMAKE_CUDA_ARCHITECTURES=90a-real "${extra[@]}" >"$out/configure.log" 2>&1 &&
    cmake --build "$build" -j 8 --target bench_decode >"$out/build_ours.log" 2>&1; } ||
    { stamp "bench_decode build FAILED"; grep -E "error" "$out/build_ours.log" | head -20 >>"$log"; exit 1; }
  stamp "GGUFs: ${shapes[*]} x ${types[*]}"
  mkdir -p "$ggufs"
  for s in "${shapes[@]}"; do
    "$build/bench/decode/bench_decode" --config "$s" >"$ggufs/$s.json" || exit 1
    for t in "${types[@]}"; do
      [ -f "$ggufs/$s-$t.gguf" ] || PYTHONPATH=$src/gguf-py python3 bench/llama_cpp/make_gguf.py \
        "$ggufs/$s.json" "$ggufs/$s-$t.gguf" --type "$t" 2>>"$log" || { stamp "make_gguf FAILED"; exit 1; }
    done
  done
  wait_llama "$((${BUILD_WAIT:-500} - ($(date +%s) - t0)))"
  rc=$?
  [ "$stage" = build ] && { stamp "build stage done (llama.cpp: $([ $rc = 0 ] && echo built || echo not yet))"; exit 0; }
  [ $rc = 0 ] || exit 1
fi

if [ "$stage" = bench ] || [ "$stage" = all ]; then
  wait_llama "${BUILD_WAIT:-420}" || exit 1
  ours=$build/bench/decode/bench_decode
  bin=$lb/bin
  : >"$out/ours.jsonl"
  : >"$out/llama.jsonl"
  rc=0
  for s in "${shapes[@]}"; do
    stamp "$s: bench_decode decode (prompt 128, 128 new, batch 1/8/64)"
    "$ours" --shapes "$s" --batches 1,8,64 --modes fused+pdl,graph+pdl --tune m64 \
      --json "$out/tmp.jsonl" >>"$log" 2>&1 || rc=1
    sed "s/^{/{\"case\":\"decode\",/" "$out/tmp.jsonl" >>"$out/ours.jsonl"
    stamp "$s: bench_decode prefill (prompt 512, batch 1/8)"
    "$ours" --shapes "$s" --batches 1,8 --prompt 512 --new 2 --modes fused+pdl,graph+pdl \
      --json "$out/tmp.jsonl" >>"$log" 2>&1 || rc=1
    sed "s/^{/{\"case\":\"prefill\",/" "$out/tmp.jsonl" >>"$out/ours.jsonl"
    for t in "${types[@]}"; do
      m=$ggufs/$s-$t.gguf
      tag="{\"shape\":\"$s\",\"type\":\"$t\","
      stamp "$s $t: llama-batched-bench decode"
      "$bin/llama-batched-bench" -m "$m" -c 16640 -b 2048 -ub 512 -npp 128 -ntg 128 -npl 1,8,64 \
        -ngl 99 --output-format jsonl 2>>"$out/llama_stderr.log" | grep '^{' | sed "s/^{/${tag}\"case\":\"decode\",/" >>"$out/llama.jsonl"
      stamp "$s $t: llama-batched-bench prefill"
      "$bin/llama-batched-bench" -m "$m" -c 4200 -b 4096 -ub 512 -npp 512 -ntg 1 -npl 1,8 \
        -ngl 99 --output-format jsonl 2>>"$out/llama_stderr.log" | grep '^{' | sed "s/^{/${tag}\"case\":\"prefill\",/" >>"$out/llama.jsonl"
      stamp "$s $t: llama-bench pp512 tg128"
      "$bin/llama-bench" -m "$m" -p 512 -n 128 -ngl 99 -fa 1 -r 3 -o jsonl 2>>"$out/llama_stderr.log" |
        grep '^{' | sed "s/^{/${tag}\"case\":\"llama-bench\",/" >>"$out/llama.jsonl"
    done
  done
  grep -c . "$out/llama.jsonl" >>"$log"
  python3 bench/llama_cpp/summarize.py "$out/ours.jsonl" "$out/llama.jsonl" --md "$out/summary.md" \
    --json "$out/result.json" >>"$log" 2>&1 || rc=1
  cat "$out/summary.md" 2>/dev/null
  tail -5 "$out/llama_stderr.log" >>"$log" 2>/dev/null
  stamp "done (exit $rc)"
  exit $rc
fi
