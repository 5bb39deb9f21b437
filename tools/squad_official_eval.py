#!/usr/bin/env python3
"""The logic of the official SQuAD evaluation scripts (v1.1 `evaluate-v1.1.py`, and the per-question
scoring of v2.0 `evaluate-v2.0.py`), written out here to produce the expected numbers that the C++
metrics in include/crossbatch/eval/ are tested against (tests/data/eval/squad_metric_*).

Usage:
  tools/squad_official_eval.py DATASET.json PREDICTIONS.json            # prints {"exact_match", "f1"}
  tools/squad_official_eval.py DATASET.json PREDICTIONS.json --v2       # v2.0 rules
  tools/squad_official_eval.py DATASET.json PREDICTIONS.json --per-question OUT.json
      also writes per-question scores: {"rules", "exact_match", "f1", "total",
      "questions": {qid: {"exact_match": 0|1, "f1": float}}}

Unanswered questions score 0 under both rules (v1.1 behaviour; the v2.0 script would drop them
from the total and then fail on its HasAns/NoAns breakdown).

The results depend on the Python version's Unicode tables (str.lower, str.split, the \\b of `re`):
include/crossbatch/eval/unicode_tables.hpp is generated from the same Python by
tools/squad_unicode_tables.py.
"""
import argparse
import collections
import json
import re
import string
import sys


# ---- v1.1: normalize_answer, f1_score, exact_match_score, metric_max_over_ground_truths, evaluate.
def normalize_answer(s):
    """Lower text and remove punctuation, articles and extra whitespace."""

    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def f1_score(prediction, ground_truth):
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def exact_match_score(prediction, ground_truth):
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    scores_for_ground_truths = []
    for ground_truth in ground_truths:
        score = metric_fn(prediction, ground_truth)
        scores_for_ground_truths.append(score)
    return max(scores_for_ground_truths)


def evaluate(dataset, predictions, per_question=None):
    f1 = exact_match = total = 0
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                total += 1
                if qa["id"] not in predictions:
                    message = "Unanswered question " + qa["id"] + " will receive score 0."
                    print(message, file=sys.stderr)
                    if per_question is not None:
                        per_question[qa["id"]] = {"exact_match": 0, "f1": 0.0}
                    continue
                ground_truths = list(map(lambda x: x["text"], qa["answers"]))
                prediction = predictions[qa["id"]]
                em = metric_max_over_ground_truths(exact_match_score, prediction, ground_truths)
                f = metric_max_over_ground_truths(f1_score, prediction, ground_truths)
                exact_match += em
                f1 += f
                if per_question is not None:
                    per_question[qa["id"]] = {"exact_match": int(em), "f1": float(f)}

    exact_match = 100.0 * exact_match / total
    f1 = 100.0 * f1 / total

    return {"exact_match": exact_match, "f1": f1}


# ---- v2.0: get_tokens, compute_exact, compute_f1 and the loop of get_raw_scores.
def get_tokens(s):
    if not s:
        return []
    return normalize_answer(s).split()


def compute_exact(a_gold, a_pred):
    return int(normalize_answer(a_gold) == normalize_answer(a_pred))


def compute_f1(a_gold, a_pred):
    gold_toks = get_tokens(a_gold)
    pred_toks = get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        # If either is no-answer, then F1 is 1 if they agree, 0 otherwise
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def evaluate_v2(dataset, predictions, per_question=None):
    exact_sum = f1_sum = total = 0
    for article in dataset:
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                qid = qa["id"]
                total += 1
                gold_answers = [a["text"] for a in qa["answers"] if normalize_answer(a["text"])]
                if not gold_answers:
                    # For unanswerable questions, only correct answer is empty string
                    gold_answers = [""]
                if qid not in predictions:
                    print("Missing prediction for %s" % qid, file=sys.stderr)
                    if per_question is not None:
                        per_question[qid] = {"exact_match": 0, "f1": 0.0}
                    continue
                a_pred = predictions[qid]
                em = max(compute_exact(a, a_pred) for a in gold_answers)
                f = max(compute_f1(a, a_pred) for a in gold_answers)
                exact_sum += em
                f1_sum += f
                if per_question is not None:
                    per_question[qid] = {"exact_match": int(em), "f1": float(f)}
    return {"exact_match": 100.0 * exact_sum / total, "f1": 100.0 * f1_sum / total}


def main():
    parser = argparse.ArgumentParser(description="Evaluation for SQuAD 1.1 (or 2.0 with --v2)")
    parser.add_argument("dataset_file", help="Dataset file")
    parser.add_argument("prediction_file", help="Prediction File")
    parser.add_argument("--v2", action="store_true", help="score with the SQuAD 2.0 rules")
    parser.add_argument("--per-question", metavar="OUT", help="write per-question scores here")
    args = parser.parse_args()
    with open(args.dataset_file, encoding="utf-8") as dataset_file:
        dataset_json = json.load(dataset_file)
        expected_version = "2.0" if args.v2 else "1.1"
        if dataset_json.get("version") != expected_version:
            print("Evaluation expects v-" + expected_version + ", but got dataset with v-" +
                  str(dataset_json.get("version")), file=sys.stderr)
        dataset = dataset_json["data"]
    with open(args.prediction_file, encoding="utf-8") as prediction_file:
        predictions = json.load(prediction_file)
    per_question = {} if args.per_question else None
    result = (evaluate_v2 if args.v2 else evaluate)(dataset, predictions, per_question)
    print(json.dumps(result))
    if args.per_question:
        total = sum(len(p["qas"]) for a in dataset for p in a["paragraphs"])
        out = {"rules": "v2.0" if args.v2 else "v1.1", "exact_match": result["exact_match"],
               "f1": result["f1"], "total": total, "questions": per_question}
        with open(args.per_question, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1, ensure_ascii=False, sort_keys=True)
            f.write("\n")


if __name__ == "__main__":
    main()
