"""Session files: a stored run written out as one JSON file and read back (lossless, every
event as stored), and its tree as GraphML for networkx-reading tools.

`SessionFiles` is mixed into `engine.store.Store` and uses its locking (``_write``, ``_lock``) and
reads (``session``, ``_payloads``, ``tree``). A file that cannot be read is a `StoreError` with a
one-line message naming what is wrong; nothing is stored from it then.
Not here: the HTML/SVG/PNG views of a run (app/export_figures.py).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from engine import events as E
from engine.store_schema import (_ID_RE, _JSON_COLUMNS, SESSION_COLUMNS, STATUSES, StoreError, _node_rows,
                                 _now, runtime_versions)
from engine.tree import Tree

EXPORT_FORMAT = "thoughtscope-session"
EXPORT_VERSION = 1

_GRAPHML_FLOATS = {"value", "q", "reward"}


def _graphml_ready(g) -> None:
    """Give each node attribute one type, as GraphML tools expect (in place).

    ``Tree.to_networkx`` writes "" for a missing reward and mixes int and float values; networkx
    would write one GraphML key per (name, type). Missing values become absent data elements.
    """
    for _, attrs in g.nodes(data=True):
        for key in [k for k, v in attrs.items() if v == "" or v is None]:
            del attrs[key]
    kinds: dict[str, set] = {}
    for _, attrs in g.nodes(data=True):
        for k in _GRAPHML_FLOATS & attrs.keys():      # a sum of int rewards is an int here
            attrs[k] = float(attrs[k])
        for k, v in attrs.items():
            kinds.setdefault(k, set()).add(type(v))
    for k, ts in kinds.items():
        if len(ts) > 1:
            cast = float if ts <= {int, float} else str
            for _, attrs in g.nodes(data=True):
                if k in attrs:
                    attrs[k] = cast(attrs[k])


class SessionFiles:
    """Mixed into `Store`: export, import and GraphML of one session."""

    def export_session(self, session_id: str) -> dict:
        """Lossless JSON-ready form: the session row and every event, as stored."""
        with self._lock:
            row = self.session(session_id)
            payloads = self._payloads(session_id)
        row.pop("events")
        return {"format": EXPORT_FORMAT, "version": EXPORT_VERSION,
                "thoughtscope": runtime_versions()["thoughtscope"], "exported": _now(),
                "session": row, "events": [json.loads(p) for p in payloads]}

    def import_session(self, data: Any) -> str:
        """Store an `export_session` dict; a new id if its id is taken. Returns the id used."""
        if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
            raise StoreError(f"not a ThoughtScope session file: expected \"format\": \"{EXPORT_FORMAT}\"")
        version = data.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise StoreError(f"malformed session file: \"version\" must be a whole number >= 1, got {version!r}")
        if version > EXPORT_VERSION:
            raise StoreError(f"this session file was written by a newer ThoughtScope (format version "
                             f"{version}, this version reads up to {EXPORT_VERSION}); upgrade ThoughtScope")
        meta, raw_events = data.get("session"), data.get("events")
        if not isinstance(meta, dict) or not isinstance(raw_events, list):
            raise StoreError("malformed session file: needs a \"session\" object and an \"events\" list")
        for key in ("method", "model", "question", "status", "created"):
            if not isinstance(meta.get(key), str):
                raise StoreError(f"malformed session file: session.{key} must be text, got {meta.get(key)!r}")
        if meta["status"] not in STATUSES:
            raise StoreError(f"malformed session file: session.status must be one of "
                             f"{', '.join(STATUSES)}; got {meta['status']!r}")
        if not isinstance(meta.get("config"), dict):
            raise StoreError("malformed session file: session.config must be an object")
        if meta.get("correct") not in (True, False, None):
            raise StoreError(f"malformed session file: session.correct must be true, false or null, "
                             f"got {meta['correct']!r}")
        events = []
        for i, d in enumerate(raw_events):
            try:
                events.append(E.from_json(d))
            except (TypeError, ValueError, AttributeError) as e:
                raise StoreError(f"malformed session file: event {i}: {e}") from None
        try:
            tree = Tree.fold(events)
        except (ValueError, IndexError, KeyError, TypeError) as e:
            raise StoreError(f"malformed session file: its events do not fold into a tree ({e})") from None

        row = {col: meta.get(col) for col in SESSION_COLUMNS}
        for col in _JSON_COLUMNS:
            row[col] = None if row[col] is None else json.dumps(row[col], sort_keys=True)
        if row["correct"] is not None:
            row["correct"] = int(row["correct"])
        if row["message"] is None:
            row["message"] = ""
        if row["status"] == "running":    # nothing is writing the imported copy
            row["status"], row["message"] = "interrupted", "imported while it was still running"
        with self._write():
            sid = row["session_id"]
            if not isinstance(sid, str) or not _ID_RE.match(sid) or self._exists(sid):
                sid = row["session_id"] = self._new_id()
            try:
                self.db["sessions"].insert(row)
            except (sqlite3.Error, TypeError, ValueError) as e:
                raise StoreError(f"malformed session file: {e}") from None
            self.db["events"].insert_all(
                {"session_id": sid, "seq": i, "type": ev.type, "payload": ev.dumps()}
                for i, ev in enumerate(events))
            self.db["nodes"].insert_all(_node_rows(sid, tree))
        return sid

    def export_graphml(self, session_id: str, path: str | Path) -> Path:
        """The session's tree as GraphML (networkx), session metadata as graph attributes."""
        import networkx as nx
        meta = self.session(session_id)
        g = self.tree(session_id).to_networkx()
        _graphml_ready(g)
        for key in ("session_id", "method", "model", "question", "gold", "seed", "status", "answer", "created"):
            if meta.get(key) is not None:
                g.graph[key] = meta[key]
        nx.write_graphml(g, str(path))
        return Path(path)
