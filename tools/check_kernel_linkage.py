#!/usr/bin/env python3
"""Fails when a header under include/ defines a non-template CUDA kernel with external linkage.

  check_kernel_linkage.py INCLUDE_DIR

A `__global__` function defined in a header is compiled into every translation unit that includes
the header; unless it is a template or `static`, two such units fail to link (multiple definition
of the kernel and its host stub). The header check only notices when one header includes another,
so this scan covers every header."""
import pathlib
import re
import sys


def offenders(root):
    for path in sorted(pathlib.Path(root).rglob("*")):
        if path.suffix not in (".cuh", ".hpp", ".h"):
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if not re.search(r"\b__global__\b", line) or line.lstrip().startswith("//"):
                continue
            previous = next((l for l in reversed(lines[:i]) if l.strip()), "")
            if re.search(r"\b(static|template)\b", line) or previous.lstrip().startswith("template"):
                continue
            yield f"{path}:{i + 1}: non-template __global__ without `static`: {line.strip()}"


def main():
    found = list(offenders(sys.argv[1]))
    for f in found:
        print(f)
    if found:
        print(f"{len(found)} kernel(s) would be defined once per translation unit; make them static")
        return 1
    print("every header kernel is a template or static")
    return 0


if __name__ == "__main__":
    sys.exit(main())
