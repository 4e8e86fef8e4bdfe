"""The run database's tables and the rows they hold: the schema, its migrations, the session
statuses, and how a session's row and its tree's node rows are written and read back.

engine/store.py opens the file and applies ``MIGRATIONS``; engine/store_files.py reads and writes
session files with the same rows. Not here: connections, locking, appending events.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import platform
import re
from typing import Any, Callable

from sqlite_utils import Database

from engine.compare_store import v3_create_compare_tables
from engine.evolution_store import v2_create_evolution_tables
from engine.table_rows import utc_now
from engine.tree import Tree

STATUSES = ("running", "done", "stopped", "interrupted", "failed")
FINAL_STATUSES = STATUSES[1:]

_ID_RE = re.compile(r"^[0-9A-Za-z_-]{1,64}$")
_JSON_COLUMNS = ("config", "versions")


class StoreError(Exception):
    """A database or export file that cannot be used; the message is one line for the user."""


class SessionNotFound(StoreError):
    pass


# ---- schema -----------------------------------------------------------------------------

SESSION_COLUMNS: dict[str, type] = {
    "session_id": str, "method": str, "model": str, "question": str, "gold": str,
    "config": str,                  # JSON object
    "seed": int, "status": str, "answer": str,
    "correct": int,                 # 1, 0 or NULL (no gold answer / no final answer)
    "nodes": int, "generated_tokens": int, "computed_tokens": int, "reused_tokens": int,
    "wall_s": float,                # NULL until a RunFinished event reports them
    "created": str, "finished": str,  # ISO 8601, UTC
    "versions": str,                # JSON: python, torch, transformers, thoughtscope
    "pid": int,                     # the writing process, to detect interrupted runs
    "owner": str,                   # a user name, for a later multi-user mode
    "message": str,
}


def _v1_create_schema(db: Database) -> None:
    db["sessions"].create(SESSION_COLUMNS, pk="session_id",
                          not_null={"method", "model", "question", "config", "status", "created"},
                          defaults={"message": ""})
    db["sessions"].create_index(["created"])
    # The primary key (session_id, seq) is the index on session_id: a second one would only
    # slow down appends.
    db["events"].create({"session_id": str, "seq": int, "type": str, "payload": str},
                        pk=("session_id", "seq"), not_null={"type", "payload"},
                        foreign_keys=[("session_id", "sessions", "session_id")])
    db["nodes"].create({"session_id": str, "node": int, "parent": int, "depth": int, "action": str,
                        "text": str, "terminal": int, "answer": str, "correct": int, "visits": int,
                        "value": float, "reward": float},
                       pk=("session_id", "node"),
                       foreign_keys=[("session_id", "sessions", "session_id")])


# MIGRATIONS[i] takes the schema from version i to i + 1. Append, never edit a released one.
# 2: the self-evolution rounds' tables (engine/evolution_store.py).
# 3: the compute-matched experiments' tables (engine/compare_store.py).
MIGRATIONS: list[Callable[[Database], None]] = [_v1_create_schema, v2_create_evolution_tables,
                                                v3_create_compare_tables]
SCHEMA_VERSION = len(MIGRATIONS)


@functools.cache
def runtime_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "thoughtscope"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _now() -> str:
    return utc_now("microseconds")

def _bool(x: Any) -> bool | None:
    return None if x is None else bool(x)


def _row_out(row: dict) -> dict:
    """A sessions row as the API returns it: JSON columns parsed, ``correct`` a bool or None."""
    out = dict(row)
    for col in _JSON_COLUMNS:
        if isinstance(out.get(col), str):
            out[col] = json.loads(out[col])
    out["correct"] = _bool(out.get("correct"))
    return out


def _node_rows(session_id: str, tree: Tree) -> list[dict]:
    return [{"session_id": session_id, "node": n.id, "parent": n.parent, "depth": n.depth,
             "action": n.action, "text": n.text, "terminal": int(n.terminal), "answer": n.answer,
             "correct": None if n.correct is None else int(n.correct), "visits": n.visits,
             "value": float(n.value), "reward": n.reward} for n in tree.nodes]
