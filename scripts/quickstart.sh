#!/usr/bin/env bash
# The main job, from a fresh machine: installs dependencies, fetches and converts the default model
# (SmolLM2-135M-Instruct), builds examples/quickstart (with CUDA when nvcc and a GPU are present) and
# asks it a question. Extra arguments go to the quickstart (see --help), e.g.
#   scripts/quickstart.sh --prompt "Write a haiku about rain." --temperature 0.7
#   scripts/quickstart.sh --model models/qwen2.5-coder-0.5b-instruct --prompt "Reverse a list in Python."
# A --model models/NAME that scripts/get_model.sh knows (scripts/get_model.sh --list) is fetched first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
model=models/smollm2-135m-instruct prev=""
for arg in "$@"; do
  case "$arg" in --model=*) model="${arg#--model=}" ;; esac
  [ "$prev" = --model ] && model="$arg"
  prev="$arg"
done
name="$(basename "$model")"
if [ "$(dirname "$model")" = models ] && bash scripts/get_model.sh --list | grep -qx "$name"; then
  bash scripts/get_model.sh "$name"
fi
preset=cpu
if command -v nvcc >/dev/null && command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  preset=cuda
fi
echo "quickstart: building the $preset preset" >&2
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" --target quickstart -j "$(nproc)" >/dev/null
exec "build/$preset/examples/quickstart/quickstart" "$@"
