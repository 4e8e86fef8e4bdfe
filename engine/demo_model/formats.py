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


def arithmetic(left: int, op: str, right: int, result: int) -> str:
    """``arithmetic(23, "+", 14, 37) == "23 + 14 = 37"``."""
    return f"{left} {op} {right} = {result}"


def step_line(k: int, left: int, op: str, right: int, result: int) -> str:
    return f"{step_prefix(k)} {arithmetic(left, op, right, result)}"


def code_step_line(k: int, code: str, left: int, op: str, right: int, result: int) -> str:
    """``Step 2: x2 = x1 - 9  # 37 - 9 = 28``: runnable code, then the claimed arithmetic."""
    return f"{step_prefix(k)} {code}  # {arithmetic(left, op, right, result)}"


def subquestion_lines(k: int, subquestion: str, left: int, op: str, right: int,
                      result: int, final: bool) -> list[str]:
    """A sub-question and its answer; the last one restates the question and answers it."""
    lead = FINAL_SUBQUESTION_LEAD if final else ""
    answer = f"{subanswer_prefix(k)} {arithmetic(left, op, right, result)}. {answer_line(result)}"
    return [f"{subquestion_prefix(k)} {lead}{subquestion}", answer]


def rephrase_line(conditions: list[str], question: str) -> str:
    """rStar A5: the question as a numbered list of its conditions."""
    parts = [f"Condition {i}: {c}" for i, c in enumerate(conditions, start=1)]
    return REPHRASE_PREFIX + " ".join(parts) + f" Question: {question}"
