#!/usr/bin/env python3
"""Old binary vs new binary, measured in the same device run (tools/device_check.sh, stage
`baseline`): joins the JSON lines of bench_decode and bench_cross_batch of two versions by
configuration and prints ms per decode step, the ratio new / old and the worst slowdown. Each file
may hold several runs of a binary (they alternate old, new, old, new); a configuration's figure is
its best (lowest) median across runs, which keeps one noisy run from deciding.

    compare_versions.py OLD_DECODE NEW_DECODE OLD_CROSS NEW_CROSS [--limit 3]

Exits 1 when a configuration of the new version is more than --limit percent slower.
"""
import argparse
import json


def load(path):
    try:
        return [json.loads(l) for l in open(path) if l.strip().startswith("{")]
    except OSError:
        return []


def variant_key(v):
    return "plain" if v.startswith("plain (") else v


def best(rows, key):
    out = {}
    for r in rows:
        if "ms_per_step" not in r:
            continue
        k = key(r)
        if k is not None:
            out[k] = min(out.get(k, float("inf")), r["ms_per_step"])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("old_decode")
    ap.add_argument("new_decode")
    ap.add_argument("old_cross")
    ap.add_argument("new_cross")
    ap.add_argument("--limit", type=float, default=3.0, help="allowed slowdown in percent")
    a = ap.parse_args()
    dkey = lambda r: (r["shape"], r["batch"], r["mode"]) if r.get("kind") == "decode" else None
    ckey = lambda r: ("cross " + r["shape"], r["batch"], variant_key(r["variant"])) \
        if "variant" in r and r["variant"] != "library graph_generator" else None
    rows = []
    for old, new, key in ((a.old_decode, a.new_decode, dkey), (a.old_cross, a.new_cross, ckey)):
        o, n = best(load(old), key), best(load(new), key)
        rows += [(k, o[k], n[k]) for k in sorted(o, key=str) if k in n]
    print("| configuration | old ms/step | new ms/step | new / old |")
    print("| --- | ---: | ---: | ---: |")
    worst = 0.0
    for (shape, batch, mode), o, n in rows:
        r = n / o
        worst = max(worst, 100 * (r - 1))
        print(f"| {shape} b{batch} {mode} | {o:.4f} | {n:.4f} | {r:.3f} |")
    print(f"worst slowdown: {worst:+.1f} % over {len(rows)} configurations (limit {a.limit} %)")
    return 1 if not rows or worst > a.limit else 0


if __name__ == "__main__":
    raise SystemExit(main())
