"""Seeded generator of multi-step arithmetic word problems, with gold answers and solutions.

A problem is a small story about one person's pile of objects: a start value, then one to
five events (buy, give away, grow several-fold, split into equal groups), then a question
about the final count. Each event is one arithmetic step whose operands and result are
known, so a solution can be written in every format the methods need (engine/demo_model/
formats.py) and any model-written step can be checked against the true intermediate value.

Difficulty tiers differ in the number of steps, the size of the numbers and in distractor
sentences (numbers that must not be used). Everything is drawn from one `random.Random`,
so the same seed gives the same problems.

Not here: tokenising, training, or reading model output (engine/steps.py).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterator

from engine.demo_model import formats

TIERS = ("easy", "medium", "hard")
FORMATS = ("steps", "rstar", "code")


@dataclass(frozen=True)
class TierSpec:
    """How hard a tier is. Values are inclusive ranges."""

    ops: tuple[int, int]          # number of arithmetic steps
    start: tuple[int, int]        # the first count
    operand: tuple[int, int]      # what is added or taken away
    factor: tuple[int, int]       # multiplier
    divisor: tuple[int, int]
    max_value: int                # no intermediate value above this
    distractors: tuple[int, int]  # sentences with unused numbers
    product_start: float          # chance the story opens with "a packs of b"


TIER_SPECS: dict[str, TierSpec] = {
    "easy": TierSpec(ops=(1, 2), start=(5, 60), operand=(2, 40), factor=(2, 4),
                     divisor=(2, 5), max_value=120, distractors=(0, 0), product_start=0.2),
    "medium": TierSpec(ops=(2, 3), start=(10, 150), operand=(5, 99), factor=(2, 6),
                       divisor=(2, 9), max_value=300, distractors=(0, 1), product_start=0.25),
    "hard": TierSpec(ops=(4, 5), start=(100, 600), operand=(10, 300), factor=(2, 9),
                     divisor=(2, 9), max_value=999, distractors=(1, 2), product_start=0.3),
}

NAMES = [("Mia", "she"), ("Liam", "he"), ("Ava", "she"), ("Noah", "he"), ("Zoe", "she"),
         ("Omar", "he"), ("Lena", "she"), ("Ravi", "he"), ("Ines", "she"), ("Kofi", "he"),
         ("Yuki", "she"), ("Tom", "he"), ("Sara", "she"), ("Ivan", "he"), ("Nora", "she"),
         ("Pablo", "he"), ("Emma", "she"), ("Jonas", "he"), ("Aisha", "she"), ("Leo", "he"),
         ("Maya", "she"), ("Ben", "he"), ("Chloe", "she"), ("Sami", "he"), ("Rosa", "she"),
         ("Felix", "he"), ("Hana", "she"), ("Owen", "he"), ("Lucy", "she"), ("Amir", "he")]
OBJECTS = ["apples", "marbles", "stickers", "pencils", "cookies", "books", "coins", "stamps",
           "shells", "cards", "eggs", "beads", "balloons", "crayons", "toys", "buttons",
           "rocks", "candles", "ribbons", "nuts"]
CONTAINERS = ["packs", "boxes", "bags", "jars", "crates", "bundles"]

# (sentence, sub-question tail, tag) per event kind; {n} is the operand. The tag is the words of
# the sentence that name the event, copied verbatim ("loses 230"): a step may start with it
# (render's ``name_events``), so the operand it uses sits next to words it can match in the story.
EVENTS: dict[str, list[tuple[str, str, str]]] = {
    "+": [("{P} buys {n} more {obj}.", "after buying {n} more", "buys {n} more"),
          ("{N} finds {n} more {obj}.", "after finding {n} more", "finds {n} more"),
          ("A friend gives {N} {n} {obj}.", "after getting {n} from a friend", "gives {N} {n}"),
          ("{N} wins {n} {obj} at a fair.", "after winning {n} at the fair", "wins {n}")],
    "-": [("{P} gives away {n} {obj}.", "after giving away {n}", "gives away {n}"),
          ("{N} sells {n} {obj}.", "after selling {n}", "sells {n}"),
          ("{P} loses {n} {obj}.", "after losing {n}", "loses {n}")],
    "*": [("Then the number of {obj} becomes {n} times as large.",
           "after the number becomes {n} times as large", "becomes {n} times"),
          ("Then {N}'s pile of {obj} grows to {n} times its size.",
           "after the pile grows to {n} times its size", "grows to {n} times")],
    "/": [("{N} splits the {obj} into {n} equal groups and keeps one group.",
           "after keeping one of {n} equal groups", "into {n} equal groups"),
          ("{P} shares the {obj} equally among {n} children and keeps one share.",
           "after sharing equally among {n} children", "among {n} children")],
}
OPENINGS = ["{N} has {v} {obj}.", "{N} starts with {v} {obj}.",
            "There are {v} {obj} in {N}'s room."]
PRODUCT_OPENING = "{N} buys {a} {box} of {obj}. Each of the {box} holds {b} {obj}."
PRODUCT_SUBQUESTION = "How many {obj} does {N} buy"
QUESTIONS = ["How many {obj} does {N} have now?", "How many {obj} does {N} have in the end?",
             "How many {obj} does {N} have left?"]
DISTRACTORS = ["{M} has {n} {obj2}.", "{N} is {age} years old.",
               "The shop is {n} meters from {N}'s home.", "{M} owns {n} {obj2} as well."]


@dataclass(frozen=True)
class Step:
    """One arithmetic step: ``left op right = result``, with its code and sub-question."""

    left: int
    op: str
    right: int
    result: int
    code: str          # e.g. "x2 = x1 - 9"
    subquestion: str   # e.g. "How many apples does Mia have after giving away 9?"
    event: str = ""    # the story's words for this event, e.g. "gives away 9" ("" for the opening product)


@dataclass(frozen=True)
class Problem:
    id: str
    tier: str
    question: str
    answer: int
    steps: tuple[Step, ...]
    conditions: tuple[str, ...] = field(default=())   # the story's sentences, for A5
    final_question: str = ""

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(data: dict) -> "Problem":
        steps = tuple(Step(**s) for s in data["steps"])
        return Problem(id=data["id"], tier=data["tier"], question=data["question"],
                       answer=int(data["answer"]), steps=steps,
                       conditions=tuple(data.get("conditions", ())),
                       final_question=data.get("final_question", ""))


def apply_op(value: int, op: str, n: int) -> int:
    """``value op n`` as the stories mean it (``/`` is whole-number division: always exact here)."""
    return {"+": value + n, "-": value - n, "*": value * n, "/": value // n}[op]


def step_code(k: int, value: int, op: str, n: int) -> str:
    """Step k's code: ``x1 = 37 - 9`` for the first step, ``x2 = x1 - 9`` after it."""
    py_op = "//" if op == "/" else op
    return f"x{k} = x{k - 1} {py_op} {n}" if k > 1 else f"x{k} = {value} {py_op} {n}"


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _pick_op(rng: random.Random, spec: TierSpec, value: int) -> tuple[str, int] | None:
    """Choose an event that keeps every value a positive whole number within the tier."""
    choices: list[tuple[str, int]] = []
    lo, hi = spec.operand
    if value + lo <= spec.max_value:
        choices += [("+", rng.randint(lo, min(hi, spec.max_value - value)))] * 7
    if value - 1 >= lo:
        choices += [("-", rng.randint(lo, min(hi, value - 1)))] * 7
    factors = [f for f in range(spec.factor[0], spec.factor[1] + 1) if value * f <= spec.max_value]
    if factors:
        choices += [("*", rng.choice(factors))] * 3
    divisors = [d for d in range(spec.divisor[0], spec.divisor[1] + 1) if value % d == 0]
    if divisors:
        choices += [("/", rng.choice(divisors))] * 4
    return rng.choice(choices) if choices else None


MAX_EVENTS = 12


def with_events(tier: str, lo: int, hi: int) -> TierSpec:
    """``tier``'s spec with ``lo`` to ``hi`` events a problem (numbers, distractors as the tier)."""
    if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi <= MAX_EVENTS):
        raise ValueError(f"events must be whole numbers 1 <= LO <= HI <= {MAX_EVENTS}, got {lo} {hi}")
    return replace(TIER_SPECS[tier], ops=(lo, hi))


def generate_problem(rng: random.Random, tier: str, pid: str = "", spec: TierSpec | None = None) -> Problem:
    """One problem of ``tier``, drawn as ``spec`` says (default: the tier's own TIER_SPECS entry;
    the trainer's ``--hard-steps`` passes another)."""
    if tier not in TIER_SPECS:
        raise ValueError(f"tier must be one of {TIERS}, got {tier!r}")
    spec = spec or TIER_SPECS[tier]
    while True:
        problem = _try_generate(rng, tier, spec, pid)
        if problem is not None:
            return problem


def _try_generate(rng: random.Random, tier: str, spec: TierSpec, pid: str) -> Problem | None:
    name, pron = rng.choice(NAMES)
    obj = rng.choice(OBJECTS)
    n_ops = rng.randint(*spec.ops)
    sentences: list[str] = []
    conditions: list[str] = []
    steps: list[Step] = []
    fill = {"N": name, "P": _cap(pron), "obj": obj}

    def subq(tail: str) -> str:
        return f"How many {obj} does {name} have {tail}?"

    if rng.random() < spec.product_start:
        a, b = rng.randint(2, 9), rng.randint(2, 12 if tier == "easy" else 25)
        box = rng.choice(CONTAINERS)
        text = PRODUCT_OPENING.format(a=a, b=b, box=box, **fill)
        sentences.append(text)
        conditions.append(text)
        value = a * b
        steps.append(Step(a, "*", b, value, f"x1 = {a} * {b}",
                          PRODUCT_SUBQUESTION.format(**fill) + "?"))
    else:
        value = rng.randint(*spec.start)
        text = rng.choice(OPENINGS).format(v=value, **fill)
        sentences.append(text)
        conditions.append(text)

    while len(steps) < n_ops:
        picked = _pick_op(rng, spec, value)
        if picked is None:
            return None
        op, n = picked
        template, tail, tag = rng.choice(EVENTS[op])
        text = template.format(n=n, **fill)
        result = apply_op(value, op, n)
        steps.append(Step(value, op, n, result, step_code(len(steps) + 1, value, op, n),
                          subq(tail.format(n=n)), tag.format(n=n, **fill)))
        sentences.append(text)
        conditions.append(text.replace(_cap(pron) + " ", name + " ", 1))
        value = result

    for _ in range(rng.randint(*spec.distractors)):
        other = rng.choice([nm for nm, _ in NAMES if nm != name])
        obj2 = rng.choice([o for o in OBJECTS if o != obj])
        text = rng.choice(DISTRACTORS).format(M=other, N=name, n=rng.randint(*spec.operand),
                                              obj2=obj2, age=rng.randint(6, 15))
        at = rng.randint(1, len(sentences))
        sentences.insert(at, text)
        conditions.insert(at, text)

    final_q = rng.choice(QUESTIONS).format(**fill)
    question = " ".join(sentences + [final_q])
    return Problem(id=pid, tier=tier, question=question, answer=value, steps=tuple(steps),
                   conditions=tuple(conditions), final_question=final_q)


def generate(tier: str, n: int, seed: int, prefix: str = "") -> list[Problem]:
    """``n`` problems of one tier; ids ``{prefix}{tier}-0000`` onwards."""
    rng = random.Random(f"{seed}:{tier}")
    return [generate_problem(rng, tier, f"{prefix}{tier}-{i:04d}") for i in range(n)]


def iter_mixed(seed: int, weights: dict[str, float],
               specs: dict[str, TierSpec] | None = None) -> Iterator[Problem]:
    """An endless seeded stream of problems, tiers drawn by ``weights`` (each tier as ``specs``
    says, default TIER_SPECS)."""
    rng = random.Random(seed)
    tiers, w = zip(*weights.items())
    specs = specs or TIER_SPECS
    i = 0
    while True:
        tier = rng.choices(tiers, w)[0]
        yield generate_problem(rng, tier, f"train-{i}", specs[tier])
        i += 1


# ---- solutions in each format ---------------------------------------------------------

SPLIT_SHARE = 0.0   # chance a step is written in the worked, two-part form (shipped model: 0)
REORDER_SHARE = 0.0  # chance a steps/code solution takes a random valid order of its events
NAME_EVENTS = False  # whether plain and rStar step lines name the event they use (shipped model: no)
NAME_SHARE = None    # chance a plain-steps solution names its events (None: name_events decides)
MERGE_SHARE = 0.0    # chance a plain step takes the next event too, in one expression (shipped model: 0)


def _additive(op: str) -> bool:
    return op in "+-"


def _opening_product(step: Step) -> bool:
    """The "a packs of b" step a story may open with: not an event, never moved or merged."""
    return step.subquestion.endswith(" buy?")


def merge_groups(steps: tuple[Step, ...], rng: random.Random,
                 share: float) -> list[tuple[Step, ...]]:
    """The steps grouped as a solution with merged steps writes them: each event step takes the
    next one with it, in one expression, with chance ``share`` (one draw per step that has a
    next one; the opening product is never merged)."""
    groups: list[tuple[Step, ...]] = []
    i = 0
    while i < len(steps):
        if i + 1 < len(steps) and not _opening_product(steps[i]) and rng.random() < share:
            groups.append((steps[i], steps[i + 1]))
            i += 2
        else:
            groups.append((steps[i],))
            i += 1
    return groups


def _merged_line(k: int, group: tuple[Step, ...], named: bool) -> str:
    """Step ``k`` of a solution with merged steps: one event, or two in one expression."""
    a, b = group[0], group[-1]
    if len(group) == 1:
        return formats.step_line(k, a.left, a.op, a.right, a.result, False, a.event if named else "")
    tags = (a.event, b.event) if named else ("", "")
    return formats.merged_step_line(k, a.left, (a.op, a.right), (b.op, b.right), b.result, tags)


def reorder(problem: Problem, rng: random.Random, tries: int = 20) -> tuple[Step, ...]:
    """The problem's steps in a random valid order of its events (or the original order).

    Events next to each other commute when both are ``+``/``-`` or both are ``*``/``/``:
    "buys 40, gives away 25" reaches the same count either way, through a different
    intermediate value. A run of such events is shuffled where every intermediate value stays
    a whole number from 1 to the tier's ``max_value`` (rejection sampling: every valid order is
    equally likely, and the told order stands when ``tries`` draws find none); the opening "a packs of b" product is never moved. The answer is
    unchanged; the steps' sub-questions are dropped and their event tags kept (only ``steps`` and
    ``code`` use this)."""
    steps = list(problem.steps)
    fixed = steps[:1] if steps and _opening_product(steps[0]) else []
    events = [(s.op, s.right, s.event) for s in steps[len(fixed):]]
    if not events:
        return problem.steps
    value = steps[len(fixed)].left
    limit = TIER_SPECS[problem.tier].max_value
    runs: list[list[tuple[str, int, str]]] = []
    for ev in events:
        if runs and _additive(runs[-1][-1][0]) == _additive(ev[0]):
            runs[-1].append(ev)
        else:
            runs.append([ev])

    def apply(v: int, order: list[tuple[str, int, str]]) -> list[int] | None:
        out = []
        for op, n, _ in order:
            if op == "/" and v % n:
                return None
            v = apply_op(v, op, n)
            if not 1 <= v <= limit:
                return None
            out.append(v)
        return out

    order: list[tuple[str, int, str]] = []
    for run in runs:
        pick = run
        for _ in range(tries if len(run) > 1 else 0):
            cand = rng.sample(run, len(run))
            if apply(value, cand) is not None:
                pick = cand
                break
        value = apply(value, pick)[-1]
        order += pick
    out = list(fixed)
    v = steps[len(fixed)].left
    for op, n, tag in order:
        r = apply_op(v, op, n)
        out.append(Step(v, op, n, r, step_code(len(out) + 1, v, op, n), "", tag))
        v = r
    return tuple(out)


def render(problem: Problem, fmt: str, rng: random.Random | None = None,
           split_share: float = SPLIT_SHARE, reorder_share: float = REORDER_SHARE,
           name_events: bool = NAME_EVENTS,
           merge_share: float = MERGE_SHARE,
           name_share: float | None = NAME_SHARE) -> tuple[str, str]:
    """``(prompt, completion)`` of a full solution in format ``fmt``.

    ``rstar`` mixes actions the way an rStar path may: an optional rephrase, then some
    sub-question/answer pairs, then one-step thoughts to the end (a one-step thought is never
    followed by a sub-question, matching rStar's action legality). ``rng`` picks that mix.

    In ``steps`` and ``rstar`` each step is worked in two easier parts with chance
    ``split_share`` (formats.split_work), else written directly; the code format's comment is
    always direct. The shipped model was trained with 0 (every step direct); run 3 in
    docs/demo_model.md tried 0.4. With 0 no random number is drawn, so the corpus is the same
    as before the option existed.

    With chance ``reorder_share`` a ``steps`` or ``code`` solution takes a random valid order of
    the problem's events (`reorder`): several correct paths to one answer, whose intermediate
    values differ. Also no random number drawn at 0.

    With ``name_events``, a plain or rStar step line starts with the story's words for the event
    it uses (``Step 2: loses 230, 298 - 230 = 68``; formats.step_line). Draws no random number.

    ``name_share`` mixes two styles of ``steps`` solution: with that chance the solution names
    its events, otherwise it is written plainly; either may be reordered (``reorder_share``). One
    draw per plain-steps solution; None (the default) leaves ``name_events`` in charge and draws
    nothing. rStar lines still follow ``name_events``.

    With ``merge_share`` a ``steps`` solution's event step takes the next event with it, in one
    expression, with that chance (`merge_groups`, formats.merged_step_line): ``Step 2: 298 -
    230 + 40 = 108``. A merged step skips a written intermediate value, so it is harder to get
    right (run 7 in docs/demo_model.md tried 0.65). With ``name_share`` set, only the plain
    solutions merge: a careful style (named, one event a step) beside a terse one (unnamed,
    merged). Worked (split) steps are not merged. No random number drawn at 0.
    """
    rng = rng or random.Random(0)
    steps = problem.steps
    named = name_events
    if fmt == "steps" and name_share is not None:
        named = rng.random() < name_share
    if reorder_share > 0 and fmt in ("steps", "code") and rng.random() < reorder_share:
        steps = reorder(problem, rng)
    split = [split_share > 0 and rng.random() < split_share for _ in steps]
    if fmt == "steps":
        if merge_share > 0 and not (name_share is not None and named):
            lines = [_merged_line(k, group, named)
                     for k, group in enumerate(merge_groups(steps, rng, merge_share), 1)]
        else:
            lines = [formats.step_line(k, s.left, s.op, s.right, s.result, split[k - 1],
                                       s.event if named else "")
                     for k, s in enumerate(steps, 1)]
        lines.append(formats.answer_line(problem.answer))
        return formats.question_prompt(problem.question), "\n".join(lines) + "\n"
    if fmt == "code":
        lines = [formats.code_step_line(k, s.code, s.left, s.op, s.right, s.result)
                 for k, s in enumerate(steps, 1)]
        lines.append(formats.answer_line(problem.answer))
        return formats.code_prompt(problem.question), "\n".join(lines) + "\n"
    if fmt == "rstar":
        lines = []
        if rng.random() < 0.35:
            lines.append(formats.rephrase_line(list(problem.conditions), problem.final_question))
        n_sub = rng.randint(0, len(steps))
        for k, s in enumerate(steps, 1):
            if k <= n_sub:
                final = k == len(steps)
                sq = problem.final_question if final else s.subquestion
                lines += formats.subquestion_lines(k, sq, s.left, s.op, s.right, s.result, final,
                                                   split[k - 1])
            else:
                lines.append(formats.step_line(k, s.left, s.op, s.right, s.result, split[k - 1],
                                               s.event if name_events else ""))
        if n_sub < len(steps):
            lines.append(formats.answer_line(problem.answer))
        return formats.question_prompt(problem.question), "\n".join(lines) + "\n"
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")


# ---- the held-out file ----------------------------------------------------------------

HELDOUT_SEED = 20261121
HELDOUT_PER_TIER = 300


def write_heldout(path: Path, per_tier: int = HELDOUT_PER_TIER, seed: int = HELDOUT_SEED) -> None:
    with open(path, "w") as f:
        for tier in TIERS:
            for p in generate(tier, per_tier, seed, prefix="heldout-"):
                f.write(json.dumps(p.to_json()) + "\n")


def load_problems(path: Path, tier: str | None = None) -> list[Problem]:
    with open(path) as f:
        problems = [Problem.from_json(json.loads(line)) for line in f if line.strip()]
    return [p for p in problems if tier is None or p.tier == tier]
