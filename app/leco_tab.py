"""The LECO tab: which step looked weakest, why, what was cut, and what the rethink changed.

Everything is drawn from a LECO run's events (engine/search/leco.py), live or reopened from the
store: a heatmap of steps x (average, divergence, transition, confidence) for every round with
the cut step boxed; each round's steps with every token coloured by its probability (hover a
token for its alternatives); each rethink as a line diff against the round before; the final
answer against the gold answer. Rendering functions are pure (events in, figure/HTML out);
callbacks store every event as it arrives, as the Search tab does.

Not here: the scores (engine/scoring/leco.py), the loop (engine/search/leco.py).
"""

from __future__ import annotations

import difflib
import html
import time
from pathlib import Path
from typing import Any

import gradio as gr
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.auth import user_store, with_request
from app.controls import Slider
from app.figures import SCALE, TOKENS_CSS, legend_html, token_span
from app.i18n import message, per_request, t
from app.number_notes import leco_note
from app.generate_tab import MODEL_QUEUE, gold_for, limit_hint, new_pick_state, question_picker
from app.recording import Recording, RunControl, checked_seed, stop_search, stop_settled
from app.replay import final_markdown
from engine import events as E
from engine.demo_model.problems import TIERS, load_problems
from engine.evaluation.evaluate import HELDOUT
from engine.inputs import number, whole
from engine.models.base import TokenLogprob
from engine.scoring.leco import PROB_MODES
from engine.search import METHODS
from engine.store import StoreError
from engine.tree import Tree

REDRAW_S = 0.3
COLUMNS = ("average", "divergence", "transition", "confidence")
CUT_MARK = "\u2702"     # ✂
ROUNDS_PER_ROW = 4      # heatmap panels side by side at most (more wrap onto the next row)
NARROW_FROM = 4         # with this many panels a row, a round's title takes two lines
DEVIATIONS = ("Differences from the official LeCo code: rethinks are sampled (temperature, seeded), because "
              "the embedded model has one prompt format and a greedy rethink would repeat the cut step; "
              "step labels (\u201cStep k:\u201d) are left out of all three scores. See docs/leco.md.")   # a t() key
LECO_CSS = TOKENS_CSS + """
.ts-leco-round { margin: 8px 0 14px 0; }
.ts-leco-round h4 { margin: 4px 0; font-size: 14px; }
.ts-leco-step { display: flex; gap: 10px; align-items: baseline; padding: 2px 4px; border-radius: 6px; }
.ts-leco-step .ts-leco-meta { font-size: 12px; opacity: 0.8; min-width: 13ch; font-family: ui-monospace, monospace; }
.ts-leco-kept { opacity: 0.6; }
.ts-leco-cut { outline: 2px solid #b2182b; }
.ts-leco-badge { color: #b2182b; font-weight: 700; font-size: 12px; }
.ts-leco-diff { font-family: ui-monospace, monospace; font-size: 14px; white-space: pre-wrap; color: #111;
  background: #fff; border: 1px solid #ddd; border-radius: 8px; padding: 8px 12px; margin: 4px 0 10px 0; }
.ts-leco-diff del { background: #fddbc7; text-decoration: line-through; display: block; }
.ts-leco-diff ins { background: #d1e5f0; text-decoration: none; display: block; }
.ts-leco-diff span { display: block; }
"""


# ---- reading a run's events ---------------------------------------------------------------------

def rounds(events: list[E.Event]) -> list[dict]:
    """One dict per round: its ``scores`` (StepScores), the ``cut`` made on it (StepCut or None),
    the ``continuation`` that opened it (None for round 0) and its ``answer`` (RoundAnswer)."""
    out: dict[int, dict] = {}
    for ev in events:
        if isinstance(ev, (E.StepScores, E.StepCut, E.Continuation, E.RoundAnswer)):
            row = out.setdefault(ev.round, {"round": ev.round, "scores": None, "cut": None,
                                            "continuation": None, "answer": None})
            key = {E.StepScores: "scores", E.StepCut: "cut", E.Continuation: "continuation",
                   E.RoundAnswer: "answer"}[type(ev)]
            row[key] = ev
    return [out[k] for k in sorted(out) if out[k]["scores"] is not None]


MIN_SPREAD = 0.05       # differences smaller than this are not coloured as a difference


def _sureness(values: list[float | None], invert: bool) -> list[float | None]:
    """Colour of one column in one round: 1 = the most confident step, 0 = the least, scaled
    over the round's spread (at least MIN_SPREAD, so 0.9999 vs 0.9998 is not painted as a gap);
    divergence is inverted, since a larger one lowers confidence."""
    vals = [None if v is None else (-v if invert else v) for v in values]
    known = [v for v in vals if v is not None]
    if not known:
        return vals
    lo, hi = min(known), max(known)
    spread = max(hi - lo, MIN_SPREAD)
    return [None if v is None else 1.0 - (hi - v) / spread for v in vals]


def _round_title(r: dict, gold: str | None, narrow: bool = False) -> str:
    """"round 2: answer 47 ✓"; on two lines when the panels are ``narrow`` (many rounds a row)."""
    a = r["answer"]
    answer = "…" if a is None else (a.answer if a.answer is not None else t("none"))
    mark = "" if a is None or a.correct is None else (" ✓" if a.correct else " ✗")
    return (t("round {n}", n=r["round"]) + ("<br>" if narrow else ": ") + t("answer {answer}", answer=answer)
            + mark)


def panel_grid(n: int) -> tuple[int, int]:
    """(rows, columns) of the heatmap for n rounds: at most ROUNDS_PER_ROW side by side, so the
    round titles keep their width (four in one row overlapped)."""
    cols = min(n, ROUNDS_PER_ROW)
    return -(-n // cols), cols


def heatmap_figure(events: list[E.Event]) -> go.Figure | None:
    """Steps x (average, divergence, transition, confidence), one panel per round; the cut step
    is boxed and marked ✂. Cells show the values; colour ranks each column within its round."""
    rs = rounds(events)
    if not rs:
        return None
    tree = Tree.fold(events)
    gold = tree.run.gold if tree.run else None
    n_rows, n_cols = panel_grid(len(rs))
    narrow = n_cols >= NARROW_FROM
    fig = make_subplots(rows=n_rows, cols=n_cols, subplot_titles=[_round_title(r, gold, narrow) for r in rs],
                        horizontal_spacing=0.06 if n_cols > 1 else 0.0,
                        vertical_spacing=0.12 if n_rows > 1 else 0.0)
    fig.update_annotations(font=dict(size=12))        # the round titles (sized for ROUNDS_PER_ROW a row)
    colours = [[p, "#{:02x}{:02x}{:02x}".format(*rgb)] for p, rgb in SCALE]
    for i, r in enumerate(rs):
        row, col = divmod(i, n_cols)
        row, col = row + 1, col + 1
        steps = r["scores"].steps
        cut = r["cut"]
        z = list(zip(*[_sureness([s[c] for s in steps], c == "divergence") for c in COLUMNS])) if steps else []
        text = [[("—" if s[c] is None else f"{s[c]:.3f}") for c in COLUMNS] for s in steps]
        labels = []
        for s in steps:
            label = f"{s['index'] + 1}"
            if cut is not None and cut.node == s["node"]:
                label = f"{CUT_MARK} {label}"
            if not s["new"]:
                label += " " + t("kept")
            elif not s["candidate"]:
                label += " ·"
            labels.append(label)
        hover = [[t("step {i}: ", i=s["index"] + 1) + f"{html.escape(tree[s['node']].text.strip()[:60])}<br>{c} = {val}"
                  + ("" if s["candidate"] else "<br>" + t("not a candidate ({why})",
                                                          why=t(s["reason"] or "kept from an earlier round")))
                  for c, val in zip(COLUMNS, row)] for s, row in zip(steps, text)]
        fig.add_trace(go.Heatmap(
            z=[list(row) for row in z], x=list(range(len(COLUMNS))), y=list(range(len(steps))), text=text,
            texttemplate="%{text}", customdata=hover, hovertemplate="%{customdata}<extra></extra>",
            colorscale=colours, zmin=0, zmax=1, showscale=i == len(rs) - 1,
            colorbar=dict(title=t("rank in<br>round"), tickvals=[0, 1], ticktext=[t("least sure"), t("most sure")]),
            xgap=2, ygap=2), row=row, col=col)
        fig.update_xaxes(tickvals=list(range(len(COLUMNS))), ticktext=["avg", "div", "trans", "total"],
                         row=row, col=col)
        fig.update_yaxes(tickvals=list(range(len(steps))), ticktext=labels, autorange="reversed", row=row, col=col)
        if cut is not None and cut.node is not None:
            fig.add_shape(type="rect", x0=-0.5, x1=len(COLUMNS) - 0.5, y0=cut.index - 0.5, y1=cut.index + 0.5,
                          line=dict(color="#b2182b", width=3), row=row, col=col)
    height = 150 + n_rows * (36 * max(len(r["scores"].steps) for r in rs) + (40 if n_rows > 1 else 0))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=80, b=10),
                      title=dict(text=t("Step confidence = avg + trans − div &nbsp; ({mode} probabilities of the "
                                        "written token; {cut} = cut, · = may not be cut)<br><sup>official LECO scores "
                                        "the top-1 token's share instead: the same under greedy decoding, not in "
                                        "sampled rethinks (docs/leco.md)</sup>", mode=rs[0]["scores"].mode, cut=CUT_MARK),
                                 font=dict(size=13)))
    return fig


def steps_html(events: list[E.Event]) -> str:
    """Every round's steps, tokens coloured by probability; the cut step outlined, kept steps dimmed."""
    rs = rounds(events)
    if not rs:
        return (legend_html() + '<div class="ts-tokens"><span class="ts-empty">'
                + t("Run LECO or open a LECO session.") + "</span></div>")
    tree = Tree.fold(events)
    gold = tree.run.gold if tree.run else None
    parts = [legend_html()]
    for r in rs:
        cut = r["cut"]
        parts.append(f'<div class="ts-leco-round"><h4>{html.escape(_round_title(r, gold))}</h4><div class="ts-tokens">')
        for s in r["scores"].steps:
            node = tree[s["node"]]
            joined = "".join(tok[1] for tok in node.tokens)
            written = node.text[:len(node.text) - len(joined)] if node.text.endswith(joined) else ""
            spans = (f'<span style="opacity:.6" title="{html.escape(t("written by the search, not generated"))}">'
                     f'{html.escape(written)}</span>'
                     if written else "")
            spans += "".join(token_span(TokenLogprob.from_json(tok)) for tok in node.tokens) or html.escape(node.text)
            classes = ["ts-leco-step"]
            badge = ""
            if not s["new"]:
                classes.append("ts-leco-kept")
            if cut is not None and cut.node == s["node"]:
                classes.append("ts-leco-cut")
                badge = f' <span class="ts-leco-badge">{CUT_MARK} {t("cut: regenerated from here")}</span>'
            conf = "—" if s["confidence"] is None else f"{s['confidence']:.3f}"
            meta = t("step {i}", i=s["index"] + 1) + f" · {conf}" + ("" if s["candidate"] or not s["new"] else " ·")
            parts.append(f'<div class="{" ".join(classes)}"><span class="ts-leco-meta">{meta}</span>'
                         f'<span>{spans}{badge}</span></div>')
        parts.append("</div></div>")
    return "".join(parts)


def _lines(tree: Tree, scores: E.StepScores) -> list[str]:
    return [tree[n].text.rstrip("\n") for n in scores.path[1:]]


def diff_html(events: list[E.Event]) -> str:
    """Each rethink's solution as a line diff against the round before (− removed, + added)."""
    rs = rounds(events)
    if len(rs) < 2:
        return "<p><i>" + t("The rethinks appear here as diffs once a round has been regenerated.") + "</i></p>"
    tree = Tree.fold(events)
    parts = []
    for prev, cur in zip(rs, rs[1:]):
        rows = []
        for line in difflib.ndiff(_lines(tree, prev["scores"]), _lines(tree, cur["scores"])):
            tag, text = line[:2], html.escape(line[2:])
            if tag == "- ":
                rows.append(f"<del>− {text}</del>")
            elif tag == "+ ":
                rows.append(f"<ins>+ {text}</ins>")
            elif tag == "  ":
                rows.append(f"<span>&nbsp; {text}</span>")
        same = "" if any(r.startswith(("<del", "<ins")) for r in rows) else t(" (no change)")
        parts.append("<h4>" + t("round {a} → round {b}", a=prev["round"], b=cur["round"]) + f"{same}</h4>"
                     f'<div class="ts-leco-diff">{"".join(rows)}</div>')
    return "".join(parts)


def summary_markdown(events: list[E.Event]) -> str:
    """The final answer against gold, and one line per round."""
    tree = Tree.fold(events)
    rs = rounds(events)
    lines = [final_markdown(tree)] if tree.final else [t("Running…") if rs else ""]
    if rs:
        table = [t("| round | answer | cut at | stop |"), "|---|---|---|---|"]
        for r in rs:
            a, cut = r["answer"], r["cut"]
            ans = "…" if a is None else f"{a.answer}" + ("" if a.correct is None else (" ✓" if a.correct else " ✗"))
            where = "—" if cut is None else (t("whole solution (no candidate)") if cut.node is None
                                             else t("step {i}", i=cut.index + 1))
            stop = "" if a is None or not a.stop else t(a.reason)
            table.append(f"| {r['round']} | {ans} | {where} | {stop} |")
        lines.append("\n".join(table))
    if rs:
        lines.append(leco_note())
    lines.append(f"<small>{t(DEVIATIONS)}</small>")
    return "\n\n".join(lines)


def view_outputs(events: list[E.Event]):
    """(heatmap, steps HTML, diff HTML, summary markdown) for a run's events."""
    return heatmap_figure(events), steps_html(events), diff_html(events), summary_markdown(events)


# ---- callbacks ---------------------------------------------------------------------------------

def make_config(max_rounds, lowest, token_probs, temperature):
    cls = METHODS["leco"].config
    try:
        return cls(max_rounds=whole(max_rounds, "max_rounds", 1, 10), lowest=whole(lowest, "lowest", 1, 16),
                   token_probs=token_probs, temperature=number(temperature, "temperature", 0, 100))
    except (ValueError, TypeError) as e:
        raise gr.Error(message(e), print_exception=False) from None


def run_leco(backend, store, question: str, picked: dict | None, max_rounds, lowest, token_probs, temperature,
             seed, control: RunControl, request: gr.Request = None):
    """Generator callback: yields (heatmap, steps, diff, summary, progress, view) as the run goes.
    The run is stored as the logged-in user's (app/auth.py)."""
    store = user_store(store, request)
    seed = checked_seed(backend, question, seed)
    cfg = make_config(max_rounds, lowest, token_probs, temperature)
    gold = gold_for(question, picked)
    control.reset()
    rec = Recording(store, backend, "leco", question, gold, cfg, seed)
    last = 0.0
    for ev in rec.follow(METHODS["leco"].run(question.strip(), backend, config=cfg, seed=seed, gold=gold,
                                             should_stop=control.stopped)):
        now = time.perf_counter()
        if isinstance(ev, E.RoundAnswer) and now - last >= REDRAW_S:
            last = now
            yield (*view_outputs(rec.events), t("LECO: round {n} answered {answer}…", n=ev.round, answer=ev.answer),
                   {"session_id": rec.sid, "events": rec.events})
    status = rec.finished.status if rec.finished else "done"
    yield (*view_outputs(rec.events), t("LECO {status} · session `{id}`", status=t(status), id=rec.sid)
           + control.limit_note(),
           {"session_id": rec.sid, "events": rec.events})


def open_leco(store, session_id: str, request: gr.Request = None):
    """A stored LECO session back into the view (one the logged-in user may see)."""
    store = user_store(store, request)
    sid = (session_id or "").strip()
    if not sid:
        raise gr.Error(t("type a session id (see the Sessions tab)"), print_exception=False)
    try:
        full = store.resolve(sid)
        meta, events = store.session(full), store.events(full)
    except StoreError as e:
        raise gr.Error(message(e), print_exception=False) from None
    if meta["method"] != "leco":
        raise gr.Error(t("session {id} is a {method} run, not LECO: open it in the Search tab", id=full,
                         method=meta["method"]), print_exception=False)
    return (*view_outputs(events), t("Opened `{id}` ({n} events, {status})", id=full, n=len(events),
                                     status=t(meta["status"])),
            {"session_id": full, "events": events})


def build_leco_tab(backend, store, *, problems_path: str | Path | None = None,
                   run_limit_s: float | None = None) -> dict:
    path = Path(problems_path) if problems_path is not None else HELDOUT
    problems = {tier: load_problems(path, tier) for tier in TIERS}
    defaults = METHODS["leco"].config()
    c: dict[str, Any] = {"picked": gr.State(new_pick_state("leco")), "control": gr.State(RunControl(run_limit_s)),
                         "view": gr.State(None)}
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=340):
            question_picker(c, problems, elem_prefix="ts-leco")
            with gr.Accordion(t("Settings"), open=False):
                with gr.Row():
                    c["max_rounds"] = Slider(1, 10, value=defaults.max_rounds, step=1, label=t("Max rethink rounds"))
                    c["lowest"] = Slider(1, 8, value=defaults.lowest, step=1,
                                         label=t("Cut at the earliest of the N least confident steps"))
                c["token_probs"] = gr.Radio(list(PROB_MODES), value=defaults.token_probs,
                                            label=t("Token probabilities: top5 (official: softmax over the 5 "
                                                    "largest logits) or full vocabulary"))
                with gr.Row():
                    c["temperature"] = Slider(0, 2, value=defaults.temperature, step=0.05,
                                              label=t("Rethink temperature (round 0 is greedy)"))
                    c["seed"] = gr.Number(0, precision=0, minimum=0, label=t("Seed"))
            with gr.Row():
                c["run"] = gr.Button(t("Run LECO"), variant="primary", elem_id="ts-leco-run")
                c["stop"] = gr.Button(t("Stop"), variant="stop", elem_id="ts-leco-stop")
            c["limit_hint"] = limit_hint(run_limit_s, "leco")
            c["progress"] = gr.Markdown("", elem_id="ts-leco-progress")
            c["summary"] = gr.Markdown("", elem_id="ts-leco-summary")
            with gr.Row():
                c["session_id"] = gr.Textbox(label=t("Open a stored LECO session (id or prefix)"), scale=3)
                c["open"] = gr.Button(t("Open"), size="sm", scale=1)
        with gr.Column(scale=3, min_width=420):
            c["heatmap"] = gr.Plot(label=t("Step scores per round"), elem_id="ts-leco-heatmap")
            # callable values: the empty views' words are made at each page load, in its language
            c["steps"] = gr.HTML(per_request(lambda: steps_html([])), css_template=LECO_CSS, elem_id="ts-leco-steps")
            c["diff"] = gr.HTML(per_request(lambda: diff_html([])), css_template=LECO_CSS, elem_id="ts-leco-diff")

    outputs = [c["heatmap"], c["steps"], c["diff"], c["summary"], c["progress"], c["view"]]
    c["run_event"] = c["run"].click(
        with_request(run_leco, backend, store),
        inputs=[c["question"], c["picked"], c["max_rounds"], c["lowest"], c["token_probs"], c["temperature"],
                c["seed"], c["control"]],
        outputs=outputs, api_name="run_leco", concurrency_limit=1, concurrency_id=MODEL_QUEUE)
    c["run_event"].then(stop_settled, inputs=[c["control"], c["progress"]], outputs=[c["progress"]],
                        api_visibility="private")
    c["stop"].click(stop_search, inputs=[c["control"]], outputs=[c["progress"]], api_name="stop_leco",
                    concurrency_limit=None, queue=False)   # Stop works even when the queue is full
    c["open"].click(with_request(open_leco, store), inputs=[c["session_id"]], outputs=outputs,
                    api_name="open_leco")
    return c
