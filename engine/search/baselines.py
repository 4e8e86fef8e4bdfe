"""Baselines with the same event interface as MCTS: greedy chain, self-consistency, best-of-N,
step-level beam search.

Each sample is a chain of step nodes under the root, so the viewer draws every method the same
way. Visits count how many samples passed through a node (equal prefixes share nodes, so a
self-consistency run shows where samples agreed).

- greedy: one argmax solution.
- sc (self-consistency, Wang et al.): N sampled solutions, majority answer.
- bon (best-of-N): N sampled solutions, the one with the best score: by default the model's own
  confidence (highest mean token logprob, ``scorer="logprob"``), or with ``scorer="ppm"`` a
  process preference model's score of the whole solution (engine/ppm/; ``ppm`` names its folder,
  default the one the model ships), as rStar-Math picks among trajectories.
- beam: step-level beam search: each beam proposes ``children`` next steps, the ``beam_width``
  paths with the best score survive (mean token logprob, or with ``scorer="ppm"`` the PPM's score
  of the path so far: PRM-guided beam search); ends when every beam has answered.

A PPM's scores are events (``StepScored``, q_init false), so the viewer shows them on hover.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Iterator

from engine import events as E
from engine.models.base import Stopped
from engine.sampling import GREEDY
from engine.search.common import (SampledConfig, MAX_STEP_TOKENS, Step, StepProposer, TokenCounter, backprop_event,
                                  check_field as _check, is_whole as _int, majority_answer, node_event,
                                  normalize_gold)
from engine.steps import answers_equal
from engine.tree import Tree

SCORERS = ("logprob", "ppm")


@dataclass(frozen=True)
class BaselineConfig(SampledConfig):
    samples: int = 8           # sc, bon
    temperature: float = 0.8
    top_p: float = 1.0
    min_p: float = 0.0
    beam_width: int = 3        # beam
    children: int = 3          # beam: proposals per beam per step
    max_depth: int = 8
    scorer: str = "logprob"    # bon, beam: "logprob" (the model's own confidence) or "ppm"
    ppm: str = ""              # with scorer ppm: a PPM folder ("" = the model's shipped one)

    def __post_init__(self) -> None:
        _check("samples", self.samples, _int(self.samples) and 1 <= self.samples <= 256, "from 1 to 256")
        _check("beam_width", self.beam_width, _int(self.beam_width) and 1 <= self.beam_width <= 32, "from 1 to 32")
        _check("children", self.children, _int(self.children) and 1 <= self.children <= 32, "from 1 to 32")
        _check("max_depth", self.max_depth, _int(self.max_depth) and 1 <= self.max_depth <= 64, "from 1 to 64")
        _check("scorer", self.scorer, self.scorer in SCORERS, f"one of {SCORERS}")
        _check("ppm", self.ppm, isinstance(self.ppm, str) and len(self.ppm) <= 4096, "a folder path or empty")
        self.sampling

    def to_json(self) -> dict:
        out = super().to_json()
        for k in ("scorer", "ppm"):     # runs recorded before the PPM have neither key, and replay byte for byte
            if out[k] == BaselineConfig.__dataclass_fields__[k].default:
                del out[k]
        return out



class _Run:
    """Shared bookkeeping: the tree, node creation with prefix sharing, final events."""

    def __init__(self, method: str, question: str, backend, config, seed: int, gold, should_stop):
        self.gold = normalize_gold(gold)
        self.counter = TokenCounter()
        self.proposer = StepProposer(backend, question, sampling=config.sampling, counter=self.counter,
                                     should_stop=should_stop, max_step_tokens=MAX_STEP_TOKENS)
        self.tree = Tree()
        self.config = config
        self.scorer = None
        if method in ("bon", "beam") and config.scorer == "ppm":
            from engine.search.mcts import PathScorer
            self.scorer = PathScorer(backend, config.ppm)       # a bad folder fails before any event
        self.start = [E.RunStarted(method=method, question=question, prompt=self.proposer.prompt, gold=self.gold,
                                   config=config.to_json(), seed=seed, model=backend.info.name,
                                   format=self.proposer.format.name),
                      E.NodeProposed(node=E.ROOT, parent=E.NO_PARENT, depth=0, action="root",
                                     text=self.proposer.prompt)]

    def emit(self, ev: E.Event) -> E.Event:
        self.tree.apply(ev)
        return ev

    def add_chain(self, steps: list[Step], action: str) -> Iterator[E.Event]:
        """Nodes for a sampled solution, reusing existing nodes with the same text; then a
        backprop of one visit along it (reward 0: baselines have no value estimates). A solution
        longer than ``max_depth`` steps keeps its rest in the last node, so the answer it states
        is in the tree, where the vote reads it. ``self.last_path`` is the chain's path."""
        depth_max = self.config.max_depth
        if len(steps) > depth_max:
            rest = steps[depth_max - 1:]
            steps = steps[:depth_max - 1] + [Step("".join(s.text for s in rest), [t for s in rest for t in s.tokens],
                                                  rest[-1].terminal, rest[-1].answer)]
        node_id, path = E.ROOT, [E.ROOT]
        for depth, s in enumerate(steps, start=1):
            same = next((c for c in self.tree[node_id].children if self.tree[c].text == s.text), None)
            if same is None:
                ev = node_event(len(self.tree), node_id, depth, action, s, self.gold,
                                force_terminal=depth == self.config.max_depth)
                yield self.emit(ev)
                same = ev.node
            node_id = same
            path.append(node_id)
        self.last_path = path
        yield self.emit(backprop_event(self.tree, path, 0.0))

    def score_nodes(self, nodes: list[int]) -> Iterator[E.Event]:
        """StepScored events for ``nodes`` not scored yet (one batched PPM call)."""
        todo = [n for n in nodes if self.tree[n].score is None]
        if self.scorer is None or not todo:
            return
        scores = self.scorer.ppm.score_texts([self.tree[E.ROOT].text + self.tree.path_text(n) for n in todo])
        for n, sc in zip(todo, scores):
            yield self.emit(E.StepScored(node=n, score=sc, source="ppm", model=self.scorer.name, q_init=False))

    def path_score(self, path: list[int]) -> float:
        """The ranking score of a path: its PPM score, or the mean logprob of its tokens."""
        if self.scorer is not None:
            score = self.tree[path[-1]].score
            return score["score"] if score is not None else float("-inf")     # the root alone: nothing to score
        return _mean_logprob(self.tree, path)

    def finish(self, answer, rule, path, alternatives, status, message="") -> Iterator[E.Event]:
        yield self.emit(E.FinalAnswer(answer=answer, rule=rule, path=path,
                                      correct=None if self.gold is None else answers_equal(answer, self.gold),
                                      alternatives=alternatives))
        yield self.emit(self.counter.finished(status, message))


def _leaf_paths(tree: Tree) -> list[list[int]]:
    return [tree.path_to(n.id) for n in tree.nodes if n.id != E.ROOT and not n.children]


def _mean_logprob(tree: Tree, path: list[int]) -> float:
    toks = [t[2] for n in path for t in tree[n].tokens]
    return sum(toks) / len(toks) if toks else float("-inf")


def _sampled(method: str, question: str, backend, *, config: BaselineConfig, seed: int, gold,
             should_stop, greedy: bool) -> Iterator[E.Event]:
    r = _Run(method, question, backend, config, seed, gold, should_stop)
    yield from (r.emit(ev) for ev in r.start)
    n = 1 if greedy else config.samples
    status, message, chains = "done", "", []
    try:
        yield r.emit(E.IterationStarted(iteration=1, of=1))
        sampling = GREEDY if greedy else config.sampling
        solutions = r.proposer.complete([""] * n, seed=seed, sampling=sampling)
        for steps in solutions:
            yield from r.add_chain(steps, "step")
            chains.append(r.last_path)
    except Stopped as e:
        status, message = "stopped", str(e) or E.USER_STOP
    tree = r.tree
    leaves = _leaf_paths(tree)
    answers = [tree[p[-1]].answer if tree[p[-1]].terminal else None for p in leaves]
    # one vote per sample, not per distinct leaf, read from the node that ends its chain in the tree
    votes = [tree[p[-1]].answer if len(p) > 1 and tree[p[-1]].terminal else None for p in chains]
    maj = majority_answer(votes)
    maj_path = next((p for p, a in zip(leaves, answers) if a is not None and answers_equal(a, maj)), [E.ROOT])
    if method == "bon":
        yield from r.score_nodes([p[-1] for p in leaves])
    best_path = max(leaves, key=r.path_score, default=[E.ROOT])
    best = tree[best_path[-1]].answer
    alternatives = {"majority": maj, "best_of_n": best}
    if method == "bon":
        yield from r.finish(best, "best_of_n", best_path, alternatives, status, message)
    else:
        yield from r.finish(maj, "greedy" if greedy else "majority", maj_path,
                            {"greedy": maj} if greedy else alternatives, status, message)


def run_greedy(question, backend, *, config: BaselineConfig = BaselineConfig(), seed: int = 0, gold=None,
               should_stop: Callable[[], bool] | None = None) -> Iterator[E.Event]:
    yield from _sampled("greedy", question, backend, config=config, seed=seed, gold=gold,
                        should_stop=should_stop, greedy=True)


def run_self_consistency(question, backend, *, config: BaselineConfig = BaselineConfig(), seed: int = 0, gold=None,
                         should_stop: Callable[[], bool] | None = None) -> Iterator[E.Event]:
    yield from _sampled("sc", question, backend, config=config, seed=seed, gold=gold,
                        should_stop=should_stop, greedy=False)


def run_best_of_n(question, backend, *, config: BaselineConfig = BaselineConfig(), seed: int = 0, gold=None,
                  should_stop: Callable[[], bool] | None = None) -> Iterator[E.Event]:
    yield from _sampled("bon", question, backend, config=config, seed=seed, gold=gold,
                        should_stop=should_stop, greedy=False)


def run_beam(question, backend, *, config: BaselineConfig = BaselineConfig(), seed: int = 0, gold=None,
             should_stop: Callable[[], bool] | None = None) -> Iterator[E.Event]:
    r = _Run("beam", question, backend, config, seed, gold, should_stop)
    yield from (r.emit(ev) for ev in r.start)
    rng = random.Random(seed)
    tree = r.tree
    beams, finished = [E.ROOT], []
    status, message = "done", ""
    try:
        for depth in range(1, config.max_depth + 1):
            if not beams:
                break
            yield r.emit(E.IterationStarted(iteration=depth, of=config.max_depth))
            prompts = [tree.path_text(b) for b in beams for _ in range(config.children)]
            steps = r.proposer.next_steps(prompts, seed=rng.randrange(2**31))
            candidates = []
            for i, b in enumerate(beams):
                kids, seen = [], set()
                for s in steps[i * config.children:(i + 1) * config.children]:
                    if s.text in seen:
                        continue
                    seen.add(s.text)
                    ev = node_event(len(tree), b, depth, "step", s, r.gold, force_terminal=depth == config.max_depth)
                    yield r.emit(ev)
                    kids.append(ev.node)
                yield r.emit(E.Expanded(node=b, children=kids, phase="expand"))
                candidates += kids
            yield from r.score_nodes(candidates)
            ranked = sorted(candidates, key=lambda n: (-r.path_score(tree.path_to(n)), n))
            keep = ranked[:config.beam_width]
            for n in keep:
                yield r.emit(backprop_event(tree, tree.path_to(n), 0.0))
            finished += [n for n in keep if tree[n].terminal]
            beams = [n for n in keep if not tree[n].terminal]
    except Stopped as e:
        status, message = "stopped", str(e) or E.USER_STOP
    pool = finished or beams or [E.ROOT]
    best = max(pool, key=lambda n: (r.path_score(tree.path_to(n)), -n))
    maj = majority_answer([tree[n].answer for n in finished])
    yield from r.finish(tree[best].answer, "best_beam", tree.path_to(best),
                        {"best_beam": tree[best].answer, "majority": maj}, status, message)
