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
status=0
for target in tokenizer_json encode npy; do
  echo "== fuzz_$target: building" >&2
  "$cxx" "${flags[@]}" "fuzz/fuzz_$target.cpp" -o "$build/fuzz_$target" -lpcre2-8
  corpus="$build/corpus_$target"
  mkdir -p "$corpus"
  cp -n fuzz/seeds/"$target"/* "$corpus"/ 2>/dev/null || true
  dict=()
  [ -f "fuzz/$target.dict" ] && dict=("-dict=fuzz/$target.dict")
  echo "== fuzz_$target: running ${seconds}s" >&2
  if ! ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 "$build/fuzz_$target" "$corpus" \
      "${dict[@]}" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -max_len=65536 \
      -artifact_prefix="$out/${target}-" -print_final_stats=1 2> "$build/fuzz_$target.log"; then
    echo "fuzz_$target: FINDING (see $build/fuzz_$target.log and $out/)" >&2
    tail -40 "$build/fuzz_$target.log" >&2
    status=1
  else
    grep -E "stat::number_of_executed_units|cov:" "$build/fuzz_$target.log" | tail -2 >&2 || true
  fi
done
exit $status
