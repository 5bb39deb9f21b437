#!/usr/bin/env python3
"""Hugging Face transformers reference for bench/decode: the same shapes, dtype and lengths as
bench_decode (random weights, bfloat16, prompt 128 random ids, 128 new tokens, greedy, batch
1/8/64), timed around model.generate() on the same GPU. Modes: 'eager' (the default attention
implementation, dynamic cache, no compilation) and 'compiled' (static cache + torch.compile of
forward, mode reduce-overhead) for the shapes given by --compile. Writes JSON lines.

    hf_reference_cuda.py [--shapes gpt2-124m,...] [--batches 1,8,64] [--reps 3] [--compile gpt2-124m:1,...]
"""
import argparse
import json
import statistics
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, Qwen2Config

SHAPES = {
    "gpt2-124m": lambda: GPT2Config(vocab_size=50257, n_embd=768, n_layer=12, n_head=12, n_positions=1024,
                                    activation_function="gelu_new", tie_word_embeddings=True),
    "smollm2-135m": lambda: LlamaConfig(vocab_size=49152, hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                                        num_key_value_heads=3, intermediate_size=1536, max_position_embeddings=8192,
                                        rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True),
    "qwen2.5-0.5b": lambda: Qwen2Config(vocab_size=151936, hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                                        num_key_value_heads=2, intermediate_size=4864, max_position_embeddings=32768,
                                        rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True),
}


def build(name):
    cfg = SHAPES[name]()
    with torch.device("cuda"):
        try:
            model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
        except TypeError:
            model = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.bfloat16)
    return model.to(device="cuda", dtype=torch.bfloat16).eval()


def run(model, batch, prompt, new, reps, warmups):
    gen = torch.Generator(device="cuda").manual_seed(42)
    ids = torch.randint(0, model.config.vocab_size, (batch, prompt), device="cuda", generator=gen)
    mask = torch.ones_like(ids)
    kw = dict(input_ids=ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new, do_sample=False,
              pad_token_id=0)
    times = []
    with torch.inference_mode():
        for i in range(warmups + reps):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = model.generate(**kw)
            torch.cuda.synchronize()
            if i >= warmups:
                times.append(time.perf_counter() - t0)
    assert out.shape == (batch, prompt + new), out.shape
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="gpt2-124m,smollm2-135m,qwen2.5-0.5b")
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--compile", default="", help="shape:batch pairs to also time with static cache + torch.compile")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    out = open(a.json, "w") if a.json else sys.stdout
    compile_set = {tuple(x.split(":")) for x in a.compile.split(",") if x}
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.cuda.get_device_name()}",
          flush=True)
    for name in a.shapes.split(","):
        model = build(name)
        for b in (int(x) for x in a.batches.split(",")):
            t = run(model, b, a.prompt, a.new, a.reps, 1)
            rec = dict(kind="hf", shape=name, batch=b, mode="eager", tokens_per_s=b * a.new / t, total_s=t,
                       attn=getattr(model.config, "_attn_implementation", "?"))
            print(json.dumps(rec), file=out, flush=True)
            print(f"hf eager    {name:14s} batch {b:3d}: {b * a.new / t:10.0f} tok/s ({t:.3f} s)", flush=True)
        for (cname, cb) in sorted(compile_set):
            if cname != name:
                continue
            b = int(cb)
            try:
                model.generation_config.cache_implementation = "static"
                compiled = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
                orig = model.forward
                model.forward = compiled
                t = run(model, b, a.prompt, a.new, a.reps, 2)
                model.forward = orig
                model.generation_config.cache_implementation = None
                rec = dict(kind="hf", shape=name, batch=b, mode="compiled", tokens_per_s=b * a.new / t, total_s=t)
                print(f"hf compiled {name:14s} batch {b:3d}: {b * a.new / t:10.0f} tok/s ({t:.3f} s)", flush=True)
            except Exception as e:  # report and go on: the eager numbers are the target
                rec = dict(kind="hf", shape=name, batch=b, mode="compiled", error=repr(e)[:400])
                print(f"hf compiled {name} batch {b}: failed: {e!r}"[:400], flush=True)
            print(json.dumps(rec), file=out, flush=True)
        del model
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
