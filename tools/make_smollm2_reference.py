#!/usr/bin/env python3
"""Reference outputs of transformers on the converted default model (models/smollm2-135m-instruct,
made by scripts/get_default_model.sh), written to tests/data/smollm2/ for the C++ quality tests:
  passage_ids.npy        token ids of passage.txt (tokenizers library, no special tokens)
  passage_logprobs.npy   float64 log p(token t+1 | tokens <= t) from transformers, float32 eager
  chat_<i>_ids.npy       chat-templated prompt ids of chat_questions.json[i]
  chat_<i>_greedy.npy    transformers' greedy continuation (24 tokens, EOS allowed)
  reference.json         perplexity and the decoded answers, for humans
Needs torch + transformers (pip install torch transformers)."""
import json
import pathlib
import sys

import numpy as np
import torch
from tokenizers import Tokenizer

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from convert import load_npy_model  # noqa: E402

model_dir = ROOT / "models" / "smollm2-135m-instruct"
out = ROOT / "tests" / "data" / "smollm2"
tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
model = load_npy_model(model_dir)

passage = (out / "passage.txt").read_text().strip()
ids = tok.encode(passage, add_special_tokens=False).ids
np.save(out / "passage_ids.npy", np.array(ids, dtype=np.int64))
with torch.no_grad():
    logits = model(torch.tensor([ids])).logits[0].double()
logprobs = torch.log_softmax(logits, -1)[:-1].gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]
np.save(out / "passage_logprobs.npy", logprobs.numpy())
ppl = float(torch.exp(-logprobs.mean()))

system = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
answers = []
for i, q in enumerate(json.loads((out / "chat_questions.json").read_text())):
    text = (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{q['question']}<|im_end|>\n"
            "<|im_start|>assistant\n")
    p = tok.encode(text, add_special_tokens=False).ids
    with torch.no_grad():
        g = model.generate(torch.tensor([p]), do_sample=False, max_new_tokens=24, eos_token_id=2, pad_token_id=2)[0, len(p):]
    np.save(out / f"chat_{i}_ids.npy", np.array(p, dtype=np.int64))
    np.save(out / f"chat_{i}_greedy.npy", g.numpy().astype(np.int64))
    answers.append({"question": q["question"], "answer": tok.decode(g.tolist())})
(out / "reference.json").write_text(json.dumps({"passage_tokens": len(ids), "perplexity": ppl, "answers": answers,
                                                "torch": torch.__version__}, indent=2) + "\n")
print(json.dumps({"perplexity": ppl, "answers": answers}, indent=2))
