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


EVENT_TYPES: dict[str, type[Event]] = {cls.type: cls for cls in (
    RunStarted, NodeProposed, IterationStarted, Selected, Expanded, TerminalReward, Backprop,
    FinalAnswer, RunFinished, CodeExecuted, Reflected, SelfEvaluated, SraRollout)}


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
