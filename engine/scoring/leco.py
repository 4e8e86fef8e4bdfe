"""LECO step confidence (Yao et al., "Learning From Correctness Without Prompting Makes LLM
Efficient Reasoner", 2024): three scores per reasoning step from the model's own token
probabilities, and the rules that pick where to cut. Pure functions over arrays and text.

For the tokens of one step with chosen-token probabilities p_1 .. p_n:

- average token score   avg  = (1/n) Σ p_i
- step divergence score div  = ln( KL(P ‖ U)^(1/3) + 1 ),  P_i = p_i / Σ p_j,  U_i = 1/n,
                              KL(P ‖ U) = Σ P_i ln(n P_i)    (0 when every token is equally sure)
- transition score      trans = mean of the first TRANSITION_TOKENS p_i after the step label
                              ("Step k:"), or of the first ones when the step has no label
- confidence            avg + trans − div   (the official code stores −div and sums; a step
                              whose tokens are unevenly sure is less confident)

``p_i`` is either the model's full-vocabulary probability of the chosen token (``"full"``) or,
as the official code does, its probability renormalised over the top-5 tokens at that
position (``"top5"``, the default): exp(lp) / Σ_top5 exp(lp_j). A sampled token outside the
top 5 joins the denominator, so it still gets a probability in (0, 1].

Steps are found in text, never by token id: a token whose text contains the step delimiter
ends the step its text starts in and is not scored (the official code skips its newline
token too); tokens that decode to nothing (special tokens) are not scored either. Unlike the
official code, the label tokens ("Step", " 2", ":") are left out of all three scores, not
only of the transition score: ThoughtScope writes the first step's label itself, so counting
labels elsewhere would make step 1 look less sure than the rest (docs/leco.md).

Not here: generating or regenerating (engine/search/leco.py), drawing (app/leco_tab.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from engine.demo_model.formats import FINAL_SUBQUESTION_LEAD, QUESTION_PREFIX, REPHRASE_PREFIX, STEP_DELIMITER, step_prefix
from engine.steps import extract_answer

TOP_K = 5                  # the official code's softmax over the 5 largest logits
TRANSITION_TOKENS = 5      # the official code averages 5 tokens after a "Step k:" label
PROB_MODES = ("top5", "full")
LOWEST = 2                 # the official code takes the earliest of the two least confident steps

# "Step 12:" with the digits generalised, built from the format module (no literal here)
_NUMBER_MARK = "987654321"
_LABEL = re.compile(r"\s*" + re.escape(step_prefix(int(_NUMBER_MARK))).replace(_NUMBER_MARK, r"\d+"))
_RESTATE_MARKS = (QUESTION_PREFIX.strip(), REPHRASE_PREFIX.strip(), FINAL_SUBQUESTION_LEAD.strip())


# ---- per-token probabilities ---------------------------------------------------------------

def token_prob(logprob: float, top: Sequence[tuple[str, float]] = (), mode: str = "top5") -> float:
    """The chosen token's probability: full vocabulary, or renormalised over the top 5.

    ``token_prob(log(0.5), [("a", log(0.5)), ("b", log(0.25))], "top5") == 0.5 / 0.75``."""
    if mode not in PROB_MODES:
        raise ValueError(f"token_probs must be one of {PROB_MODES}, got {mode!r}")
    p = math.exp(logprob)
    if mode == "full" or not top:
        return p
    tops = [lp for _, lp in list(top)[:TOP_K]]
    chosen_in_top = any(abs(lp - logprob) < 1e-6 for lp in tops)
    z = sum(math.exp(lp) for lp in tops) + (0.0 if chosen_in_top else p)
    return p / z


# ---- the three scores -----------------------------------------------------------------------

def average_score(p: Sequence[float]) -> float:
    """Mean chosen-token probability of the step."""
    p = np.asarray(p, dtype=float)   # (n,)
    if p.size == 0:
        raise ValueError("a step needs at least one scored token")
    return float(p.mean())


def kl_to_uniform(p: Sequence[float]) -> float:
    """KL(P ‖ U) in nats, P = p normalised to sum 1, U uniform over the same n tokens."""
    p = np.asarray(p, dtype=float)
    if p.size == 0 or p.sum() <= 0:
        raise ValueError("a step needs at least one scored token with positive probability")
    P = p / p.sum()
    nz = P > 0                        # 0 · ln 0 = 0
    return float(max(0.0, np.sum(P[nz] * np.log(P[nz] * p.size))))


def divergence_score(p: Sequence[float]) -> float:
    """ln(KL(P ‖ U)^(1/3) + 1): how unevenly sure the model was across the step's tokens."""
    return math.log(kl_to_uniform(p) ** (1.0 / 3.0) + 1.0)


def transition_score(p: Sequence[float], n: int = TRANSITION_TOKENS) -> float:
    """Mean probability of the step's first ``n`` scored tokens (the ones after its label)."""
    p = np.asarray(p, dtype=float)
    if p.size == 0:
        raise ValueError("a step needs at least one scored token")
    return float(p[:n].mean())


def confidence(average: float, divergence: float, transition: float) -> float:
    """Step confidence = average + transition − divergence."""
    return average + transition - divergence


@dataclass(frozen=True)
class StepScore:
    average: float
    divergence: float
    transition: float
    confidence: float

    def to_json(self) -> dict:
        return {"average": self.average, "divergence": self.divergence, "transition": self.transition,
                "confidence": self.confidence}


def score_probs(p: Sequence[float], transition_tokens: int = TRANSITION_TOKENS) -> StepScore:
    a, d, t = average_score(p), divergence_score(p), transition_score(p, transition_tokens)
    return StepScore(a, d, t, confidence(a, d, t))


# ---- steps and their tokens -----------------------------------------------------------------

@dataclass(frozen=True)
class StepSpan:
    """One step of a token sequence: ``text`` without its delimiter, tokens ``[start, end)``
    (the delimiter token included), and ``scored``: the indexes whose probabilities enter
    the scores (not the delimiter, not empty special tokens, not the step label)."""

    text: str
    start: int
    end: int
    scored: tuple[int, ...]


def label_end(text: str) -> int:
    """Characters of ``text`` taken by a leading step label (``"Step 3:"``), else 0."""
    m = _LABEL.match(text)
    return m.end() if m else 0


def segment_steps(token_texts: Sequence[str], prefix: str = "", delimiter: str = STEP_DELIMITER) -> list[StepSpan]:
    """Split a token sequence into steps by the text of its tokens.

    ``prefix`` is text written before the first token (a forced ``"Step 1:"``): it opens the
    first step and can hold its label. A token that holds the delimiter ends the step its text
    starts in; text after the delimiter in the same token opens the next step. Step texts
    equal ``engine.steps.split_steps(prefix + "".join(token_texts))``; lines with nothing but
    whitespace are not steps.

    ``segment_steps([" 2", " +", " 3", " = 5", "\\n", "Step", " 2", ":", " 5", "\\n"], "Step 1:")``
    gives ``"Step 1: 2 + 3 = 5"`` (tokens 0-4, scored 0-3) and ``"Step 2: 5"`` (tokens 5-9,
    scored 8 only: the label tokens 5-7 are not scored)."""
    spans: list[StepSpan] = []
    text, start, members = prefix, 0, []       # members: (token index, char start, char end) in text
    for i, tok in enumerate(token_texts):
        members.append((i, len(text), len(text) + len(tok)))
        text += tok
        if delimiter in tok:
            body, rest = text.split(delimiter, 1)[0], text.rsplit(delimiter, 1)[1]
            spans += _span(body, start, i + 1, members, token_texts, delimiter)
            text, start, members = rest, i + 1, []
    if members or text.strip():
        spans += _span(text, start, len(token_texts), members, token_texts, delimiter)
    return spans


def _span(body: str, start: int, end: int, members: list, token_texts: Sequence[str], delimiter: str) -> list[StepSpan]:
    if not body.strip():
        return []
    skip = label_end(body)
    # a token is scored when it carries text past the label, is not (part of) the delimiter,
    # and is not an empty special token
    scored = tuple(i for i, a, b in members
                   if b > skip and a < len(body) and token_texts[i] and delimiter not in token_texts[i])
    return [StepSpan(body, start, end, scored)]


# ---- which steps may be cut -----------------------------------------------------------------

def not_candidate_reason(step_text: str, read=extract_answer) -> str | None:
    """Why a step may not be chosen as the cut (None: it may). As in the official code, a line
    that states an answer ("The answer is N."; ``read`` is the model's format's reader) or only
    restates the task is never cut."""
    if read(step_text) is not None:
        return "states the answer"
    stripped = step_text.strip()
    if any(stripped.startswith(m) or m in stripped for m in _RESTATE_MARKS if m):
        return "restates the question"
    return None


def pick_cut(confidences: Sequence[float], candidate: Sequence[bool], lowest: int = LOWEST) -> tuple[int | None, list[int]]:
    """(cut, lowest steps): among the ``lowest`` least confident candidate steps, the earliest.

    Ties in confidence go to the earlier step. No candidate: (None, []).
    ``pick_cut([0.9, 0.2, 0.5, 0.1], [True, True, True, False]) == (1, [1, 2])``."""
    if len(confidences) != len(candidate):
        raise ValueError("confidences and candidate flags must have the same length")
    ranked = sorted((c, i) for i, (c, ok) in enumerate(zip(confidences, candidate)) if ok)
    chosen = [i for _, i in ranked[:lowest]]
    return (min(chosen) if chosen else None), sorted(chosen)


def leco_vote(answers: Sequence[str | None]) -> str | None:
    """The official final answer over rounds: the first round's answer weighs 1.5, every
    rethink's 1.0; the heaviest wins, a tie goes to the answer seen most recently.
    ``leco_vote(["7", "9", "9"]) == "9"``; ``leco_vote(["7", "9", "8"]) == "7"``."""
    weight: dict[str, float] = {}
    last_seen: dict[str, int] = {}
    for i, a in enumerate(answers):
        if a is None:
            continue
        weight[a] = weight.get(a, 0.0) + (1.5 if i == 0 else 1.0)
        last_seen[a] = i
    if not weight:
        return None
    return max(weight, key=lambda a: (weight[a], last_seen[a]))
