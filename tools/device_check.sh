#!/usr/bin/env bash
# The GPU check, run on the device machine in one command: builds the CUDA tests and benchmarks
# for sm_90a (-gencode=arch=compute_90a,code=sm_90a), runs the gpu-labelled tests, a subset under
# compute-sanitizer memcheck, the decode and attention benchmarks and the transformers reference,
# and prints a short table last. Logs and JSON go to $OUT when set (else build/device_check/).
#   tools/device_check.sh [build] [test] [memcheck] [bench] [hf] [hfcompile] [summary]   (default: all but hfcompile)
# PCRE2 (needed by the crossbatch target) is taken from .devdeps/root when the machine lacks it:
# `apt-get download libpcre2-dev libpcre2-8-0 ...` + `dpkg -x` there, carried with the run.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-build/device_check}
mkdir -p "$out"
build=build/device
stages=("$@")
((${#stages[@]})) || stages=(build test memcheck bench hf summary)
has() { local s; for s in "${stages[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }
status=0

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

if has build; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCROSSBATCH_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90a-real "${extra[@]}" >"$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
  targets=$(ninja -C "$build" -t targets all 2>/dev/null | grep -oE '^(cuda_test_[a-z_]+|bench_decode|bench_attention):' | tr -d : | sort -u)
  echo "building: $targets"
  if ! cmake --build "$build" -j "$(nproc)" --target $targets >"$out/build.log" 2>&1; then
    grep -E "error|Error" "$out/build.log" | head -40
    exit 1
  fi
fi

if has test; then
  ctest --test-dir "$build" -L gpu --output-on-failure --timeout 400 >"$out/test.log" 2>&1 || status=1
  grep -E "tests passed|Test +#|\*\*\*|error:|failed" "$out/test.log" | grep -v "no errors detected" | head -60
fi

if has memcheck; then
  : >"$out/memcheck.log"
  for run in "cuda_test_ops --run_test=linear_matches_cpu*:write_kv_matches_cpu*:attention_slot_shift_reads_device_offset:greedy_matches_cpu*:sampling_matches_cpu_and_is_deterministic" \
             "cuda_test_model --run_test=bf16_generation_is_deterministic_and_batch_invariant"; do
    set -- $run
    timeout 300 compute-sanitizer --tool memcheck --error-exitcode 9 "$build/tests/$1" "$2" >>"$out/memcheck.log" 2>&1
    rc=$?
    echo "memcheck $1 $2: exit $rc"
    ((rc == 0)) || status=1
  done
  grep -E "ERROR SUMMARY|Invalid|out of bounds" "$out/memcheck.log" | sort | uniq -c | head -20
fi

if has bench; then
  "$build/bench/decode/bench_decode" --json "$out/decode.json" 2>&1 | tee "$out/bench_decode.log"
  "$build/bench/attention/bench_attention" --json "$out/attention.json" 2>&1 | tee "$out/bench_attention.log"
fi

if has hf; then
  PYTHONUNBUFFERED=1 python3 bench/hf_reference_cuda.py --json "$out/hf.json" 2>&1 | grep -v Warning | tee "$out/hf.log"
fi
if has hfcompile; then
  PYTHONUNBUFFERED=1 timeout 400 python3 bench/hf_reference_cuda.py --batches 1 --shapes gpt2-124m,qwen2.5-0.5b \
    --compile gpt2-124m:1,qwen2.5-0.5b:1 --json "$out/hf_compiled.json" 2>&1 | grep -v Warning | tee "$out/hf_compiled.log"
  cat "$out/hf_compiled.json" >>"$out/hf.json" 2>/dev/null
fi

if has summary; then
  echo "== summary =="
  python3 bench/decode/summarize.py "$out/decode.json" "$out/hf.json" "$out/attention.json"
fi
exit $status
