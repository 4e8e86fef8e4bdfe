"""Progress of long CLI work on stderr: a tqdm bar in a terminal, and in a log file (stderr not
a terminal: ``nohup``, CI, a pipe) a plain line at most every ``LOG_EVERY_S`` seconds and one at
the end, so an overnight eval shows how far it got. stdout (the JSON) is never touched."""

from __future__ import annotations

import sys
import time

LOG_EVERY_S = 30.0


class _LogLines:
    def __init__(self, total: int, desc: str, unit: str, file) -> None:
        self.total, self.desc, self.unit, self.file = total, desc, unit, file
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
        print(f"{self.desc}: {self.n}/{self.total} {self.unit}s, {elapsed:.0f} s"
              + (f", about {left:.0f} s left" if self.n < self.total and self.n else ""),
              file=self.file, flush=True)

    def __enter__(self) -> "_LogLines":
        return self

    def __exit__(self, *exc) -> None:
        pass


def progress(total: int, desc: str, unit: str = "problem", file=None):
    """A context manager with ``update(k)``: tqdm on a terminal, log lines elsewhere."""
    file = file or sys.stderr
    if getattr(file, "isatty", lambda: False)():
        from tqdm import tqdm
        return tqdm(total=total, desc=desc, unit=unit, file=file)
    return _LogLines(total, desc, unit, file)
