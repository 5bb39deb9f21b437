#!/usr/bin/env python3
"""PyTorch + peft reference of bench_lora (lora_lmhead training) on the inputs bench_lora --prepare
wrote: the transformers model built from DIR/<shape>/model/config.json in bfloat16 with the same
random weights (float32 npy, rounded to bf16), peft LoRA (r 16, alpha 32, dropout 0.05 on
q,k,v,o,gate,up,down) with A loaded from DIR/<shape>/adapters (our kaiming-uniform draw, B zero)
and the LM head trainable (modules_to_save, untied from the frozen input embedding as ours is),
torch.optim.AdamW (fused when on CUDA) with gradient clipping at 1.0, the same token batch.

For each shape it writes to --json: the first step's loss, LM-head gradient norm and adapter
gradient norm with dropout off (the check bench_lora compares against), and tokens/s of
warm-up + timed steps with dropout on (eager; --compile adds a torch.compile run).

  python3 bench/lora/peft_reference.py --work DIR --json peft.json [--shapes a,b] [--steps 10]
"""
import argparse
import glob
import json
import os
import sys
import time

import numpy as np
import torch

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def load_model(model_dir, device):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16,
                                                 attn_implementation="sdpa")
    state = {}
    for path in glob.glob(os.path.join(model_dir, "*.npy")):
        name = os.path.basename(path)[:-4]
        state[name] = torch.from_numpy(np.load(path)).to(torch.bfloat16)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not (config.tie_word_embeddings and m == "lm_head.weight")]
    if missing or unexpected:
        sys.exit(f"{model_dir}: weights do not fit the model: missing {missing[:5]}, "
                 f"unexpected {unexpected[:5]}")
    if config.tie_word_embeddings:
        model.tie_weights()
    return model.to(device)


def add_lora(model, adapter_dir):
    from peft import LoraConfig, get_peft_model

    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        cfg = json.load(f)
    lcfg = LoraConfig(r=cfg["r"], lora_alpha=cfg["lora_alpha"], lora_dropout=cfg["lora_dropout"],
                      target_modules=TARGETS, modules_to_save=["lm_head"], bias="none",
                      task_type="CAUSAL_LM")
    pm = get_peft_model(model, lcfg)
    # our A (and zero B), by peft's state-dict names with the adapter name inserted
    params = dict(pm.named_parameters())
    loaded = 0
    for path in glob.glob(os.path.join(adapter_dir, "*.npy")):
        name = os.path.basename(path)[:-4]
        key = name.replace(".lora_A.weight", ".lora_A.default.weight").replace(
            ".lora_B.weight", ".lora_B.default.weight")
        if key not in params:
            sys.exit(f"{adapter_dir}: {key} is not a parameter of the peft model")
        with torch.no_grad():
            params[key].copy_(torch.from_numpy(np.load(path)))
        loaded += 1
    expected = sum(1 for k in params if ".lora_A." in k or ".lora_B." in k)
    if loaded != expected:
        sys.exit(f"{adapter_dir}: loaded {loaded} adapter matrices, the model has {expected}")
    return pm


def set_dropout(model, p):
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = p


def grad_norms(pm):
    head = 0.0
    lora = 0.0
    for name, p in pm.named_parameters():
        if p.grad is None:
            continue
        ss = float(p.grad.float().pow(2).sum())
        if "lora_" in name:
            lora += ss
        elif "modules_to_save" in name:
            head += ss
    return head ** 0.5, lora ** 0.5


def run_shape(args, shape, device):
    d = os.path.join(args.work, shape)
    model = load_model(os.path.join(d, "model"), device)
    pm = add_lora(model, os.path.join(d, "adapters"))
    pm.train()
    ids = torch.from_numpy(np.load(os.path.join(d, "tokens.npy")).astype(np.int64)).to(device)
    mask = torch.ones_like(ids)
    trainable = [p for p in pm.parameters() if p.requires_grad]
    # float32 master copies would change peft's own setup: its LoRA weights are float32, the
    # saved head copy keeps the model's bfloat16.
    opt = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.01,
                            fused=device == "cuda")

    def forward_backward(model):
        out = model(input_ids=ids, attention_mask=mask, labels=ids)
        out.loss.backward()
        return out.loss

    # the check step, dropout off
    set_dropout(pm, 0.0)
    loss = float(forward_backward(pm))
    head_norm, lora_norm = grad_norms(pm)
    opt.zero_grad(set_to_none=True)
    set_dropout(pm, 0.05)

    def timed(model, label):
        def step():
            loss = forward_backward(model)
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss

        for _ in range(args.warmup):
            step()
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(args.steps):
            last = step()
            el = time.perf_counter() - t0
            print(f"\r{shape} {label}: step {i + 1}/{args.steps}, "
                  f"{ids.numel() * (i + 1) / el:.0f} tok/s", end="", file=sys.stderr, flush=True)
        if device == "cuda":
            torch.cuda.synchronize()
        secs = time.perf_counter() - t0
        print(file=sys.stderr)
        return ids.numel() * args.steps / secs, float(last)

    tok_s, last = timed(pm, "eager")
    res = {"loss": loss, "head_grad_norm": head_norm, "lora_grad_norm": lora_norm,
           "tok_s": tok_s, "last_loss": last, "tokens_per_step": int(ids.numel()),
           "torch": torch.__version__, "peft": __import__("peft").__version__,
           "transformers": __import__("transformers").__version__}
    if args.compile:
        compiled = torch.compile(pm)
        res["compiled_tok_s"], _ = timed(compiled, "compiled")
    print(f"{shape}: loss {loss:.4f}, |g_head| {head_norm:.4f}, |g_lora| {lora_norm:.5g}, "
          f"{tok_s:.0f} tok/s eager" +
          (f", {res['compiled_tok_s']:.0f} compiled" if args.compile else ""), flush=True)
    del pm, model, opt
    if device == "cuda":
        torch.cuda.empty_cache()
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--json", required=True)
    ap.add_argument("--shapes", default="smollm2-135m,qwen2.5-0.5b")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    out = {}
    for shape in args.shapes.split(","):
        out[shape] = run_shape(args, shape, args.device)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
