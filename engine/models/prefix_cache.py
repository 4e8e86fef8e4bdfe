"""The backend's prefix cache: key/value states kept in a radix tree keyed by token ids.

A tree search asks the model for continuations of prompts that share long prefixes (the
question, then the path so far). `PrefixCache` keeps the key/value states of every sequence the
backend has computed, one tree node per token segment, so a later prompt only computes the
tokens after its longest cached prefix (SGLang's RadixAttention, vLLM's automatic prefix
caching). A node whose segment ends where a generation ended also keeps the next-token logits
computed there, so a prompt that is exactly a cached sequence (a tree node being expanded)
computes nothing at all.

Memory is bounded: ``max_bytes`` caps the key/value bytes held; past it, the least recently
used leaves are dropped first (a leaf is a path nobody has extended; the search frontier is
what was touched last). ``max_bytes = 0`` keeps nothing.

Not here: batching, padding and the decode loop (transformers_backend.py). Key/value tensors
are stored per layer as ``(heads, tokens, head_dim)``; this module never runs the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

PREFIX_CACHE_MB = 256     # the CLI's and app's default ceiling (MB of key/value states)

KV = list[tuple[torch.Tensor, torch.Tensor]]     # per layer (keys, values), each (heads, tokens, head_dim)


class _Node:
    __slots__ = ("tokens", "kv", "logits", "children", "parent", "tick")

    def __init__(self, tokens: tuple[int, ...], kv: KV, parent: "_Node | None", tick: int):
        self.tokens = tokens
        self.kv = kv
        self.logits: torch.Tensor | None = None   # (vocab,) next-token logits after the segment's last token
        self.children: dict[int, _Node] = {}      # first token of the child's segment -> child
        self.parent = parent
        self.tick = tick


def _kv_bytes(kv: KV) -> int:
    return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in kv)


@dataclass
class Match:
    """The longest cached prefix of a prompt: ``length`` tokens, read from ``pieces`` (node,
    tokens used from that node's segment); ``logits`` when the prompt ends exactly where a
    cached generation ended (its next-token logits are known)."""

    length: int = 0
    pieces: list = field(default_factory=list)
    logits: torch.Tensor | None = None

    def kv(self, layer: int, upto: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer ``layer``'s keys and values for the first ``upto`` matched tokens,
        each ``(heads, upto, head_dim)``."""
        pieces = self.kv_pieces(layer, upto)
        return torch.cat([k for k, _ in pieces], dim=1), torch.cat([v for _, v in pieces], dim=1)

    def kv_pieces(self, layer: int, upto: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The same keys and values as `kv`, as the tree holds them: one (keys, values) view
        per node, in order, so a caller can copy them where they go without joining them first."""
        pieces, left = [], upto
        for node, used in self.pieces:
            n = min(used, left)
            if n <= 0:
                break
            k, v = node.kv[layer]
            pieces.append((k[:, :n], v[:, :n]))
            left -= n
        return pieces



def _shared(seg: Sequence[int], ids: Sequence[int], pos: int) -> int:
    """How many tokens of the edge ``seg`` agree with ``ids`` from position ``pos``."""
    n = 0
    while n < len(seg) and pos + n < len(ids) and seg[n] == ids[pos + n]:
        n += 1
    return n

class PrefixCache:
    """Radix tree of key/value states, least-recently-used eviction under a byte ceiling."""

    def __init__(self, max_bytes: int):
        if not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes must be a whole number >= 0, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self.root = _Node((), [], None, 0)
        self._tick = 0
        self.nbytes = 0           # key/value bytes held now
        self.ntokens = 0          # tokens held now
        self.evicted_tokens = 0   # tokens dropped by the ceiling so far

    def _touch(self) -> int:
        self._tick += 1
        return self._tick

    def match(self, ids: Sequence[int]) -> Match:
        """The longest cached prefix of ``ids``; marks it used."""
        m, node, pos, tick = Match(), self.root, 0, self._touch()
        while pos < len(ids):
            child = node.children.get(ids[pos])
            if child is None:
                break
            seg = child.tokens
            n = _shared(seg, ids, pos)
            child.tick = tick
            m.pieces.append((child, n))
            pos += n
            if n < len(seg):
                break
            node = child
        m.length = pos
        if m.pieces and pos == len(ids) and m.pieces[-1][1] == len(m.pieces[-1][0].tokens):
            m.logits = m.pieces[-1][0].logits
        return m

    def insert(self, ids: Sequence[int], kv_slice: Callable[[int, int], KV],
               logits: torch.Tensor | None = None) -> int:
        """Add the sequence ``ids``; ``kv_slice(start, end)`` gives its key/values for those
        positions (only the part not cached yet is asked for). ``logits``: the next-token
        logits after its last token, if known. Returns how many tokens were new."""
        if self.max_bytes == 0 or not ids:
            return 0
        ids = tuple(ids)
        node, pos, tick = self.root, 0, self._touch()
        while pos < len(ids):
            child = node.children.get(ids[pos])
            if child is None:
                break
            seg = child.tokens
            n = _shared(seg, ids, pos)
            if n < len(seg):
                child = self._split(child, n)
            child.tick = tick
            node, pos = child, pos + n
        new = len(ids) - pos
        if new:
            kv = kv_slice(pos, len(ids))
            leaf = _Node(ids[pos:], kv, node, tick)
            node.children[ids[pos]] = leaf
            node = leaf
            self.nbytes += _kv_bytes(kv)
            self.ntokens += new
        if logits is not None and node is not self.root:
            node.logits = logits
        self._evict()
        return new

    def _split(self, node: _Node, at: int) -> _Node:
        """Cut ``node``'s segment after ``at`` tokens; returns the new upper node."""
        upper = _Node(node.tokens[:at], [(k[:, :at].clone(), v[:, :at].clone()) for k, v in node.kv],
                      node.parent, node.tick)
        node.parent.children[node.tokens[0]] = upper
        node.tokens = node.tokens[at:]
        node.kv = [(k[:, at:].clone(), v[:, at:].clone()) for k, v in node.kv]   # own storage: freed on eviction
        node.parent = upper
        upper.children[node.tokens[0]] = node
        return upper

    def _nodes(self):
        stack = list(self.root.children.values())
        while stack:
            n = stack.pop()
            yield n
            stack.extend(n.children.values())

    def _evict(self) -> None:
        while self.nbytes > self.max_bytes:
            leaves = sorted((n for n in self._nodes() if not n.children), key=lambda n: n.tick)
            for leaf in leaves:
                self._drop(leaf)
                if self.nbytes <= self.max_bytes:
                    return

    def _drop(self, leaf: _Node) -> None:
        del leaf.parent.children[leaf.tokens[0]]
        self.nbytes -= _kv_bytes(leaf.kv)
        self.ntokens -= len(leaf.tokens)
        self.evicted_tokens += len(leaf.tokens)
        leaf.kv, leaf.logits = [], None

    def clear(self) -> None:
        self.root = _Node((), [], None, 0)
        self.nbytes = self.ntokens = 0

    def stats(self) -> dict:
        return {"max_bytes": self.max_bytes, "bytes": self.nbytes, "tokens": self.ntokens,
                "evicted_tokens": self.evicted_tokens, "nodes": sum(1 for _ in self._nodes())}
