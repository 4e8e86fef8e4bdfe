"""rStar's actions: the legality table, the terminal rule for sub-questions, trajectories in
the embedded model's formats, and the proposer that samples each action's children.

Each action is forced by writing its prefix (engine/demo_model/formats.py) and letting the
model continue; answers are voted on (`vote`). One batched backend call per action (A3: one
for the sub-questions, one for all their answers). The search that uses them is
engine/search/rstar.py.

Not here: the MCTS loop, rewards or the discriminator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from engine.answers import answer_key
from engine.demo_model import formats as F
from engine.method_prompts import RSTAR_FAMILIES, rstar_prompt
from engine.models.base import StopSpec
from engine.search.common import StepProposer, TokenCounter, majority_answer
from engine.steps import extract_answer
from engine.tree import Tree

ACTIONS = ("A1", "A2", "A3", "A4", "A5")
ACTION_NAMES = {"A1": "one-step thought", "A2": "remaining steps (direct answer)",
                "A3": "sub-question + answer", "A4": "re-answer the last sub-question",
                "A5": "rephrase the question"}
# which actions may follow which node (the paper's table; the official code's _create_children)
LEGAL: dict[str, tuple[str, ...]] = {
    "root": ("A1", "A2", "A3", "A5"),
    "A5": ("A1", "A2", "A3"),
    "A3": ("A1", "A2", "A3", "A4"),
    "A4": ("A1", "A2", "A3"),
    "A1": ("A1", "A2"),
    "A2": (),                                   # a direct answer ends the path
}
FINAL_SUBQUESTION_MARK = F.FINAL_SUBQUESTION_LEAD.split(" the question")[0]     # "Now we can answer"
CONTEXT_FULL_TEXT = "[context full]"
SOLUTION_STOP = StopSpec(("\nQuestion:",))
LINE_STOP = StopSpec((F.STEP_DELIMITER,))


# ---- the pure rules ----------------------------------------------------------------------

def legal_actions(kind: str, *, disable_a1: bool = False, disable_a5: bool = False) -> tuple[str, ...]:
    """Actions that may follow a node of ``kind`` ("root" or A1..A5)."""
    off = {a for a, d in (("A1", disable_a1), ("A5", disable_a5)) if d}
    return tuple(a for a in LEGAL[kind] if a not in off)


def question_part(question: str) -> str:
    """The question's last sentence (the official split_user_question):
    ``question_part("Tom has 3 pens. He buys 2. How many pens?") == "How many pens?"``."""
    q = question.strip().rstrip(".")
    return q[q.rfind(".") + 1:].strip()


def is_final_subquestion(subquestion: str, question: str) -> bool:
    """A sub-question answers the original question when it says "Now we can answer" or
    restates the question's last sentence (both the official code's reach_terminal_subquestion)."""
    if FINAL_SUBQUESTION_MARK in subquestion:
        return True
    part = question_part(question)
    return bool(part) and part.lower() in subquestion.lower()


def subquestion_line(a3_text: str) -> str:
    """The sub-question line of an A3 node's text (its answer line dropped)."""
    return a3_text.split(F.STEP_DELIMITER, 1)[0] + F.STEP_DELIMITER


def trace_text(tree: Tree, node_id: int, *, drop_answer: bool = False) -> str:
    """The trajectory after the question prompt, up to ``node_id``. A re-answer (A4) replaces
    the answer of the sub-question before it; ``drop_answer`` leaves the last node's answer out
    (what an A4 child is prompted with)."""
    path = tree.path_to(node_id)[1:]
    parts = []
    for i, nid in enumerate(path):
        n = tree[nid]
        last = i == len(path) - 1
        replaced = not last and tree[path[i + 1]].action == "A4"
        parts.append(subquestion_line(n.text) if n.action == "A3" and (replaced or (last and drop_answer))
                     else n.text)
    return "".join(parts)


def next_number(tree: Tree, node_id: int) -> int:
    """k of the next ``Step k:`` / ``Sub-question k:`` after ``node_id``."""
    return 1 + sum(1 for n in tree.path_to(node_id) if tree[n].action in ("A1", "A3"))


def vote(texts: list[str], read: Callable[[str], str | None] = extract_answer) -> tuple[list, str | None, float, int]:
    """(answers, majority, its share, index of the first completion with it); ``read`` reads
    an answer the way the model's format writes it (default: the embedded model's)."""
    answers = [read(t) for t in texts]
    maj = majority_answer(answers)
    if maj is None:
        return answers, None, 0.0, 0
    same = [a is not None and answer_key(a) == answer_key(maj) for a in answers]
    return answers, maj, sum(same) / len(answers), same.index(True)


def _line(text: str) -> str:
    return text if text.endswith(F.STEP_DELIMITER) else text + F.STEP_DELIMITER


# ---- the generator ----------------------------------------------------------------------

@dataclass
class Child:
    action: str
    text: str
    tokens: list
    answer: str | None = None
    terminal: bool = False
    final: bool = False                 # A3: answers the original question
    votes: tuple | None = None          # (answers, majority, confidence, texts)


class ActionProposer(StepProposer):
    """Proposes the children of each rStar action with one batched backend call per action
    (A3: one for the sub-questions, one for all their answers)."""

    def __init__(self, backend, question: str, config, counter: TokenCounter, should_stop):
        super().__init__(backend, question, sampling=config.sampling, max_step_tokens=config.max_step_tokens,
                         counter=counter, should_stop=should_stop)
        self.question = question
        self.config = config
        # each action continues a root of its own kind (rStar's per-action few-shot prompts); for
        # the embedded model all three are the format's own root
        self.roots = {f: rstar_prompt(self.format, backend, question, f) for f in RSTAR_FAMILIES}
        self.prompt = self.roots["steps"]

    def _sample(self, prompts: list[str], stop: StopSpec, max_new: int, seed: int):
        return self._generate(prompts, self.sampling, stop, max_new, seed)

    def one_step(self, trace: str, k: int, seed: int) -> list[Child]:
        prefix = F.step_prefix(k)
        gens = self._sample([self.roots["steps"] + trace + prefix] * self.config.one_step_thoughts, LINE_STOP,
                            self.max_step_tokens, seed)
        if gens is None:
            return [Child("A1", CONTEXT_FULL_TEXT, [], terminal=True)]
        return [Child("A1", _line(prefix + g.text), [t.to_json() for t in g.tokens]) for g in gens]

    def remaining(self, trace: str, first: bool, seed: int) -> list[Child]:
        prefix = self.first_prefix if first else ""
        gens = self._sample([self.roots["steps"] + trace + prefix] * self.config.final_votes, SOLUTION_STOP,
                            self.format.max_solution_tokens, seed)
        if gens is None:
            return [Child("A2", CONTEXT_FULL_TEXT, [], terminal=True)]
        texts = [prefix + g.text for g in gens]
        answers, maj, conf, i = vote(texts, self.read_answer)
        return [Child("A2", _line(texts[i]), [t.to_json() for t in gens[i].tokens], maj, True,
                      votes=(answers, maj, conf, texts))]

    def subquestions(self, trace: str, k: int, seed: int, seed2: int) -> list[Child]:
        prefix = F.subquestion_prefix(k)
        gens = self._sample([self.roots["subquestions"] + trace + prefix] * self.config.subquestions, LINE_STOP,
                            self.max_step_tokens, seed)
        if gens is None:
            return [Child("A3", CONTEXT_FULL_TEXT, [], terminal=True)]
        sqs = [_line(prefix + g.text) for g in gens]
        finals = [is_final_subquestion(sq[len(prefix):], self.question) for sq in sqs]
        counts = [self.config.final_votes if f else self.config.votes for f in finals]
        answer_prefix = F.subanswer_prefix(k)
        prompts = [self.roots["subquestions"] + trace + sq + answer_prefix for sq, n in zip(sqs, counts)
                   for _ in range(n)]
        answers_gens = self._sample(prompts, LINE_STOP, self.max_step_tokens, seed2)
        if answers_gens is None:
            return [Child("A3", CONTEXT_FULL_TEXT, [], terminal=True)]
        out, at = [], 0
        for g, sq, final, n in zip(gens, sqs, finals, counts):
            group = answers_gens[at:at + n]
            at += n
            texts = [answer_prefix + a.text for a in group]
            answers, maj, conf, i = vote(texts, self.read_answer)
            out.append(Child("A3", sq + _line(texts[i]),
                             [t.to_json() for t in g.tokens] + [t.to_json() for t in group[i].tokens],
                             maj, final, final, votes=(answers, maj, conf, texts)))
        return out

    def reanswer(self, trace_without_answer: str, k: int, seed: int) -> list[Child]:
        prefix = F.subanswer_prefix(k)
        gens = self._sample([self.roots["subquestions"] + trace_without_answer + prefix] * self.config.votes, LINE_STOP,
                            self.max_step_tokens, seed)
        if gens is None:
            return [Child("A4", CONTEXT_FULL_TEXT, [], terminal=True)]
        texts = [prefix + g.text for g in gens]
        answers, maj, conf, i = vote(texts, self.read_answer)
        return [Child("A4", _line(texts[i]), [t.to_json() for t in gens[i].tokens], maj,
                      votes=(answers, maj, conf, texts))]

    def rephrase(self, seed: int) -> list[Child]:
        prefix = F.REPHRASE_PREFIX.rstrip()
        gens = self._sample([self.roots["rephrase"] + prefix], LINE_STOP, self.format.max_solution_tokens, seed)
        if gens is None:
            return [Child("A5", CONTEXT_FULL_TEXT, [], terminal=True)]
        return [Child("A5", _line(prefix + gens[0].text), [t.to_json() for t in gens[0].tokens])]

