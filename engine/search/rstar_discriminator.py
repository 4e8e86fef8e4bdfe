"""rStar's discriminator: mutual consistency between the generator's trajectories and a second model.

After the generator's MCTS, every distinct candidate trajectory is cut (a prefix is kept), the
discriminator model completes each prefix, and the candidate is *mutually consistent* when
enough completions reach the candidate's own answer. The final answer is the best-scoring
mutually consistent candidate; when none is, the generator's most confident answer.

This module holds the pure parts, each checked in tests/test_rstar.py on hand-made trajectories:

- `word_cuts` (the official code: keep a fraction of the words, evenly spaced from ``low`` to
  ``high``) and `step_cuts` (the paper: keep the first i steps, i drawn at random, seeded);
- `collect_candidates` (distinct trajectories with their frequency and summed reward),
  `answer_confidence`, `needed` / `verdict` (the consistency rules), `choose_winner` (scores =
  confidence among consistent candidates + survival rate, as the official code).

Not here: the generator's search or any model call (engine/search/rstar.py drives both).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable, Sequence

from engine.demo_model.formats import STEP_DELIMITER
from engine.steps import answers_equal, extract_answer

CUT_MODES = ("words", "steps")
CONSISTENCY_RULES = ("mid", "loose", "strict", "maj")   # the official rc_mode values
SCORE_BY = ("reward", "freq")                           # the official rc_criteria values
# 50 * 0.14 is 7.000000000000001 in floats: ceil of the raw product keeps a word more than the
# rule's ceil(50 * 14 %) = 7. Ratios and products are rounded to this many decimals first.
RATIO_DIGITS = 9


@dataclass
class Candidate:
    candidate: int          # index in the table
    node: int               # the node that ends it (first found)
    path: list
    text: str               # the trajectory after the question prompt
    answer: str | None
    freq: int = 1
    reward: float = 0.0     # the generator's rewards, summed over the times it was found

    def to_json(self) -> dict:
        return {"candidate": self.candidate, "node": self.node, "path": list(self.path), "answer": self.answer,
                "freq": self.freq, "reward": self.reward}


# ---- cut points ------------------------------------------------------------------------------

def word_cuts(text: str, cuts: int, low: float, high: float) -> list[tuple[float, int, int, str]]:
    """(ratio, words kept, words in all, prefix) for ``cuts`` ratios evenly spaced in [low, high].

    Words are the text split at single spaces, as the official code splits them, so the prefix
    joined back is exactly the start of the text. ``word_cuts("a b c d e f g h i j", 4, .2, .5)``
    keeps 2, 3, 4 and 5 words. Words kept = ⌈words · ratio⌉, the product rounded to
    ``RATIO_DIGITS`` decimals before the ceiling so float noise never adds a word."""
    words = text.split(" ")
    step = 0.0 if cuts == 1 else (high - low) / (cuts - 1)
    out = []
    for i in range(cuts):
        ratio = round(low + i * step, RATIO_DIGITS)
        keep = math.ceil(round(len(words) * ratio, RATIO_DIGITS))
        out.append((ratio, keep, len(words), " ".join(words[:keep])))
    return out


def step_cuts(text: str, cuts: int, rng: random.Random) -> list[tuple[None, int, int, str]]:
    """(None, steps kept, steps in all, prefix): the paper's cut, the first i steps kept with i
    drawn at random from 1 .. steps-1 (distinct, at most ``cuts`` of them, in increasing order).
    A one-step trajectory is cut before its only step."""
    lines = text.split(STEP_DELIMITER)
    if lines and lines[-1] == "":
        lines = lines[:-1]
    steps = [line + STEP_DELIMITER for line in lines]
    n = len(steps)
    keeps = sorted(rng.sample(range(1, n), min(cuts, n - 1))) if n > 1 else [0]
    return [(None, k, n, "".join(steps[:k])) for k in keeps]


# ---- verdicts --------------------------------------------------------------------------------

def needed(rule: str, completions: int) -> int:
    """Completions that must reach the candidate's answer: loose 1, mid half (rounded up),
    strict all. (maj asks instead that their majority answer is the candidate's.)"""
    if rule == "loose":
        return 1
    if rule == "strict":
        return completions
    return math.ceil(completions / 2)


def verdict(rule: str, candidate_answer: str | None, answers: Sequence[str | None]) -> tuple[int, int, bool]:
    """(agreeing completions, needed, mutually consistent)."""
    from engine.search.common import majority_answer
    agree = sum(1 for a in answers if answers_equal(a, candidate_answer))
    if rule == "maj":
        return agree, 0, answers_equal(majority_answer(list(answers)), candidate_answer)
    need = needed(rule, len(answers))
    return agree, need, len(answers) > 0 and agree >= need


def completion_answer(prefix: str, completion: str, read: Callable[[str], str | None] = extract_answer) -> str | None:
    """The answer a discriminator completion reaches: the last one stated in the completion,
    read together with the unfinished line of the prefix (so a cut inside ``The answer is``
    followed by `` 47.`` still reads 47); ``read`` is the model's format's reader."""
    tail = prefix.rsplit(STEP_DELIMITER, 1)[-1]
    return read(tail + completion)


# ---- candidates and the winner ---------------------------------------------------------------

def collect_candidates(found: Sequence[tuple[int, list, str, str | None, float]]) -> list[Candidate]:
    """Distinct trajectories from ``(node, path, text, answer, reward)`` rows, in first-seen
    order; a trajectory found again adds to its frequency and its summed reward."""
    by_text: dict[str, Candidate] = {}
    for node, path, text, answer, reward in found:
        c = by_text.get(text)
        if c is None:
            by_text[text] = Candidate(len(by_text), node, list(path), text, answer, 1, reward)
        else:
            c.freq += 1
            c.reward += reward
    return list(by_text.values())


def answer_groups(cands: Sequence[Candidate]) -> dict[str, list[Candidate]]:
    """Candidates by answer (equal answers grouped under the first one seen); None left out."""
    groups: dict[str, list[Candidate]] = {}
    for c in cands:
        if c.answer is None:
            continue
        key = next((k for k in groups if answers_equal(k, c.answer)), c.answer)
        groups.setdefault(key, []).append(c)
    return groups


def answer_confidence(cands: Sequence[Candidate], score_by: str = "reward") -> dict[str, float]:
    """answer -> (summed reward, or frequency, of its candidates) / (total frequency of ``cands``).

    Candidates with no answer have no entry but count in the total, as the official
    ``group_candidates_by_answer`` divides by every candidate's frequency: 9 candidates saying 5
    and 1 saying nothing give 5 a frequency confidence of 0.9, not 1.0."""
    groups = answer_groups(cands)
    total = sum(c.freq for c in cands)
    if not groups or not total:
        return {}
    return {a: sum(c.reward if score_by == "reward" else c.freq for c in g) / total for a, g in groups.items()}


def best_answer(scores: dict[str, float]) -> str | None:
    """The highest-scoring answer; ties go to the one seen first."""
    return max(scores, key=lambda a: scores[a]) if scores else None


def first_with(cands: Sequence[Candidate], answer: str | None) -> Candidate | None:
    return next((c for c in cands if answer is not None and answers_equal(c.answer, answer)), None)


def choose_winner(cands: Sequence[Candidate], consistent: dict[int, bool] | None, score_by: str = "reward",
                  gold: str | None = None, gold_fallback: bool = False) -> tuple[list[dict], int | None, str]:
    """(table rows, winning candidate or None, how it was chosen), as the official code.

    ``consistent``: candidate -> verdict, None when the discriminator did not run. Scores are
    per answer: confidence among the consistent candidates + survival rate (consistent
    frequency / frequency among all candidates with an answer). No consistent candidate: the
    generator's most confident answer. ``gold_fallback`` (analysis only, uses the answer key):
    with several consistent candidates none of which is right, fall back to the generator's
    best — what the official script does when it knows the gold answer."""
    answered = [c for c in cands if c.answer is not None]
    gen_conf = answer_confidence(cands, score_by)
    gen_best = first_with(answered, best_answer(gen_conf))
    rows = [{"candidate": c.candidate, "node": c.node, "answer": c.answer, "freq": c.freq, "reward": c.reward,
             "consistent": None if consistent is None or c.answer is None else consistent.get(c.candidate, False),
             "confidence": None, "survival": None, "score": None, "winner": False} for c in cands]
    if consistent is None:
        winner, reason = gen_best, "generator's most confident answer (the discriminator did not run)"
    else:
        kept = [c for c in answered if consistent.get(c.candidate, False)]
        conf = answer_confidence(kept, score_by)
        all_counts = {a: sum(c.freq for c in g) for a, g in answer_groups(answered).items()}
        scores = {}
        for a, g in answer_groups(kept).items():
            total = next((n for k, n in all_counts.items() if answers_equal(k, a)), 0)
            survival = sum(c.freq for c in g) / total if total else 0.0
            scores[a] = conf[a] + survival
            for c in g:
                rows[c.candidate].update(confidence=conf[a], survival=survival, score=scores[a])
        if not kept:
            winner, reason = gen_best, "no candidate is mutually consistent: the generator's most confident answer"
        elif gold_fallback and gold is not None and len(kept) > 1 and not any(answers_equal(c.answer, gold)
                                                                             for c in kept):
            winner, reason = gen_best, ("ANALYSIS (uses the answer key): no consistent candidate is right, so the "
                                        "generator's most confident answer, as the official script does")
        else:
            winner = first_with(kept, best_answer(scores))
            reason = ("the only mutually consistent candidate" if len(kept) == 1 else
                      "highest score (confidence + survival rate) among mutually consistent candidates")
    if winner is not None:
        rows[winner.candidate]["winner"] = True
    return rows, None if winner is None else winner.candidate, reason
