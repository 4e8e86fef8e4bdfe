"""Linear layers of a model on the CPU with their weights packed once for oneDNN.

Why: a decode pass multiplies a few rows (one per running search row) by each weight matrix,
and torch's ``F.linear`` (MKL's sgemm) copies the whole weight matrix into its blocked layout on
every call. For the embedded model at 11 rows that copy was more time than the multiply itself
(a profile of one worker of ``eval --concurrency 8 --workers 2``: 19 % of the forward pass in
``sgemm_scopy``, 10 % in the kernel). oneDNN's linear with the weight reordered once at load
skips the copy: 27 against 55 µs for 11 rows × (256 → 640), one thread, and 17 against 23 µs at
3 rows. For one row plain ``F.linear`` is faster (9 against 17 µs) and is kept.

What it changes: the last bits of the floats (within 3e-6 of ``F.linear`` here; the golden
tolerance is 1e-4); for two rows or more a row's outputs came out the same bits whatever the
number of rows sharing the call on the CPU measured (``F.linear`` picks other kernels below 4
rows), which oneDNN does not promise on every CPU. Only for float32 weights on the
CPU, under no-grad or inference mode (the packed op has no backward; training calls go to
``F.linear``), and only while the packed copies stay under `MAX_PACKED_BYTES` (they sit beside
the originals). A weight changed in place, or replaced, is packed again. ``THOUGHTSCOPE_PACKED_LINEAR=0`` turns
it off (to compare, or where a torch build lacks the op). Used for the model a backend loads
(transformers_backend.py) and the PPM kept for scoring (engine/ppm/__init__.py).

Not here: the decode loop (decode.py), loading (transformers_backend.py).
"""

from __future__ import annotations

import os
import types

import torch
import torch.nn.functional as F
from torch import nn

ENV_VAR = "THOUGHTSCOPE_PACKED_LINEAR"
MAX_PACKED_BYTES = 1 << 30        # packed copies beside the weights: 1 GiB (a 135M-parameter model fits)
PACK_ROWS_HINT = 16               # the row count oneDNN picks its layout for; any count runs on it


def _packed_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    rows = x.numel() // x.shape[-1] if x.dim() else 0
    if rows < 2 or x.dtype != torch.float32 or (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)):
        return F.linear(x, self.weight, self.bias)
    if self._ts_packed_of != _stamp(self.weight):        # changed in place, or replaced, since packed
        _pack(self)
    return torch.ops.mkldnn._linear_pointwise(x, self._ts_packed, self.bias, "none", [], "")


def _stamp(weight: torch.Tensor) -> tuple[int, int]:
    return weight.data_ptr(), weight._version


def _pack(m: nn.Linear) -> None:
    m._ts_packed = torch.ops.mkldnn._reorder_linear_weight(m.weight.detach(), PACK_ROWS_HINT)
    m._ts_packed_of = _stamp(m.weight)


def _works() -> bool:
    """oneDNN's packed linear is in this torch build and agrees with F.linear."""
    try:
        w, x = torch.randn(48, 32), torch.randn(5, 32)
        packed = torch.ops.mkldnn._reorder_linear_weight(w, PACK_ROWS_HINT)
        out = torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")
        return torch.allclose(out, F.linear(x, w), atol=1e-4, rtol=1e-4)
    except (AttributeError, RuntimeError, TypeError):
        return False


def pack_linears(model: nn.Module) -> int:
    """Give ``model``'s float32 CPU linear layers packed weights; returns how many got them
    (0 where off, unsupported, or too big)."""
    if os.environ.get(ENV_VAR, "1") == "0" or not torch.backends.mkldnn.is_available():
        return 0
    linears = [m for m in model.modules() if type(m) is nn.Linear and m.weight.device.type == "cpu"
               and m.weight.dtype == torch.float32]
    if not linears or sum(m.weight.numel() * 4 for m in linears) > MAX_PACKED_BYTES or not _works():
        return 0
    with torch.no_grad():
        for m in linears:
            _pack(m)
            m.forward = types.MethodType(_packed_forward, m)
    return len(linears)
