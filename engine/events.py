"""Search events: the one source of truth of a run.

Every method is a generator of these small, typed, JSON-serialisable events. The UI folds them
into the tree it draws, the store appends them to SQLite as they happen, replay folds the
first k of them. Same model, config and seed give the same events, byte for byte on the same
machine and library versions (across CPUs, floats within 1e-4: engine/golden.py)
(`Event.to_json` is canonical: sorted keys, floats rounded).

Node content (text, tokens, logprobs) is written once, in `NodeProposed`; statistics change
only through `Backprop` (visits, value sum) and `TerminalReward`.

Not here: folding (engine/tree.py) or storing (engine/store.py).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

ROOT = 0          # the root node's id
NO_PARENT = -1    # the root's parent
FLOAT_DIGITS = 6


def _round(x: Any) -> Any:
    if isinstance(x, float):
        return round(x, FLOAT_DIGITS) if math.isfinite(x) else None   # JSON has no inf/nan
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_round(v) for v in x]
    return x


@dataclass(frozen=True)
class Event:
    type: ClassVar[str] = "event"

    def __post_init__(self) -> None:
        # Canonical from birth: floats rounded, tuples as lists. The live tree then holds exactly
        # what a replay from JSON holds, and a search never reads a value a replay could not see.
        for f in fields(self):
            object.__setattr__(self, f.name, _round(getattr(self, f.name)))

    def to_json(self) -> dict:
        return {"type": self.type, **asdict(self)}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True)
class RunStarted(Event):
    type: ClassVar[str] = "run_started"
    method: str
    question: str
    prompt: str
    gold: str | None
    config: dict
    seed: int
    model: str
    format: str = "embedded"    # the prompt format that ran (engine/formats.py); runs before formats: embedded


@dataclass(frozen=True)
class NodeProposed(Event):
    """A node is created (id = creation order). ``tokens``: [[id, text, logprob], ...]."""

    type: ClassVar[str] = "node_proposed"
    node: int
    parent: int
    depth: int
    action: str                 # "root", "step", "rollout", "answer", ...
    text: str
    tokens: list = field(default_factory=list)
    terminal: bool = False
    answer: str | None = None
    correct: bool | None = None
    prior: float | None = None  # mean token logprob of the step, a prior for the viewer


@dataclass(frozen=True)
class IterationStarted(Event):
    type: ClassVar[str] = "iteration_started"
    iteration: int              # 1-based
    of: int


@dataclass(frozen=True)
class Selected(Event):
    """One selection decision: ``node``'s children scored, ``chosen`` picked.

    ``candidates``: [{"node", "visits", "q", "explore", "uct"}, ...]; ``rule`` says why:
    "uct", "unvisited" (unvisited children are tried first) or "only".
    """

    type: ClassVar[str] = "selected"
    node: int
    chosen: int
    rule: str
    candidates: list = field(default_factory=list)
    c: float = 0.0
    parent_visits: int = 0


@dataclass(frozen=True)
class Expanded(Event):
    """``children`` were just proposed under ``node`` in one batched call (phase: expand or simulate)."""

    type: ClassVar[str] = "expanded"
    node: int
    children: list
    phase: str = "expand"


@dataclass(frozen=True)
class TerminalReward(Event):
    type: ClassVar[str] = "terminal_reward"
    node: int
    reward: float
    source: str                 # "self_consistency", "gold", "none"
    answer: str | None = None
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Backprop(Event):
    """``path`` root..leaf; visits/value before and after for each node on it."""

    type: ClassVar[str] = "backprop"
    path: list
    reward: float
    before: list                # [[visits, value], ...]
    after: list


@dataclass(frozen=True)
class CodeExecuted(Event):
    """A step's code was run in the sandbox (code-verified MCTS), right after its NodeProposed.

    ``program`` is what ran: the code of every earlier passing step on the path, this step's
    code, and a ``print`` of the variable it assigns. ``status``: the sandbox's (ok, error,
    timeout, killed) or "no_code" when the step carries none. ``value``: what the program
    printed; ``claim``: the result the step's comment claims; ``claim_ok``: whether they agree.
    ``failures``: consecutive failing steps on the path, this one included.
    """

    type: ClassVar[str] = "code_executed"
    node: int
    code: str
    program: str
    status: str
    output: str
    passed: bool
    value: str | None = None
    claim: str | None = None
    claim_ok: bool | None = None
    failures: int = 0
    ends_branch: bool = False
    isolation: str = ""


@dataclass(frozen=True)
class Reflected(Event):
    """SRA-MCTS: the model's reflection on the path to ``node`` before it is expanded.
    ``ends``: the reflection says the path is finished (SRA's ``<end>``); ``raw``: what it wrote."""

    type: ClassVar[str] = "reflected"
    node: int
    text: str
    ends: bool = False
    raw: str = ""


@dataclass(frozen=True)
class SelfEvaluated(Event):
    """SRA-MCTS: the 0-10 score of a step. ``parsed`` False means the output held no score and
    the fallback (5) was used; ``source``: "prompt" (the model wrote it) or "confidence"."""

    type: ClassVar[str] = "self_evaluated"
    node: int
    score: float
    parsed: bool
    raw: str = ""
    source: str = "prompt"


@dataclass(frozen=True)
class SraRollout(Event):
    """SRA-MCTS simulation from ``node``: rollout steps (not kept as nodes), their scores, and
    the blend V <- (1 - alpha) V + alpha best."""

    type: ClassVar[str] = "sra_rollout"
    node: int
    steps: list
    scores: list
    best: float
    value_before: float
    value_after: float
    alpha: float = 0.5


@dataclass(frozen=True)
class FinalAnswer(Event):
    type: ClassVar[str] = "final_answer"
    answer: str | None
    rule: str
    path: list
    correct: bool | None = None
    alternatives: dict = field(default_factory=dict)   # rule -> answer


@dataclass(frozen=True)
class RunFinished(Event):
    type: ClassVar[str] = "run_finished"
    status: str                 # "done", "stopped", "failed"
    generated_tokens: int = 0
    computed_tokens: int = 0
    reused_tokens: int = 0
    message: str = ""           # wall time is not an event field: events must replay byte for byte


USER_STOP = "stopped by the user"   # RunFinished.message of a run Stop ended (a time limit gives its own)


# ---- LECO (engine/search/leco.py): one round = scores, a cut, a regenerated continuation, an answer

@dataclass(frozen=True)
class StepScores(Event):
    """LECO's scores of every step of round ``round``'s solution (``path``: its step nodes).

    ``steps``: [{"node", "index", "average", "divergence", "transition", "confidence",
    "new", "candidate", "reason"}, ...]; ``new`` marks steps generated in this round (only
    those may be cut); ``reason`` says why a step is not a candidate. ``token_probs``: the
    per-token probabilities used, one list per step (``"top5"`` or ``"full"``, see ``mode``)."""

    type: ClassVar[str] = "leco_scores"
    round: int                  # 0 = the first solution
    path: list
    steps: list
    token_probs: list = field(default_factory=list)
    mode: str = "top5"


@dataclass(frozen=True)
class StepCut(Event):
    """The step LECO distrusts: ``node`` (step ``index``, 0-based) is the earliest of the
    ``lowest`` least confident candidates; ``kept`` (the steps before it) stay as they are."""

    type: ClassVar[str] = "leco_cut"
    round: int                  # the round whose solution is cut
    node: int | None            # None: no step could be cut (the whole solution is redone)
    index: int
    lowest: list                # node ids of the least confident candidates, in step order
    kept: list                  # node ids kept, root excluded
    rule: str = "earliest_of_lowest"


@dataclass(frozen=True)
class Continuation(Event):
    """Round ``round``'s regenerated steps ``nodes`` under ``parent`` (the last kept node)."""

    type: ClassVar[str] = "leco_continuation"
    round: int
    parent: int
    nodes: list
    text: str
    seed: int


@dataclass(frozen=True)
class RoundAnswer(Event):
    """The answer after round ``round``; ``stop`` says whether the loop ends here and why."""

    type: ClassVar[str] = "leco_answer"
    round: int
    answer: str | None
    previous: str | None
    correct: bool | None = None
    stop: bool = False
    reason: str = ""            # "answer unchanged", "max rounds", "" (goes on)


# ---- rStar (engine/search/rstar.py): votes behind a node, and the discriminator -----------

@dataclass(frozen=True)
class Voted(Event):
    """The votes behind an rStar node: ``answers`` are the answers of the sampled completions
    (None: a completion stated none), ``texts`` the completions; the node keeps the majority one,
    and its ``confidence`` (the majority's share) is the node's reward when it ends a path."""

    type: ClassVar[str] = "voted"
    node: int
    answers: list
    majority: str | None
    confidence: float
    texts: list = field(default_factory=list)


@dataclass(frozen=True)
class CandidatesCollected(Event):
    """The generator's candidate trajectories, distinct by text, after the search.

    ``candidates``: [{"candidate", "node", "path", "answer", "freq", "reward"}, ...] (``freq``:
    how often the trajectory was found; ``reward``: the generator rewards summed over those);
    ``confidence``: answer -> the generator's confidence; ``skipped`` says why the discriminator
    does not run ("" when it does); ``model`` is the discriminator's model."""

    type: ClassVar[str] = "candidates"
    candidates: list
    generator_answer: str | None
    confidence: dict = field(default_factory=dict)
    model: str = ""
    generator_tokens: int = 0
    skipped: str = ""


@dataclass(frozen=True)
class DiscriminatorCut(Event):
    """Candidate ``candidate`` cut for the discriminator: ``keep`` of ``of`` words (mode
    "words") or steps (mode "steps") kept; ``prefix`` is the kept text."""

    type: ClassVar[str] = "discriminator_cut"
    candidate: int
    cut: int
    mode: str
    keep: int
    of: int
    prefix: str
    ratio: float | None = None


@dataclass(frozen=True)
class DiscriminatorCompletion(Event):
    """What the discriminator wrote after a cut, the answer it reached, and whether that is the
    candidate's answer."""

    type: ClassVar[str] = "discriminator_completion"
    candidate: int
    cut: int
    text: str
    answer: str | None
    agrees: bool


@dataclass(frozen=True)
class DiscriminatorVerdict(Event):
    """``agree`` of ``of`` completions reached the candidate's answer; ``needed`` of them make
    it mutually consistent under ``rule``."""

    type: ClassVar[str] = "discriminator_verdict"
    candidate: int
    agree: int
    of: int
    needed: int
    consistent: bool
    rule: str


@dataclass(frozen=True)
class CandidateTable(Event):
    """The final table: per candidate its answer, frequency, generator reward, whether it is
    mutually consistent, and its answer's confidence, survival rate and score; ``winner`` is
    the chosen candidate (None: no answer), ``reason`` says how it was chosen."""

    type: ClassVar[str] = "candidate_table"
    rows: list
    winner: int | None
    reason: str


# ---- semantic entropy and SUGAR (engine/search/sugar.py) ------------------------------------

@dataclass(frozen=True)
class ClustersFormed(Event):
    """The sampled answers (nodes) grouped by meaning under one equivalence ``mode``.

    ``clusters``: node ids per cluster, in the order made; ``mass``: likelihood-weighted p(C);
    ``frequency``: share of the samples; ``comparisons``: every judge call of the clustering,
    ``{"a", "b", "forward", "backward", "equivalent", "source"}`` (a, b node ids; forward = a
    entails b)."""

    type: ClassVar[str] = "clusters_formed"
    mode: str
    judge: str
    clusters: list
    mass: list
    frequency: list
    comparisons: list = field(default_factory=list)
    judge_note: str = ""


@dataclass(frozen=True)
class EntropyMeasured(Event):
    """The four estimators on the same samples (nats); ``logliks`` per sample, in node order."""

    type: ClassVar[str] = "entropy_measured"
    mode: str
    discrete: float
    rao: float
    mc2023: float
    naive: float
    loglik: str = "mean"
    logliks: list = field(default_factory=list)


@dataclass(frozen=True)
class RetrievalRouted(Event):
    """SUGAR's decision: "none", "single" or "multi" retrieval, from ``value`` (the ``estimator``
    under ``mode``) against the thresholds; ``policy`` "always"/"never" overrides it."""

    type: ClassVar[str] = "retrieval_routed"
    decision: str
    policy: str
    estimator: str
    mode: str
    value: float | None
    low: float
    high: float


@dataclass(frozen=True)
class PassagesRetrieved(Event):
    """BM25 hits for one retrieval step: ``passages`` = [{"id", "title", "text", "source", "score"}]."""

    type: ClassVar[str] = "passages_retrieved"
    step: int
    query: str
    passages: list


@dataclass(frozen=True)
class StepScored(Event):
    """A verifier's score of the path ending at ``node``, right after its NodeProposed (or when a
    ranking needs it). ``source``: "ppm" (a process preference model, engine/ppm/), ``model``:
    which one. ``q_init``: MCTS starts the node's Q from this score (rStar-Math's PPM prior)."""

    type: ClassVar[str] = "step_scored"
    node: int
    score: float
    source: str = "ppm"
    model: str = ""
    q_init: bool = False


EVENT_TYPES: dict[str, type[Event]] = {cls.type: cls for cls in (
    RunStarted, NodeProposed, IterationStarted, Selected, Expanded, TerminalReward, Backprop,
    FinalAnswer, RunFinished, StepScores, StepCut, Continuation, RoundAnswer, Voted,
    CandidatesCollected, DiscriminatorCut, DiscriminatorCompletion, DiscriminatorVerdict, CandidateTable,
    CodeExecuted, Reflected, SelfEvaluated, SraRollout, StepScored,
    ClustersFormed, EntropyMeasured, RetrievalRouted, PassagesRetrieved)}


def from_json(data: dict) -> Event:
    """Inverse of `Event.to_json`; unknown types are a ValueError naming the type."""
    kind = data.get("type")
    cls = EVENT_TYPES.get(kind)
    if cls is None:
        raise ValueError(f"unknown event type {kind!r}")
    names = {f.name for f in fields(cls)}
    try:
        return cls(**{k: v for k, v in data.items() if k in names})
    except TypeError as e:   # a required field missing
        raise ValueError(f"malformed {kind!r} event: {e}") from None


def loads(text: str) -> Event:
    return from_json(json.loads(text))
