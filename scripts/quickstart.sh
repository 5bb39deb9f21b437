#!/usr/bin/env bash
# The main job, from a fresh machine: installs dependencies, fetches and converts the default model
# (SmolLM2-135M-Instruct), builds examples/quickstart (with CUDA when nvcc and a GPU are present) and
# asks it a question. Extra arguments go to the quickstart (see --help), e.g.
#   scripts/quickstart.sh --prompt "Write a haiku about rain." --temperature 0.7
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/get_default_model.sh
preset=cpu
if command -v nvcc >/dev/null && command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  preset=cuda
fi
echo "quickstart: building the $preset preset" >&2
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" --target quickstart -j "$(nproc)" >/dev/null
exec "build/$preset/examples/quickstart/quickstart" "$@"
