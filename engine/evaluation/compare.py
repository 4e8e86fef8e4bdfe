"""Methods at equal compute: what ``thoughtscope compare`` runs.

Each method has one size knob (`KNOBS`): samples for self-consistency and best-of-N, the beam
width for beam search, rollouts for the MCTS family and rStar; greedy has one size. Its other
settings stay at the method's defaults. For a budget B (mean generated tokens per problem) a
method's size is chosen by a pilot: the method runs at `PILOT_SIZES` on the first ``pilot``
problems of the set, which gives its tokens per unit of size (tokens ÷ size, assuming tokens grow
in proportion to the size), and the size is round(B ÷ tokens per unit), at least 1. The
experiment reports the achieved mean tokens beside each target: the proportional model is only a
model (a rollout on a grown tree costs more than one on a young tree), and a method whose
smallest size already costs more than B (rStar's one rollout) runs at size 1 and says it went
over. Two budgets that give the same size share one arm, run once. The pilot's runs are not
stored; the pilot problems are among those evaluated (only their token counts are used).

Every run is an ordinary stored session (engine/store.py), linked to the experiment
(engine/compare_store.py), with the problem's seed = experiment seed + problem index, as
``thoughtscope eval`` seeds them.

Not here: the chart (engine/evaluation/compare_chart.py), argument parsing (engine/cli/compare.py).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from engine.compare_store import CompareStore
from engine.demo_model.problems import Problem
from engine.steps import answers_equal

# method -> (engine.search.METHODS name, the config field its size sets (None: one size), fixed settings)
KNOBS: dict[str, tuple[str, str | None, dict]] = {
    "greedy": ("greedy", None, {}),
    "sc": ("sc", "samples", {}),
    "bon": ("bon", "samples", {}),
    "beam": ("beam", "beam_width", {}),
    "mcts": ("mcts", "rollouts", {}),
    "mcts-code": ("mcts-code", "rollouts", {}),
    "rstar": ("rstar", "rollouts", {}),
    "mcts-ppm": ("mcts", "rollouts", {"reward": "ppm"}),
}
PILOT_SIZES = {"sc": 4, "bon": 4, "beam": 2, "mcts": 4, "mcts-code": 4, "rstar": 1, "mcts-ppm": 4}
MAX_SIZES = {"samples": 256, "beam_width": 32, "rollouts": 400}   # the configs' own limits, or a day's CPU
MAX_BUDGET = 1_000_000
PILOT = 3                # pilot problems per method


def available_methods() -> list[str]:
    """The methods this install can compare: mcts-ppm only where MCTS has a PPM reward."""
    from engine.search.mcts import MCTSConfig
    try:
        MCTSConfig(reward="ppm")
        has_ppm = True
    except (ValueError, TypeError):
        has_ppm = False
    return [m for m in KNOBS if m != "mcts-ppm" or has_ppm]


@dataclass(frozen=True)
class CompareRequest:
    methods: tuple[str, ...]
    budgets: tuple[int, ...]
    seed: int = 0
    pilot: int = PILOT

    def __post_init__(self) -> None:
        known = available_methods()
        if not self.methods:
            raise ValueError("methods must name at least one method")
        bad = [m for m in self.methods if m not in known]
        if bad:
            raise ValueError(f"methods: {', '.join(bad)} cannot be compared here; choose from {', '.join(known)}")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods names one twice: {','.join(self.methods)}")
        if not self.budgets or any(not isinstance(b, int) or isinstance(b, bool) or not 1 <= b <= MAX_BUDGET
                                   for b in self.budgets):
            raise ValueError(f"budgets must be whole numbers of tokens from 1 to {MAX_BUDGET}, got {self.budgets!r}")
        if list(self.budgets) != sorted(set(self.budgets)):
            raise ValueError(f"budgets must be distinct and increasing, got {','.join(map(str, self.budgets))}")
        if not isinstance(self.pilot, int) or not 1 <= self.pilot <= 50:
            raise ValueError(f"pilot must be a whole number from 1 to 50, got {self.pilot!r}")


def config_for(method: str, size: int | None):
    """The search config of ``method`` at ``size`` (its knob set, everything else default)."""
    from engine.search import METHODS
    name, knob, fixed = KNOBS[method]
    kwargs = dict(fixed)
    if knob is not None and size is not None:
        kwargs[knob] = size
    return METHODS[name].config(**kwargs)


def run_one(backend, method: str, size: int | None, problem: Problem, seed: int, store=None):
    """One run of ``method`` at ``size`` on ``problem``: (tree, wall seconds, session id or None).
    With ``store`` the run is stored as a session as it goes (engine.store.record)."""
    from engine.search import METHODS
    from engine.store import record
    from engine.tree import Tree
    name = KNOBS[method][0]
    cfg = config_for(method, size)
    events = METHODS[name].run(problem.question, backend, config=cfg, seed=seed, gold=str(problem.answer))
    t0 = time.perf_counter()
    if store is None:
        tree = Tree.fold(events)
        return tree, time.perf_counter() - t0, None
    sid = store.create_session(method=name, model=backend.info.name, question=problem.question,
                               gold=str(problem.answer), config=cfg.to_json(), seed=seed)
    tree = record(store, sid, events)
    return tree, time.perf_counter() - t0, sid


def choose_size(budget: int, tokens_per_unit: float, knob: str) -> int:
    """round(budget / tokens per unit), at least 1, at most the knob's limit.

    >>> choose_size(1000, 87.5, "samples")
    11
    """
    return max(1, min(MAX_SIZES[knob], round(budget / max(tokens_per_unit, 1e-9))))


def calibrate(backend, req: CompareRequest, problems: Sequence[Problem],
              progress: Callable[[int], None] = lambda k: None) -> dict:
    """Per method: its knob, the pilot size, the pilot's mean tokens per problem, tokens per unit
    and the size for each budget (a JSON object, stored with the experiment)."""
    pilot = list(problems[:req.pilot])
    out = {}
    for method in req.methods:
        knob = KNOBS[method][1]
        if knob is None:
            out[method] = {"knob": None, "sizes": {str(b): None for b in req.budgets}}
            continue
        size = PILOT_SIZES[method]
        tokens = []
        for i, p in enumerate(pilot):
            tree, _, _ = run_one(backend, method, size, p, req.seed + i)
            tokens.append(tree.finished.generated_tokens if tree.finished else 0)
            progress(1)
        mean = sum(tokens) / len(tokens)
        per_unit = mean / size
        out[method] = {"knob": knob, "pilot_size": size, "pilot_problems": len(pilot),
                       "pilot_mean_tokens": round(mean, 1), "tokens_per_unit": round(per_unit, 1),
                       "sizes": {str(b): choose_size(b, per_unit, knob) for b in req.budgets}}
    return out


def arms(req: CompareRequest, calibration: dict) -> list[tuple[str, int | None, list[int]]]:
    """(method, size, the budgets it stands for) per distinct size, in the order of the request."""
    out = []
    for method in req.methods:
        by_size: dict = {}
        for b in req.budgets:
            by_size.setdefault(calibration[method]["sizes"][str(b)], []).append(b)
        out += [(method, size, budgets) for size, budgets in by_size.items()]
    return out


def pilot_runs(req: CompareRequest) -> int:
    """How many pilot runs `calibrate` makes (for the progress bar)."""
    return sum(req.pilot for m in req.methods if KNOBS[m][1] is not None)


def run_compare(backend, store, req: CompareRequest, problems: Sequence[Problem], *, source: str, tier: str,
                progress: Callable[[int], None] = lambda k: None,
                planned: Callable[[int], None] = lambda total: None) -> str:
    """Calibrate, then run every arm on every problem, storing each run as a session linked to a
    new experiment; returns the experiment id. ``planned`` is told the runs in all (pilot
    included) once the pilot has chosen the sizes. Ctrl-C ends the experiment as 'stopped' (its
    finished runs kept) and is re-raised."""
    if len(problems) < req.pilot:
        raise ValueError(f"n must be at least the pilot's {req.pilot} problems, got {len(problems)}")
    t0 = time.perf_counter()
    calibration = calibrate(backend, req, problems, progress)
    planned(pilot_runs(req) + len(problems) * len(arms(req, calibration)))
    cs = CompareStore(store)
    eid = cs.create(model=backend.info.name, problems=source, tier=tier, n=len(problems), seed=req.seed,
                    methods=list(req.methods), budgets=list(req.budgets), calibration=calibration)
    try:
        for method, size, budgets in arms(req, calibration):
            cs.add_arm(eid, method, 0 if size is None else size, KNOBS[method][1], budgets)
            for i, p in enumerate(problems):
                tree, wall, sid = run_one(backend, method, size, p, req.seed + i, store)
                answer = tree.final.answer if tree.final else None
                cs.add_run(eid, method, 0 if size is None else size, i, problem_id=p.id, session_id=sid,
                           correct=answers_equal(answer, p.answer),
                           generated_tokens=tree.finished.generated_tokens if tree.finished else 0, wall_s=wall)
                progress(1)
    except KeyboardInterrupt:
        cs.finish(eid, status="stopped", wall_s=time.perf_counter() - t0, message="interrupted")
        raise
    except Exception as e:
        cs.finish(eid, status="failed", wall_s=time.perf_counter() - t0, message=f"{type(e).__name__}: {e}")
        raise
    cs.finish(eid, status="done", wall_s=time.perf_counter() - t0)
    return eid


def wilson(right: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson interval of a proportion (what the chart's error bars show).

    >>> [round(x, 3) for x in wilson(50, 100)]
    [0.404, 0.596]
    """
    if n == 0:
        return (0.0, 1.0)
    p = right / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class ArmResult:
    method: str
    knob: str | None
    size: int | None
    budgets: list[int]
    runs: int
    accuracy: float | None
    mean_tokens: float | None
    mean_wall_s: float | None
    right: int

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.right, self.runs)

    @property
    def label(self) -> str:
        return "one size" if self.knob is None else f"{self.knob} = {self.size}"

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "ci95": [round(x, 4) for x in self.interval]}


def results(store, eid: str) -> list[ArmResult]:
    """Each arm of the experiment with what it measured so far."""
    out = []
    for a in CompareStore(store).arms(eid):
        out.append(ArmResult(a["method"], a["knob"], None if a["knob"] is None else a["size"], a["budgets"],
                             a["runs"], None if a["accuracy"] is None else round(a["accuracy"], 4),
                             None if a["mean_tokens"] is None else round(a["mean_tokens"], 1),
                             None if a["mean_wall_s"] is None else round(a["mean_wall_s"], 3), a["right"] or 0))
    return out


OVER_BUDGET = 0.10       # an arm whose achieved mean tokens pass its budget by more than this share does not compete


def winners(arm_results: Sequence[ArmResult], budgets: Sequence[int]) -> dict[int, list[str]]:
    """Per budget, the method(s) with the highest accuracy among the arms that stand for it and
    spent at most (1 + `OVER_BUDGET`) × the budget (greedy, one size, stands for every budget it
    fits); ties all named. An arm over its budget (rStar's one rollout) is left out here and
    shown in the table with what it spent."""
    out = {}
    for b in budgets:
        mine = [a for a in arm_results if (b in a.budgets or a.knob is None) and a.accuracy is not None
                and a.mean_tokens is not None and a.mean_tokens <= (1 + OVER_BUDGET) * b]
        best = max((a.accuracy for a in mine), default=None)
        out[b] = [a.method for a in mine if a.accuracy == best] if best is not None else []
    return out
