#!/usr/bin/env python3
"""Reference outputs for the second real model, Qwen2.5-Coder-0.5B-Instruct, from transformers' own
GGUF loader (`from_pretrained(..., gguf_file=)`, which dequantises the same GGUF with the gguf
package), written to tests/data/qwen2.5-coder/ for the C++ tests:

  passage_ids.npy        token ids of passage.txt (no special tokens)
  passage_logprobs.npy   float64 log p(token t+1 | tokens <= t), transformers-GGUF model, float32 eager
  chat_<i>_ids.npy       chat-templated prompt ids of chat_questions.json[i] (the GGUF's template)
  chat_<i>_greedy.npy    transformers-GGUF greedy continuation (32 tokens at most, EOS <|im_end|> kept)
  tokenizer_ids.json     ids of transformers' GGUF tokenizer for every string of tests/data/text/
                         corpus.json followed by `extra_strings` (code, Chinese, whitespace runs)
  reference.json         the self-check figures, perplexity and decoded answers, for humans

Before writing anything it checks tools/convert.py's output (models/qwen2.5-coder-0.5b-instruct,
made by scripts/get_model.sh) against that reference: per-token log-probs of the passage within
float32 tolerance (1e-4 + 1e-4 |x|, as include/crossbatch/core/dtype.hpp), greedy answers token-
identical, tokenizer.json ids identical on every string. Exits 1 (writing nothing) on a mismatch.

    make_qwen_reference.py [--model-dir DIR] [--gguf FILE] [--out DIR]

Needs torch, transformers, accelerate, gguf, tokenizers (tools only, not CI).
"""
import argparse
import json
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import convert  # noqa: E402

NAME = "qwen2.5-coder-0.5b-instruct"
MAX_NEW_TOKENS = 32
ATOL = RTOL = 1e-4  # float32 tolerance of the C++ tests (dtype_traits<float>)

# Beyond the shared corpus: what a coder model sees (indentation, tabs, long whitespace runs,
# operators, JSON, shell), Chinese prose and code comments, and mixtures.
EXTRA_STRINGS = [
    "def add(a, b):\n    return a + b\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, x):\n        self.items.append(x)\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i] * b[i];\n}\n",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }",
    "const f = async (x) => { await fetch(`/api/${x}`); };",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;",
    "{\"key\": [1, 2.5, -3e10, true, null], \"nested\": {\"a\": \"b\"}}",
    "$ ls -la | grep '\\.py$' && echo \"done\" >> log.txt 2>&1",
    "x = [i**2 for i in range(10) if i % 2 == 0]  # squares of evens",
    "if x != y and not (a <= b or c >= d): pass",
    "        \n\n\n            indented after blank lines",
    "tabs\t\t\tand    spaces        mixed\t \t end",
    "                                                                trailing",
    "a\n\n\n\n\n\n\n\nb",
    "\r\n\r\n    windows indentation\r\n",
    "// 计算两个数的和\nint add(int a, int b) { return a + b; }",
    "# 这是一个注释：打印你好世界\nprint(\"你好，世界\")",
    "人工智能是计算机科学的一个分支，它企图了解智能的实质。",
    "深度学习模型需要大量的数据进行训练，例如 GPT、BERT 和 Qwen。",
    "变量名 = 123456789；数组长度为 1024 字节。",
    "混合 English 和中文 with numbers 3.14159 和符号！？",
    "日本語と中文の混在テスト：東京、北京、上海。",
    "emoji in code: print('🚀 launch') # ✅ done",
    "0x1F600 0b1010 1_000_000 3.0e-8 .5 5. 1e+10",
    "αβγ = λx: x² + ∑ᵢ aᵢ  # unicode identifiers",
    "<|im_start|>user\nfix this bug<|im_end|>\n<|im_start|>assistant\n",
    "<|fim_prefix|>def f(x):\n<|fim_suffix|>\n    return y<|fim_middle|>",
    "<|endoftext|>after end of text",
    "   ",
    "\u3000\u3000全角空格开头",
]


def log(msg):
    print(f"make_qwen_reference: {msg}", file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", default=str(ROOT / "models" / NAME))
    ap.add_argument("--gguf", default=str(ROOT / ".deps" / NAME / f"{NAME}.gguf"))
    ap.add_argument("--out", default=str(ROOT / "tests" / "data" / "qwen2.5-coder"))
    args = ap.parse_args()
    model_dir, gguf_path, out = pathlib.Path(args.model_dir), pathlib.Path(args.gguf), pathlib.Path(args.out)
    for p in (model_dir / "config.json", gguf_path):
        if not p.is_file():
            sys.exit(f"make_qwen_reference: {p} is missing (run scripts/get_model.sh {NAME})")

    import torch
    import transformers
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.set_num_threads(2)
    failures, figures = [], {}

    # --- tokenizer: ours (tokenizer.json written by convert.py) vs transformers' GGUF tokenizer.
    ours = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    theirs = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    strings = json.loads((ROOT / "tests" / "data" / "text" / "corpus.json").read_text())["strings"] + EXTRA_STRINGS
    ids, differ = [], 0
    for i, s in enumerate(strings):
        b = theirs(s, add_special_tokens=False)["input_ids"]
        a = ours.encode(s, add_special_tokens=False).ids
        if a != b:
            differ += 1
            if differ <= 5:
                log(f"tokenizer differs on string {i} {s!r}:\n  ours   {a}\n  theirs {b}")
        ids.append(b)
    figures["tokenizer_strings"] = len(strings)
    figures["tokenizer_strings_differing"] = differ
    log(f"tokenizer: {len(strings) - differ}/{len(strings)} strings identical, {sum(map(len, ids))} ids")
    if differ:
        failures.append(f"tokenizer.json differs from transformers' GGUF tokenizer on {differ} strings")

    # --- models: transformers' GGUF loader (reference) and the converted .npy directory.
    t0 = time.time()
    reference = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                     dtype=torch.float32, attn_implementation="eager").eval()
    converted = convert.load_npy_model(model_dir)
    log(f"loaded both models in {time.time() - t0:.0f} s")
    ref_state, conv_state = reference.state_dict(), converted.state_dict()
    if set(ref_state) != set(conv_state):
        failures.append(f"parameter names differ: {sorted(set(ref_state) ^ set(conv_state))[:5]}")
    weight_diff = max(float((ref_state[k] - conv_state[k]).abs().max()) for k in ref_state if k in conv_state)
    figures["max_abs_weight_diff"] = weight_diff
    log(f"max |weight converted - transformers-gguf| = {weight_diff:.3e}")
    if weight_diff != 0.0:
        failures.append(f"dequantised weights differ by {weight_diff:.3e}")

    passage = (out / "passage.txt").read_text()
    pids = ours.encode(passage, add_special_tokens=False).ids

    def logprobs(model):
        with torch.no_grad():
            logits = model(torch.tensor([pids])).logits[0].double()
        return torch.log_softmax(logits, -1)[:-1].gather(-1, torch.tensor(pids[1:])[:, None])[:, 0].numpy()

    lp_ref, lp_conv = logprobs(reference), logprobs(converted)
    lp_diff = float(np.abs(lp_ref - lp_conv).max())
    figures.update(passage_tokens=len(pids), max_abs_logprob_diff=lp_diff,
                   perplexity=float(np.exp(-lp_ref.mean())))
    log(f"passage: {len(pids)} tokens, perplexity {figures['perplexity']:.3f}, "
        f"max |log p converted - transformers-gguf| = {lp_diff:.3e}")
    if not np.all(np.abs(lp_ref - lp_conv) <= ATOL + RTOL * np.abs(lp_ref)):
        failures.append(f"passage log-probs differ by {lp_diff:.3e} (tolerance {ATOL} + {RTOL} |x|)")

    # --- greedy chat answers with the GGUF's chat template.
    questions = json.loads((out / "chat_questions.json").read_text())
    eos = converted.config.eos_token_id  # <|im_end|>, as the C++ side reads it from config.json
    chats = []
    for i, q in enumerate(questions):
        prompt = theirs.apply_chat_template([{"role": "user", "content": q["question"]}], tokenize=False,
                                            add_generation_prompt=True)
        p = theirs(prompt, add_special_tokens=False)["input_ids"]
        if ours.encode(prompt, add_special_tokens=False).ids != p:
            failures.append(f"chat prompt {i}: tokenizer.json ids differ")
        gen = {}
        for label, model in (("reference", reference), ("converted", converted)):
            with torch.no_grad():
                gen[label] = model.generate(torch.tensor([p]), do_sample=False, max_new_tokens=MAX_NEW_TOKENS,
                                            eos_token_id=eos, pad_token_id=eos)[0, len(p):].tolist()
        if gen["reference"] != gen["converted"]:
            failures.append(f"greedy answer {i} differs: {gen['reference']} vs {gen['converted']}")
        answer = theirs.decode(gen["reference"], skip_special_tokens=True)
        found = any(e in answer.lower() for e in q["expect"])
        log(f"chat {i}: {q['question']!r} -> {answer!r} ({'expected word found' if found else 'NO expected word'})")
        if not found:
            failures.append(f"answer {i} lacks {q['expect']}: {answer!r}")
        chats.append((p, gen["reference"], {"question": q["question"], "prompt": prompt, "answer": answer}))

    for f in failures:
        log(f"FAIL: {f}")
    if failures:
        log("nothing written")
        return 1
    np.save(out / "passage_ids.npy", np.array(pids, dtype=np.int64))
    np.save(out / "passage_logprobs.npy", lp_ref)
    for i, (p, g, _) in enumerate(chats):
        np.save(out / f"chat_{i}_ids.npy", np.array(p, dtype=np.int64))
        np.save(out / f"chat_{i}_greedy.npy", np.array(g, dtype=np.int64))
    (out / "tokenizer_ids.json").write_text(json.dumps(
        {"source": "transformers GGUF tokenizer of " + gguf_path.name, "corpus": "text/corpus.json",
         "extra_strings": EXTRA_STRINGS, "ids": ids}, ensure_ascii=False, separators=(",", ":")) + "\n")
    (out / "reference.json").write_text(json.dumps(
        {**figures, "answers": [c[2] for c in chats], "torch": torch.__version__,
         "transformers": transformers.__version__}, indent=2, ensure_ascii=False) + "\n")
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
