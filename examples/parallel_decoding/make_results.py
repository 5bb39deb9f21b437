#!/usr/bin/env python3
"""RESULTS.md and the accuracy-vs-latency plot of the parallel-decoding strategies.

  make_results.py RUN_DIR [--md RESULTS.md] [--plot OUT.png] [--note TEXT]      # a compare_strategies run
  make_results.py --device-json result.json [--md RESULTS.md] [--plot OUT.png]  # tools/device/pardec.sh

RUN_DIR holds compare_strategies' config.json and full_results.json (run_results.sh's CPU run);
result.json is what tools/device/pardec.sh writes (the bench and the GPU runs: data sets x seeds).
RESULTS.md has two generated blocks, the GPU one and the CPU one, between <!-- BEGIN x --> and
<!-- END x --> markers; each mode rewrites only its block and keeps the other. The plot
(matplotlib): the headline metric of every strategy against its mean latency per group.
"""
import argparse
import json
import pathlib
import re
import statistics

HEADLINE = {"strict_acc": "EM", "f1": "F1", "lenient_acc": "Lenient", "acc": "Choice accuracy",
            "bleu4": "BLEU-4", "rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L"}
DATASETS = {"squad": "SQuAD-format stories (one shared passage, groups of 1..5)",
            "hotpot": "HotpotQA-style multi-context (each question its own story + a distractor, groups of 2..4)",
            "quality": "QuALITY-style multiple choice (one story, 4 options, groups of 3..5)"}
TITLE = "# Parallel decoding strategies: results"


def mean_sd(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    if len(xs) == 1:
        return "%.3f" % xs[0]
    return "%.3f ± %.3f" % (statistics.mean(xs), statistics.stdev(xs))


def metric_order(metrics):
    return [m for m in HEADLINE if m in metrics]


def headline_metric(metrics):
    for m in ("lenient_acc", "acc", "rougeL"):
        if m in metrics:
            return m
    return metric_order(metrics)[0]


# ----------------------------------------------------------------------------------- CPU run

def cpu_block(run_dir, note, plot):
    res = json.loads((pathlib.Path(run_dir) / "full_results.json").read_text())
    cfg, summary, by_size = res["config"], res["summary"], res["by_group_size"]
    strategies = cfg["strategies"]
    metrics = list(next(iter(summary.values()))["metrics"].keys())
    order = metric_order(metrics)
    main = headline_metric(metrics)
    lines = ["## CPU run (examples/parallel_decoding/run_results.sh)", ""]
    if note:
        lines += [note, ""]
    lines += ["Run: model `%s`, data `%s` (%s), %d groups, %d to %d questions per group, max_new_tokens %d, "
              "seed %d, %s decoding on %s (%s)." % (
                  cfg["model"], cfg["data"], cfg["dataset"], cfg["groups"], cfg["min_questions"],
                  cfg["max_questions"], cfg["max_new_tokens"], cfg["seed"], cfg["decoding"], cfg["device"],
                  cfg["dtype"]), ""]
    lines += ["| Strategy | " + " | ".join(HEADLINE[m] for m in order) +
              " | prompt tokens / group | generated tokens / group | latency s / group | batches / group |",
              "|---|" + "---|" * (len(order) + 4)]
    for s in strategies:
        t = summary[s]
        lines.append("| %s | " % s + " | ".join("%.3f" % t["metrics"][m] for m in order) +
                     " | %.1f | %.1f | %.2f | %.2f |" % (t["avg_prompt_tokens"], t["avg_generated_tokens"],
                                                         t["avg_latency"], t["avg_batches"]))
    sizes = sorted({int(n) for s in strategies for n in by_size[s]})
    lines += ["", "%s by group size (questions per group; questions counted in brackets):" % HEADLINE[main], "",
              "| Strategy | " + " | ".join(str(n) for n in sizes) + " |", "|---|" + "---|" * len(sizes)]
    for s in strategies:
        cells = []
        for n in sizes:
            t = by_size[s].get(str(n))
            cells.append("%.3f (%d)" % (t["metrics"][main], t["questions"]) if t else "-")
        lines.append("| %s | " % s + " | ".join(cells) + " |")
    if plot:
        points = {cfg["dataset"]: {s: (summary[s]["avg_latency"], summary[s]["metrics"][main]) for s in strategies}}
        draw(plot, points, {cfg["dataset"]: HEADLINE[main]},
             "%s on %s, %s" % (pathlib.Path(cfg["model"]).name, cfg["device"], cfg["dtype"]))
        lines += ["", "![%s vs latency](%s)" % (HEADLINE[main], pathlib.Path(plot).name)]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------- device run

def bench_lines(bench):
    if not bench:
        return ["The bench did not run (see the device log)."]
    cfg = bench["config"]
    runs = bench["runs"]
    lines = ["Questions/s on groups of 5 questions (%d timed groups after one warm-up group, max_new_tokens %d, "
             "dependency request %d tokens, greedy, %d CPU threads for both engines). Ours: compare_strategies' "
             "wall time per strategy (templating, tokenizing and parsing included); transformers %s: its "
             "generate() calls replaying the same calls with the same token ids (bench/pardec/hf_strategies.py)."
             % (cfg["groups_timed"], cfg["max_new_tokens"], cfg["dependency_max_new_tokens"], cfg["threads"],
                cfg["torch"]), ""]
    head, rule = "| Strategy |", "|---|"
    for key in runs:
        head += " ours %s | transformers %s | ratio |" % (key, key)
        rule += "---|---|---|"
    lines += [head, rule]
    for s in cfg["strategies"]:
        line = "| %s |" % s
        for key, r in runs.items():
            o, h = r["ours"][s]["questions_per_s"], r["transformers"][s]["questions_per_s"]
            line += " %.2f | %.2f | %.2fx |" % (o, h, o / h) if o and h else " - | - | - |"
        lines.append(line)
    lines += ["", "Agreement with transformers: free running, the rows (one reply each) whose tokens equal "
              "ours; teacher forced, every token we generated scored by transformers float32 on the same "
              "prefix — a failure is a token whose logit is further below the maximum than the dtype's "
              "tolerance (float32 1e-4 + 1e-4 |max|; bfloat16 6e-2 + 6e-2 |max|). The bench fails on a "
              "float32 failure.", "",
              "| Run | equal rows | teacher-forced failures / tokens | largest logit gap |", "|---|---|---|---|"]
    for key, r in runs.items():
        eq = sum(v["equal_rows"] for v in r["free_running_agreement"].values())
        rows = sum(v["rows"] for v in r["free_running_agreement"].values())
        t = r["teacher_forced"]
        lines.append("| %s | %d / %d | %d / %d | %.2e |" % (key, eq, rows, t["failures"], t["tokens"], t["max_gap"]))
    if bench.get("skipped"):
        lines += ["", "Skipped for time: %s." % ", ".join(bench["skipped"])]
    lines += ["", "Bench verdict: %s." % ("passed" if bench.get("passed") else "FAILED")]
    return lines


def device_block(dev, plot):
    results = dev["results"]
    if not results:
        return "## GPU run\n\nNo result runs in the device JSON."
    any_run = next(iter(next(iter(results.values())).values()))
    cfg = any_run["config"]
    seeds = sorted({s for r in results.values() for s in r}, key=int)
    lines = ["## %s run (tools/device/pardec.sh)" % ("GPU" if cfg["device"] != "cpu" else "Device (CPU)"), "",
             "Model `%s` on %s (%s), greedy decoding, max_new_tokens %d (all_in_one: x questions), collab_llm's "
             "dependency request %d tokens (the reference: 512). Decoding is deterministic: the %d seeds (%s) draw "
             "different synthetic stories (tools/make_pardec_data.py --seed) and question orders "
             "(compare_strategies --seed 13 + seed); cells are the mean ± standard deviation over the seeds. "
             "Nothing was tuned, so there is no validation split to choose on: every number is reported once."
             % (pathlib.Path(cfg["model"]).name, cfg["device"], cfg["dtype"], cfg["max_new_tokens"],
                cfg["dependency_max_new_tokens"], len(seeds), ", ".join(seeds)), ""]
    points, labels = {}, {}
    for ds in [d for d in DATASETS if d in results] + [d for d in results if d not in DATASETS]:
        runs = results[ds]
        first = next(iter(runs.values()))
        strategies = first["config"]["strategies"]
        metrics = list(next(iter(first["summary"].values()))["metrics"].keys())
        order = metric_order(metrics)
        main = headline_metric(metrics)
        groups = [r["config"]["groups"] for r in runs.values()]
        questions = [next(iter(r["summary"].values()))["questions"] for r in runs.values()]
        lines += ["### %s" % DATASETS.get(ds, ds), "",
                  "%d seeds, %s groups and %s questions per seed." % (
                      len(runs), "/".join(map(str, groups)), "/".join(map(str, questions))), "",
                  "| Strategy | " + " | ".join(HEADLINE[m] for m in order) +
                  " | replies with the tag | prompt tokens / group | generated tokens / group | latency s / group "
                  "| batches / group |",
                  "|---|" + "---|" * (len(order) + 5)]
        points[ds], labels[ds] = {}, HEADLINE[main]
        for s in strategies:
            sm = [r["summary"][s] for r in runs.values()]
            tag = [r["replies_with_tag"][s] for r in runs.values() if s in r.get("replies_with_tag", {})]
            tag_cell = "%d / %d" % (sum(t[0] for t in tag), sum(t[1] for t in tag)) if tag else "-"
            lines.append("| %s | " % s + " | ".join(mean_sd([x["metrics"][m] for x in sm]) for m in order) +
                         " | %s | %.1f | %.1f | %.3f | %.2f |" % (
                             tag_cell, statistics.mean(x["avg_prompt_tokens"] for x in sm),
                             statistics.mean(x["avg_generated_tokens"] for x in sm),
                             statistics.mean(x["avg_latency"] for x in sm),
                             statistics.mean(x["avg_batches"] for x in sm)))
            points[ds][s] = (statistics.mean(x["avg_latency"] for x in sm),
                             statistics.mean(x["metrics"][main] for x in sm))
        notes = {}
        for r in runs.values():
            for s, ns in r.get("notes", {}).items():
                for n, k in ns.items():
                    notes[(s, n)] = notes.get((s, n), 0) + k
        if notes:
            lines += ["", "Notes over the seeds: " + "; ".join("%s: %s (%d groups)" % (s, n, k)
                                                             for (s, n), k in sorted(notes.items())) + "."]
        sizes = sorted({int(n) for r in runs.values() for s in strategies for n in r["by_group_size"][s]})
        if len(sizes) > 1:
            lines += ["", "%s by group size (mean over seeds; questions over all seeds in brackets):" % HEADLINE[main],
                      "", "| Strategy | " + " | ".join(str(n) for n in sizes) + " |", "|---|" + "---|" * len(sizes)]
            for s in strategies:
                cells = []
                for n in sizes:
                    vals = [r["by_group_size"][s][str(n)] for r in runs.values() if str(n) in r["by_group_size"][s]]
                    cells.append("%.3f (%d)" % (statistics.mean(v["metrics"][main] for v in vals),
                                                sum(v["questions"] for v in vals)) if vals else "-")
                lines.append("| %s | " % s + " | ".join(cells) + " |")
        sample = first.get("samples", {}).get("batch")
        if sample:
            lines += ["", "A reply (batch, first group of seed %s): question %s; gold %s; reply %s." % (
                next(iter(runs)), json.dumps(sample["question"]), json.dumps(sample["gold"]),
                json.dumps(sample["reply"][:200]))]
        lines.append("")
    lines += ["### What it shows", ""] + findings(results) + [""]
    lines += ["### Bench: ours vs transformers, same strategies, same run", ""] + bench_lines(dev.get("bench"))
    if plot:
        draw(plot, points, labels, "%s on %s (%s), mean over seeds" % (
            pathlib.Path(cfg["model"]).name, cfg["device"], cfg["dtype"]))
        lines += ["", "![accuracy vs latency](%s)" % pathlib.Path(plot).name]
    return "\n".join(lines)


def findings(results):
    """Plain statements computed from the runs: how often the tag was written, what EM and lenient
    then mean, the best and the fastest strategy per data set."""
    out = []
    tagged = total = 0
    for runs in results.values():
        for r in runs.values():
            for t in r.get("replies_with_tag", {}).values():
                tagged += t[0]
                total += t[1]
    if total:
        out.append("- The model wrote the `<answer>` tag in %d of %d replies (%.1f %%). EM is counted only when "
                   "the tag was found (the reference's strict metric), so EM stays near 0 for a model this "
                   "small whatever it answers; F1 and lenient (either normalised string contains the other, on "
                   "the whole reply when there is no tag) show whether the answer span is in the reply at all "
                   "— lenient rewards a long reply that quotes the passage, so it is an upper bound on what "
                   "the model got right. Choice accuracy reads the first A-F letter of the reply (chance: 0.25). "
                   "(all_in_one's one reply per group is counted once per question.)"
                   % (tagged, total, 100.0 * tagged / total))
    for ds, runs in results.items():
        first = next(iter(runs.values()))
        strategies = first["config"]["strategies"]
        main = headline_metric(list(next(iter(first["summary"].values()))["metrics"].keys()))
        mean = {s: statistics.mean(r["summary"][s]["metrics"][main] for r in runs.values()) for s in strategies}
        lat = {s: statistics.mean(r["summary"][s]["avg_latency"] for r in runs.values()) for s in strategies}
        sd = {s: statistics.stdev([r["summary"][s]["metrics"][main] for r in runs.values()]) if len(runs) > 1 else 0
              for s in strategies}
        best = max(strategies, key=lambda s: mean[s])
        fast = min(strategies, key=lambda s: lat[s])
        close = [s for s in strategies if s != best and mean[best] - mean[s] <= sd[best] + sd[s]]
        out.append("- %s: %s is best on %s (%.3f)%s; %s is the fastest (%.3f s per group, %s %.3f)." % (
            ds, best, HEADLINE[main], mean[best],
            ", within one seed standard deviation of " + ", ".join(close) if close else "",
            fast, lat[fast], HEADLINE[main], mean[fast]))
    return out


def draw(path, points, labels, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(points), figsize=(4.2 * len(points), 3.8), squeeze=False)
    for ax, (ds, pts) in zip(axes[0], points.items()):
        for s, (x, y) in pts.items():
            ax.scatter(x, y, s=40)
            ax.annotate(s, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set_xlabel("latency per group (s)")
        ax.set_ylabel(labels[ds])
        ax.set_title(ds, fontsize=10)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ----------------------------------------------------------------------------------- RESULTS.md

def put_block(text, name, body):
    begin, end = "<!-- BEGIN %s -->" % name, "<!-- END %s -->" % name
    block = "%s\n%s\n%s" % (begin, body.rstrip("\n"), end)
    if begin in text and end in text:
        return re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    return text.rstrip("\n") + "\n\n" + block + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", nargs="?")
    ap.add_argument("--device-json")
    ap.add_argument("--md")
    ap.add_argument("--plot")
    ap.add_argument("--note", default="")
    a = ap.parse_args()
    if bool(a.run_dir) == bool(a.device_json):
        ap.error("give either RUN_DIR or --device-json")
    if a.device_json:
        name, body = "gpu", device_block(json.loads(pathlib.Path(a.device_json).read_text()), a.plot)
    else:
        name, body = "cpu", cpu_block(a.run_dir, a.note, a.plot)
    if not a.md:
        print(body)
        return
    md = pathlib.Path(a.md)
    text = md.read_text() if md.exists() else ""
    if not text.startswith(TITLE):
        text = TITLE + "\n\nRegenerated by `examples/parallel_decoding/make_results.py` (the GPU block from " \
               "`tools/device/pardec.sh`'s result.json, the CPU block from `run_results.sh`); do not edit the " \
               "blocks by hand.\n"
    md.write_text(put_block(text, name, body))


if __name__ == "__main__":
    main()
