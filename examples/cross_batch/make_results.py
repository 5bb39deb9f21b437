#!/usr/bin/env python3
"""Writes examples/cross_batch/RESULTS.md from the JSON logs of run_results.sh.

  make_results.py LOG_DIR RESULTS.md

Reads train_<variant>.json (cross_batch_train --output), eval_<variant>.json (cross_batch_eval
--output), *.time (/usr/bin/time) and bench_cpu.txt, for the variants split and full. Optional
extra training runs train_<variant>_<tag>.json are listed in a second loss table."""
import datetime
import glob
import json
import os
import platform
import subprocess
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def read(path, default=""):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def cpu_name():
    for line in read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def git_head():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


VARIANTS = [("split", "split-context stories (each question sees one part; its answer is in a part a sibling sees)"),
            ("full", "normal stories (every question sees the whole story)")]


def epoch_table(method, hist):
    rows = ["| Epoch | Loss | Baseline loss (same head, no mixing) | Improvement | Frozen model | Held-out loss | "
            "Held-out, same head, no mixing | Time |",
            "|---|---|---|---|---|---|---|---|"]
    for e in hist["methods"][method]["epochs"]:
        if e["epoch"] == 0:
            rows.append(f"| 0 (before training) | | | | {hist['frozen_train_loss']:.4f} | {e['held_out_loss']:.4f} | "
                        f"{e['held_out_baseline_loss']:.4f} | |")
            continue
        rows.append(f"| {e['epoch']} | {e['loss']:.4f} | {e['baseline_loss']:.4f} | {e['improvement']:+.4f} | "
                    f"{e['frozen_loss']:.4f} | {e['held_out_loss']:.4f} | {e['held_out_baseline_loss']:.4f} | "
                    f"{e['seconds']:.0f} s |")
    return "\n".join(rows)


def final(hist, method):
    return hist["methods"][method]["epochs"][-1]


def main():
    logs, out = sys.argv[1], sys.argv[2]
    md = []
    md.append("# Cross-batch generation: results\n")
    md.append("Regenerate everything on this page with one command (CPU, about an hour on two cores):\n")
    md.append("```sh\nexamples/cross_batch/run_results.sh\n```\n")
    first = load(os.path.join(logs, "train_split.json"))
    md.append(f"Generated {datetime.date.today().isoformat()} at commit {git_head()} on {cpu_name()} "
              f"({os.cpu_count()} cores, shared with other jobs; {first['threads']} thread(s)).\n")
    mixer = first["mixer"]
    md.append("## Setup\n")
    md.append(f"- Model: `{first['model']}` (SmolLM2-135M-Instruct, float32, frozen).")
    md.append("- Data: `tools/make_stories.py --seed 0 --train 300 --test 100`; the first "
              f"{first['train_questions']} training questions (whole stories) for training and the first "
              f"{first['held_out_questions']} test questions for the held-out losses and for EM/F1.")
    md.append("- Prompt: the model's chat template, a system message asking for the shortest phrase from the passage, and "
              "`Passage: ...\\n\\nQuestion: ...`; the answer is the first line of the reply. Teacher-forced targets: the "
              "gold span followed by `<|im_end|>`.")
    md.append(f"- Mixer: {mixer['kind']} over the batch, {mixer['num_heads']} heads, {mixer['combine']} mode, at mix_layer "
              f"{first['mix_layer']} (the final-normed output the LM head reads); only questions of the same story mix.")
    md.append(f"- Training: base model frozen, answer states cached once; {first['epochs']} epochs, batches of "
              f"{first['batch_size']} questions (whole stories packed), AdamW lr {first['learning_rate']:g} (warm-up "
              f"{first['warmup_ratio']:.0%}, cosine decay), weight decay {first['weight_decay']:g}, clipping at "
              f"{first['max_grad_norm']:g}. Methods as in the reference: `baseline` = LM head only (no mixing), "
              "`crossbatch` = LM head + mixer.")
    md.append("- Losses are nats per answer token, averaged over tokens (the reference averages per batch).\n")

    findings = []
    for variant, title in VARIANTS:
        path = os.path.join(logs, f"train_{variant}.json")
        if not os.path.exists(path):
            continue
        hist = load(path)
        md.append(f"## {title[0].upper() + title[1:]}\n")
        md.append(f"Training: {hist['train_questions']} questions ({hist['train_tokens']} answer tokens); held-out: "
                  f"{hist['held_out_questions']} questions ({hist['held_out_tokens']} tokens). Wall time of the training "
                  f"program (answer states included): {read(os.path.join(logs, f'train_{variant}.time'), '?')}.\n")
        for method in ("baseline", "crossbatch"):
            if method in hist["methods"]:
                md.append(f"### `{method}`\n")
                md.append(epoch_table(method, hist) + "\n")
        if "baseline" in hist["methods"] and "crossbatch" in hist["methods"]:
            b, c = final(hist, "baseline"), final(hist, "crossbatch")
            foreign = hist["methods"]["crossbatch"].get("held_out_other_contexts_loss")
            md.append("### Held-out answer-token loss after training\n")
            md.append("| Model | Held-out loss |\n|---|---|")
            md.append(f"| frozen model (original head, no mixing) | {hist['frozen_held_out_loss']:.4f} |")
            md.append(f"| `baseline`: trained LM head, no mixing | {b['held_out_loss']:.4f} |")
            md.append(f"| `crossbatch`: trained head + mixer, partners from the same story | **{c['held_out_loss']:.4f}** |")
            if foreign is not None:
                md.append(f"| `crossbatch`, control: partners from other stories of the batch | {foreign:.4f} |")
            md.append(f"| `crossbatch` head without its mixer | {c['held_out_baseline_loss']:.4f} |\n")
            findings.append((variant, b["held_out_loss"], c["held_out_loss"], foreign, c["held_out_baseline_loss"]))
        ev_path = os.path.join(logs, f"eval_{variant}.json")
        if os.path.exists(ev_path):
            ev = load(ev_path)
            md.append(f"### Generation: EM / F1 ({ev['questions']} test questions, batches of {ev['batch_size']}, greedy, "
                      f"at most {ev['max_new_tokens']} new tokens)\n")
            md.append("| Method | Exact Match | F1 Score | Lenient | Generated tokens |\n|---|---|---|---|---|")
            for m in ev["methods"]:
                md.append(f"| {m['name']} | {m['exact_match']:.2f} | {m['f1']:.2f} | {m['lenient']:.2f} | "
                          f"{m['generated_tokens']} |")
            md.append(f"\nWall time: {read(os.path.join(logs, f'eval_{variant}.time'), '?')} (one prefill per batch shared "
                      f"by the methods: {ev['prefill_seconds']:.0f} s of prefill).\n")

    extra = sorted(glob.glob(os.path.join(logs, "train_*_*.json")))
    if extra:
        md.append("## Other mixer settings (held-out loss, same data and schedule)\n")
        md.append("A layer other than the last is read through the final norm and the trained head (`project`); its "
                  "'frozen model' is the original head on those states.\n")
        md.append("| Run | Mixer | mix_layer | Frozen model | Held-out loss | Control: other stories | Head without mixer |\n"
                  "|---|---|---|---|---|---|---|")
        for path in extra:
            h = load(path)
            for method, info in h["methods"].items():
                e = info["epochs"][-1]
                mx = h["mixer"]
                md.append(f"| {os.path.basename(path)[6:-5]} ({method}) | {mx['kind']}/{mx['combine']} | {h['mix_layer']} | "
                          f"{h['frozen_held_out_loss']:.4f} | {e['held_out_loss']:.4f} | {info.get('held_out_other_contexts_loss', float('nan')):.4f} | "
                          f"{e['held_out_baseline_loss']:.4f} |")
        md.append("")

    if findings:
        md.append("## Findings\n")
        for variant, base, cross, foreign, nomix in findings:
            line = (f"- {variant}: the trained mixer lowers the held-out loss from {base:.4f} (trained head alone) to "
                    f"{cross:.4f} ({base - cross:+.4f} nats/token in favour of mixing)")
            if foreign is not None:
                line += (f"; with partners taken from other stories the same trained model scores {foreign:.4f}, so "
                         f"{foreign - cross:+.4f} of it needs the right partners")
            line += f". Without its mixer the co-trained head scores {nomix:.4f}."
            md.append(line)
        notes = read(os.path.join(os.path.dirname(out), "RESULTS_notes.md"))
        if notes:
            md.append("\n" + notes)
        md.append("")

    bench = read(os.path.join(logs, "bench_cpu.txt"))
    if bench:
        md.append("## Cost of mixing per decode step (CPU, bench/cross_batch/bench_cross_batch_cpu)\n")
        md.append("```\n" + "\n".join(l for l in bench.splitlines() if not l.startswith("{")) + "\n```\n")
    with open(out, "w") as f:
        f.write("\n".join(md))
    print("wrote", out)


if __name__ == "__main__":
    main()
