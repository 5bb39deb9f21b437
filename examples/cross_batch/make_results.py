#!/usr/bin/env python3
"""Turns the merged results JSON of examples/cross_batch/run_results.sh (or tools/device/methods.sh's
$OUT/methods/results.json) into examples/cross_batch/RESULTS.md.

  examples/cross_batch/make_results.py results.json examples/cross_batch/RESULTS.md

Selection: for each method with a mixer, the mode (scale or gate) with the lower mean validation
answer loss over the seeds is chosen; the test split is then reported once for the chosen modes.
Test numbers are means over seeds with the sample standard deviation; the verdict compares
lora_crossbatch with lora_lmhead by the per-seed paired differences of test EM and F1.
"""
import json
import math
import pathlib
import statistics
import sys

METHODS = ["baseline", "crossbatch", "lora_lmhead", "lora_crossbatch"]
DESCRIPTION = {
    "frozen": "its own head, no training",
    "baseline": "LM head trained, model frozen, no mixing",
    "crossbatch": "LM head + cross-batch mixer, model frozen",
    "lora_lmhead": "LoRA adapters + LM head",
    "lora_crossbatch": "LoRA adapters + LM head + mixer",
}
VARIANTS = {"split": "Split-context stories (each question sees one part; its answer is in a part a sibling sees)",
            "normal": "Normal stories (every question sees the whole story)"}


def mean_sd(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not xs:
        return None, None, 0
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0), len(xs)


def fmt(xs, digits=3):
    m, s, n = mean_sd(xs)
    if m is None:
        return "-"
    return f"{m:.{digits}f} ± {s:.{digits}f}" if n > 1 else f"{m:.{digits}f}"


def collect(runs):
    """{variant: {(method, mode): {seed: method_json}}} and {variant: {seed: frozen_json}}."""
    table, frozen = {}, {}
    for r in runs:
        v, seed, mode, h = r["variant"], r["seed"], r["mode"], r["history"]
        frozen.setdefault(v, {}).setdefault(seed, h.get("frozen", {}))
        for name, m in h.get("methods", {}).items():
            if "skipped" in m:
                continue
            key = (name, mode if name in ("crossbatch", "lora_crossbatch") else "-")
            table.setdefault(v, {}).setdefault(key, {})[seed] = m
    return table, frozen


def values(per_seed, split, field):
    return [m.get(split, {}).get(field) for _, m in sorted(per_seed.items())]


def main():
    src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    data = json.loads(src.read_text())
    meta, runs = data["meta"], data["runs"]
    table, frozen = collect(runs)
    cfg = runs[0]["history"]["config"] if runs else {}
    seeds = sorted({r["seed"] for r in runs})
    reduced = meta.get("scale") != "full"
    out = []
    w = out.append
    w("# Cross-batch generation: the four training methods\n")
    w("Regenerate with one command (`examples/cross_batch/run_results.sh`; on the H200: "
      "`tools/device/methods.sh`, then `examples/cross_batch/make_results.py results.json "
      "examples/cross_batch/RESULTS.md`).\n")
    w(f"Generated {meta.get('date')} at commit {meta.get('commit')} on {meta.get('device')} "
      f"(scale `{meta.get('scale')}`, {meta.get('seconds')} s for all runs).\n")
    variants = sorted({r["variant"] for r in runs})
    modes = sorted({r["mode"] for r in runs} - {"plain"})
    if reduced:
        steps = math.ceil(cfg.get("train_groups", 0) / max(1, cfg.get("batch_size", 1))) * cfg.get("epochs", 1)
        w("**This is a reduced CPU run** (`SCALE=small`), sized to finish on a shared 2-core machine: "
          f"{cfg.get('train_groups')} training groups, {cfg.get('epochs')} epoch(s) = {steps} optimiser steps "
          f"per method, {cfg.get('test_groups')} test groups, answers of at most {cfg.get('max_new_tokens')} "
          f"tokens; stories: {', '.join(variants)}; mixer modes: {', '.join(modes)}. It shows the pipeline "
          "end to end and how the methods compare at this size, not the full experiment "
          "(`SCALE=full` on the GPU: `tools/device/methods.sh`).\n")
    for v in VARIANTS:
        if v not in variants:
            w(f"*{VARIANTS[v].split(' (')[0]}: not run in this run.*\n")
    if meta.get("failed_runs"):
        w(f"Runs that failed or ran out of time (only the methods they finished are in the tables): {', '.join(meta['failed_runs'])}.\n")
    w("## Setup\n")
    w(f"- Model: `{cfg.get('model')}` ({cfg.get('dtype')} weights, {cfg.get('device')}); trained parts "
      "(adapters, head, mixer, optimiser state) in float32.")
    w(f"- Data: `tools/make_stories.py --seed 0 --train 300 --test 100`; groups of "
      f"{cfg.get('min_questions')}-{cfg.get('max_questions')} questions (one story each). Training: the "
      f"first {cfg.get('train_groups')} groups of the training file ({cfg.get('train_questions')} questions); "
      f"validation: its last {cfg.get('val_groups')} groups ({cfg.get('val_questions')} questions, disjoint); "
      f"test: {cfg.get('test_groups')} groups of the test file ({cfg.get('test_questions')} questions), "
      "reported once.")
    w("- Prompts: exactly compare_strategies' `batch` strategy (pardec/prompts.hpp: system = instructions "
      "[+ background], user = `Question (Qk): ...`; split-context stories give each question its visible "
      "part as its own context). Teacher-forced target `<answer>{gold}</answer>` + `<|im_end|>`; the loss "
      "is the mean cross-entropy over answer tokens (nats/token).")
    lora = cfg.get("lora", {})
    g = lambda x: f"{x:.3g}" if isinstance(x, float) else str(x)
    w(f"- Training: {cfg.get('epochs')} epoch(s), batches of {cfg.get('batch_size')} groups, AdamW lr "
      f"{g(cfg.get('lr'))} (cosine to {g(cfg.get('min_lr'))}), weight decay {g(cfg.get('weight_decay'))}, clipping "
      f"{g(cfg.get('max_grad_norm'))}; LoRA r {lora.get('rank')}, alpha {g(lora.get('alpha'))}, dropout "
      f"{g(lora.get('dropout'))} on {','.join(lora.get('targets', []))}; mixer: 8-head attention over the "
      f"group at mix layer {cfg.get('mix_layer')} (the final-normed output), the reference's init "
      "(q/k/v ~ N(0, 0.02), output 0, scale sigmoid(-3)). The reference trains 1 epoch at lr 1e-4 on all "
      "of SQuAD; with a few hundred questions that moves nothing, so the epochs and lr are larger here "
      "(the same for every method).")
    w(f"- Seeds: {', '.join(map(str, seeds))} (adapter / mixer initialisation, batch order, dropout). Mean ± "
      "sample standard deviation over seeds.")
    w("- Selection: for `crossbatch` and `lora_crossbatch` the mixer mode (scale or question-aware gate) "
      "with the lower mean **validation** loss is chosen; the test split is read only for the chosen "
      "mode. Generation: greedy, at most "
      f"{cfg.get('max_new_tokens')} new tokens, one batch per group (rows of a group mix), answer = the "
      "first `<answer>` tag; EM counts only tagged answers (as the reference), F1 and lenient "
      "(either string contains the other) as in compare_strategies.")
    w("- Control (like-for-like): the trained mixer with every question regrouped with as many "
      "partners as it has siblings, taken from other stories of its batch.\n")

    verdicts = []
    for v in ("split", "normal"):
        if v not in table:
            continue
        t = table[v]
        w(f"## {VARIANTS[v]}\n")
        chosen = {}
        sel_rows = []
        for name in ("crossbatch", "lora_crossbatch"):
            best = None
            for mode in ("scale", "gate"):
                if (name, mode) not in t:
                    continue
                m, s, n = mean_sd(values(t[(name, mode)], "val", "loss"))
                sel_rows.append((name, mode, m, s, n))
                if m is not None and (best is None or m < best[1]):
                    best = (mode, m)
            if best:
                chosen[name] = best[0]
        if sel_rows:
            w("Validation loss of the mixer modes (the selection):\n")
            w("| Method | Mode | Validation loss | Chosen |\n|---|---|---|---|")
            for name, mode, m, s, n in sel_rows:
                w(f"| `{name}` | {mode} | {fmt(values(t[(name, mode)], 'val', 'loss'), 4)} | "
                  f"{'**yes**' if chosen.get(name) == mode else ''} |")
            w("")
        w(f"Test split ({len(seeds)} seeds):\n")
        w("| Method | Test loss | without mixer | control: other stories | EM % | F1 % | Lenient % |")
        w("|---|---|---|---|---|---|---|")
        fz = frozen.get(v, {})
        w(f"| frozen model ({DESCRIPTION['frozen']}) | {fmt([f.get('test', {}).get('loss') for f in fz.values()], 4)} "
          f"| | | {fmt([f.get('test', {}).get('em') for f in fz.values()], 1)} "
          f"| {fmt([f.get('test', {}).get('f1') for f in fz.values()], 1)} "
          f"| {fmt([f.get('test', {}).get('lenient') for f in fz.values()], 1)} |")
        keys = {}
        for name in METHODS:
            key = (name, chosen.get(name, "-")) if name in ("crossbatch", "lora_crossbatch") else (name, "-")
            if key not in t:
                continue
            keys[name] = key
            ps = t[key]
            label = f"`{name}`" + (f" ({key[1]})" if key[1] != "-" else "") + f": {DESCRIPTION[name]}"
            w(f"| {label} | {fmt(values(ps, 'test', 'loss'), 4)} | {fmt(values(ps, 'test', 'loss_without_mixer'), 4)} "
              f"| {fmt(values(ps, 'test', 'loss_control'), 4)} | {fmt(values(ps, 'test', 'em'), 1)} "
              f"| {fmt(values(ps, 'test', 'f1'), 1)} | {fmt(values(ps, 'test', 'lenient'), 1)} |")
        w("")
        # Training speed.
        speed = []
        for name, key in keys.items():
            tps = [m.get("tokens_per_second") for m in t[key].values()]
            speed.append(f"`{name}` {fmt(tps, 0)}")
        if speed:
            w("Training throughput (tokens/s, prompt + answer tokens, per process; processes ran side by side "
              "with other jobs, so these are rough): " + ", ".join(speed) + ".\n")
        # Verdict lora_crossbatch vs lora_lmhead.
        if "lora_crossbatch" in keys and "lora_lmhead" in keys:
            a, b = t[keys["lora_crossbatch"]], t[keys["lora_lmhead"]]
            common = sorted(set(a) & set(b))
            parts = []
            wins = {}
            for field, label in (("em", "EM"), ("f1", "F1"), ("loss", "loss")):
                d = [a[s]["test"][field] - b[s]["test"][field] for s in common
                     if field in a[s].get("test", {}) and field in b[s].get("test", {})]
                m, sd, n = mean_sd(d)
                if m is None:
                    continue
                parts.append(f"{label} {m:+.3f} ± {sd:.3f}")
                better = m < 0 if field == "loss" else m > 0
                wins[field] = better and abs(m) > sd
            beat = wins.get("em") or wins.get("f1")
            verdicts.append((v, beat, parts))
            w(f"**lora_crossbatch − lora_lmhead** (test, per-seed paired differences, mean ± sd over "
              f"{len(common)} seeds): {', '.join(parts)}. " +
              ("lora_crossbatch beats lora_lmhead on " + " and ".join(k.upper() for k in ("em", "f1") if wins.get(k)) +
               " by more than the spread over seeds." if beat else
               "lora_crossbatch does **not** beat lora_lmhead on EM or F1 by more than the spread over seeds.") + "\n")
        # Per seed.
        w("<details><summary>Per seed (test)</summary>\n")
        w("| Method | Seed | Loss | EM % | F1 % | Lenient % | Train s |\n|---|---|---|---|---|---|---|")
        for name, key in keys.items():
            for s, m in sorted(t[key].items()):
                te = m.get("test", {})
                w(f"| `{name}` | {s} | {te.get('loss', float('nan')):.4f} | {te.get('em', float('nan')):.1f} | "
                  f"{te.get('f1', float('nan')):.1f} | {te.get('lenient', float('nan')):.1f} | "
                  f"{m.get('train_seconds', 0):.0f} |")
        w("\n</details>\n")
    notes = pathlib.Path(__file__).with_name("RESULTS_notes.md")
    if notes.exists():
        w(notes.read_text())
    dst.write_text("\n".join(out) + "\n")
    print(f"wrote {dst}", file=sys.stderr)
    for v, beat, parts in verdicts:
        print(f"{v}: lora_crossbatch - lora_lmhead: {', '.join(parts)}: {'beats' if beat else 'does not beat'}",
              file=sys.stderr)


if __name__ == "__main__":
    main()
