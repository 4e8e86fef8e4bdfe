"""The Sessions tab: every stored run, filtered; open one into the Search view, delete, export, import.

Callbacks are plain functions over the store; store errors become gr.Error here (in the reader's
language: app/i18n.py `message`). The table's rows are `session_rows` (data, as the API and tests
read them); what fills the table is `session_table`, the same rows under column headers in the
request's language. Opening a
session hands its events to the Search tab's view state (wired in app/main.py). Each callback
takes the request and reads the store through ``user_store`` (app/auth.py), so in classroom
mode a user lists, opens, exports and deletes only their own runs and the shared ones.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from app.auth import Access, user_store, with_request
from app.export_figures import EXPORT_FORMATS, write_export
from app.i18n import message, per_request, t, table
from app.generate_record import METHOD as GENERATE
from app.triage_view import build_failures_panel
from engine.search import METHODS
from engine.export_html import ExportError
from engine.store import StoreError

COLUMNS = ["session_id", "method", "model", "status", "answer", "gold", "correct", "nodes",
           "generated_tokens", "created", "question"]
CORRECT_FILTER = {"any": None, "right": True, "wrong": False}


def session_rows(store, method: str = "any", correct: str = "any", model: str = "any",
                 request: gr.Request = None) -> list[list]:
    store = user_store(store, request)
    try:
        rows = store.list_sessions(method=None if method == "any" else method,
                                   model=None if not model or model == "any" else model,
                                   correct=CORRECT_FILTER.get(correct))
    except StoreError as e:
        raise gr.Error(message(e), print_exception=False) from None
    out = []
    for r in rows:
        row = [r.get(k) for k in COLUMNS]
        row[COLUMNS.index("question")] = (r.get("question") or "")[:90]
        out.append(row)
    return out


def session_table(store, method: str = "any", correct: str = "any", model: str = "any",
                  request: gr.Request = None):
    """`session_rows` as the table shows them: headers and each run's status in the request's language."""
    rows = session_rows(store, method, correct, model, request)
    at = COLUMNS.index("status")
    return table(COLUMNS, [[*r[:at], t(r[at]) if r[at] else r[at], *r[at + 1:]] for r in rows])


def model_choices(store, request: gr.Request = None) -> list[str]:
    store = user_store(store, request)
    try:
        return [(t("any"), "any"), *sorted({r["model"] for r in store.list_sessions() if r.get("model")})]
    except StoreError:
        return [(t("any"), "any")]


def _with_session(store, session_id: str, action):
    """``action(full_id)`` for the session the user named (a unique id prefix is enough);
    no id or a store error becomes a gr.Error."""
    sid = (session_id or "").strip()
    if not sid:
        raise gr.Error(t("select a session in the table (or type its id) first"), print_exception=False)
    try:
        return action(store.resolve(sid))
    except StoreError as e:
        raise gr.Error(message(e), print_exception=False) from None


def open_session(store, session_id: str, request: gr.Request = None):
    """The session's events as a view for the Search tab, and a status line."""
    store = user_store(store, request)
    sid, events, meta = _with_session(store, session_id, lambda i: (i, store.events(i), store.session(i)))
    return {"session_id": sid, "events": events}, t("Opened `{id}` ({method}, {n} events, {status}).", id=sid,
                                                    method=meta["method"], n=len(events), status=t(meta["status"]))


def delete_session(store, session_id: str, method: str, correct: str, model: str = "any",
                   request: gr.Request = None):
    store = user_store(store, request)
    sid = _with_session(store, session_id, lambda i: (store.delete(i), i)[1])
    return session_table(store, method, correct, model), t("Deleted `{id}`.", id=sid), ""


def export_session(store, session_id: str, request: gr.Request = None) -> str:
    store = user_store(store, request)
    sid, data = _with_session(store, session_id, lambda i: (i, store.export_session(i)))
    out = Path(tempfile.mkdtemp(prefix="thoughtscope-export-")) / f"session-{sid}.json"
    out.write_text(json.dumps(data, indent=1, sort_keys=True))
    return str(out)


def export_as(store, session_id: str, fmt: str, request: gr.Request = None) -> str | list[str]:
    """The session as ``fmt`` (app/export_figures.py: html, svg, png, graphml, json), a file to
    download; svg and png: one file per figure of the run's views. In the page's language."""
    store = user_store(store, request)
    if fmt not in EXPORT_FORMATS:
        raise gr.Error(t("export format must be one of {choices}, got {value}", choices=", ".join(EXPORT_FORMATS),
                         value=repr(fmt)), print_exception=False)
    sid = _with_session(store, session_id, lambda i: i)
    out = Path(tempfile.mkdtemp(prefix="thoughtscope-export-")) / f"session-{sid}.{fmt}"
    try:
        paths = write_export(store, sid, fmt, out)
    except (ExportError, StoreError, ValueError) as e:
        raise gr.Error(message(e), print_exception=False) from None
    return str(paths[0]) if len(paths) == 1 else [str(p) for p in paths]


def import_session(store, file: Any, method: str, correct: str, model: str = "any",
                   request: gr.Request = None):
    store = user_store(store, request)
    if file is None:
        raise gr.Error(t("choose a session JSON file to import"), print_exception=False)
    path = Path(file if isinstance(file, str) else getattr(file, "name", file))
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise gr.Error(t("{name} is not a session JSON file: {why}", name=path.name, why=e),
                       print_exception=False) from None
    try:
        sid = store.import_session(data)
    except StoreError as e:
        raise gr.Error(message(e), print_exception=False) from None
    return session_table(store, method, correct, model), t("Imported as `{id}`.", id=sid)


def selected_id(rows, evt: gr.SelectData) -> str:
    """The session id of the clicked table row."""
    try:
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        values = rows.values.tolist() if hasattr(rows, "values") else rows
        return str(values[row][0])
    except (IndexError, TypeError, KeyError):
        return ""


def refresh(store, method: str, correct: str, model: str, request: gr.Request = None):
    return session_table(store, method, correct, model, request), gr.Dropdown(choices=model_choices(store, request))


def build_sessions_tab(store) -> dict:
    """``store``: a `Store`, or an `Access` (app/auth.py) whose shared view fills the page as
    built; the page's load event then lists the logged-in user's own runs."""
    shown = store.shared_view() if isinstance(store, Access) else store
    c: dict[str, Any] = {}
    with gr.Row():
        c["method"] = gr.Dropdown([(t("any"), "any"), *METHODS, GENERATE], value="any", label=t("Method"), scale=1)
        c["model"] = gr.Dropdown(model_choices(shown), value="any", label=t("Model"), scale=1)
        c["correct"] = gr.Dropdown([(t(k), k) for k in CORRECT_FILTER], value="any", label=t("Result"), scale=1)
        c["refresh"] = gr.Button(t("Refresh"), size="sm", scale=0)
    # the value is made at each page load, so its headers are in that page's language
    c["table"] = gr.Dataframe(per_request(lambda: session_table(shown)), headers=COLUMNS, interactive=False,
                              wrap=True, elem_id="ts-sessions-table")
    with gr.Row():
        c["session_id"] = gr.Textbox(label=t("Session id (click a row)"), scale=2, elem_id="ts-session-id")
        c["open"] = gr.Button(t("Open in Search view"), variant="primary", scale=1)
        c["compare"] = gr.Button(t("Compare…"), scale=1, elem_id="ts-sessions-compare")   # app/compare_tab.py
        c["export"] = gr.Button(t("Export JSON"), scale=1)
        c["delete"] = gr.Button(t("Delete"), variant="stop", scale=1)
    with gr.Row():
        # html: one file with the tree, its timeline, node details and the method's views that opens
        # offline; svg/png: every figure of the run's views, one file each, for a slide
        c["export_format"] = gr.Dropdown(list(EXPORT_FORMATS), value="html", label=t("Export as"), scale=1,
                                         elem_id="ts-export-format")
        c["export_as"] = gr.Button(t("Export for a slide or email"), scale=1, elem_id="ts-export-as")
    c["status"] = gr.Markdown("")
    c["failures"] = build_failures_panel(store, [*METHODS])     # a row opens the run (app/main.py)
    with gr.Row():
        c["download"] = gr.File(label=t("Exported session"), interactive=False)
        c["upload"] = gr.File(label=t("Import a session JSON"), file_types=[".json"])

    filters = [c["method"], c["correct"], c["model"]]
    for trigger in (c["method"].change, c["correct"].change, c["model"].change):
        trigger(with_request(session_table, store), inputs=filters, outputs=[c["table"]],
                api_visibility="private")
    c["refresh"].click(with_request(refresh, store), inputs=filters, outputs=[c["table"], c["model"]],
                       api_name="list_sessions")
    c["table"].select(selected_id, inputs=[c["table"]], outputs=[c["session_id"]], api_visibility="private")
    c["delete"].click(with_request(delete_session, store), inputs=[c["session_id"], *filters],
                      outputs=[c["table"], c["status"], c["session_id"]], api_name="delete_session")
    c["export"].click(with_request(export_session, store), inputs=[c["session_id"]], outputs=[c["download"]],
                      api_name="export_session")
    c["export_as"].click(with_request(export_as, store), inputs=[c["session_id"], c["export_format"]],
                         outputs=[c["download"]], api_name="export_as")
    c["upload"].upload(with_request(import_session, store), inputs=[c["upload"], *filters],
                       outputs=[c["table"], c["status"]], api_visibility="private")
    return c
