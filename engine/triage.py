"""Failure triage: why a stored run's answer is wrong, read from its folded tree.

Each wrong run is put in one class (`CLASSES`):

- ``no_answer``: the final answer is None (no answer stated). This class wins over the other
  two: a run that states nothing is first of all silent, whatever its terminals held.
- ``never_reached``: no terminal of the tree holds the gold answer, so no answer rule could
  have picked it; the search itself never got there.
- ``reached_not_chosen``: some terminal holds the gold answer, yet the final answer is another.
  The report says which of the run's own answer rules (``FinalAnswer.alternatives``) and which
  simple scores over its terminals (`SCORES`) would have chosen the gold answer.

Right runs, runs without a gold answer and runs that never stated a final answer event (stopped
before the end) are not triaged: their report says so in ``status`` and ``reason``. Answers are
compared with `engine.answers.answers_equal` (by value), grouped with `answer_key`.

Beside the class: an answer tally (each distinct answer, its terminals, total visits, best and
mean Q, right or wrong) and the first wrong step of the chosen path where a check applies.
The only check here is the claim check for arithmetic steps (``a op b = c`` whose arithmetic is
wrong; engine.steps.step_claims and merged_claim): the step's node id is returned so a viewer
can jump to it. On paths whose steps claim nothing checkable the first wrong step is None.

The reason is structured (``Triage.why``, a `Reason`: a code from `REASONS` and its fields), so
each reader can say it in its own language: ``why.render()`` is the English (``Triage.reason``),
and ``why.render(translate)`` looks each English template up through ``translate`` first (the
app passes app.i18n.translate, whose catalogue, app/locales/zh.json, holds every template of
`REASONS`; the CLI does the same under LANG=zh). The engine never imports app/: the templates are
the keys, and an unknown language or a missing entry falls back to this English.

Pure functions over a `Tree`; nothing here reads the store or prints. Not here: the PPM's or
LECO's step scores as wrong-step finders, checking a step against the problem's own events
(engine/evaluation/leco.py does that where the problem is known), or drawing (app/).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Callable, Iterable

from engine import events as E
from engine.answers import answer_key, answers_equal
from engine.steps import merged_claim, split_steps, step_claims
from engine.tree import Node, Tree

NEVER_REACHED = "never_reached"
REACHED_NOT_CHOSEN = "reached_not_chosen"
NO_ANSWER = "no_answer"
CLASSES = (NEVER_REACHED, REACHED_NOT_CHOSEN, NO_ANSWER)

# the status of a run's report; only "wrong" runs carry a class
RIGHT, WRONG, NO_GOLD, UNFINISHED = "right", "wrong", "no_gold", "unfinished"
STATUSES = (RIGHT, WRONG, NO_GOLD, UNFINISHED)


# ---- the reason, as a code and its fields ------------------------------------------------------

# code -> the English template (also the catalogue key of its translations: app/locales/zh.json);
# tests/test_i18n_engine_messages.py fails for a code without a Chinese entry
REASONS = {
    "no_gold": "not triaged: the run has no gold answer",
    "unfinished": "not triaged: the run stated no final answer event (it ended before choosing one)",
    "right": "not triaged: the answer is right",
    "no_answer": "no answer stated",
    "never_reached": "the gold answer {gold} never reached a terminal",
    "reached_not_chosen_1": "1 terminal reached the gold answer {gold}; {rule} chose {answer}; "
                            "would have chosen it: {chosen_by}",
    "reached_not_chosen": "{n} terminals reached the gold answer {gold}; {rule} chose {answer}; "
                          "would have chosen it: {chosen_by}",
    # what would have chosen the gold answer (``chosen_by`` above)
    "by_rules": "rules {rules}",
    "by_scores": "scores {scores}",
    "by_rules_and_scores": "rules {rules}; scores {scores}",
    "by_none": "none of the run's rules or the simple scores",
}


@dataclass(frozen=True)
class Reason:
    """Why a run is classed as it is: a code of `REASONS` and the values of its template's fields
    (a field may itself be a `Reason`, rendered first). Example: ``Reason("never_reached",
    {"gold": "7"}).render()`` -> "the gold answer 7 never reached a terminal"."""

    code: str
    fields: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.code not in REASONS:
            raise ValueError(f"code must be one of {', '.join(REASONS)}, got {self.code!r}")

    def render(self, translate: Callable[[str], str] | None = None) -> str:
        """The sentence; ``translate`` maps an English template to another language's (the app's
        and the CLI's catalogue lookup), English when None."""
        template = REASONS[self.code]
        text = translate(template) if translate else template
        values = {k: v.render(translate) if isinstance(v, Reason) else v for k, v in self.fields.items()}
        try:
            return text.format(**values)
        except (KeyError, IndexError, ValueError):     # a translation with a wrong field: the English
            return template.format(**values)

    def to_json(self) -> dict:
        return {"code": self.code, "fields": {k: v.to_json() if isinstance(v, Reason) else v
                                              for k, v in self.fields.items()}}


# ---- the answer tally ------------------------------------------------------------------------

@dataclass(frozen=True)
class TallyRow:
    """One distinct answer among a run's terminals (None: terminals that state no answer)."""

    answer: str | None          # as the first of its terminals wrote it
    terminals: tuple[int, ...]  # node ids, creation order
    visits: int                 # summed over its terminals
    best_q: float
    mean_q: float
    best_reward: float | None   # None when none of its terminals was given a reward
    correct: bool | None        # None when the run has no gold answer


def answer_tally(tree: Tree) -> list[TallyRow]:
    """Each distinct terminal answer, most terminals first (then most visits, then the answer
    first reached). Example: terminals 7 (2 visits, Q 0.5), 7.0 (1 visit, Q 1.0), 9 (Q 0), gold
    7 -> [TallyRow("7", (1, 2), 3, 1.0, 0.75, None, True), TallyRow("9", (3,), ..., False)]."""
    gold = tree.run.gold if tree.run is not None else None
    groups: dict[str | None, list[Node]] = {}
    for n in tree.terminals():
        groups.setdefault(None if n.answer is None else answer_key(n.answer), []).append(n)
    rows = []
    for nodes in groups.values():
        qs = [n.q for n in nodes]
        rewards = [n.reward for n in nodes if n.reward is not None]
        answer = nodes[0].answer
        rows.append(TallyRow(answer=answer, terminals=tuple(n.id for n in nodes),
                             visits=sum(n.visits for n in nodes), best_q=max(qs), mean_q=sum(qs) / len(qs),
                             best_reward=max(rewards) if rewards else None,
                             correct=None if gold is None else answers_equal(answer, gold)))
    rows.sort(key=lambda r: (-len(r.terminals), -r.visits, r.terminals[0]))
    return rows


# ---- simple scores that pick an answer from the tally ----------------------------------------

def _pick(rows: list[TallyRow], key: Callable[[TallyRow], float | None]) -> str | None:
    """The answer of the stated-answer row with the largest ``key`` (ties: the answer first
    reached); None when no row has a value for it."""
    scored = [(key(r), r.terminals[0], r) for r in rows if r.answer is not None and key(r) is not None]
    if not scored:
        return None
    best = max(s for s, _, _ in scored)
    return min((first, r.answer) for s, first, r in scored if s == best)[1]


def _any_visits(rows: list[TallyRow]) -> bool:
    return any(r.visits for r in rows)


# name -> the answer that score chooses from the tally; a score without data (no visits in a
# sampling run, no rewards) chooses None
SCORES: dict[str, Callable[[list[TallyRow]], str | None]] = {
    "most_visits": lambda rows: _pick(rows, lambda r: r.visits) if _any_visits(rows) else None,
    "highest_q": lambda rows: _pick(rows, lambda r: r.best_q) if _any_visits(rows) else None,
    "majority": lambda rows: _pick(rows, lambda r: len(r.terminals)),
    "highest_reward": lambda rows: _pick(rows, lambda r: r.best_reward),
}


def score_choices(rows: list[TallyRow]) -> dict[str, str | None]:
    """What each of `SCORES` would answer, from an `answer_tally`."""
    return {name: score(rows) for name, score in SCORES.items()}


# ---- the first wrong step --------------------------------------------------------------------

@dataclass(frozen=True)
class WrongStep:
    node: int       # the node whose text holds the step: where "jump to it" goes
    step: str       # the step line
    claimed: int    # what the step says ``a op b`` is
    true: str       # what it is ("undefined" for a division by zero)


def _apply(a: Fraction, op: str, b: int) -> Fraction | None:
    if op == "/":
        return None if b == 0 else a / b
    return {"+": a + b, "-": a - b, "*": a * b}[op]


def claim_error(step: str) -> tuple[int, str] | None:
    """(claimed, true) of the first claim in ``step`` whose arithmetic is wrong, else None.

    A merged step (``298 - 230 + 40 = 108``) is read left to right as one claim; otherwise each
    ``a op b = c`` is a claim. Division is exact: ``7 / 2 = 3`` is wrong.
    Example: ``claim_error("45 - 8 = 38")`` -> ``(38, "37")``."""
    merged = merged_claim(step)
    claims = [(merged[0], merged[1], merged[2])] if merged else \
        [(a, ((op, b),), c) for a, op, b, c in step_claims(step)]
    for left, ops, claimed in claims:
        value: Fraction | None = Fraction(left)
        for op, b in ops:
            value = _apply(value, op, b) if value is not None else None
        if value is None:
            return claimed, "undefined"
        if value != claimed:
            return claimed, str(value)
    return None


def path_has_claims(tree: Tree, path: Iterable[int]) -> bool:
    """Whether any step on ``path`` (the root excluded) claims checkable arithmetic."""
    return any(step_claims(s) or merged_claim(s)
               for nid in path if nid != E.ROOT for s in split_steps(tree[nid].text))


def first_wrong_step(tree: Tree, path: Iterable[int]) -> WrongStep | None:
    """The first step on ``path`` (node ids root to leaf; the root, the question, is skipped)
    whose claimed arithmetic is wrong; None when every claim holds or none is written."""
    for nid in path:
        if nid == E.ROOT:
            continue
        for step in split_steps(tree[nid].text):
            err = claim_error(step)
            if err is not None:
                return WrongStep(node=nid, step=step.strip(), claimed=err[0], true=err[1])
    return None


# ---- one run ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Triage:
    status: str                     # one of STATUSES
    klass: str | None               # one of CLASSES for wrong runs, else None
    why: Reason                     # the reason as a code and its fields (module docstring)
    method: str | None
    gold: str | None
    answer: str | None
    rule: str | None                # the rule that chose the final answer
    gold_terminals: tuple[int, ...] # terminals holding the gold answer
    rules_for_gold: tuple[str, ...] # the run's alternatives that answer the gold answer
    scores_for_gold: tuple[str, ...]  # SCORES that would choose it
    scores: dict                    # score name -> the answer it chooses
    tally: tuple[TallyRow, ...]
    step_check: str | None          # "claims" when the chosen path's steps could be checked
    first_wrong: WrongStep | None

    @property
    def reason(self) -> str:
        """One sentence for a person, in English (``why.render(translate)`` in another language)."""
        return self.why.render()

    def to_json(self) -> dict:
        out = asdict(self)
        out["class"] = out.pop("klass")
        out["why"] = self.why.to_json()
        out["reason"] = self.reason
        out["first_wrong_node"] = self.first_wrong.node if self.first_wrong else None
        return out


def triage(tree: Tree) -> Triage:
    """Class the run folded into ``tree`` (module docstring). Raises ValueError for a tree
    without a RunStarted event (not a run)."""
    if tree.run is None:
        raise ValueError("triage needs a run: the tree has no run_started event")
    gold, final = tree.run.gold, tree.final
    rows = answer_tally(tree)
    scores = score_choices(rows)
    answer = final.answer if final else None
    path = list(final.path) if final else []
    checkable = path_has_claims(tree, path)
    base = dict(method=tree.run.method, gold=gold, answer=answer, rule=final.rule if final else None,
                tally=tuple(rows), scores=scores, step_check="claims" if checkable else None,
                first_wrong=first_wrong_step(tree, path) if checkable else None)
    if gold is None:
        return Triage(status=NO_GOLD, klass=None, why=Reason("no_gold"),
                      gold_terminals=(), rules_for_gold=(), scores_for_gold=(), **base)
    gold_terminals = tuple(n.id for n in tree.terminals() if answers_equal(n.answer, gold))
    rules = tuple(r for r, a in (final.alternatives if final else {}).items() if answers_equal(a, gold))
    by_scores = tuple(s for s, a in scores.items() if answers_equal(a, gold))
    found = dict(gold_terminals=gold_terminals, rules_for_gold=rules, scores_for_gold=by_scores)
    if final is None:
        return Triage(status=UNFINISHED, klass=None, why=Reason("unfinished"), **found, **base)
    if answers_equal(answer, gold):
        return Triage(status=RIGHT, klass=None, why=Reason("right"), **found, **base)
    if answer is None:
        klass, why = NO_ANSWER, Reason("no_answer")
    elif not gold_terminals:
        klass, why = NEVER_REACHED, Reason("never_reached", {"gold": gold})
    else:
        klass = REACHED_NOT_CHOSEN
        names = {"rules": ", ".join(rules), "scores": ", ".join(by_scores)}
        chosen_by = Reason({(True, True): "by_rules_and_scores", (True, False): "by_rules",
                            (False, True): "by_scores", (False, False): "by_none"}[bool(rules), bool(by_scores)],
                           {k: v for k, v in names.items() if v})
        n = len(gold_terminals)
        why = Reason("reached_not_chosen_1" if n == 1 else "reached_not_chosen",
                     {"n": n, "gold": gold, "rule": final.rule, "answer": answer, "chosen_by": chosen_by})
    return Triage(status=WRONG, klass=klass, why=why, **found, **base)


def summarize(reports: Iterable[Triage]) -> dict:
    """Counts per status and per class; the class counts add up to the wrong runs."""
    reports = list(reports)
    by_status = {s: sum(r.status == s for r in reports) for s in STATUSES}
    by_class = {c: sum(r.klass == c for r in reports) for c in CLASSES}
    assert sum(by_class.values()) == by_status[WRONG], "every wrong run has exactly one class"
    return {"runs": len(reports), "status": by_status, "classes": by_class}
