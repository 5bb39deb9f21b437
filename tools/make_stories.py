#!/usr/bin/env python3
"""Synthetic reading-comprehension data in SQuAD v1.1 JSON: short templated stories about people,
the places they are in, the objects they hold and what they do when, each with a group of
questions whose answers are exact spans of the story. Extra fields (documented in tools/README.md,
"Data sets") give every question paraphrases, dependencies between questions of a group, and, in
the split-context variant, the part of the story each question may see.

  tools/make_stories.py --out-dir data/stories [--seed 0] [--train 1500] [--test 300] [--indent N]

writes stories_train.json, stories_test.json (full stories, with dependent questions) and
stories_split_train.json, stories_split_test.json (each question sees one part of the story; its
answer lies in a part a sibling question sees). The same arguments give byte-identical files.
Pure standard library.
"""
import argparse
import json
import pathlib
import random
import re
import sys

# ---- vocabulary. Names carry the pronouns the stories use for them. ------------------------
NAMES = [
    ("Anna", "f"), ("Ben", "m"), ("Carla", "f"), ("Daniel", "m"), ("Elena", "f"), ("Felix", "m"),
    ("Grace", "f"), ("Hugo", "m"), ("Irene", "f"), ("Jonas", "m"), ("Kira", "f"), ("Liam", "m"),
    ("Maya", "f"), ("Noah", "m"), ("Olga", "f"), ("Pablo", "m"), ("Quinn", "f"), ("Rafael", "m"),
    ("Sara", "f"), ("Tomas", "m"), ("Uma", "f"), ("Victor", "m"), ("Wendy", "f"), ("Xavier", "m"),
    ("Yara", "f"), ("Oscar", "m"), ("Zoë", "f"), ("José", "m"), ("Chloé", "f"), ("Björn", "m"),
    ("Inés", "f"), ("Søren", "m"), ("Aurélie", "f"), ("Łukasz", "m"), ("Anaïs", "f"),
    ("Jürgen", "m"), ("Priya", "f"), ("Kenji", "m"), ("Amara", "f"), ("Tariq", "m"),
    ("Helga", "f"), ("Mateo", "m"), ("Nadia", "f"), ("Omar", "m"), ("Leila", "f"), ("Ivan", "m"),
    ("Freya", "f"), ("Arjun", "m"), ("Mei", "f"), ("Kofi", "m"),
]
PLACES = [
    "kitchen", "garden", "library", "attic", "cellar", "bakery", "harbour", "station", "market",
    "museum", "greenhouse", "workshop", "chapel", "lighthouse", "orchard", "stable", "boathouse",
    "classroom", "laundry room", "courtyard", "post office", "pharmacy", "barn", "studio",
    "conservatory", "hallway", "pantry", "gym", "theatre", "bookshop",
]
OBJECTS = [
    "key", "umbrella", "lantern", "map", "notebook", "violin", "scarf", "compass", "teapot",
    "hammer", "kite", "basket", "telescope", "camera", "backpack", "candle", "ladder", "bicycle",
    "clock", "envelope", "mirror", "pillow", "guitar", "bucket", "shovel", "flute", "helmet",
    "rope", "blanket", "wallet",
]
COLOURS = [
    "red", "blue", "green", "yellow", "purple", "orange", "silver", "golden", "black", "white",
    "grey", "pink", "brown", "turquoise", "crimson", "amber", "navy", "ivory",
]
TIMES = [
    "dawn", "noon", "midnight", "seven o'clock", "half past nine", "a quarter to four", "sunset",
    "ten in the morning", "three in the afternoon", "eight in the evening", "six o'clock",
    "lunchtime", "eleven o'clock", "half past two", "five in the morning", "nine at night",
]
# (base verb, past, past participle, object)
ACTIONS = [
    ("feed", "fed", "fed", "the cat"), ("water", "watered", "watered", "the plants"),
    ("read", "read", "read", "the newspaper"), ("bake", "baked", "baked", "a cake"),
    ("write", "wrote", "written", "a letter"), ("paint", "painted", "painted", "the fence"),
    ("wash", "washed", "washed", "the dishes"), ("sweep", "swept", "swept", "the floor"),
    ("call", "called", "called", "the doctor"), ("fix", "fixed", "fixed", "the radio"),
    ("tune", "tuned", "tuned", "the piano"), ("sing", "sang", "sung", "a song"),
    ("count", "counted", "counted", "the coins"), ("close", "closed", "closed", "the windows"),
    ("light", "lit", "lit", "the fire"), ("fold", "folded", "folded", "the laundry"),
    ("polish", "polished", "polished", "the shoes"), ("plant", "planted", "planted", "the tulips"),
    ("lock", "locked", "locked", "the door"), ("open", "opened", "opened", "the mail"),
    ("walk", "walked", "walked", "the dog"), ("cook", "cooked", "cooked", "the soup"),
    ("mend", "mended", "mended", "the sail"), ("sort", "sorted", "sorted", "the books"),
]
TOWNS = ["Millbrook", "Ashford", "Port Elwin", "Dunmore", "Kestrel Bay", "Lindenfeld", "Oakhollow",
         "Saint Verin", "Bramblewick", "Cold Harbour"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
WEATHER = ["rainy", "windy", "sunny", "foggy", "cold", "quiet", "busy", "snowy"]
CLOSINGS = ["By nightfall, the house was quiet again.", "Nobody noticed anything unusual.",
            "Later, everyone shared a simple dinner.", "It had been an ordinary day.", ""]

# ---- sentence templates: {slot}s are recorded as answer spans. ------------------------------
# subj: name or he/she; obj_person: name or him/her; poss: his/her.
LOCATION_T = [
    "{subj} was in the {place}.", "{subj} spent the morning in the {place}.",
    "{subj} waited in the {place}.", "In the {place}, {subj} sat quietly.",
    "{subj} had gone to the {place}.", "{subj} was busy in the {place}.",
]
OBJECT_T = [
    "{subj} was holding {art} {colour} {object}.", "{subj} carried {art} {colour} {object}.",
    "{subj} had {art} {colour} {object}.", "{Art} {colour} {object} belonged to {obj_person}.",
    "{subj} held {art} {colour} {object} in {poss} hands.",
]
ACTION_T = [
    "At {time}, {subj} {past_obj}.", "{subj} {past_obj} at {time}.",
    "Around {time}, {subj} {past_obj}.", "It was {time} when {subj} {past_obj}.",
]
OPENING_T = [
    "It was a {weather} {day} in {town}.", "One {weather} {day}, the people of {town} were busy.",
    "{day} in {town} was {weather}.",
]
CONNECTORS = ["Meanwhile, ", "Later, ", "Not far away, ", "At the same time, "]

# ---- questions: five wordings each; one becomes `question`, the rest `paraphrases`. ----------
Q = {
    "who_has": ["Who had the {object}?", "Who was holding the {object}?",
                "Which person had the {object}?", "Who was in possession of the {object}?",
                "The {object} was with whom?"],
    "where": ["Where was {name}?", "In which place was {name}?", "Where could {name} be found?",
              "What place was {name} in?", "Where did {name} spend the time?"],
    "who_in": ["Who was in the {place}?", "Which person was in the {place}?",
               "Who could be found in the {place}?", "Who spent time in the {place}?",
               "Whom would you find in the {place}?"],
    "what_has": ["What was {name} holding?", "What did {name} have?",
                 "What object did {name} have?", "What did {name} carry?",
                 "Which object belonged to {name}?"],
    "colour": ["What colour was the {object}?", "What was the colour of the {object}?",
               "Which colour was the {object}?", "The {object} was what colour?",
               "What color was the {object}?"],
    "when": ["When did {name} {base} {aobj}?", "At what time did {name} {base} {aobj}?",
             "What time did {name} {base} {aobj}?", "When was {aobj} {part} by {name}?",
             "At which time did {name} {base} {aobj}?"],
    "what_did": ["What did {name} do at {time}?", "At {time}, what did {name} do?",
                 "What did {name} get done at {time}?", "What was {name}'s task at {time}?",
                 "Which task did {name} do at {time}?"],
    "day": ["On which day did this happen?", "What day was it?", "On what day did the story happen?",
            "Which day of the week was it?", "On which day did the events take place?"],
    # Dependent questions: they name their subject only through an earlier question's answer.
    "where_holder": ["Where was the person who had the {object}?",
                     "Where was whoever had the {object}?",
                     "In which place was the person holding the {object}?",
                     "Where could the holder of the {object} be found?",
                     "The person with the {object} was where?"],
    "did_holder": ["What did the person who had the {object} do?",
                   "What did whoever was holding the {object} do?",
                   "What did the holder of the {object} do?",
                   "Which task did the person with the {object} do?",
                   "What was done by the person who had the {object}?"],
    "holding_in": ["What was the person in the {place} holding?",
                   "What did the person in the {place} have?",
                   "What object did whoever was in the {place} carry?",
                   "Which object belonged to the person in the {place}?",
                   "What was held by the person in the {place}?"],
}
# Which fact of which person each question type answers with, and what it needs first.
ANSWER_FACT = {"who_has": "name", "where": "place", "who_in": "name", "what_has": "thing",
               "colour": "colour", "when": "time", "what_did": "action", "where_holder": "place",
               "did_holder": "action", "holding_in": "thing"}
# What each question type's wording gives away: no question of a group may answer a fact that
# a sibling's wording mentions (a "thing" answer covers its colour and object).
MENTIONS = {"who_has": ["object"], "where": ["name"], "who_in": ["place"], "what_has": ["name"],
            "colour": ["object"], "when": ["name", "action"], "what_did": ["name", "time"],
            "where_holder": ["object"], "did_holder": ["object"], "holding_in": ["place"]}
REVEALS = {"name": ["name"], "place": ["place"], "thing": ["thing", "colour", "object"],
           "colour": ["colour"], "time": ["time"], "action": ["action"]}
DEPENDENTS = {"who_has": ["where_holder", "did_holder"], "who_in": ["holding_in"]}
NEEDS = {"object": ["who_has", "what_has", "colour", "where_holder", "did_holder", "holding_in"],
         "action": ["when", "what_did", "did_holder"]}

SLOT = re.compile(r"\{(\w+)\}")
# No name may hide inside another (answer spans are found by position, but readers search text).
assert not any(a != b and a in b for a, _ in NAMES for b, _ in NAMES)


def article(word):
    return "an" if word[0] in "aeiou" else "a"


def render(template, values):
    """Fills {slots}; returns the text and each slot's (start, end) in code points."""
    out, spans, pos = [], {}, 0
    for m in SLOT.finditer(template):
        out.append(template[pos:m.start()])
        start = sum(len(s) for s in out)
        value = values[m.group(1)]
        out.append(value)
        spans[m.group(1)] = (start, start + len(value))
        pos = m.end()
    out.append(template[pos:])
    return "".join(out), spans


def sample_world(rng, n_people):
    names = rng.sample(NAMES, n_people)
    places = rng.sample(PLACES, n_people)
    objects = rng.sample(OBJECTS, n_people)
    colours = rng.sample(COLOURS, n_people)
    times = rng.sample(TIMES, n_people)
    actions = rng.sample(ACTIONS, n_people)
    people = []
    for i in range(n_people):
        people.append({"name": names[i][0], "gender": names[i][1], "place": places[i],
                       "object": objects[i], "colour": colours[i], "time": times[i],
                       "action": actions[i] if rng.random() < 0.85 else None})
    return people


class Story:
    """Sentences with answer spans; offsets are code points of the joined context."""

    def __init__(self):
        self.sentences, self.length = [], 0
        self.facts = {}  # (person index, fact) -> (start, end)

    def add(self, text, spans, person=None, names=None):
        base = self.length + (1 if self.sentences else 0)
        self.sentences.append(text)
        self.length = base + len(text)
        absolute = {k: (base + s, base + e) for k, (s, e) in spans.items()}
        if names is not None:
            for slot, fact in names.items():
                if slot in absolute:
                    self.facts.setdefault((person, fact), absolute[slot])
        return absolute

    @property
    def context(self):
        return " ".join(self.sentences)


def person_block(rng, story, i, p, use_pronouns, connector):
    """Adds person i's sentences (location, object, action in random order) to the story."""
    kinds = ["location", "object"] + (["action"] if p["action"] else [])
    rng.shuffle(kinds)
    he = p["gender"] == "m"
    for k, kind in enumerate(kinds):
        named = k == 0 or not use_pronouns or rng.random() < 0.5
        template = rng.choice({"location": LOCATION_T, "object": OBJECT_T, "action": ACTION_T}[kind])
        values = {
            "place": p["place"], "colour": p["colour"], "object": p["object"],
            "art": article(p["colour"]), "Art": article(p["colour"]).capitalize(),
            "poss": "his" if he else "her", "time": p["time"],
            "subj": p["name"] if named else ("he" if he else "she"),
            "obj_person": p["name"] if named else ("him" if he else "her"),
        }
        if p["action"]:
            values["past_obj"] = p["action"][1] + " " + p["action"][3]
        if template.startswith("{subj}") and not named:
            values["subj"] = values["subj"].capitalize()
        if k == 0 and connector and template.startswith("{subj}"):
            template = connector + template
        text, spans = render(template, values)
        names = {"place": "place", "time": "time", "past_obj": "action"}
        if named:
            names.update({"subj": "name", "obj_person": "name"})
        absolute = story.add(text, spans, i, names)
        if "colour" in absolute:
            c0, _ = absolute["colour"]
            _, o1 = absolute["object"]
            story.facts[(i, "thing")] = (c0, o1)
            story.facts[(i, "colour")] = absolute["colour"]


def wordings(rng, qtype, values):
    texts = [t.format(**values) for t in Q[qtype]]
    assert len(set(texts)) == len(texts), texts
    rng.shuffle(texts)
    return texts[0], texts[1:]


def question_values(p):
    v = {"name": p["name"], "place": p["place"], "object": p["object"], "time": p["time"]}
    if p["action"]:
        base, _, part, obj = p["action"]
        v.update(base=base, aobj=obj, part=part)
    return v


def applicable(qtype, p):
    return p["action"] is not None or qtype not in NEEDS["action"]


def make_qa(rng, qid, qtype, values, span, context, depends_on):
    question, paraphrases = wordings(rng, qtype, values)
    text = context[span[0]:span[1]]
    return {"id": qid, "question": question,
            "answers": [{"text": text, "answer_start": span[0]}],
            "paraphrases": paraphrases, "depends_on": depends_on, "question_type": qtype}


def full_story(rng, qid_prefix):
    """A story of 3-4 people with 3-5 questions, including one chain of dependent questions."""
    people = sample_world(rng, rng.choice([3, 3, 4, 4, 4]))
    story = Story()
    opening = rng.random() < 0.7
    day = rng.choice(DAYS)
    if opening:
        text, spans = render(rng.choice(OPENING_T), {"weather": rng.choice(WEATHER), "day": day,
                                                     "town": rng.choice(TOWNS)})
        story.facts[(None, "day")] = story.add(text, spans)["day"]
    order = list(range(len(people)))
    rng.shuffle(order)
    for n, i in enumerate(order):
        connector = rng.choice(CONNECTORS) if n > 0 and rng.random() < 0.4 else ""
        person_block(rng, story, i, people[i], use_pronouns=True, connector=connector)
    closing = rng.choice(CLOSINGS)
    if closing:
        story.add(closing, {})
    context = story.context

    n_questions = rng.choice([3, 4, 4, 4, 5])
    answered, mentioned = set(), set()  # (person, fact) answered by / named in the questions
    qas = []

    def conflicts(qtype, i):
        reveals = {(i, f) for f in REVEALS[ANSWER_FACT[qtype]]}
        mentions = {(i, f) for f in MENTIONS[qtype]}
        return bool(reveals & (answered | mentioned)) or bool(mentions & answered)

    def ask(qtype, i, depends_on=()):
        p = people[i]
        fact = ANSWER_FACT[qtype]
        qid = "%s-q%d" % (qid_prefix, len(qas))
        qas.append(make_qa(rng, qid, qtype, question_values(p), story.facts[(i, fact)],
                           context, list(depends_on)))
        answered.update((i, f) for f in REVEALS[fact])
        mentioned.update((i, f) for f in MENTIONS[qtype])
        return qid

    # One chain: an anchor question and one or two questions that need its answer.
    anchor_type = rng.choice(["who_has", "who_has", "who_in"])
    i = rng.randrange(len(people))
    dependents = [d for d in DEPENDENTS[anchor_type] if applicable(d, people[i])]
    rng.shuffle(dependents)
    dependents = dependents[:rng.choice([1, 1, 2])]
    anchor = ask(anchor_type, i)
    for d in dependents:
        ask(d, i, [anchor])
    # Independent questions about other facts.
    kinds = ["who_has", "where", "who_in", "what_has", "colour", "when", "what_did"]
    candidates = [(k, j) for j in range(len(people)) for k in kinds if applicable(k, people[j])]
    rng.shuffle(candidates)
    if opening and rng.random() < 0.3:
        candidates.insert(0, ("day", None))
    for k, j in candidates:
        if len(qas) >= n_questions:
            break
        if k == "day":
            question, paraphrases = wordings(rng, "day", {})
            span = story.facts[(None, "day")]
            qas.append({"id": "%s-q%d" % (qid_prefix, len(qas)), "question": question,
                        "answers": [{"text": context[span[0]:span[1]], "answer_start": span[0]}],
                        "paraphrases": paraphrases, "depends_on": [], "question_type": "day"})
            continue
        if not conflicts(k, j):
            ask(k, j)
    return {"context": context, "qas": shuffle_questions(rng, qas, qid_prefix)}


def shuffle_questions(rng, qas, qid_prefix):
    """Random order in which every question still follows those it depends on; ids renumbered."""
    rng.shuffle(qas)
    ordered, placed = [], set()
    while len(ordered) < len(qas):
        for qa in qas:
            if qa["id"] not in placed and all(d in placed for d in qa["depends_on"]):
                ordered.append(qa)
                placed.add(qa["id"])
                break
    new_id = {qa["id"]: "%s-q%d" % (qid_prefix, k) for k, qa in enumerate(ordered)}
    for qa in ordered:
        qa["id"] = new_id[qa["id"]]
        qa["depends_on"] = [new_id[d] for d in qa["depends_on"]]
    return ordered


def has_word(text, word):
    return re.search(r"(?<!\w)" + re.escape(word) + r"(?!\w)", text) is not None


def split_story(rng, qid_prefix):
    """A story told as one part per person; question i asks about person i but sees only the part
    of person i+1 (mod n), so its answer is in the part a sibling question sees."""
    while True:
        people = sample_world(rng, rng.choice([3, 4, 4]))
        story = Story()
        parts = []
        for i, p in enumerate(people):
            start = story.length + (1 if story.sentences else 0)
            person_block(rng, story, i, p, use_pronouns=True, connector="")
            parts.append(start)
        context = story.context
        bounds = parts + [len(context) + 1]
        part_texts = [context[bounds[k]:bounds[k + 1] - 1] for k in range(len(people))]
        kinds = ["who_has", "where", "who_in", "what_has", "colour", "when", "what_did"]
        qas = []
        ok = True
        for i, p in enumerate(people):
            qtype = rng.choice([k for k in kinds if applicable(k, p)])
            span = story.facts[(i, ANSWER_FACT[qtype])]
            visible = (i + 1) % len(people)
            qa = make_qa(rng, "%s-q%d" % (qid_prefix, i), qtype, question_values(p), span,
                         context, [])
            # The answer must not be readable from the question's own part.
            if has_word(part_texts[visible], qa["answers"][0]["text"]):
                ok = False
                break
            assert bounds[i] <= span[0] and span[1] <= bounds[i + 1] - 1
            qa["visible_part"] = visible
            qa["answer_part"] = i
            qas.append(qa)
        if ok:
            return {"context": context,
                    "context_parts": [{"text": t, "start": s} for t, s in zip(part_texts, parts)],
                    "qas": qas}


def make_split(seed, variant, split, count, taken):
    """`count` stories whose contexts are not in `taken` (so test stories differ from train)."""
    rng = random.Random(seed * 1009 + {"full": 0, "split": 500}[variant] +
                        {"train": 1, "test": 2}[split])
    name = "stories" if variant == "full" else "stories_split"
    data = []
    while len(data) < count:
        prefix = "%s-%s-%05d" % (name, split, len(data))
        paragraph = (full_story if variant == "full" else split_story)(rng, prefix)
        if paragraph["context"] in taken:
            continue
        taken.add(paragraph["context"])
        data.append({"title": prefix, "paragraphs": [paragraph]})
    return {"version": "1.1",
            "generator": {"tool": "tools/make_stories.py", "seed": seed, "variant": variant,
                          "split": split},
            "data": data}


def check(doc):
    """Every answer is the span its offset points at; ids are unique; dependencies resolve."""
    ids = set()
    for article_ in doc["data"]:
        for p in article_["paragraphs"]:
            local = set()
            for qa in p["qas"]:
                assert qa["id"] not in ids
                ids.add(qa["id"])
                for a in qa["answers"]:
                    s = a["answer_start"]
                    assert p["context"][s:s + len(a["text"])] == a["text"], qa
                assert len(qa["paraphrases"]) >= 3
                assert all(d in local for d in qa["depends_on"]), qa
                local.add(qa["id"])
            for part in p.get("context_parts", []):
                assert p["context"][part["start"]:part["start"] + len(part["text"])] == part["text"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", default="data/stories")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=1500, help="stories in the train split")
    parser.add_argument("--test", type=int, default=300, help="stories in the test split")
    parser.add_argument("--indent", type=int, default=None, help="pretty-print the JSON")
    args = parser.parse_args()
    out = pathlib.Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for variant in ("full", "split"):
        taken = set()
        for split, count in (("train", args.train), ("test", args.test)):
            doc = make_split(args.seed, variant, split, count, taken)
            check(doc)
            name = "stories_%s.json" % split if variant == "full" else "stories_split_%s.json" % split
            with open(out / name, "w", encoding="utf-8", newline="\n") as f:
                json.dump(doc, f, ensure_ascii=False, indent=args.indent)
                f.write("\n")
            n_q = sum(len(p["qas"]) for a in doc["data"] for p in a["paragraphs"])
            print("%s: %d stories, %d questions" % (out / name, len(doc["data"]), n_q),
                  file=sys.stderr)


if __name__ == "__main__":
    main()
