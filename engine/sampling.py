"""Sampler chain: temperature, top-k, top-p and min-p as pure functions over logits.

Each stage takes logits ``(batch, vocab)`` and returns a new tensor in which removed tokens
are ``-inf``; the input is never modified. Stages are composed in an explicit, named order
because engines disagree on it (docs/sampling.md):

- transformers: temperature, then top-k, top-p, min-p (``TRANSFORMERS_ORDER``, our default)
- vLLM V1: temperature, min-p, then top-k / top-p
- llama.cpp: truncation first, temperature last

Each stage matches the transformers warper of the same name on the same logits
(tests/test_sampling.py checks it), including the ``min_tokens_to_keep=1`` guarantee.

Not here: drawing the token (the backend does, with a seeded generator) or the pool views.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

STAGES = ("temperature", "top_k", "top_p", "min_p")
TRANSFORMERS_ORDER = ("temperature", "top_k", "top_p", "min_p")
VLLM_ORDER = ("temperature", "min_p", "top_k", "top_p")
LLAMA_CPP_ORDER = ("top_k", "top_p", "min_p", "temperature")
MAX_TOP_K = 1_000_000          # above any vocabulary; a bound, so a typo cannot ask for 10**12
ORDERS = {"transformers": TRANSFORMERS_ORDER, "vllm": VLLM_ORDER, "llama.cpp": LLAMA_CPP_ORDER}


def _check(name: str, value, ok: bool, expect: str) -> None:
    if not ok:
        raise ValueError(f"{name} must be {expect}, got {value!r}")


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class SamplingConfig:
    """How the next token is chosen. ``temperature == 0`` means greedy (argmax).

    ``top_k = 0``, ``top_p = 1`` and ``min_p = 0`` switch that stage off. Unlike
    transformers' ``generate``, no top-k of 50 is applied unless asked for.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    order: tuple[str, ...] = field(default=TRANSFORMERS_ORDER)

    def __post_init__(self) -> None:
        _check("temperature", self.temperature, _finite(self.temperature) and 0 <= self.temperature <= 100,
               "a number from 0 (greedy) to 100")
        _check("top_k", self.top_k, isinstance(self.top_k, int) and not isinstance(self.top_k, bool)
               and 0 <= self.top_k <= MAX_TOP_K, f"a whole number from 0 (off) to {MAX_TOP_K}")
        _check("top_p", self.top_p, _finite(self.top_p) and 0 < self.top_p <= 1, "in (0, 1] (1 = off)")
        _check("min_p", self.min_p, _finite(self.min_p) and 0 <= self.min_p <= 1, "in [0, 1] (0 = off)")
        ok = isinstance(self.order, (tuple, list)) and all(isinstance(s, str) for s in self.order)
        order = tuple(self.order) if ok else ()
        _check("order", self.order, ok and sorted(order) == sorted(STAGES),
               f"a permutation of {STAGES}")
        object.__setattr__(self, "order", order)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def to_json(self) -> dict:
        return {"temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p,
                "min_p": self.min_p, "order": list(self.order)}

    @staticmethod
    def from_json(d: dict) -> "SamplingConfig":
        return SamplingConfig(**{**d, "order": tuple(d.get("order", TRANSFORMERS_ORDER))})


GREEDY = SamplingConfig(temperature=0.0)


def temperature(logits: torch.Tensor, t: float) -> torch.Tensor:
    """Divide by ``t``; ``t == 1`` returns an unchanged copy."""
    return logits / t


def top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` highest logits (ties at the k-th value are kept, as transformers does)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits.clone()
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]                       # (batch, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability reaches ``p``."""
    if p >= 1.0:
        return logits.clone()
    sorted_logits, sorted_idx = torch.sort(logits, descending=False, dim=-1)
    cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)                         # ascending
    remove_sorted = cum <= (1 - p)
    remove_sorted[..., -1:] = False                                            # keep at least one
    remove = remove_sorted.scatter(-1, sorted_idx, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


def min_p(logits: torch.Tensor, p_base: float) -> torch.Tensor:
    """Keep tokens whose probability is at least ``p_base * p_max`` (the min-p rule)."""
    if p_base <= 0:
        return logits.clone()
    probs = logits.softmax(dim=-1)
    threshold = p_base * probs.max(dim=-1, keepdim=True).values                # (batch, 1)
    remove = probs < threshold
    top = probs.argmax(dim=-1, keepdim=True)
    remove.scatter_(-1, top, False)                                            # keep at least one
    return logits.masked_fill(remove, float("-inf"))


def apply_stage(logits: torch.Tensor, stage: str, cfg: SamplingConfig) -> torch.Tensor:
    if stage == "temperature":
        return temperature(logits, cfg.temperature) if cfg.temperature > 0 else logits.clone()
    if stage == "top_k":
        return top_k(logits, cfg.top_k)
    if stage == "top_p":
        return top_p(logits, cfg.top_p)
    if stage == "min_p":
        return min_p(logits, cfg.min_p)
    raise ValueError(f"unknown sampling stage {stage!r}; stages are {STAGES}")


def apply_chain(logits: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """All stages in ``cfg.order``; returns new logits with removed tokens at ``-inf``."""
    out = logits
    for stage in cfg.order:
        out = apply_stage(out, stage, cfg)
    return out if out is not logits else logits.clone()


def chain_trace(logits: torch.Tensor, cfg: SamplingConfig) -> list[tuple[str, torch.Tensor]]:
    """The logits after each stage, in order: what the pool views draw."""
    trace, out = [], logits
    for stage in cfg.order:
        out = apply_stage(out, stage, cfg)
        trace.append((stage, out))
    return trace
