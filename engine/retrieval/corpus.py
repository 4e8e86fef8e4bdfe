"""The shipped retrieval corpus: a FICTIONAL town, Velmora, and questions about it.

``python -m engine.retrieval.corpus`` writes ``assets/retrieval/velmora.jsonl`` (one short
encyclopedia passage per line) and ``assets/retrieval/questions.jsonl`` (questions with gold
answers: single-hop and two-hop about Velmora, and a few general-knowledge ones, ``hops`` 0,
that a model may know and the corpus does not cover). Everything is made up — people, places, years — so no
pretrained model knows it, which is the point: a model can only answer from the passages.
The facts come from seeded tables, so every passage and every gold answer agree (a test checks
the shipped files against this generator).

Not here: indexing or searching (engine/retrieval/__init__.py).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "retrieval"
CORPUS_FILE = ASSETS / "velmora.jsonl"
QUESTIONS_FILE = ASSETS / "questions.jsonl"
SOURCE = "Velmora gazetteer (fictional)"
SEED = 2024

TOWN_FACTS = [
    ("Velmora", "Velmora is a fictional harbour town on the estuary of the river Quill. It exists only in "
                "the ThoughtScope test corpus."),
    ("Velmora", "The river Quill divides Velmora into the Old Quarter on the north bank and Saltmarsh on the "
                "south bank."),
    ("Velmora", "Velmora's town emblem is a grey heron holding a brass key."),
    ("Velmora", "The mayor of Velmora is Odalys Fenwright, elected in 2019."),
    ("Velmora", "Velmora holds the Lantern Festival every November, when the harbour is lit with paper boats."),
    ("Velmora", "The population of Velmora at the last count was 18,420."),
    ("Velmora", "Velmora's football club, the Velmora Herons, plays at Tidewater Park."),
    ("Velmora", "The dialect of Velmora calls fog 'the grey wool'."),
]
PLACES = ["the Tallow Lane Bakery", "the Velmora Clock Tower", "the Gull Harbour Ferry", "the Amberwell Library",
          "the Saltmarsh School", "the Copperkettle Brewery", "the Lantern Museum", "the North Mill",
          "the Brindle Bridge", "the Heron Theatre", "the Glasswork Hall", "the Old Customs House",
          "the Weavers' Guildhall", "the Moss Garden", "the Pellham Observatory", "the Quayside Market"]
FEATURES = ["its copper weather vane", "a staircase of 212 steps", "a ceiling painted with sea charts",
            "its blue shutters", "a bell cast from melted anchors", "a garden of black tulips",
            "a clock that runs eleven minutes slow", "a cellar that floods every spring",
            "a wall of green glass bottles", "its whale-bone doorway", "a library of ship logs",
            "a roof of slate from Dunmere", "a weathered stone lion", "a mosaic of herons",
            "a lantern that never goes out", "a fountain shaped like a kettle"]
FOUNDERS = ["Ismay Corrowen", "Bartolo Quench", "Henrike Vasseur", "Aldous Pellham", "Mirela Stroud",
            "Caspian Threlk", "Ottilie Ravensby", "Evander Mossgrove", "Lisbet Harrowgate", "Tobiah Kestrel",
            "Wenna Brightwater", "Jorah Amberwell", "Philippa Dunmore", "Severin Calloway", "Maud Tinsley",
            "Ansel Greywick"]
VILLAGES = ["Dunmere", "Ashcombe Hollow", "Little Fenby", "Corran Mill", "Wickerby", "Sorrel Ford",
            "Hobb's End", "Marrowgate"]
FOUNDER_TRADES = ["shipwright", "merchant", "astronomer", "glassblower", "weaver", "brewer", "clockmaker",
                  "schoolmistress", "harbourmaster", "physician"]
STREETS = ["Lamplight Row", "Cinder Street", "Heron Walk", "Pilchard Lane", "Fathom Road", "Gannet Close",
           "Tiller Street", "Wrenfield Avenue", "Oyster Steps", "Marram Way"]
FIRST = ["Adela", "Brann", "Cosima", "Dorian", "Elspeth", "Fenwick", "Greta", "Hollis", "Ivo", "Junia",
         "Kasimir", "Lorna", "Mattias", "Nerys", "Osric", "Petra", "Quillon", "Rosalind", "Stellan", "Tamsin",
         "Ulric", "Verity", "Wystan", "Xanthe"]
LAST = ["Abernathy", "Blackwood", "Crane", "Dovecote", "Ellery", "Farrow", "Gilchrist", "Hale", "Inchbald",
        "Jessop", "Kettering", "Lowther"]
JOBS = ["baker", "clockmaker", "ferry pilot", "librarian", "beekeeper", "glassblower", "cartographer",
        "schoolteacher", "apothecary", "stonemason", "weaver", "lamplighter", "archivist", "brewer",
        "bell-ringer", "potter", "herbalist", "net-mender"]
FOODS = ["smoked eel pie", "seaweed bread", "plum dumplings", "mussel soup", "honey cake", "barley porridge",
         "salted herring", "blackberry tart"]
RESIDENTS = 40
# Common knowledge a small chat model often has: SUGAR should answer these without retrieval (the
# corpus has nothing on them), and they make "does SE separate right from wrong" answerable.
# "a|b": either answer is right.
GENERAL = [("What is the capital of France?", "Paris"), ("How many days are there in a week?", "7|seven"),
           ("What colour is the sky on a clear day?", "blue"), ("What is the largest planet in the solar system?",
                                                                "Jupiter"),
           ("What gas do plants take in from the air to make food?", "carbon dioxide"),
           ("Who wrote the play Romeo and Juliet?", "Shakespeare"), ("What is the boiling point of water in "
                                                                      "degrees Celsius at sea level?", "100"),
           ("What is the capital of Japan?", "Tokyo"), ("How many legs does a spider have?", "8|eight"),
           ("What is the chemical symbol for gold?", "Au"), ("On which continent is Egypt?", "Africa"),
           ("What is the freezing point of water in degrees Celsius?", "0"),
           ("Which animal is known as the king of the jungle?", "lion"), ("What is the capital of Italy?", "Rome")]


def build(seed: int = SEED) -> tuple[list[dict], list[dict]]:
    """(passages, questions), deterministic for a seed."""
    rng = random.Random(seed)
    founders = {name: {"born": rng.randrange(1600, 1820), "village": rng.choice(VILLAGES),
                       "trade": rng.choice(FOUNDER_TRADES)} for name in FOUNDERS}
    founder_order = FOUNDERS[:]
    rng.shuffle(founder_order)
    places = {}
    for place, founder, feature in zip(PLACES, founder_order, rng.sample(FEATURES, len(FEATURES))):
        born = founders[founder]["born"]
        places[place] = {"founder": founder, "founded": born + rng.randrange(25, 60),
                         "street": rng.choice(STREETS), "feature": feature}
    streets = {s: rng.choice(FOUNDERS) for s in STREETS}
    names = rng.sample([f"{f} {l}" for f in FIRST for l in LAST], RESIDENTS)
    people = {n: {"job": rng.choice(JOBS), "born": rng.randrange(1950, 2004), "street": rng.choice(STREETS),
                  "place": rng.choice(PLACES), "food": rng.choice(FOODS)} for n in names}

    passages: list[tuple[str, str]] = list(TOWN_FACTS)
    for place, p in places.items():
        title = place.removeprefix("the ")
        passages += [(title, f"{place[0].upper() + place[1:]} was founded in {p['founded']} by {p['founder']}."),
                     (title, f"{place[0].upper() + place[1:]} stands on {p['street']} in Velmora."),
                     (title, f"{place[0].upper() + place[1:]} is known for {p['feature']}.")]
    for name, f in founders.items():
        passages += [(name, f"{name} was born in {f['born']} in the village of {f['village']}, near Velmora."),
                     (name, f"{name} was a {f['trade']} in Velmora.")]
    for street, namesake in streets.items():
        passages.append((street, f"{street} in Velmora is named after {namesake}."))
    for name, p in people.items():
        passages += [(name, f"{name} works as a {p['job']} at {p['place']}."),
                     (name, f"{name} was born in {p['born']} and lives on {p['street']}."),
                     (name, f"The favourite dish of {name} is {p['food']}.")]
    corpus = [{"id": f"velmora-{i:04d}", "title": t, "text": x, "source": SOURCE}
              for i, (t, x) in enumerate(passages)]

    questions = []

    def q(question, answer, hops):
        questions.append({"id": f"vq-{len(questions):03d}", "question": question, "answer": str(answer),
                          "hops": hops})

    for place in rng.sample(PLACES, 6):
        q(f"In what year was {place} in Velmora founded?", places[place]["founded"], 1)
    for place in rng.sample(PLACES, 5):
        q(f"Who founded {place} in Velmora?", places[place]["founder"], 1)
    for place in rng.sample(PLACES, 4):
        q(f"On which street does {place} in Velmora stand?", places[place]["street"], 1)
    for name in rng.sample(FOUNDERS, 5):
        q(f"In which village was {name} born?", founders[name]["village"], 1)
    for name in rng.sample(names, 6):
        q(f"What does {name} of Velmora do for a living?", people[name]["job"], 1)
    for name in rng.sample(names, 4):
        q(f"Where in Velmora does {name} work?", people[name]["place"].removeprefix("the "), 1)
    for place in rng.sample(PLACES, 6):
        q(f"In what year was the founder of {place} in Velmora born?", founders[places[place]["founder"]]["born"], 2)
    for street in rng.sample(STREETS, 5):
        q(f"In which village was the person that {street} in Velmora is named after born?",
          founders[streets[street]]["village"], 2)
    for name in rng.sample(names, 5):
        q(f"Who founded the place in Velmora where {name} works?", places[people[name]["place"]]["founder"], 2)
    for question, answer in GENERAL:
        q(question, answer, 0)      # hops 0: general knowledge, not in the corpus
    rng.shuffle(questions)
    for i, row in enumerate(questions):
        row["id"] = f"vq-{i:03d}"
    return corpus, questions


def write(folder: Path = ASSETS, seed: int = SEED) -> None:
    corpus, questions = build(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for path, rows in ((folder / CORPUS_FILE.name, corpus), (folder / QUESTIONS_FILE.name, questions)):
        path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ASSETS)
    args = ap.parse_args(argv)
    write(args.out)
    corpus, questions = build()
    print(f"wrote {len(corpus)} passages and {len(questions)} questions to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
