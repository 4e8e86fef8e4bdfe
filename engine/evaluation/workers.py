"""Spread an eval's searches over worker processes: ``thoughtscope eval --concurrency K --workers W``.

On a CPU, one process merging K searches' model calls (engine/evaluation/concurrent.py) is
held back by two things that more threads do not fix: the small matrix multiplies of a small
model use extra cores poorly, and everything outside them (sampling, stop checks, the searches'
own Python) runs under one interpreter lock. W processes, each with its own copy of the model,
its share of the cores (torch threads) and about K/W of the searches merged as before, run on W
cores at once. Problems are handed out from one queue as searches finish, so a worker with
easy problems takes more of them.

Each problem keeps its seed (the eval's seed + its index) whichever worker solves it, so its
events are the ones it yields alone, as with ``--concurrency`` in one process. Results come
back as they finish; the parent shows progress, tokens per second (each worker reports its
tokens with each result) and sums the workers' decoding clocks (their seconds add up across
workers, so they can exceed the wall time). A worker that fails stops the eval with its error;
one that dies is named with its exit code; a worker whose command is killed ends within a second.

Only for a local model on the CPU: a GPU is one device that one process batches best, and a
server (--server) batches the requests of K searches itself. ``--workers auto`` (the default)
picks the count (`auto_workers`): one per idle core, at most one per 2 searches, and no more
copies of the model than fit in half the free memory; 1 for a GPU, a server, a hub id whose
files are not here, or fewer than 4 searches.

Not here: one process's merged searches (concurrent.py), one problem's evaluation (evaluate.py).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

MAX_WORKERS = 64
AUTO = "auto"
AUTO_PER_WORKER = 2          # --workers auto: at least 2 searches a worker (its forward passes still merge)
AUTO_MEMORY_SHARE = 0.5      # ... and the workers' copies of the model in at most half the free memory
PROCESS_BYTES = 512 * 2**20  # a worker beside its model: Python, torch, the searches (about 500 MB measured)
POLL_S = 0.5              # how often the parent looks whether a worker died while it waits
PARENT_CHECK_S = 1.0      # how often a worker looks whether the command that started it is gone


def check_workers(workers, concurrency: int, server: str | None = None, device: str = "cpu") -> None:
    """``--workers W`` beside ``--concurrency K``: each worker runs at least one search; a local
    model on the CPU (``device`` as --device gives it: auto means a GPU where there is one)."""
    if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers must be a whole number from 1 to {MAX_WORKERS}, got {workers!r}")
    if workers > 1 and server:
        raise ValueError("workers must be 1 with --server: the server batches the requests of "
                         "--concurrency K searches itself")
    if workers > 1 and _on_gpu(device):
        raise ValueError(f"workers must be 1 for a model on {device}: one process batches a GPU's "
                         f"searches best (use --concurrency alone)")
    if workers > concurrency:
        raise ValueError(f"workers must be at most concurrency ({concurrency}): each worker runs at least "
                         f"one search, got {workers}")


def _on_gpu(device: str) -> bool:
    """Whether a model loaded with ``--device device`` goes to a GPU (auto: where there is one)."""
    if device == "cpu":
        return False
    import torch
    return torch.cuda.is_available()


def auto_workers(concurrency: int, cores: int, *, copy_bytes: int | None, free_bytes: int | None,
                 gpu: bool = False) -> int:
    """How many workers ``--workers auto`` runs for a local model: 1 on a GPU, with one idle core,
    fewer than 4 searches or a model of unknown size; else one per core, at most one per
    `AUTO_PER_WORKER` searches, and only as many as copies of ``copy_bytes`` (the model and a
    worker's own process) fit in `AUTO_MEMORY_SHARE` of ``free_bytes``."""
    if gpu or cores < 2 or not copy_bytes or not free_bytes:
        return 1
    fit = int(AUTO_MEMORY_SHARE * free_bytes // copy_bytes)
    return max(1, min(cores, concurrency // AUTO_PER_WORKER, fit))


def model_bytes(model: str) -> int | None:
    """About what one copy of ``model`` takes loaded on the CPU in float32, from its files: a
    checkpoint's weights twice over (a bfloat16 one doubles), a GGUF's eight times (quantized
    weights are dequantized); None where the files are not here (a hub id, a missing model)."""
    from engine.models.registry import resolve
    try:
        _, source, gguf = resolve(model)
    except Exception:               # noqa: BLE001 — the load itself says what is wrong
        return None
    path = Path(source) / gguf if gguf else Path(source)
    if path.is_file():
        return path.stat().st_size * (8 if path.suffix == ".gguf" else 2)
    if path.is_dir():
        weights = [f for f in path.iterdir() if f.suffix in (".safetensors", ".bin")]
        return sum(f.stat().st_size for f in weights) * 2 or None
    return None


def resolve_workers(workers, concurrency: int, model: str, threads: int | None, server: str | None,
                    device: str) -> int:
    """``--workers`` as given, or the count ``auto`` picks for this eval (`auto_workers`); 1 for a
    server, which batches the searches' requests itself."""
    if workers != AUTO:
        return workers
    if server or concurrency < 2 * AUTO_PER_WORKER:   # before sampling the cores (0.2 s) and sizes
        return 1
    import psutil
    from engine.models.threads import wanted_threads
    size = model_bytes(model)
    return auto_workers(concurrency, wanted_threads(threads), copy_bytes=size and size + PROCESS_BYTES,
                        free_bytes=psutil.virtual_memory().available, gpu=_on_gpu(device))


def shares(k: int, workers: int) -> list[int]:
    """Searches at once per worker: ``k`` split as evenly as whole numbers allow."""
    return [k // workers + (w < k % workers) for w in range(workers)]


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs to load its model (`load_backend`'s arguments, threads
    excepted) and how many torch threads it gets."""

    model: str
    load: dict
    threads: int


class Workers:
    """W worker processes, each with the model loaded; a backend stand-in for `run_eval`:
    ``info`` (the model's), ``generated_tokens`` (summed over workers, for tokens per second),
    ``decode_clock`` (summed when the workers end) and ``map``, which `per_problem` evaluators
    call instead of solving here. Use as a context manager: the processes stop on leaving."""

    def __init__(self, spec: WorkerSpec, workers: int) -> None:
        from engine.models.decode import DecodeClock
        self.spec, self.n = spec, workers
        self.generated_tokens = 0
        self.decode_clock = DecodeClock()
        self.info = None
        self._ctx = multiprocessing.get_context("spawn")   # fork would copy torch's thread pools mid-use
        self._tasks = self._ctx.Queue()                     # problem indices, shared: who is free takes one
        self._inboxes = [self._ctx.Queue() for _ in range(workers)]   # each worker's job
        self._results = self._ctx.Queue()
        self._procs: list = []

    def __enter__(self) -> "Workers":
        for w in range(self.n):
            p = self._ctx.Process(target=_work, args=(w, self.spec, self._inboxes[w], self._tasks, self._results),
                                  name=f"thoughtscope-worker-{w}", daemon=True)
            p.start()
            self._procs.append(p)
        ready = 0
        try:
            while ready < self.n:           # every model loaded (or the first error) before any problem
                kind, w, payload = self._next()
                if kind == "ready":
                    ready += 1
                    self.info = self.info or payload
        except BaseException:
            self.__exit__()                 # a with-block whose __enter__ raises does not call __exit__
            raise
        return self

    def __exit__(self, *exc) -> None:
        for p in self._procs:
            if p.is_alive():
                p.terminate()
        for p in self._procs:
            p.join(timeout=5)

    def map(self, method: str, cfg, seed: int, problems: Sequence, shares_: list[int],
            progress: Callable[[int], None]) -> list:
        """Problem i solved by ``method``'s per-problem solver with seed ``seed + i`` on some
        worker, ``shares_[w]`` at once on worker w; the results in the problems' order. Once per
        `Workers`: the workers end with it."""
        for i in range(len(problems)):
            self._tasks.put(i)
        for _ in range(sum(shares_)):
            self._tasks.put(None)               # one stop per search thread
        for w in range(self.n):
            self._inboxes[w].put((method, cfg, seed, list(problems), shares_[w]))
        out: dict[int, object] = {}
        ended = 0
        while ended < self.n:
            kind, w, payload = self._next()
            if kind == "result":
                i, result, tokens = payload
                out[i] = result
                self.generated_tokens += tokens
                progress(1)
            elif kind == "ended":
                self.decode_clock.add(payload)
                ended += 1
        return [out[i] for i in range(len(problems))]

    def _next(self):
        """The next message from a worker; a worker's error is raised here, a dead worker named."""
        while True:
            try:
                kind, w, payload = self._results.get(timeout=POLL_S)
            except queue.Empty:
                for w, p in enumerate(self._procs):
                    if not p.is_alive() and p.exitcode not in (0, None):
                        raise RuntimeError(f"worker {w} stopped (exit code {p.exitcode}) before it finished; "
                                           f"the eval is lost: run it again with fewer --workers or without")
                continue
            if kind == "error":
                raise payload
            return kind, w, payload


def _work(w: int, spec: WorkerSpec, inbox, tasks, results) -> None:
    """A worker process: load the model, say ready, then solve problems from ``tasks`` on
    ``share`` threads (merged into shared forward passes) until each thread takes a stop."""
    threading.Thread(target=_end_with_parent, args=(os.getppid(),), daemon=True).start()
    try:
        from engine.models.registry import load_backend
        backend = load_backend(spec.model, threads=spec.threads, **spec.load)
        results.put(("ready", w, backend.info))
        method, cfg, seed, problems, share = inbox.get()
        _solve_from(w, backend, method, cfg, seed, problems, share, tasks, results)
        results.put(("ended", w, asdict(backend.decode_clock)))
    except BaseException as e:          # noqa: BLE001 — any failure goes to the parent, whole
        results.put(("error", w, _picklable(e)))


def _end_with_parent(parent: int) -> None:
    """Exit when the command that started this worker is gone (killed, or stopped without its
    cleanup): a worker must not go on solving problems for no one."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(1)


def _solve_from(w, backend, method, cfg, seed, problems, share, tasks, results) -> None:
    from engine.evaluation.concurrent import clients
    from engine.evaluation.evaluate import EVAL_METHODS
    solve = EVAL_METHODS[method].solve
    lock = threading.Lock()
    counted = [backend.generated_tokens]

    with clients(backend, share) as make:
        def search_thread() -> None:
            while True:
                i = tasks.get()
                if i is None:
                    return
                try:
                    result = solve(make(), cfg, seed + i, problems[i])
                except BaseException as e:      # noqa: BLE001 — said at once, not after the other problems
                    results.put(("error", w, _picklable(e)))
                    raise
                with lock:              # tokens since the last result this worker sent
                    now = backend.generated_tokens
                    tokens, counted[0] = now - counted[0], now
                    results.put(("result", w, (i, result, tokens)))

        with ThreadPoolExecutor(max_workers=share, thread_name_prefix="thoughtscope-search") as pool:
            for f in [pool.submit(search_thread) for _ in range(share)]:
                f.result()


def _picklable(e: BaseException) -> BaseException:
    """``e`` if it crosses to the parent as it is, else a RuntimeError with its text and trace."""
    import pickle
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:                   # noqa: BLE001
        return RuntimeError(f"{type(e).__name__}: {e}\n{''.join(traceback.format_exception(e))}")


def worker_threads(threads: int | None, workers: int) -> int:
    """Torch threads per worker: the cores given (--threads, else the idle ones) shared out."""
    from engine.models.threads import wanted_threads
    return max(1, wanted_threads(threads) // workers)
