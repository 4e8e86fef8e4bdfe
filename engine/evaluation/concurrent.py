"""Run K problems' searches at once: what ``thoughtscope eval --concurrency K`` does.

Each problem's search runs on a thread of its own with the seed it has in a one-at-a-time
eval (the eval's seed + the problem's index), so its events are the ones it yields alone.
On the local backend the threads' generate calls are merged into shared forward passes by a
`Batcher` (engine/models/batching.py), each search with a prefix cache of its own; any other
backend (an OpenAI-compatible server) is called from the K threads directly, so K searches'
requests are in flight at once and the server batches them.

Not here: what one problem's evaluation is (engine/evaluation/evaluate.py), the decode loop
(engine/models/decode.py).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence, TypeVar

MAX_CONCURRENCY = 256

T = TypeVar("T")


def check_concurrency(method: str, k) -> None:
    """``--concurrency K``: K problems' searches at once, for the methods that run a search per
    problem; greedy and sc already batch problems together (their --batch-size), LECO runs alone."""
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_CONCURRENCY:
        raise ValueError(f"concurrency must be a whole number from 1 to {MAX_CONCURRENCY}, got {k!r}")
    from engine.evaluation.evaluate import BATCHED, EVAL_METHODS
    if k != 1 and not getattr(EVAL_METHODS.get(method), "concurrent", False):
        why = "batches problems already (use --batch-size)" if method in BATCHED else "runs one problem at a time"
        raise ValueError(f"concurrency must be 1 for method {method!r}: it {why}")


def per_problem(solve: Callable, method: str) -> Callable:
    """An evaluator that runs ``solve(backend, cfg, seed, problem)`` on each problem, problem i
    with seed ``seed + i``; ``concurrency`` of them at once (engine/evaluation/concurrent.py),
    with the same seeds, so each search's events are those it yields alone. Given worker
    processes (engine/evaluation/workers.py) for a backend, they solve the problems instead,
    through ``solve`` (kept as the evaluator's ``solve``)."""
    def evaluate(backend, problems, cfg, seed: int, progress, concurrency: int = 1) -> list[ProblemResult]:
        from engine.evaluation.workers import Workers, shares
        if isinstance(backend, Workers):
            return backend.map(method, cfg, seed, problems, shares(concurrency, backend.n), progress)
        return map_concurrently(lambda b, i, p: solve(b, cfg, seed + i, p), backend, problems, concurrency,
                                progress)
    evaluate.__name__ = f"eval_{method}"
    evaluate.concurrent = True
    evaluate.solve = solve
    return evaluate


def mergeable(backend) -> bool:
    """Whether ``backend``'s generate calls can be merged here (a local transformers model)."""
    from engine.models.transformers_backend import TransformersBackend
    return isinstance(backend, TransformersBackend)


@contextmanager
def clients(backend, k: int) -> Iterator[Callable[[], object]]:
    """A factory of per-search backends for ``k`` searches at once: batched clients of one
    scheduler on the local backend, the backend itself otherwise (it takes concurrent calls)."""
    if k > 1 and mergeable(backend):
        from engine.models.batching import Batcher
        with Batcher(backend) as batcher:
            yield batcher.client
    else:
        yield lambda: backend


def map_concurrently(fn: Callable[[object, int, T], object], backend, items: Sequence[T], k: int,
                     progress: Callable[[int], None] = lambda n: None) -> list:
    """``[fn(search_backend, i, item) for i, item in enumerate(items)]``, up to ``k`` at once,
    in the items' order; ``progress(1)`` as each one ends. The first error is raised once
    the running ones have ended; items not started then are skipped."""
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_CONCURRENCY:
        raise ValueError(f"concurrency must be a whole number from 1 to {MAX_CONCURRENCY}, got {k!r}")
    if k == 1:
        out = []
        for i, item in enumerate(items):
            out.append(fn(backend, i, item))
            progress(1)
        return out
    lock, failed = threading.Lock(), threading.Event()

    with clients(backend, k) as make:
        def one(i: int, item: T):
            if failed.is_set():
                return None
            try:
                result = fn(make(), i, item)
            except BaseException:
                failed.set()
                raise
            with lock:
                progress(1)
            return result

        with ThreadPoolExecutor(max_workers=min(k, len(items)) or 1, thread_name_prefix="thoughtscope-search") as pool:
            futures = [pool.submit(one, i, item) for i, item in enumerate(items)]
            return [f.result() for f in futures]
