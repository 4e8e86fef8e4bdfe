"""Progress of long CLI work on stderr: a tqdm bar in a terminal, and in a log file (stderr not
a terminal: ``nohup``, CI, a pipe) a plain line at most every ``LOG_EVERY_S`` seconds and one at
the end, so an overnight eval shows how far it got. Both show the problems done, the ETA and,
given a ``tokens()`` counter (the local backend's tokens sampled so far), tokens per second.
stdout (the JSON) is never touched. The words follow LANG (engine/cli `_t`: "2/3 道题，31 秒" under
LANG=zh_CN); the description a command passes is shown as given (a command words its own through
`_t`: ``train PPM`` is "训练 PPM"; ``mcts hard`` names a method and a tier and stays), and tqdm's own
frame is tqdm's."""

from __future__ import annotations

import sys
import time
from typing import Callable

LOG_EVERY_S = 30.0
# "3/10 problems": one catalogue key per unit a command counts in (the Chinese needs its own
# measure word for each); another unit is said in English
DONE = {"problem": "{n}/{total} problems", "run": "{n}/{total} runs", "epoch": "{n}/{total} epochs",
        "step": "{n}/{total} steps"}


def _t(text: str, **fields) -> str:
    from engine.cli import _t as t     # the CLI's words in the language of LANG
    return t(text, **fields)


class _LogLines:
    def __init__(self, total: int, desc: str, unit: str, file, tokens: Callable[[], int] | None) -> None:
        self.total, self.desc, self.unit, self.file = total, desc, unit, file
        self.tokens = tokens
        self.tokens0 = tokens() if tokens else 0
        self.n = 0
        self.started = self.last = time.monotonic()

    def update(self, k: int = 1) -> None:
        self.n += k
        now = time.monotonic()
        if now - self.last >= LOG_EVERY_S or self.n >= self.total:
            self.last = now
            self._line(now)

    def _line(self, now: float) -> None:
        elapsed = now - self.started
        left = elapsed / self.n * (self.total - self.n) if self.n else float("nan")
        done = (_t(DONE[self.unit], n=self.n, total=self.total) if self.unit in DONE
                else f"{self.n}/{self.total} {self.unit}s")
        line = _t("{desc}: {done}, {elapsed} s", desc=self.desc, done=done, elapsed=f"{elapsed:.0f}")
        if self.tokens and elapsed > 0:
            line += _t(", {rate} tokens/s", rate=f"{(self.tokens() - self.tokens0) / elapsed:.0f}")
        if self.n < self.total and self.n:
            line += _t(", about {left} s left", left=f"{left:.0f}")
        print(line, file=self.file, flush=True)

    def __enter__(self) -> "_LogLines":
        return self

    def __exit__(self, *exc) -> None:
        pass


class _Bar:
    """tqdm (which shows the ETA) with tokens per second beside it."""

    def __init__(self, total: int, desc: str, unit: str, file, tokens: Callable[[], int] | None) -> None:
        from tqdm import tqdm
        self.bar = tqdm(total=total, desc=desc, unit=unit, file=file)
        self.tokens = tokens
        self.tokens0 = tokens() if tokens else 0
        self.started = time.monotonic()

    def update(self, k: int = 1) -> None:
        elapsed = time.monotonic() - self.started
        if self.tokens and elapsed > 0:
            self.bar.set_postfix_str(_t("{rate} tokens/s", rate=f"{(self.tokens() - self.tokens0) / elapsed:.0f}"),
                                     refresh=False)
        self.bar.update(k)

    def __enter__(self) -> "_Bar":
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()


def progress(total: int, desc: str, unit: str = "problem", file=None, tokens: Callable[[], int] | None = None):
    """A context manager with ``update(k)``: tqdm on a terminal, log lines elsewhere.
    ``tokens()``: tokens generated so far, for tokens per second (None: not shown)."""
    file = file or sys.stderr
    if getattr(file, "isatty", lambda: False)():
        return _Bar(total, desc, unit, file, tokens)
    return _LogLines(total, desc, unit, file, tokens)
