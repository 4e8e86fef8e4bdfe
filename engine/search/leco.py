"""LECO, learning from correctness (Yao et al. 2024): trust the steps before the one the model
is least sure of, and rethink from there.

1. Round 0: one greedy solution (``Step 1:`` seeded, as every plain-step method here).
2. Score every step (engine/scoring/leco.py: average, divergence, transition, confidence).
3. Among the steps generated in the latest round that may be cut (not an answer line, not a
   restated question), take the ``lowest`` (2) least confident and cut at the earliest of them;
   keep every step before it.
4. Regenerate the rest of the solution from the kept steps (a new round), score its new steps.
5. Stop when the round's answer equals the previous round's, or after ``max_rounds`` rethinks
   (the official loop always rethinks at least once).
6. Final answer: the official vote over the rounds' answers (round 0 weighs 1.5, each rethink
   1.0, ties to the most recent); the last round's and the first round's answers are reported
   beside it.

Deliberate difference from the official code: there, the rethink prompt is a different text
(the kept steps are moved before an instruction), so a greedy rethink can continue differently.
The embedded model has one prompt format, so a greedy rethink from the kept steps would
repeat the cut step word for word; rethinks are therefore *sampled* (``temperature``, default
0.8, seeded). ``temperature 0`` gives a greedy rethink, which here ends after one round.

Each round's steps are nodes: round 0 is a chain under the root, a rethink branches off the
last kept step, so the Search tab draws the rethinks as branches. Events per round:
`StepScores`, `StepCut`, `Continuation`, `RoundAnswer` (engine/events.py).

Not here: the score formulas (engine/scoring/leco.py), the view (app/leco_tab.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Iterator

from engine import events as E
from engine.formats import EMBEDDED, PromptFormat
from engine.method_prompts import leco_rethink_prompt
from engine.models.base import Stopped
from engine.sampling import GREEDY
from engine.scoring import leco as S
from engine.search.common import (SampledConfig, Step, StepProposer, TokenCounter, backprop_event, check_field as _check,
                                  is_whole as _int, node_event, normalize_gold)
from engine.steps import answers_equal
from engine.tree import Tree


@dataclass(frozen=True)
class LECOConfig(SampledConfig):
    max_rounds: int = 3                     # rethink rounds at most (official: 3)
    lowest: int = S.LOWEST                  # cut at the earliest of this many least confident steps
    token_probs: str = "top5"               # "top5" (official) or "full" vocabulary probabilities
    transition_tokens: int = S.TRANSITION_TOKENS
    temperature: float = 0.8                # rethinks are sampled (see the module docstring)
    top_p: float = 1.0
    min_p: float = 0.0

    def __post_init__(self) -> None:
        _check("max_rounds", self.max_rounds, _int(self.max_rounds) and 1 <= self.max_rounds <= 10, "from 1 to 10")
        _check("lowest", self.lowest, _int(self.lowest) and 1 <= self.lowest <= 16, "from 1 to 16")
        _check("token_probs", self.token_probs, self.token_probs in S.PROB_MODES, f"one of {S.PROB_MODES}")
        _check("transition_tokens", self.transition_tokens,
               _int(self.transition_tokens) and 1 <= self.transition_tokens <= 64, "from 1 to 64")
        self.sampling



def step_probs(node_text: str, tokens: list, mode: str, delimiter: str = EMBEDDED.delimiter) -> list[float] | None:
    """The probabilities that enter a step's scores, from its node text and token rows
    (``[id, text, logprob, top]``); None when the step has no scorable token. ``delimiter``:
    the model's format's step delimiter (a chat step is a paragraph)."""
    texts = [t[1] for t in tokens]
    joined = "".join(texts)
    prefix = node_text[:len(node_text) - len(joined)] if joined and node_text.endswith(joined) else ""
    spans = S.segment_steps(texts, prefix, delimiter)
    if not spans or not spans[0].scored:
        return None
    return [S.token_prob(tokens[i][2], [tuple(a) for a in tokens[i][3]] if len(tokens[i]) > 3 else (), mode)
            for i in spans[0].scored]


def scores_event(tree: Tree, rnd: int, path: list[int], new: set[int], cfg: LECOConfig,
                 fmt: PromptFormat = EMBEDDED) -> E.StepScores:
    rows, probs = [], []
    for index, nid in enumerate(path[1:]):
        node = tree[nid]
        p = step_probs(node.text, node.tokens, cfg.token_probs, fmt.delimiter)
        reason = S.not_candidate_reason(node.text, fmt.read_answer) or (None if p else "no scored tokens")
        row = {"node": nid, "index": index, "new": nid in new, "candidate": reason is None and nid in new,
               "reason": reason, "average": None, "divergence": None, "transition": None, "confidence": None}
        if p:
            row.update(S.score_probs(p, cfg.transition_tokens).to_json())
        rows.append(row)
        probs.append(p or [])
    return E.StepScores(round=rnd, path=path, steps=rows, token_probs=probs, mode=cfg.token_probs)


def cut_event(ev: E.StepScores, lowest: int) -> E.StepCut:
    """The cut read from the (rounded) scores event, so a replay decides exactly the same."""
    conf = [r["confidence"] if r["confidence"] is not None else 0.0 for r in ev.steps]
    index, low = S.pick_cut(conf, [r["candidate"] for r in ev.steps], lowest)
    steps = ev.path[1:]
    if index is None:       # nothing may be cut: the whole solution is redone (official GPT script)
        return E.StepCut(round=ev.round, node=None, index=0, lowest=[], kept=[], rule="no_candidate")
    return E.StepCut(round=ev.round, node=steps[index], index=index, lowest=[steps[i] for i in low],
                     kept=steps[:index])


def run(question, backend, *, config: LECOConfig = LECOConfig(), seed: int = 0, gold=None,
        should_stop: Callable[[], bool] | None = None) -> Iterator[E.Event]:
    gold = normalize_gold(gold)
    counter = TokenCounter()
    proposer = StepProposer(backend, question, sampling=config.sampling, counter=counter, should_stop=should_stop)
    tree = Tree()
    rng = random.Random(seed)

    def emit(ev: E.Event) -> E.Event:
        tree.apply(ev)
        return ev

    def add(steps: list[Step], parent: int) -> Iterator[E.Event]:
        for s in steps:
            ev = node_event(len(tree), parent, tree[parent].depth + 1, "step", s, gold)
            yield emit(ev)
            parent = ev.node

    yield emit(E.RunStarted(method="leco", question=question, prompt=proposer.prompt, gold=gold,
                            config=config.to_json(), seed=seed, model=backend.info.name,
                            format=proposer.format.name))
    yield emit(E.NodeProposed(node=E.ROOT, parent=E.NO_PARENT, depth=0, action="root", text=proposer.prompt))
    answers: list[str | None] = []
    paths: list[list[int]] = []
    status, message = "done", ""
    scores: E.StepScores | None = None
    try:
        for rnd in range(config.max_rounds + 1):
            parent = E.ROOT
            if scores is not None:
                cut = emit(cut_event(scores, config.lowest))
                yield cut
                parent = cut.kept[-1] if cut.kept else E.ROOT
            yield emit(E.IterationStarted(iteration=rnd + 1, of=config.max_rounds + 1))
            call_seed = rng.randrange(2**31)
            sampling = GREEDY if rnd == 0 else config.sampling
            prefix_text = tree.path_text(parent) if parent != E.ROOT else ""
            # a chat or base model rethinks from its own prompt, the kept steps moved before the
            # instruction (the official structure); the embedded model continues its solution
            root = leco_rethink_prompt(proposer.format, backend, question, prefix_text) if rnd > 0 else None
            steps = proposer.complete([prefix_text if root is None else ""], seed=call_seed, sampling=sampling,
                                      root=root)[0]
            first = len(tree)
            yield from add(steps, parent)
            new = list(range(first, len(tree)))
            path = tree.path_to(new[-1]) if new else tree.path_to(parent)
            yield emit(backprop_event(tree, path, 0.0))
            if rnd > 0:
                yield emit(E.Continuation(round=rnd, parent=parent, nodes=new,
                                          text="".join(tree[n].text for n in new), seed=call_seed))
            scores = emit(scores_event(tree, rnd, path, set(new), config, proposer.format))
            yield scores
            last = tree[path[-1]] if len(path) > 1 else None
            answer = last.answer if last is not None and last.terminal else None
            previous = answers[-1] if answers else None
            answers.append(answer)
            paths.append(path)
            stop, reason = False, ""
            # the same stated answer twice ends the rethinks; two rounds with no answer are not "the
            # same answer" (None == None): the next round still gets its chance
            if rnd > 0 and answer is not None and answers_equal(answer, previous):
                stop, reason = True, "answer unchanged"
            elif rnd == config.max_rounds:
                stop, reason = True, "max rounds"
            yield emit(E.RoundAnswer(round=rnd, answer=answer, previous=previous,
                                     correct=None if gold is None else answers_equal(answer, gold),
                                     stop=stop, reason=reason))
            if stop:
                break
    except Stopped as e:
        status, message = "stopped", str(e) or E.USER_STOP
    final = S.leco_vote(answers)
    final_path = next((p for p, a in zip(reversed(paths), reversed(answers)) if a is not None and a == final),
                      [E.ROOT])
    yield emit(E.FinalAnswer(answer=final, rule="leco_vote", path=final_path,
                             correct=None if gold is None else answers_equal(final, gold),
                             alternatives={"leco_vote": final, "last_round": answers[-1] if answers else None,
                                           "first_round": answers[0] if answers else None}))
    yield emit(counter.finished(status, message))
