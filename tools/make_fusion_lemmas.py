#!/usr/bin/env python3
"""The lemma data of paraphrase fusion's metric and its spaCy fixture (tests/data/fusion/):

  en_lemma_lookup.tsv          spaCy's English lookup table (PyPI spacy-lookups-data,
                               en_lemma_lookup.json: WordNet-derived, see en_lemma_license.txt),
                               one "text<TAB>lemma" per line
  en_tokenizer_exceptions.tsv  spaCy's English tokenizer exceptions (spacy.blank("en")
                               .tokenizer.rules): "text<TAB>token<TAB>token..." (whitespace keys
                               left out: the C++ tokenizer splits on whitespace first)
  lemma_pairs.jsonl            >= 500 prediction/answers pairs with spaCy's tokens, lemmas and
                               the lemma-containment verdict: prediction variants built from the
                               data set's answers (case, punctuation, sentences, contractions,
                               plurals, hyphens, wrong answers) plus, with --predictions, real
                               model outputs from examples/paraphrase_fusion JSON results (a
                               --json file or run_experiment.sh's / fusion.sh's JSON)

Lemmas are spaCy's lookup lemmatizer (spacy.blank("en") + the "lemmatizer" pipe in lookup mode,
no trained pipeline to download), lower-cased; whitespace tokens are dropped.
  pip install spacy spacy-lookups-data
  python3 tools/make_fusion_lemmas.py [--predictions results.json ...]
"""
import argparse
import gzip
import json
import os
import random

import spacy
import spacy_lookups_data

ORTH = 65


def make_nlp():
    nlp = spacy.blank("en")
    nlp.add_pipe("lemmatizer", config={"mode": "lookup"})
    nlp.initialize()
    return nlp


def lemmas(nlp, text):
    doc = nlp(text)
    return [t.text for t in doc if not t.is_space], [t.lemma_.lower() for t in doc if not t.is_space]


def contained(pred, answers):
    for a in answers:
        if a and any(pred[i:i + len(a)] == a for i in range(len(pred) - len(a) + 1)):
            return True
    return False


def variants(answer, other, rng):
    a = answer
    forms = [a, a.lower(), a.upper(), a.capitalize(), a + ".", a + ",", " " + a + " ", a + "!",
             f"The answer is {a}.", f"It is {a}.", f"It's {a}, isn't it?", f"{a}'s", f"({a})",
             f'"{a}"', f"'{a}'", a + "s", a + "es", f"{a}-based", f"{a}...", f"{a}?", f"I think {a}",
             f"{a} and {other}", other, other + ".", f"I don't know.", f"[MASK] = {a}",
             f"{a}/{other}", f"{a}\u2019s", f"\u201c{a}\u201d", f"{a}: {other}", f"Not {a}.",
             f"The {a.lower()}s were there.", f"{a} is the capital.", f"{a} U.S. dollars",
             f"{a} (approx.)", f"A: {a}", f"{a.lower()} ({other.lower()})", f"{a}--{other}",
             f"mid-{a.lower()}", f"{a}, {other}", f"They're in {a}.", f"We'll see {a}!",
             f"{other} {a}"]
    rng.shuffle(forms)
    return forms[:8]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/data/fusion")
    ap.add_argument("--facts", default="examples/paraphrase_fusion/data/facts/facts.jsonl")
    ap.add_argument("--predictions", nargs="*", default=[], help="JSON results of paraphrase_fusion")
    ap.add_argument("--pairs", type=int, default=700)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    data = os.path.join(os.path.dirname(spacy_lookups_data.__file__), "data")
    table = json.load(gzip.open(os.path.join(data, "en_lemma_lookup.json.gz"), "rt", encoding="utf8"))
    with open(os.path.join(args.out, "en_lemma_lookup.tsv"), "w", encoding="utf8") as f:
        for k, v in sorted(table.items()):
            if "\t" in k or "\n" in k or "\t" in v or "\n" in v:
                continue
            f.write(f"{k}\t{v}\n")
    with open(os.path.join(data, "en_license.txt"), encoding="utf8") as src, \
            open(os.path.join(args.out, "en_lemma_license.txt"), "w", encoding="utf8") as dst:
        dst.write("en_lemma_lookup.tsv: from spacy-lookups-data " + spacy_lookups_data.__version__ +
                  " (en_lemma_lookup.json), under this license:\n\n" + src.read())
    facts = [json.loads(l) for l in open(args.facts, encoding="utf8")]
    nlp = make_nlp()
    with open(os.path.join(args.out, "en_tokenizer_exceptions.tsv"), "w", encoding="utf8") as f:
        for k, v in sorted(nlp.tokenizer.rules.items()):
            if any(c.isspace() for c in k):
                continue
            f.write("\t".join([k] + [t[ORTH] for t in v]) + "\n")

    rng = random.Random(args.seed)
    pairs = []
    answers_of = {x["uuid"]: x["obj_ent"] for x in facts}
    for path in args.predictions:
        r = json.load(open(path, encoding="utf8"))
        runs = [r] if "records" in r else [r["test"]] + list(r.get("validation", {}).values())
        for run in runs:
            for rec in run["records"]:
                a = rec.get("answers") or answers_of.get(rec["uuid"])
                if a:
                    pairs.append((rec["prediction"], a))
    objects = [x["obj_ent"][0] for x in facts]
    unique = {(p, tuple(a)) for p, a in pairs}
    while len(unique) < args.pairs:
        fact = rng.choice(facts)
        other = rng.choice(objects)
        for p in variants(rng.choice(fact["obj_ent"]), other, rng):
            pairs.append((p, fact["obj_ent"]))
            unique.add((p, tuple(fact["obj_ent"])))
    seen, out = set(), []
    for p, answers in pairs:
        key = (p, tuple(answers))
        if key in seen:
            continue
        seen.add(key)
        toks, lem = lemmas(nlp, p)
        alem = [lemmas(nlp, a)[1] for a in answers]
        out.append({"prediction": p, "answers": answers, "prediction_tokens": toks,
                    "prediction_lemmas": lem, "answer_lemmas": alem, "correct": contained(lem, alem)})
    with open(os.path.join(args.out, "lemma_pairs.jsonl"), "w", encoding="utf8") as f:
        for x in out:
            f.write(json.dumps(x, ensure_ascii=False) + "\n")
    print(f"{len(table)} lookup entries, {len(nlp.tokenizer.rules)} exceptions, {len(out)} pairs "
          f"({sum(x['correct'] for x in out)} correct) -> {args.out} (spaCy {spacy.__version__})")


if __name__ == "__main__":
    main()
