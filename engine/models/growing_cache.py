"""Key/value layers with room to grow, for the long-running batch of many searches.

transformers' `DynamicLayer` keeps each layer's keys and values as one tensor of exactly the
batch's size and appends a token by concatenating the whole cache (``torch.cat``). In the batch
of K searches that is a copy of every key and value at every token, and another at every join
and leave of a request (a pad-and-concatenate, then a row selection): profiled on 16 hard MCTS
problems at K = 8, those copies took 40 % as long as the forward passes themselves.

`SlotLayer` keeps them in buffers with spare rows ("slots") and spare columns on both sides:

    buffer (slots, heads, columns, head_dim)     the batch is rows [0, rows), columns [first, end)

- a new token is written in place at column ``end`` (no copy);
- a joining request's rows go into the next free slots, right-aligned to ``end`` (left-padded,
  as the decoder lays rows out); only the new rows are written, and a prompt found whole in a
  prefix cache is copied straight from the cache's pieces (`join_pieces`);
- a leaving request's slots are filled by the batch's last rows (only those rows move);
- columns no row uses any more are dropped by moving ``first`` (no copy).

A buffer is reallocated, with half again as much room, only when it is full. ``keys`` and
``values`` are always views of the batch's region, so the attention, the prefix cache and
anything else that reads a `DynamicLayer` read the same numbers as before.

Pads are zeros (the mask hides them, but a stale NaN from a departed row would still poison
``0 × NaN`` in the attention's sum), so every column a row newly covers is cleared.

Not here: which batch uses it and the row layout (engine/models/decode.py, ``Decoder.growing``).
"""

from __future__ import annotations

import torch

_SLOT = None
SPARE_COLUMNS = 64      # the least spare room a (re)allocation leaves on each side


def slot_layer():
    """The `SlotLayer` class, defined on first use (transformers is imported lazily)."""
    global _SLOT
    if _SLOT is None:
        from transformers.cache_utils import DynamicLayer

        class SlotLayer(DynamicLayer):
            """A key/value layer of the running batch; see the module docstring."""

            def lazy_initialization(self, key_states, value_states):
                super().lazy_initialization(key_states, value_states)
                self._k = self._v = None
                self.rows = self.first = self.end = 0

            # ---- the buffers ------------------------------------------------------------

            def _views(self) -> None:
                self.keys = self._k[:self.rows, :, self.first:self.end]
                self.values = self._v[:self.rows, :, self.first:self.end]

            def _ensure(self, rows: int, left: int, right: int, like: torch.Tensor) -> None:
                """Room for ``rows`` rows, ``left`` columns before ``first`` and ``right`` after
                ``end``; reallocates (copying the batch's region) only when it is short."""
                k = self._k
                if (k is not None and rows <= k.shape[0] and left <= self.first
                        and self.end + right <= k.shape[2]):
                    return
                width = self.end - self.first
                have = k.shape[0] if k is not None else 0
                slots = have if rows <= have else max(rows, have + have // 2)
                spare = max(SPARE_COLUMNS, width // 2)
                lo, hi = max(left, spare), max(right, spare)
                shape = (slots, like.shape[1], lo + width + hi, like.shape[3])
                nk, nv = like.new_zeros(shape), like.new_zeros(shape)
                if k is not None and self.rows and width:
                    nk[:self.rows, :, lo:lo + width] = self._k[:self.rows, :, self.first:self.end]
                    nv[:self.rows, :, lo:lo + width] = self._v[:self.rows, :, self.first:self.end]
                self._k, self._v, self.first, self.end = nk, nv, lo, lo + width

            # ---- what the model calls ----------------------------------------------------

            def update(self, key_states, value_states, *args, **kwargs):
                if not self.is_initialized:
                    self.lazy_initialization(key_states, value_states)
                if not self.rows:                     # a first call: the rows arrive whole
                    self.join(key_states, value_states)
                    return self.keys, self.values
                n = key_states.shape[-2]
                self._ensure(self.rows, 0, n, key_states)
                self._k[:self.rows, :, self.end:self.end + n] = key_states
                self._v[:self.rows, :, self.end:self.end + n] = value_states
                self.end += n
                self._views()
                return self.keys, self.values

            def get_seq_length(self) -> int:
                return self.end - self.first if self.is_initialized else 0

            # ---- what the decoder calls ----------------------------------------------------

            def _room_for(self, n: int, w: int, like: torch.Tensor, like_values: torch.Tensor) -> None:
                """Slots for ``n`` more rows and the batch at least ``w`` columns wide (it widens
                to the left; the running rows get zeros there). What both joins need first."""
                if not self.is_initialized:
                    self.lazy_initialization(like, like_values)
                grow = max(0, w - (self.end - self.first))
                self._ensure(self.rows + n, grow, 0, like)
                if grow:                    # columns the running rows now cover: zeros
                    self._k[:self.rows, :, self.first - grow:self.first] = 0
                    self._v[:self.rows, :, self.first - grow:self.first] = 0
                    self.first -= grow

            def join(self, keys: torch.Tensor, values: torch.Tensor) -> None:
                """Add rows (n, heads, w, head_dim) after the running ones, right-aligned to
                ``end``; the batch widens to the left when w is wider than it."""
                n, w = keys.shape[0], keys.shape[2]
                self._room_for(n, w, keys, values)
                r0, r1 = self.rows, self.rows + n
                self._k[r0:r1, :, self.first:self.end - w] = 0
                self._v[r0:r1, :, self.first:self.end - w] = 0
                self._k[r0:r1, :, self.end - w:self.end] = keys
                self._v[r0:r1, :, self.end - w:self.end] = values
                self.rows = r1
                self._views()

            def join_pieces(self, prompts: list[tuple[int, list[tuple[torch.Tensor, torch.Tensor]]]]) -> None:
                """Add rows as `join` does, their keys and values given in pieces: per prompt,
                (rows, pieces), each piece (heads, t, head_dim) in order (a prefix cache's
                nodes, engine/models/prefix_cache.py). Each piece is written once, into the
                prompt's first row, and the prompt's other rows are copied from it: no
                (rows, heads, w, head_dim) tensor is built first."""
                n = sum(rows for rows, _ in prompts)
                widths = [sum(k.shape[1] for k, _ in pieces) for _, pieces in prompts]
                first_k, first_v = prompts[0][1][0]
                self._room_for(n, max(widths), first_k[None], first_v[None])
                span = slice(self.first, self.end)
                r = self.rows
                self._k[r:r + n, :, span] = 0       # the pads before each prompt
                self._v[r:r + n, :, span] = 0
                for (rows, pieces), width in zip(prompts, widths):
                    at = self.end - width
                    for k, v in pieces:
                        t = k.shape[1]
                        self._k[r, :, at:at + t] = k
                        self._v[r, :, at:at + t] = v
                        at += t
                    if rows > 1:
                        self._k[r + 1:r + rows, :, span] = self._k[r, :, span]
                        self._v[r + 1:r + rows, :, span] = self._v[r, :, span]
                    r += rows
                self.rows = r
                self._views()

            def keep(self, index: list[int]) -> None:
                """Row j becomes old row ``index[j]``; only the rows that move are copied."""
                moves = [(j, i) for j, i in enumerate(index) if i != j]
                span = slice(self.first, self.end)
                if moves and not {j for j, _ in moves} & {i for _, i in moves}:
                    # the decoder's leaves: rows from the end into freed places, no row both read
                    # and written, so row by row (a third of the time of an indexed copy here)
                    for j, i in moves:
                        self._k[j, :, span].copy_(self._k[i, :, span])
                        self._v[j, :, span].copy_(self._v[i, :, span])
                elif moves:
                    dst = torch.tensor([j for j, _ in moves], device=self._k.device)
                    src = torch.tensor([i for _, i in moves], device=self._k.device)
                    self._k[dst, :, span] = self._k[src, :, span]     # gathered first, then written
                    self._v[dst, :, span] = self._v[src, :, span]
                self.rows = len(index)
                self._views()

            def drop_columns(self, k: int) -> None:
                """Forget the first ``k`` columns of the batch (no row uses them)."""
                self.first += k
                self._views()

            def batch_select_indices(self, indices: torch.Tensor) -> None:
                self.keep([int(i) for i in indices])

        _SLOT = SlotLayer
    return _SLOT
