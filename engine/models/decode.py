"""The decoding loop behind `TransformersBackend.generate`, for one request or several at once.

A `Request` is one ``generate`` call: its prompts (token ids), sampler chain, stop rule, token
budget, seed and prefix cache. A `Decoder` holds the rows of the requests now running in one
key/value cache and advances them together, one forward pass per token for all of them, so
the generate calls of K searches running at once (engine/models/batching.py) share forward
passes instead of taking turns. Requests join at any token (their prompts are prefilled in one
pass and their cache rows left-padded onto the running batch) and leave when their last row is
done, as continuous batching does (Orca, vLLM).

What each request gets does not depend on what else runs beside it: each request samples its
own rows with its own seeded `torch.Generator` (the draws one call alone would make, in the
same order), keeps its own step count and token budget, stops each row on its own stop strings,
and reads and fills its own prefix cache. Only the floats can differ: a row computed in a
bigger or differently padded batch is not summed in the same order, so logprobs can differ in
the last bits (measured in tests/test_concurrency.py and docs/scaling.md); the tokens are the
same unless two candidates are that close.

Row layout: every row is left-padded; position ids count only a row's real tokens, so a key/
value sits at its true position whatever pads stand before it (the mask is 0 on pads). A
request's rows are ``request.slots``, not necessarily adjacent: when a request leaves, the
batch's last rows move into its places, so a leave copies at most as many rows as it frees.

Not here: loading, tokenising and checking prompts (transformers_backend.py), the scheduler
thread that collects requests from searches (batching.py), the radix tree (prefix_cache.py).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from engine.models import cascade
from engine.models.base import Generation, Stopped, StopSpec, TokenLogprob, stop_if
from engine.models.prefill import Prefill
from engine.models.prefix_cache import PrefixCache
from engine.sampling import SamplingConfig, apply_chain

TOP_ALTERNATIVES = 5      # alternatives kept per generated token


@dataclass
class DecodeClock:
    """Where a backend's decoding time goes: decode passes, the rows and cache columns they
    carried, and wall seconds by part of the loop (joins: prefill or copies from a prefix cache;
    forward: the decode passes; sampling: logits to chosen tokens, one host transfer; stop checks:
    token records and stop strings; leaves: results, the prefix cache filled, rows moved). Every
    `Decoder` of a backend adds to the backend's clock (one thread at a time: a call alone, or the
    batching scheduler), and ``eval --json`` reports the difference over an eval ("decoding")."""

    passes: int = 0
    rows: int = 0             # summed over the decode passes: rows / passes is the mean batch
    columns: int = 0          # summed likewise: the mean width of the key/value cache
    cascade: int = 0          # decode passes whose attention read each shared prompt once (cascade.py)
    joins: float = 0.0
    forward: float = 0.0
    sampling: float = 0.0
    stop_checks: float = 0.0
    leaves: float = 0.0

    def since(self, before: "DecodeClock") -> dict:
        """What was added since ``before`` (a copy taken earlier), as ``eval --json`` shows it."""
        d = {k: v - getattr(before, k) for k, v in asdict(self).items()}
        passes = d["passes"]
        return {"passes": passes, "rows_mean": round(d["rows"] / passes, 2) if passes else 0,
                "columns_mean": round(d["columns"] / passes, 1) if passes else 0, "cascade_passes": d["cascade"],
                "seconds": {k: round(d[k], 2) for k in ("joins", "forward", "sampling", "stop_checks", "leaves")}}

    def copy(self) -> "DecodeClock":
        return DecodeClock(**asdict(self))

    def add(self, other: dict) -> None:
        """Add another clock's counts (``asdict`` of it: a worker process's, engine/evaluation/workers.py)."""
        for k, v in other.items():
            setattr(self, k, getattr(self, k) + v)


@dataclass(eq=False)
class Request:
    """One generate call and its progress (the decoder fills the fields after ``prefix_cache``)."""

    encoded: list[list[int]]
    sampling: SamplingConfig
    stop: StopSpec
    max_new_tokens: int
    seed: int
    should_stop: Callable[[], bool] | None = None
    prefix_cache: PrefixCache | None = None
    step: int = 0
    gen: torch.Generator | None = None
    counts: list = field(default_factory=list)       # (computed, reused) prompt tokens per row
    new_ids: list = field(default_factory=list)
    records: list = field(default_factory=list)
    done: list = field(default_factory=list)         # per row: None or (reason, stop string, text)
    fed: list = field(default_factory=list)          # new tokens whose key/values are in the cache
    slots: list = field(default_factory=list)        # per row: its row in the decoder's batch
    end_logits: list = field(default_factory=list)   # next-token logits after the last fed token
    spans: dict = field(default_factory=dict)        # where its prompts lie in the batch (cascade.py)
    result: list[Generation] | None = None
    error: BaseException | None = None

    def __post_init__(self) -> None:
        n = len(self.encoded)
        self.new_ids, self.records = [[] for _ in range(n)], [[] for _ in range(n)]
        self.done, self.fed, self.end_logits = [None] * n, [0] * n, [None] * n

    def restart(self) -> "Request":
        """The same call, not started (to run again after a failed batch)."""
        return Request(self.encoded, self.sampling, self.stop, self.max_new_tokens, self.seed, self.should_stop,
                       self.prefix_cache)

    @property
    def rows(self) -> int:
        return len(self.encoded)

    @property
    def finished(self) -> bool:
        return all(d is not None for d in self.done)


class Decoder(Prefill):
    """The running batch of one backend: requests in row order, their cache, mask, next
    positions (rows, 1) and next-token logits (rows, vocab). ``growing`` (every model whose cache
    is plain key/value attention): key/value buffers with spare rows and columns (`SlotLayer`,
    engine/models/growing_cache.py), so only the rows that join or move are copied; other caches
    (recurrent layers) stay transformers' own."""

    def __init__(self, backend):
        self.b = backend
        self.clock: DecodeClock = backend.decode_clock
        self.growing = backend.plain_cache
        # shared prompts read once (cascade.py)
        self.planner = cascade.Planner() if getattr(backend, "cascade", False) else None
        self.requests: list[Request] = []
        self.cache = self.mask = self.next_pos = self.logits = None

    def clear(self) -> None:
        self.requests = []
        if self.planner is not None:
            self.planner.reset()
        self.cache = self.mask = self.next_pos = self.logits = None

    @property
    def rows(self) -> int:
        return sum(r.rows for r in self.requests)

    def run(self, request: Request) -> list[Generation]:
        """Decode one request alone, start to end (what ``generate`` does)."""
        self.admit([request])
        try:
            while not self.step():
                pass
        finally:
            self.clear()
        if request.error is not None:
            raise request.error
        return request.result

    # ---- joining ---------------------------------------------------------------------------

    def admit(self, requests: list[Request]) -> None:
        """Prefill the new requests' prompts in one forward pass (or, when their prefix caches
        hold them whole, copy them from there) and add their rows."""
        t0 = time.perf_counter()
        self._admit(requests)
        self.clock.joins += time.perf_counter() - t0

    def _admit(self, requests: list[Request]) -> None:
        encoded = [ids for r in requests for ids in r.encoded]
        blocks = None
        if any(r.prefix_cache is not None for r in requests):
            groups = [k for k, r in enumerate(requests) for _ in r.encoded]
            caches = [r.prefix_cache for r in requests for _ in r.encoded]
            whole = self._cached_whole(encoded, groups, caches) if self.growing else None
            if whole is not None:       # nothing to compute: the rows are copied from the cache
                cache = None
                mask, next_pos, logits, counts, blocks = whole
            else:
                cache, mask, next_pos, logits, counts = self._prefill_cached(encoded, groups, caches)
        else:
            cache, mask, next_pos, logits, counts = self._prefill(encoded)
        at, base = 0, self.rows
        for r in requests:
            r.counts = counts[at:at + r.rows]
            r.gen = torch.Generator(device=self.b.device).manual_seed(int(r.seed))
            r.slots = list(range(base + at, base + at + r.rows))
            at += r.rows
        if not self.requests:
            self.cache = self._slot_cache() if self.growing else cache
            self.mask, self.next_pos, self.logits = mask, next_pos, logits
        else:
            width = max(self.mask.shape[1], mask.shape[1])
            if not self.growing:
                for old, new in zip(self.cache.layers, cache.layers):   # left-pad both to one width
                    old.keys = torch.cat([_left_pad(old.keys, width), _left_pad(new.keys, width)])
                    old.values = torch.cat([_left_pad(old.values, width), _left_pad(new.values, width)])
            self.mask = torch.cat([F.pad(self.mask, (width - self.mask.shape[1], 0)),
                                   F.pad(mask, (width - mask.shape[1], 0))])
            self.next_pos = torch.cat([self.next_pos, next_pos])
            self.logits = torch.cat([self.logits, logits])
        if blocks is not None:
            for layer, slots in enumerate(self.cache.layers):
                slots.join_pieces([(rows, m.kv_pieces(layer, m.length)) for m, rows in blocks])
        elif self.growing:                  # into the slot buffers: only the new rows are written
            for slots, new in zip(self.cache.layers, cache.layers):
                slots.join(new.keys, new.values)
        self.requests.extend(requests)

    # ---- one token for every row ---------------------------------------------------------

    def step(self) -> bool:
        """Sample one token for every running row, feed them in one forward pass, and finish the
        requests whose rows are all done (or whose ``should_stop()`` turned true: `Stopped`).
        Returns True when no request is left running. Finished requests carry ``result``."""
        stopped = []
        for r in self.requests:
            try:
                stop_if(r.should_stop)
            except Stopped as e:            # abandoned: the prefix cache keeps nothing of it
                r.error = e
                stopped.append(r)
        if stopped:
            self._drop(stopped)
        if not self.requests:
            return True
        b, logits, clock = self.b, self.logits, self.clock
        t0 = time.perf_counter()
        logp = torch.log_softmax(logits, dim=-1)                 # the model's own belief
        top_lp, top_id = torch.topk(logp, TOP_ALTERNATIVES, dim=-1)
        if len(self.requests) == 1:
            chosen = self._choose(self.requests[0], logits)
        else:
            chosen = self._choose_all(logits)
        chosen_lp = logp.gather(-1, chosen[:, None])
        # one host transfer for the whole step, the only sync per token (token ids are exact in
        # float32 below 2**24; vocabularies are smaller)
        packed = torch.cat([chosen[:, None].to(logp.dtype), chosen_lp, top_id.to(logp.dtype), top_lp], dim=1).tolist()
        chosen_l = [int(row[0]) for row in packed]
        chosen_lp_l = [row[1] for row in packed]
        top_id_l = [[int(x) for x in row[2:2 + TOP_ALTERNATIVES]] for row in packed]
        top_lp_l = [row[2 + TOP_ALTERNATIVES:] for row in packed]
        t1 = time.perf_counter()
        clock.sampling += t1 - t0
        feed: list[int] = []                                     # rows whose newest token goes in the cache
        for r in self.requests:
            self._advance(r, chosen_l, chosen_lp_l, top_lp_l, top_id_l, feed)
        t2 = time.perf_counter()
        clock.stop_checks += t2 - t1
        if feed:
            batch = len(chosen_l)
            col = torch.zeros((batch, 1), dtype=self.mask.dtype, device=b.device)
            col[feed] = 1
            ids_in = torch.where(col.bool(), chosen[:, None], b._pad)    # on the device: no copy back
            self.mask = torch.cat([self.mask, col], dim=1)
            shared = self.planner(self.requests, self.mask) if self.planner else None
            self.logits = self._forward(ids_in, self.mask, self.next_pos, self.cache, shared)
            self.next_pos = self.next_pos + 1
            fed = set(feed)
            for r in self.requests:
                for i, row in enumerate(r.slots):
                    if row in fed:
                        r.fed[i] += 1
                        if r.done[i] is not None:
                            r.end_logits[i] = self.logits[row].clone()
            clock.passes += 1
            clock.rows += batch
            clock.columns += self.mask.shape[1]
            clock.cascade += shared is not None
        t3 = time.perf_counter()
        clock.forward += t3 - t2
        finished = [r for r in self.requests if r.finished]
        for r in self.requests:
            r.step += 1
        if finished:
            for r in finished:
                self._finish(r)
            self._drop(finished)
            clock.leaves += time.perf_counter() - t3
        return not self.requests

    def _choose_all(self, logits: torch.Tensor) -> torch.Tensor:
        """Every running row's next token. Requests with the same sampler settings go through
        the sampler chain in one call (its stages work row by row, so each row's probabilities
        are those its request alone computes); each request then draws its rows with its own
        generator, as `_choose` does."""
        device = logits.device
        chosen = torch.empty(logits.shape[0], dtype=torch.long, device=device)
        groups: list[tuple[SamplingConfig, list[Request]]] = []
        for r in self.requests:
            group = next((g for s, g in groups if s == r.sampling), None)
            if group is None:
                groups.append((r.sampling, [r]))
            else:
                group.append(r)
        for sampling, requests in groups:
            rows = torch.tensor([row for r in requests for row in r.slots], device=device)
            if sampling.greedy:
                chosen[rows] = logits[rows].argmax(dim=-1)
                continue
            probs = torch.softmax(apply_chain(logits[rows], sampling), dim=-1)
            at = 0
            for r in requests:
                chosen[torch.tensor(r.slots, device=device)] = torch.multinomial(
                    probs[at:at + r.rows], 1, generator=r.gen).squeeze(-1)
                at += r.rows
        return chosen

    def _choose(self, r: Request, logits: torch.Tensor) -> torch.Tensor:
        """Request ``r``'s next tokens for its rows' ``logits`` (rows, vocab), drawn with its own
        generator: every row is drawn, done ones too, so the draws match the call alone."""
        if r.sampling.greedy:
            return logits.argmax(dim=-1)
        probs = torch.softmax(apply_chain(logits, r.sampling), dim=-1)
        return torch.multinomial(probs, 1, generator=r.gen).squeeze(-1)

    def _advance(self, r: Request, chosen_l, chosen_lp_l, top_lp_l, top_id_l, feed: list[int]) -> None:
        """Record request ``r``'s sampled tokens (its rows are batch rows ``r.slots``), check its
        stop rule, and list the rows to feed."""
        b, stop, cached = self.b, r.stop, r.prefix_cache is not None
        for i in range(r.rows):
            if r.done[i] is not None:
                continue
            row = r.slots[i]
            tid = chosen_l[row]
            r.new_ids[i].append(tid)
            r.records[i].append(TokenLogprob(tid, b.token_text(tid), chosen_lp_l[row], tuple(
                (b.token_text(x), y) for x, y in zip(top_id_l[row], top_lp_l[row]))))
            if stop.eos and tid in b._eos:
                r.done[i] = ("eos", None, b.tokenizer.decode(r.new_ids[i][:-1]))
                continue
            if stop.strings:
                text = b.tokenizer.decode(r.new_ids[i])
                start = len(text) - len(text.lstrip()) if stop.after_text else 0
                hits = [(text.find(s, start), s) for s in stop.strings if s in text[start:]]
                if hits:
                    at, s = min(hits)
                    r.done[i] = ("stop", s, text[:at + len(s)])
            if r.step == r.max_new_tokens - 1 and r.done[i] is None:
                r.done[i] = ("length", None, b.tokenizer.decode(r.new_ids[i]))
            # a finished row's last token is fed too when caching, so a later prompt that
            # extends this sequence (its child step) finds every key/value and the logits
            if r.done[i] is None or (cached and r.done[i][0] != "eos"):
                feed.append(row)

    # ---- leaving ---------------------------------------------------------------------------

    def _finish(self, r: Request) -> None:
        self.b.generated_tokens += sum(len(x) for x in r.records)   # the CLI's tokens per second
        if r.prefix_cache is not None:
            self._remember(r)
        r.result = [Generation(text=text, tokens=tuple(r.records[i]), stop_reason=reason, stop_string=stop_s,
                               prompt_tokens=r.counts[i][0], reused_tokens=r.counts[i][1])
                    for i, (reason, stop_s, text) in enumerate(r.done)]

    def _remember(self, r: Request) -> None:
        """Put every row's prompt + fed tokens, with its key/values, in the request's prefix cache."""
        for i, ids in enumerate(r.encoded):
            seq = list(ids) + r.new_ids[i][:r.fed[i]]
            cols = self.mask[r.slots[i]].nonzero().squeeze(-1)[:len(seq)]   # this row's real tokens, in order

            def kv_slice(start, end, row=r.slots[i], cols=cols):
                return [(layer.keys[row][:, cols[start:end]], layer.values[row][:, cols[start:end]])
                        for layer in self.cache.layers]
            logits = r.end_logits[i] if r.fed[i] == len(r.new_ids[i]) and r.fed[i] else None
            with self.b._cache_lock:
                r.prefix_cache.insert(seq, kv_slice, logits)

    def _drop(self, leaving: list[Request]) -> None:
        """Take ``leaving``'s rows out of the batch, and the columns no row uses any more. The
        rows that stay keep their places, except that the last rows move into the places freed
        below the new row count (only those rows are copied)."""
        staying = [r for r in self.requests if r not in leaving]
        if not staying:
            self.clear()
            return
        self.requests = staying
        n = sum(r.rows for r in staying)
        if n == self.mask.shape[0]:
            return
        freed = sorted(row for r in leaving for row in r.slots if row < n)
        movers = sorted((row, r, i) for r in staying for i, row in enumerate(r.slots) if row >= n)
        keep = list(range(n))                        # keep[j]: the old row now at row j
        for hole, (row, r, i) in zip(freed, movers):
            keep[hole] = row
            r.slots[i] = hole
        index = torch.tensor(keep, device=self.mask.device)
        if self.growing:
            for layer in self.cache.layers:
                layer.keep(keep)
        else:
            self.cache.batch_select_indices(index)
        self.mask, self.next_pos, self.logits = self.mask[index], self.next_pos[index], self.logits[index]
        used = self.mask.any(dim=0).nonzero()
        first = int(used[0]) if len(used) else 0
        if first:                                  # columns before every row's first token
            self.mask = self.mask[:, first:]
            for layer in self.cache.layers:
                if self.growing:
                    layer.drop_columns(first)
                else:
                    layer.keys, layer.values = layer.keys[:, :, first:], layer.values[:, :, first:]


def _left_pad(x: torch.Tensor, width: int) -> torch.Tensor:
    """(batch, heads, T, head_dim) padded with zeros on the left to ``width`` positions."""
    return F.pad(x, (0, 0, width - x.shape[2], 0))
