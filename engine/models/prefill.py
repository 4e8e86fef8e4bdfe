"""How prompts enter the decoder's batch: the prefill passes and the caches they fill.

`Prefill` is the part of `Decoder` (engine/models/decode.py) that computes prompts: every prompt
in full, left-padded into one batch (`_prefill`), or only what each row's prefix cache lacks
(`_prefill_cached`, reading engine/models/prefix_cache.py), with one forward pass that computes
logits for the last position only. It also makes the caches: transformers' plain key/value
layers for a prefill, slot buffers (engine/models/growing_cache.py) for the running batch.

Not here: the running batch itself, sampling and stopping (decode.py).
"""

from __future__ import annotations

import torch

from engine.models import cascade
from engine.models.prefix_cache import Match, PrefixCache


class Prefill:
    """Mixed into `Decoder`: needs ``self.b``, the backend."""

    def _new_cache(self):
        # plain key/value layers for every model, sliding-window ones too: the attention mask
        # applies the window, so keeping all keys gives the same logits, and a plain layer can
        # be cut, copied into the prefix cache and padded onto a running batch
        from transformers import DynamicCache
        if not self.b.plain_cache:
            return DynamicCache(config=self.b.model.config)
        return DynamicCache()

    def _slot_cache(self):
        """The long-running batch's cache: `SlotLayer`s, which the prefilled rows join."""
        from transformers import DynamicCache
        from engine.models.growing_cache import slot_layer
        cache = DynamicCache()
        cache.layer_class_to_replicate = slot_layer()
        cache.layers = [cache.layer_class_to_replicate() for _ in range(self.b.num_layers)]
        return cache

    def _forward(self, input_ids, mask, positions, cache, shared=None):
        """The model's next-token logits (rows, vocab), as float32; only the last position's
        logits are computed (``logits_to_keep=1``): a prompt's other positions are never read.
        ``shared``: a decode pass's `cascade.Plan`, which then stands in for the mask."""
        kw = {self.b.cache_kw: cache, **({"logits_to_keep": 1} if self.b.keeps_logits else {})}
        if shared is not None:
            mask, kw["cascade"] = cascade.placeholder_mask(), shared
        out = self.b.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, **kw)
        return out.logits[:, -1, :].float().to(self.b.device)   # spread over GPUs: from the last one

    def _prefill(self, encoded: list[list[int]]):
        """Every prompt computed in full, left-padded into one batch. Returns the cache, the
        attention mask, the next position ids (batch, 1), the last logits (batch, vocab) and
        (computed, reused) prompt tokens per row."""
        device = self.b.device
        batch, width = len(encoded), max(len(ids) for ids in encoded)
        input_ids = torch.full((batch, width), self.b._pad, dtype=torch.long)
        mask = torch.zeros((batch, width), dtype=torch.long)
        for i, ids in enumerate(encoded):                       # left padding
            input_ids[i, width - len(ids):] = torch.tensor(ids)
            mask[i, width - len(ids):] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        cache = self._new_cache()
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = self._forward(input_ids, mask, positions, cache)
        return cache, mask, positions[:, -1:] + 1, logits, [(len(ids), 0) for ids in encoded]

    def _cached_whole(self, encoded: list[list[int]], groups: list[int], caches: list[PrefixCache | None]):
        """When every prompt is in its prefix cache whole, next-token logits included (a tree
        node being expanded: most calls of a search), nothing is computed: returns the attention
        mask, next position ids, logits and (computed, reused) counts as `_prefill_cached` would,
        and ``blocks``: (the prompt's `Match`, how many rows) for each run of equal prompts of
        one request, whose key/values the running batch copies straight from the cache's pieces
        (`SlotLayer.join_pieces`). None when some prompt has anything to compute."""
        if any(c is None for c in caches):
            return None
        blocks: list[list] = []
        with self.b._cache_lock:
            for i, ids in enumerate(encoded):
                if i and groups[i - 1] == groups[i] and encoded[i - 1] == ids:
                    blocks[-1][1] += 1
                    continue
                m = caches[i].match(ids)
                if m.length < len(ids) or m.logits is None:
                    return None
                blocks.append([m, 1])
        device = self.b.device
        lens = torch.tensor([len(ids) for ids in encoded])
        width = int(lens.max())
        mask = (torch.arange(width) >= (width - lens)[:, None]).long().to(device)     # left padding
        logits = torch.stack([m.logits.to(device) for m, rows in blocks for _ in range(rows)])
        counts = [(0, len(ids)) for ids in encoded]
        return mask, lens.to(device)[:, None], logits, counts, blocks

    def _prefill_cached(self, encoded: list[list[int]], groups: list[int], caches: list[PrefixCache | None]):
        """Like `_prefill`, computing only what each row's prefix cache lacks. Equal prompts of
        one request (same ``groups`` entry) are computed once and their rows copied from it.
        Row layout (columns):

            [pad][cached prefix c][pad][new suffix s]      the mask is 0 on the pads

        so rows with different cached lengths share one forward pass; position ids count only
        real tokens, so every key/value sits at its true position."""
        device = self.b.device
        unique: dict[tuple, int] = {}
        row_of = [unique.setdefault((g, tuple(ids)), len(unique)) for g, ids in zip(groups, encoded)]
        firsts = {u: r for r, u in reversed(list(enumerate(row_of)))}
        prompts = [list(k[1]) for k in unique]
        with self.b._cache_lock:
            matches = [caches[firsts[u]].match(ids) if caches[firsts[u]] is not None else Match()
                       for u, ids in enumerate(prompts)]
        lens = [len(ids) for ids in prompts]
        # a prompt whose next-token logits are not cached recomputes at least its last token
        cached = [m.length if m.length < n or m.logits is not None else n - 1 for m, n in zip(matches, lens)]
        suffix = [n - c for n, c in zip(lens, cached)]
        U, C, S = len(prompts), max(cached), max(suffix)
        cache = self._new_cache()
        mask = torch.zeros((U, C + S), dtype=torch.long)
        for u in range(U):
            mask[u, C - cached[u]:C] = 1
            mask[u, C + S - suffix[u]:] = 1
        if C:
            for layer in range(self.b.num_layers):
                ks, vs = [], []
                for u, m in enumerate(matches):
                    k, v = (m.kv(layer, cached[u]) if cached[u] else (None, None))
                    ks.append(k)
                    vs.append(v)
                proto_k = next(k for k in ks if k is not None)
                proto_v = next(v for v in vs if v is not None)
                K = proto_k.new_zeros((U, proto_k.shape[0], C, proto_k.shape[2]))   # (batch, heads, C, head_dim)
                V = proto_v.new_zeros((U, proto_v.shape[0], C, proto_v.shape[2]))
                for u in range(U):
                    if cached[u]:
                        K[u, :, C - cached[u]:] = ks[u]
                        V[u, :, C - cached[u]:] = vs[u]
                cache.update(K, V, layer)
        mask = mask.to(device)
        logits = [m.logits if s == 0 else None for m, s in zip(matches, suffix)]
        if S:
            input_ids = torch.full((U, S), self.b._pad, dtype=torch.long)
            positions = torch.zeros((U, S), dtype=torch.long)
            for u, ids in enumerate(prompts):
                if suffix[u]:
                    input_ids[u, S - suffix[u]:] = torch.tensor(ids[cached[u]:])
                    positions[u, S - suffix[u]:] = torch.arange(cached[u], lens[u])
            last = self._forward(input_ids.to(device), mask, positions.to(device), cache)
            logits = [last[u] if logits[u] is None else logits[u] for u in range(U)]
        logits = torch.stack([x.to(device) for x in logits])                # (U, vocab)
        next_pos = torch.tensor(lens, device=device)[:, None]
        index = torch.tensor(row_of, device=device)
        if U != len(encoded):
            cache.batch_select_indices(index)           # copy each unique prompt's rows out (batch, ...)
        counts, seen = [], set()
        for r, u in enumerate(row_of):
            counts.append((suffix[u], cached[u]) if u not in seen else (0, lens[u]))
            seen.add(u)
        return cache, mask[index], next_pos[index], logits[index], counts
