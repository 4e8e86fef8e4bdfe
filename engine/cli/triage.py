"""``thoughtscope triage --session ID | --all [--method M]``: why stored runs are wrong.

engine/cli/__init__.py adds the parser with `add_triage_parser` and dispatches to `cmd_triage`.
Each run is folded from the store and classed by engine/triage.py; the output is the count per
class and status, then one line per wrong run (``--json``: the summary and every run's full
report, on stdout alone). Bad input (an unknown id, ``--method`` without ``--all``) is raised as
ValueError / `StoreError` and printed as one line with exit code 2.

Not here: the classes themselves (engine/triage.py), triage of an eval that was not stored.
"""

from __future__ import annotations

import argparse
import json
import sys

from engine.store import Store, default_db_path
from engine.triage import CLASSES, STATUSES, WRONG, Triage, summarize, triage

ANSWER_WIDTH = 12       # characters of an answer shown per run line


def add_triage_parser(subparsers, db_flag_help: str) -> argparse.ArgumentParser:
    """Add ``triage`` to ``subparsers``."""
    from engine.cli import _t  # LANG / LC_ALL: the help in Chinese (issue 24)
    p = subparsers.add_parser("triage", help=_t("class each wrong stored run: gold never reached, reached but "
                                                "not chosen, or no answer stated (docs/triage.md)"))
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--session", default=None, metavar="ID", help=_t("one run (its id or a unique prefix)"))
    which.add_argument("--all", action="store_true", help=_t("every run in the database"))
    p.add_argument("--method", default=None, help=_t("with --all: only runs of this method"))
    p.add_argument("--db", default=None, metavar="PATH", help=_t(db_flag_help))
    p.add_argument("--json", action="store_true", help=_t("the summary and each run's report as JSON"))
    return p


def _short(text: str | None, width: int = ANSWER_WIDTH) -> str:
    text = "-" if text is None else " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 1] + "…"


def _reports(store: Store, args) -> list[tuple[str, Triage]]:
    if args.session is not None:
        if args.method is not None:
            raise ValueError("thoughtscope triage: --method filters --all; with --session leave it out")
        ids = [store.resolve(args.session)]
    else:
        ids = [row["session_id"] for row in store.list_sessions(method=args.method)]
    out = []
    for sid in ids:
        try:
            tree = store.tree(sid)
        except (ValueError, IndexError, KeyError, TypeError) as e:
            raise ValueError(f"session {sid}: its events do not fold into a tree ({e})") from None
        if tree.run is None:
            continue        # a session that never started a run (no run_started event): nothing to class
        out.append((sid, triage(tree)))
    return out


def _reason(report: Triage) -> str:
    """The report's reason in the language of LANG (app/i18n.py's catalogue holds every template
    of engine/triage.py `REASONS`); English without the app's package."""
    try:
        from app.i18n import translate
    except ImportError:
        return report.reason
    return report.why.render(translate)


def cmd_triage(args) -> int:
    with Store(args.db if args.db else default_db_path()) as store:
        reports = _reports(store, args)
    summary = summarize(r for _, r in reports)
    if args.json:
        runs = [{"session_id": sid, **r.to_json()} for sid, r in reports]
        print(json.dumps({"summary": summary, "runs": runs}, indent=1))
        return 0
    from engine.cli import _t   # LANG=zh: the lines in Chinese; statuses and classes stay codes (as in --json)
    print(_t("{n} runs: {counts}", n=summary['runs'],
             counts=", ".join(f"{s} {summary['status'][s]}" for s in STATUSES)))
    print(_t("wrong runs by class: {counts}", counts=", ".join(f"{c} {summary['classes'][c]}" for c in CLASSES)))
    for sid, r in reports:
        if r.status != WRONG:
            if args.session is not None:
                print(f"{sid}  {r.method}  {_reason(r)}")
            continue
        step = "  " + _t("first wrong step: node {n}", n=r.first_wrong.node) if r.first_wrong else ""
        print(f"{sid}  {r.method:<8} {r.klass:<18} " + _t("answer {answer} gold {gold}", answer=_short(r.answer),
                                                          gold=_short(r.gold)) + f"  {_reason(r)}{step}")
    if not reports:
        print(_t("no runs to triage in {path}", path=args.db or default_db_path()), file=sys.stderr)
    return 0
