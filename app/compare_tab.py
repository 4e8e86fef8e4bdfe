"""The Compare tab: two to four stored runs side by side, stepped together by iteration.

Each column shows one run: its tree, answer, the rule that chose it, generated tokens, wall
time and whether it is right. One shared timeline steps every run by iteration (the k-th
`IterationStarted` of each: MCTS rollouts, rStar rollouts, a baseline's samples or beam depths);
a run with fewer iterations stays whole once they are used up, so a 4-rollout run beside a
16-rollout one shows when each had spent what. Runs of the same problem (same question) are
listed for the first run, to add with one tick.

Runs come from the Sessions tab ("Compare…") or the Search view ("Compare with…"); both put the
run's id in the ids box (`add_id`). Callbacks are plain functions; the view (the runs' events)
lives in ``gr.State``. Each reads the store through ``user_store`` (app/auth.py), so in classroom
mode only the user's own and the shared runs can be compared.

Not here: running anything; the tree figure (app/tree_figure.py).
"""

from __future__ import annotations

import re
from typing import Any

import gradio as gr

from app.auth import user_store, with_request
from app.controls import Slider
from app.i18n import message, t
from app.tree_figure import tree_figure
from engine import events as E
from engine.store import StoreError
from engine.tree import Tree

MAX_RUNS = 4
RUN_LABELS = ("run 1", "run 2", "run 3", "run 4")     # one key each: a page label cannot take a field
SAME_PROBLEM_LISTED = 12     # runs of the same question offered for the comparison
_SPLIT = re.compile(r"[\s,;]+")


def parse_ids(text: str | None) -> list[str]:
    """Session ids (or unique prefixes) from the ids box, in order, each once."""
    return list(dict.fromkeys(x for x in _SPLIT.split(text or "") if x))


def add_id(ids_text: str | None, session_id: str | None) -> str:
    """The ids box with ``session_id`` added (at most `MAX_RUNS`; a full box keeps its first
    three and takes the new one last)."""
    ids = parse_ids(ids_text)
    sid = (session_id or "").strip()
    if not sid:
        raise gr.Error(t("select a run first (click a row in the table, or run a search)"), print_exception=False)
    if sid not in ids:
        ids = (ids[:MAX_RUNS - 1] if len(ids) >= MAX_RUNS else ids) + [sid]
    return ", ".join(ids)


def iteration_starts(events: list[E.Event]) -> list[int]:
    """The index of each `IterationStarted` in ``events``."""
    return [i for i, ev in enumerate(events) if isinstance(ev, E.IterationStarted)]


def upto_iteration(events: list[E.Event], k: int) -> list[E.Event]:
    """The events of the first ``k`` iterations (all of them once k reaches the run's count;
    k = 0: what came before the first iteration: the root)."""
    starts = iteration_starts(events)
    return events[:starts[k]] if k < len(starts) else events


def iterations(run: dict) -> int:
    return len(iteration_starts(run["events"]))


def run_header(run: dict, tree: Tree, k: int) -> str:
    """The column's heading: method, answer and the rule that chose it, tokens, wall time, right."""
    meta = run["meta"]
    n = iterations(run)
    final = tree.final
    correct = meta.get("correct")
    mark = "" if correct is None else (" ✓ " + t("right") if correct else " ✗ " + t("wrong"))
    answer = final.answer if final is not None else None
    rule = " " + t("(rule: {rule})", rule=final.rule) if final is not None and final.rule else ""
    wall = meta.get("wall_s")
    tokens = meta.get("generated_tokens")
    shown = t("iteration {k} of {n}", k=min(k, n), n=n) + (" · " + t("finished") if k >= n else "")
    return (f"**{meta['method']}** `{run['session_id'][:8]}` · {shown}\n\n"
            + t("answer **{answer}**", answer=answer if final is not None else '—')
            + f"{rule}{mark if final is not None else ''} · "
            + t("gold {gold}", gold=meta.get('gold') if meta.get('gold') is not None else '—') + "\n\n"
            + t("{tokens} generated tokens", tokens=tokens if tokens is not None else '—') + " · "
            + f"{f'{wall:.1f} s' if wall is not None else '— s'} · " + t("{n} nodes", n=len(tree)))


def load_runs(store, ids_text: str | None, request: gr.Request = None) -> dict:
    """The view: each named run's id, metadata and events; a bad id is a gr.Error naming it."""
    store = user_store(store, request)
    ids = parse_ids(ids_text)
    if not 2 <= len(ids) <= MAX_RUNS:
        raise gr.Error(t("name two to four runs to compare (session ids, comma-separated); got {n}", n=len(ids)),
                       print_exception=False)
    runs = []
    for raw in ids:
        try:
            sid = store.resolve(raw)
            runs.append({"session_id": sid, "meta": store.session(sid), "events": store.events(sid)})
        except StoreError as e:
            raise gr.Error(t("run {run}: {error}", run=repr(raw), error=e), print_exception=False) from None
    return {"runs": runs}


def columns_at(view: dict | None, k) -> list:
    """(header, plot, visible column) for each of the `MAX_RUNS` columns at iteration ``k``."""
    runs = (view or {}).get("runs") or []
    k = max(0, int(k or 0))
    out = []
    for i in range(MAX_RUNS):
        if i >= len(runs):
            out += [gr.update(value=""), gr.update(value=None), gr.update(visible=False)]
            continue
        run = runs[i]
        n = iterations(run)
        tree = Tree.fold(upto_iteration(run["events"], k))
        live = k < n
        fig = tree_figure(tree, highlight=tree.last_path if live else None, height=420,
                          colour_by="action" if run["meta"]["method"] == "rstar" else "q") if len(tree) else None
        out += [gr.update(value=run_header(run, tree, k)), gr.update(value=fig), gr.update(visible=True)]
    return out


def same_problem(store, ids_text: str | None, request: gr.Request = None):
    """Other runs of the first named run's question, newest first, as checkbox choices (none
    while the box names no run that exists)."""
    store = user_store(store, request)
    ids = parse_ids(ids_text)
    try:
        first = store.session(store.resolve(ids[0])) if ids else None
    except StoreError:
        first = None
    if first is None:
        return gr.update(choices=[], value=[])
    named = set()
    for raw in ids:
        try:
            named.add(store.resolve(raw))
        except StoreError:
            pass
    try:
        rows = [r for r in store.list_sessions() if r.get("question") == first.get("question")
                and r["session_id"] not in named][:SAME_PROBLEM_LISTED]
    except StoreError as e:
        raise gr.Error(message(e), print_exception=False) from None
    choices = [(f"{r['method']} · " + t("answer {answer}", answer=r.get('answer')) + " · "
                + t("{n} tokens", n=r.get('generated_tokens')) + " · "
                f"{'✓' if r.get('correct') else '✗' if r.get('correct') is not None else '?'} · "
                f"{r['session_id'][:8]}", r["session_id"]) for r in rows]
    return gr.update(choices=choices, value=[])


def compare(store, ids_text: str | None, request: gr.Request = None) -> tuple:
    """Load the runs and show them at their last iteration: (view, timeline, status, *columns)."""
    view = load_runs(store, ids_text, request)
    most = max(iterations(r) for r in view["runs"])
    same = len({r['meta'].get('question') for r in view['runs']}) == 1
    status = t("{n} runs of the same problem; the timeline steps them together by iteration (0–{most})."
               if same else
               "{n} runs of different problems; the timeline steps them together by iteration (0–{most}).",
               n=len(view['runs']), most=most)
    return (view, gr.Slider(maximum=most, value=most), status, *columns_at(view, most))


def step(view: dict | None, k, direction: int) -> tuple:
    """One iteration back or forward on the shared timeline: (k, *columns)."""
    runs = (view or {}).get("runs") or []
    if not runs:
        raise gr.Error(t("compare two to four runs first"), print_exception=False)
    most = max(iterations(r) for r in runs)
    k = max(0, min(most, int(k or 0) + direction))
    return (k, *columns_at(view, k))


def with_ticked(ids_text: str | None, ticked: list[str] | None) -> str:
    """The ids box with the ticked same-problem runs added (up to `MAX_RUNS` in all)."""
    ids = parse_ids(ids_text)
    for sid in ticked or []:
        if sid not in ids and len(ids) < MAX_RUNS:
            ids.append(sid)
    return ", ".join(ids)


COMPARABLE_METHODS = 6      # other methods' latest runs named beside a run's token cost


def cost_line(store, view: dict | None, request: gr.Request = None) -> str:
    """The run on screen's generated tokens beside the latest finished run of each other method
    on the same problem (same question and model): "this run: 1,729 tokens · sc 584 ✓ · rstar
    44,202 ✗". "" when the view is not a stored run."""
    store = user_store(store, request)
    sid = (view or {}).get("session_id")
    if not sid:
        return ""
    try:
        me = store.session(sid)
        rows = store.list_sessions(model=me.get("model"))
    except StoreError:
        return ""
    latest: dict[str, dict] = {}
    for r in rows:          # newest first: the first of each method is its latest
        if (r.get("question") == me.get("question") and r["method"] != me["method"]
                and r.get("generated_tokens") is not None and r["method"] not in latest):
            latest[r["method"]] = r
    mine = me.get("generated_tokens")
    head = t("**Token cost**: this run ({method}) {n} tokens", method=me['method'], n=f"{mine:,}") \
        if mine is not None else t("**Token cost**: this run ({method}) has not finished", method=me['method'])
    if not latest:
        return head + " · " + t("no other method has run this problem yet.")
    def mark(r):
        return "" if r.get("correct") is None else (" ✓" if r["correct"] else " ✗")
    others = [f"{m} {r['generated_tokens']:,}{mark(r)}" + (f" ({r['generated_tokens'] / mine:.1f}×)" if mine else "")
              for m, r in list(latest.items())[:COMPARABLE_METHODS]]
    return head + " · " + t("the latest run of each other method on this problem:") + " " + " · ".join(others)


def opened_cost_line(store, view: dict | None, request: gr.Request = None):
    """`cost_line` for a run opened from the Sessions tab; no change when it opens in another tab
    (LECO, semantic entropy: the Search view keeps its run)."""
    from app.restore import tab_of
    return cost_line(store, view, request) if tab_of(view) == "search" else gr.skip()


def build_compare_tab(store) -> dict:
    """Build the tab inside an open ``gr.Tab``; ``store`` a `Store` or an `app.auth.Access`."""
    c: dict[str, Any] = {"view": gr.State(None)}
    with gr.Row():
        c["ids"] = gr.Textbox(label=t("Runs to compare: two to four session ids (or unique prefixes), comma-separated"),
                              scale=4, elem_id="ts-compare-ids")
        c["go"] = gr.Button(t("Compare"), variant="primary", scale=1, elem_id="ts-compare-go")
    c["status"] = gr.Markdown("", elem_id="ts-compare-status")
    with gr.Row():
        c["same"] = gr.CheckboxGroup([], label=t("Runs of the same problem (tick to add, then Compare)"),
                                     scale=4, elem_id="ts-compare-same")
        c["add_same"] = gr.Button(t("Add ticked"), size="sm", scale=1)
    with gr.Row():
        c["prev"] = gr.Button(t("◀ previous iteration"), size="sm", elem_id="ts-compare-prev")
        c["timeline"] = Slider(0, 1, value=0, step=1, label=t("Shared timeline (iterations, every run)"),
                               elem_id="ts-compare-timeline")
        c["next"] = gr.Button(t("next iteration ▶"), size="sm", elem_id="ts-compare-next")
    cols = []
    with gr.Row(equal_height=False):
        for i in range(MAX_RUNS):
            with gr.Column(visible=False, min_width=260) as col:
                head = gr.Markdown("", elem_id=f"ts-compare-head-{i}")
                plot = gr.Plot(label=t(RUN_LABELS[i]), elem_id=f"ts-compare-plot-{i}")
            cols += [head, plot, col]
    c["columns"] = cols
    c["go_event"] = c["go"].click(with_request(compare, store), inputs=[c["ids"]],
                                  outputs=[c["view"], c["timeline"], c["status"], *cols], api_name="compare_runs")
    c["go_event"].success(with_request(same_problem, store), inputs=[c["ids"]], outputs=[c["same"]],
                          api_visibility="private")
    c["timeline"].input(columns_at, inputs=[c["view"], c["timeline"]], outputs=cols, api_visibility="private",
                        trigger_mode="always_last")
    for name, direction in (("prev", -1), ("next", 1)):
        c[name].click(lambda v, k, d=direction: step(v, k, d), inputs=[c["view"], c["timeline"]],
                      outputs=[c["timeline"], *cols], api_visibility="private")
    c["add_same"].click(with_ticked, inputs=[c["ids"], c["same"]], outputs=[c["ids"]], api_visibility="private")
    return c


def wire_compare(c: dict, *, sessions: dict, search: dict, tabs, store, opened=None, opened_state=None) -> None:
    """The ways into the tab: the Sessions tab's "Compare…" (the selected run) and the Search
    view's "Compare with…" (the run on screen) add the run to the ids box, list the same
    problem's runs and switch here."""
    to_tab = dict(fn=lambda: gr.Tabs(selected="compare"), outputs=[tabs], api_visibility="private")
    offer = dict(fn=with_request(same_problem, store), inputs=[c["ids"]], outputs=[c["same"]],
                 api_visibility="private")
    added = sessions["compare"].click(add_id, inputs=[c["ids"], sessions["session_id"]], outputs=[c["ids"]],
                                      api_visibility="private")
    added.success(**to_tab)
    added.success(**offer)
    if opened is not None:
        opened.success(with_request(opened_cost_line, store), inputs=[opened_state], outputs=[search["cost"]],
                       api_visibility="private")
    added = search["compare_with"].click(lambda ids, view: add_id(ids, (view or {}).get("session_id")),
                                         inputs=[c["ids"], search["view"]], outputs=[c["ids"]],
                                         api_visibility="private")
    added.success(**to_tab)
    added.success(**offer)
