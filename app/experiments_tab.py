"""The Experiments tab: the stored compute-matched experiments (`thoughtscope compare`), one at
a time as the chart of accuracy against generated tokens and wall time, and the table the CLI
prints (size, target and achieved tokens, accuracy with its 95 % interval, the triage of each
arm's wrong runs, the winner per budget).

Experiments are made by the CLI (a hundred problems times a dozen arms is not a browser job);
this tab only reads them. Callbacks are plain functions over the store.

Not here: the figure (engine/evaluation/compare_chart.py), the report (engine/cli/compare.py
`experiment_report`).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.auth import user_store, with_request
from app.i18n import message, t, translate
from engine.store import StoreError


def experiment_choices(store, request: gr.Request = None) -> list[tuple[str, str]]:
    """(label, id) of each stored experiment, newest first."""
    from engine.compare_store import CompareStore
    store = user_store(store, request)
    try:
        rows = CompareStore(getattr(store, "store", store)).experiments()
    except (StoreError, AttributeError):
        return []
    return [(f"{e['created'][:16]} · {e['model']} · {e['tier']} n={e['n']} · {','.join(e['methods'])} · "
             + t("budgets {budgets}", budgets=','.join(map(str, e['budgets'])))
             + f" · {e['status']} · {e['experiment_id']}", e["experiment_id"])
            for e in rows]


def chart_labels() -> dict[str, str]:
    """The experiment chart's words (engine/evaluation/compare_chart.py `LABELS`) in the request's language."""
    from engine.evaluation.compare_chart import LABELS
    return {key: translate(english) for key, english in LABELS.items()}


def table_markdown(report: dict) -> str:
    """The CLI's table as Markdown."""
    exp = report["experiment"]
    lines = [f"**{exp['model']}**, {exp['tier']} ({exp['problems']}), n = {exp['n']}, seed {exp['seed']} · "
             f"{exp['status']}" + (" " + t("in {s} s", s=f"{exp['wall_s']:.0f}") if exp.get("wall_s") else ""), "",
             t("| method | size | target tokens | achieved tokens | accuracy | 95 % interval | s / problem | wrong: "
               "never reached / reached, not chosen / no answer / unfinished |"),
             "| --- | --- | ---: | ---: | ---: | --- | ---: | --- |"]
    for a in report["arms"]:
        tri = a["triage"]
        size = t("one size") if a["knob"] is None else f"{a['knob']} = {a['size']}"
        target = "—" if a["knob"] is None else ", ".join(map(str, a["budgets"]))
        acc = "—" if a["accuracy"] is None else f"{a['accuracy']:.3f} ({a['right']}/{a['runs']})"
        tokens = "—" if a["mean_tokens"] is None else f"{a['mean_tokens']:.0f}"
        wall = "—" if a["mean_wall_s"] is None else f"{a['mean_wall_s']:.2f}"
        lines.append(f"| {a['method']} | {size} | {target} | {tokens} | {acc} | {a['ci95'][0]:.2f}–{a['ci95'][1]:.2f} | "
                     f"{wall} | {tri['classes']['never_reached']} / {tri['classes']['reached_not_chosen']} / "
                     f"{tri['classes']['no_answer']} / {tri['status']['unfinished']} |")
    lines.append("")
    lines += ["- " + t("budget {b} tokens: best **{best}**", b=b, best=', '.join(w) if w else '—')
              for b, w in report["winners"].items()]
    return "\n".join(lines)


def show_experiment(store, eid: str | list[str] | None, request: gr.Request = None):
    """(chart, table) of the chosen experiment, or of several on the same problems as one (say,
    a method run later beside the others)."""
    from engine.cli.compare import experiment_report
    from engine.compare_store import CompareStore
    from engine.evaluation.compare_chart import compare_figure
    if not eid:
        raise gr.Error(t("choose an experiment (made by `thoughtscope compare`)"), print_exception=False)
    # the whole database's store: an experiment is the CLI operator's, read by every user alike
    store = user_store(store, request)
    store = getattr(store, "store", store)
    try:
        eids = [eid] if isinstance(eid, str) else list(eid)
        missing = [e for e in eids if CompareStore(store).experiment(e) is None]
        if missing:
            raise gr.Error(t("no experiment {id} in this database", id=repr(missing[0])), print_exception=False)
        report = experiment_report(store, eids)
        exp = report["experiment"]
        fig = compare_figure(report.pop("results"), t("{model}, {tier} tier, n={n}", model=exp['model'],
                                                      tier=exp['tier'], n=exp['n']), labels=chart_labels())
    except (StoreError, ValueError) as e:
        raise gr.Error(message(e), print_exception=False) from None
    return fig, table_markdown(report)


def refresh(store, request: gr.Request = None):
    choices = experiment_choices(store, request)
    return gr.Dropdown(choices=choices, value=[choices[0][1]] if choices else [])


def build_experiments_tab(store) -> dict:
    """Build the tab inside an open ``gr.Tab``; ``store`` a `Store` or an `app.auth.Access`."""
    shown = store.shared_view() if hasattr(store, "shared_view") else store
    choices = experiment_choices(shown)
    c: dict[str, Any] = {}
    gr.Markdown(t("Methods at equal generated tokens per problem, made by `thoughtscope compare` "
                  "(docs/compare.md). Each run is a stored session: open it from the Sessions tab."))
    with gr.Row():
        c["experiment"] = gr.Dropdown(choices, value=[choices[0][1]] if choices else [], multiselect=True,
                                      label=t("Experiment (several on the same problems show as one)"),
                                      scale=4, elem_id="ts-experiment")
        c["refresh"] = gr.Button(t("Refresh"), size="sm", scale=0)
        c["show"] = gr.Button(t("Show"), variant="primary", scale=0, elem_id="ts-experiment-show")
    c["chart"] = gr.Plot(label=t("Accuracy against generated tokens and wall time"), elem_id="ts-experiment-chart")
    c["table"] = gr.Markdown("", elem_id="ts-experiment-table")
    c["refresh"].click(with_request(refresh, store), outputs=[c["experiment"]], api_visibility="private")
    c["show"].click(with_request(show_experiment, store), inputs=[c["experiment"]], outputs=[c["chart"], c["table"]],
                    api_name="show_experiment")
    return c
