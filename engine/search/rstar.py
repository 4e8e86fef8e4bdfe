"""rStar (Qi et al. 2024, "Mutual Reasoning Makes Smaller LLMs Stronger Problem-Solvers").

A generator MCTS whose nodes are five kinds of action, then a discriminator that checks the
candidate trajectories (engine/search/rstar_discriminator.py). docs/rstar.md explains it and
lists every difference from the official code (github.com/zhentingqi/rStar).

Actions, each forced by writing its prefix (engine/demo_model/formats.py) and letting the model
continue:

- A1 one-step thought: ``Step k:`` and one line (``one_step_thoughts`` samples, each a child);
- A2 remaining steps: the rest of the solution, ``final_votes`` samples; one child keeps the
  majority answer's first sample, its confidence is the majority's share;
- A3 sub-question + answer: ``subquestions`` sub-questions, each answered ``votes`` times
  (``final_votes`` for the last sub-question); one child per sub-question with its majority
  answer;
- A4 re-answer the last sub-question (``votes`` answers, one child);
- A5 rephrase the question as its conditions (one child).

An expansion creates the children of every legal action at once (`LEGAL`), as the official
code does. A node ends a path when it is a direct answer (A2), a sub-question that answers the
original question ("Now we can answer the question: ..."), or at ``max_depth``. A path's
reward is its last node's confidence when it ends in an A2 or final A3 node, else 0; it is
backpropagated along the path. Selection: an unvisited child is tried first (uniformly at
random, seeded), else UCT with ``c`` (default 2).

Everything decided is an event (engine/events.py): the MCTS events, `Voted` for the votes
behind a node, and the discriminator's `CandidatesCollected`, `DiscriminatorCut`,
`DiscriminatorCompletion`, `DiscriminatorVerdict`, `CandidateTable`. Same seed, same events.

Not here: the actions' rules and their proposer (engine/search/rstar_actions.py), the
discriminator's pure logic (engine/search/rstar_discriminator.py), prompts beyond the action
prefixes (formats.py).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Callable, Iterator

from engine import events as E
from engine.method_prompts import rstar_prompt
from engine.sampling import SamplingConfig
from engine.search import rstar_discriminator as D
# the actions' rules, re-exported: rstar.ACTIONS, rstar.legal_actions, rstar.trace_text, ...
from engine.search.rstar_actions import (ACTION_NAMES, ACTIONS, CONTEXT_FULL_TEXT, LEGAL, SOLUTION_STOP,  # noqa: F401
                                         ActionProposer, Child, is_final_subquestion, legal_actions,
                                         next_number, question_part, subquestion_line, trace_text, vote)
from engine.models.base import Stopped, stop_if
from engine.search.common import (SampledConfig, MAX_STEP_TOKENS, StepProposer, TokenCounter,
                                  backprop_event, check_field as _check, is_number, is_whole as _int, majority_answer,
                                  normalize_gold)
from engine.search.mcts import select_child
from engine.steps import answers_equal, extract_answer
from engine.tree import Tree


@dataclass(frozen=True)
class RStarConfig(SampledConfig):
    # generator (the official do_generate.py defaults, except final_votes: 32 there)
    rollouts: int = 16
    c: float = 2.0
    max_depth: int = 5
    temperature: float = 0.8
    top_p: float = 1.0
    min_p: float = 0.0
    one_step_thoughts: int = 3
    subquestions: int = 3
    votes: int = 10
    final_votes: int = 10
    disable_a1: bool = False
    disable_a5: bool = False
    max_step_tokens: int = MAX_STEP_TOKENS
    # discriminator (the official do_discriminate.py defaults)
    discriminate: bool = True
    discriminator_model: str = ""       # "" = the generator's own model
    cut_mode: str = "words"
    cuts: int = 4
    cut_low: float = 0.2
    cut_high: float = 0.5
    completions_per_cut: int = 1
    disc_temperature: float = 1.0
    consistency: str = "mid"
    score_by: str = "reward"
    confident_skip: float = 0.999
    gold_fallback: bool = False          # ANALYSIS ONLY: the official script's use of the answer key

    def __post_init__(self) -> None:
        _check("rollouts", self.rollouts, _int(self.rollouts) and 1 <= self.rollouts <= 10_000, "from 1 to 10000")
        _check("c", self.c, is_number(self.c) and 0 <= self.c <= 100,
               "a number from 0 to 100")
        _check("max_depth", self.max_depth, _int(self.max_depth) and 1 <= self.max_depth <= 64, "from 1 to 64")
        for name in ("one_step_thoughts", "subquestions"):
            v = getattr(self, name)
            _check(name, v, _int(v) and 1 <= v <= 32, "from 1 to 32")
        for name in ("votes", "final_votes"):
            v = getattr(self, name)
            _check(name, v, _int(v) and 1 <= v <= 256, "from 1 to 256")
        for name in ("disable_a1", "disable_a5", "discriminate", "gold_fallback"):
            v = getattr(self, name)
            _check(name, v, isinstance(v, bool), "true or false")
        _check("max_step_tokens", self.max_step_tokens, _int(self.max_step_tokens) and 1 <= self.max_step_tokens <= 1024,
               "from 1 to 1024")
        _check("discriminator_model", self.discriminator_model, isinstance(self.discriminator_model, str),
               "a model name (empty: the generator's model)")
        _check("cut_mode", self.cut_mode, self.cut_mode in D.CUT_MODES, f"one of {D.CUT_MODES}")
        _check("cuts", self.cuts, _int(self.cuts) and 1 <= self.cuts <= 32, "from 1 to 32")
        for name in ("cut_low", "cut_high"):
            v = getattr(self, name)
            _check(name, v, is_number(v) and 0 < v < 1, "a fraction between 0 and 1")
        _check("cut_high", self.cut_high, self.cut_high >= self.cut_low, f"at least cut_low ({self.cut_low})")
        _check("completions_per_cut", self.completions_per_cut,
               _int(self.completions_per_cut) and 1 <= self.completions_per_cut <= 16, "from 1 to 16")
        _check("consistency", self.consistency, self.consistency in D.CONSISTENCY_RULES,
               f"one of {D.CONSISTENCY_RULES}")
        _check("score_by", self.score_by, self.score_by in D.SCORE_BY, f"one of {D.SCORE_BY}")
        _check("confident_skip", self.confident_skip,
               is_number(self.confident_skip) and 0 <= self.confident_skip <= 1.0, "from 0 to 1")
        self.sampling   # validates temperature, top_p, min_p
        self.disc_sampling

    @property
    def disc_sampling(self) -> SamplingConfig:
        try:
            return SamplingConfig(temperature=self.disc_temperature, top_p=self.top_p, min_p=self.min_p)
        except ValueError as e:
            raise ValueError(f"disc_{e}") from None



def _node_events(tree: Tree, parent: int, child: Child, config: RStarConfig, gold: str | None) -> list[E.Event]:
    depth = tree[parent].depth + 1
    terminal = child.terminal or depth >= config.max_depth
    answer = child.answer if terminal else None
    prior = sum(t[2] for t in child.tokens) / len(child.tokens) if child.tokens else None
    node = len(tree)
    evs: list[E.Event] = [E.NodeProposed(
        node=node, parent=parent, depth=depth, action=child.action, text=child.text, tokens=child.tokens,
        terminal=terminal, answer=answer, correct=None if gold is None or not terminal else answers_equal(answer, gold),
        prior=prior)]
    if child.votes is not None:
        answers, maj, conf, texts = child.votes
        evs.append(E.Voted(node=node, answers=answers, majority=maj, confidence=conf, texts=texts))
    return evs


def is_final(tree: Tree, node_id: int, question: str) -> bool:
    """An A3 node whose sub-question answers the original question."""
    n = tree[node_id]
    return n.action == "A3" and is_final_subquestion(subquestion_line(n.text), question)


def path_reward(tree: Tree, node_id: int, question: str) -> tuple[float, dict]:
    """The reward of a path ending at ``node_id``: its confidence for a direct answer or a final
    sub-question (the official calculate_reward), 0 otherwise (depth limit)."""
    n = tree[node_id]
    if (n.action == "A2" or is_final(tree, node_id, question)) and n.votes is not None:
        v = n.votes
        share = sum(1 for a in v.answers if a is not None and a == v.majority)
        return v.confidence, {"share": share, "of": len(v.answers), "majority": v.majority}
    return 0.0, {"why": "the path ended at the depth limit without answering"
                 if n.text != CONTEXT_FULL_TEXT else "the context is full"}


def solution_nodes(tree: Tree, question: str) -> list[int]:
    """Nodes whose trajectory answers the question (the official find_valid_solution_nodes)."""
    return [n.id for n in tree.nodes if n.id != E.ROOT and n.text != CONTEXT_FULL_TEXT and (
        n.action == "A2" or is_final(tree, n.id, question) or (n.action == "A1" and "answer is" in n.text.lower()))]


def candidate_row(tree: Tree, node_id: int, question: str,
                  read: Callable[[str], str | None] = extract_answer) -> tuple[int, list, str, str | None, float]:
    """(node, path, text, answer, reward) of the trajectory ending at ``node_id``. A trajectory
    cut off by the depth limit keeps its last stated answer (a sub-answer) and that node's
    confidence, as the official concat_solution_trace does; a one-step thought earns 0."""
    n = tree[node_id]
    text = trace_text(tree, node_id)
    answer = read(n.text) if n.text != CONTEXT_FULL_TEXT else None
    reward = n.votes.confidence if n.votes is not None and n.action in ("A2", "A3", "A4") else 0.0
    return node_id, tree.path_to(node_id), text, answer, reward


@functools.lru_cache(maxsize=2)
def _load_discriminator(name: str):
    from engine.models.registry import load_backend
    return load_backend(name)


def run(question: str, backend, *, config: RStarConfig = RStarConfig(), seed: int = 0, gold: str | int | None = None,
        should_stop: Callable[[], bool] | None = None, discriminator_backend=None) -> Iterator[E.Event]:
    """Yield the events of one rStar run: the generator's MCTS, then the discriminator.

    ``discriminator_backend`` (optional): the second model; else ``config.discriminator_model``
    is loaded by name, else the generator's own backend is used."""
    gold = normalize_gold(gold)
    if discriminator_backend is None and config.discriminate:
        # loaded before the search, so a bad name fails at once, not after the rollouts
        discriminator_backend = _load_discriminator(config.discriminator_model) if config.discriminator_model else backend
    rng = random.Random(seed)
    counter = TokenCounter()
    gen = ActionProposer(backend, question, config, counter, should_stop)
    tree = Tree()

    def emit(ev: E.Event) -> E.Event:
        tree.apply(ev)
        return ev

    def expand(node_id: int, phase: str) -> Iterator[E.Event]:
        kind = tree[node_id].action
        trace = trace_text(tree, node_id)
        k = next_number(tree, node_id)
        kids = []
        for action in legal_actions(kind, disable_a1=config.disable_a1, disable_a5=config.disable_a5):
            if action == "A1":
                children = gen.one_step(trace, k, rng.randrange(2**31))
            elif action == "A2":
                children = gen.remaining(trace, k == 1, rng.randrange(2**31))
            elif action == "A3":
                children = gen.subquestions(trace, k, rng.randrange(2**31), rng.randrange(2**31))
            elif action == "A4":
                children = gen.reanswer(trace_text(tree, node_id, drop_answer=True), k - 1, rng.randrange(2**31))
            else:
                children = gen.rephrase(rng.randrange(2**31))
            for ch in children:
                for ev in _node_events(tree, node_id, ch, config, gold):
                    yield emit(ev)
                kids.append(len(tree) - 1)
        yield emit(E.Expanded(node=node_id, children=kids, phase=phase))

    yield emit(E.RunStarted(method="rstar", question=question, prompt=gen.prompt, gold=gold,
                            config=config.to_json(), seed=seed, model=backend.info.name,
                            format=gen.format.name))
    yield emit(E.NodeProposed(node=E.ROOT, parent=E.NO_PARENT, depth=0, action="root", text=gen.prompt))
    status, message, leaves = "done", "", []
    winner_path, final_answer, rule = [E.ROOT], None, "discriminator" if config.discriminate else "generator"
    alternatives: dict = {}
    try:
        for it in range(1, config.rollouts + 1):
            stop_if(should_stop)
            yield emit(E.IterationStarted(iteration=it, of=config.rollouts))
            path, node_id, phase = [E.ROOT], E.ROOT, "expand"
            while not tree[node_id].terminal:
                if not tree[node_id].children:
                    yield from expand(node_id, phase)
                    phase = "simulate"
                sel = select_child(tree, node_id, config.c, rng)
                yield emit(sel)
                node_id = sel.chosen
                path.append(node_id)
            leaves.append(node_id)
            reward, detail = path_reward(tree, node_id, question)
            yield emit(E.TerminalReward(node=node_id, reward=reward, source="votes", answer=tree[node_id].answer,
                                        detail=detail))
            yield emit(backprop_event(tree, path, reward))
        found = [candidate_row(tree, n, question, gen.read_answer) for n in solution_nodes(tree, question) + leaves]
        cands = D.collect_candidates(found)
        yield from _discriminate(question, cands, backend, discriminator_backend, config, rng, counter,
                                 should_stop, gold, emit)
    except Stopped as e:
        status, message = "stopped", str(e) or E.USER_STOP
    table = tree.candidate_table
    if table is not None:
        cands_ev = tree.candidates
        by_id = {c["candidate"]: c for c in cands_ev.candidates}
        if table.winner is not None:
            winner_path = by_id[table.winner]["path"]
            final_answer = by_id[table.winner]["answer"]
        alternatives = {"generator": cands_ev.generator_answer,
                        "majority": majority_answer([c["answer"] for c in cands_ev.candidates
                                                     for _ in range(c["freq"])]),
                        "discriminator": final_answer if config.discriminate else None}
        if not config.discriminate:
            alternatives.pop("discriminator")
    else:       # stopped during the search: the generator's most confident answer so far
        found = [candidate_row(tree, n, question, gen.read_answer) for n in solution_nodes(tree, question) + leaves]
        cands = D.collect_candidates(found)
        rows, win, _ = D.choose_winner(cands, None, config.score_by)
        rule = "generator"
        if win is not None:
            final_answer, winner_path = cands[win].answer, cands[win].path
        alternatives = {"generator": final_answer}
    yield emit(E.FinalAnswer(answer=final_answer, rule=rule, path=winner_path,
                             correct=None if gold is None else answers_equal(final_answer, gold),
                             alternatives=alternatives))
    yield emit(counter.finished(status, message))


def _discriminate(question, cands, backend, disc_backend, config: RStarConfig, rng, counter, should_stop, gold,
                  emit) -> Iterator[E.Event]:
    """The discriminator's events: candidates, cuts, completions, verdicts, the table."""
    answered = [c for c in cands if c.answer is not None]
    conf = D.answer_confidence(cands, config.score_by)     # no-answer candidates count in the total
    gen_answer = D.best_answer(conf)
    skipped = ""
    if not config.discriminate:
        skipped = "the discriminator is off (generator alone)"
    elif not answered:
        skipped = "no candidate states an answer"
    elif config.gold_fallback and gold is not None and not any(answers_equal(c.answer, gold) for c in answered):
        skipped = "ANALYSIS (uses the answer key): no candidate is right, so the official script skips the problem"
    elif conf and max(conf.values()) > config.confident_skip:
        skipped = f"the generator is confident (confidence above {config.confident_skip:g})"
    yield emit(E.CandidatesCollected(candidates=[c.to_json() for c in cands], generator_answer=gen_answer,
                                     confidence=conf, model=(disc_backend or backend).info.name,
                                     generator_tokens=counter.generated, skipped=skipped))
    if skipped.startswith("ANALYSIS"):
        yield emit(E.CandidateTable(rows=D.choose_winner(cands, None, config.score_by)[0], winner=None,
                                    reason=skipped))
        return
    if skipped:
        rows, winner, reason = D.choose_winner(cands, None, config.score_by)
        yield emit(E.CandidateTable(rows=rows, winner=winner, reason=f"{skipped}: {reason}"))
        return
    judge = StepProposer(disc_backend, question, sampling=config.disc_sampling, counter=counter,
                         should_stop=should_stop)
    judge.prompt = rstar_prompt(judge.format, disc_backend, question, "steps")   # the trajectories' own kind
    consistent: dict[int, bool] = {}
    for c in answered:
        if config.cut_mode == "words":
            cuts = D.word_cuts(c.text, config.cuts, config.cut_low, config.cut_high)
        else:
            cuts = D.step_cuts(c.text, config.cuts, rng)
        for i, (ratio, keep, of, prefix) in enumerate(cuts):
            yield emit(E.DiscriminatorCut(candidate=c.candidate, cut=i, mode=config.cut_mode, keep=keep, of=of,
                                          prefix=prefix, ratio=ratio))
        prompts = [judge.prompt + prefix for _, _, _, prefix in cuts for _ in range(config.completions_per_cut)]
        gens = judge._generate(prompts, config.disc_sampling, SOLUTION_STOP, judge.format.max_solution_tokens,
                               rng.randrange(2**31))
        answers = []
        for j, p in enumerate(prompts):
            i = j // config.completions_per_cut
            prefix = cuts[i][3]
            text = gens[j].text if gens is not None else CONTEXT_FULL_TEXT
            a = D.completion_answer(prefix, text, judge.read_answer) if gens is not None else None
            answers.append(a)
            yield emit(E.DiscriminatorCompletion(candidate=c.candidate, cut=i, text=text, answer=a,
                                                 agrees=answers_equal(a, c.answer)))
        agree, need, ok = D.verdict(config.consistency, c.answer, answers)
        consistent[c.candidate] = ok
        yield emit(E.DiscriminatorVerdict(candidate=c.candidate, agree=agree, of=len(answers), needed=need,
                                          consistent=ok, rule=config.consistency))
    rows, winner, reason = D.choose_winner(cands, consistent, config.score_by, gold, config.gold_fallback)
    yield emit(E.CandidateTable(rows=rows, winner=winner, reason=reason))
