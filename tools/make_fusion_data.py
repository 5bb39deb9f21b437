#!/usr/bin/env python3
"""MyriadLAMA-style data the default model (SmolLM2-135M-Instruct) can answer, for
examples/paraphrase_fusion: a hand-checked table of well-known facts (capitals, continents,
official languages, currencies, the country of a city), each relation with at least five manual
paraphrased templates and a few "auto" ones, every answer one word. Writes, in MyriadLAMA's
fields (tools/make_fusion_myriadlama.py converts the real parquet files to the same form):

  <out>/facts.jsonl      {"uuid", "rel_uri", "sub_uri", "sub_ent": [labels], "obj_uri",
                          "obj_ent": [label, aliases...], "split": train|validation|test}
  <out>/templates.jsonl  {"rel_uri", "name", "manual": [...], "auto": [...]}  ([X] subject, [Y]
                          object; the question replaces [Y] by [MASK])

The split is per relation with a fixed seed: 4 training facts (the few-shot pool), then about a
third validation and the rest test.
  python3 tools/make_fusion_data.py --out examples/paraphrase_fusion/data/facts
"""
import argparse
import json
import os
import random
import uuid

RELATIONS = {
    "P36": {
        "name": "capital",
        "manual": ["The capital of [X] is [Y].", "[X]'s capital is [Y].",
                   "[Y] is the capital of [X].", "The capital city of [X] is [Y].",
                   "[X] has its capital in [Y].", "The seat of government of [X] is [Y]."],
        "auto": ["[Y] serves as the capital of [X].", "In [X], the capital is [Y].",
                 "[X]'s capital city is called [Y]."],
        # (subject, object, object aliases)
        "facts": [("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"),
                  ("Spain", "Madrid"), ("Portugal", "Lisbon"), ("Japan", "Tokyo"),
                  ("China", "Beijing", "Peking"), ("Russia", "Moscow"), ("Egypt", "Cairo"),
                  ("Greece", "Athens"), ("Austria", "Vienna"), ("Norway", "Oslo"),
                  ("Sweden", "Stockholm"), ("Finland", "Helsinki"), ("Denmark", "Copenhagen"),
                  ("Poland", "Warsaw"), ("Hungary", "Budapest"), ("Ireland", "Dublin"),
                  ("Belgium", "Brussels"), ("the Netherlands", "Amsterdam"),
                  ("the Czech Republic", "Prague"), ("Turkey", "Ankara"), ("Iran", "Tehran"),
                  ("Iraq", "Baghdad"), ("Thailand", "Bangkok"), ("Kenya", "Nairobi"),
                  ("Peru", "Lima"), ("Chile", "Santiago"), ("Cuba", "Havana"),
                  ("Canada", "Ottawa"), ("Australia", "Canberra"), ("Indonesia", "Jakarta"),
                  ("the Philippines", "Manila"), ("Vietnam", "Hanoi"), ("South Korea", "Seoul"),
                  ("Ukraine", "Kyiv", "Kiev"), ("Romania", "Bucharest"), ("Bulgaria", "Sofia"),
                  ("Serbia", "Belgrade"), ("Croatia", "Zagreb"), ("Switzerland", "Bern", "Berne"),
                  ("the United Kingdom", "London"), ("Syria", "Damascus"),
                  ("Lebanon", "Beirut"), ("Jordan", "Amman"), ("Nigeria", "Abuja"),
                  ("Morocco", "Rabat"), ("Venezuela", "Caracas"), ("Pakistan", "Islamabad"),
                  ("Afghanistan", "Kabul"), ("Nepal", "Kathmandu")],
    },
    "P30": {
        "name": "continent",
        "manual": ["[X] is located in [Y].", "[X] is a country in [Y].",
                   "The continent of [X] is [Y].", "[X] lies on the continent of [Y].",
                   "[X] is part of [Y]."],
        "auto": ["[X] can be found in [Y].", "The country [X] is situated in [Y].",
                 "[X] belongs to the continent of [Y]."],
        "facts": [("France", "Europe"), ("Germany", "Europe"), ("Japan", "Asia"),
                  ("China", "Asia"), ("India", "Asia"), ("Kenya", "Africa"),
                  ("Egypt", "Africa"), ("Nigeria", "Africa"), ("Ghana", "Africa"),
                  ("Morocco", "Africa"), ("Ethiopia", "Africa"), ("Thailand", "Asia"),
                  ("Vietnam", "Asia"), ("Nepal", "Asia"), ("Mongolia", "Asia"),
                  ("Poland", "Europe"), ("Sweden", "Europe"), ("Norway", "Europe"),
                  ("Spain", "Europe"), ("Italy", "Europe"), ("Greece", "Europe"),
                  ("Ireland", "Europe"), ("Portugal", "Europe"), ("Senegal", "Africa"),
                  ("Uganda", "Africa"), ("Tanzania", "Africa"), ("Zambia", "Africa"),
                  ("Pakistan", "Asia"), ("Indonesia", "Asia"), ("the Philippines", "Asia"),
                  ("Malaysia", "Asia"), ("Fiji", "Oceania"), ("Samoa", "Oceania"),
                  ("New Zealand", "Oceania"), ("Finland", "Europe"), ("Austria", "Europe"),
                  ("Cambodia", "Asia"), ("Laos", "Asia"), ("Sudan", "Africa"),
                  ("Angola", "Africa"), ("Algeria", "Africa"), ("Tunisia", "Africa")],
    },
    "P37": {
        "name": "official language",
        "manual": ["The official language of [X] is [Y].", "In [X], people speak [Y].",
                   "The main language spoken in [X] is [Y].", "[X]'s official language is [Y].",
                   "People in [X] mostly speak [Y]."],
        "auto": ["The language of [X] is [Y].", "[Y] is the language spoken in [X].",
                 "Most people in [X] speak [Y]."],
        "facts": [("France", "French"), ("Germany", "German"), ("Italy", "Italian"),
                  ("Spain", "Spanish"), ("Portugal", "Portuguese"), ("Brazil", "Portuguese"),
                  ("Mexico", "Spanish"), ("Japan", "Japanese"), ("China", "Chinese", "Mandarin"),
                  ("Russia", "Russian"), ("Greece", "Greek"), ("Poland", "Polish"),
                  ("the Netherlands", "Dutch"), ("Sweden", "Swedish"), ("Norway", "Norwegian"),
                  ("Finland", "Finnish"), ("Denmark", "Danish"), ("Hungary", "Hungarian"),
                  ("Turkey", "Turkish"), ("Iran", "Persian", "Farsi"), ("Thailand", "Thai"),
                  ("Vietnam", "Vietnamese"), ("South Korea", "Korean"), ("Israel", "Hebrew"),
                  ("Argentina", "Spanish"), ("Austria", "German"), ("Ukraine", "Ukrainian"),
                  ("Romania", "Romanian"), ("the Czech Republic", "Czech"),
                  ("Indonesia", "Indonesian"), ("Egypt", "Arabic"), ("Saudi Arabia", "Arabic"),
                  ("Peru", "Spanish"), ("Chile", "Spanish"), ("Colombia", "Spanish"),
                  ("Bulgaria", "Bulgarian"), ("Croatia", "Croatian"), ("Serbia", "Serbian")],
    },
    "P38": {
        "name": "currency",
        "manual": ["The currency of [X] is the [Y].", "In [X], people pay with the [Y].",
                   "[X] uses the [Y] as its currency.", "The official currency of [X] is the [Y].",
                   "The money of [X] is called the [Y]."],
        "auto": ["The [Y] is the currency of [X].", "Prices in [X] are given in [Y].",
                 "The national currency of [X] is the [Y]."],
        "facts": [("Japan", "yen"), ("China", "yuan", "renminbi"), ("India", "rupee"),
                  ("Russia", "ruble", "rouble"), ("the United Kingdom", "pound", "sterling"),
                  ("Mexico", "peso"), ("Brazil", "real"), ("South Korea", "won"),
                  ("Thailand", "baht"), ("Poland", "zloty", "złoty"), ("Hungary", "forint"),
                  ("Turkey", "lira"), ("Israel", "shekel"), ("South Africa", "rand"),
                  ("Switzerland", "franc"), ("Sweden", "krona"), ("Norway", "krone"),
                  ("Denmark", "krone"), ("Germany", "euro"), ("France", "euro"),
                  ("Italy", "euro"), ("Spain", "euro"), ("Vietnam", "dong"),
                  ("Indonesia", "rupiah"), ("the Philippines", "peso"), ("Argentina", "peso"),
                  ("Chile", "peso"), ("Colombia", "peso"), ("Nigeria", "naira"),
                  ("Kenya", "shilling"), ("the United States", "dollar"), ("Canada", "dollar"),
                  ("Australia", "dollar"), ("Malaysia", "ringgit"), ("Ukraine", "hryvnia"),
                  ("Romania", "leu"), ("Iran", "rial"), ("Saudi Arabia", "riyal"),
                  ("Bangladesh", "taka"), ("Pakistan", "rupee")],
    },
    "P17": {
        "name": "country of a city",
        "manual": ["[X] is a city in [Y].", "[X] is located in [Y].", "The city of [X] is in [Y].",
                   "[X] is in the country of [Y].", "[X] lies in [Y]."],
        "auto": ["You can find [X] in [Y].", "The country where [X] is located is [Y].",
                 "[X] is one of the cities of [Y]."],
        "facts": [("Paris", "France"), ("Berlin", "Germany"), ("Madrid", "Spain"),
                  ("Rome", "Italy"), ("Lisbon", "Portugal"), ("Tokyo", "Japan"),
                  ("Osaka", "Japan"), ("Kyoto", "Japan"), ("Beijing", "China"),
                  ("Shanghai", "China"), ("Moscow", "Russia"), ("Toronto", "Canada"),
                  ("Vancouver", "Canada"), ("Sydney", "Australia"), ("Melbourne", "Australia"),
                  ("Mumbai", "India"), ("Delhi", "India"), ("Cairo", "Egypt"),
                  ("Istanbul", "Turkey"), ("Athens", "Greece"), ("Vienna", "Austria"),
                  ("Munich", "Germany"), ("Hamburg", "Germany"), ("Milan", "Italy"),
                  ("Venice", "Italy"), ("Barcelona", "Spain"), ("Seville", "Spain"),
                  ("Marseille", "France"), ("Lyon", "France"), ("Amsterdam", "Netherlands"),
                  ("Stockholm", "Sweden"), ("Oslo", "Norway"), ("Dublin", "Ireland"),
                  ("Warsaw", "Poland"), ("Krakow", "Poland"), ("Budapest", "Hungary"),
                  ("Bangkok", "Thailand"), ("Manila", "Philippines"), ("Jakarta", "Indonesia"),
                  ("Nairobi", "Kenya"), ("Lagos", "Nigeria"), ("Havana", "Cuba"),
                  ("Lima", "Peru"), ("Montreal", "Canada"), ("Geneva", "Switzerland"),
                  ("Zurich", "Switzerland"), ("Edinburgh", "Scotland"), ("Rio de Janeiro", "Brazil"),
                  ("Buenos Aires", "Argentina"), ("Mexico City", "Mexico")],
    },
}


def entity_uri(label):
    return "ent:" + label.lower().replace(" ", "_")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="examples/paraphrase_fusion/data/facts")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--train", type=int, default=4, help="training facts per relation")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = random.Random(args.seed)
    facts, templates = [], []
    for rel, r in RELATIONS.items():
        for t in r["manual"] + r["auto"]:
            assert t.count("[X]") == 1 and t.count("[Y]") == 1, t
        assert len(r["manual"]) >= 5
        templates.append({"rel_uri": rel, "name": r["name"], "manual": r["manual"], "auto": r["auto"]})
        rows = list(r["facts"])
        assert len({f[0] for f in rows}) == len(rows), f"{rel}: duplicate subject"
        for f in rows:
            assert all(len(o.split()) == 1 for o in f[1:]), f"{rel}: {f} answer is not one word"
        rng.shuffle(rows)
        n_val = (len(rows) - args.train) // 3
        for i, f in enumerate(rows):
            split = "train" if i < args.train else "validation" if i < args.train + n_val else "test"
            sub, obj = f[0], f[1]
            facts.append({
                "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "rel_uri": rel, "sub_uri": entity_uri(sub), "sub_ent": [sub],
                "obj_uri": entity_uri(obj), "obj_ent": list(f[1:]), "split": split})
    with open(os.path.join(args.out, "facts.jsonl"), "w") as f:
        for x in facts:
            f.write(json.dumps(x, ensure_ascii=False) + "\n")
    with open(os.path.join(args.out, "templates.jsonl"), "w") as f:
        for x in templates:
            f.write(json.dumps(x, ensure_ascii=False) + "\n")
    counts = {s: sum(1 for x in facts if x["split"] == s) for s in ("train", "validation", "test")}
    print(f"{len(facts)} facts in {len(templates)} relations: {counts} -> {args.out}")


if __name__ == "__main__":
    main()
