"""SRA-MCTS (Xu et al. 2024, "SRA-MCTS: Self-driven Reasoning Augmentation with Monte Carlo
Tree Search"): the model reflects on the path before expanding, proposes children guided by
that reflection, and scores each step itself (0–10).

One iteration, following the official code (github.com/yuanye1010/SRA-MCTS, MCTS/mcts.py):

1. select — from the root, while the node is expanded, take the child with the highest
   ``V + c · √(2 · ln N_parent / N)`` (unvisited: ``V + inf_bonus``; ties at random, seeded);
   the search ends when the node reached has ``V ≥ end_gate`` (the official ``isTerminal``),
   whether or not it states an answer. If it states none, one greedy completion of the
   solution from that node (the official summary step) is added as a terminal child with
   action ``summary``, and the final answer is read from it. ``early_stop="answered"`` is this
   module's earlier rule: only a terminal that states an answer ends the search, no summary;
2. reflect — the model writes a short analysis of the path (``<end>`` when it is solved; a
   path that states the answer ends without asking, as in the official code);
3. expand — ``children`` next steps, each prompted with the reflection; a proposal whose
   text (stripped) equals an earlier sibling's is merged into it, as the official code keys
   children by their text: no node is made for it and it is not scored, so a node may get
   fewer than ``children`` children; each child gets the model's 0–10 self-evaluation as its
   value V;
4. simulate — from the best child, reflect again and sample ``roll_branch`` next steps, score
   them, and blend: ``V ← (1 − α) · V + α · max(scores)``; the rollout steps are not kept as
   nodes (as in the official code), but shown in the event;
5. backpropagate — every node on the path gets one more visit, and an expanded node's V
   becomes the visit-weighted mean of its children's V.

Constants (defaults) from the official code's ``MCTS_Task``: c = 0.5 (exploration_constant),
inf_bonus = 8 (inf), α = 0.5 (alpha), end_gate = 8.8, children = 3 (branch), roll_branch = 2,
one roll-forward step; a score is the integer digits after ``Score:`` (7.9 reads as 7), clamped
to [0, 10], and an unparsable score counts as 5.

Prompts (engine/formats.py, "method prompts"): for the embedded and base formats the
reflection and the score are continuations of the solution (``Analysis:`` / ``Score:`` after
the path), so a small non-chat model can follow them; for the chat format each is a fresh user
message in the chat template (the question, the steps so far and an instruction in this
project's words, following SRA's structure: analyse the path and say what the next step should
do, or ``<end>``; rate the newest step 0–10 and end with ``Score: N``), read until EOS.

Deliberate differences (docs/code_mcts.md): the continuation prompts above (embedded, base)
instead of SRA's instruction prompts, and the chat format's in this project's words;
``self_eval="confidence"`` replaces the model's written score with 10 × the step's mean token
probability for models that cannot score themselves; the final answer, when no node reached
end_gate, is the answered node with the highest V (SRA returns the highest-V node even when it
has no answer); the summary step is a greedy
continuation of the solution in the same format, not a summary prompt (SRA's own code returns
the solution text as its summary and has an LLM judge it; ReST-MCTS*, which it builds on,
writes the summary with one more model call, as here). ``reflection="simple"`` is the
official code's other mode: reflections only end a path and do not guide the children.
**The embedded model was never trained to reflect or to score steps: its reflections and
scores are whatever it writes after ``Analysis:`` / ``Score:``, shown as is, not a working
self-evaluation.**

Tree statistics: a node's V (0–10) is shown as Q = V / 10 (value = Q · visits), so the tree's
colours share the other methods' scale; the events keep V on SRA's scale.

Not here: the prompts of other methods, or drawing (app/).
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from typing import Callable, Iterator

from engine import events as E
from engine import method_prompts as F
from engine.models.base import StopSpec, Stopped, stop_if
from engine.search.common import (SampledConfig, MAX_STEP_TOKENS, Step, StepProposer, TokenCounter, check_field as _check,
                                  is_whole as _int, majority_answer, node_event, normalize_gold, split_generation)
from engine.sampling import GREEDY
from engine.steps import answers_equal
from engine.tree import Tree

SELF_EVALS = ("prompt", "confidence")
REFLECTIONS = ("common", "simple")   # the official code's use_reflection modes
EARLY_STOPS = ("any", "answered")    # official: any node with V >= end_gate; earlier: only an answer
SUMMARY_ACTION = "summary"           # the greedy completion that writes the answer after an early stop
CONTINUE = "<continue>"
SCORE_LOW, SCORE_HIGH = 0.0, 10.0
SCORE_FALLBACK = 5.0            # the official code's value when no score can be read
END = F.SRA_END
ANALYSIS_LABEL = F.SRA_ANALYSIS_LABEL
SCORE_LABEL = F.SRA_SCORE_LABEL
# the embedded format's budgets; every format's are in engine/formats.py (SRA_LIMITS)
REFLECTION_TOKENS = F.SRA_LIMITS["embedded"]["reflection"][1]
SCORE_TOKENS = F.SRA_LIMITS["embedded"]["score"][1]
# group 1 is the integer digits only: the official reads "Score: 7.9" as 7
# a score and its scale: "7", "7.9", "7/10", "85%", "85/100"
_VALUE = r"(\d+(?:\.\d+)?)\s*(%|/\s*100\b|/\s*10\b)?"
_SCORE = re.compile(r"[Ss]core\s*[:：]\s*" + _VALUE)
_BARE_SCORE = re.compile(r"^\s*" + _VALUE + r"\s*\.?\s*$")   # " 7", "7/10", "7.", "6.5", "85%"


@dataclass(frozen=True)
class SRAConfig(SampledConfig):
    rollouts: int = 8               # iterations
    children: int = 3               # branch
    c: float = 0.5                  # exploration_constant
    inf_bonus: float = 8.0          # inf: an unvisited child's bonus
    alpha: float = 0.5              # value blending with the rollout's best score
    end_gate: float = 8.8           # a selected node with V at least this ends the search
    early_stop: str = "any"         # "any" node reaching end_gate (official) or only an "answered" terminal
    roll_branch: int = 2            # rollout proposals scored per simulation
    max_depth: int = 8
    temperature: float = 0.7        # the official code samples at 0.7
    top_p: float = 1.0
    min_p: float = 0.0
    self_eval: str = "prompt"       # "prompt" (the model writes Score: N) or "confidence"
    reflection: str = "common"      # "common": reflections guide the children; "simple": they only end a path
    max_step_tokens: int = MAX_STEP_TOKENS

    def __post_init__(self) -> None:
        _check("rollouts", self.rollouts, _int(self.rollouts) and 1 <= self.rollouts <= 10_000, "from 1 to 10000")
        _check("children", self.children, _int(self.children) and 1 <= self.children <= 32, "from 1 to 32")
        _check("roll_branch", self.roll_branch, _int(self.roll_branch) and 1 <= self.roll_branch <= 32, "from 1 to 32")
        _check("max_depth", self.max_depth, _int(self.max_depth) and 1 <= self.max_depth <= 64, "from 1 to 64")
        for name, hi in (("c", 100), ("inf_bonus", 1000), ("end_gate", 10), ("alpha", 1)):
            v = getattr(self, name)
            _check(name, v, isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= hi,
                   f"a number from 0 to {hi}")
        _check("self_eval", self.self_eval, self.self_eval in SELF_EVALS, f"one of {SELF_EVALS}")
        _check("reflection", self.reflection, self.reflection in REFLECTIONS, f"one of {REFLECTIONS}")
        _check("early_stop", self.early_stop, self.early_stop in EARLY_STOPS, f"one of {EARLY_STOPS}")
        _check("max_step_tokens", self.max_step_tokens, _int(self.max_step_tokens) and 1 <= self.max_step_tokens <= 1024,
               "from 1 to 1024")
        self.sampling  # validates temperature, top_p, min_p



def parse_score(text: str | None) -> tuple[float, bool]:
    """A 0–10 self-evaluation read from model output: (score, parsed).

    ``"Score: 7"`` anywhere -> (7.0, True); only the integer digits are read, as the official
    code reads them (``"Score: 7.9"`` -> 7.0); an output that is only a number (the model
    continued after our ``Score:``: ``" 7"``, ``"7/10"``, ``"6.5"`` -> 6.0) counts too. A real
    model's other scales are read on the 0–10 scale: ``"85%"`` and ``"85/100"`` -> 8.0. Out of
    range is clamped, as the official code does (``"Score: 42"`` -> 10.0); the node inspector
    says so (`read_score`). Anything else (empty, words, arithmetic like ``" 961 - 87"``, a
    negative sign) -> (5.0, False), the official code's fallback, marked as not parsed."""
    value = read_score(text)
    if value is None:
        return SCORE_FALLBACK, False
    return float(math.floor(min(max(SCORE_LOW, value), SCORE_HIGH))), True


def read_score(text: str | None) -> float | None:
    """The score a self-evaluation states, on the 0–10 scale but not clamped (``"85%"`` -> 8.5,
    ``"Score: 226"`` -> 226.0); None when it states none."""
    if not isinstance(text, str) or not text.strip():
        return None
    m = _SCORE.search(text) or _BARE_SCORE.match(text)
    if not m:
        return None
    value = float(m.group(1))
    if (m.group(2) or "").replace(" ", "") in ("%", "/100"):
        value /= 10
    return value if math.isfinite(value) else None


def parse_reflection(text: str | None) -> tuple[str, bool]:
    """(reflection, ends): ``<end>`` or "solved" mark the path as finished (as the official code
    reads them); otherwise the first non-empty line, without an ``Analysis:`` label."""
    text = (text or "").strip()
    if END in text or re.search(r"\bsolved\b", text):
        return END, True
    if ANALYSIS_LABEL in text:
        text = text.split(ANALYSIS_LABEL, 1)[1].strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first, False


class SRAProposer(StepProposer):
    """SRA-MCTS's requests, each written by the model's format (engine/formats.py, "method
    prompts"): the reflection and the self-evaluation (continuations of the solution in the
    embedded and base formats, a fresh chat message in the chat format), and the proposal
    guided by the reflection."""

    def __init__(self, backend, question: str, **kw):
        super().__init__(backend, question, **kw)
        self.question = question

    def _path_prompt(self, path_text: str) -> str:
        return self.prompt + path_text

    def _stop(self, request: str) -> tuple[StopSpec, int]:
        """The stop and token budget of a ``"reflection"`` or ``"score"`` request; a stop string
        counts only after the reply has text where the format says so (embedded: at once)."""
        strings, budget = F.sra_limits(self.format, request)
        return self.format.stop(strings), budget

    def reflect(self, path_texts: list[str], *, seed: int, mode: str = "common") -> list[tuple[str, bool, str]]:
        """(reflection, ends, raw output) per path; a path that states the answer ends unasked.
        ``mode="simple"`` (the official code's simple reflection): the first step is never asked
        about, and a reflection only says whether the path ends (``<continue>`` otherwise)."""
        out: list[tuple[str, bool, str] | None] = [
            (END, True, "") if self.read_answer(p) else (CONTINUE, False, "") if mode == "simple" and p == "" else None
            for p in path_texts]
        ask = [i for i, o in enumerate(out) if o is None]
        if ask:
            prompts = [F.sra_reflection_prompt(self.format, self.backend, self.question, path_texts[i]) for i in ask]
            gens = self._generate(prompts, self.sampling, *self._stop("reflection"), seed)
            for i, g in zip(ask, gens or [None] * len(ask)):
                raw = g.text if g is not None else ""
                text, ends = parse_reflection(raw)
                out[i] = (CONTINUE if mode == "simple" and not ends else text, ends, raw)
        return out  # type: ignore[return-value]

    def propose(self, path_text: str, reflection: str, k: int, depth: int, *, seed: int) -> list[Step]:
        """``k`` next steps after ``path_text``, the reflection written as an ``Analysis:`` line
        just before the step (the model proposes the step in the light of it); steps end and
        answers are read as the format says."""
        guide = F.sra_guide(self.format, reflection)
        prefix = self.first_prefix if path_text == "" else ""      # as StepProposer: only the first step is seeded
        prompts = [self._path_prompt(path_text) + guide + prefix] * k
        gens = self._generate(prompts, self.sampling, self.step_stop(), self.max_step_tokens, seed)
        if gens is None:
            return [Step("[context full]", [], True, None)] * k
        return [(split_generation(g, self.delimiter, prefix, self.format) or [Step(prefix + g.text, [], True, None)])[0]
                for g in gens]

    def score(self, path_texts: list[str], steps: list[Step], mode: str, *, seed: int) -> list[tuple[float, bool, str]]:
        """(score 0–10, parsed, raw) per step."""
        if mode == "confidence":
            return [(round(10 * math.exp(s.mean_logprob), 3) if s.mean_logprob is not None else SCORE_FALLBACK,
                     s.mean_logprob is not None, "") for s in steps]
        prompts = [F.sra_score_prompt(self.format, self.backend, self.question, p, s.text)
                   for p, s in zip(path_texts, steps)]
        gens = self._generate(prompts, self.sampling, *self._stop("score"), seed)
        raws = [g.text for g in gens] if gens is not None else [""] * len(steps)
        return [(*parse_score(r), r) for r in raws]


def _ucb(v: float, visits: int, parent_visits: int, c: float, inf_bonus: float) -> tuple[float, float]:
    """(explore, ucb) of SRA-MCTS: V + c·sqrt(2 ln N_parent / N); unvisited: V + inf_bonus."""
    if visits == 0:
        return inf_bonus, v + inf_bonus
    explore = c * math.sqrt(2 * math.log(max(parent_visits, 1)) / visits)
    return explore, v + explore


def run(question: str, backend, *, config: SRAConfig = SRAConfig(), seed: int = 0, gold=None,
        should_stop: Callable[[], bool] | None = None) -> Iterator[E.Event]:
    """Yield the events of one SRA-MCTS run."""
    gold = normalize_gold(gold)
    rng = random.Random(seed)
    counter = TokenCounter()
    proposer = SRAProposer(backend, question, sampling=config.sampling, max_step_tokens=config.max_step_tokens,
                           counter=counter, should_stop=should_stop)
    tree = Tree()
    V: dict[int, float] = {E.ROOT: 0.0}     # SRA's node values, 0-10
    expanded: set[int] = set()

    def emit(ev: E.Event) -> E.Event:
        tree.apply(ev)
        return ev

    def stats(nid: int, visits: int) -> list:
        return [visits, round(V[nid] / SCORE_HIGH * visits, 6)]

    yield emit(E.RunStarted(method="sra-mcts", question=question, prompt=proposer.prompt, gold=gold,
                            config=config.to_json(), seed=seed, model=backend.info.name,
                            format=proposer.format.name))
    yield emit(E.NodeProposed(node=E.ROOT, parent=E.NO_PARENT, depth=0, action="root", text=proposer.prompt))
    status, message, early = "done", "", None
    try:
        for it in range(1, config.rollouts + 1):
            stop_if(should_stop)
            yield emit(E.IterationStarted(iteration=it, of=config.rollouts))
            path, node_id = [E.ROOT], E.ROOT
            while node_id in expanded and tree[node_id].children:
                node = tree[node_id]
                rows = []
                for cid in node.children:
                    explore, ucb = _ucb(V[cid], tree[cid].visits, node.visits, config.c, config.inf_bonus)
                    rows.append({"node": cid, "visits": tree[cid].visits, "q": V[cid], "explore": explore, "uct": ucb})
                best = max(r["uct"] for r in rows)
                chosen = rng.choice([r["node"] for r in rows if r["uct"] == best])
                yield emit(E.Selected(node=node_id, chosen=chosen, rule="sra_ucb", candidates=rows, c=config.c,
                                      parent_visits=node.visits))
                node_id = chosen
                path.append(node_id)
            leaf = tree[node_id]
            answered = leaf.terminal and leaf.answer is not None
            if V[node_id] >= config.end_gate and (config.early_stop == "any" or answered):
                # SRA's isTerminal: a good enough node ends the search; the answer is written after it
                early = node_id
                if not answered:
                    early = yield from _summarize(proposer, tree, node_id, gold, rng.randrange(2**31), emit)
                break
            roll_child = None
            if not leaf.terminal:
                # reflect, then expand guided by the reflection
                if tree[node_id].reflection is None:
                    (text, ends, raw), = proposer.reflect([tree.path_text(node_id)], seed=rng.randrange(2**31),
                                                          mode=config.reflection)
                    yield emit(E.Reflected(node=node_id, text=text, ends=ends, raw=raw))
                if not tree[node_id].reflection_ends:
                    depth = leaf.depth + 1
                    guide = tree[node_id].reflection if config.reflection == "common" else ""
                    steps = proposer.propose(tree.path_text(node_id), guide, config.children, depth,
                                             seed=rng.randrange(2**31))
                    steps = _merge_equal(steps)
                    scores = proposer.score([tree.path_text(node_id)] * len(steps), steps, config.self_eval,
                                            seed=rng.randrange(2**31))
                    kids = []
                    for s, (score, parsed, raw) in zip(steps, scores):
                        ev = node_event(len(tree), node_id, depth, "step", s, gold,
                                        force_terminal=depth >= config.max_depth)
                        kids.append(ev.node)
                        yield emit(ev)
                        V[ev.node] = score
                        yield emit(E.SelfEvaluated(node=ev.node, score=score, parsed=parsed, raw=raw,
                                                   source=config.self_eval))
                    expanded.add(node_id)
                    yield emit(E.Expanded(node=node_id, children=kids, phase="expand"))
                    # simulate from the best child (by SRA's UCB), blend its value with the rollout's best score
                    rows = [(_ucb(V[k], tree[k].visits, tree[node_id].visits, config.c, config.inf_bonus)[1], k)
                            for k in kids]
                    top = max(u for u, _ in rows)
                    roll_child = rng.choice([k for u, k in rows if u == top])
                    yield from _simulate(proposer, tree, roll_child, config, rng, V, emit)
            # backpropagate: one more visit; an expanded node's V = visit-weighted mean of its children's V
            before = [[tree[n].visits, tree[n].value] for n in path]
            visits = {n: tree[n].visits + 1 for n in path}
            for n in reversed(path):
                kids = tree[n].children
                if n in expanded and kids:
                    num = {k: visits.get(k, tree[k].visits) + (1 if k == roll_child else 0) for k in kids}
                    total = sum(num.values())
                    if total:
                        V[n] = round(sum(V[k] * num[k] for k in kids) / total, 6)
            extra = [roll_child] if roll_child is not None else []
            full = path + extra
            yield emit(E.Backprop(path=full, reward=V[path[-1]] / SCORE_HIGH,
                                  before=before + [[tree[k].visits, tree[k].value] for k in extra],
                                  after=[stats(n, visits.get(n, tree[n].visits + 1)) for n in full]))
    except Stopped as e:
        status, message = "stopped", str(e) or E.USER_STOP
    answer, fpath, alts = _final(tree, V, early)
    yield emit(E.FinalAnswer(answer=answer, rule="highest_value", path=fpath,
                             correct=None if gold is None else answers_equal(answer, gold), alternatives=alts))
    yield emit(counter.finished(status, message))


def _merge_equal(steps: list[Step]) -> list[Step]:
    """The proposals without those whose stripped text an earlier one already has (the official
    code keys a node's children by their text, so a repeated proposal adds no child)."""
    seen: set[str] = set()
    out = []
    for s in steps:
        if s.text.strip() not in seen:
            seen.add(s.text.strip())
            out.append(s)
    return out


def _summarize(proposer: SRAProposer, tree: Tree, node_id: int, gold: str | None, seed: int, emit) -> Iterator[E.Event]:
    """The official summary step after an early stop at a node without an answer: the solution
    so far, completed greedily (through the proposer's ``complete``), becomes one terminal
    child with action ``summary``; returns its id, whose answer is the run's answer."""
    steps = proposer.complete([tree.path_text(node_id)], seed=seed, sampling=GREEDY)[0]
    whole = Step("".join(s.text for s in steps), [t for s in steps for t in s.tokens], True, steps[-1].answer)
    ev = node_event(len(tree), node_id, tree[node_id].depth + 1, SUMMARY_ACTION, whole, gold, force_terminal=True)
    yield emit(ev)
    return ev.node


def _final(tree: Tree, V: dict, early: int | None) -> tuple[str | None, list[int], dict]:
    """(answer, path, every rule's answer): the search's early stop (the node that reached
    end_gate, or the summary written after it), else the answered node with the highest V
    (ties: the older), beside the majority of answers."""
    answered = [n for n in tree.terminals() if n.answer is not None]
    majority = majority_answer([n.answer for n in answered])
    best = early if early is not None else (
        max(answered, key=lambda n: (V.get(n.id, 0.0), -n.id)).id if answered else None)
    answer = tree[best].answer if best is not None else None
    return answer, tree.path_to(best) if best is not None else [E.ROOT], {"highest_value": answer,
                                                                         "majority": majority}


def _simulate(proposer: SRAProposer, tree: Tree, roll: int, config: SRAConfig, rng: random.Random, V: dict,
              emit) -> Iterator[E.Event]:
    """SRA's greedy roll-out policy, one step forward: reflect on ``roll``, sample and score
    ``roll_branch`` next steps, blend ``roll``'s V with the best score."""
    node = tree[roll]
    best = SCORE_LOW
    steps: list[Step] = []
    scores: list[float] = []
    if not node.terminal:
        (text, ends, raw), = proposer.reflect([tree.path_text(roll)], seed=rng.randrange(2**31),
                                              mode=config.reflection)
        yield emit(E.Reflected(node=roll, text=text, ends=ends, raw=raw))
        if not ends:
            steps = proposer.propose(tree.path_text(roll), text if config.reflection == "common" else "",
                                     config.roll_branch, node.depth + 1, seed=rng.randrange(2**31))
            scores = [s for s, _, _ in proposer.score([tree.path_text(roll)] * len(steps), steps, config.self_eval,
                                                      seed=rng.randrange(2**31))]
            best = max(scores + [best])
        else:
            best = V[roll]
    else:
        best = V[roll]
    before = V[roll]
    V[roll] = round(before * (1 - config.alpha) + best * config.alpha, 6)
    yield emit(E.SraRollout(node=roll, steps=[s.text for s in steps], scores=scores, best=best,
                            value_before=before, value_after=V[roll], alpha=config.alpha))
