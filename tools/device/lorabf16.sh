#!/usr/bin/env bash
# bf16 LoRA gradient precision on the GPU (issue 13, helper lorabf16), from the repo root on the
# H200, ~3 min, nothing to carry (the fixture tests/data/lora/bf16_reference.json is tracked):
# builds tests/cuda/test_lora_backward.cu with nvcc for sm_90a (header-only Boost.Test, no CMake)
# and runs it with messages on, so that its whole-model bf16 case prints the relative L2 error of
# every gradient (head, embedding input, each adapter matrix, all adapters) next to its bound
# max(bf16 rtol, k x PyTorch's bf16 error on the same inputs). Writes $OUT/lorabf16/lorabf16.log
# (build + test output) and $OUT/lorabf16/lorabf16.json (exit status, failures, every bf16
# whole-model error with its bound, the worst ratio error / bound per family).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-build/device_lorabf16}/lorabf16
mkdir -p "$out"
log=$out/lorabf16.log
: >"$log"
bin=/tmp/lorabf16_device
mkdir -p "$bin"
say() { echo "[lorabf16 $SECONDS s] $*" >>"$log"; }
say "$(date -u) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
flags=(-std=c++20 -O3 -DNDEBUG --expt-relaxed-constexpr -diag-suppress 20012
  -gencode=arch=compute_90a,code=sm_90a -Iinclude -Itests -I/usr/include/eigen3
  -DCROSSBATCH_BOOST_TEST_INCLUDED "-DCROSSBATCH_TEST_DATA=\"$PWD/tests/data\""
  "-DCROSSBATCH_SOURCE_DIR=\"$PWD\"")
say "build"
if ! nvcc "${flags[@]}" tests/cuda/test_lora_backward.cu -o "$bin/test_lora_backward" \
  -lcublasLt -lcublas >>"$log" 2>&1; then
  say "BUILD FAILED"
  echo '{"rc": "build failed"}' >"$out/lorabf16.json"
  exit 1
fi
say "run"
timeout 240 "$bin/test_lora_backward" --log_level=message --report_level=short >>"$log" 2>&1
rc=$?
say "test exit $rc"
python3 - "$log" "$out/lorabf16.json" "$rc" <<'PY'
import json, re, sys
log, dst, rc = sys.argv[1], sys.argv[2], int(sys.argv[3])
text = open(log, errors="replace").read()
text = re.sub(r"\x1b\[[0-9;]*m", "", text)
rows, worst = [], {}
for m in re.finditer(r"^(?:.*?: )?((\w+) bfloat16[^\n]*?)[:,] relative L2 error ([0-9.eE+-]+|inf|nan) "
                     r"\(bound ([0-9.eE+-]+)\)$", text, re.M):
    what, fam, err, bound = m.group(1), m.group(2), float(m.group(3)), float(m.group(4))
    if "error:" in m.group(0):
        continue  # a failed check's message repeats the figure
    rows.append({"what": what, "rel_l2": err, "bound": bound})
    r = err / bound if bound > 0 else float("inf")
    if r > worst.get(fam, {}).get("ratio", -1):
        worst[fam] = {"ratio": r, "what": what, "rel_l2": err, "bound": bound}
fails = [l for l in text.splitlines() if " error: in " in l]
json.dump({"rc": rc, "failures": len(fails), "first_failures": fails[:20],
           "worst_error_over_bound": worst, "bf16_whole_model": rows}, open(dst, "w"), indent=1)
print(f"{len(rows)} bf16 whole-model figures, {len(fails)} failed checks")
PY
exit $rc
