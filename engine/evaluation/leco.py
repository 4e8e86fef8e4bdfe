"""LECO on the held-out problems: accuracy and tokens as every method, plus what only the
problem generator can tell — was the step LECO cut the first wrong step, and did LECO break a
solution that was right?

The generator knows every event of a problem and its start value (``Problem.steps``), and
``engine.steps.step_claims`` reads what a written step claims, so "the first wrong step" of a
solution is checkable: the first step line that does not apply one of the problem's unused
events to the running value and compute it right (or that claims nothing, or is one step too
many), or, when every step line is right, an answer line with the wrong answer. Events that
commute may be taken in any order (engine.demo_model.problems.reorder): the model trained with
``--reorder-share`` writes such solutions, and they are not wrong.

Not here: the method (engine/search/leco.py); the generic eval loop (engine/evaluation/evaluate.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from engine import events as E
from engine.demo_model.problems import Problem, apply_op
from engine.evaluation.results import ProblemResult
from engine.steps import answers_equal, extract_answer, merged_claim, step_claims
from engine.tree import Tree


def first_wrong_step(step_texts: Sequence[str], problem: Problem) -> int | None:
    """Index (0-based, among ``step_texts``) of the first wrong step, None when all are right.

    ``step_texts`` are one solution's lines. A step line is right when its claim ``a op b = c``
    has ``a`` the running value (the problem's start value at first), ``op b`` one of the
    problem's events not yet used, and ``c`` the true result; a merged step (``a op1 b1 op2 b2 =
    c``, engine.steps.merged_claim) is right when both are unused events and ``c`` is right."""
    unused = Counter((s.op, s.right) for s in problem.steps)
    value = problem.steps[0].left if problem.steps else None
    for i, text in enumerate(step_texts):
        claims, answer = step_claims(text), extract_answer(text)
        if answer is not None and not claims:
            if not answers_equal(answer, problem.answer):
                return i
            continue
        merged = merged_claim(text)
        if merged:
            a, events, c = merged
        elif claims:
            a, op, b, c = claims[-1]
            events = ((op, b),)
        else:
            return i
        if a != value:
            return i
        for op, b in events:
            if unused[(op, b)] == 0 or (op == "/" and (b == 0 or a % b)):
                return i
            unused[(op, b)] -= 1
            a = apply_op(a, op, b)
        if c != a:
            return i
        value = c
    return None


@dataclass
class LecoResult(ProblemResult):
    rounds: int = 0                        # rethink rounds run
    original_correct: bool = False         # round 0 (greedy) answer right
    first_wrong: int | None = None         # first wrong step of round 0's solution
    first_cut: int | None = None           # the step round 0 was cut at
    last_round_correct: bool = False


def leco_result(problem: Problem, events: list[E.Event]) -> LecoResult:
    tree = Tree.fold(events)
    scores = [e for e in events if isinstance(e, E.StepScores)]
    cuts = [e for e in events if isinstance(e, E.StepCut)]
    answers = [e for e in events if isinstance(e, E.RoundAnswer)]
    answer = tree.final.answer if tree.final else None
    first_steps = [tree[n].text for n in scores[0].path[1:]] if scores else []
    return LecoResult(
        problem.id, answer, problem.answer, answers_equal(answer, problem.answer),
        tree.finished.generated_tokens if tree.finished else 0, nodes=len(tree),
        by_rule={rule: answers_equal(a, problem.answer) for rule, a in (tree.final.alternatives if tree.final else {}).items()},
        rounds=max(0, len(answers) - 1),
        original_correct=bool(answers) and answers_equal(answers[0].answer, problem.answer),
        first_wrong=first_wrong_step(first_steps, problem),
        first_cut=cuts[0].index if cuts and cuts[0].node is not None else None,
        last_round_correct=bool(answers) and answers_equal(answers[-1].answer, problem.answer))


def eval_leco(backend, problems, cfg, seed: int, progress) -> list[LecoResult]:
    from engine.search import leco
    results = []
    for i, p in enumerate(problems):
        events = list(leco.run(p.question, backend, config=cfg, seed=seed + i, gold=str(p.answer)))
        results.append(leco_result(p, events))
        progress(1)
    return results


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def summarise(results: Sequence[LecoResult]) -> dict:
    """The LECO-only keys of the eval JSON."""
    n = len(results)
    wrong_step = [r for r in results if r.first_wrong is not None]
    cut_first = sum(r.first_cut == r.first_wrong for r in wrong_step)
    cut_upto = sum(r.first_cut is not None and r.first_cut <= r.first_wrong for r in wrong_step)
    right0 = [r for r in results if r.original_correct]
    wrong0 = [r for r in results if not r.original_correct]
    broke = sum(not r.correct for r in right0)
    fixed = sum(r.correct for r in wrong0)
    cut_correct = sum(r.first_cut is not None and (r.first_wrong is None or r.first_cut < r.first_wrong)
                      for r in results)
    return {
        "rounds_mean": round(sum(r.rounds for r in results) / n, 3) if n else 0.0,
        "original_accuracy": _rate(len(right0), n),
        "last_round_accuracy": _rate(sum(r.last_round_correct for r in results), n),
        "with_wrong_step": len(wrong_step),
        "cut_at_first_wrong": cut_first,
        "cut_at_first_wrong_rate": _rate(cut_first, len(wrong_step)),
        "cut_at_or_before_first_wrong_rate": _rate(cut_upto, len(wrong_step)),
        "cut_a_correct_step": cut_correct,
        "fixed": fixed,
        "broke_correct": broke,
        "broke_correct_rate": _rate(broke, len(right0)),
        "generated_tokens_mean": round(sum(r.generated_tokens for r in results) / n, 1) if n else 0.0,
    }
