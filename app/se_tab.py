"""The Semantic entropy tab: sampled answers grouped into meaning clusters, the four entropy
numbers, and SUGAR's routing decision with the retrieved passages.

A run iterates the se or sugar events (engine/search/sugar.py), stores each in SQLite like any
other session, and keeps them in ``gr.State``; the view is folded from those events, so the
strict/lenient toggle redraws without running the model again (a run emits both clusterings).

- Bubbles: one per cluster, area ~ probability mass (likelihood-weighted), labelled with the
  cluster's first answer; a line between two clusters carries the judge's verdicts both ways
  (→ is "first answer entails the other"). The table below lists every judge call.
- The threshold bar: the three routing bands (none / single / multi) and where the question's
  entropy falls.
- Math questions use the embedded reasoning model with the math judge; open questions can use
  SmolLM2-135M (loaded on first use) with the language-model judge, which the tab flags as weak.

Not here: clustering, estimators, retrieval (engine/).
"""

from __future__ import annotations

import functools
import html
import math
from pathlib import Path
from typing import Any

import gradio as gr
import plotly.graph_objects as go

from app.auth import refuse_server_paths, user_store, with_request
from app.controls import Slider
from app.generate_tab import MODEL_QUEUE, gold_for, gold_markdown, limit_hint, new_pick_state, pick_random_problem
from app.i18n import message, per_request, t, table
from app.number_notes import entropy_note
from app.recording import Recording, RunControl, checked_seed, stop_search, stop_settled
from engine import events as E
from engine.demo_model.problems import Problem, load_problems
from engine.evaluation.evaluate import HELDOUT
from engine.inputs import number, whole
from engine.models.base import InputError, ModelLoadError
from engine.scoring.semantic_entropy import ESTIMATORS
from engine.search import METHODS
from engine.search.sugar import JUDGES, POLICIES

OPEN_MODEL = "smollm2-135m"
SHORT = {"entailment": "E", "neutral": "N", "contradiction": "C"}
BAND_COLOURS = {"none": "#c7e9c0", "single": "#fdd0a2", "multi": "#fcbba1"}
ESTIMATOR_WORDS = {             # t() keys
    "discrete": "discrete (cluster frequencies)",
    "rao": "likelihood-weighted (Nature 2024)",
    "mc2023": "Monte-Carlo (Kuhn et al. 2023; SUGAR's formula)",
    "naive": "naive predictive entropy (raw strings, no clusters)",
}
DECISION_WORDS = {"none": "no retrieval", "single": "single-step retrieval", "multi": "multi-step retrieval"}  # t() keys
JUDGE_WORDS = {"auto": "auto", "math": "math: math-verify", "lm": "lm: the language model asks itself",
               "nli": "nli: an NLI model"}                                                     # t() keys
POLICY_WORDS = {"adaptive": "adaptive (SUGAR)", "always": "always retrieve", "never": "never retrieve",
                "sweep": "sweep: every answer, to score thresholds"}                                                 # t() keys


@functools.lru_cache(maxsize=1)
def _open_backend():
    from engine.models.registry import load_backend
    return load_backend(OPEN_MODEL)


def backend_for(choice: str, loaded):
    """The loaded model, or SmolLM2-135M for open questions (loaded once, on first use)."""
    if choice != OPEN_MODEL:
        return loaded
    try:
        return _open_backend()
    except ModelLoadError as e:
        raise gr.Error(message(e), print_exception=False) from None


def velmora_problems() -> list[Problem]:
    from engine.retrieval import load_questions
    return [Problem(q.id, "velmora", q.question, q.answer, ()) for q in load_questions()]


# ---- folding the events into what the tab shows ------------------------------------------------

def fold(events: list[E.Event], mode: str) -> dict[str, Any]:
    view: dict[str, Any] = {"samples": {}, "clusters": None, "entropy": None, "routed": None, "passages": [],
                            "answers": {}, "final": None, "run": None, "finished": None}
    for ev in events:
        if isinstance(ev, E.RunStarted):
            view["run"] = ev
        elif isinstance(ev, E.NodeProposed) and ev.action == "sample":
            view["samples"][ev.node] = ev
        elif isinstance(ev, E.NodeProposed) and ev.action in ("answer", "sub_answer", "answer_retrieval"):
            view["answers"][ev.action] = ev
        elif isinstance(ev, E.ClustersFormed) and ev.mode == mode:
            view["clusters"] = ev
        elif isinstance(ev, E.EntropyMeasured) and ev.mode == mode:
            view["entropy"] = ev
        elif isinstance(ev, E.RetrievalRouted):
            view["routed"] = ev
        elif isinstance(ev, E.PassagesRetrieved):
            view["passages"].append(ev)
        elif isinstance(ev, E.FinalAnswer):
            view["final"] = ev
        elif isinstance(ev, E.RunFinished):
            view["finished"] = ev
    return view


def _short(text: str | None, n: int = 48) -> str:
    s = " ".join((text or "—").split())
    return s if len(s) <= n else s[:n - 1] + "…"


def bubble_figure(view: dict) -> go.Figure | None:
    c = view["clusters"]
    if c is None:
        return None
    k = len(c.clusters)
    pos = [(0.0, 0.0)] if k == 1 else [(math.cos(2 * math.pi * i / k), math.sin(2 * math.pi * i / k))
                                       for i in range(k)]
    cluster_of = {n: i for i, members in enumerate(c.clusters) for n in members}
    fig = go.Figure()
    drawn = set()
    for row in c.comparisons:
        i, j = cluster_of[row["a"]], cluster_of[row["b"]]
        if i == j or (min(i, j), max(i, j)) in drawn:
            continue
        drawn.add((min(i, j), max(i, j)))
        (x0, y0), (x1, y1) = pos[i], pos[j]
        label = f"→{SHORT[row['forward']]} ←{SHORT[row['backward']]}"
        fig.add_trace(go.Scatter(x=[x0, x1], y=[y0, y1], mode="lines", line=dict(color="#bbbbbb", width=1),
                                 hoverinfo="skip", showlegend=False))
        fig.add_trace(go.Scatter(
            x=[(x0 + x1) / 2], y=[(y0 + y1) / 2], mode="text", text=[label], textfont=dict(size=10),
            hovertext=[t("sample {a} → sample {b}: {verdict}", a=row["a"], b=row["b"], verdict=t(row["forward"]))
                       + "<br>" + t("sample {a} → sample {b}: {verdict}", a=row["b"], b=row["a"],
                                    verdict=t(row["backward"]))],
            hoverinfo="text", showlegend=False))
    samples = view["samples"]
    sizes = [24 + 90 * math.sqrt(m) for m in c.mass]
    texts = [f"{_short(samples[m[0]].answer, 28)}<br>{len(m)}× · p={p:.2f}" for m, p in zip(c.clusters, c.mass)]
    hover = ["<br>".join(html.escape(_short(samples[n].text, 80)) for n in m) for m in c.clusters]
    colours = ["#9e9e9e" if samples[m[0]].correct is None else "#2ca02c" if samples[m[0]].correct else "#d62728"
               for m in c.clusters]
    fig.add_trace(go.Scatter(x=[p[0] for p in pos], y=[p[1] for p in pos], mode="markers+text", text=texts,
                             textposition="bottom center", hovertext=hover, hoverinfo="text",
                             marker=dict(size=sizes, color=colours, opacity=0.55, line=dict(width=1, color="#333")),
                             showlegend=False))
    fig.update_layout(height=420, margin=dict(l=10, r=10, t=30, b=10),
                      title=dict(text=t("{k} cluster ({mode}, judge: {judge})" if k == 1 else
                                        "{k} clusters ({mode}, judge: {judge})", k=k, mode=t(c.mode), judge=c.judge),
                                 font=dict(size=13)),
                      xaxis=dict(visible=False, range=[-1.7, 1.7]), yaxis=dict(visible=False, range=[-1.7, 1.6]),
                      plot_bgcolor="white")
    return fig


def threshold_figure(view: dict, low: float, high: float, route_on: str) -> go.Figure | None:
    routed, ent = view["routed"], view["entropy"]
    value = getattr(ent, route_on) if ent is not None else None
    if routed is None and value is None:
        return None
    top = max(high + 0.5, (value or 0) + 0.3, 1.0)
    bottom = min(0.0, low - 0.5, (value or 0) - 0.3)
    fig = go.Figure()
    for name, a, b in (("none", bottom, low), ("single", low, high), ("multi", high, top)):
        if b > a:
            fig.add_shape(type="rect", x0=a, x1=b, y0=0, y1=1, fillcolor=BAND_COLOURS[name], line_width=0)
            fig.add_annotation(x=(a + b) / 2, y=0.5, text=DECISION_WORDS[name], showarrow=False, font=dict(size=11))
    if value is not None:
        fig.add_shape(type="line", x0=value, x1=value, y0=-0.15, y1=1.15, line=dict(color="black", width=3))
        fig.add_annotation(x=value, y=1.25, text=t("SE = {v}", v=f"{value:.3f}"), showarrow=False)
    decision = routed.decision if routed else "—"
    fig.update_layout(height=150, margin=dict(l=10, r=10, t=40, b=20), plot_bgcolor="white",
                      title=dict(text=t("Routing on {estimator}: {decision}", estimator=route_on,
                                        decision=t(DECISION_WORDS[decision]) if decision in DECISION_WORDS else decision)
                                 + (t(" (policy {policy})", policy=routed.policy)
                                    if routed and routed.policy != "adaptive" else ""),
                                 font=dict(size=13)),
                      xaxis=dict(range=[bottom, top], title=t("nats")), yaxis=dict(visible=False, range=[-0.2, 1.4]))
    return fig


def numbers_markdown(view: dict, route_on: str) -> str:
    ent, c = view["entropy"], view["clusters"]
    if ent is None:
        return t("*No samples: the fixed policies (always / never) skip semantic entropy.*") if view["routed"] else ""
    n = len(view["samples"])
    routes = " ← " + t("routes")
    rows = [f"| {t(ESTIMATOR_WORDS[e])}{routes if e == route_on else ''} | {getattr(ent, e):.3f} | "
            f"{entropy_note(e, n)} |" for e in ESTIMATORS]
    k = len(c.clusters)
    out = [t("**{n} samples, {clusters} ({mode})** — entropies in nats (max for {n} clusters: ln {n} = {max}); "
             "per-answer log-likelihood: {loglik} token logprob under the model's own distribution (the reference "
             "code: under the sampling distribution, after temperature and top-k 50; docs/semantic_entropy.md).",
             n=n, clusters=t("{k} cluster", k=k) if k == 1 else t("{k} clusters", k=k), mode=t(c.mode),
             max=f"{math.log(n):.3f}", loglik=t(ent.loglik)),
           "", t("| estimator | value | reads as |"), "| --- | --- | --- |", *rows]
    if c.judge_note:
        out += ["", t("Judge: {note}.", note=message(c.judge_note))]
    return "\n".join(out)


# the judge-call table's columns (English keys; `view_outputs` sends them in the request's language)
# (distinct names: a DataFrame with two columns of one name loses one)
COMPARISON_COLUMNS = ["sample", "its text", "vs cluster of", "that sample's text", "→ verdict", "← verdict",
                      "same meaning", "how"]


def comparison_rows(view: dict) -> list[list]:
    c = view["clusters"]
    if c is None:
        return []
    s = view["samples"]
    return [[r["a"], _short(s[r["a"]].text, 60), r["b"], _short(s[r["b"]].text, 60), r["forward"], r["backward"],
             t("yes") if r["equivalent"] else t("no"), r["source"]] for r in c.comparisons]


def retrieval_markdown(view: dict) -> str:
    out = []
    for step in view["passages"]:
        out.append(t("**Retrieval step {n}** — query: *{query}*", n=step.step,
                     query=html.escape(_short(step.query, 160))))
        out += [f"{i}. {html.escape(p['text'])} <small>({html.escape(p['title'])}, BM25 {p['score']:.2f})</small>"
                for i, p in enumerate(step.passages, start=1)] or [t("(no passage shares a word with the query)")]
        out.append("")
    answers = view["answers"]

    def line(label, node):
        if node is None:
            return f"- {label}: —"
        mark = "" if node.correct is None else (" ✓" if node.correct else " ✗")
        return f"- {label}: **{html.escape(_short(node.answer, 200))}**{mark}"
    if view["routed"] is not None:
        out.append(line(t("Answer without retrieval (greedy)"), answers.get("answer")))
        if "sub_answer" in answers:
            out.append(line(t("Intermediate answer (step 1 passages)"), answers["sub_answer"]))
        out.append(line(t("Answer with retrieval"), answers.get("answer_retrieval")))
    elif view["final"] is not None:
        f = view["final"]
        mark = "" if f.correct is None else (" ✓" if f.correct else " ✗")
        out.append(t("- Answer (first answer of the most probable cluster): **{answer}**",
                     answer=html.escape(_short(f.answer, 200))) + mark)
    return "\n".join(out)


def view_outputs(events: list[E.Event], mode: str, low: float, high: float, route_on: str):
    view = fold(events, mode)
    return (bubble_figure(view), numbers_markdown(view, route_on), threshold_figure(view, low, high, route_on),
            retrieval_markdown(view), table(COMPARISON_COLUMNS, comparison_rows(view)))


# ---- callbacks ------------------------------------------------------------------------------------

def run_se(loaded, store, question: str, picked: dict | None, model_choice: str, method: str, samples,
           temperature, judge: str, nli_model: str, mode: str, low, high, route_on: str, policy: str, passages,
           corpus: str, seed, control: RunControl | None = None, request: gr.Request = None):
    """Generator callback: yields (bubbles, numbers, bar, retrieval, comparisons, events, status).
    Stop (``control``) is polled between model calls and between generated tokens. The run is
    stored as the logged-in user's (app/auth.py)."""
    refuse_server_paths(store, request, **{"NLI model": nli_model, "Corpus folder": corpus})
    store = user_store(store, request)
    backend = backend_for(model_choice, loaded)
    seed = checked_seed(backend, question, seed)
    try:
        if method not in ("se", "sugar"):
            raise InputError(f"method must be se or sugar, got {method!r}")
        values = dict(samples=whole(samples, "samples", 2, 64), temperature=number(temperature, "temperature", 0, 100),
                      judge=judge, nli_model=nli_model or "", mode=mode)
        if method == "sugar":
            values.update(low=number(low, "low", -100, 100), high=number(high, "high", -100, 100), route_on=route_on,
                          policy=policy, passages=whole(passages, "passages", 1, 20),
                          corpus=corpus.strip() if isinstance(corpus, str) else "")
        cfg = METHODS[method].config(**values)
    except (ValueError, TypeError) as e:     # InputError is a ValueError
        raise gr.Error(message(e), print_exception=False) from None
    gold = gold_for(question, picked)
    control = control or RunControl()
    control.reset()
    rec = Recording(store, backend, method, question, gold, cfg, seed)
    for ev in rec.follow(METHODS[method].run(question.strip(), backend, config=cfg, seed=seed, gold=gold,
                                             should_stop=control.stopped)):
        if isinstance(ev, (E.ClustersFormed, E.RetrievalRouted, E.PassagesRetrieved)):
            yield (*view_outputs(rec.events, mode, low, high, route_on), rec.events,
                   t("running… session `{id}`", id=rec.sid))
    f = rec.finished
    note = (t(f.status if f else "done") + f" · {backend.info.name} · "
            + t("{n} generated tokens", n=f.generated_tokens if f else 0)
            + f" · {rec.wall_s:.1f} s · " + t("session `{id}`", id=rec.sid) + control.limit_note())
    yield (*view_outputs(rec.events, mode, low, high, route_on), rec.events, note)


def redraw(events, mode: str, low, high, route_on: str):
    """The strict/lenient toggle and the threshold settings: no model call."""
    if not events:
        return None, "", None, "", table(COMPARISON_COLUMNS, [])
    return view_outputs(events, mode, float(low), float(high), route_on)


def build_se_tab(backend, store, *, problems_path: str | Path | None = None,
                 run_limit_s: float | None = None) -> dict:
    path = Path(problems_path) if problems_path is not None else HELDOUT
    math_problems = load_problems(path, "medium")
    open_problems = velmora_problems()
    c: dict[str, Any] = {"picked": gr.State(new_pick_state("se")), "events": gr.State([]),
                         "control": gr.State(RunControl(run_limit_s))}
    gr.Markdown(t("Sample several answers, group them by meaning, and measure how spread the meanings are "
                  "(semantic entropy). SUGAR uses that number to decide whether to look facts up. "
                  "The Velmora questions are about a **fictional** town: no model knows the answers without "
                  "the shipped corpus."))
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=340):
            c["question"] = gr.Textbox(label=t("Question"), lines=3, elem_id="ts-se-question")
            with gr.Row():
                c["random_math"] = gr.Button(t("Random arithmetic problem"), size="sm")
                c["random_open"] = gr.Button(t("Random Velmora question"), size="sm")
            c["gold"] = gr.Markdown("")
            c["model"] = gr.Radio([(t("the loaded model (named in the header) — math"), "loaded"),
                                   (t("smollm2-135m — open questions"), OPEN_MODEL)], value="loaded", label=t("Model"))
            c["method"] = gr.Radio([(t("SUGAR: entropy decides retrieval"), "sugar"),
                                    (t("Semantic entropy only"), "se")], value="sugar", label=t("Method"))
            with gr.Accordion(t("Settings"), open=False):
                with gr.Row():
                    c["samples"] = Slider(2, 20, value=10, step=1, label=t("Samples N"))
                    c["temperature"] = Slider(0.1, 2, value=1.0, step=0.05, label=t("Temperature"))
                c["judge"] = gr.Radio([(t(JUDGE_WORDS[j]), j) for j in JUDGES], value="auto",
                                      label=t("Equivalence judge (auto: math for the reasoning model, NLI when a "
                                              "model is named, else the language model)"))
                c["nli_model"] = gr.Textbox(label=t("NLI model (hub id or folder, e.g. microsoft/deberta-large-mnli)"))
                c["route_on"] = gr.Dropdown([(t(ESTIMATOR_WORDS[e]), e) for e in ESTIMATORS], value="mc2023",
                                            label=t("Route on"))
                with gr.Row():
                    c["low"] = gr.Number(-1.0, label=t("low threshold (below: no retrieval)"))
                    c["high"] = gr.Number(0.5, label=t("high threshold (at or above: multi-step)"))
                c["policy"] = gr.Radio([(t(POLICY_WORDS[p]), p) for p in POLICIES], value="adaptive",
                                       label=t("Policy (always/never: baselines)"))
                with gr.Row():
                    c["passages"] = Slider(1, 10, value=3, step=1, label=t("Passages per retrieval"))
                    c["seed"] = gr.Number(0, precision=0, minimum=0, label=t("Seed"))
                c["corpus"] = gr.Textbox(label=t("Your corpus folder (.txt / .jsonl), searched with the shipped one"))
            with gr.Row():
                c["run"] = gr.Button(t("Run"), variant="primary", elem_id="ts-se-run")
                c["stop"] = gr.Button(t("Stop"), variant="stop", elem_id="ts-se-stop")
            c["limit_hint"] = limit_hint(run_limit_s, "se")
            c["status"] = gr.Markdown("", elem_id="ts-se-status")
        with gr.Column(scale=3, min_width=420):
            c["mode"] = gr.Radio([(t("strict (entail both ways — Nature paper default)"), "strict"),
                                  (t("lenient (no contradiction, not both neutral — official code's option)"),
                                   "lenient")], value="strict", label=t("Equivalence"))
            c["bubbles"] = gr.Plot(label=t("Clusters: area = probability mass; lines: judge verdicts "
                                           "→ / ← (E entailment, N neutral, C contradiction); ✓ green, ✗ red"),
                                   elem_id="ts-se-bubbles")
            c["numbers"] = gr.Markdown("", elem_id="ts-se-numbers")
            c["bar"] = gr.Plot(label=t("Thresholds (SUGAR's own values are not published: these are settings)"),
                               elem_id="ts-se-bar")
            c["retrieval"] = gr.Markdown("", elem_id="ts-se-retrieval")
    c["table"] = gr.Dataframe(per_request(lambda: table(COMPARISON_COLUMNS, [])), headers=COMPARISON_COLUMNS,
                              label=t("Every judge call"), wrap=True)
    for name, problems, tier in (("random_math", math_problems, "medium"), ("random_open", open_problems, "velmora")):
        c[name].click(functools.partial(pick_random_problem, problems, tier=tier), inputs=[c["picked"]],
                      outputs=[c["question"], c["gold"], c["picked"]], api_visibility="private")
    c["random_open"].click(lambda: OPEN_MODEL, outputs=[c["model"]], api_visibility="private")
    c["random_math"].click(lambda: "loaded", outputs=[c["model"]], api_visibility="private")
    c["question"].change(gold_markdown, inputs=[c["question"], c["picked"]], outputs=[c["gold"]],
                         api_visibility="private", show_progress="hidden", trigger_mode="always_last")
    outs = [c["bubbles"], c["numbers"], c["bar"], c["retrieval"], c["table"]]
    c["run_event"] = c["run"].click(
        with_request(run_se, backend, store),
        inputs=[c["question"], c["picked"], c["model"], c["method"], c["samples"], c["temperature"], c["judge"],
                c["nli_model"], c["mode"], c["low"], c["high"], c["route_on"], c["policy"], c["passages"],
                c["corpus"], c["seed"], c["control"]],
        outputs=[*outs, c["events"], c["status"]], api_name="run_se", concurrency_limit=1,
        concurrency_id=MODEL_QUEUE)
    c["run_event"].then(stop_settled, inputs=[c["control"], c["status"]], outputs=[c["status"]],
                        api_visibility="private")
    c["stop"].click(stop_search, inputs=[c["control"]], outputs=[c["status"]], api_name="stop_se",
                    concurrency_limit=None, queue=False)   # Stop works even when the queue is full
    c["mode"].change(redraw, inputs=[c["events"], c["mode"], c["low"], c["high"], c["route_on"]], outputs=outs,
                     api_name="se_redraw")
    for trigger in (c["low"].submit, c["high"].submit, c["route_on"].change):
        trigger(redraw, inputs=[c["events"], c["mode"], c["low"], c["high"], c["route_on"]], outputs=outs,
                api_visibility="private")
    return c
