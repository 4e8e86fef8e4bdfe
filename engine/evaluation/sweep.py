"""Temperature sweep: single-sample accuracy per sampler and temperature on the held-out problems.

The min-p paper (Nguyen et al., "Turning Up the Heat: Min-p Sampling for Creative and Coherent
LLM Outputs", 2024) plots GSM8K accuracy against temperature for min-p, top-p and plain
sampling: as temperature rises, min-p degrades more slowly. This runs the same comparison on
our model and problems: every (sampler, temperature) cell solves the same first ``n`` problems
of a tier once each (one sample, no vote; the same seed in every cell, so cells differ only by
the sampler), through `engine.evaluation.evaluate.eval_self_consistency` with one sample.

The result is a JSON-serialisable dict (``SWEEP_FORMAT`` v1) that ``thoughtscope sweep --out``
writes and the Sampling lab tab plots.

Not here: the per-token pool views (engine/sampling_lab.py), the plot (app/sampling_figures.py).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from engine.demo_model.problems import TIERS
from engine.evaluation.evaluate import HELDOUT, EvalConfig, eval_problems, eval_self_consistency

SWEEP_FORMAT = "thoughtscope-sweep v1"
# name -> the sampler's settings besides temperature (the min-p paper's comparison)
SAMPLERS: dict[str, dict] = {
    "min_p=0.05": {"min_p": 0.05},
    "min_p=0.1": {"min_p": 0.1},
    "top_p=0.9": {"top_p": 0.9},
    "top_p=0.95": {"top_p": 0.95},
    "plain": {},
}
TEMPERATURES = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)


def parse_temperatures(text: str) -> tuple[float, ...]:
    """``"0.5,1,2"`` -> ``(0.5, 1.0, 2.0)``; each must be above 0 and at most 100."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            t = float(part)
        except ValueError:
            raise ValueError(f"temperatures must be numbers separated by commas, got {part!r} in {text!r}") from None
        if not math.isfinite(t) or not 0 < t <= 100:
            raise ValueError(f"each temperature must be above 0 and at most 100, got {part!r}")
        out.append(t)
    if not out:
        raise ValueError("temperatures is empty: give e.g. 0.5,1,1.5,2,2.5,3")
    return tuple(out)


@dataclass(frozen=True)
class SweepConfig:
    temperatures: tuple[float, ...] = TEMPERATURES
    samplers: tuple[str, ...] = tuple(SAMPLERS)
    tier: str = "hard"
    n: int = 100
    seed: int = 0
    batch_size: int = 32

    def __post_init__(self) -> None:
        temps = tuple(self.temperatures)
        if not temps or any(not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t)
                            or not 0 < t <= 100 for t in temps):
            raise ValueError(f"temperatures must be numbers above 0 and at most 100, got {self.temperatures!r}")
        object.__setattr__(self, "temperatures", tuple(float(t) for t in temps))
        samplers = tuple(self.samplers)
        bad = [s for s in samplers if s not in SAMPLERS]
        if not samplers or bad:
            raise ValueError(f"samplers must be some of {list(SAMPLERS)}, got {list(samplers)!r}")
        object.__setattr__(self, "samplers", samplers)
        if self.tier not in TIERS:
            raise ValueError(f"tier must be one of {TIERS}, got {self.tier!r}")
        if not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 1:
            raise ValueError(f"n must be a whole number >= 1, got {self.n!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"seed must be a whole number >= 0, got {self.seed!r}")
        EvalConfig(samples=1, batch_size=self.batch_size)                    # validates batch_size

    def eval_config(self, sampler: str, temperature: float) -> EvalConfig:
        return EvalConfig(samples=1, temperature=temperature, batch_size=self.batch_size, **SAMPLERS[sampler])

    def to_json(self) -> dict:
        return {"temperatures": list(self.temperatures), "samplers": list(self.samplers), "tier": self.tier,
                "n": self.n, "seed": self.seed, "batch_size": self.batch_size}


@dataclass
class SweepCell:
    sampler: str
    temperature: float
    accuracy: float
    correct: int
    n: int
    generated_tokens: int
    wall_s: float
    settings: dict = field(default_factory=dict)


def run_sweep(backend, cfg: SweepConfig, progress: Callable[[int], None] = lambda k: None,
              problems_path: Path = HELDOUT) -> dict:
    """Every sampler at every temperature on the first ``cfg.n`` problems of ``cfg.tier``.
    ``progress(k)`` is called with the number of problems just solved (n per cell in all)."""
    problems = eval_problems("sc", cfg.tier, cfg.n, problems_path)
    cells = []
    for sampler in cfg.samplers:
        for t in cfg.temperatures:
            ecfg = cfg.eval_config(sampler, t)
            t0 = time.perf_counter()
            results = eval_self_consistency(backend, problems, ecfg, cfg.seed, progress)
            correct = sum(r.correct for r in results)
            cells.append(SweepCell(sampler, t, round(correct / cfg.n, 4), correct, cfg.n,
                                   sum(r.generated_tokens for r in results), round(time.perf_counter() - t0, 2),
                                   {"temperature": t, **SAMPLERS[sampler]}))
    return {"format": SWEEP_FORMAT, "model": backend.info.name, "config": cfg.to_json(),
            "accuracy": {s: [c.accuracy for c in cells if c.sampler == s] for s in cfg.samplers},
            "cells": [c.__dict__ for c in cells]}


def load_sweep(path: str | Path) -> dict:
    """A sweep written by ``thoughtscope sweep --out``; ValueError when it is not one."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read the sweep file {path}: {e}") from None
    if not isinstance(data, dict) or data.get("format") != SWEEP_FORMAT:
        raise ValueError(f"{path} is not a sweep file (expected format {SWEEP_FORMAT!r})")
    temps = data["config"]["temperatures"]
    for sampler, accs in data["accuracy"].items():
        if len(accs) != len(temps):
            raise ValueError(f"{path}: sampler {sampler!r} has {len(accs)} accuracies for {len(temps)} temperatures")
    return data


def sweep_table(data: dict) -> str:
    """A markdown table: one row per sampler, one column per temperature (accuracy in %)."""
    temps = data["config"]["temperatures"]
    head = "| sampler | " + " | ".join(f"T={t:g}" for t in temps) + " |"
    rule = "| --- |" + " ---: |" * len(temps)
    rows = [f"| {s} | " + " | ".join(f"{a:.0%}" for a in accs) + " |" for s, accs in data["accuracy"].items()]
    return "\n".join([head, rule, *rows])
