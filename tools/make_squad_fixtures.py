#!/usr/bin/env python3
"""Writes the expected numbers of the SQuAD metric tests (tests/eval/test_squad_metrics.cpp) with
the official scoring logic in tools/squad_official_eval.py. The data sets and predictions under
tests/data/eval/ are hand-written; this only scores them:

  squad_metric_expected_v1.json     squad_metric_{dataset,predictions}.json, v1.1 rules
  squad_metric_expected_as_v2.json  the same files, v2.0 rules
  squad_v2_expected.json            squad_v2_{dataset,predictions}.json, v2.0 rules
  normalize_cases.json              [input, normalize_answer(input)] for every answer and
                                    prediction above plus extra strings
  normalize_sweep.json              FNV-1a 64 of normalize_answer over every code point, in blocks

Usage: tools/make_squad_fixtures.py [DIR]   (default tests/data/eval)
"""
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import squad_official_eval as official  # noqa: E402

EXTRA_CASES = [
    "", " ", "The", "a an the", "The Cat", "theatre", "Anthem", "an-apple", "a.b.c", "_a_",
    "a\u00e9", "\u00e9a", "the\u0301", "\u0130", "\u0130I", "\u03a3", "A\u03a3", "A\u03a3B",
    "A\u03a3\u0301", "A\u0301\u03a3", "\u03a3A", "\u1f88", "\u01c5", "\u2160", "\u2170the",
    "\U00010400\U00010428", "tab\there", "line\r\nbreak", "x\u2028y", "x\u200by", "x\u180ey",
    "\ufeffthe", "caf\u00e9 au lait", "THE END.", "  lots   of    space  ", "the the the",
    "$1,000.00", "\"quoted\"", "(parenthesised)", "[the] {an} <a>", "\u00bfQu\u00e9?", "\u00a1S\u00ed!",
]


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def sweep_piece(c):
    # Exercises lower-casing of c, c as a word character next to "a", and c on both sides of a
    # capital sigma (Final_Sigma context).
    s = chr(c)
    return "a" + s + "\u03a3 A\u03a3" + s + "B "


def sweep(block):
    out = {}
    for start in range(0, 0x110000, block):
        text = "".join(sweep_piece(c) for c in range(start, start + block)
                       if not 0xD800 <= c <= 0xDFFF)
        if text:
            out["%06X" % start] = fnv1a64(official.normalize_answer(text).encode("utf-8"))
    return out


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def dump(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1, sort_keys=True)
        f.write("\n")


def score(dataset, predictions, v2):
    per_question = {}
    fn = official.evaluate_v2 if v2 else official.evaluate
    result = fn(dataset["data"], predictions, per_question)
    total = sum(len(p["qas"]) for a in dataset["data"] for p in a["paragraphs"])
    return {"rules": "v2.0" if v2 else "v1.1", "exact_match": result["exact_match"],
            "f1": result["f1"], "total": total, "questions": per_question}


def main():
    d = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data/eval")
    v1_data, v1_preds = load(d / "squad_metric_dataset.json"), load(d / "squad_metric_predictions.json")
    v2_data, v2_preds = load(d / "squad_v2_dataset.json"), load(d / "squad_v2_predictions.json")
    dump(d / "squad_metric_expected_v1.json", score(v1_data, v1_preds, v2=False))
    dump(d / "squad_metric_expected_as_v2.json", score(v1_data, v1_preds, v2=True))
    dump(d / "squad_v2_expected.json", score(v2_data, v2_preds, v2=True))

    inputs = []
    for data, preds in ((v1_data, v1_preds), (v2_data, v2_preds)):
        for article in data["data"]:
            for p in article["paragraphs"]:
                for qa in p["qas"]:
                    inputs += [a["text"] for a in qa["answers"]]
        inputs += list(preds.values())
    inputs += EXTRA_CASES
    seen, cases = set(), []
    for s in inputs:
        if s not in seen:
            seen.add(s)
            cases.append([s, official.normalize_answer(s)])
    dump(d / "normalize_cases.json", cases)
    dump(d / "normalize_sweep.json", {"block": 4096, "python": sys.version.split()[0],
                                      "piece": "a{c}\u03a3 A\u03a3{c}B ", "hashes": sweep(4096)})


if __name__ == "__main__":
    main()
