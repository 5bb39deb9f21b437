#!/usr/bin/env python3
"""Writes the benchmark text: about 4 MB of mixed lines (English-like prose with numbers, code, and
some CJK, Cyrillic, Arabic, emoji and accented words), deterministic. Both benchmarks encode it
line by line.
Usage: make_bench_text.py OUT [MEGABYTES]"""
import pathlib
import random
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tools"))
import tokenizer_corpus  # noqa: E402

out = pathlib.Path(sys.argv[1])
target = float(sys.argv[2] if len(sys.argv) > 2 else 4) * 1e6
rng = random.Random(1234)
lines, size = [], 0
while size < target:
    # Paragraph-sized documents of several training-text lines.
    doc = " ".join(tokenizer_corpus.training_text(seed=rng.randrange(1 << 30), lines=rng.randrange(3, 9))[:-len(tokenizer_corpus.HAND)])
    lines.append(doc)
    size += len(doc.encode("utf-8")) + 1
out.write_text("\n".join(lines) + "\n", encoding="utf-8")
