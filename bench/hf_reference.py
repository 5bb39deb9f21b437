#!/usr/bin/env python3
"""PyTorch reference for bench/cpu_decode (CPU, float32, GPT-2 124M shape, random weights): a
plain KV-cache greedy loop in PyTorch eager ("torch-loop") and transformers generate()
("hf-generate"), on the same shapes as bench_cpu_decode's defaults. One JSON object per
(impl, batch) on stdout, with decode_tokens_per_s as bench/cpu_decode/run.sh reads it.

NOTE: reconstructed by the CUDA engineer after overwriting the original by mistake; the CUDA
reference lives in bench/hf_reference_cuda.py.

    hf_reference.py [--batches 1,8] [--prompt 64] [--new 64] [--threads N] [--repeats 3]
"""
import argparse
import json
import statistics
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=50257, n_embd=768, n_layer=12, n_head=12, n_positions=1024)
    model = GPT2LMHeadModel(cfg).eval()
    for b in (int(x) for x in a.batches.split(",")):
        ids = torch.randint(0, cfg.vocab_size, (b, a.prompt))
        loop, gen = [], []
        with torch.inference_mode():
            for _ in range(a.repeats):
                out = model(ids, use_cache=True)
                past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
                t0 = time.perf_counter()
                for _ in range(a.new - 1):
                    out = model(nxt, past_key_values=past, use_cache=True)
                    past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
                loop.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=a.new, min_new_tokens=a.new,
                               do_sample=False, pad_token_id=0)
                gen.append(time.perf_counter() - t0)
        for impl, ts, steps in (("torch-loop", loop, a.new - 1), ("hf-generate", gen, a.new)):
            t = statistics.median(ts)
            print(json.dumps(dict(impl=impl, batch=b, prompt=a.prompt, new_tokens=a.new,
                                  decode_tokens_per_s=b * steps / t, seconds=t)), flush=True)


if __name__ == "__main__":
    main()
