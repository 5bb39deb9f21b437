#!/usr/bin/env python3
"""The table of bench/llama_cpp/run_cuda.sh: crossbatch's bench_decode next to llama.cpp (CUDA).

Reads bench_decode's JSON rows (tagged "case": decode or prefill) and llama.cpp's (llama-batched-bench
and llama-bench JSON lines, tagged with shape, GGUF type and case) and prints, per shape and batch:
decode tokens/s (ours: the best mode whose logits check passed; llama.cpp: S_TG of the faster GGUF
type) and prefill tokens/s of 512-token prompts (llama.cpp: S_PP of batched-bench); at batch 1 the
peer is the faster of batched-bench and llama-bench (tg128 for decode, pp512 for prefill; the
median of its repetitions), with the ratios and issue 15's targets. Exits 1 when a bench_decode
row failed its check or a side is missing.

  summarize.py ours.jsonl llama.jsonl [--md summary.md] [--json result.json]
"""
import argparse
import json
import sys

TARGETS = {("decode", 1): 3.0, ("decode", 64): 3.0, ("prefill", 1): 1.5, ("prefill", 8): 1.5}


def rows(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                sys.exit("summarize: %s:%d: %s" % (path, n, e))
    return out


def speed(r):
    """llama-bench's tokens/s: the median of its repetitions (its mean carries the first, cold one)."""
    samples = sorted(r.get("samples_ts") or [r["avg_ts"]])
    return samples[len(samples) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ours")
    ap.add_argument("llama")
    ap.add_argument("--md")
    ap.add_argument("--json")
    a = ap.parse_args()
    ours = [r for r in rows(a.ours) if r.get("kind") == "decode"]
    llama = rows(a.llama)
    failed = [r for r in ours if r.get("check") != "pass"]
    table, lines = [], []
    lines.append("| shape | case | batch | crossbatch tok/s (mode) | llama.cpp tok/s (GGUF type) | "
                 "llama-bench pp512 / tg128 | ratio | target |")
    lines.append("|---|---|---|---|---|---|---|---|")
    ok = not failed
    for shape in dict.fromkeys(r["shape"] for r in ours):
        bench = [r for r in llama if r.get("shape") == shape and r.get("case") == "llama-bench"]
        pp512 = max((speed(r) for r in bench if r.get("n_prompt") == 512 and r.get("n_gen") == 0), default=None)
        tg128 = max((speed(r) for r in bench if r.get("n_prompt") == 0 and r.get("n_gen") == 128), default=None)
        for case in ("decode", "prefill"):
            key = "decode_tokens_per_s" if case == "decode" else "prefill_tokens_per_s"
            lkey = "speed_tg" if case == "decode" else "speed_pp"
            mine = [r for r in ours if r["shape"] == shape and r.get("case") == case and r.get("check") == "pass"]
            for b in sorted({r["batch"] for r in mine}):
                best = max((r for r in mine if r["batch"] == b), key=lambda r: r[key])
                peers = [r for r in llama if r.get("shape") == shape and r.get("case") == case and r.get("pl") == b]
                peer = max(peers, key=lambda r: r[lkey]) if peers else None
                single = (pp512 if case == "prefill" else tg128) if b == 1 else None  # llama-bench
                peer_best = max([x for x in (peer[lkey] if peer else None, single) if x is not None], default=None)
                ratio = best[key] / peer_best if peer_best else None
                target = TARGETS.get((case, b))
                row = {"shape": shape, "case": case, "batch": b, "ours_tokens_per_s": best[key],
                       "ours_mode": best["mode"], "ours_roofline_fraction": best.get("roofline_fraction"),
                       "llama_tokens_per_s": peer[lkey] if peer else None,
                       "llama_type": peer["type"] if peer else None, "llama_bench": single,
                       "ratio": ratio, "target": target,
                       "met": (ratio >= target) if (ratio is not None and target) else None}
                table.append(row)
                ok &= peer is not None
                lines.append("| %s | %s | %d | %.0f (%s) | %s | %s | %s | %s |" % (
                    shape, case, b, best[key], best["mode"],
                    "%.0f (%s)" % (peer[lkey], peer["type"]) if peer else "missing",
                    "%.0f" % single if single else "", "%.2fx" % ratio if ratio else "",
                    (">= %.1fx: %s" % (target, "met" if row["met"] else "not met")) if target and ratio else ""))
    text = "\n".join(lines)
    if failed:
        text += "\n\nFAILED checks: " + ", ".join("%s b%d %s" % (r["shape"], r["batch"], r["mode"]) for r in failed)
    print(text)
    if a.md:
        with open(a.md, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump({"rows": table, "failed_checks": len(failed), "ours": ours, "llama": llama}, f, indent=1)
    return 0 if ok and table else 1


if __name__ == "__main__":
    sys.exit(main())
