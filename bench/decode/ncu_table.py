#!/usr/bin/env python3
"""Per-kernel table of an Nsight Compute CSV (--csv --page raw) taken over one decode step (a window
of exactly one step's kernels, so each kernel of the step appears once): kernel, grid, time, DRAM
bytes read and the achieved read bandwidth, in launch order, with the sum per kernel kind last.

    ncu_table.py step.csv [label]
"""
import csv
import math
import re
import sys
from collections import OrderedDict


def short(name):
    name = name.replace("crossbatch::cuda_detail::", "").replace("crossbatch::", "").replace("__nv_bfloat16", "bf16")
    m = re.match(r"(?:void )?(\w+)(<.*?>)?\(", name)
    if not m:
        return name[:60]
    base, targs = m.group(1), m.group(2) or ""
    if base == "fused_gemv_kernel":
        p = re.findall(r"\(prologue\)(\d)", targs) or re.findall(r"<\w+, \d+, (\d), \d>", targs)
        e = re.findall(r"\(epilogue\)(\d)", targs) or re.findall(r"<\w+, \d+, \d, (\d)>", targs)
        pro = ["-", "rms", "ln"][int(p[0])] if p else "?"
        epi = ["store", "act", "gated", "resid", "argmax"][int(e[0])] if e else "?"
        return f"gemv[{pro},{epi}]"
    return base.replace("_kernel", "")


def num(v):
    try:
        return float(v.replace(",", ""))
    except (ValueError, AttributeError):
        return 0.0


def main():
    rows = list(csv.reader(open(sys.argv[1])))
    label = sys.argv[2] if len(sys.argv) > 2 else sys.argv[1]
    start = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
    head = rows[start]
    col = {k: head.index(k) for k in head}
    units = rows[start + 1]
    data = [r for r in rows[start + 2:] if len(r) == len(head)]
    tcol = col.get("gpu__time_duration.sum")
    tscale = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3}.get(units[tcol], 1.0)
    bcol = col.get("dram__bytes_read.sum")
    bscale = {"byte": 1e-6, "Kbyte": 1e-3, "KB": 1e-3, "Mbyte": 1.0, "MB": 1.0, "Gbyte": 1e3, "GB": 1e3}.get(units[bcol], 1.0) \
        if bcol is not None else 0
    gcol = col.get("launch__grid_size")
    rcol = col.get("launch__registers_per_thread")
    wcol = col.get("sm__warps_active.avg.pct_of_peak_sustained_active")
    print(f"== {label}: {len(data)} kernels")
    kinds = OrderedDict()
    total_t = total_b = 0.0
    for r in data:
        k = short(r[col["Kernel Name"]])
        t = num(r[tcol]) * tscale
        b = num(r[bcol]) * bscale if bcol is not None else 0.0
        g = int(num(r[gcol])) if gcol is not None else 0
        key = (k, g, round(math.log2(max(b, 0.01))))  # o-proj and down share kernel and grid
        e = kinds.setdefault(key, [0, 0.0, 0.0, int(num(r[rcol])) if rcol is not None else 0,
                                   num(r[wcol]) if wcol is not None else 0.0])
        e[0] += 1
        e[1] += t
        e[2] += b
        total_t += t
        total_b += b
    print(f"{'kernel':24s} {'grid':>6s} {'regs':>5s} {'n':>4s} {'us each':>8s} {'us total':>9s} {'MB each':>8s} "
          f"{'GB/s':>6s} {'occ%':>5s}")
    for (k, g, _), (n, t, b, regs, occ) in kinds.items():
        print(f"{k:24s} {g:6d} {regs:5d} {n:4d} {t / n:8.2f} {t:9.1f} {b / n:8.2f} {b / t * 1e3 if t else 0:6.0f} "
              f"{occ:5.1f}")
    print(f"{'sum':24s} {'':6s} {'':5s} {len(data):4d} {'':8s} {total_t:9.1f} {total_b:8.1f} "
          f"{total_b / total_t * 1e3 if total_t else 0:6.0f}")


if __name__ == "__main__":
    main()
