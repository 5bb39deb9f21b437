#!/usr/bin/env python3
"""Expected metric values for tests/pardec/test_metrics.cpp, from the Python reference
implementations the parallel-decoding experiments use:

  qa_metrics.json     600 (reply, gold answers) pairs: the first <answer>...</answer> tag
                      (re.search, IGNORECASE | DOTALL), SQuAD v1.1 EM / F1 from the official logic
                      (tools/squad_official_eval.py) max over golds, EM only when the tag was found,
                      lenient = either normalised string contains the other; choice letter = first
                      [A-F] of the reply (re.search).
  bleu.json           600 Chinese and 150 English (reference, prediction) pairs: character-level
                      BLEU-4 by nltk sentence_bleu([list(ref)], list(pred),
                      smoothing_function=SmoothingFunction().method3).
  rouge.json          600 Chinese pairs segmented by jieba (jieba.lcut, stored as the token lists,
                      C++ scores the given segmentation) scored by rouge-score's RougeScorer with a
                      whitespace tokeniser; 300 English pairs scored by RougeScorer's default
                      tokeniser (no stemmer). rouge1 / rouge2 / rougeL precision, recall, F.
                      rouge-chinese (the pltrdy `rouge` fork) is not the reference here: it counts
                      n-grams as sets and its rouge-l is summary-level, so it differs from
                      rouge-score by up to 0.27 F on these pairs; the brief asks for rouge-score's.

Needs: pip install nltk rouge-score jieba (only for making fixtures; CI reads JSON).
Usage: tools/make_pardec_metric_fixtures.py [OUT_DIR]   (default tests/data/pardec)
"""
import json
import pathlib
import random
import re
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import squad_official_eval as official  # noqa: E402

import jieba  # noqa: E402
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu  # noqa: E402
from rouge_score import rouge_scorer  # noqa: E402

SEED = 1212
WORDS = ("the cat sat on a mat while an old dog slept near red barn in 1912 Paris London river "
         "king queen war peace Ohio steam engine 42 percent Nobel prize The Beatles bridge").split()
ZH_PHRASES = ["患者", "男性", "女性", "45岁", "发热", "三天", "咳嗽", "伴有", "胸痛", "呼吸困难", "既往",
              "高血压", "糖尿病", "病史", "查体", "体温", "38.5℃", "血压", "140/90mmHg", "心率",
              "诊断", "考虑", "肺炎", "建议", "完善", "胸部CT", "血常规", "检查", "治疗", "给予",
              "抗生素", "头孢", "静脉滴注", "观察", "病情变化", "，", "。", "；", "、", "及时", "复查"]


def tag_extract(reply):
    m = re.search(r"<answer>(.*?)</answer>", reply, re.IGNORECASE | re.DOTALL)
    if m:
        return m.group(1).strip(), True
    return reply.strip(), False


def qa_pairs(rng):
    out = []
    for i in range(600):
        gold = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))
        golds = [gold] + [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3)))
                          for _ in range(rng.randint(0, 2))]
        kind = i % 6
        if kind == 0:
            pred = gold
        elif kind == 1:
            pred = gold.upper() + "."
        elif kind == 2:
            pred = "It was " + gold + " indeed"
        elif kind == 3:
            pred = " ".join(gold.split()[: max(1, len(gold.split()) - 1)])
        elif kind == 4:
            pred = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 3)))
        else:
            pred = gold + " " + rng.choice(WORDS)
        wrap = rng.randint(0, 5)
        if wrap == 0:
            reply = pred
        elif wrap == 1:
            reply = f"<answer>{pred}</answer>"
        elif wrap == 2:
            reply = f"Sure.\n<ANSWER> {pred}\n</Answer> and <answer>other</answer>"
        elif wrap == 3:
            reply = f"Answer: {rng.choice('ABCDEFGH')} <answer>{pred}</answer>"
        elif wrap == 4:
            reply = f"<answer>{pred}"  # unclosed: no tag
        else:
            reply = f"({rng.choice('abcdefABCDEF')}) {pred}"
        text, found = tag_extract(reply)
        em = max(official.exact_match_score(text, g) for g in golds)
        f1 = max(official.f1_score(text, g) for g in golds)
        np_ = official.normalize_answer(text)
        len_ = 0.0
        for g in golds:
            ng = official.normalize_answer(g)
            if (np_ and ng and (ng in np_ or np_ in ng)) or (not np_ and not ng):
                len_ = 1.0
        letter = re.search(r"[A-F]", reply)
        out.append({"reply": reply, "golds": golds, "text": text, "found": found,
                    "exact_match": float(em) if found else 0.0, "f1": f1, "lenient": len_,
                    "choice": letter.group(0) if letter else ""})
    return out


def zh_text(rng, n):
    return "".join(rng.choice(ZH_PHRASES) for _ in range(n))


def zh_pair(rng):
    ref = zh_text(rng, rng.randint(3, 25))
    mode = rng.randint(0, 4)
    if mode == 0:
        pred = ref
    elif mode == 1:
        pred = zh_text(rng, rng.randint(0, 20))
    elif mode == 2:  # edit some phrases
        parts = list(jieba.lcut(ref))
        for _ in range(rng.randint(1, 4)):
            if parts:
                parts[rng.randrange(len(parts))] = rng.choice(ZH_PHRASES)
        pred = "".join(parts)
    elif mode == 3:
        pred = ref[: rng.randint(0, len(ref))]
    else:
        pred = ref + zh_text(rng, rng.randint(1, 6))
    return ref, pred


def en_pair(rng):
    ref = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 15)))
    mode = rng.randint(0, 3)
    if mode == 0:
        pred = ref.upper()
    elif mode == 1:
        pred = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 12)))
    elif mode == 2:
        w = ref.split()
        rng.shuffle(w)
        pred = ", ".join(w) + "!"
    else:
        pred = ref[: rng.randint(0, len(ref))]
    return ref, pred


class WhitespaceTokenizer:
    def tokenize(self, text):
        return text.split()


def main():
    out_dir = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data/pardec")
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    jieba.setLogLevel(60)

    qa = qa_pairs(rng)
    (out_dir / "qa_metrics.json").write_text(json.dumps(qa, ensure_ascii=False, separators=(",", ":")) + "\n")

    smooth = SmoothingFunction().method3
    bleu = []
    for i in range(750):
        ref, pred = zh_pair(rng) if i < 600 else en_pair(rng)
        score = sentence_bleu([list(ref)], list(pred), smoothing_function=smooth) if ref else 0.0
        bleu.append({"reference": ref, "prediction": pred, "bleu4": float(score)})
    (out_dir / "bleu.json").write_text(json.dumps(bleu, ensure_ascii=False, separators=(",", ":")) + "\n")

    types = ["rouge1", "rouge2", "rougeL"]
    ws = rouge_scorer.RougeScorer(types, tokenizer=WhitespaceTokenizer())
    default = rouge_scorer.RougeScorer(types)
    rouge = []
    for i in range(900):
        if i < 600:
            ref, pred = zh_pair(rng)
            ref_seg, pred_seg = " ".join(jieba.lcut(ref)), " ".join(jieba.lcut(pred))
            s = ws.score(ref_seg, pred_seg)
            entry = {"lang": "zh", "reference": ref, "prediction": pred,
                     "reference_segmented": ref_seg, "prediction_segmented": pred_seg}
        else:
            ref, pred = en_pair(rng)
            s = default.score(ref, pred)
            entry = {"lang": "en", "reference": ref, "prediction": pred}
        for t in types:
            entry[t] = [s[t].precision, s[t].recall, s[t].fmeasure]
        rouge.append(entry)
    (out_dir / "rouge.json").write_text(json.dumps(rouge, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"wrote {len(qa)} QA, {len(bleu)} BLEU, {len(rouge)} ROUGE pairs to {out_dir}")


if __name__ == "__main__":
    main()
