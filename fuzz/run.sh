#!/usr/bin/env bash
# Builds the fuzz targets (tokenizer.json loading, encoding, the npy reader) with clang's libFuzzer
# (+ AddressSanitizer and UBSan) and runs each for a bounded time. Exits non-zero when a target
# finds a crash, a sanitizer report or a broken invariant (the crashing input is left in
# build/fuzz/out/).
#   fuzz/run.sh [SECONDS per target, default 60]
# Needs clang++ with libFuzzer (Debian: clang, libclang-rt-dev), libpcre2-dev and libeigen3-dev
# (the npy reader's tensors use Eigen's half/bfloat16).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
cxx=${CXX_FUZZ:-clang++}
command -v "$cxx" >/dev/null || { echo "fuzz: $cxx not found (apt-get install clang libclang-rt-dev)" >&2; exit 2; }
out=build/fuzz/out
build=build/fuzz
mkdir -p "$out" "$build"
eigen=$(pkg-config --cflags eigen3 2>/dev/null || echo -I/usr/include/eigen3)
# shellcheck disable=SC2206  # the pkg-config flags split on purpose
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Iinclude
  $eigen "-DCROSSBATCH_TEST_DATA=\"$PWD/tests/data\"")
targets=(tokenizer_json encode npy)
# Build the targets side by side, then run them side by side (each for `seconds`): the wall time is
# one build and one run, not three (on CI's 2 cores each fuzzer gets 2/3 of a core).
for target in "${targets[@]}"; do
  echo "== fuzz_$target: building" >&2
  "$cxx" "${flags[@]}" "fuzz/fuzz_$target.cpp" -o "$build/fuzz_$target" -lpcre2-8 &
done
for target in "${targets[@]}"; do wait -n || { echo "fuzz: a target failed to build" >&2; exit 1; }; done
run_one() {
  local target=$1 corpus="$build/corpus_$1" dict=()
  mkdir -p "$corpus"
  cp -n fuzz/seeds/"$target"/* "$corpus"/ 2>/dev/null || true
  [ -f "fuzz/$target.dict" ] && dict=("-dict=fuzz/$target.dict")
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 "$build/fuzz_$target" "$corpus" \
    "${dict[@]}" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -max_len=65536 \
    -artifact_prefix="$out/${target}-" -print_final_stats=1 2>"$build/fuzz_$target.log"
}
declare -A pid
for target in "${targets[@]}"; do
  echo "== fuzz_$target: running ${seconds}s" >&2
  run_one "$target" &
  pid[$target]=$!
done
status=0
for target in "${targets[@]}"; do
  if ! wait "${pid[$target]}"; then
    echo "fuzz_$target: FINDING (see $build/fuzz_$target.log and $out/)" >&2
    tail -40 "$build/fuzz_$target.log" >&2
    status=1
  else
    echo "fuzz_$target: $(grep -E "stat::number_of_executed_units" "$build/fuzz_$target.log" | tail -1)" >&2
  fi
done
exit $status
