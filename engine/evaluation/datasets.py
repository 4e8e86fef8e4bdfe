"""Problems from a user's own data: what ``thoughtscope eval --dataset`` evaluates on.

`load_problems` reads a file by its extension — ``.jsonl`` (one object a line), ``.json`` (a list
of objects, or an object holding such a list, e.g. ``{"test": [...]}``), ``.csv`` (a header row)
or ``.parquet`` (with pyarrow) — or, where the ``datasets`` library is installed and the machine
has network, a hub data set by id (``openai/gsm8k:main``, ``--split test``). Each row gives a
question and a gold answer; the fields are found by name (`QUESTION_FIELDS`, `ANSWER_FIELDS`)
unless named. Gold answers are read as data sets write them: GSM8K's ``"...#### 18"`` is
``"18"``, a MATH solution is the content of its last ``\\boxed{}`` (engine.answers.read_answer),
a plain ``"18"`` or ``18`` is ``"18"`` (but a ``solution`` field's text never is its own answer).
A row whose gold answer cannot be read (a worked solution that states no answer, an empty cell)
or whose question is unusable is left out and counted in `Dataset.skipped`, never evaluated
against a wrong key.

Not here: running or scoring a method (engine/evaluation/evaluate.py); comparing answers
(engine/answers.py); the built-in arithmetic problems (engine/demo_model/problems.py). The
``datasets`` library is not a dependency: without it a hub id is one clear error.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
import io
import json
import math
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from engine.answers import read_answer
from engine.demo_model.problems import Problem
from engine.inputs import check_text
from engine.models.base import InputError

QUESTION_FIELDS = ("question", "problem", "prompt", "input", "query")
ANSWER_FIELDS = ("answer", "final_answer", "solution", "target", "output", "gold")
# fields that hold worked solutions (MATH's): only an answer they state is read, never the text itself
WORKED_FIELDS = ("solution",)
SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
TIER = "dataset"                  # Problem.tier of every problem read here
# A gold answer with no answer statement is taken as written only when it is one short line:
# longer, or over several lines, it is a worked solution that never says its answer.
MAX_PLAIN_GOLD_CHARS = 100
HUB_TIMEOUT_S = 3.0               # how long the network check waits before saying "no network"
SKIPPED_SHOWN = 10                # row indices the eval JSON lists per skipped reason


@dataclass(frozen=True)
class DatasetProblem(Problem):
    """A problem from a data set: its gold answer is text as the data set states it (compared by
    value, engine.answers.answers_equal), and it has no generator steps or story sentences, so
    methods that check steps against true intermediate values (LECO's eval) refuse it."""

    answer: str
    steps: tuple = ()


@dataclass(frozen=True)
class Dataset:
    """The usable problems of one source, and what was left out of it."""

    source: str                     # as given: a path or a hub id
    name: str                       # in problem ids: the file's stem, or the hub id and split
    split: str | None
    question_field: str
    answer_field: str
    rows: int                       # rows read, usable or not
    problems: tuple[DatasetProblem, ...]
    skipped: dict[str, tuple[int, ...]] = field(default_factory=dict)   # reason -> row indices

    @property
    def skipped_count(self) -> int:
        return sum(len(rows) for rows in self.skipped.values())

    def describe(self) -> dict:
        """The eval JSON's ``dataset`` entry."""
        return {"source": self.source, "split": self.split, "question_field": self.question_field,
                "answer_field": self.answer_field, "rows": self.rows, "usable": len(self.problems),
                "skipped": self.skipped_count,
                "skipped_rows": {why: list(rows[:SKIPPED_SHOWN]) for why, rows in self.skipped.items()}}

    def skipped_line(self) -> str | None:
        """One line saying which rows were left out and why; None when none were."""
        if not self.skipped:
            return None
        parts = [f"{len(rows)} {why} (rows {', '.join(map(str, rows[:5]))}{', ...' if len(rows) > 5 else ''})"
                 for why, rows in self.skipped.items()]
        return f"{self.source}: skipped {self.skipped_count} of {self.rows} rows: {'; '.join(parts)}"


# ---- gold answers ------------------------------------------------------------------------------

def read_gold(value, *, worked: bool = False) -> str | None:
    """The gold answer in an answer field, as text; None when none can be read.

    ``read_gold("She earns 3 * 6 = 18 dollars.\\n#### 18")`` is ``"18"`` (GSM8K); a MATH solution
    gives its last ``\\boxed{}``'s content; ``18``, ``18.0`` and ``" 18 "`` give ``"18"``; a short
    line with no answer statement (``"Paris"``) is the answer as written, unless ``worked`` (the
    field holds worked solutions); a worked solution that states no answer, an empty cell, a
    list or NaN give None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):        # pandas and Parquet write a missing number as NaN
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    stated = read_answer(text)
    if stated is not None:
        return stated
    if worked or "\n" in text or len(text) > MAX_PLAIN_GOLD_CHARS:
        return None
    return text


# ---- fields ------------------------------------------------------------------------------------

def _pick_field(kind: str, given: str | None, candidates: tuple[str, ...], keys: list[str], where: str,
                flag: str) -> str:
    """The field to read ``kind`` from: ``given`` when named (it must exist), else the first of
    ``candidates`` present (by name, case aside). ValueError naming the fields there are."""
    have = ", ".join(keys) if keys else "none"
    if given is not None:
        if given not in keys:
            raise ValueError(f"{kind} field {given!r} is not in {where} (its fields: {have})")
        return given
    by_lower = {k.lower(): k for k in reversed(keys)}       # the first spelling wins
    for name in candidates:
        if name in by_lower:
            return by_lower[name]
    raise ValueError(f"{where} has no {kind} field (looked for {', '.join(candidates)}; its fields: {have}): "
                     f"name it with {flag}")


def _keys(rows: list[dict]) -> list[str]:
    """Every field name in ``rows``, in order of first appearance."""
    seen: dict[str, None] = {}
    for r in rows:
        for k in r:
            seen.setdefault(str(k), None)
    return list(seen)


# ---- reading files -----------------------------------------------------------------------------

def _objects(rows, where: str) -> list[dict]:
    out = []
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise ValueError(f"{where}: row {i} is {type(r).__name__}, not an object with named fields")
        out.append(r)
    return out


def _read_jsonl(path: Path, text: str) -> list[dict]:
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not JSON ({e.msg}); a .jsonl file has one object a line") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{n}: a line is {type(row).__name__}, not an object with named fields")
        rows.append(row)
    return rows


def _read_json(path: Path, text: str, split: str | None) -> tuple[list[dict], str | None]:
    """(rows, the key they were under) of a JSON list, or of the list an object holds."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data" and text.lstrip().startswith("{"):
            return _read_jsonl(path, text), None      # JSON lines under a .json name, as hubs often write them
        raise ValueError(f"{path}: not JSON ({e.msg}, line {e.lineno})") from None
    if isinstance(data, list):
        if split is not None:
            raise ValueError(f"--split {split!r}: {path} is one list, it has no splits")
        return _objects(data, str(path)), None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: holds {type(data).__name__}, not a list of objects")
    lists = [k for k, v in data.items() if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)]
    if split is not None:
        if split not in lists:
            raise ValueError(f"--split {split!r} is not a list of objects in {path} "
                             f"(its lists: {', '.join(lists) or 'none'})")
        return data[split], split
    if len(lists) == 1:
        return data[lists[0]], lists[0]
    if not lists:
        keys = ", ".join(map(str, data)) or "none"
        raise ValueError(f"{path}: an object without a list of objects (its keys: {keys})")
    raise ValueError(f"{path} holds several lists ({', '.join(lists)}): choose one with --split")


def _read_csv(path: Path, text: str) -> list[dict]:
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))     # newline="": a quoted cell may span lines
        rows = list(reader)
    except csv.Error as e:
        raise ValueError(f"{path}: not CSV ({e})") from None
    if reader.fieldnames is None:
        raise ValueError(f"{path}: empty, not even a header row")
    # an empty cell is a missing value (a CSV cannot say None)
    return [{k: (v if v != "" else None) for k, v in r.items() if k is not None} for r in rows]


def _read_parquet(path: Path) -> list[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError("reading Parquet needs pyarrow, which is not installed: pip install pyarrow") from None
    import pyarrow
    try:
        return pq.read_table(path).to_pylist()
    except (pyarrow.ArrowException, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: not a Parquet file ({first})") from None


def _read_file(path: Path, split: str | None) -> tuple[list[dict], str | None]:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"{path}: unknown format {suffix or '(no extension)'!r}: use {', '.join(SUFFIXES)}")
    if split is not None and suffix != ".json":
        raise ValueError(f"--split {split!r} applies to hub data sets and JSON files holding several lists, "
                         f"not to a {suffix} file")
    if suffix == ".parquet":
        return _read_parquet(path), None
    try:
        text = path.read_text(encoding="utf-8-sig")      # -sig: a spreadsheet's CSV may open with a BOM
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at {e.start}): "
                         "save it as UTF-8") from None
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
    if suffix == ".jsonl":
        return _read_jsonl(path, text), None
    if suffix == ".csv":
        return _read_csv(path, text), None
    return _read_json(path, text, split)


# ---- the hub -----------------------------------------------------------------------------------

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(?:/[\w.-]+)?(?::[\w.-]+)?$")
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def _hub_library():
    """The ``datasets`` module, or None where it is not installed (it is not a dependency)."""
    if importlib.util.find_spec("datasets") is None:
        return None
    return importlib.import_module("datasets")


def _online(timeout: float = HUB_TIMEOUT_S) -> bool:
    """Whether the hub answers a TCP connection within ``timeout`` seconds: without network the
    ``datasets`` library retries for minutes before it fails."""
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=timeout).close()
        return True
    except OSError:
        return False


def _hub_rows(source: str, split: str | None) -> tuple[list[dict], str]:
    """(rows, split) of hub data set ``source`` (``id`` or ``id:config``)."""
    not_file = f"{source!r} is not a file here"
    lib = _hub_library()
    if lib is None:
        raise ValueError(f"{not_file}, and reading a hub data set needs the datasets library, which is not "
                         f"installed (pip install datasets); or download the data and pass the file "
                         f"({', '.join(SUFFIXES)})")
    offline = [v for v in _OFFLINE_VARS if os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")]
    if offline or not _online():
        why = f"{offline[0]} is set" if offline else "this machine has no network"
        raise ValueError(f"{not_file}, and {why}, so hub data sets cannot be read: download the data "
                         f"elsewhere and pass the file ({', '.join(SUFFIXES)})")
    name, _, config = source.partition(":")
    try:
        loaded = lib.load_dataset(name, config or None, split=split)
    except Exception as e:              # the library's own errors (not found, config missing, network): one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"could not load hub data set {source!r}: {first}") from None
    if split is None:                   # every split came: take "test", or the only one
        splits = list(loaded.keys())
        if "test" not in splits and len(splits) != 1:
            raise ValueError(f"hub data set {source!r} has the splits {', '.join(splits)}: choose one with --split")
        split = "test" if "test" in splits else splits[0]
        loaded = loaded[split]
    rows = [dict(r) for r in loaded]
    return rows, split


# ---- problems ----------------------------------------------------------------------------------

def load_problems(source: str | Path, *, split: str | None = None, question_field: str | None = None,
                  answer_field: str | None = None, n: int | None = None) -> Dataset:
    """The problems of a data file or hub data set (see the module docstring): the first ``n``
    usable rows (all when None), each a `DatasetProblem` with id ``dataset:<name>:<row>``
    (``row``: the row's 0-based index in the source). Bad input is a ValueError of one line."""
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ValueError(f"n must be a whole number of at least 1, got {n!r}")
    for what, value in (("split", split), ("question_field", question_field), ("answer_field", answer_field)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ValueError(f"{what} must be a non-empty name, got {value!r}")
    text = str(source).strip()
    if not text:
        raise ValueError("dataset is empty: give a file (.jsonl, .json, .csv, .parquet) or a hub id")
    path = Path(text).expanduser()
    if path.is_dir():
        raise ValueError(f"dataset {text!r} is a folder: give one file ({', '.join(SUFFIXES)})")
    if path.is_file():
        rows, split = _read_file(path, split)
        name = path.stem + (f".{split}" if split else "")
    elif path.suffix.lower() in SUFFIXES or not _HUB_ID.match(text):
        raise ValueError(f"dataset file {text!r} does not exist")
    else:
        rows, split = _hub_rows(text, split)
        name = f"{text}/{split}"
    if not rows:
        raise ValueError(f"{text} holds no rows")
    keys = _keys(rows)
    qf = _pick_field("question", question_field, QUESTION_FIELDS, keys, text, "--question-field")
    af = _pick_field("answer", answer_field, ANSWER_FIELDS, keys, text, "--answer-field")
    if qf == af:
        raise ValueError(f"question and answer are both read from field {qf!r} of {text}: name them apart "
                         "with --question-field and --answer-field")
    problems, skipped = [], {}
    for i, row in enumerate(rows):
        question, why = row.get(qf), None
        if not isinstance(question, str):
            why = "without a question"
        else:
            try:
                check_text(question)
            except InputError:
                why = "with an unusable question (empty, too long, NUL, not UTF-8)"
        gold = read_gold(row.get(af), worked=af.lower() in WORKED_FIELDS) if why is None else None
        if why is None and gold is None:
            why = "whose gold answer could not be read"
        if why is not None:
            skipped.setdefault(why, []).append(i)
            continue
        problems.append(DatasetProblem(id=f"dataset:{name}:{i}", tier=TIER, question=question.strip(), answer=gold))
    if not problems:
        raise ValueError(f"{text}: none of its {len(rows)} rows is usable ("
                         + "; ".join(f"{len(r)} {why}" for why, r in skipped.items()) + ")")
    if n is not None and n > len(problems):
        raise ValueError(f"n must be from 1 to {len(problems)} (the usable rows of {text}), got {n}")
    return Dataset(source=text, name=name, split=split, question_field=qf, answer_field=af, rows=len(rows),
                   problems=tuple(problems if n is None else problems[:n]),
                   skipped={why: tuple(r) for why, r in skipped.items()})
