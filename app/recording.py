"""Running a method from a tab as a stored session: the form's config, the checks before any model
work, the store-as-you-go `Recording`, and Stop's words. The Search, LECO and Semantic entropy tabs
all run a method this way.

Not here: drawing or narrating a run (app/mcts_tab.py, app/replay.py), the Stop flag itself
(`app.generate_tab.RunControl`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import gradio as gr

from app.i18n import message, t

from app.generate_tab import RunControl
from engine import events as E
from engine.inputs import MAX_SEED, whole
from engine.models.base import InputError, ModelLoadError
from engine.search import METHODS
from engine.store import StoreError


def make_config(method: str, values: dict[str, Any]):
    """The method's config from the form; a bad value is a gr.Error naming the field."""
    if method not in METHODS:
        raise gr.Error(t("unknown method {method}", method=repr(method)), print_exception=False)
    cls = METHODS[method].config
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in values and values[f.name] is not None:
            v = values[f.name]
            kwargs[f.name] = int(v) if isinstance(f.default, int) and isinstance(v, float) and v.is_integer() else v
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise gr.Error(message(e), print_exception=False) from None


def create_session(store, **meta) -> str:
    """``store.create_session`` for a callback: a database that cannot be written (read-only,
    locked by another process) is a gr.Error saying so, before any model work starts."""
    try:
        return store.create_session(**meta)
    except StoreError as e:
        raise gr.Error(message(e), print_exception=False) from None


def fail_session(store, sid: str, e: Exception, wall_s: float):
    """Mark the session failed (when the database still lets us) and raise the gr.Error. The
    user's own input errors (`InputError`, `ModelLoadError`, `ValueError`) are stored and said as
    they are; a database error is said as it is; anything else is "the run failed: …". Other
    than the user's errors, the stored message starts with the error's type."""
    users = isinstance(e, (InputError, ModelLoadError, ValueError))
    try:
        store.finish(sid, status="failed", message=str(e) if users else f"{type(e).__name__}: {e}", wall_s=wall_s)
    except StoreError:
        pass                         # the run's own error is the one to show
    raise gr.Error(message(e) if users or isinstance(e, StoreError) else t("the run failed: {why}", why=e),
                   print_exception=False) from None


def checked_seed(backend, question: str, seed) -> int:
    """The question checked by the backend (empty, too long, not text) and the seed as a whole
    number (None: 0); a bad one is a gr.Error before anything is stored."""
    try:
        backend.render_prompt(question)
        return whole(0 if seed is None else seed, "seed", 0, MAX_SEED)
    except InputError as e:
        raise gr.Error(message(e), print_exception=False) from None


class Recording:
    """One run of a method from a tab, stored as it goes: the session is created before any
    model work, each event is appended the moment it comes (so a crash loses nothing), and the
    session is finished however the run ends — done, stopped or failed as its `RunFinished`
    says, or failed with the error, which is raised as a gr.Error."""

    def __init__(self, store, backend, method: str, question: str, gold, config, seed: int):
        self.store = store
        self.sid = create_session(store, method=method, model=backend.info.name, question=question.strip(),
                                  gold=None if gold is None else str(gold), config=config.to_json(), seed=seed)
        self.events: list[E.Event] = []
        self.finished: E.RunFinished | None = None
        self.started = time.perf_counter()

    @property
    def wall_s(self) -> float:
        return time.perf_counter() - self.started

    def follow(self, run):
        """Store and yield each event of ``run``; then finish the session."""
        try:
            for ev in run:
                self.store.append(self.sid, ev)
                self.events.append(ev)
                yield ev
        except Exception as e:
            fail_session(self.store, self.sid, e, self.wall_s)
        last = self.events[-1] if self.events else None
        self.finished = last if isinstance(last, E.RunFinished) else None
        f = self.finished
        self.store.finish(self.sid, status=f.status if f else "done", message=f.message if f else "",
                          wall_s=self.wall_s)


STOPPING = "Stopping…"          # a t() key


def stop_search(control: RunControl) -> str:
    control.request_stop()
    return t(STOPPING) if control.running else t("No run is going: nothing to stop.")


def stop_settled(control: RunControl, line: str | None):
    """After a LECO or semantic-entropy run: a status line still saying "Stopping…" says the
    run has stopped (no change otherwise)."""
    return t("Stopped.") if control.end() and (line or "").strip() in (STOPPING, t(STOPPING)) else gr.skip()
