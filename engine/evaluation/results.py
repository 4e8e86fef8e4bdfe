"""One problem's evaluation result, shared by every evaluation (evaluate.py, leco.py).

Its own module so that the LECO evaluation and the general one need not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ProblemResult:
    problem_id: str
    answer: str | None
    gold: str                                     # text: a data set's gold may be "\\frac{1}{2}" or "Paris"
    correct: bool
    generated_tokens: int
    votes: dict[str, int] | None = None
    nodes: int | None = None
    by_rule: dict[str, bool] | None = None        # search methods: would each answer rule be right
    discriminator: dict | None = None             # rstar: candidates judged/confirmed, generator tokens
    entropies: dict[str, float] | None = None     # se, sugar: the four semantic-entropy estimators
    retrieval: str | None = None                  # sugar: "none", "single" or "multi"
    correct_contains: bool | None = None          # se, sugar on open questions: the lenient "contains" check

    def __post_init__(self) -> None:
        # the arithmetic problems' gold is an int: held as text too, so every eval JSON spells it alike
        self.gold = str(self.gold)
