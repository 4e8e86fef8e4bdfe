"""Search events: the one source of truth of a run.

Every method is a generator of these small, typed, JSON-serialisable events. The UI folds them
into the tree it draws, the store appends them to SQLite as they happen, replay folds the
first k of them. Same model, config and seed give the same events, byte for byte
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


EVENT_TYPES: dict[str, type[Event]] = {cls.type: cls for cls in (
    RunStarted, NodeProposed, IterationStarted, Selected, Expanded, TerminalReward, Backprop,
    FinalAnswer, RunFinished, ClustersFormed, EntropyMeasured, RetrievalRouted, PassagesRetrieved)}


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
