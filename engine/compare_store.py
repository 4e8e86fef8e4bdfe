"""Compute-matched experiments in the run database: one row per experiment, one per method size
("arm"), one per run.

`thoughtscope compare` (engine/evaluation/compare.py) writes here, the app's Experiments view
reads here. The tables live in the same SQLite file as the sessions (engine/store.py), created by
store's migration 3 (`v3_create_compare_tables`), so each run is an ordinary session (listed,
opened, triaged like any other) and the experiment only links to it.

- ``experiments``: ``experiment_id`` (pk), model, where the problems came from, tier, n, seed,
  the methods and budgets asked for, the calibration (JSON: per method its size knob, the pilot
  size and tokens, the size chosen for each budget), status ('running' until every run is done),
  created / finished / wall_s, message.
- ``experiment_arms``: (``experiment_id``, ``method``, ``size``) pk: one size of one method, with
  its knob (``samples``, ``rollouts``, ...; NULL for greedy) and the budgets it stands for (JSON
  list: two budgets that calibrate to the same size share one arm, run once).
- ``experiment_runs``: (``experiment_id``, ``method``, ``size``, ``problem``) pk: the session it
  is, the problem's id, correct, generated tokens and wall seconds (copied from the session so a
  summary is one query).

Writes go through the store's own write transaction (``Store._write``), so the busy timeout,
read-only files and full disks are the same one-line `StoreError` as for sessions.

Not here: choosing sizes or running anything (engine/evaluation/compare.py); the chart
(engine/evaluation/compare_chart.py).
"""

from __future__ import annotations

import json
import secrets

from engine.table_rows import decode_json_columns, utc_now

EXPERIMENT_COLUMNS: dict[str, type] = {
    "experiment_id": str, "model": str, "problems": str, "tier": str, "n": int, "seed": int,
    "methods": str,                 # JSON list
    "budgets": str,                 # JSON list of generated tokens per problem
    "calibration": str,             # JSON object, per method
    "status": str, "created": str, "finished": str, "wall_s": float, "message": str,
}
ARM_COLUMNS: dict[str, type] = {
    "experiment_id": str, "method": str, "size": int,
    "knob": str,                    # the config field the size sets; NULL: the method has one size
    "budgets": str,                 # JSON list: the budgets this size was chosen for
}
RUN_COLUMNS: dict[str, type] = {
    "experiment_id": str, "method": str, "size": int, "problem": int,
    "problem_id": str, "session_id": str, "correct": int, "generated_tokens": int, "wall_s": float,
}
EXPERIMENT_STATUSES = ("running", "done", "stopped", "failed")
_JSON = {"methods": list, "budgets": list, "calibration": dict}


def v3_create_compare_tables(db) -> None:
    """Store migration 2 -> 3: the three experiment tables (an sqlite_utils Database)."""
    db["experiments"].create(EXPERIMENT_COLUMNS, pk="experiment_id",
                             not_null={"model", "problems", "methods", "budgets", "status", "created"},
                             defaults={"message": "", "calibration": "{}"})
    db["experiment_arms"].create(ARM_COLUMNS, pk=("experiment_id", "method", "size"),
                                 foreign_keys=[("experiment_id", "experiments", "experiment_id")])
    db["experiment_runs"].create(RUN_COLUMNS, pk=("experiment_id", "method", "size", "problem"),
                                 # no key to sessions: deleting a session must stay possible
                                 foreign_keys=[("experiment_id", "experiments", "experiment_id")])


def _decode(row: dict) -> dict:
    return decode_json_columns(row, _JSON)


class CompareStore:
    """The experiment tables of an open `engine.store.Store` (which it borrows, never closes)."""

    def __init__(self, store) -> None:
        self.store = store
        self.db = store.db

    def create(self, *, model: str, problems: str, tier: str, n: int, seed: int, methods: list[str],
               budgets: list[int], calibration: dict) -> str:
        """A new 'running' experiment; returns its id."""
        with self.store._write():
            eid = secrets.token_hex(6)
            self.db["experiments"].insert({
                "experiment_id": eid, "model": model, "problems": problems, "tier": tier, "n": n, "seed": seed,
                "methods": json.dumps(methods), "budgets": json.dumps(budgets),
                "calibration": json.dumps(calibration, sort_keys=True), "status": "running", "created": utc_now(),
                "message": ""})
        return eid

    def add_arm(self, eid: str, method: str, size: int, knob: str | None, budgets: list[int]) -> None:
        with self.store._write():
            self.db["experiment_arms"].insert({"experiment_id": eid, "method": method, "size": size, "knob": knob,
                                               "budgets": json.dumps(budgets)})

    def add_run(self, eid: str, method: str, size: int, problem: int, *, problem_id: str, session_id: str,
                correct: bool, generated_tokens: int, wall_s: float) -> None:
        with self.store._write():
            self.db["experiment_runs"].insert({
                "experiment_id": eid, "method": method, "size": size, "problem": problem, "problem_id": problem_id,
                "session_id": session_id, "correct": int(bool(correct)), "generated_tokens": generated_tokens,
                "wall_s": round(wall_s, 3)})

    def finish(self, eid: str, *, status: str, wall_s: float, message: str = "") -> None:
        if status not in EXPERIMENT_STATUSES:
            raise ValueError(f"status must be one of {EXPERIMENT_STATUSES}, got {status!r}")
        with self.store._write():
            self.db["experiments"].update(eid, {"status": status, "finished": utc_now(), "wall_s": round(wall_s, 2),
                                                "message": message})

    def experiment(self, eid: str) -> dict | None:
        with self.store._reading():
            rows = list(self.db.query("SELECT * FROM experiments WHERE experiment_id = ?", [eid]))
        return _decode(rows[0]) if rows else None

    def resolve(self, id_or_prefix: str) -> str:
        """An experiment's id from its id or a unique prefix; ValueError naming it otherwise."""
        with self.store._reading():
            ids = [r["experiment_id"] for r in self.db.query(
                "SELECT experiment_id FROM experiments WHERE experiment_id LIKE ?", [str(id_or_prefix) + "%"])]
        if len(ids) != 1:
            raise ValueError(f"experiment {id_or_prefix!r} is {'ambiguous' if ids else 'not'} in {self.store.path}")
        return ids[0]

    def experiments(self) -> list[dict]:
        """Every experiment, newest first."""
        with self.store._reading():
            return [_decode(r) for r in self.db.query(
                "SELECT * FROM experiments ORDER BY created DESC, rowid DESC")]

    def arms(self, eid: str) -> list[dict]:
        """Each arm with what its finished runs measured: runs, accuracy, mean generated tokens and
        mean wall seconds per problem (None before its first run)."""
        with self.store._reading():
            rows = list(self.db.query(
                """SELECT a.method, a.size, a.knob, a.budgets, count(r.problem) AS runs,
                          avg(r.correct) AS accuracy, avg(r.generated_tokens) AS mean_tokens,
                          avg(r.wall_s) AS mean_wall_s, sum(r.correct) AS right
                   FROM experiment_arms a LEFT JOIN experiment_runs r
                     ON r.experiment_id = a.experiment_id AND r.method = a.method AND r.size = a.size
                   WHERE a.experiment_id = ? GROUP BY a.method, a.size ORDER BY a.rowid""", [eid]))
        return [{**r, "budgets": json.loads(r["budgets"])} for r in rows]

    def runs(self, eid: str, method: str | None = None) -> list[dict]:
        sql, params = "SELECT * FROM experiment_runs WHERE experiment_id = ?", [eid]
        if method is not None:
            sql, params = sql + " AND method = ?", params + [method]
        with self.store._reading():
            return list(self.db.query(sql + " ORDER BY rowid", params))
