"""Failure triage in the app (engine/triage.py): the answer tally beside the Search view's tree,
"jump to first wrong step", the tree coloured by Q / correctness / reward source, and the
failures list of the Sessions tab (filterable by class and method; a row opens the run).

The first wrong step is the claim check for arithmetic: the first step on the chosen path that
states an `a op b = c` whose arithmetic is false. LECO's step scores are shown in the LECO tab
(its runs open there), and a PPM's step scores on hover and in the inspector; neither is used
here to name a first wrong step, and a path that claims nothing checkable says so.

Callbacks are plain functions over the view (``{"session_id", "events"}``) or the store. The
reasons, classes and the failures list's headers are said in the request's language: the engine's
`Reason` is rendered through app/i18n.py's catalogue (`reason_text`), and `failure_table` is
`failure_rows` (data: class codes, English reasons) as the table shows them.

Not here: the classes and the tally themselves (engine/triage.py), the figure (app/tree_figure.py).
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from app.auth import user_store, with_request
from app.i18n import message, per_request, t, table, translate
from app.tree_figure import tree_figure
from engine import events as E
from engine.store import StoreError
from engine.tree import Tree
from engine.triage import CLASSES, WRONG, Triage, triage

COLOUR_CHOICES = [("Q (the search's value)", "q"), ("correctness (share of right answers below)", "correct"),
                  ("reward source", "source")]
FAILURE_COLUMNS = ["session_id", "method", "class", "answer", "gold", "first wrong node", "why", "question"]
FAILURES_SCANNED = 2000     # newest runs triaged for the failures list


def class_words(klass: str) -> str:
    """A triage class in words, in the current language ("reached_not_chosen" -> "reached not chosen")."""
    return t(klass.replace("_", " "))


def reason_text(report: Triage) -> str:
    """The report's reason in the current language (engine/triage.py `Reason`, rendered through
    the catalogue: each template of `REASONS` has an entry in app/locales/zh.json)."""
    return report.why.render(translate)


def reward_sources(events: list[E.Event]) -> dict[int, str]:
    """Each rewarded terminal's reward source (its last `TerminalReward`)."""
    return {ev.node: ev.source for ev in events if isinstance(ev, E.TerminalReward)}


def _tree(view: dict | None, k) -> tuple[list[E.Event], Tree] | None:
    if not view or not view.get("events"):
        return None
    events = view["events"][:int(k) if k is not None else None]
    return events, Tree.fold(events)


def coloured_figure(view: dict | None, k, colour: str, highlight: list[int] | None = None):
    """The tree at event k coloured by ``colour`` (rStar keeps its action colours)."""
    got = _tree(view, k)
    if got is None or not len(got[1]):
        return None
    events, tree = got
    if tree.candidates is not None or (tree.run and tree.run.method == "rstar"):
        return tree_figure(tree, highlight=highlight, colour_by="action")
    live = highlight is None and k is not None and int(k) < len(view["events"])
    return tree_figure(tree, highlight=highlight if highlight is not None else (tree.last_path if live else None),
                       colour_by=colour or "q", sources=reward_sources(events))


def recolour(view: dict | None, k, colour: str):
    """The figure again after "Colour by" or the timeline changed; no change for Q (the view's
    own redraw already coloured it by Q)."""
    if (colour or "q") == "q":
        return gr.skip()
    return coloured_figure(view, k, colour)


def tally_markdown(view: dict | None, k=None) -> str:
    """The answer tally of the tree at event k: each answer, its terminals, visits, best and
    mean Q, right or wrong; above it the run's triage."""
    got = _tree(view, k)
    if got is None or got[1].run is None:
        return ""
    tree = got[1]
    report = triage(tree)
    head = (t("**Triage**: {klass} — {reason}", klass=class_words(report.klass), reason=reason_text(report))
            if report.status == WRONG else t("**Triage**: {reason}", reason=reason_text(report)))
    if report.first_wrong is not None:
        head += " · " + t("first wrong step: node {n}", n=report.first_wrong.node)
    if not report.tally:
        return head + "\n\n" + t("No terminal yet.")
    rows = [t("| answer | terminals | visits | best Q | mean Q | right |"), "| --- | --- | ---: | ---: | ---: | :---: |"]
    for r in report.tally:
        ids = ", ".join(map(str, r.terminals[:8])) + (f" … (+{len(r.terminals) - 8})" if len(r.terminals) > 8 else "")
        right = "—" if r.correct is None else ("✓" if r.correct else "✗")
        answer = t("*(none stated)*") if r.answer is None else f"`{html.escape(str(r.answer))}`"
        rows.append(f"| {answer} | {ids} | {r.visits} | {r.best_q:.3f} | {r.mean_q:.3f} | {right} |")
    return head + "\n\n" + "\n".join(rows)


def first_wrong(view: dict | None, k, colour: str = "q"):
    """(node id, inspector, figure with the path to it drawn thick, note) for the chosen path's
    first false arithmetic claim; a gr.Warning and no change where there is none."""
    from app.inspector import inspect_node
    got = _tree(view, k)
    if got is None:
        raise gr.Error(t("Run a search or open a session first."), print_exception=False)
    tree = got[1]
    if tree.run is None:
        raise gr.Error(t("this view holds no run"), print_exception=False)
    report = triage(tree)
    if report.first_wrong is None:
        why = t("No first wrong step found: the chosen path's steps claim no `a op b = c` to check."
                if report.step_check is None else
                "No first wrong step found: every arithmetic claim on the chosen path is right.")
        gr.Warning(why)
        return gr.skip(), gr.skip(), gr.skip(), why
    nid = report.first_wrong.node
    fig = coloured_figure(view, k, colour, highlight=tree.path_to(nid))
    w = report.first_wrong
    note = t("**First wrong step**: node {n}: `{step}` claims {claimed}, but it is {true}.",
             n=nid, step=w.step, claimed=w.claimed, true=w.true)
    return nid, inspect_node(view, nid, k), fig, note


# ---- the failures list -------------------------------------------------------------------------

def failure_rows(store, klass: str = "any", method: str = "any", request: gr.Request = None) -> list[list]:
    """One row per wrong stored run (newest first, of the newest `FAILURES_SCANNED`), filtered by
    triage class and method: id, method, class code, answer, gold, first wrong node, the `Reason`,
    question."""
    store = user_store(store, request)
    try:
        rows = store.list_sessions(method=None if method in (None, "", "any") else method, limit=FAILURES_SCANNED)
    except StoreError as e:
        raise gr.Error(message(e), print_exception=False) from None
    out = []
    for r in rows:
        if r.get("gold") is None or r.get("correct") == 1 or r.get("status") == "running":
            continue
        try:
            tree = Tree.fold(store.events(r["session_id"]))
        except (StoreError, ValueError, IndexError, KeyError, TypeError):
            continue
        if tree.run is None:
            continue
        rep = triage(tree)
        if rep.status != WRONG or (klass not in (None, "", "any") and rep.klass != klass):
            continue
        out.append([r["session_id"], r["method"], rep.klass, rep.answer, rep.gold,
                    rep.first_wrong.node if rep.first_wrong else None, rep.why, (r.get("question") or "")[:80]])
    return out


def failure_table(store, klass: str = "any", method: str = "any", request: gr.Request = None):
    """`failure_rows` as the list shows them: headers, class and reason in the request's language."""
    shown = []
    for r in failure_rows(store, klass, method, request):
        shown.append([r[0], r[1], class_words(r[2]), *r[3:6], r[6].render(translate), r[7]])
    return table(FAILURE_COLUMNS, shown)


def build_failures_panel(store, methods: list[str]) -> dict:
    """The failures list inside an open layout block (the Sessions tab); a row's id goes to
    ``c["session_id"]`` and app/main.py opens it."""
    c: dict[str, Any] = {}
    with gr.Accordion(t("Failures: wrong runs by triage class"), open=False, elem_id="ts-failures"):
        with gr.Row():
            c["klass"] = gr.Dropdown([(t("any"), "any"), *((class_words(k), k) for k in CLASSES)],
                                     value="any", label=t("Class"), scale=1, elem_id="ts-failures-class")
            c["method"] = gr.Dropdown([(t("any"), "any"), *methods], value="any", label=t("Method"), scale=1)
            c["refresh"] = gr.Button(t("Triage the stored runs"), size="sm", scale=0, elem_id="ts-failures-go")
        c["table"] = gr.Dataframe(per_request(lambda: table(FAILURE_COLUMNS, [])), headers=FAILURE_COLUMNS,
                                  interactive=False, wrap=True, elem_id="ts-failures-table")
        c["session_id"] = gr.Textbox(visible=False)
    inputs = [c["klass"], c["method"]]
    for trigger in (c["refresh"].click, c["klass"].change, c["method"].change):
        trigger(with_request(failure_table, store), inputs=inputs, outputs=[c["table"]], api_visibility="private")
    return c
