"""Step-level Monte Carlo tree search over reasoning steps, as in rStar-Math and rStar.

One iteration (a "rollout"):

1. select — from the root, while the node has children: an unvisited child is tried first
   (uniformly at random, seeded), otherwise the child with the highest
   UCT = Q/N + c * sqrt(ln N_parent / N)   (Q/N is the mean backed-up reward, c = 2 by default);
2. expand — a node without children gets ``children`` next steps sampled in one batched call
   (identical samples are kept as separate children, as in rStar: each one is a vote);
3. simulate — the descent goes on, expanding each new node the same way, until a step states
   the answer (terminal) or ``max_depth`` is reached; every node stays in the tree;
4. reward and backpropagate — the terminal's reward is added to the value and visit count of
   every node on the path.

Rewards: ``self_consistency`` (default, needs no answer key) is the terminal answer's share
among all terminal answers found so far; ``gold`` (+1 / -1) uses the answer key and is labelled
so in the UI: it shows what the search could find, not what it would find on its own; ``ppm``
is rStar-Math's inference: a process preference model (engine/ppm/; ``ppm`` names its folder,
default the one the model ships) scores every new step, the step's Q starts from that score
(counted as one pseudo-visit), unvisited siblings are tried best score first, and a terminal's
reward is the PPM's score of its whole path (-1 when it states no answer). A ``ppm`` folder
with another reward (``gold``: rStar-Math's data generation in later rounds) gives the same
Q start and the reward that reward names. In code-verified MCTS a step that failed its check is
never shown to the PPM (score -1, ``CUT_SCORE``), and the PPM must be one of code steps. docs/ppm.md.

The final answer is read three ways (``majority`` over terminal answers, the ``most_visited``
path, the ``highest_q`` path), and a fourth with a PPM (``ppm``: the terminal it scores highest);
the run reports the one its config names and the others beside it.

Everything the search decides is an event (engine/events.py); the tree it reads statistics from
is folded from those same events, so a replay sees exactly what the search saw.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol

from engine import events as E
from engine.models.base import Stopped, stop_if
from engine.search.common import (SampledConfig, ANSWER_RULES, MAX_STEP_TOKENS, REWARD_SOURCES, StepProposer,
                                  TokenCounter, backprop_event, check_field as _check, is_number, is_whole as _int,
                                  majority_answer, node_event, normalize_gold, reward_for, uct_terms)
from engine.steps import answers_equal
from engine.tree import Tree


@dataclass(frozen=True)
class MCTSConfig(SampledConfig):
    rollouts: int = 16
    children: int = 3
    c: float = 2.0
    max_depth: int = 8
    temperature: float = 0.8
    top_p: float = 1.0
    min_p: float = 0.0
    reward: str = "self_consistency"
    final_rule: str = "majority"
    max_step_tokens: int = MAX_STEP_TOKENS
    ppm: str = ""               # a PPM folder (engine/ppm/); "" with reward ppm: the model's shipped one

    def __post_init__(self) -> None:
        _check("rollouts", self.rollouts, _int(self.rollouts) and 1 <= self.rollouts <= 10_000, "from 1 to 10000")
        _check("children", self.children, _int(self.children) and 1 <= self.children <= 32, "from 1 to 32")
        _check("c", self.c, is_number(self.c) and 0 <= self.c <= 100,
               "a number from 0 to 100")
        _check("max_depth", self.max_depth, _int(self.max_depth) and 1 <= self.max_depth <= 64, "from 1 to 64")
        _check("reward", self.reward, self.reward in REWARD_SOURCES, f"one of {REWARD_SOURCES}")
        _check("final_rule", self.final_rule, self.final_rule in ANSWER_RULES, f"one of {ANSWER_RULES}")
        _check("max_step_tokens", self.max_step_tokens, _int(self.max_step_tokens) and 1 <= self.max_step_tokens <= 1024,
               "from 1 to 1024")
        _check("ppm", self.ppm, isinstance(self.ppm, str) and len(self.ppm) <= 4096, "a folder path or empty")
        _check("final_rule", self.final_rule, self.final_rule != "ppm" or self.scores_steps,
               "not 'ppm' without a PPM (reward ppm or a --ppm folder)")
        self.sampling  # validates temperature, top_p, min_p

    @property
    def scores_steps(self) -> bool:
        """Whether a PPM scores each new step (and starts its Q)."""
        return self.reward == "ppm" or bool(self.ppm)

    def to_json(self) -> dict:
        out = super().to_json()
        if not self.ppm:
            del out["ppm"]      # runs recorded before the PPM have no such key, and replay byte for byte
        return out


def best_child(tree: Tree, node_id: int, key: Callable) -> int | None:
    kids = [tree[c] for c in tree[node_id].children if tree[c].visits > 0]
    return max(kids, key=lambda n: (key(n), -n.id)).id if kids else None


def follow(tree: Tree, key: Callable) -> list[int]:
    """Root-to-leaf path taking the visited child with the highest ``key`` at each node."""
    path = [E.ROOT]
    while (nxt := best_child(tree, path[-1], key)) is not None:
        path.append(nxt)
    return path


def final_answers(tree: Tree) -> dict[str, tuple[str | None, list[int]]]:
    """Each rule's answer and the path (or terminals) that gave it."""
    out = {}
    terms = tree.terminals()
    maj = majority_answer([n.answer for n in terms])
    out["majority"] = (maj, tree.path_to(next((n.id for n in terms if n.answer == maj), E.ROOT)))
    for rule, key in (("most_visited", lambda n: n.visits), ("highest_q", lambda n: n.q)):
        path = follow(tree, key)
        leaf = tree[path[-1]]
        out[rule] = (leaf.answer if leaf.terminal else None, path)
    scored = [n for n in terms if n.score is not None and n.answer is not None]
    if scored:      # trees without PPM scores keep their three rules (and replay unchanged)
        best = max(scored, key=lambda n: (n.score["score"], -n.id))
        out["ppm"] = (best.answer, tree.path_to(best.id))
    elif any(n.score is not None for n in tree.nodes):
        out["ppm"] = (None, [E.ROOT])
    return out


def failed_step(node) -> bool:
    """A code-verified step that failed its check and ended its branch (engine/search/code_mcts.py)."""
    return node.code is not None and not node.code["passed"] and bool(node.code.get("ends_branch"))


def select_child(tree: Tree, node_id: int, c: float, rng: random.Random, drop_failed: bool = False) -> E.Selected:
    """``drop_failed``: failed code steps are not candidates while a sibling passed (rStar-Math
    drops them from the tree; here they stay visible but are never walked into)."""
    node = tree[node_id]
    rows = []
    live = [cid for cid in node.children if not failed_step(tree[cid])] if drop_failed else []
    for cid in live or node.children:
        ch = tree[cid]
        explore, uct = uct_terms(ch.q, ch.visits, node.visits, c)
        rows.append({"node": cid, "visits": ch.visits, "q": ch.q, "explore": explore, "uct": uct})
    unvisited = [r["node"] for r in rows if r["visits"] == 0]
    if len(rows) == 1:
        chosen, rule = rows[0]["node"], "only"
    elif unvisited and all(tree[u].q_init is not None for u in unvisited):
        # a PPM prior: the best-scored untried step first (its Q is the prior, its explore term infinite)
        chosen, rule = max(unvisited, key=lambda u: (tree[u].q_init, -u)), "prior"
    elif unvisited:
        chosen, rule = rng.choice(unvisited), "unvisited"
    else:
        chosen = max(rows, key=lambda r: (r["uct"], -r["node"]))["node"]
        rule = "uct"
    return E.Selected(node=node_id, chosen=chosen, rule=rule, candidates=rows, c=c, parent_visits=node.visits)


class StepVerifier(Protocol):
    """An optional check of each proposed step (code-verified MCTS, engine/search/code_mcts.py)."""

    def check(self, tree: Tree, parent: int, first_id: int, steps: list) -> list[tuple[bool, list[E.Event]]]:
        """Per step (to become nodes first_id, first_id + 1, ...): (ends the branch, events to
        emit right after the step's NodeProposed)."""

    def reward(self, tree: Tree, leaf) -> tuple[float, str, dict] | None:
        """(reward, source, detail) overriding the configured reward at ``leaf``, or None."""


CUT_SCORE = -1.0        # a failed code step's score: never shown to the PPM


class PathScorer:
    """The PPM that scores each new step of a run (loaded once per folder, engine/ppm/)."""

    def __init__(self, backend, path: str, code: bool = False):
        from engine.ppm import resolve
        self.ppm, folder = resolve(backend, path, code)
        self.name = Path(folder).name

    def scores(self, parent_text: str, steps: list, skip: list[bool] | None = None) -> list[float]:
        """Scores of the paths ``parent_text`` + each step (the policy's full text), one batch;
        a step with ``skip`` set (it failed its code check) is not scored: CUT_SCORE."""
        skip = skip or [False] * len(steps)
        got = iter(self.ppm.score_texts([parent_text + s.text for s, k in zip(steps, skip) if not k]))
        return [CUT_SCORE if k else next(got) for k in skip]

    def event(self, node: int, score: float, cut: bool = False) -> E.StepScored:
        if cut:
            return E.StepScored(node=node, score=score, source="code_failure",
                                model=f"{self.name}: not scored, the step failed its code check", q_init=True)
        return E.StepScored(node=node, score=score, source="ppm", model=self.name, q_init=True)


def run(question: str, backend, *, config: MCTSConfig = MCTSConfig(), seed: int = 0, gold: str | int | None = None,
        should_stop: Callable[[], bool] | None = None) -> Iterator[E.Event]:
    """Yield the events of one MCTS run. ``should_stop`` is polled between model calls."""
    yield from search(question, backend, config=config, seed=seed, gold=gold, should_stop=should_stop)


def search(question: str, backend, *, config: MCTSConfig, seed: int, gold, should_stop, method: str = "mcts",
           proposer_cls: type = StepProposer, verifier: StepVerifier | None = None) -> Iterator[E.Event]:
    """The MCTS loop; variants plug in their own proposer (prompt format) and step verifier."""
    gold = normalize_gold(gold)
    if config.reward == "gold" and gold is None:
        raise ValueError("reward 'gold' needs a gold answer")
    # fails before any event; code-verified MCTS needs a PPM of code steps
    scorer = PathScorer(backend, config.ppm, code=verifier is not None) if config.scores_steps else None
    rng = random.Random(seed)
    counter = TokenCounter()
    proposer = proposer_cls(backend, question, sampling=config.sampling, max_step_tokens=config.max_step_tokens,
                            counter=counter, should_stop=should_stop)
    tree = Tree()

    def emit(ev: E.Event) -> E.Event:
        tree.apply(ev)
        return ev

    yield emit(E.RunStarted(method=method, question=question, prompt=proposer.prompt, gold=gold,
                            config=config.to_json(), seed=seed, model=backend.info.name,
                            format=proposer.format.name))
    yield emit(E.NodeProposed(node=E.ROOT, parent=E.NO_PARENT, depth=0, action="root", text=proposer.prompt))
    status, message = "done", ""
    try:
        for it in range(1, config.rollouts + 1):
            stop_if(should_stop)
            yield emit(E.IterationStarted(iteration=it, of=config.rollouts))
            path, node_id, phase = [E.ROOT], E.ROOT, "expand"
            while not tree[node_id].terminal:
                if not tree[node_id].children:
                    kids = []
                    depth = tree[node_id].depth + 1
                    want, tries = config.children, 0
                    while want > 0:
                        texts = [tree.path_text(node_id)] * want
                        steps = proposer.next_steps(texts, seed=rng.randrange(2**31))
                        checks = verifier.check(tree, node_id, len(tree), steps) if verifier else [(False, [])] * len(steps)
                        failed = [any(isinstance(x, E.CodeExecuted) and not x.passed for x in extra)
                                  for _, extra in checks]
                        # a step that failed its code check is not shown to the PPM: it scores -1 (cut)
                        scores = scorer.scores(proposer.prompt + texts[0], steps, skip=failed) if scorer else None
                        for i, (s, (ends, extra)) in enumerate(zip(steps, checks)):   # duplicates are kept, as in rStar: each is a vote
                            ev = node_event(len(tree), node_id, depth, "step", s, gold,
                                            force_terminal=depth >= config.max_depth or ends)
                            kids.append(ev.node)
                            yield emit(ev)
                            for x in extra:
                                yield emit(x)
                            if scorer:
                                yield emit(scorer.event(ev.node, scores[i], cut=failed[i]))
                        # code MCTS's resampling: failed steps are replaced by new samples, a bounded
                        # number of times, so that the node gets `children` steps that passed
                        tries += 1
                        want = sum(failed) if tries <= getattr(config, "resample", 0) else 0
                    yield emit(E.Expanded(node=node_id, children=kids, phase=phase))
                    phase = "simulate"
                sel = select_child(tree, node_id, config.c, rng, getattr(config, "drop_failed", False))
                yield emit(sel)
                node_id = sel.chosen
                path.append(node_id)
            leaf = tree[node_id]
            override = verifier.reward(tree, leaf) if verifier else None
            if override is not None:
                reward, source, detail = override
            elif config.reward == "ppm":
                reward, source = (leaf.score["score"] if leaf.answer is not None else -1.0), "ppm"
                detail = {"model": scorer.name} if leaf.answer is not None else {"model": scorer.name, "no_answer": True}
            else:
                reward, detail = reward_for(leaf.answer, config.reward, gold, [n.answer for n in tree.terminals()])
                source = config.reward
            yield emit(E.TerminalReward(node=node_id, reward=reward, source=source, answer=leaf.answer,
                                        detail=detail))
            yield emit(backprop_event(tree, path, reward))
    except Stopped as e:
        status, message = "stopped", str(e) or E.USER_STOP
    answers = final_answers(tree)
    answer, path = answers[config.final_rule]
    yield emit(E.FinalAnswer(answer=answer, rule=config.final_rule, path=path,
                             correct=None if gold is None else answers_equal(answer, gold),
                             alternatives={r: a for r, (a, _) in answers.items()}))
    yield emit(counter.finished(status, message))
