"""Reading model output: split it into steps, pull out the final answer, compare answers.

Works on text only, never on token ids, so it is the same for every tokenizer. The step
delimiter and the answer phrase come from the format module (one place for every literal).

This is the embedded model's reader: its answers are ``The answer is N.`` only. Real models'
answers (``\\boxed{}``, ``#### N``, "Answer: N") are read by engine/answers.py, which also
owns answer equality (re-exported here); engine/formats.py picks the reader per model.

Not here: writing the formats (engine/demo_model/formats.py) or scoring steps.
"""

from __future__ import annotations

import re

from engine.answers import answers_equal  # noqa: F401 (re-exported: answers compare by value)
from engine.demo_model.formats import STEP_DELIMITER

# "The answer is 28." / "the answer is -3.5" / "The answer is 1,065"
_ANSWER = re.compile(r"[Tt]he (?:final )?answer is:?\s*\$?\s*(-?[\d,]*\.?\d+(?:/\d+)?)")
_NUMBER = re.compile(r"-?\d[\d,]*\.?\d*")
# "478 + 356 = 834", also worked: "478 + 356 = 478 + 300 + 56 = 778 + 56 = 834"
_ARITH = re.compile(r"(-?\d+)\s*([-+*/])\s*(-?\d+)((?:\s*=\s*-?\d+(?:\s*[-+*/]\s*-?\d+)*)+)")
_CHAIN_END = re.compile(r"=\s*(-?\d+)\s*$")
# two events in one expression: "298 - 230 + 40 = 108", "(298 - 230) * 3 = 204"
_MERGED = re.compile(r"(\()?\s*(-?\d+)\s*([-+*/])\s*(-?\d+)\s*(\))?\s*([-+*/])\s*(-?\d+)\s*=\s*(-?\d+)")


def split_steps(text: str, delimiter: str = STEP_DELIMITER) -> list[str]:
    """Non-empty lines (steps) of a solution, in order, without their delimiter."""
    return [s for s in text.split(delimiter) if s.strip()]


def extract_answer(text: str) -> str | None:
    """The last stated answer, normalised (``"1,065"`` -> ``"1065"``), else None.

    The last, because a solution that answers sub-questions on the way ("Answer 2: ... The
    answer is 88.") states its final answer at the end."""
    matches = _ANSWER.findall(text)
    return normalize_answer(matches[-1]) if matches else None


def normalize_answer(answer: str) -> str:
    """The number as the model wrote it, without thousands commas or a final full stop:
    ``"1,065"`` -> ``"1065"``, ``"-3.5"`` stays ``"-3.5"`` (compared by value, never rewritten)."""
    return answer.strip().rstrip(".").replace(",", "")


def step_claims(step: str) -> list[tuple[int, str, int, int]]:
    """The ``left op right = result`` claims written in a step, in order.

    In a worked chain (``a op b = ... = c``) the claim is about the chain's last number; a
    chain that does not end in a bare number claims nothing."""
    claims = []
    for a, op, b, chain in _ARITH.findall(step):
        end = _CHAIN_END.search(chain)
        if end:
            claims.append((int(a), op, int(b), int(end.group(1))))
    return claims


def merged_claim(step: str) -> tuple[int, tuple[tuple[str, int], tuple[str, int]], int] | None:
    """``(left, ((op1, n1), (op2, n2)), result)`` of a step that takes two events in one
    expression (``298 - 230 + 40 = 108``, ``(298 - 230) * 3 = 204``), None for any other
    step. The expression is read left to right, as formats.merged_arithmetic writes it; an
    unbalanced bracket is no claim, nor is a part of a worked chain (``478 + 356 = 478 + 300 +
    56 = ...``: an ``=`` before it)."""
    m = _MERGED.search(step)
    if not m or bool(m.group(1)) != bool(m.group(5)) or "=" in step[:m.start()]:
        return None
    left, op1, n1, op2, n2, result = (m.group(i) for i in (2, 3, 4, 6, 7, 8))
    return int(left), ((op1, int(n1)), (op2, int(n2))), int(result)
