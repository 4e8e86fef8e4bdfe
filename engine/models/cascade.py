"""Shared-prompt ("cascade") attention for the running batch's decode passes, on the CPU.

The rows of one generate call usually share their prompt: an MCTS expansion asks for 3 children
of one node, so its 3 rows carry the same prompt, and the decoder keeps a copy of its keys and
values in each row (engine/models/decode.py). Plain attention then reads that prompt once per
row at every token. Measured on 12 hard MCTS problems at 4 searches at once, the keys and
values a decode pass reads once each prompt is counted once are 32 % of what it reads row by
row; and in the eval, attention is bound by memory, not arithmetic (docs/scaling.md).

Here a decode pass's attention is split in two and joined exactly, as FlashInfer's cascade
inference and Hydragen do:

- each group of rows sharing a prompt attends to the prompt's keys once, read from the group's
  first row, all the group's queries together;
- each row attends to the tokens it generated since joining (one attention for the whole batch
  over the columns since the oldest running call joined);
- the two parts are joined by their log-sum-exp: ``out = (o1·e^l1 + o2·e^l2) / (e^l1 + e^l2)``,
  which is the softmax over both parts at once. Only the summation order changes: outputs agree
  with plain attention within 1e-5 (tests/test_cascade.py).

It pays only when the batch is big enough for fewer reads to outweigh more calls: with the 3
rows of one search it was slower (one search at a time, 30 problems: 43.6 s of forward passes
against 37.4 s), so a pass uses it only with at least `MIN_ROWS` rows and when it reads at most
`MAX_READ` of what plain attention reads; otherwise, and for every prompt pass, the attention
is transformers' SDPA, unchanged.

Where: float32 models on the CPU whose attention is SDPA over plain causal layers (the
architectures in `ARCHITECTURES`, no sliding window), grouped-query heads included; a GPU's
attention kernels and the servers (vLLM, SGLang) have their own prefix sharing. Plans are reused
from pass to pass while the same calls run in the same rows (`Planner`).
``THOUGHTSCOPE_CASCADE=0`` turns it off.

Not here: the batch's row layout and what it stores (decode.py, growing_cache.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

NAME = "thoughtscope_cascade"          # the attention implementation the model is switched to
MIN_ROWS = 6                           # the least rows in a decode pass for the cascade
MAX_READ = 0.6                         # ... and the most it may read, as a share of plain attention
ARCHITECTURES = ("llama", "qwen2", "qwen3", "mistral")   # model_type: attention = plain causal SDPA
# the CPU flash kernel SDPA itself runs, called directly for the log-sum-exp it also returns
_FLASH = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
_EMPTY_MASK = torch.zeros(1, 1, 1, 1)  # a 4D mask, which transformers passes on without building one
_sdpa = None                           # transformers' SDPA attention, for every pass not planned (set by enable)


def enable(model) -> bool:
    """Switch ``model`` (on the CPU, loaded with SDPA) to the cascade attention where it applies;
    returns whether it did. Its prompt passes keep SDPA; only planned decode passes change."""
    cfg = model.config
    if os.environ.get("THOUGHTSCOPE_CASCADE", "1") == "0":
        return False
    if cfg._attn_implementation == NAME:            # the same model wrapped again
        return True
    if (getattr(cfg, "model_type", None) not in ARCHITECTURES or cfg._attn_implementation != "sdpa"
            or getattr(cfg, "sliding_window", None) or _FLASH is None
            or next(model.parameters()).dtype != torch.float32):    # the plan's masks are float32
        return False
    global _sdpa
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    _sdpa = sdpa_attention_forward
    AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)     # prompt passes: the masks SDPA gets
    cfg._attn_implementation = NAME
    return True


def placeholder_mask() -> torch.Tensor:
    """What a planned pass gives the model as its attention mask: a 4D tensor, which
    transformers passes through without building the batch's mask (the plan carries it)."""
    return _EMPTY_MASK


@dataclass
class Plan:
    """One decode pass's layout: ``perm`` lists the rows group by group (``inv`` undoes it);
    ``groups`` are (first row, start, end in ``perm``, prompt columns ``lo:hi``, mask over them
    or None); the generated part is columns ``own_from:`` with ``own_mask`` (rows, 1, 1, width)
    and ``empty`` (rows, 1): -inf for a row with no generated column there yet; ``shared``: the
    prompt columns read, summed over the groups."""

    perm: torch.Tensor
    inv: torch.Tensor
    groups: list
    own_from: int
    own_mask: torch.Tensor
    empty: torch.Tensor
    shared: int


class Planner:
    """`plan` for one decoder's passes. While the same calls run in the same rows, the layout
    holds from one pass to the next (columns are added on the right only), so the last plan is
    reused with this pass's column added to the generated part."""

    def __init__(self) -> None:
        self._last = None           # (the requests, their rows, columns, the plan)

    def reset(self) -> None:
        self._last = None

    def __call__(self, requests, mask: torch.Tensor) -> Plan | None:
        rows, columns = mask.shape
        slots = [tuple(r.slots) for r in requests]
        last = self._last
        if (last is not None and last[2] == columns - 1 and last[1] == slots
                and all(a is b for a, b in zip(last[0], requests))):
            p = last[3]
            if p.shared + rows * (columns - p.own_from) > MAX_READ * rows * columns:
                self._last = None
                return None
            fed = mask[:, -1:] != 0                 # this pass's column: a row's own token where fed
            col = torch.zeros((rows, 1, 1, 1), dtype=torch.float32, device=mask.device).masked_fill_(
                ~fed[:, :, None, None], float("-inf"))
            p = Plan(p.perm, p.inv, p.groups, p.own_from, torch.cat([p.own_mask, col], dim=3),
                     p.empty.masked_fill(fed, 0.0), p.shared)
        else:
            p = plan(requests, mask)
        self._last = None if p is None else (list(requests), slots, columns, p)
        return p


def plan(requests, mask: torch.Tensor) -> Plan | None:
    """The plan for a decode pass over ``requests`` (decode.py's, each with ``slots``,
    ``encoded``, ``step`` and ``spans``) whose attention mask, this pass's column included, is
    ``mask`` (rows, columns); None when the cascade would not pay (see the module docstring).

    A request joined at column ``j = columns - 1 - step`` (columns are only ever dropped on the
    left, so a column's distance from the end holds): its prompt lies before ``j`` (with pads
    inside when part of it came from a prefix cache: decode.py's prefill layout), its own tokens
    from ``j`` on."""
    rows, columns = mask.shape
    if rows < MIN_ROWS:
        return None
    order, groups, spans, join_col = [], [], [], [0] * rows
    own_from = columns
    for r in requests:
        j = columns - 1 - r.step
        own_from = min(own_from, j)
        i = 0
        while i < r.rows:                          # a run of equal prompts shares one group
            k = i + 1
            while k < r.rows and r.encoded[k] == r.encoded[i]:
                k += 1
            if i not in r.spans:                   # once per request: where its prompt lies
                real = mask[r.slots[i], :j].nonzero().flatten()
                if not len(real):                  # an empty prompt: nothing to share
                    return None
                span = j - int(real[0])
                gaps = None if len(real) == span else torch.zeros(span, dtype=torch.float32).masked_fill_(
                    mask[r.slots[i], j - span:j] == 0, float("-inf"))[None, None, None, :]
                r.spans[i] = (span, gaps)
            span, gaps = r.spans[i]
            groups.append((r.slots[i], len(order), len(order) + k - i, j - span, j, gaps))
            order.extend(r.slots[i:k])
            spans.append(span)
            i = k
        for row in r.slots:
            join_col[row] = j
    if sum(spans) + rows * (columns - own_from) > MAX_READ * rows * columns:
        return None
    device = mask.device
    perm = torch.tensor(order, device=device)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(rows, device=device)
    joined = torch.tensor(join_col, device=device)[:, None]
    own = (mask[:, own_from:] != 0) & (torch.arange(own_from, columns, device=device)[None, :] >= joined)
    empty = torch.zeros((rows, 1), dtype=torch.float32, device=device).masked_fill_(~own.any(dim=1, keepdim=True),
                                                                                     float("-inf"))
    own_mask = torch.zeros(own.shape, dtype=torch.float32, device=device).masked_fill_(~own, float("-inf"))
    return Plan(perm, inv, groups, own_from, own_mask[:, None, None, :], empty, sum(spans))


def attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
              cascade: Plan | None = None, **kwargs):
    """transformers' attention interface: SDPA unless this is a planned decode pass. query
    (rows, heads, 1, head_dim); key, value (rows, kv_heads, columns, head_dim), the batch's
    cache views. Returns (rows, 1, heads, head_dim), as SDPA's does."""
    if cascade is None:
        return _sdpa(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    p = cascade
    rows, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    rep = heads // kv_heads
    # grouped-query heads: the `rep` query heads of a key/value head become its query positions
    q = query.reshape(rows, kv_heads, rep, dim)
    # shared part: the queries group by group, as (1, kv_heads, rows × rep, head_dim)
    qg = q.index_select(0, p.perm).permute(1, 0, 2, 3).reshape(1, kv_heads, rows * rep, dim)
    outs, lses = [], []
    for first, start, end, lo, hi, gaps in p.groups:
        o, lse = _FLASH(qg[:, :, start * rep:end * rep], key[first:first + 1, :, lo:hi],
                        value[first:first + 1, :, lo:hi], 0.0, False, attn_mask=gaps, scale=scaling)
        outs.append(o)
        lses.append(lse)
    o1 = torch.cat(outs, 2).reshape(kv_heads, rows, rep, dim).index_select(1, p.inv)     # (kv, rows, rep, d)
    l1 = torch.cat(lses, 2).reshape(kv_heads, rows, rep).index_select(1, p.inv)
    # own part: every row over the columns since the oldest running call joined
    o2, l2 = _FLASH(q, key[:, :, p.own_from:], value[:, :, p.own_from:], 0.0, False,
                    attn_mask=p.own_mask, scale=scaling)                                   # (rows, kv, rep, d)
    l2 = l2 + p.empty[:, :, None]              # a row with no own column: its part weighs nothing
    weight = torch.sigmoid(l1.permute(1, 0, 2) - l2)          # e^l1 / (e^l1 + e^l2), (rows, kv, rep)
    out = torch.lerp(o2, o1.permute(1, 0, 2, 3), weight[..., None])
    return out.reshape(rows, 1, heads, dim), None
