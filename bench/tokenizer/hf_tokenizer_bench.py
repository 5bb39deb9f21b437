#!/usr/bin/env python3
"""The Python `tokenizers` side of the tokenizer benchmark: encodes the same text line by line on one
thread (TOKENIZERS_PARALLELISM=false, RAYON_NUM_THREADS=1), as Tokenizer.encode per line and as one
encode_batch call, best of three passes after a warm-up pass, in process CPU time like the C++ side.
Prints "name encode_MB/s encode_batch_MB/s tokens checksum" per tokenizer (checksum: FNV-1a over the
ids, computed outside the timing).
Usage: hf_tokenizer_bench.py TEXT_FILE NAME=tokenizer.json [...]"""
import os

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"
import sys  # noqa: E402
import time  # noqa: E402

from tokenizers import Tokenizer  # noqa: E402


def best_of(fn, passes=3):
    fn()  # warm-up
    best = float("inf")
    for _ in range(passes):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def checksum(encodings):
    h = 0xCBF29CE484222325
    mask = (1 << 64) - 1
    for e in encodings:
        for i in e.ids:
            h = ((h ^ i) * 0x100000001B3) & mask
        h = ((h ^ 0xFFFFFFFF) * 0x100000001B3) & mask
    return h


def main():
    with open(sys.argv[1], "rb") as f:
        lines = f.read().decode("utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    mb = sum(len(line.encode("utf-8")) + 1 for line in lines) / 1e6
    for spec in sys.argv[2:]:
        name, path = spec.split("=", 1)
        tok = Tokenizer.from_file(path)
        tok.no_padding()  # padding belongs to batching; the C++ encode() does not pad either
        t_encode = best_of(lambda: [tok.encode(line) for line in lines])
        t_batch = best_of(lambda: tok.encode_batch(lines))
        encodings = tok.encode_batch(lines)
        tokens = sum(len(e.ids) for e in encodings)
        print(f"{name} {mb / t_encode:.2f} {mb / t_batch:.2f} {tokens} {checksum(encodings):016x}", flush=True)


if __name__ == "__main__":
    main()
