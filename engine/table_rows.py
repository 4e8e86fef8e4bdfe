"""Helpers shared by the modules that own tables of the run database (store.py, compare_store.py,
evolution_store.py): the UTC time stamp every row carries and the decoding of JSON text columns.
Nothing here opens or writes a database."""

from __future__ import annotations

import json
from datetime import datetime, timezone


def utc_now(timespec: str = "seconds") -> str:
    """The time now in UTC, ISO 8601: what every table of the run database stamps its rows with."""
    return datetime.now(timezone.utc).isoformat(timespec=timespec)


def decode_json_columns(row: dict, columns: dict[str, type]) -> dict:
    """A copy of ``row`` with each JSON text column in ``columns`` parsed (an empty one becomes
    ``kind()``): the experiment and evolution tables keep lists and dicts as JSON text."""
    out = dict(row)
    for k, kind in columns.items():
        if k in out:
            out[k] = json.loads(out[k]) if out[k] else kind()
    return out
