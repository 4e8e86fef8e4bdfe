"""Self-evolution rounds, as in rStar-Math (Guan et al. 2025, §3.4): what `thoughtscope evolve` runs.

Round 0 evaluates the starting policy (and the starting PPM, if one is given); nothing is
trained. Each round r >= 1, with round r-1's policy and PPM (round 1: the starting ones):

1. ``collect`` — MCTS on ``train_problems`` problems generated for this round alone (generator
   seed ``train_seed(seed, r)``; held-out questions skipped), terminal-guided by each problem's
   answer key and, once a PPM exists, with new steps' Q started from its score
   (engine/ppm/data.py `collect_pairs`): verified trajectories and step-level Q-value pairs;
2. ``finetune`` — the policy continues training on the verified trajectories
   (engine/ppm/finetune.py) into ``<out>/round-r/policy``;
3. ``ppm`` — the next PPM, initialised from the new policy, is trained on the pairs of the
   first ``1 - ppm_val_share`` of the problems (engine/ppm/train.py) into ``<out>/round-r/ppm``;
   its pairwise accuracy is measured on the pairs of the rest, problems it never saw;
4. ``eval`` — the new policy on held-out hard: greedy, self-consistency and MCTS guided by the
   new PPM (engine/evaluation/evaluate.py's `run_eval`, the same problems and seeds every round).

Every phase's result is on disk (``<out>/round-r/``) and in the database (engine/evolution_store.py)
before the next begins, so a run that dies in round 3 is resumed by running the same command
again: rounds 1-2 are kept, and round 3 starts again at the phase that was cut off. A few of
each round's collection trees are stored as ordinary sessions, linked from the round's row.

Deliberate differences from rStar-Math (also in docs/ppm.md): rounds are minutes on one CPU
thread, not days on GPUs — a few hundred problems a round and 4-16 rollouts instead of 747k
problems and 16-64 rollouts; the policy continues from the previous round (engine/ppm/finetune.py
says why); trajectories are the embedded model's plain steps unless ``code=True``: then
collection and the round's MCTS evaluation are both claim-checked code MCTS (phases.py
``CODE_SEARCH``: the comment's arithmetic must match the executed value, failed steps are
resampled and never walked into), so the PPM learns and is used on verified code steps only, as
rStar-Math's is. "Code runs" alone would verify nothing on the embedded model: its code is one
assignment that always runs, its slips are in the arithmetic (docs/code_mcts.md).

Not here: search, pair selection, PPM training (the ppm package's other modules), drawing.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from engine.demo_model.problems import TIERS, Problem
from engine.evolution_store import EvolutionStore
from engine.ppm.finetune import FinetuneConfig

RUN_FILE = "evolve.json"          # in --out: the run's id and settings, so the same command resumes it
PHASES = ("collect", "finetune", "ppm", "eval")
EVAL_FIELDS = ("greedy", "sc", "mcts")


@dataclass(frozen=True)
class EvolveConfig:
    train_problems: int = 100     # generated per round
    train_tier: str = "hard"
    rollouts: int = 8             # MCTS rollouts per training problem (collection)
    eval_n: int = 200             # held-out problems of eval_tier
    eval_tier: str = "hard"
    eval_rollouts: int = 16       # MCTS + PPM at evaluation
    sc_samples: int = 8
    examples: int = 3             # collection trees kept as sessions per round
    ppm_val_share: float = 0.2    # problems whose pairs measure the PPM, never train it
    ppm_epochs: int = 2           # PPM training (engine/ppm/train.py's defaults)
    ppm_lr: float = 1e-4
    ppm_min_pairs: int = 16       # fewer training pairs than this: the round keeps the PPM it started with
    ppm_freeze_body: bool = False  # train the head alone on cached last-token states (train.py)
    ppm_head_hidden: int = 0      # a hidden layer in the head (0: rStar-Math's linear + tanh)
    code: bool = False            # code-verified collection (see the module docstring)
    seed: int = 0
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def __post_init__(self) -> None:
        def need(name, ok, what):
            if not ok:
                raise ValueError(f"{name} must be {what}, got {getattr(self, name)!r}")
        whole = lambda v: isinstance(v, int) and not isinstance(v, bool)      # noqa: E731
        need("train_problems", whole(self.train_problems) and 2 <= self.train_problems <= 100_000,
             "a whole number from 2 to 100000")
        need("train_tier", self.train_tier in TIERS, f"one of {TIERS}")
        need("eval_tier", self.eval_tier in TIERS, f"one of {TIERS}")
        need("rollouts", whole(self.rollouts) and 1 <= self.rollouts <= 10_000, "a whole number from 1 to 10000")
        need("eval_rollouts", whole(self.eval_rollouts) and 1 <= self.eval_rollouts <= 10_000,
             "a whole number from 1 to 10000")
        need("eval_n", whole(self.eval_n) and 1 <= self.eval_n <= 10_000, "a whole number from 1 to 10000")
        need("sc_samples", whole(self.sc_samples) and 1 <= self.sc_samples <= 256, "a whole number from 1 to 256")
        need("examples", whole(self.examples) and 0 <= self.examples <= 100, "a whole number from 0 to 100")
        need("ppm_val_share", isinstance(self.ppm_val_share, (int, float)) and 0 < self.ppm_val_share < 1,
             "a number between 0 and 1")
        need("ppm_epochs", whole(self.ppm_epochs) and 1 <= self.ppm_epochs <= 1000, "a whole number from 1 to 1000")
        need("ppm_lr", isinstance(self.ppm_lr, (int, float)) and 0 < self.ppm_lr <= 1, "a number in (0, 1]")
        need("ppm_min_pairs", whole(self.ppm_min_pairs) and 1 <= self.ppm_min_pairs <= 1_000_000,
             "a whole number from 1 to 1000000")
        need("ppm_head_hidden", whole(self.ppm_head_hidden) and 0 <= self.ppm_head_hidden <= 65_536,
             "a whole number from 0 to 65536")
        need("seed", whole(self.seed) and 0 <= self.seed < 2**32, "a whole number from 0 to 2**32 - 1")

    def to_json(self) -> dict:
        return asdict(self)


def train_seed(seed: int, rnd: int) -> int:
    """Round ``rnd``'s problem-generator seed: distinct for every (seed, round), so no two
    rounds (and no two runs with other seeds) train on the same stream of problems."""
    return 1_000_003 * (seed + 1) + rnd


def round_problems(cfg: EvolveConfig, rnd: int) -> list[Problem]:
    """Round ``rnd``'s training problems, generated now from the round's own seed by
    engine/ppm/data.py, which skips held-out questions and the reserved fresh eval sets."""
    from engine.ppm.data import training_problems
    return training_problems(cfg.train_problems, train_seed(cfg.seed, rnd), tiers=(cfg.train_tier,))


# ---- the run: create or resume -------------------------------------------------------------

@dataclass
class Run:
    run_id: str
    out: Path
    model: str                   # the starting policy (name or folder)
    ppm: str | None              # the starting PPM folder, if any
    config: EvolveConfig
    evo: EvolutionStore
    store: object                # engine.store.Store

    def round_dir(self, rnd: int) -> Path:
        return self.out / f"round-{rnd}"

    def policy(self, rnd: int) -> str:
        """The policy round ``rnd`` ends with (round 0: the starting one; a round that found
        nothing to train on keeps the one before)."""
        if rnd == 0:
            return self.model
        row = self.evo.round(self.run_id, rnd)
        if row is None or "finetune" not in row["phases"]:
            raise ValueError(f"round {rnd} has no policy yet")
        return row["policy_path"]

    def ppm_of(self, rnd: int) -> str | None:
        """The PPM round ``rnd`` ends with (None: none yet, the search is terminal-guided only)."""
        if rnd == 0:
            return self.ppm
        row = self.evo.round(self.run_id, rnd)
        if row is None or "ppm" not in row["phases"]:
            raise ValueError(f"round {rnd} has no PPM yet")
        return row["ppm_path"]


def open_run(store, out: str | Path, *, model: str, ppm: str | None, config: EvolveConfig) -> Run:
    """The run whose files are in ``out`` (resumed), or a new one there. Resuming with other
    settings than the run was started with is refused, naming the first that differs."""
    out = Path(out)
    evo = EvolutionStore(store)
    marker = out / RUN_FILE
    if marker.exists():
        saved = json.loads(marker.read_text())
        for name, given, was in (("model", model, saved["model"]), ("ppm", ppm, saved["ppm"])):
            if given != was:
                raise ValueError(f"--out {out} holds a run started with {name} {was!r}, not {given!r}: "
                                 "use another --out for a new run")
        # a setting added since the run started counts as its default there
        old, new, default = saved["config"], config.to_json(), EvolveConfig().to_json()
        for k in new:
            was = old.get(k, default[k])
            if was != new[k]:
                raise ValueError(f"--out {out} holds a run started with {k} {was!r}, not {new[k]!r}: "
                                 "give the same settings to resume it, or use another --out")
        if evo.run(saved["run_id"]) is None:
            raise ValueError(f"--out {out} holds run {saved['run_id']}, which is not in {store.path}: "
                             "pass the --db it was started with")
        return Run(saved["run_id"], out, model, ppm, config, evo, store)
    out.mkdir(parents=True, exist_ok=True)
    run_id = evo.create_run(out_dir=str(out.resolve()), model=model, ppm=ppm, config=config.to_json())
    marker.write_text(json.dumps({"run_id": run_id, "db": str(store.path), "model": model, "ppm": ppm,
                                  "config": config.to_json()}, indent=1))
    return Run(run_id, out, model, ppm, config, evo, store)


# ---- phases -----------------------------------------------------------------------------------

# (phase label, total, unit: "problem", "step" or "epoch") -> a context manager with update(k)
Progress = Callable[[str, int, str], object]
# (English template, **fields) -> the text: every line and label evolve writes goes through it, so a
# caller with a language passes its own (the CLI: `_t`, app/locales/zh.json's entries); English by default
Say = Callable[..., str]


def _no_progress(desc: str, total: int, unit: str):
    class _Bar:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def update(self, k: int = 1) -> None:
            pass
    return _Bar()


def evolve(run: Run, rounds: int, *, load_backend: Callable[[str], object],
           progress: Progress = _no_progress, log: Callable[[str], None] = lambda s: None,
           say: Say = str.format) -> list[dict]:
    """Run (or finish) rounds 0..``rounds`` of ``run``; returns the round rows.
    ``load_backend(path)`` loads a policy folder or model name for search and evaluation; ``log``
    gets a line as each phase starts and one when a round ends, ``progress`` a bar per phase, both
    worded by ``say``."""
    from engine.ppm.phases import collect_phase, eval_phase, finetune_phase, ppm_phase
    if not isinstance(rounds, int) or isinstance(rounds, bool) or not 1 <= rounds <= 100:
        raise ValueError(f"rounds must be a whole number from 1 to 100, got {rounds!r}")
    for rnd in range(rounds + 1):
        row = run.evo.round(run.run_id, rnd)
        if row is not None and row["status"] == "done":
            log(say("round {round}: done before, kept", round=rnd))
            continue
        t0 = time.perf_counter()
        row = run.evo.start_round(run.run_id, rnd, train_seed=None if rnd == 0 else train_seed(run.config.seed, rnd),
                                  train_problems=0 if rnd == 0 else run.config.train_problems,
                                  **({"policy_path": run.model, "ppm_path": run.ppm} if rnd == 0 else {}))
        done = set(row["phases"])
        if rnd > 0:
            problems = round_problems(run.config, rnd)
            if "collect" not in done:
                n = run.config.rollouts
                log(say("round {round}: collect ({problems} problems, {rollouts} rollouts)" if n != 1 else
                        "round {round}: collect ({problems} problems, {rollouts} rollout)",
                        round=rnd, problems=len(problems), rollouts=n))
                collect_phase(run, rnd, problems, load_backend, progress, say)
            if "finetune" not in done:
                log(say("round {round}: fine-tune the policy", round=rnd))
                finetune_phase(run, rnd, progress, say)
            if "ppm" not in done:
                log(say("round {round}: train the PPM", round=rnd))
                ppm_phase(run, rnd, problems, progress, say)
        if "eval" not in done:
            log(say("round {round}: evaluate on held-out {tier} (n = {n})", round=rnd, tier=run.config.eval_tier,
                    n=run.config.eval_n))
            eval_phase(run, rnd, load_backend, progress, say)
        row = run.evo.round(run.run_id, rnd)
        run.evo.update_round(run.run_id, rnd, status="done", finished=_now(),
                             wall_s=round((row["wall_s"] or 0) + time.perf_counter() - t0, 1))
        log(say("round {round}: {summary}", round=rnd, summary=summary_line(run.evo.round(run.run_id, rnd), say)))
    return run.evo.rounds(run.run_id)


def summary_line(row: dict, say: Say = str.format) -> str:
    """A round's numbers in one line: "greedy 50.0 %, SC 50.0 %, MCTS (ppm) 100.0 %, ..."."""
    def pct(v):
        return "-" if v is None else f"{100 * v:.1f} %"
    return (say("greedy {greedy}, SC {sc}, MCTS ({reward}) {mcts}, PPM pairwise {ppm}",
                greedy=pct(row["greedy_accuracy"]), sc=pct(row["sc_accuracy"]), reward=row["mcts_reward"],
                mcts=pct(row["mcts_accuracy"]), ppm=pct(row["ppm_pairwise_accuracy"]))
            + (say(", {trajectories} trajectories, {pairs} pairs", trajectories=row["trajectories"], pairs=row["pairs"])
               if row["round"] else ""))


def _now() -> str:
    from datetime import datetime, timezone
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
