"""Give torch as many threads as there are idle cores, not as many cores as exist.

On a small machine a core already busy (a browser, a training run) makes a thread pinned to
it the straggler of every matrix multiply: two threads on two cores with one busy ran about
50x slower than one thread here. So we sample /proc/stat for a moment and count idle cores.
``THOUGHTSCOPE_THREADS`` or an explicit argument overrides the estimate.
"""

from __future__ import annotations

import math
import os
import time

ENV_VAR = "THOUGHTSCOPE_THREADS"


def _cpu_times() -> tuple[float, float] | None:
    try:
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields), idle


def free_cores(sample_s: float = 0.2) -> int:
    """Cores this process may use minus the ones busy right now (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    first = _cpu_times()
    if first is None:
        return max(1, cores - math.ceil(os.getloadavg()[0] - 0.5)) if hasattr(os, "getloadavg") else cores
    time.sleep(sample_s)
    second = _cpu_times()
    total, idle = second[0] - first[0], second[1] - first[1]
    machine_cores = os.cpu_count() or cores
    busy = (1 - idle / total) * machine_cores if total > 0 else 0.0
    return max(1, min(cores, machine_cores - math.floor(busy + 0.25)))


def wanted_threads(threads: int | None = None) -> int:
    """``threads``, else $THOUGHTSCOPE_THREADS, else the idle cores."""
    if threads is None and os.environ.get(ENV_VAR):
        try:
            threads = int(os.environ[ENV_VAR])
        except ValueError:
            raise ValueError(f"{ENV_VAR} must be a whole number, got {os.environ[ENV_VAR]!r}") from None
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a whole number >= 1, got {threads!r}")
    return threads or free_cores()


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads: ``threads``, else $THOUGHTSCOPE_THREADS, else idle cores."""
    import torch

    n = wanted_threads(threads)
    torch.set_num_threads(n)
    return n
