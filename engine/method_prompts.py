"""The methods' own prompts, written per prompt format (engine/formats.py): SRA-MCTS's
reflection and self-evaluation, semantic entropy's short answer and LM-judge question, rStar's
per-action roots, LECO's rethink and code-verified MCTS's step format. For the embedded format
each is the prompt the method used before formats existed, byte for byte.

Not here: the formats themselves (engine/formats.py) or reading what a model writes back
(each method parses its own outputs; answers are read by the format).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.demo_model import formats as demo

if TYPE_CHECKING:
    from engine.formats import PromptFormat


# ---- method prompts: SRA-MCTS, semantic entropy ------------------------------------------------
# Requests a single method makes besides proposing steps, written per format. Each builder takes
# the format and returns the text the model is given; reading the reply stays with the method
# (engine/search/sra_mcts.py: parse_reflection, parse_score; engine/search/sugar.py). The
# embedded branch of every builder is byte for byte the text the method sent before formats had
# these prompts. chat: a fresh user message in the chat template per request (never a
# continuation of the assistant's solution), answered until EOS within a token budget; base: a
# short continuation of the few-shot solution after a line that says what is wanted.

SRA_ANALYSIS_LABEL = "Analysis:"
SRA_SCORE_LABEL = "Score:"
SRA_END = "<end>"
SRA_NO_STEPS = "(no steps yet)"
# (stop strings, new-token budget) per format for SRA's two requests; chat stops at EOS only
SRA_LIMITS: dict[str, dict[str, tuple[tuple[str, ...], int]]] = {
    "embedded": {"reflection": ((demo.STEP_DELIMITER,), 48), "score": ((demo.STEP_DELIMITER,), 8)},
    "chat": {"reflection": ((), 128), "score": ((), 128)},
    "base": {"reflection": (("\n",), 64), "score": (("\n",), 8)},
}
SRA_CHAT_REFLECTION = ("Above is a math problem and the first steps of a solution to it. Look over these "
                       "steps: are they right, and what should the next step work out? Answer in one or "
                       "two sentences on a single line, without writing the next step itself. If the steps "
                       "already reach the final answer, reply with " + SRA_END + " and nothing else.")
SRA_CHAT_SCORE = ("Above is a math problem, the steps of a solution so far and its newest step. Rate the "
                  "newest step from 0 to 10: 0 when it is wrong or does not help, 10 when it is correct "
                  "and clearly moves towards the answer. Give at most one sentence of reasons, then end "
                  "with a line of the form \"" + SRA_SCORE_LABEL + " N\".")
SRA_BASE_REFLECTION = ("(A note on the steps so far: what the next step should work out, or " + SRA_END
                       + " if the answer is given.)")
SRA_BASE_SCORE = "(How good is the last step, from 0 to 10?)"


def _chat(backend, content: str) -> str:
    return backend.apply_chat_template([{"role": "user", "content": content}])


def _steps_block(path_text: str) -> str:
    return path_text.strip() or SRA_NO_STEPS


def _line_end(text: str) -> str:
    """``text`` ending with a newline when it has text (a step cut by its budget has none)."""
    return text if not text or text.endswith("\n") else text + "\n"


def sra_reflection_prompt(fmt: PromptFormat, backend, question: str, path_text: str) -> str:
    """What SRA-MCTS's reflection on a path asks: embedded, the solution continued with
    ``Analysis:``; chat, the question, the steps so far and `SRA_CHAT_REFLECTION` as one user
    message; base, the solution continued with `SRA_BASE_REFLECTION` and ``Analysis:``."""
    if fmt.name == "chat":
        return _chat(backend, f"Problem:\n{question.strip()}\n\nSteps so far:\n{_steps_block(path_text)}\n\n"
                              f"{SRA_CHAT_REFLECTION}")
    root = fmt.root_prompt(backend, question)
    if fmt.name == "embedded":
        return root + path_text + SRA_ANALYSIS_LABEL
    return f"{root}{_line_end(path_text)}{SRA_BASE_REFLECTION}\n{SRA_ANALYSIS_LABEL}"


def sra_score_prompt(fmt: PromptFormat, backend, question: str, path_text: str, step_text: str) -> str:
    """What SRA-MCTS's 0–10 self-evaluation of ``step_text`` (after ``path_text``) asks:
    embedded, the solution through the step continued with ``Score:``; chat, the question, the
    steps before, the newest step and `SRA_CHAT_SCORE` as one user message; base, the solution
    through the step continued with `SRA_BASE_SCORE` and ``Score:``."""
    if fmt.name == "chat":
        return _chat(backend, f"Problem:\n{question.strip()}\n\nSteps so far:\n{_steps_block(path_text)}\n\n"
                              f"Newest step:\n{step_text.strip()}\n\n{SRA_CHAT_SCORE}")
    root = fmt.root_prompt(backend, question)
    if fmt.name == "embedded":
        return root + path_text + step_text + SRA_SCORE_LABEL
    return f"{root}{_line_end(path_text + step_text)}{SRA_BASE_SCORE}\n{SRA_SCORE_LABEL}"


def sra_guide(fmt: PromptFormat, reflection: str) -> str:
    """The reflection as the line written before a proposed step (``"Analysis: ...\\n"``; in
    the chat format a paragraph of the reply, ended by the format's blank line)."""
    return f"{SRA_ANALYSIS_LABEL} {reflection}{fmt.delimiter}" if reflection else ""


def sra_limits(fmt: PromptFormat, request: str) -> tuple[tuple[str, ...], int]:
    """(stop strings, new-token budget) of SRA's ``"reflection"`` or ``"score"`` request."""
    return SRA_LIMITS[fmt.name][request]


# semantic entropy's short answers to open (non-math) questions
SE_OPEN_EMBEDDED = "Answer the following question in one short sentence.\n{question}"
SE_NOTES_EMBEDDED = "Notes:\n{notes}\n\nUsing the notes, answer the question in one short sentence.\n{question}"
SE_OPEN_INSTRUCTION = "Answer the question in a few words. Do not explain."
SE_NOTES_INSTRUCTION = "Using the notes, answer the question in a few words. Do not explain."
SE_BASE_LEAD = "Answer each question in a few words."


def se_open_prompt(fmt: PromptFormat, backend, question: str, notes: str = "") -> str:
    """Semantic entropy's (and SUGAR's) prompt for a short answer to an open question, with the
    retrieved ``notes`` (``"[1] ...\\n[2] ..."``) when there are some. embedded: the question
    with its one-sentence request through ``backend.render_prompt``, as before; chat: one user
    message (notes, `SE_NOTES_INSTRUCTION` or `SE_OPEN_INSTRUCTION`, the question) in the chat
    template, without the format's math instruction; base: a plain ``Question:`` / ``Answer:``
    prompt after `SE_BASE_LEAD`, without the math exemplars."""
    if fmt.name == "embedded":      # the question as given: render_prompt strips the whole text
        text = (SE_NOTES_EMBEDDED.format(notes=notes, question=question) if notes
                else SE_OPEN_EMBEDDED.format(question=question))
        return backend.render_prompt(text)
    q = question.strip()
    if fmt.name == "chat":
        if notes:
            return _chat(backend, f"Notes:\n{notes}\n\n{SE_NOTES_INSTRUCTION}\n\n{q}")
        return _chat(backend, f"{SE_OPEN_INSTRUCTION}\n\n{q}")
    lead = f"Notes:\n{notes}\n\n{SE_BASE_LEAD} Use the notes.\n\n" if notes else f"{SE_BASE_LEAD}\n\n"
    return f"{lead}Question: {q}\nAnswer:"


def se_judge_prompt(fmt: PromptFormat, backend, text: str) -> str:
    """The LM judge's entailment question (engine/scoring/semantic_entropy.py `LM_JUDGE_PROMPT`,
    filled in) as the model is asked it: embedded, through ``backend.render_prompt`` as before;
    chat, one user message without the format's math instruction; base, the question followed
    by ``Answer:``, without the math exemplars."""
    if fmt.name == "embedded":
        return backend.render_prompt(text)
    if fmt.name == "chat":
        return _chat(backend, text)
    return f"{text}\nAnswer:"


# ---- method prompts: rStar ---------------------------------------------------------------------
# rStar forces each action by writing its prefix (``Step k:``, ``Sub-question k:`` / ``Answer k:``,
# ``Rephrased:``) and letting the model continue, after a few-shot prompt of that action's own
# kind (the official code has one per action). These demonstrations are this project's own.
# The embedded model was trained on these prefixes and needs no demonstration: its root is the
# format's own, byte for byte.

RSTAR_FAMILIES = ("steps", "subquestions", "rephrase")     # A1 + A2, A3 + A4, A5
RSTAR_DEMOS = {
    "steps": ("Question: Mia has 12 apples. She gives 5 to her brother and buys 8 more. How many apples does "
              "she have now?\n"
              "Step 1: She gives away 5 apples, so 12 - 5 = 7.\n"
              "Step 2: She buys 8 more, so 7 + 8 = 15.\n"
              "The answer is 15."),
    "subquestions": ("Question: A box holds 6 rows of 4 pencils. Tom uses 9 pencils. How many pencils are left in "
                     "the box?\n"
                     "Sub-question 1: How many pencils does the box hold?\n"
                     "Answer 1: 6 * 4 = 24. The answer is 24.\n"
                     "Sub-question 2: Now we can answer the question: how many pencils are left in the box?\n"
                     "Answer 2: 24 - 9 = 15. The answer is 15."),
    "rephrase": ("Question: A train ticket costs $18 and a bus ticket costs $7. How much do 3 train tickets and "
                 "2 bus tickets cost?\n"
                 "Rephrased: Condition 1: A train ticket costs $18. Condition 2: A bus ticket costs $7. "
                 "Question: How much do 3 train tickets and 2 bus tickets cost?"),
}
RSTAR_INSTRUCTIONS = {
    "steps": "Solve the problem in numbered steps, one per line ('Step 1:', 'Step 2:', ...), as in the example. "
             "End with a line: The answer is N.",
    "subquestions": "Solve the problem by asking and answering sub-questions, one per line, as in the example: "
                    "'Sub-question k:' then 'Answer k:' ending with 'The answer is N.'. Start the last "
                    "sub-question with 'Now we can answer the question:'.",
    "rephrase": "Rephrase the problem as a numbered list of its conditions followed by its question, on one line "
                "starting with 'Rephrased:', as in the example.",
}


def rstar_prompt(fmt: PromptFormat, backend, question: str, family: str = "steps") -> str:
    """The root an rStar action of ``family`` continues (its trace and forced prefix follow).
    embedded: the format's own root; chat: one user message (the family's instruction, its
    demonstration, the question) in the chat template, the trace written as the reply; base: the
    demonstration, then ``Question: ...`` on its own line."""
    if family not in RSTAR_FAMILIES:
        raise ValueError(f"family must be one of {RSTAR_FAMILIES}, got {family!r}")
    if fmt.name == "embedded":
        return fmt.root_prompt(backend, question)
    from engine.inputs import check_text
    check_text(question)
    q = question.strip()
    if fmt.name == "chat":
        return _chat(backend, f"{RSTAR_INSTRUCTIONS[family]}\n\nExample:\n{RSTAR_DEMOS[family]}\n\nQuestion: {q}")
    return f"{RSTAR_DEMOS[family]}\n\nQuestion: {q}\n"


# ---- method prompts: LECO ----------------------------------------------------------------------
# The official LECO rethink prompt moves the steps it trusts before an instruction to go on, so a
# rethink is a new request, not the old reply continued. The embedded model has one prompt and
# continues its own solution (engine/search/leco.py says why its rethinks are sampled).

LECO_CHAT_RETHINK = ("The first steps of a solution to this problem are below; they are correct. Continue the "
                     "solution from where they stop, one step per paragraph with a blank line between steps, "
                     "and end with the final answer written as \\boxed{ANSWER}.")
LECO_BASE_RETHINK = "The steps below are correct. Continue the solution from them."


def leco_rethink_prompt(fmt: PromptFormat, backend, question: str, kept: str) -> str | None:
    """The root a LECO rethink continues: None for the embedded format (it continues the kept
    steps in its own solution); chat: one user message (the problem, the kept steps, the
    instruction), the reply being only the new steps; base: the few-shot prompt with the kept
    steps written after a line that says they are correct."""
    if fmt.name == "embedded":
        return None
    steps = kept.strip() or "(none: start from the beginning)"
    if fmt.name == "chat":
        return _chat(backend, f"Problem:\n{question.strip()}\n\nCorrect first steps:\n{steps}\n\n{LECO_CHAT_RETHINK}")
    return f"{fmt.root_prompt(backend, question)}{LECO_BASE_RETHINK}\n{_line_end(kept) if kept.strip() else ''}"


# ---- method prompts: code-verified MCTS ----------------------------------------------------------
# rStar-Math's step format: each step is Python with its reasoning in comments, and the program
# of a path (every passing step so far) is run cumulatively; the last step prints the answer.
# The embedded model was trained on its own one-line form (``Step k: x2 = x1 - 9  # 37 - 9 = 28``
# after a ``Code:`` line) and keeps it.

CODE_DEMO_QUESTION = "A box holds 6 rows of 4 pencils. Tom uses 9 pencils. How many pencils are left in the box?"
CODE_DEMO = ("# Step 1: the box holds 6 rows of 4 pencils\n"
             "total = 6 * 4\n\n"
             "# Step 2: Tom uses 9 of them\n"
             "left = total - 9\n\n"
             "# Step 3: print the answer\n"
             "print(left)")
CODE_CHAT_INSTRUCTION = ("Solve the problem by writing Python, one step at a time: each step is a comment "
                         "'# Step k: ...' saying what it works out, then the code for it, with a blank line between "
                         "steps. Use plain Python without imports. The last step prints the answer with print(...). "
                         "Write only the code, as in the example.")
CODE_STEP_DELIMITER = "\n\n"     # a step is a comment and its code lines: steps are split at blank lines
CODE_STEP_MARK = "# Step "


def code_step_prefix(k: int) -> str:
    """``"# Step 2:"`` — the comment a chat or base model's code step is seeded with."""
    return f"{CODE_STEP_MARK}{k}:"


def code_prompt(fmt: PromptFormat, backend, question: str) -> str:
    """The root of code-verified MCTS. embedded: the format's root and a ``Code:`` line, as
    before; chat: one user message (instruction, a worked example, the problem), the code
    written as the reply; base: the example as a ``Question:`` / ``Code:`` exemplar, then the
    problem's ``Question:`` / ``Code:``."""
    if fmt.name == "embedded":
        return fmt.root_prompt(backend, question) + demo.CODE_HEADER + demo.STEP_DELIMITER
    from engine.inputs import check_text
    check_text(question)
    q = question.strip()
    if fmt.name == "chat":
        return _chat(backend, f"{CODE_CHAT_INSTRUCTION}\n\nExample problem: {CODE_DEMO_QUESTION}\n{CODE_DEMO}\n\n"
                              f"Problem: {q}")
    return f"Question: {CODE_DEMO_QUESTION}\nCode:\n{CODE_DEMO}\n\nQuestion: {q}\nCode:\n"


def code_delimiter(fmt: PromptFormat) -> str:
    """Where one code step ends: a line for the embedded model, a blank line otherwise."""
    return demo.STEP_DELIMITER if fmt.name == "embedded" else CODE_STEP_DELIMITER
