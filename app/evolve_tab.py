"""The Evolution tab: the self-evolution rounds of `thoughtscope evolve`, as a chart and a table,
and each round's example MCTS trees, opened in the Search view.

The rounds are read from the run database (engine/evolution_store.py); this tab starts no run
(a round is minutes to hours of CPU: the CLI runs it, resumable). The chart has one line per
method (greedy, self-consistency, MCTS — with the round's PPM, or the reward round 0 had) and
the PPM's pairwise accuracy on pairs from problems it was not trained on, per round.
The example trees are ordinary stored sessions; opening one hands its events to the Search
view exactly as the Sessions tab does (app/main.py wires the Open button to its `show_opened`).

Callbacks are plain functions over the store; store errors become gr.Error here. `rounds_table`
is the rows (data); `show_run` fills the table with them under headers in the request's language.
Not here: running rounds (engine/ppm/evolve.py).
"""

from __future__ import annotations

from typing import Any

import gradio as gr
import plotly.graph_objects as go

from app.i18n import current_lang, message, per_request, t, table
from engine.evolution_store import EvolutionStore
from engine.store import StoreError

# (column, legend label, colour, dash)
SERIES = (("greedy_accuracy", "greedy", "#636efa", "solid"),
          ("sc_accuracy", "self-consistency", "#00cc96", "solid"),
          ("mcts_accuracy", "MCTS (+ PPM from round 1)", "#ef553b", "solid"),
          ("ppm_pairwise_accuracy", "PPM pairwise accuracy (unseen problems)", "#ab63fa", "dash"))
TABLE_COLUMNS = ["round", "status", "greedy %", "SC %", "MCTS %", "MCTS reward", "PPM pairwise %",
                 "eval n", "train problems", "trajectories", "pairs", "policy", "PPM", "minutes"]


def _pct(v) -> float | None:
    return None if v is None else round(100 * v, 1)


def run_choices(store) -> list[tuple[str, str]]:
    """(label, run id) of every evolution run, newest first."""
    out = []
    for r in EvolutionStore(store).runs():
        cfg = r["config"]
        out.append((f"{r['run_id']} · {r['model']} · "
                    + t("{n} problems/round", n=cfg.get('train_problems')) + " · "
                    f"{r['created'][:16]}", r["run_id"]))
    return out


def _ft(text: str, **fields) -> str:
    """A figure's words: finished text always (the empty chart is drawn while the page is laid out)."""
    return t(text, lang=current_lang(), **fields)


def rounds_figure(rows: list[dict]) -> go.Figure:
    """Accuracy per method per round, and the PPM's pairwise accuracy, in percent."""
    fig = go.Figure()
    rounds = [r["round"] for r in rows]
    for col, english, colour, dash in SERIES:
        label = _ft(english)
        ys = [_pct(r.get(col)) for r in rows]
        if all(y is None for y in ys):
            continue
        fig.add_trace(go.Scatter(x=rounds, y=ys, name=label, mode="lines+markers", connectgaps=False,
                                 line=dict(color=colour, dash=dash),
                                 hovertemplate=f"{label}<br>" + _ft("round") + " %{x}: %{y:.1f} %<extra></extra>"))
    n = next((r.get("eval_n") for r in rows if r.get("eval_n")), None)
    fig.update_layout(title=_ft("Self-evolution rounds (held-out, n = {n})", n=n) if n else _ft("Self-evolution rounds"),
                      xaxis=dict(title=_ft("round (0: the starting policy)"), dtick=1),
                      yaxis=dict(title="%", range=[0, 100]), height=380, margin=dict(l=50, r=20, t=50, b=40),
                      legend=dict(orientation="h", y=-0.25))
    if not rows:
        fig.add_annotation(text=_ft("no rounds stored yet: run `thoughtscope evolve`"), showarrow=False,
                           xref="paper", yref="paper", x=0.5, y=0.5)
    return fig


def rounds_table(rows: list[dict]) -> list[list]:
    out = []
    for r in rows:
        out.append([r["round"], r["status"], _pct(r["greedy_accuracy"]), _pct(r["sc_accuracy"]),
                    _pct(r["mcts_accuracy"]), r["mcts_reward"], _pct(r["ppm_pairwise_accuracy"]), r["eval_n"],
                    r["train_problems"], r["trajectories"], r["pairs"], r["policy_path"], r["ppm_path"],
                    None if r["wall_s"] is None else round(r["wall_s"] / 60, 1)])
    return out


def example_choices(rows: list[dict], store) -> list[tuple[str, str]]:
    """(label, session id) of every round's example trees that are still stored."""
    out = []
    for r in rows:
        for sid in r["example_sessions"]:
            try:
                meta = store.session(sid)
            except StoreError:
                continue            # deleted from the Sessions tab since
            mark = t({True: "right", False: "wrong"}.get(None if meta.get("correct") is None
                                                         else bool(meta["correct"]), "no answer"))
            out.append((t("round {n}", n=r['round']) + f" · {sid} · {mark} · {(meta.get('question') or '')[:60]}",
                        sid))
    return out


def show_run(store, run_id: str | None):
    """Chart, table, example-tree choices and a status line for one evolution run."""
    if not run_id:
        return (rounds_figure([]), table(TABLE_COLUMNS, []), gr.Dropdown(choices=[], value=None),
                t("No evolution run stored yet."))
    try:
        evo = EvolutionStore(store)
        run = evo.run(run_id)
        if run is None:
            raise gr.Error(t("no evolution run {run} in this database", run=repr(run_id)), print_exception=False)
        rows = evo.rounds(run_id)
        examples = example_choices(rows, store)
    except StoreError as e:
        raise gr.Error(message(e), print_exception=False) from None
    done = sum(r["status"] == "done" for r in rows)
    status = t("Run `{run}`: {done} of {n} rounds done; weights and data in `{out}`. Settings: {settings}.",
               run=run_id, done=done, n=len(rows), out=run['out_dir'],
               settings=', '.join(f'{k} {v}' for k, v in run['config'].items() if k != 'finetune'))
    return (rounds_figure(rows), table(TABLE_COLUMNS, rounds_table(rows)),
            gr.Dropdown(choices=examples, value=examples[0][1] if examples else None), status)


def refresh(store, run_id: str | None):
    choices = run_choices(store)
    ids = [c[1] for c in choices]
    run_id = run_id if run_id in ids else (ids[0] if ids else None)
    return (gr.Dropdown(choices=choices, value=run_id), *show_run(store, run_id))


def build_evolve_tab(store) -> dict:
    """``store``: the app's `engine.store.Store` (rounds are shared: no per-user filter)."""
    c: dict[str, Any] = {}
    try:
        choices = run_choices(store)
    except StoreError:
        choices = []
    first = choices[0][1] if choices else None

    def first_view():
        """(figure, table, _, status) of the newest run, made at each page load in its language."""
        if first:
            return show_run(store, first)
        return (rounds_figure([]), table(TABLE_COLUMNS, []), None,
                t("No evolution run stored yet: `thoughtscope evolve --rounds R --train-problems N` writes them here."))
    examples = example_choices(EvolutionStore(store).rounds(first), store) if first else []
    with gr.Row():
        c["run"] = gr.Dropdown(choices, value=first, label=t("Evolution run"), scale=4, elem_id="ts-evolve-run")
        c["refresh"] = gr.Button(t("Refresh"), size="sm", scale=0)
    c["status"] = gr.Markdown(per_request(lambda: first_view()[3]))
    c["plot"] = gr.Plot(per_request(lambda: first_view()[0]), label=t("Accuracy per round"), elem_id="ts-evolve-plot")
    c["table"] = gr.Dataframe(per_request(lambda: first_view()[1]), headers=TABLE_COLUMNS, interactive=False,
                              wrap=True, elem_id="ts-evolve-table")
    with gr.Row():
        c["example"] = gr.Dropdown(examples, value=examples[0][1] if examples else None, scale=4,
                                   label=t("A round's example MCTS tree (collection, gold-terminal-guided)"),
                                   elem_id="ts-evolve-example")
        c["open"] = gr.Button(t("Open in Search view"), variant="primary", scale=1)
    outs = [c["plot"], c["table"], c["example"], c["status"]]
    c["run"].change(lambda run_id: show_run(store, run_id), inputs=[c["run"]], outputs=outs,
                    api_name="evolution_rounds")
    c["refresh"].click(lambda run_id: refresh(store, run_id), inputs=[c["run"]], outputs=[c["run"], *outs],
                       api_visibility="private")
    return c

