#!/usr/bin/env bash
# llama.cpp's source for the device machine (no network there): downloads the PyPI sdist of
# llama-cpp-python (its vendored llama.cpp) into .deps/llama_cpp if needed and packs what building
# llama-bench and llama-batched-bench needs (CMake files, ggml with its CPU and CUDA backends, src,
# include, common, vendor, tools, gguf-py; no docs, test models, UI or other backends) into
# .devdeps/llama_cpp_src.tar.xz (git-ignored, a few MiB), which the device scripts carry with
# .devdeps. bench/llama_cpp/run_cuda.sh unpacks it there.
#   bench/llama_cpp/pack_source.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
version=0.3.36
deps=.deps/llama_cpp
src=$deps/llama_cpp_python-$version/vendor/llama.cpp
if [ ! -d "$src" ]; then
  mkdir -p "$deps"
  python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$deps"
  tar xzf "$deps/llama_cpp_python-$version.tar.gz" -C "$deps"
fi
mkdir -p .devdeps
out=$PWD/.devdeps/llama_cpp_src.tar.xz
(cd "$src" && tar cJf "$out" \
  --exclude=tools/ui --exclude=tools/server/public --exclude='tools/server/webui*' \
  --exclude='ggml/src/ggml-'{et,metal,hexagon,sycl,vulkan,opencl,cann,musa,hip,rpc,webgpu,zdnn,blas,zendnn,openvino,virtgpu} \
  CMakeLists.txt cmake ggml src include common vendor tools gguf-py licenses LICENSE)
echo "llama.cpp $version source packed: $(du -h "$out" | cut -f1) in .devdeps/llama_cpp_src.tar.xz" >&2
