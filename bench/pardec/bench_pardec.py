#!/usr/bin/env python3
"""Questions/s of the parallel-decoding strategies on groups of 5 questions: ours
(compare_strategies, crossbatch engine) next to transformers doing the same strategy (the
reference's engine), on the CPU and on the GPU, in one run.

  bench/pardec/bench_pardec.py --binary build/cpu/examples/parallel_decoding/compare_strategies \
      [--model models/smollm2-135m-instruct] [--devices cpu,cuda] [--groups 4] [--threads 0] \
      [--max-new-tokens 32] [--dependency-max-new-tokens 64] [--bf16] [--json-out result.json]

For every device it runs compare_strategies (float32, greedy) with --dump-calls on --groups + 1
synthetic SQuAD-format groups of 5 questions (tools/make_pardec_data.py), then replays each dumped
generation call through transformers on the same device (bench/pardec/hf_strategies.py: same
token ids, same stop tokens, batch = one left-padded generate() per call). The first group of each
engine is a warm-up and is not timed. Ours: the strategy's wall time per group as
compare_strategies measured it (templating, tokenizing and parsing included); transformers: the
time of its generate() calls only (so the ratio slightly favours transformers).

Agreement: free-running, the rows whose tokens equal ours are counted; exactly, every token of
every float32 run must pass the teacher-forced check against transformers float32 logits (the best
device present) within the float32 tolerance of include/crossbatch/core/dtype.hpp — the benchmark
exits 1 when one does not. With --bf16 a bfloat16 run on CUDA on each side is timed too; its
teacher-forced failures (bfloat16 tolerance) are reported, not failed: bfloat16 greedy paths
legitimately part ways at near ties.
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import hf_strategies as hf  # noqa: E402

STRATEGIES = "all_in_one,sequential,batch,collab_llm"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run_ours(a, data, device, dtype, work):
    dump = work / ("dump_%s_%s.json" % (device, dtype))
    cmd = [a.binary, "--dataset", "squad", "--data", str(data), "--model-name", a.model,
           "--context-count", str(a.groups + 1), "--min-questions", "5", "--max-questions", "5",
           "--max-new-tokens", str(a.max_new_tokens), "--dependency-max-new-tokens",
           str(a.dependency_max_new_tokens), "--strategies", a.strategies, "--seed", "13", "--device", device,
           "--dtype", dtype, "--threads", str(a.threads), "--quiet", "--dump-calls", str(dump)]
    log("ours:", " ".join(cmd))
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    log("ours %s %s: %.1f s" % (device, dtype, time.perf_counter() - t0))
    return json.loads(dump.read_text())


def rates(groups, seconds_of):
    """strategy -> questions/s over the timed groups (all but the first)."""
    out = {}
    for name in groups[0]["strategies"]:
        q = sum(g["questions"] for g in groups[1:])
        s = sum(seconds_of(g["strategies"][name]) for g in groups[1:])
        out[name] = {"questions": q, "seconds": s, "questions_per_s": q / s if s > 0 else None}
    return out


def agreement(replayed):
    out = {}
    for g in replayed["groups"]:
        for name, s in g["strategies"].items():
            o = out.setdefault(name, {"rows": 0, "equal_rows": 0})
            o["rows"] += s["rows"]
            o["equal_rows"] += s["equal_rows"]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True, help="compare_strategies")
    ap.add_argument("--model", default=str(ROOT / "models" / "smollm2-135m-instruct"))
    ap.add_argument("--devices", default="cpu,cuda")
    ap.add_argument("--groups", type=int, default=4, help="timed groups of 5 questions (plus one warm-up)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads of both engines (0: all cores)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--dependency-max-new-tokens", type=int, default=64)
    ap.add_argument("--strategies", default=STRATEGIES)
    ap.add_argument("--bf16", action="store_true", help="also time bfloat16 on CUDA (reported, not checked)")
    ap.add_argument("--budget-s", type=float, default=0,
                    help="skip the bfloat16 runs when the float32 ones took more than 60%% of this (0: no limit)")
    ap.add_argument("--work", help="folder for the data and the dumps (default: a temporary one)")
    ap.add_argument("--json-out")
    a = ap.parse_args()
    import torch
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    devices = [d for d in a.devices.split(",") if d]
    if "cuda" in devices and not torch.cuda.is_available():
        log("no CUDA device: CPU only")
        devices = [d for d in devices if d != "cuda"]
    work = pathlib.Path(a.work or tempfile.mkdtemp(prefix="bench_pardec_"))
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(ROOT / "tools" / "make_pardec_data.py"), "--out-dir", str(work / "data"),
                    "--seed", "0", "--per-size", str(a.groups + 1)], check=True, stdout=subprocess.DEVNULL)
    data = work / "data" / "squad_groups.json"

    runs = []  # (device, dtype)
    for d in devices:
        runs.append((d, "float32"))
    if a.bf16 and "cuda" in devices:
        runs.append(("cuda", "bfloat16"))
    result = {"config": {"model": a.model, "groups_timed": a.groups, "questions_per_group": 5,
                         "max_new_tokens": a.max_new_tokens, "dependency_max_new_tokens": a.dependency_max_new_tokens,
                         "threads": torch.get_num_threads(), "strategies": a.strategies.split(","),
                         "torch": torch.__version__, "decoding": "greedy"},
              "runs": {}}
    # Exact agreement: teacher-forced transformers float32 logits on the best device present.
    ref_device = "cuda" if "cuda" in devices else "cpu"
    ref = hf.load_model(a.model, ref_device, "float32")
    failed = False
    t_start = time.perf_counter()

    def save():
        result["passed"] = not failed
        if a.json_out:
            pathlib.Path(a.json_out).write_text(json.dumps(result, indent=1) + "\n")

    for device, dtype in runs:
        key = "%s_%s" % (device, dtype)
        if dtype != "float32" and a.budget_s and time.perf_counter() - t_start > 0.6 * a.budget_s:
            log("skipping %s: the float32 runs took %.0f s of the %.0f s budget" % (
                key, time.perf_counter() - t_start, a.budget_s))
            result["skipped"] = result.get("skipped", []) + [key]
            continue
        dump = run_ours(a, data, device, dtype, work)
        model = ref if (device, dtype) == (ref_device, "float32") else hf.load_model(a.model, device, dtype)
        first = dump["groups"][0]["strategies"][a.strategies.split(",")[0]]["calls"][0]
        hf.generate_call(model, first["prompt_ids"], 4, dump["stop_ids"], dump["pad_id"], device)  # warm-up
        t0 = time.perf_counter()
        replayed = hf.replay(model, dump, device)
        log("transformers %s: %.1f s" % (key, time.perf_counter() - t0))
        if model is not ref:
            del model
        c = hf.teacher_forced_check(ref, dump, ref_device, dump["dtype"])
        c["reference"] = "transformers float32 on " + ref_device
        failed = failed or (dtype == "float32" and c["failures"] > 0)
        result["runs"][key] = {"device": device, "dtype": dtype,
                               "ours": rates(dump["groups"], lambda s: s["latency"]),
                               "transformers": rates(replayed["groups"], lambda s: s["seconds"]),
                               "free_running_agreement": agreement(replayed), "teacher_forced": c}
        save()

    strategies = a.strategies.split(",")
    print("\nQuestions/s on groups of 5 questions (%d timed groups, max_new_tokens %d, greedy), ours = "
          "crossbatch, HF = transformers %s replaying the same calls:\n" % (a.groups, a.max_new_tokens,
                                                                              torch.__version__))
    head = "| Strategy |"
    rule = "|---|"
    for key in result["runs"]:
        head += " ours %s | HF %s | ours/HF |" % (key, key)
        rule += "---|---|---|"
    print(head)
    print(rule)
    for s in strategies:
        line = "| %s |" % s
        for key, r in result["runs"].items():
            o, h = r["ours"][s]["questions_per_s"], r["transformers"][s]["questions_per_s"]
            line += " %.2f | %.2f | %.2fx |" % (o, h, o / h)
        print(line)
    print("\nAgreement with transformers (free running: rows with identical tokens; teacher forced: tokens "
          "outside the dtype's tolerance of transformers float32's greedy choice):\n")
    print("| Run | equal rows | teacher-forced failures / tokens | max logit gap |")
    print("|---|---|---|---|")
    for key, r in result["runs"].items():
        eq = sum(v["equal_rows"] for v in r["free_running_agreement"].values())
        rows = sum(v["rows"] for v in r["free_running_agreement"].values())
        t = r["teacher_forced"]
        print("| %s | %d / %d | %d / %d | %.2e |" % (key, eq, rows, t["failures"], t["tokens"], t["max_gap"]))
    save()
    if failed:
        print("\nFAILED: a float32 run generated tokens that are not transformers' greedy choice "
              "(see teacher_forced.worst in the JSON)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
