#!/usr/bin/env python3
"""Joins bench_decode's JSON lines with hf_reference_cuda.py's and bench_attention's and prints the
table that tools/device_check.sh shows last: tokens/s, ratio to transformers eager (and compiled
where measured), and at batch 1 the fraction of the bandwidth roofline.

Every decode row must carry bench_decode's logits check, "check": "pass" (its logits within
tolerance of the reference path; "max_logit_err" the largest difference). A row whose check failed,
or that has no "check" field, is refused: the script names it and exits with status 1 without
printing a table, so a fast but wrong mode is never reported as a speed-up.

    summarize.py decode.json hf.json [attention.json]
"""
import json
import sys


def load(path):
    try:
        return [json.loads(line) for line in open(path) if line.strip().startswith("{")]
    except OSError:
        return []


def unchecked_rows(rows):
    """The decode rows whose logits check did not pass, each as 'shape batch B mode M: why'."""
    bad = []
    for r in rows:
        if r.get("kind") != "decode" or r.get("check") == "pass":
            continue
        name = f"{r.get('shape')} batch {r.get('batch')} mode {r.get('mode')}"
        if "check" not in r:
            why = 'no "check" field (the logits were not checked against the reference path)'
        else:
            why = f"logits check {r['check']!r}"
            if "max_logit_err" in r:
                why += f", max_logit_err {r['max_logit_err']}"
        bad.append(f"{name}: {why}")
    return bad


def main():
    ours = load(sys.argv[1])
    bad = unchecked_rows(ours)
    if bad:
        for b in bad:
            print(f"summarize.py: refusing decode row {b}", file=sys.stderr)
        print(f"summarize.py: {len(bad)} decode row(s) of {sys.argv[1]} failed or lack the logits check",
              file=sys.stderr)
        sys.exit(1)
    hf = load(sys.argv[2]) if len(sys.argv) > 2 else []
    att = load(sys.argv[3]) if len(sys.argv) > 3 else []
    ref = {(r["shape"], r["batch"], r["mode"]): r.get("tokens_per_s") for r in hf if r.get("kind") == "hf"}
    bw = next((r for r in ours if r.get("kind") == "bandwidth"), None)
    if bw:
        print(f"{bw['device']}: copy bandwidth {bw['copy_bandwidth_gbs']:.0f} GB/s")
    best = {}
    for r in ours:
        if r.get("kind") != "decode":
            continue
        k = (r["shape"], r["batch"])
        if k not in best or r["tokens_per_s"] > best[k]["tokens_per_s"]:
            best[k] = r
    print(f"{'shape':14s} {'batch':>5s} {'mode':10s} {'tok/s':>9s} {'HF eager':>9s} {'x eager':>8s} {'HF comp':>8s} "
          f"{'x comp':>7s} {'roofline':>8s}")
    for (shape, b), r in sorted(best.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        e, c = ref.get((shape, b, "eager")), ref.get((shape, b, "compiled"))
        roof = f"{100 * r['roofline_fraction']:.0f}%" if b == 1 else ""
        print(f"{shape:14s} {b:5d} {r['mode']:10s} {r['tokens_per_s']:9.0f} {e or 0:9.0f} "
              f"{(r['tokens_per_s'] / e) if e else 0:8.1f} {c or 0:8.0f} {(r['tokens_per_s'] / c) if c else 0:7.1f} {roof:>8s}")
    # bench_attention: one row per mask, both prefill kernels timed in the same run.
    by_mask = {a["mask"]: a for a in att if a.get("kind") == "attention" and "mask" in a}
    for mask, a in by_mask.items():
        print(f"attention prefill 5x256, B={a['batch']}, {mask}: CUDA cores {a['cuda_core_ms']:.3f} ms, "
              f"tensor cores {a['tensor_core_ms']:.3f} ms, outputs {'agree' if a['check'] else 'DIFFER'}")
    if "causal" in by_mask and "segment isolation" in by_mask:
        print(f"segment isolation / causal on tensor cores: "
              f"{by_mask['segment isolation']['tensor_core_ms'] / by_mask['causal']['tensor_core_ms']:.2f}")


if __name__ == "__main__":
    main()
