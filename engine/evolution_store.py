"""Self-evolution rounds in the run database: one row per evolution run, one per round.

`thoughtscope evolve` (engine/ppm/evolve.py) writes here, the app's Evolution view reads here.
The tables live in the same SQLite file as the sessions (engine/store.py), created by store's
migration 2 (`v2_create_evolution_tables`, listed in ``store.MIGRATIONS``), so a database file
holds a run's rounds next to the example trees each round keeps as ordinary sessions.

- ``evolution_runs``: ``run_id`` (pk), the output folder, the starting policy and PPM, the run's
  settings (JSON: training problems a round, rollouts, eval size, seeds), created.
- ``evolution_rounds``: (``run_id``, ``round``) pk. Round 0 is the starting point (evaluated,
  nothing trained); round r >= 1 searched, trained and evaluated. ``status`` is 'running' until
  every phase is done; ``phases`` (JSON list) names the phases finished, so a resumed run
  redoes only the phase that was cut off. The numbers a round reports have columns of their own
  (accuracies, PPM pairwise accuracy, counts); ``metrics`` keeps the full JSON (token counts,
  training losses, the eval summaries without per-problem rows). ``policy_path`` / ``ppm_path``
  say where the round's weights are; ``example_sessions`` (JSON list) the session ids of its
  example MCTS trees.

Writes go through the store's own write transaction (``Store._write``), so the busy timeout,
read-only files and full disks are the same one-line `StoreError` as for sessions.

Not here: running rounds (engine/ppm/evolve.py) or drawing them (app/evolve_tab.py).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from engine.table_rows import decode_json_columns, utc_now

RUN_COLUMNS: dict[str, type] = {
    "run_id": str, "out_dir": str, "model": str, "ppm": str,
    "config": str,                  # JSON object: the run's settings
    "created": str,
}
ROUND_COLUMNS: dict[str, type] = {
    "run_id": str, "round": int, "status": str,
    "phases": str,                  # JSON list of finished phase names
    "train_seed": int,              # generator seed of this round's training problems
    "train_problems": int, "trajectories": int, "pairs": int,
    "policy_path": str, "ppm_path": str,
    "ppm_pairwise_accuracy": float,  # on pairs from problems the PPM was not trained on
    "greedy_accuracy": float, "sc_accuracy": float, "mcts_accuracy": float,
    "mcts_reward": str,             # the reward MCTS was evaluated with ('ppm', or what round 0 had)
    "eval_n": int,
    "metrics": str,                 # JSON object: everything else the round measured
    "example_sessions": str,        # JSON list of session ids
    "created": str, "finished": str, "wall_s": float,
}
ROUND_STATUSES = ("running", "done")
# Columns that hold JSON text, decoded when a row is read.
_JSON = {"config": dict, "phases": list, "metrics": dict, "example_sessions": list}
# What a round row may be updated with (the key columns and created are set once).
_UPDATABLE = set(ROUND_COLUMNS) - {"run_id", "round", "created"}


def v2_create_evolution_tables(db) -> None:
    """Store migration 1 -> 2: the two evolution tables (an sqlite_utils Database)."""
    db["evolution_runs"].create(RUN_COLUMNS, pk="run_id", not_null={"out_dir", "model", "config", "created"})
    db["evolution_rounds"].create(ROUND_COLUMNS, pk=("run_id", "round"),
                                  not_null={"status", "phases", "created"},
                                  defaults={"phases": "[]", "metrics": "{}", "example_sessions": "[]"},
                                  foreign_keys=[("run_id", "evolution_runs", "run_id")])


def _decode(row: dict) -> dict:
    return decode_json_columns(row, _JSON)


class EvolutionStore:
    """The evolution tables of an open `engine.store.Store` (which it borrows, never closes)."""

    def __init__(self, store) -> None:
        self.store = store
        self.db = store.db

    # ---- runs -------------------------------------------------------------------------------

    def create_run(self, *, out_dir: str, model: str, ppm: str | None, config: dict) -> str:
        """A new evolution run; returns its id."""
        if not isinstance(config, dict):
            raise ValueError(f"config must be a dict, got {type(config).__name__}")
        with self.store._write():
            run_id = secrets.token_hex(6)
            self.db["evolution_runs"].insert({"run_id": run_id, "out_dir": str(out_dir), "model": str(model),
                                              "ppm": None if ppm is None else str(ppm),
                                              "config": json.dumps(config, sort_keys=True), "created": utc_now()})
        return run_id

    def run(self, run_id: str) -> dict | None:
        with self.store._reading():
            rows = list(self.db.query("SELECT * FROM evolution_runs WHERE run_id = ?", [run_id]))
        return _decode(rows[0]) if rows else None

    def runs(self) -> list[dict]:
        """Every evolution run, newest first."""
        with self.store._reading():
            return [_decode(r) for r in self.db.query("SELECT * FROM evolution_runs ORDER BY created DESC, rowid DESC")]

    # ---- rounds -----------------------------------------------------------------------------

    def start_round(self, run_id: str, rnd: int, **fields: Any) -> dict:
        """The round's row, created 'running' if it does not exist yet (a resumed round keeps its row)."""
        if not isinstance(rnd, int) or rnd < 0:
            raise ValueError(f"round must be a whole number >= 0, got {rnd!r}")
        if self.run(run_id) is None:
            raise ValueError(f"run_id {run_id!r} is not an evolution run in {self.store.path}")
        existing = self.round(run_id, rnd)
        if existing is not None:
            return existing
        with self.store._write():
            self.db["evolution_rounds"].insert({"run_id": run_id, "round": rnd, "status": "running",
                                                "phases": "[]", "created": utc_now(),
                                                **_encoded(fields)})
        return self.round(run_id, rnd)

    def update_round(self, run_id: str, rnd: int, **fields: Any) -> dict:
        """Set some of a round's columns (JSON ones given as Python values)."""
        bad = set(fields) - _UPDATABLE
        if bad:
            raise ValueError(f"not a round column that can be updated: {', '.join(sorted(bad))}")
        if "status" in fields and fields["status"] not in ROUND_STATUSES:
            raise ValueError(f"status must be one of {ROUND_STATUSES}, got {fields['status']!r}")
        with self.store._write():
            self.db["evolution_rounds"].update((run_id, rnd), _encoded(fields))
        return self.round(run_id, rnd)

    def finish_phase(self, run_id: str, rnd: int, phase: str, **fields: Any) -> dict:
        """Record ``phase`` as finished (with the columns it measured), in one transaction, so a
        crash leaves the round either before or after the phase, never half-way in the table."""
        row = self.round(run_id, rnd)
        if row is None:
            raise ValueError(f"round {rnd} of run {run_id!r} was never started")
        phases = row["phases"] + ([phase] if phase not in row["phases"] else [])
        metrics = {**row["metrics"], **fields.pop("metrics", {})}
        return self.update_round(run_id, rnd, phases=phases, metrics=metrics, **fields)

    def round(self, run_id: str, rnd: int) -> dict | None:
        with self.store._reading():
            rows = list(self.db.query("SELECT * FROM evolution_rounds WHERE run_id = ? AND round = ?", [run_id, rnd]))
        return _decode(rows[0]) if rows else None

    def rounds(self, run_id: str) -> list[dict]:
        """A run's rounds in order."""
        with self.store._reading():
            return [_decode(r) for r in self.db.query(
                "SELECT * FROM evolution_rounds WHERE run_id = ? ORDER BY round", [run_id])]


def _encoded(fields: dict) -> dict:
    out = {}
    for k, v in fields.items():
        if k not in ROUND_COLUMNS:
            raise ValueError(f"not a round column: {k}")
        out[k] = json.dumps(v, sort_keys=True) if k in _JSON else v
    return out
