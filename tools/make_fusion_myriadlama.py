#!/usr/bin/env python3
"""Converts MyriadLAMA parquet files into the JSONL directory eval/paraphrase_data.hpp reads
(facts.jsonl + templates.jsonl, the fields of tools/make_fusion_data.py).

MyriadLAMA ships facts (one row per subject-relation-object: uuid, rel_uri, sub_uri, sub_ent,
obj_uri, obj_ent; entity fields are a label or a list of labels/aliases) and templates (one row per
template: rel_uri, template, and whether it is manual or automatically generated). Column names
vary between releases, so every field is looked up among a few names (--facts-columns /
--templates-columns override them: field=column,...). Splits: a column `split` when there is one,
else --train facts per relation for the few-shot pool and a --validation share, seeded.
  pip install pandas pyarrow
  python3 tools/make_fusion_myriadlama.py --facts facts.parquet --templates templates.parquet \\
      --out data/myriadlama
"""
import argparse
import json
import os
import random
import sys

FACT_FIELDS = {"uuid": ["uuid", "id", "lineid"], "rel_uri": ["rel_uri", "predicate_id", "relation"],
               "sub_uri": ["sub_uri"], "sub_ent": ["sub_ent", "sub_label", "sub_labels", "sub_aliases"],
               "obj_uri": ["obj_uri"], "obj_ent": ["obj_ent", "obj_label", "obj_labels", "obj_aliases"]}
TEMPLATE_FIELDS = {"rel_uri": ["rel_uri", "predicate_id", "relation"],
                   "template": ["template", "prompt", "pattern"],
                   "kind": ["type", "source", "kind", "is_manual", "manual"]}


def fail(msg):
    sys.exit(f"make_fusion_myriadlama: {msg}")


def columns(df, fields, override, path, optional=()):
    found = {}
    for f, names in fields.items():
        names = [override[f]] if f in override else names
        hit = next((n for n in names if n in df.columns), None)
        if hit is None and f not in optional:
            fail(f"{path}: no column for '{f}' (tried {names}; columns: {list(df.columns)})")
        found[f] = hit
    return found


def labels(v, where, field):
    if v is None:
        fail(f"{where}: '{field}' is empty")
    if isinstance(v, str):
        v = [v]
    v = [str(x) for x in list(v) if str(x).strip()]
    if not v:
        fail(f"{where}: '{field}' holds no label")
    return v


def is_manual(v):
    if isinstance(v, (bool, int)):
        return bool(v)
    return str(v).lower() in ("manual", "man", "true", "1", "human")


def parse_override(s):
    out = {}
    for part in filter(None, (s or "").split(",")):
        k, _, v = part.partition("=")
        out[k] = v
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--facts", required=True)
    ap.add_argument("--templates", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--facts-columns", default="")
    ap.add_argument("--templates-columns", default="")
    ap.add_argument("--train", type=int, default=4)
    ap.add_argument("--validation", type=float, default=0.33)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    import pandas as pd
    facts = pd.read_parquet(args.facts)
    tmpl = pd.read_parquet(args.templates)
    fc = columns(facts, FACT_FIELDS, parse_override(args.facts_columns), args.facts, ("sub_uri", "obj_uri"))
    tc = columns(tmpl, TEMPLATE_FIELDS, parse_override(args.templates_columns), args.templates, ("kind",))
    rel = {}
    for i, row in enumerate(tmpl.to_dict("records")):
        where = f"{args.templates} row {i}"
        t = str(row[tc["template"]])
        if t.count("[X]") != 1 or t.count("[Y]") != 1:
            fail(f"{where}: template '{t}' needs one [X] and one [Y]")
        r = rel.setdefault(str(row[tc["rel_uri"]]), {"manual": [], "auto": []})
        manual = is_manual(row[tc["kind"]]) if tc["kind"] else True
        r["manual" if manual else "auto"].append(t)
    rows = []
    for i, row in enumerate(facts.to_dict("records")):
        where = f"{args.facts} row {i}"
        x = {"uuid": str(row[fc["uuid"]]), "rel_uri": str(row[fc["rel_uri"]]),
             "sub_uri": str(row[fc["sub_uri"]]) if fc["sub_uri"] else "",
             "sub_ent": labels(row[fc["sub_ent"]], where, "sub_ent"),
             "obj_uri": str(row[fc["obj_uri"]]) if fc["obj_uri"] else "",
             "obj_ent": labels(row[fc["obj_ent"]], where, "obj_ent")}
        if x["rel_uri"] not in rel:
            fail(f"{where}: relation '{x['rel_uri']}' has no templates in {args.templates}")
        if "split" in facts.columns:
            x["split"] = str(row["split"])
        rows.append(x)
    if "split" not in facts.columns:
        rng = random.Random(args.seed)
        by_rel = {}
        for x in rows:
            by_rel.setdefault(x["rel_uri"], []).append(x)
        for group in by_rel.values():
            rng.shuffle(group)
            n_val = int((len(group) - args.train) * args.validation)
            for j, x in enumerate(group):
                x["split"] = "train" if j < args.train else "validation" if j < args.train + n_val else "test"
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "facts.jsonl"), "w") as f:
        for x in rows:
            if not x["sub_uri"]:
                x.pop("sub_uri")
            if not x["obj_uri"]:
                x.pop("obj_uri")
            f.write(json.dumps(x, ensure_ascii=False) + "\n")
    with open(os.path.join(args.out, "templates.jsonl"), "w") as f:
        for k, v in sorted(rel.items()):
            if not v["manual"]:
                v["manual"], v["auto"] = v["auto"][:1], v["auto"][1:]
            f.write(json.dumps({"rel_uri": k, "manual": v["manual"], "auto": v["auto"]}, ensure_ascii=False) + "\n")
    print(f"{len(rows)} facts, {len(rel)} relations -> {args.out}")


if __name__ == "__main__":
    main()
