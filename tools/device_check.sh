#!/usr/bin/env bash
# The GPU check, run on the device machine in one command: builds the CUDA tests and benchmarks
# for sm_90a (-gencode=arch=compute_90a,code=sm_90a), runs the gpu-labelled tests, a subset under
# compute-sanitizer memcheck, the decode and attention benchmarks and the transformers reference,
# and prints a short table last. Logs and JSON go to $OUT when set (else build/device_check/).
#   tools/device_check.sh [build] [test] [memcheck] [bench] [crossbench] [baseline] [tune] [compare] [profile] [hf] [hfcompile] [summary]
#   (default: build test memcheck bench crossbench hf summary). Without `build` the binaries already in build/device
#   are used (built elsewhere for sm_90a and carried). tune: bench_decode's fused-step variants at
#   batch 1/8 ($TUNE). compare: every other bench_decode_* binary in build/device/bench/decode (e.g. the
#   previous version) at batch 1/8. baseline: the include/ and bench/ of an older commit unpacked in
#   .baseline/ (`git archive <commit> include bench | tar -x -C .baseline`, carried) are built too,
#   and its bench_decode and bench_cross_batch run alternately with this version's, twice each;
#   bench/compare_versions.py prints old vs new per configuration ($BASELINE_ARGS for bench_decode). profile: Nsight Compute per-kernel table of one Qwen2.5-0.5B
#   batch-1 decode step (bench/decode/profile.sh; $PROFILE_KERNELS kernels a step, 123 for the fused step).
#   $HF_ARGS is passed to bench/hf_reference_cuda.py (e.g. "--reps 2").
# PCRE2 (needed by the crossbatch target) is taken from .devdeps/root when the machine lacks it:
# `apt-get download libpcre2-dev libpcre2-8-0 ...` + `dpkg -x` there, carried with the run.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-build/device_check}
mkdir -p "$out"
build=build/device
stages=("$@")
((${#stages[@]})) || stages=(build test memcheck bench crossbench hf summary)
has() { local s; for s in "${stages[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }
status=0

. tools/device/pcre2_env.sh  # PCRE2 from .devdeps/root when the machine lacks it; sets extra

# The gpu tests are compiled with nvcc directly against the header-only Boost.Test (the device
# image's Boost has no compiled unit_test_framework, so the CMake test tree is configured off);
# the flags are those CMake uses for the cuda_test_* targets.
tests=(test_ops test_model test_mix test_mix_train test_fused_decode test_engine)
. tools/device/nvcc_flags.sh  # sets nvcc_flags
if has build; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
  mkdir -p "$build/tests"
  : >"$out/build.log"
  for t in "${tests[@]}"; do
    (nvcc "${nvcc_flags[@]}" "tests/cuda/$t.cu" -o "$build/tests/cuda_$t" -lcublasLt -lcublas >"$out/build_$t.log" 2>&1 ||
      echo "BUILD FAILED: $t") &
  done
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCROSSBATCH_CUDA=ON -DCROSSBATCH_BUILD_TESTS=OFF \
    -DCMAKE_CUDA_ARCHITECTURES=90a-real "${extra[@]}" >"$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; status=1; }
  # -k 0: a target that fails to compile does not stop the others.
  cmake --build "$build" -j "$(nproc)" --target bench_decode bench_attention bench_cross_batch -- -k 0 >>"$out/build.log" 2>&1 ||
    { grep -E "error" "$out/build.log" | head -30; status=1; }
  wait
  for t in "${tests[@]}"; do
    grep -E "error" "$out/build_$t.log" | head -20
    [ -x "$build/tests/cuda_$t" ] || status=1
  done
fi

if has test; then
  : >"$out/test.log"
  for t in "${tests[@]}"; do
    timeout 400 "$build/tests/cuda_$t" --log_level=test_suite --report_level=short --color_output=false >>"$out/test.log" 2>&1
    rc=$?
    echo "test $t: exit $rc"
    ((rc == 0)) || status=1
  done
  grep -E "error|fatal|Leaving test case.*[0-9]+ms|Test module|failure|passed|skipped" "$out/test.log" | grep -vE "Leaving test case" | head -80
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
if has crossbench; then
  "$build/bench/cross_batch/bench_cross_batch" 2>&1 | tee "$out/bench_cross_batch.log"
fi

if has baseline && [ -d .baseline/include ]; then
  mkdir -p "$build/baseline"
  bflags=(-std=c++20 -O3 -DNDEBUG --expt-relaxed-constexpr -diag-suppress 20012
    -gencode=arch=compute_90a,code=sm_90a -I.baseline/include -I/usr/include/eigen3)
  (nvcc "${bflags[@]}" .baseline/bench/decode/bench_decode.cu -o "$build/baseline/bench_decode" -lcublasLt -lcublas) &
  (nvcc "${bflags[@]}" .baseline/bench/cross_batch/bench_cross_batch.cu -o "$build/baseline/bench_cross_batch" -lcublasLt -lcublas) &
  wait
  bargs=(${BASELINE_ARGS:---modes fused+pdl,fused,graph+pdl,graph})
  rm -f "$out"/old_decode.json "$out"/new_decode.json "$out"/old_cross.json "$out"/new_cross.json
  for round in 1 2; do
    "$build/baseline/bench_decode" "${bargs[@]}" --json "$out/old_decode_$round.json" >"$out/old_decode_$round.log" 2>&1
    "$build/bench/decode/bench_decode" "${bargs[@]}" --json "$out/new_decode_$round.json" >"$out/new_decode_$round.log" 2>&1 || status=1
    "$build/baseline/bench_cross_batch" --json "$out/old_cross.json" >"$out/old_cross_$round.log" 2>&1
    "$build/bench/cross_batch/bench_cross_batch" --json "$out/new_cross.json" >"$out/new_cross_$round.log" 2>&1 || status=1
    cat "$out/old_decode_$round.json" >>"$out/old_decode.json"
    cat "$out/new_decode_$round.json" >>"$out/new_decode.json"
  done
  tail -n 12 "$out/new_decode_1.log" "$out/new_cross_1.log"
  python3 bench/compare_versions.py "$out/old_decode.json" "$out/new_decode.json" \
    "$out/old_cross.json" "$out/new_cross.json" | tee "$out/compare_versions.md"
fi

if has tune; then
  timeout 120 "$build/bench/decode/bench_decode" --batches 1,8 --modes fused+pdl \
    --tune "${TUNE:-w8b8;w32b8;w16b2;w16b8-attn;w16b8-argmax}" 2>&1 | tee "$out/tune.log"
fi
if has compare; then
  for prev in "$build"/bench/decode/bench_decode_*; do
    [ -x "$prev" ] || continue
    timeout 90 "$prev" --batches 1,8 --modes fused+pdl,fused 2>&1 | tee "$out/compare_$(basename "$prev").log"
  done
fi
if has profile; then
  OUT=$out bash bench/decode/profile.sh "$build/bench/decode/bench_decode:${PROFILE_KERNELS:-123}"
fi

if has hf; then
  PYTHONUNBUFFERED=1 python3 bench/hf_reference_cuda.py ${HF_ARGS:-} --json "$out/hf.json" 2>&1 | grep -v Warning | tee "$out/hf.log"
fi
if has hfcompile; then
  PYTHONUNBUFFERED=1 timeout 280 python3 bench/hf_reference_cuda.py --batches 1 --shapes gpt2-124m,qwen2.5-0.5b \
    --compile gpt2-124m:1,qwen2.5-0.5b:1 --json "$out/hf_compiled.json" 2>&1 | grep -v Warning | tee "$out/hf_compiled.log"
  cat "$out/hf_compiled.json" >>"$out/hf.json" 2>/dev/null
fi

if has summary; then
  echo "== summary =="
  python3 bench/decode/summarize.py "$out/decode.json" "$out/hf.json" "$out/attention.json"
fi
exit $status
