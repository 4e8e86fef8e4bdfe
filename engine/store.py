"""Every run kept in one SQLite file, through sqlite-utils: sessions, their events, node rows.

A session is one search run: its metadata row in ``sessions``, its event log in ``events``
(one row per event, ``payload`` = the event's canonical ``Event.dumps()``), and, once it
ends, one row per tree node in ``nodes`` (folded from the log, for SQL queries and Datasette).
The log is the truth; everything else is derived from it.

- ``append`` commits each event at once, so a process killed mid-run (even by SIGKILL) leaves
  every event appended so far readable. WAL mode with ``synchronous=NORMAL``: a commit reaches
  the WAL file before ``append`` returns, so only a power cut / OS crash could lose the last
  ones, and a commit costs microseconds instead of an fsync.
- A run whose writing process is gone while its status still says 'running' is reported (and
  stored) as 'interrupted' by ``list_sessions`` / ``session``.
- The schema version is SQLite's ``PRAGMA user_version``; ``MIGRATIONS`` are applied in order
  from version 0 (the first creates the schema). A later schema change is one function
  appended to that list. A file written by a newer schema, or not a SQLite file at all, is a
  ``StoreError`` with a one-line message.
- Threads: one connection opened with ``check_same_thread=False``; every operation (reads
  too, because a connection's transaction state is shared) holds one re-entrant lock. Other
  processes may open the same file: WAL lets them read while we write, and a busy timeout
  (``BUSY_TIMEOUT_S``, or $THOUGHTSCOPE_DB_TIMEOUT) makes writers wait for each other; past
  it, a write is a ``StoreError`` saying another process holds the lock.
- A file (or its folder) this process may not write is opened read-only: listing and showing
  runs work, and any write is a ``StoreError`` saying the file is read-only and what to do.
  Nothing is ever deleted or rewritten to "repair" a file that cannot be used.

The tables, their migrations and the row helpers are in engine/store_schema.py; a session's
JSON file and GraphML in engine/store_files.py (mixed into `Store`).

Not here: running searches (engine/search/), drawing (app/), HTML/PNG exports.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

from sqlite_utils import Database

from engine import events as E
from engine.events import USER_STOP
from engine.store_files import EXPORT_FORMAT, EXPORT_VERSION, SessionFiles
from engine.store_schema import (FINAL_STATUSES, MIGRATIONS, SCHEMA_VERSION, SESSION_COLUMNS, STATUSES,
                                 SessionNotFound, StoreError, _node_rows, _now, _row_out, runtime_versions)
from engine.tree import Tree

__all__ = ["Store", "StoreError", "SessionNotFound", "record", "default_db_path", "SCHEMA_VERSION", "MIGRATIONS",
           "SESSION_COLUMNS", "STATUSES", "FINAL_STATUSES", "EXPORT_FORMAT", "EXPORT_VERSION", "runtime_versions"]

ENV_DB = "THOUGHTSCOPE_DB"
DB_FILENAME = "thoughtscope.db"
BUSY_TIMEOUT_S = 30.0             # how long a writer waits for another process's write lock
ENV_TIMEOUT = "THOUGHTSCOPE_DB_TIMEOUT"   # overrides BUSY_TIMEOUT_S (seconds)

# Sessions being written by this process, across all Store objects: a 'running' session
# whose pid is ours but which is not in here was left by an earlier process with our pid.
_ACTIVE: set[str] = set()
_ACTIVE_LOCK = threading.Lock()


# ---- helpers ----------------------------------------------------------------------------

def default_db_path() -> Path:
    """$THOUGHTSCOPE_DB, else ``<user data dir>/thoughtscope/thoughtscope.db`` (folder created)."""
    env = os.environ.get(ENV_DB)
    if env:
        return Path(env).expanduser()
    import platformdirs
    folder = Path(platformdirs.user_data_dir("thoughtscope"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / DB_FILENAME


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        try:
            import psutil
        except ImportError:
            return True  # cannot tell: never call a live run interrupted
        return psutil.pid_exists(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed process not yet reaped by its parent still answers kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _visible_sql(owner: str | None) -> tuple[str, list]:
    """`` AND (...)`` limiting sessions ``s`` to ``owner``'s and the shared ones (classroom mode)."""
    if owner is None:
        return "", []
    return " AND (s.owner = ? OR s.owner IS NULL)", [owner]


# ---- the store --------------------------------------------------------------------------

def _writable(path: Path) -> bool:
    """May this process write ``path`` (a file, or a folder to create files in)?"""
    return os.access(path, os.W_OK | (os.X_OK if path.is_dir() else 0))


def _timeout(timeout: float | None) -> float:
    if timeout is None:
        env = os.environ.get(ENV_TIMEOUT)
        try:
            timeout = float(env) if env else BUSY_TIMEOUT_S
        except ValueError:
            raise StoreError(f"${ENV_TIMEOUT} must be a number of seconds, got {env!r}") from None
    if not 0 <= timeout <= 86400:      # NaN fails too
        raise StoreError(f"the database busy timeout must be from 0 to 86400 seconds, got {timeout!r}")
    return timeout


class Store(SessionFiles):
    def __init__(self, path: str | Path | None = None, *, timeout: float | None = None) -> None:
        """Open (creating or upgrading) the database at ``path``; ``timeout``: seconds a write
        waits for another process's lock (default $THOUGHTSCOPE_DB_TIMEOUT or 30)."""
        self.path = default_db_path() if path is None else Path(path).expanduser()
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a folder, not a database file")
        self.timeout = _timeout(timeout)
        self._lock = threading.RLock()
        exists = self.path.exists()
        folder = self.path.parent if str(self.path.parent) else Path(".")
        if not exists and not _writable(folder):
            raise StoreError(f"cannot create {self.path}: the folder {folder} is not writable "
                             "(or does not exist); pass another --db or $THOUGHTSCOPE_DB")
        # WAL needs the -wal/-shm files beside the database: a writable file in a read-only
        # folder cannot be written either
        self.read_only = exists and not (_writable(self.path) and _writable(folder))
        conn = self._connect(immutable=False)
        try:
            try:
                self.db = Database(conn)
                version = self._user_version()    # the first read: fails here if the file is not SQLite
            except sqlite3.OperationalError:
                if not self.read_only:
                    raise
                # a read-only WAL file whose -shm file is gone (it is removed on the last close):
                # SQLite can only read it as immutable; no one can be writing it from here anyway
                conn.close()
                conn = self._connect(immutable=True)
                self.db = Database(conn)
                version = self._user_version()
            self._check_version(version)
            if version < SCHEMA_VERSION and self.read_only:
                raise StoreError(f"{self.path} needs upgrading to schema {SCHEMA_VERSION} but is read-only: "
                                 "make it writable (chmod u+w) and start again")
            if not self.read_only:
                self.db.enable_wal()
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.execute("PRAGMA foreign_keys=ON")
                if version < SCHEMA_VERSION:
                    self._migrate()
        except sqlite3.DatabaseError as e:
            conn.close()
            if "not a database" in str(e) or "malformed" in str(e):
                raise StoreError(f"{self.path} is not a ThoughtScope database: not a SQLite file, "
                                 f"or a corrupt one ({e}); it was left as it is: move it away or "
                                 "pass another --db") from None
            raise self._error(e, "open") from None
        except BaseException:
            conn.close()
            raise

    def _connect(self, *, immutable: bool) -> sqlite3.Connection:
        try:
            if not self.read_only:
                return sqlite3.connect(str(self.path), timeout=self.timeout, check_same_thread=False)
            from urllib.parse import quote
            uri = f"file:{quote(str(self.path.resolve()))}?mode=ro" + ("&immutable=1" if immutable else "")
            return sqlite3.connect(uri, uri=True, timeout=self.timeout, check_same_thread=False)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open {self.path}: {e}") from None

    def _error(self, e: sqlite3.Error, doing: str) -> StoreError:
        """A one-line StoreError for a SQLite failure: what is wrong with the file, what to do."""
        text = str(e)
        if "locked" in text or "busy" in text:
            return StoreError(f"the database is locked by another ThoughtScope process: {self.path} stayed "
                              f"locked for {self.timeout:g} s; wait for that run to end (or stop that process) "
                              f"and try again, or raise ${ENV_TIMEOUT}")
        if "readonly" in text or "read-only" in text:
            return self._read_only_error()
        if "disk is full" in text or "disk I/O" in text:
            return StoreError(f"cannot {doing} {self.path}: {text}; free some disk space or pass another --db")
        return StoreError(f"cannot {doing} {self.path}: {text}")

    def _read_only_error(self) -> StoreError:
        return StoreError(f"{self.path} is read-only: stored runs can be listed and shown but no new run can "
                          "be stored; make the file and its folder writable (chmod u+w) or pass another --db")

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # ---- schema ---------------------------------------------------------------------------

    def _user_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path} was written by a newer ThoughtScope (schema {version}, this "
                             f"version reads up to {SCHEMA_VERSION}); upgrade ThoughtScope to open it")

    def _migrate(self) -> None:
        with self._write():
            version = self._user_version()    # again, under the write lock: another process may have won
            self._check_version(version)
            if version == 0:
                tables = self.db.table_names()
                if tables:
                    raise StoreError(f"{self.path} is a SQLite database but not a ThoughtScope one "
                                     f"(it has tables {', '.join(tables)} and no schema version)")
            for migration in MIGRATIONS[version:]:
                migration(self.db)
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @property
    def schema_version(self) -> int:
        with self._lock:
            return self._user_version()

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One transaction holding the write lock from its start (no deadlock on upgrade).
        A read-only file, a lock held past the timeout or a full disk is a StoreError; the
        transaction is rolled back, so what was stored before stays as it was."""
        if self.read_only:
            raise self._read_only_error()
        with self._lock:
            try:
                self.db.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                raise self._error(e, "write to") from None
            try:
                yield
            except sqlite3.OperationalError as e:
                if self.db.conn.in_transaction:
                    self.db.conn.execute("ROLLBACK")
                raise self._error(e, "write to") from None
            except BaseException:
                if self.db.conn.in_transaction:
                    self.db.conn.execute("ROLLBACK")
                raise
            try:
                self.db.conn.execute("COMMIT")
            except sqlite3.OperationalError as e:
                if self.db.conn.in_transaction:
                    self.db.conn.execute("ROLLBACK")
                raise self._error(e, "write to") from None

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """The store's lock for a read; a SQLite failure (a lock held by a non-WAL writer, a
        file damaged after opening) is a one-line StoreError."""
        with self._lock:
            try:
                yield
            except sqlite3.DatabaseError as e:
                raise self._error(e, "read") from None

    # ---- writing a run --------------------------------------------------------------------

    def _new_id(self) -> str:
        while True:
            sid = secrets.token_hex(8)
            if not self._exists(sid):
                return sid

    def _exists(self, session_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM sessions WHERE session_id = ?", [session_id]).fetchone() is not None

    def create_session(self, *, method: str, model: str, question: str, gold: str | None,
                       config: dict, seed: int, owner: str | None = None) -> str:
        """A new 'running' session written by this process; returns its id."""
        if not isinstance(config, dict):
            raise ValueError(f"config must be a dict, got {type(config).__name__}")
        try:
            config_json = json.dumps(config, sort_keys=True)
        except (TypeError, ValueError) as e:
            raise ValueError(f"config must be JSON-serialisable: {e}") from None
        with self._write():
            sid = self._new_id()
            self.db["sessions"].insert({
                "session_id": sid, "method": method, "model": model, "question": question,
                "gold": gold, "config": config_json, "seed": seed, "status": "running",
                "created": _now(), "versions": json.dumps(runtime_versions(), sort_keys=True),
                "pid": os.getpid(), "owner": owner, "message": ""})
        with _ACTIVE_LOCK:
            _ACTIVE.add(sid)
        return sid

    def append(self, session_id: str, event: E.Event) -> int:
        """Store ``event`` as the session's next event and commit; returns its seq (0-based)."""
        if not isinstance(event, E.Event):
            raise TypeError(f"append takes an Event, got {type(event).__name__}")
        payload = event.dumps()
        with self._write():
            if not self._exists(session_id):
                raise SessionNotFound(f"no session {session_id!r} in {self.path}")
            seq = self.db.execute("SELECT coalesce(max(seq) + 1, 0) FROM events WHERE session_id = ?",
                                  [session_id]).fetchone()[0]
            self.db.execute("INSERT INTO events (session_id, seq, type, payload) VALUES (?, ?, ?, ?)",
                            [session_id, seq, event.type, payload])
        return seq

    def finish(self, session_id: str, *, status: str, message: str = "",
               wall_s: float | None = None) -> dict:
        """Close a session: fold its events, fill the outcome and the node rows; returns the row.

        Token counts come from the RunFinished event (NULL without one); ``wall_s`` from the
        caller, since wall time is not an event field (events replay byte for byte).
        """
        if status not in FINAL_STATUSES:
            raise ValueError(f"status must be one of {', '.join(FINAL_STATUSES)}; got {status!r}")
        with self._lock:
            evs = self.events(session_id)
            try:
                tree = Tree.fold(evs)
            except (ValueError, IndexError, KeyError, TypeError) as e:   # a log that does not fold: keep the status
                tree = None
                message = f"{message} (its events do not fold into a tree: {e})".strip()
            final = tree.final if tree is not None else None
            ended = tree.finished if tree is not None else None
            updates = {
                "status": status, "message": message, "finished": _now(),
                "nodes": len(tree) if tree is not None else 0,
                "answer": final.answer if final else None,
                "correct": None if final is None or final.correct is None else int(final.correct),
                **{k: getattr(ended, k, None) for k in ("generated_tokens", "computed_tokens", "reused_tokens")},
                "wall_s": None if wall_s is None else round(wall_s, 3)}
            with self._write():
                self.db["sessions"].update(session_id, updates)
                self.db.execute("DELETE FROM nodes WHERE session_id = ?", [session_id])
                if tree is not None:
                    self.db["nodes"].insert_all(_node_rows(session_id, tree))
            with _ACTIVE_LOCK:
                _ACTIVE.discard(session_id)
            return self.session(session_id)

    def delete(self, session_id: str) -> None:
        with self._write():
            if not self._exists(session_id):
                raise SessionNotFound(f"no session {session_id!r} in {self.path}")
            for table in ("nodes", "events", "sessions"):
                self.db.execute(f"DELETE FROM {table} WHERE session_id = ?", [session_id])
        with _ACTIVE_LOCK:
            _ACTIVE.discard(session_id)

    # ---- reading --------------------------------------------------------------------------

    def _select(self, where: str = "", params: list | None = None, limit: int | None = None) -> list[dict]:
        sql = ("SELECT s.*, (SELECT count(*) FROM events e WHERE e.session_id = s.session_id) AS events "
               f"FROM sessions s {'WHERE ' + where if where else ''} ORDER BY s.created DESC, s.rowid DESC")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._reading():
            rows = list(self.db.query(sql, params or []))
            stale = [r["session_id"] for r in rows if r["status"] == "running" and not self._writer_alive(r)]
            if self.read_only:      # reported, not stored
                for r in rows:
                    if r["session_id"] in stale:
                        r.update(status="interrupted", message="the process writing this run ended before the run did")
                stale = []
            for sid in stale:
                self.finish(sid, status="interrupted",
                            message="the process writing this run ended before the run did")
            if stale:
                rows = list(self.db.query(sql, params or []))
        return [_row_out(r) for r in rows]

    @staticmethod
    def _writer_alive(row: dict) -> bool:
        if row["pid"] == os.getpid():
            with _ACTIVE_LOCK:
                return row["session_id"] in _ACTIVE
        return _pid_alive(row["pid"])

    def session(self, session_id: str) -> dict:
        """The session's row (config and versions parsed) plus ``events``, its event count."""
        rows = self._select("s.session_id = ?", [session_id])
        if not rows:
            raise SessionNotFound(f"no session {session_id!r} in {self.path}")
        return rows[0]

    def resolve(self, id_or_prefix: str, *, visible_to: str | None = None) -> str:
        """The full id of the one session whose id is or starts with ``id_or_prefix``;
        ``visible_to``: only among that owner's sessions and the shared ones (owner NULL)."""
        scope, scope_params = _visible_sql(visible_to)
        with self._reading():
            if self.db.execute(f"SELECT 1 FROM sessions s WHERE s.session_id = ?{scope}",
                               [id_or_prefix, *scope_params]).fetchone() is not None:
                return id_or_prefix
            escaped = id_or_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            ids = [r[0] for r in self.db.execute(
                f"SELECT session_id FROM sessions s WHERE session_id LIKE ? ESCAPE '\\'{scope} LIMIT 3",
                [escaped + "%", *scope_params]).fetchall()] if id_or_prefix else []
        if len(ids) == 1:
            return ids[0]
        if not ids:
            raise SessionNotFound(f"no session {id_or_prefix!r} in {self.path}")
        raise SessionNotFound(f"{id_or_prefix!r} matches several sessions ({', '.join(ids)}, ...): give more of the id")

    def list_sessions(self, *, method: str | None = None, model: str | None = None,
                      correct: bool | None = None, owner: str | None = None,
                      limit: int | None = None, visible_to: str | None = None) -> list[dict]:
        """Sessions newest first, each as ``session`` returns it; None filters are off.
        ``visible_to``: that owner's sessions and the shared ones (owner NULL)."""
        scope, scope_params = _visible_sql(visible_to)
        wheres, params = ([scope.removeprefix(" AND ")], scope_params) if scope else ([], [])
        for col, value in (("method", method), ("model", model), ("owner", owner)):
            if value is not None:
                wheres.append(f"s.{col} = ?")
                params.append(value)
        if correct is not None:
            wheres.append("s.correct = ?")
            params.append(int(correct))
        return self._select(" AND ".join(wheres), params, limit)

    def _payloads(self, session_id: str, limit: int | None = None) -> list[str]:
        with self._reading():
            if not self._exists(session_id):
                raise SessionNotFound(f"no session {session_id!r} in {self.path}")
            sql = "SELECT payload FROM events WHERE session_id = ? ORDER BY seq"
            if limit is not None:
                sql += f" LIMIT {int(limit)}"
            return [r[0] for r in self.db.execute(sql, [session_id]).fetchall()]

    def events(self, session_id: str, limit: int | None = None) -> list[E.Event]:
        """The session's events in order (the first ``limit`` of them)."""
        return [E.loads(p) for p in self._payloads(session_id, limit)]

    def event_counts(self, session_id: str) -> dict[str, int]:
        with self._reading():
            if not self._exists(session_id):
                raise SessionNotFound(f"no session {session_id!r} in {self.path}")
            return dict(self.db.execute("SELECT type, count(*) FROM events WHERE session_id = ? "
                                        "GROUP BY type ORDER BY min(seq)", [session_id]).fetchall())

    def tree(self, session_id: str, upto: int | None = None) -> Tree:
        """The tree after the first ``upto`` events (all of them by default)."""
        return Tree.fold(self.events(session_id, upto))


def record(store: Store, session_id: str, events: Iterable[E.Event],
           should_stop: Callable[[], bool] | None = None) -> Tree:
    """Append each event as it is yielded, then finish the session; returns the folded tree.

    Ends as 'done' (or the RunFinished event's 'stopped' / 'failed'), 'stopped' when
    ``should_stop()`` turns true (the generator is closed) or on KeyboardInterrupt (re-raised),
    'failed' with the message when the iterator raises (re-raised).
    """
    tree = Tree()
    it = iter(events)
    start = time.perf_counter()

    def end(status: str, message: str) -> None:
        store.finish(session_id, status=status, message=message, wall_s=time.perf_counter() - start)

    try:
        for ev in it:
            store.append(session_id, ev)
            tree.apply(ev)
            why = should_stop() if should_stop is not None and not isinstance(ev, E.RunFinished) else None
            if why:
                getattr(it, "close", lambda: None)()
                end("stopped", why if isinstance(why, str) else USER_STOP)
                return tree
    except KeyboardInterrupt:
        end("stopped", "interrupted")
        raise
    except Exception as e:
        end("failed", f"{type(e).__name__}: {e}")
        raise
    ended = tree.finished
    status = ended.status if ended is not None and ended.status in ("stopped", "failed") else "done"
    end(status, ended.message if ended else "")
    return tree
