"""Compare two event logs of one run: exact on everything but floats, floats within a tolerance.

The guarantee a recorded run carries (docs/ARCHITECTURE.md, "Determinism"):

- on the same machine and library versions, the same model, config and seed give the same
  events byte for byte;
- on another CPU, the same event types in the same order, the same node ids, parents, texts,
  token ids, answers, choices and statuses, and every float within ``FLOAT_ATOL``.

Floats differ across CPUs because float32 kernels (matmul blocking, SIMD width, fused
multiply-add) sum in different orders; the difference measured on recorded sessions was at most
2.0e-5 in a logprob. A difference that changes a decision — another token drawn, another child
selected — shows up in a non-float field and fails the comparison whatever the tolerance.

Not here: running a method (tests/test_golden.py does) or storing events (engine/store.py).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

# 5x the largest cross-CPU difference measured (2.0e-5), 100 units of the 6 digits events keep,
# and 10x below the smallest change the golden tests must still catch (1e-3).
FLOAT_ATOL = 1e-4


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def diff_values(expected: Any, actual: Any, atol: float = FLOAT_ATOL, where: str = "") -> str | None:
    """Where and how ``actual`` differs from ``expected`` (JSON values), or None when they match.

    Numbers compare within ``atol`` when either is a float; ints, bools, strings and None exactly;
    dicts by the same keys, lists by the same length, both recursively.
    ``diff_values({"p": -0.5, "t": [3]}, {"p": -0.50002, "t": [3]})`` is None."""
    here = where or "value"
    if _is_number(expected) and _is_number(actual):
        if isinstance(expected, float) or isinstance(actual, float):
            if math.isfinite(expected) and math.isfinite(actual) and abs(expected - actual) <= atol:
                return None
            return f"{here}: expected {expected!r}, got {actual!r} (tolerance {atol:g})"
        return None if expected == actual else f"{here}: expected {expected!r}, got {actual!r}"
    if type(expected) is not type(actual):
        return f"{here}: expected {expected!r}, got {actual!r}"
    if isinstance(expected, dict):
        if set(expected) != set(actual):
            return f"{here}: keys {sorted(expected)} != {sorted(actual)}"
        for k in sorted(expected):
            d = diff_values(expected[k], actual[k], atol, f"{where}.{k}" if where else k)
            if d:
                return d
        return None
    if isinstance(expected, list):
        if _is_ranking(expected) and _is_ranking(actual):
            return _diff_ranking(expected, actual, atol, here)
        if len(expected) != len(actual):
            return f"{here}: {len(expected)} items expected, got {len(actual)}"
        for i, (e, a) in enumerate(zip(expected, actual)):
            d = diff_values(e, a, atol, f"{where}[{i}]")
            if d:
                return d
        return None
    return None if expected == actual else f"{here}: expected {expected!r}, got {actual!r}"


def _is_ranking(x: list) -> bool:
    """A token's top alternatives: ``[[text, logprob], ...]``, most likely first."""
    return bool(x) and all(isinstance(r, list) and len(r) == 2 and isinstance(r[0], str) and _is_number(r[1])
                           for r in x)


def _diff_ranking(expected: list, actual: list, atol: float, here: str) -> str | None:
    """Top-k alternatives match when the logprob at every rank agrees within ``atol`` and every
    token is in both lists with its logprob within ``atol`` — except a token tied (within
    ``atol``) with the last rank, which another CPU may rank just outside the list. Near-tied
    alternatives may change places; a token drawn or chosen is compared elsewhere, exactly."""
    if len(expected) != len(actual):
        return f"{here}: {len(expected)} alternatives expected, got {len(actual)}"
    for i, (e, a) in enumerate(zip(expected, actual)):
        if not abs(e[1] - a[1]) <= atol:
            return f"{here}[{i}]: expected logprob {e[1]!r}, got {a[1]!r} (tolerance {atol:g})"
    for mine, other in ((expected, actual), (actual, expected)):
        lp: dict[str, list[float]] = {}     # several token ids can read alike (byte pieces: '\ufffd')
        for t, v in other:
            lp.setdefault(t, []).append(v)
        for t, v in mine:
            if any(abs(x - v) <= atol for x in lp.get(t, ())):
                continue
            if t not in lp and abs(other[-1][1] - v) <= atol:
                continue        # tied with the last rank: just outside the list on the other CPU
            return f"{here}: alternatives {expected!r} != {actual!r}"
    return None


def diff_events(expected: Sequence[dict], actual: Sequence[dict], atol: float = FLOAT_ATOL) -> str | None:
    """The first difference between two event logs (each event in its JSON form), or None.

    ``"event 3 (node_proposed).tokens[1][2]: expected -6e-06, got -0.0012 (tolerance 0.0001)"``."""
    for i, (e, a) in enumerate(zip(expected, actual)):
        d = diff_values(e, a, atol)
        if d:
            return f"event {i} ({e.get('type', '?')}).{d}"
    if len(expected) != len(actual):
        return f"{len(expected)} events expected, got {len(actual)}"
    return None
