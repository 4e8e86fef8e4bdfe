"""Text formats of the embedded reasoning model: the one place that spells them.

The training script renders problems with these functions, and the search methods build
their prompts with the same ones, so what the model was taught and what it is asked always
agree. docs/formats.md shows every format with an example.

A solution is a list of lines; the step delimiter is a newline (STEP_DELIMITER). This module
only writes text; parsing it (answers, steps) lives in engine/steps.py.
"""

from __future__ import annotations

STEP_DELIMITER = "\n"
QUESTION_PREFIX = "Question: "
CODE_HEADER = "Code:"
REPHRASE_PREFIX = "Rephrased: "
ANSWER_TEMPLATE = "The answer is {answer}."
FINAL_SUBQUESTION_LEAD = "Now we can answer the question: "


def question_prompt(question: str) -> str:
    """The prompt every format starts from: ``"Question: ...\\n"``."""
    return f"{QUESTION_PREFIX}{question.strip()}{STEP_DELIMITER}"


def code_prompt(question: str) -> str:
    """The prompt of the code-augmented format: the question, then a ``Code:`` line."""
    return question_prompt(question) + CODE_HEADER + STEP_DELIMITER


def step_prefix(k: int) -> str:
    """``"Step 3:"`` — the forced start of a one-step thought (rStar A1)."""
    return f"Step {k}:"


def subquestion_prefix(k: int) -> str:
    """``"Sub-question 2:"`` — the forced start of a sub-question (rStar A3)."""
    return f"Sub-question {k}:"


def subanswer_prefix(k: int) -> str:
    """``"Answer 2:"`` — the line that answers sub-question k (rStar A3/A4)."""
    return f"Answer {k}:"


def answer_line(answer: int | str) -> str:
    return ANSWER_TEMPLATE.format(answer=answer)


def arithmetic(left: int, op: str, right: int, result: int, split: bool = False) -> str:
    """``arithmetic(23, "+", 14, 37) == "23 + 14 = 37"``; with ``split``, the worked form
    ``"23 + 14 = 23 + 10 + 4 = 33 + 4 = 37"`` where the step has one (see `split_work`)."""
    work = split_work(left, op, right) if split else None
    middle = "".join(f" = {w}" for w in work) if work else ""
    return f"{left} {op} {right}{middle} = {result}"


def _leading_place(n: int) -> int:
    """``_leading_place(356) == 300``, ``_leading_place(56) == 50``."""
    place = 10 ** (len(str(n)) - 1)
    return n // place * place


def split_work(left: int, op: str, right: int) -> tuple[str, str] | None:
    """The two intermediate expressions of a step worked in two easier parts, or None.

    ``+``/``-`` peel the leading place off the right operand (478 + 356 = 478 + 300 + 56 =
    778 + 56); ``*`` splits the larger operand by place (123 * 4 = 100 * 4 + 23 * 4 = 400 +
    92); ``/`` splits the dividend into the largest multiple of the divisor times a power of
    ten and the rest, both divisible (246 / 3 = 240 / 3 + 6 / 3 = 80 + 2). None where a part
    would be zero or the operand is a single digit: the step is then only written directly.
    """
    if op in "+-":
        hi = _leading_place(right)
        if right < 10 or hi == right:
            return None
        first = left + hi if op == "+" else left - hi
        return f"{left} {op} {hi} {op} {right - hi}", f"{first} {op} {right - hi}"
    if op == "*":
        big = max(left, right)
        hi = _leading_place(big)
        if big < 10 or hi == big:
            return None
        if left >= right:
            return (f"{hi} * {right} + {left - hi} * {right}",
                    f"{hi * right} + {(left - hi) * right}")
        return f"{left} * {hi} + {left} * {right - hi}", f"{left * hi} + {left * (right - hi)}"
    if op == "/" and right > 0 and left % right == 0:
        place = 10 ** (len(str(left)) - 1)
        while place >= 10:
            hi = left // (right * place) * right * place
            if 0 < hi < left:
                lo = left - hi
                return f"{hi} / {right} + {lo} / {right}", f"{hi // right} + {lo // right}"
            place //= 10
    return None


def step_line(k: int, left: int, op: str, right: int, result: int, split: bool = False,
              event: str = "") -> str:
    """``Step 3: 48 - 41 = 7``; with ``event``, the step first names the event it uses in the
    story's words: ``Step 3: sells 41, 48 - 41 = 7``."""
    named = f"{event}, " if event else ""
    return f"{step_prefix(k)} {named}{arithmetic(left, op, right, result, split)}"


def merged_arithmetic(left: int, first: tuple[str, int], second: tuple[str, int],
                      result: int) -> str:
    """Two events in one expression, read as Python reads it: ``298 - 230 + 40 = 108``,
    ``(298 - 230) * 3 = 204`` (brackets only where ``*``/``/`` follows ``+``/``-``)."""
    (op1, n1), (op2, n2) = first, second
    head = f"{left} {op1} {n1}"
    if op1 in "+-" and op2 in "*/":
        head = f"({head})"
    return f"{head} {op2} {n2} = {result}"


def merged_step_line(k: int, left: int, first: tuple[str, int], second: tuple[str, int],
                     result: int, events: tuple[str, str] = ("", "")) -> str:
    """One step that takes two events at once: ``Step 2: 298 - 230 + 40 = 108``; with event
    tags, ``Step 2: loses 230 and buys 40, 298 - 230 + 40 = 108``."""
    named = f"{events[0]} and {events[1]}, " if all(events) else ""
    return f"{step_prefix(k)} {named}{merged_arithmetic(left, first, second, result)}"


def code_step_line(k: int, code: str, left: int, op: str, right: int, result: int) -> str:
    """``Step 2: x2 = x1 - 9  # 37 - 9 = 28``: runnable code, then the claimed arithmetic."""
    return f"{step_prefix(k)} {code}  # {arithmetic(left, op, right, result)}"


def subquestion_lines(k: int, subquestion: str, left: int, op: str, right: int,
                      result: int, final: bool, split: bool = False) -> list[str]:
    """A sub-question and its answer; the last one restates the question and answers it."""
    lead = FINAL_SUBQUESTION_LEAD if final else ""
    work = arithmetic(left, op, right, result, split)
    answer = f"{subanswer_prefix(k)} {work}. {answer_line(result)}"
    return [f"{subquestion_prefix(k)} {lead}{subquestion}", answer]


def rephrase_line(conditions: list[str], question: str) -> str:
    """rStar A5: the question as a numbered list of its conditions."""
    parts = [f"Condition {i}: {c}" for i, c in enumerate(conditions, start=1)]
    return REPHRASE_PREFIX + " ".join(parts) + f" Question: {question}"
