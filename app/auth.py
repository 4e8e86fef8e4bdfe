"""Classroom mode: the users file, password hashes, and who may see which stored run.

- The users file (`load_users`) holds one ``name:hash`` per line, the hash written by
  `hash_password` (``thoughtscope hash-password NAME``): PBKDF2-HMAC-SHA256 with a random salt,
  ``pbkdf2_sha256$<iterations>$<salt>$<digest>`` (salt and digest urlsafe base64). Plain
  passwords are refused. `Users.check` is the ``auth=`` callable given to Gradio's launch;
  it compares digests with `hmac.compare_digest` and spends the same time on an unknown name.
- `Access` is the one place where ownership is decided. Every app handler that touches the
  run store takes a ``request: gr.Request`` and asks ``user_store(store, request)`` for a
  `UserStore`: in single-user mode (no ``--auth``) that is the whole store; in classroom mode it
  sees the logged-in user's runs plus the shared ones (owner NULL: the sample runs, runs recorded
  without ``--auth``), stamps the user as owner of each run it creates or imports, and deletes
  only the user's own runs. Another user's run is "no session 'id'", word for word the store's
  message for an id that does not exist, so the reply does not reveal that it exists.
- Inputs that name files or folders on the server (SUGAR's corpus folder, the NLI model folder
  or hub id, the Sampling lab's sweep file) would let one user read the server's files: in
  classroom mode `refuse_server_paths` turns them away (the shipped defaults still work).
- `with_request` binds leading arguments like `functools.partial` while keeping the bound
  function's ``request: gr.Request`` parameter visible to Gradio (a partial hides it).

Not here: the launch options and the queue (app/main.py ``serve``), the CLI flags (engine/cli/__init__.py).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import inspect
import re
import secrets
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from app.i18n import t
from engine.store import SessionNotFound, StoreError

SCHEME = "pbkdf2_sha256"
ITERATIONS = 600_000            # OWASP's 2023 figure for PBKDF2-HMAC-SHA256
MIN_ITERATIONS = 1_000          # what the file may name (tests use few; real files should not)
USER_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MAX_FAILURES = 5                # failed logins per name within LOCKOUT_S before that name is locked
LOCKOUT_S = 60.0


class AuthFileError(ValueError):
    """An unusable users file; the message is one line naming the file (and line)."""


# ---- password hashes -----------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    """``pbkdf2_sha256$<iterations>$<salt>$<digest>`` for ``password`` (a fresh 16-byte salt)."""
    if not isinstance(password, str) or not password:
        raise ValueError("the password is empty")
    if not isinstance(iterations, int) or iterations < MIN_ITERATIONS:
        raise ValueError(f"iterations must be a whole number >= {MIN_ITERATIONS}, got {iterations!r}")
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{SCHEME}${iterations}${_b64(salt)}${_b64(digest)}"


def _parse_hash(text: str) -> tuple[int, bytes, bytes]:
    parts = text.split("$")
    if len(parts) != 4 or parts[0] != SCHEME:
        raise ValueError(f"the password must be a {SCHEME}$... hash from `thoughtscope hash-password NAME`, "
                         "never the password itself")
    try:
        iterations = int(parts[1])
        salt, digest = _unb64(parts[2]), _unb64(parts[3])
    except ValueError:
        raise ValueError(f"malformed {SCHEME} hash (iterations, salt or digest unreadable)") from None
    if iterations < MIN_ITERATIONS or len(salt) < 8 or len(digest) != 32:
        raise ValueError(f"weak or malformed {SCHEME} hash: needs >= {MIN_ITERATIONS} iterations, "
                         "a salt of >= 8 bytes and a 32-byte digest")
    return iterations, salt, digest


def verify_password(password: str, hashed: str) -> bool:
    iterations, salt, digest = _parse_hash(hashed)
    got = hashlib.pbkdf2_hmac("sha256", str(password).encode(), salt, iterations)
    return hmac.compare_digest(got, digest)


# ---- the users file ------------------------------------------------------------------------

class Users:
    """The accounts of a users file: name -> (iterations, salt, digest)."""

    def __init__(self, entries: dict[str, tuple[int, bytes, bytes]], path: str | Path = "") -> None:
        if not entries:
            raise AuthFileError(f"{path or 'the users file'} names no users")
        self._entries = dict(entries)
        self.path = Path(path) if path else None
        # an unknown name costs as much as a known one: no timing hint about who exists
        self._dummy = (max(e[0] for e in entries.values()), secrets.token_bytes(16), bytes(32))
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self.clock: Callable[[], float] = time.monotonic

    @property
    def names(self) -> list[str]:
        return sorted(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, username: str, password: str) -> bool:
        """Gradio's ``auth=`` callable: True when the password matches the user's hash.

        After `MAX_FAILURES` failed logins for one name within `LOCKOUT_S` seconds, that name is
        refused without hashing until the oldest failure is `LOCKOUT_S` old: a guesser gets five
        tries a minute per name, and a flood of tries costs the server no hashing. Known and
        unknown names are counted alike. (Gradio's ``auth`` callable is not given the client's
        address, so the limit is per name, not per address.)"""
        key = username if isinstance(username, str) else ""
        if self._locked(key):
            return False
        known = key in self._entries
        iterations, salt, digest = self._entries[key] if known else self._dummy
        got = hashlib.pbkdf2_hmac("sha256", str(password or "").encode(), salt, iterations)
        ok = hmac.compare_digest(got, digest) and known
        with self._lock:
            if ok:
                self._failures.pop(key, None)
            else:
                self._failures.setdefault(key, deque()).append(self.clock())
        return ok

    def _locked(self, key: str) -> bool:
        now = self.clock()
        with self._lock:
            if len(self._failures) > 10_000:          # many names tried: forget the stale ones
                for name in [n for n, d in self._failures.items() if now - d[-1] >= LOCKOUT_S]:
                    del self._failures[name]
            recent = self._failures.get(key)
            while recent and now - recent[0] >= LOCKOUT_S:
                recent.popleft()
            return bool(recent) and len(recent) >= MAX_FAILURES


def load_users(path: str | Path) -> Users:
    """The users file at ``path``: lines ``name:pbkdf2_sha256$...``; blank lines and lines
    starting with # are skipped. Any other problem is an `AuthFileError` naming the line."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AuthFileError(f"users file {p} does not exist (create it with lines from "
                            "`thoughtscope hash-password NAME`)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise AuthFileError(f"cannot read users file {p}: {e}") from None
    entries: dict[str, tuple[int, bytes, bytes]] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, hashed = line.partition(":")
        if not sep:
            raise AuthFileError(f"{p} line {n}: expected name:hash, got no ':'")
        if not USER_RE.match(name):
            raise AuthFileError(f"{p} line {n}: user name {name!r} must be 1-64 of A-Z a-z 0-9 _ . @ -")
        if name in entries:
            raise AuthFileError(f"{p} line {n}: user {name!r} is listed twice")
        try:
            entries[name] = _parse_hash(hashed.strip())
        except ValueError as e:
            raise AuthFileError(f"{p} line {n} ({name}): {e}") from None
    if not entries:
        raise AuthFileError(f"users file {p} names no users (lines name:hash from `thoughtscope hash-password NAME`)")
    return Users(entries, p)


# ---- who sees which run ----------------------------------------------------------------------

class Access:
    """The run store and the mode: ``multi_user`` True when the app runs with a users file."""

    def __init__(self, store, *, multi_user: bool = False) -> None:
        self.store = store
        self.multi_user = multi_user

    def owner(self, request: gr.Request | None) -> str | None:
        """The logged-in user in classroom mode (a gr.Error without one), else None."""
        if not self.multi_user:
            return None
        name = getattr(request, "username", None) if request is not None else None
        if not name:
            raise gr.Error(t("log in first: this server keeps each user's runs apart"), print_exception=False)
        return name

    def view(self, request: gr.Request | None) -> "UserStore":
        return UserStore(self.store, self.owner(request), restricted=self.multi_user)

    def shared_view(self) -> "UserStore":
        """What anyone may see before logging in: everything single-user, the shared runs otherwise."""
        return UserStore(self.store, None, restricted=self.multi_user)


def user_store(store_or_access, request: gr.Request | None = None):
    """The store as ``request``'s user may use it. A plain `Store` (a test calling a handler
    directly, the single-user app before this module) is used as it is."""
    if isinstance(store_or_access, Access):
        return store_or_access.view(request)
    return store_or_access


class UserStore:
    """The `Store` methods the app uses, limited to one user's runs and the shared ones.

    ``restricted`` False (single-user mode) passes every call through unchanged except that
    imports record the importer (None) as owner. With ``restricted`` True and ``owner`` None
    only the shared runs are visible and nothing can be created, imported or deleted."""

    def __init__(self, store, owner: str | None, *, restricted: bool) -> None:
        self.store, self.owner, self.restricted = store, owner, restricted

    @property
    def path(self):
        return self.store.path

    def _missing(self, session_id: str) -> SessionNotFound:
        return SessionNotFound(f"no session {session_id!r} in {self.store.path}")

    def _visible_row(self, session_id: str) -> dict:
        row = self.store.session(session_id)
        if self.restricted and row.get("owner") not in (None, self.owner):
            raise self._missing(session_id)
        return row

    def _need_user(self, what: str) -> None:
        if self.restricted and self.owner is None:
            raise StoreError(f"log in to {what}")

    # reading
    def list_sessions(self, **filters) -> list[dict]:
        if self.restricted:
            filters["visible_to"] = self.owner or ""
        return self.store.list_sessions(**filters)

    def resolve(self, id_or_prefix: str) -> str:
        if not self.restricted:
            return self.store.resolve(id_or_prefix)
        return self.store.resolve(id_or_prefix, visible_to=self.owner or "")

    def session(self, session_id: str) -> dict:
        return self._visible_row(session_id)

    def events(self, session_id: str, limit: int | None = None):
        self._visible_row(session_id)
        return self.store.events(session_id, limit)

    def export_session(self, session_id: str) -> dict:
        self._visible_row(session_id)
        return self.store.export_session(session_id)

    def export_graphml(self, session_id: str, path):
        self._visible_row(session_id)
        return self.store.export_graphml(session_id, path)

    # writing
    def create_session(self, **kwargs) -> str:
        self._need_user("run a search")
        return self.store.create_session(**kwargs, owner=self.owner)

    def append(self, session_id: str, event) -> int:     # the caller's own new session
        return self.store.append(session_id, event)

    def finish(self, session_id: str, **kwargs) -> dict:
        return self.store.finish(session_id, **kwargs)

    def import_session(self, data: Any) -> str:
        """The file's session becomes the importer's (whatever owner it names)."""
        self._need_user("import a session")
        if isinstance(data, dict) and isinstance(data.get("session"), dict):
            data = {**data, "session": {**data["session"], "owner": self.owner}}
        return self.store.import_session(data)

    def delete(self, session_id: str) -> None:
        if self.restricted:
            row = self._visible_row(session_id)
            if row.get("owner") is None:
                raise StoreError(f"session {session_id!r} is a shared run (a sample, or recorded without "
                                 "--auth): it can be opened and exported, not deleted here")
        self.store.delete(session_id)


def server_paths_allowed(store_or_access=None, request: gr.Request | None = None) -> bool:
    """False in classroom mode: an `Access` that is multi-user, or a request with a logged-in user."""
    if isinstance(store_or_access, Access):
        return not store_or_access.multi_user
    return not getattr(request, "username", None)


def refuse_server_paths(store_or_access, request: gr.Request | None, **fields: str | None) -> None:
    """A gr.Error naming the first non-empty field when server paths are off (classroom mode)."""
    if server_paths_allowed(store_or_access, request):
        return
    for name, value in fields.items():
        if value is not None and str(value).strip():
            raise gr.Error(t("{name} names a file, folder or download on the server; a shared (classroom) "
                             "server does not allow that: leave it empty", name=t(name)), print_exception=False)


# ---- handlers that receive the request -------------------------------------------------------

def with_request(fn: Callable, *bound) -> Callable:
    """``functools.partial(fn, *bound)`` that still shows Gradio ``fn``'s other parameters with
    their annotations, so a ``request: gr.Request`` parameter is filled in (Gradio reads the
    annotations, which a partial hides). Generator functions stay generator functions."""
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())[len(bound):]
    if inspect.isgeneratorfunction(fn):
        def call(*args, **kwargs):
            yield from fn(*bound, *args, **kwargs)
    else:
        def call(*args, **kwargs):
            return fn(*bound, *args, **kwargs)
    functools.update_wrapper(call, fn)
    del call.__wrapped__                        # inspect.signature would follow it back to fn
    call.__signature__ = sig.replace(parameters=params)
    # only the request's hint: the others are strings naming the other module's globals
    call.__annotations__ = {p.name: gr.Request for p in params if p.name == "request"}
    return call
