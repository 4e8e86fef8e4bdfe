"""Do the model's mistakes follow the path it takes, or the words of the story?

``python -m engine.demo_model.probe --n 400``: for each of N freshly generated problems, the
same problem told K ways, solved greedily each time, and the K answers put to a vote:

- ``orders``: the story's events told in K valid orders (`problems.reorder`; the first is the
  told order). Each order makes the model compute different intermediate values.
- ``words``: the story with other names and objects, events in the told order. The model
  computes the same numbers in other words.

If the vote over orders beats a single telling while the vote over wordings does not, the
model's slips are tied to the numbers it computes, and only a different path escapes them:
what self-consistency needs the model itself to sample (docs/demo_model.md). This is a probe
of the embedded model, not a method: the variants are written by the generator, which knows
the events.

Not here: the evaluations of methods (engine/evaluation/evaluate.py).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time

from engine.demo_model import problems as P


def _event_slots(problem: P.Problem) -> list[int]:
    """Indexes in ``problem.conditions`` of the story's event sentences, in told order."""
    slots, at = [], 0
    for s in problem.steps:
        if not s.event:                       # the opening product: its sentence is the opening
            continue
        at = next(i for i in range(at + 1, len(problem.conditions)) if s.event in problem.conditions[i])
        slots.append(at)
    return slots


def retell(problem: P.Problem, steps: tuple[P.Step, ...]) -> str:
    """The question with its events told in the order of ``steps`` (a `reorder` of its steps).

    Built from the problem's conditions (the story's sentences with the name for the pronoun),
    distractors kept where they were, so the told order retold is the baseline to compare with."""
    slots = _event_slots(problem)
    sentences = list(problem.conditions)
    pool = [(s.op, s.right, s.event, problem.conditions[i])
            for s, i in zip((s for s in problem.steps if s.event), slots)]
    for slot, s in zip(slots, (s for s in steps if s.event)):
        k = next(j for j, e in enumerate(pool) if e[:3] == (s.op, s.right, s.event))
        sentences[slot] = pool.pop(k)[3]
    return " ".join(sentences + [problem.final_question])


def reword(problem: P.Problem, rng: random.Random) -> str:
    """The told-order question (as `retell` writes it) with another name and object."""
    text = retell(problem, problem.steps)
    name = re.match(r"(?:There are \d+ \w+ in )?([A-Z]\w+)", text).group(1)
    obj = next(o for o in P.OBJECTS if re.search(rf"\b{o}\b", problem.final_question))
    new_name = rng.choice([n for n, _ in P.NAMES if not re.search(rf"\b{n}\b", text)])
    new_obj = rng.choice([o for o in P.OBJECTS if not re.search(rf"\b{o}\b", text)])
    return re.sub(rf"\b{obj}\b", new_obj, re.sub(rf"\b{name}\b", new_name, text))


def variants(problem: P.Problem, kind: str, k: int, rng: random.Random) -> list[str]:
    """``k`` tellings of ``problem``: the told order first, then other orders or other words."""
    first = retell(problem, problem.steps)
    if kind == "orders":
        return [first] + [retell(problem, P.reorder(problem, rng)) for _ in range(k - 1)]
    if kind == "words":
        return [first] + [reword(problem, rng) for _ in range(k - 1)]
    raise ValueError(f"kind must be 'orders' or 'words', got {kind!r}")


def probe(backend, problems: list[P.Problem], kind: str, k: int, seed: int, batch: int = 64) -> dict:
    from engine.evaluation.evaluate import SOLUTION_STOP, majority
    from engine.sampling import GREEDY
    from engine.search.common import MAX_SOLUTION_TOKENS
    from engine.steps import answers_equal, extract_answer

    rng = random.Random(seed)
    tellings = [variants(p, kind, k, rng) for p in problems]
    prompts = [backend.render_prompt(q) + backend.solution_prefix() for qs in tellings for q in qs]
    answers: list[str | None] = []
    for i in range(0, len(prompts), batch):
        gens = backend.generate(prompts[i:i + batch], sampling=GREEDY, stop=SOLUTION_STOP,
                                max_new_tokens=MAX_SOLUTION_TOKENS, seed=seed)
        answers += [extract_answer(g.text) for g in gens]
        print(f"{kind}: {min(i + batch, len(prompts))}/{len(prompts)} tellings", file=sys.stderr)
    first = each = vote = distinct_tellings = 0
    for j, p in enumerate(problems):
        mine = answers[j * k:(j + 1) * k]
        first += answers_equal(mine[0], p.answer)
        each += sum(answers_equal(a, p.answer) for a in mine)
        vote += answers_equal(majority(mine)[0], p.answer)
        distinct_tellings += len(set(tellings[j])) > 1
    n = len(problems)
    return {"told": first / n, "each": each / (n * k), "vote": vote / n,
            "problems_told_more_ways": distinct_tellings / n}


def main(argv=None) -> int:
    from engine.evaluation.evaluate import fresh_problems
    from engine.models.registry import DEFAULT_MODEL, load_backend

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--tier", default="hard", choices=P.TIERS)
    ap.add_argument("--n", type=int, default=400, help="fresh problems (none from the held-out file)")
    ap.add_argument("--fresh", type=int, default=4242, help="generator seed of the problems")
    ap.add_argument("--variants", type=int, default=8, help="tellings per problem, voted")
    ap.add_argument("--seed", type=int, default=0, help="draws the orders and words")
    ap.add_argument("--kinds", nargs="+", default=["orders", "words"], choices=["orders", "words"])
    args = ap.parse_args(argv)
    if not 1 <= args.n <= 100_000 or not 2 <= args.variants <= 64:
        ap.error("--n must be from 1 to 100000 and --variants from 2 to 64")
    backend = load_backend(args.model)
    problems = fresh_problems(args.tier, args.n, args.fresh)
    out = {"model": backend.info.name, "tier": args.tier, "n": args.n, "problems": f"fresh:{args.fresh}",
           "variants": args.variants, "seed": args.seed}
    for kind in args.kinds:
        t0 = time.time()
        out[kind] = probe(backend, problems, kind, args.variants, args.seed)
        out[kind]["wall_s"] = round(time.time() - t0, 1)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
