"""Merge the generate calls of several searches running at once into shared forward passes.

`Batcher` sits in front of one `TransformersBackend`. Each search gets its own `BatchedClient`,
which looks like a backend to the search (no method changes): its ``generate`` hands the call
to the batcher's scheduler thread and waits. The scheduler keeps one running batch
(engine/models/decode.py): at every token it admits the calls that arrived meanwhile (one
prefill pass for all of them), advances every running row by one token in one forward pass,
and hands back the calls whose rows are all done. So K searches cost about one forward pass
per token instead of K, and a search's call never waits for another's to end.

Sliding-window models (Gemma2, ...) are not merged: their calls run one at a time, each as it
runs alone, because transformers counts the window in mask columns, pads included.

Each client keeps its own prefix cache (as large as the backend's), which its search resets
when it starts, as a search alone resets the backend's: what a search reuses, and so its token
counts, do not depend on what runs beside it. Memory: up to K times the prefix cache.

``distribution``, ``score`` and the other calls a search may make run on the backend directly,
one at a time with the scheduler's forward passes (the backend's ``model_lock``).

Not here: the decode loop (decode.py); running K searches on threads (engine/evaluation/concurrent.py).
Through a server backend no batcher is needed: K threads' requests are in flight at once and the
server batches them.
"""

from __future__ import annotations

import threading
from typing import Callable, Sequence

import torch

from engine.models.base import Generation, StopSpec
from engine.models.decode import Decoder, Request
from engine.models.prefix_cache import PrefixCache
from engine.sampling import SamplingConfig

MAX_ROWS = 256     # rows in the running batch; later calls wait for room (one call always runs)


class Batcher:
    """The scheduler thread of one backend. Use as a context manager, or call `close`."""

    def __init__(self, backend, *, max_rows: int = MAX_ROWS):
        if not isinstance(max_rows, int) or isinstance(max_rows, bool) or max_rows < 1:
            raise ValueError(f"max_rows must be a whole number >= 1, got {max_rows!r}")
        self.backend = backend
        self.max_rows = max_rows
        self.merge = not backend.sliding_window
        self.decoder = Decoder(backend)     # a long-running batch: slot buffers, no copy per token
        self._cv = threading.Condition()
        self._pending: list[Request] = []
        self._events: dict[int, threading.Event] = {}      # id(request) -> its caller's event
        self._finished: dict[int, Request] = {}            # id(event) -> the request that ended (a
                                                           # restarted request is a new object)
        self._closed = False
        self.steps = 0            # forward passes of the running batch (tokens advanced)
        self.row_steps = 0        # rows advanced, summed over steps: row_steps / steps is the mean batch
        self._thread = threading.Thread(target=self._loop, name="thoughtscope-batcher", daemon=True)
        self._thread.start()

    def client(self) -> "BatchedClient":
        return BatchedClient(self)

    def submit(self, request: Request) -> list[Generation]:
        """Run ``request`` in the shared batch; blocks until its rows are done."""
        done = threading.Event()
        with self._cv:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            self._events[id(request)] = done
            self._pending.append(request)
            self._cv.notify()
        done.wait()
        request = self._finished.pop(id(done))
        if request.error is not None:
            raise request.error
        return request.result

    def _take(self) -> list[Request]:
        """Pending calls that fit beside the running rows (the first always runs); one at a time
        for a sliding-window model (see `TransformersBackend`: padding would change its window)."""
        take, rows = [], self.decoder.rows
        if not self.merge:
            return [self._pending.pop(0)] if self._pending and not rows else []
        while self._pending and (not rows or rows + self._pending[0].rows <= self.max_rows):
            r = self._pending.pop(0)
            take.append(r)
            rows += r.rows
        return take

    @torch.inference_mode()
    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._pending and not self.decoder.requests and not self._closed:
                    self._cv.wait()
                if self._closed and not self._pending and not self.decoder.requests:
                    return
                take = self._take()
            before = list(self.decoder.requests) + take
            try:
                with self.backend.model_lock:
                    if take:
                        self.decoder.admit(take)
                    self.row_steps += self.decoder.rows
                    self.steps += 1
                    self.decoder.step()
            except Exception as e:
                self.decoder.clear()
                self._failed(before, e)
            running = set(map(id, self.decoder.requests))
            with self._cv:
                for r in before:
                    if id(r) not in running and id(r) in self._events:
                        event = self._events.pop(id(r))
                        self._finished[id(event)] = r
                        event.set()

    def _failed(self, requests: list[Request], e: Exception) -> None:
        """A forward pass failed. Out of memory with several calls running: halve the batch
        and start them again (their tokens are drawn afresh, the same as before); one call alone
        is run by the backend, which halves its own batch. Any other error fails every call."""
        from engine.models.transformers_backend import is_out_of_memory
        if not is_out_of_memory(e):
            for r in requests:
                r.error = r.error or e
            return
        from engine.models.transformers_backend import free_accelerator_memory
        free_accelerator_memory()
        if len(requests) == 1:
            r = requests[0]
            try:
                r.result = self.backend.generate_ids(r.encoded, sampling=r.sampling, stop=r.stop,
                                                     max_new_tokens=r.max_new_tokens, seed=r.seed,
                                                     should_stop=r.should_stop, prefix_cache=r.prefix_cache)
            except Exception as again:
                r.error = again
            return
        self.max_rows = max(1, sum(r.rows for r in requests) // 2)
        with self._cv:
            self._pending[:0] = [r.restart() for r in requests]
            for old, new in zip(requests, self._pending):
                self._events[id(new)] = self._events.pop(id(old))

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join()

    def __enter__(self) -> "Batcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class BatchedClient:
    """What one search sees: the backend, with ``generate`` going through the batcher and a
    prefix cache of its own. Everything else is the backend's."""

    def __init__(self, batcher: Batcher):
        self._batcher = batcher
        self._backend = batcher.backend
        shared = self._backend.prefix_cache
        self.prefix_cache = PrefixCache(shared.max_bytes) if shared is not None else None

    def __getattr__(self, name):          # info, encode, render_prompt, prompt_format, tokenizer, ...
        return getattr(self._backend, name)

    def reset_prefix_cache(self) -> None:
        if self.prefix_cache is not None:
            self.prefix_cache.clear()

    def generate(self, prompts: Sequence[str], *, sampling: SamplingConfig, stop: StopSpec = StopSpec(),
                 max_new_tokens: int = 256, seed: int = 0,
                 should_stop: Callable[[], bool] | None = None) -> list[Generation]:
        encoded = self._backend.check_request(prompts, max_new_tokens)
        if not encoded:
            return []
        return self._batcher.submit(Request(encoded, sampling, stop, max_new_tokens, seed, should_stop,
                                            self.prefix_cache))

    def _locked(self, method: str, *args):
        with self._backend.model_lock:
            return getattr(self._backend, method)(*args)

    def distribution(self, prompt: str):
        return self._locked("distribution", prompt)

    def score(self, prompt: str, continuation: str):
        return self._locked("score", prompt, continuation)

    def score_ids(self, prompt: str, continuation_ids):
        return self._locked("score_ids", prompt, continuation_ids)

    def continuation_logits(self, prompt: str, continuation_ids):
        return self._locked("continuation_logits", prompt, continuation_ids)
