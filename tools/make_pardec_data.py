#!/usr/bin/env python3
"""Synthetic data for the parallel-decoding experiments in the original formats the C++ readers
take (include/crossbatch/pardec/datasets/), built on the templated stories of tools/make_stories.py
(every answer is a span of its story):

  squad_groups.json   SQuAD v1.1: --per-size paragraphs for each group size 1..5 (questions of one
                      story, depends_on kept when its target is kept); the RESULTS.md data set
  hotpot.json         HotpotQA distractor: every question with its own story split into sentences
                      plus one distractor story (multi-context groups)
  quality.jsonl       QuALITY: a story as the article, its questions with 4 options (the gold
                      span and 3 answers of other questions of the same type), gold_label 1-based,
                      difficult = 1 for questions that depend on another
  cmb_clin.json       CMB-Clin schema, long-form answers: the solution is the story's whole
                      sentence that holds the answer
  cmb_exam.json       CMB-Exam schema: the multiple-choice questions, exam_subject = question type

  tools/make_pardec_data.py --out-dir data/pardec [--seed 0] [--per-size 40] [--stories 60]

The same arguments give byte-identical files. Pure standard library.
"""
import argparse
import json
import pathlib
import random
import re
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import make_stories as stories  # noqa: E402


def sentences(text):
    return [s for s in re.split(r"(?<=\.) ", text) if s]


def story_with(rng, prefix, min_questions):
    while True:
        s = stories.full_story(rng, prefix)
        if len(s["qas"]) >= min_questions:
            return s


def cut(story, k):
    qas = story["qas"][:k]
    keep = {q["id"] for q in qas}
    out = []
    for q in qas:
        q = dict(q)
        q["depends_on"] = [d for d in q.get("depends_on", []) if d in keep]
        out.append(q)
    return {"context": story["context"], "qas": out}


def squad_groups(rng, per_size):
    data = []
    for k in range(1, 6):
        for i in range(per_size):
            s = cut(story_with(rng, "g%d-%d" % (k, i), k), k)
            data.append({"title": "story g%d-%d" % (k, i), "paragraphs": [s]})
    return {"version": "1.1", "data": data}


def hotpot(rng, n):
    out = []
    pool = [story_with(rng, "h%d" % i, 1) for i in range(n + 1)]
    for i in range(n):
        s, other = pool[i], pool[(i + 1) % len(pool)]
        for q in s["qas"][:2]:
            title, distractor = "Story %d" % i, "Story %d" % ((i + 1) % len(pool))
            out.append({"_id": q["id"], "question": q["question"], "answer": q["answers"][0]["text"],
                        "type": "bridge" if q.get("depends_on") else "comparison", "level": "easy",
                        "supporting_facts": [[title, 0]],
                        "context": [[title, [(" " if j else "") + t for j, t in enumerate(sentences(s["context"]))]],
                                    [distractor, [(" " if j else "") + t for j, t in
                                                  enumerate(sentences(other["context"]))]]]})
    return out


def choice_questions(rng, s, by_type):
    qs = []
    for q in s["qas"]:
        gold = q["answers"][0]["text"]
        others = sorted({a for a in by_type.get(q.get("question_type", ""), []) if a != gold})
        if len(others) < 3:
            continue
        options = rng.sample(others, 3) + [gold]
        rng.shuffle(options)
        qs.append((q, options, options.index(gold)))
    return qs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", default="data/pardec")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-size", type=int, default=40, help="paragraphs per group size 1..5")
    parser.add_argument("--stories", type=int, default=60, help="stories of the other files")
    args = parser.parse_args()
    out = pathlib.Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)

    def dump(name, obj):
        with open(out / name, "w", encoding="utf-8", newline="\n") as f:
            json.dump(obj, f, ensure_ascii=False)
            f.write("\n")

    dump("squad_groups.json", squad_groups(rng, args.per_size))
    dump("hotpot.json", hotpot(rng, args.stories))

    base = [story_with(rng, "s%d" % i, 3) for i in range(args.stories)]
    by_type = {}
    for s in base:
        for q in s["qas"]:
            by_type.setdefault(q.get("question_type", ""), []).append(q["answers"][0]["text"])
    quality, exam, clin = [], [], []
    for i, s in enumerate(base):
        mc = choice_questions(rng, s, by_type)
        quality.append({"article_id": "s%d" % i, "set_unique_id": "s%d_0" % i, "title": "Story %d" % i,
                        "article": s["context"], "source": "synthetic", "questions": [
                            {"question": q["question"], "question_unique_id": q["id"], "options": opts,
                             "gold_label": gold + 1, "writer_label": gold + 1, "validation": [],
                             "difficult": 1 if q.get("depends_on") else 0}
                            for q, opts, gold in mc]})
        for q, opts, gold in mc:
            exam.append({"id": q["id"], "exam_type": "synthetic", "exam_class": "stories",
                         "exam_subject": q.get("question_type", ""),
                         "question": s["context"] + " " + q["question"], "answer": "ABCD"[gold],
                         "question_type": "single choice", "option": dict(zip("ABCD", opts))})
        pairs = []
        for q in s["qas"]:
            a = q["answers"][0]
            sent = next(t for t in sentences(s["context"]) if a["text"] in t)
            pairs.append({"question": q["question"], "solution": sent})
        clin.append({"id": i, "title": "Story %d" % i, "description": s["context"], "QA_pairs": pairs})
    with open(out / "quality.jsonl", "w", encoding="utf-8", newline="\n") as f:
        for rec in quality:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    dump("cmb_exam.json", exam)
    dump("cmb_clin.json", clin)
    print("wrote %s: squad_groups (%d per size 1..5), hotpot, quality, cmb_exam, cmb_clin (%d stories)"
          % (out, args.per_size, args.stories), file=sys.stderr)


if __name__ == "__main__":
    main()
