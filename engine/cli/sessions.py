"""``thoughtscope sessions list|show|export|import|delete``: the recorded runs, from a shell.

engine/cli/__init__.py adds the parser with `add_sessions_parser` and dispatches to `cmd_sessions`.
Errors (unknown id, corrupt or newer database, malformed import file) are raised as
`StoreError` / `SessionNotFound`; cli.py prints them as one line with exit code 2. A session
may be named by a unique prefix of its id, as git names commits. ``--json`` output goes to
stdout alone.

Not here: the store itself (engine/store.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.store import Store, StoreError, default_db_path

QUESTION_WIDTH = 48     # characters of the question shown per row of `sessions list`
EXPORT_FORMATS = ("json", "html", "svg", "png", "graphml")   # app/export_figures.py writes each
EXPORT_LANGS = ("en", "zh")                                   # app/i18n.py LANGS
# the export's own help texts: their Chinese is in app/locales/export_zh.json (`_xt`)
FORMAT_HELP = ("json (default), html (one standalone file: tree, timeline replay, node details and the "
               "method's own views; opens offline), svg or png (one file per figure of the run's views, "
               "named OUT-FIGURE.svg; needs Chromium), graphml")
OUT_HELP = ("the file to write (json: stdout without it); for svg and png the stem of one file per figure, "
            "or a folder")
LANG_HELP = "the language of the page's and the figures' words (default: from LANG)"


def _xt(text: str) -> str:
    """An export help text in the language of LANG (app/export_words.py; English without the app)."""
    try:
        from app.export_words import say
    except ImportError:
        return text
    return say(text)


def add_sessions_parser(subparsers, db_flag_help: str) -> argparse.ArgumentParser:
    """Add ``sessions`` and its sub-commands, each with ``--db``, to ``subparsers``."""
    from engine.cli import _t  # LANG / LC_ALL: the help in Chinese (issue 24)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=None, metavar="PATH", help=_t(db_flag_help))

    s = subparsers.add_parser("sessions", help=_t("list, show, export, import or delete recorded runs"))
    sub = s.add_subparsers(dest="sessions_command", metavar="{list,show,export,import,delete}")
    sub.required = True

    p = sub.add_parser("list", parents=[common], help=_t("recorded runs, newest first"))
    p.add_argument("--method", default=None, help=_t("only runs of this method"))
    p.add_argument("--model", default=None, help=_t("only runs of this model"))
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("show", parents=[common], help=_t("one run's metadata and event counts"))
    p.add_argument("session_id", metavar="ID", help=_t("session id (or a unique prefix of it)"))
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("export", parents=[common], help=_t("one run as JSON (lossless, re-importable), GraphML, "
                                                           "standalone HTML, SVG or PNG"))
    p.add_argument("session_id", metavar="ID", help=_t("session id (or a unique prefix of it)"))
    p.add_argument("--out", default=None, metavar="FILE",
                   help=_t("write the JSON (or --format) here instead of stdout"))
    p.add_argument("--graphml", default=None, metavar="FILE", help=_t("write the tree as GraphML here"))
    p.add_argument("--format", default="json", choices=EXPORT_FORMATS, help=_xt(FORMAT_HELP))
    p.add_argument("--lang", default=None, choices=EXPORT_LANGS, help=_xt(LANG_HELP))

    p = sub.add_parser("import", parents=[common], help=_t("add a run exported as JSON (- reads stdin)"))
    p.add_argument("file", metavar="FILE")

    p = sub.add_parser("delete", parents=[common], help=_t("delete one run and its events"))
    p.add_argument("session_id", metavar="ID", help=_t("session id (or a unique prefix of it)"))
    return s


def add_export_parser(subparsers, db_flag_help: str) -> argparse.ArgumentParser:
    """``thoughtscope export --session ID --format F --out FILE``: `sessions export` with named flags."""
    from engine.cli import _t  # LANG / LC_ALL: the help in Chinese (issue 24)
    p = subparsers.add_parser("export", help=_t("one run as html, svg, png, graphml or json (as sessions export)"))
    p.add_argument("--db", default=None, metavar="PATH", help=_t(db_flag_help))
    p.add_argument("--session", dest="session_id", required=True, metavar="ID",
                   help=_t("session id (or a unique prefix of it)"))
    p.add_argument("--format", default="json", choices=EXPORT_FORMATS, help=_xt(FORMAT_HELP))
    p.add_argument("--out", default=None, metavar="FILE", help=_xt(OUT_HELP))
    p.add_argument("--lang", default=None, choices=EXPORT_LANGS, help=_xt(LANG_HELP))
    p.set_defaults(graphml=None, sessions_command="export")
    return p


def _summary(row: dict) -> dict:
    keys = ("session_id", "method", "model", "status", "events", "nodes", "created", "finished",
            "question", "answer", "correct", "owner")
    return {k: row.get(k) for k in keys}


def _short(text: str | None, width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[:width - 1] + "…"


def _list(store: Store, args) -> int:
    from engine.cli import _t   # LANG=zh: the status lines on stderr in Chinese
    rows = [_summary(r) for r in store.list_sessions(method=args.method, model=args.model)]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print(_t("no sessions in {path}", path=store.path), file=sys.stderr)
        return 0
    for r in rows:
        mark = {True: "right", False: "wrong", None: ""}[r["correct"]]
        print(f"{r['session_id']}  {r['created'][:19].replace('T', ' ')}  {r['method']:<8} {r['status']:<11} "
              f"{r['events']:>6} events  answer {_short(r['answer'], 12) or '-'} {mark}  "
              f"{_short(r['question'], QUESTION_WIDTH)}")
    return 0


def _show(store: Store, args) -> int:
    sid = store.resolve(args.session_id)
    row = store.session(sid)
    row["event_counts"] = store.event_counts(sid)
    if args.json:
        print(json.dumps(row, indent=1))
        return 0
    for key, value in row.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        print(f"{key:>16}: {'-' if value is None else value}")
    return 0


def _export(store: Store, args) -> int:
    from engine.cli import _t   # LANG=zh: the status lines on stderr in Chinese
    sid = store.resolve(args.session_id)
    if args.format != "json":
        if not args.out:
            raise StoreError(f"--format {args.format} needs --out FILE")
        from app.export_figures import write_export     # the figures are the app's (plotly)
        for path in write_export(store, sid, args.format, args.out, lang=args.lang):
            print(_t("wrote {path}", path=path), file=sys.stderr)
        if not args.graphml:
            return 0
        args.out = None
    if args.graphml:
        store.export_graphml(sid, args.graphml)
        print(_t("wrote {path}", path=args.graphml), file=sys.stderr)
    if args.out or not args.graphml:
        text = json.dumps(store.export_session(sid), indent=1, ensure_ascii=False)
        if args.out:
            Path(args.out).write_text(text + "\n", encoding="utf-8")
            print(_t("wrote {path}", path=args.out), file=sys.stderr)
        else:
            print(text)
    return 0


def _import(store: Store, args) -> int:
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise StoreError(f"cannot read {args.file}: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise StoreError(f"{args.file} is not a JSON session file: {e}") from None
    print(store.import_session(data))
    return 0


def _delete(store: Store, args) -> int:
    from engine.cli import _t   # LANG=zh: the status lines on stderr in Chinese
    sid = store.resolve(args.session_id)
    store.delete(sid)
    print(_t("deleted {sid}", sid=sid), file=sys.stderr)
    return 0


SUBCOMMANDS = {"list": _list, "show": _show, "export": _export, "import": _import, "delete": _delete}


def cmd_sessions(args) -> int:
    with Store(args.db if args.db else default_db_path()) as store:
        return SUBCOMMANDS[args.sessions_command](store, args)
