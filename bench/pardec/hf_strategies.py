#!/usr/bin/env python3
"""The parallel-decoding strategies on transformers (the reference's engine), replaying the exact
generation calls that compare_strategies made (its --dump-calls file), so both engines see the same
token sequences:

  batch       one left-padded generate() call holding every question of the group;
  all_in_one  one generate() call, max_new_tokens x questions;
  sequential  one generate() call per turn, the growing chat (our replies as the assistant turns);
  collab_llm  the dependency request, then one left-padded generate() call per DAG layer (the
              parents' answers in the prompts as we extracted them).

Each call gets the dumped prompt ids (templated and tokenized by our engine), greedy decoding,
the same stop tokens and max_new_tokens. Per group and strategy it reports the seconds of its
generate() calls and how many rows produced exactly our tokens. With --check it also runs the
teacher-forced test that makes agreement exact: every token we generated must be transformers'
greedy choice up to the dtype's tolerance (logit[ours] >= max logit - (atol + rtol |max logit|),
atol/rtol of include/crossbatch/core/dtype.hpp), which a free-running comparison cannot tell from
a near tie.

  hf_strategies.py DUMP.json --model models/smollm2-135m-instruct --device cuda --dtype float32 \
      --out hf.json [--check DUMP2.json ...] [--threads N]

As a module: replay(model, dump, device) and teacher_forced_check(model, dump, device, dtype).
"""
import argparse
import json
import pathlib
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

# include/crossbatch/core/dtype.hpp: |a - b| <= atol + rtol |b|.
TOLERANCE = {"float32": (1e-4, 1e-4), "float16": (1e-2, 1e-2), "bfloat16": (6e-2, 6e-2)}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def load_model(model_dir, device, dtype):
    from convert import load_npy_model
    model = load_npy_model(model_dir, attn_implementation="sdpa", torch_dtype=DTYPES[dtype])
    return model.to(device).eval()


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def trim(tokens, stop):
    """Tokens up to and including the first stop token."""
    for i, t in enumerate(tokens):
        if t in stop:
            return tokens[: i + 1]
    return tokens


@torch.inference_mode()
def generate_call(model, prompts, max_new_tokens, stop_ids, pad_id, device):
    """One left-padded greedy generate() over `prompts` (lists of ids): (new tokens per row, s)."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for r, p in enumerate(prompts):
        ids[r, width - len(p):] = torch.tensor(p)
        mask[r, width - len(p):] = 1
    ids, mask = ids.to(device), mask.to(device)
    sync(device)
    t0 = time.perf_counter()
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                         eos_token_id=list(stop_ids), pad_token_id=pad_id, temperature=None, top_p=None,
                         top_k=None)
    sync(device)
    seconds = time.perf_counter() - t0
    stop = set(stop_ids)
    return [trim(row[width:].tolist(), stop) for row in out.cpu()], seconds


def replay(model, dump, device, progress=True):
    """Every dumped call through transformers: {groups: [{id, questions, strategies: {name:
    {seconds, rows, equal_rows, first_divergence: [...]}}}]}."""
    stop, pad = dump["stop_ids"], dump["pad_id"]
    out = []
    calls_total = sum(len(s["calls"]) for g in dump["groups"] for s in g["strategies"].values())
    done, t_start = 0, time.perf_counter()
    for g in dump["groups"]:
        entry = {"id": g["id"], "questions": g["questions"], "strategies": {}}
        for name, s in g["strategies"].items():
            seconds, rows, equal, diverge = 0.0, 0, 0, []
            for c in s["calls"]:
                got, sec = generate_call(model, c["prompt_ids"], c["max_new_tokens"], stop, pad, device)
                seconds += sec
                for r, (a, b) in enumerate(zip(got, c["token_ids"])):
                    rows += 1
                    if a == b:
                        equal += 1
                    else:
                        k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
                        diverge.append(k)
                done += 1
                if progress:
                    el = time.perf_counter() - t_start
                    print("\rhf replay %d/%d calls, %.1f calls/s, ETA %.0f s   " % (
                        done, calls_total, done / el, (calls_total - done) / max(done / el, 1e-9)),
                        end="", file=sys.stderr, flush=True)
            entry["strategies"][name] = {"seconds": seconds, "rows": rows, "equal_rows": equal,
                                         "first_divergence": diverge}
        out.append(entry)
    if progress:
        print(file=sys.stderr)
    return {"groups": out}


@torch.inference_mode()
def teacher_forced_check(model, dump, device, dtype):
    """Checks every generated token of `dump` (an engine run in `dtype`) against `model`'s logits on
    the same prefix (one unpadded forward per row): a token passes when its logit is within the
    dtype's tolerance of the row's maximum. Returns {tokens, failures, max_gap, worst: [...]}."""
    atol, rtol = TOLERANCE[dtype]
    tokens = failures = 0
    max_gap, worst = 0.0, []
    for g in dump["groups"]:
        for name, s in g["strategies"].items():
            for ci, c in enumerate(s["calls"]):
                for r, (p, t) in enumerate(zip(c["prompt_ids"], c["token_ids"])):
                    if not t:
                        continue
                    ids = torch.tensor([p + t[:-1]], device=device)
                    logits = model(input_ids=ids).logits[0, len(p) - 1:].float()  # (len(t), V)
                    top = logits.max(-1).values
                    mine = logits.gather(-1, torch.tensor(t, device=device)[:, None])[:, 0]
                    gap = (top - mine).cpu()
                    bound = (atol + rtol * top.abs()).cpu()
                    bad = (gap > bound).nonzero().flatten().tolist()
                    tokens += len(t)
                    failures += len(bad)
                    max_gap = max(max_gap, float(gap.max()))
                    for k in bad[:1]:
                        if len(worst) < 10:
                            worst.append({"group": g["id"], "strategy": name, "call": ci, "row": r, "position": k,
                                          "gap": float(gap[k]), "bound": float(bound[k])})
    return {"dtype": dtype, "atol": atol, "rtol": rtol, "tokens": tokens, "failures": failures,
            "max_gap": max_gap, "worst": worst}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dump", help="compare_strategies --dump-calls file to replay")
    ap.add_argument("--model", default=str(ROOT / "models" / "smollm2-135m-instruct"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--check", nargs="*", default=[], metavar="DUMP",
                    help="teacher-forced check of these dumps (default none; 'self' = the replayed dump)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dump = json.loads(pathlib.Path(a.dump).read_text())
    model = load_model(a.model, a.device, a.dtype)
    result = {"engine": "transformers", "device": a.device, "dtype": a.dtype, "threads": torch.get_num_threads(),
              "torch": torch.__version__, "replay": replay(model, dump, a.device), "checks": {}}
    for path in a.check:
        d = dump if path == "self" else json.loads(pathlib.Path(path).read_text())
        result["checks"][path] = teacher_forced_check(model, d, a.device, d["dtype"])
    pathlib.Path(a.out).write_text(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
