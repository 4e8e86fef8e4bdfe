"""A stored run's own views, for an export: what the app shows of the run besides the tree,
as static HTML blocks and plotly figures, in the language `app.i18n` is using.

- every run with a tree (the searches, rStar, Generate): the answer and how it was chosen,
  and what Q and UCT's explore term mean (app/number_notes.py);
- rStar: the discriminator's mutual consistency as a figure (completions that reach each
  candidate's answer against the number needed), the candidates table and each candidate's
  cuts and completions (app/rstar_view.py);
- LECO: the per-round heatmap with the cut, the rounds table with what avg/div/trans mean,
  every step's tokens, each rethink as a diff (app/leco_tab.py);
- semantic entropy and SUGAR: the cluster bubbles (strict, and lenient), the four entropies
  with how to read each, SUGAR's routing band and passages, every judge call (app/se_tab.py);
- Generate: the tokens coloured by probability, and min-p's pools over the generation
  (`pools_figure`).

`views` gives the sections engine/export_html.py lays out below the tree; `figures` gives
every figure a run's views draw (the tree first where the app shows one), named for the
SVG/PNG files (app/export_figures.py). Both fold the same events through the same functions
the tabs use, so an export shows what the app showed at the end of the run.

Not here: the page (engine/export_html.py), rendering images (engine/export_images.py),
writing files (app/export_figures.py).
"""

from __future__ import annotations

import html
import json
import math

import plotly.graph_objects as go
from markdown_it import MarkdownIt
from plotly.subplots import make_subplots

from app import leco_tab, rstar_view, se_tab
from app.export_words import say
from app.figures import TOKENS_CSS, generation_html
from app.i18n import t
from app.mcts_tab import figure_for
from app.number_notes import explore_note, min_p_note, q_note
from app.replay import final_markdown
from app.restore import TAB_OF_METHOD
from app.sampling_figures import DRAWN, VIEW_COLOURS, visible
from engine import events as E
from engine.models.base import Generation, TokenLogprob
from engine.sampling import ORDERS
from engine.tree import Tree

SLIDE_HEIGHT = 700       # px of an exported tree figure (the app's is 560, for a browser pane)
GENERATE = "generate"    # app/generate_record.py's method name
_MD = MarkdownIt("commonmark", {"html": True}).enable("table")   # the tabs' Markdown, tables included


def md(text: str) -> str:
    """The tabs' Markdown (with their inline HTML, model text already escaped by its maker) as HTML."""
    return _MD.render(text or "")


def _fig(name: str, fig) -> dict | None:
    return None if fig is None else {"figure": name, "fig": fig}


def _html(text: str) -> dict | None:
    return {"html": text} if text and text.strip() else None


def _section(key: str, title: str, *blocks, css: str = "") -> dict:
    return {"key": key, "title": title, "blocks": [b for b in blocks if b], "css": css}


def _method(events: list[E.Event]) -> str:
    run = next((ev for ev in events if isinstance(ev, E.RunStarted)), None)
    return run.method if run else ""


# ---- per method ----------------------------------------------------------------------------------

def _search_sections(tree: Tree, events: list[E.Event]) -> list[dict]:
    reward = tree.run.config.get("reward") if tree.run else None
    notes = [q_note(reward)]
    if any(isinstance(ev, E.Selected) for ev in events):
        notes.append(explore_note())
    answer = final_markdown(tree)
    if rstar_view.is_rstar(tree) and tree.candidates:
        answer += "\n\n" + rstar_view.discriminator_progress(tree)
    return [_section("answer", say("The answer, and what the numbers mean"), _html(md(answer)),
                     _html(md("\n\n".join(notes))))]


def consistency_figure(tree: Tree) -> go.Figure | None:
    """rStar's mutual consistency: per judged candidate, how many of its cut-and-completed
    prefixes reach its answer (green: consistent, red: not), beside how many were made and the
    number needed."""
    judged = [(c, tree.discriminator[c["candidate"]]["verdict"]) for c in (tree.candidates.candidates
                                                                           if tree.candidates else [])
              if tree.discriminator.get(c["candidate"], {}).get("verdict") is not None]
    if not judged:
        return None
    names = [say("candidate {cand} → {answer}", cand=c["candidate"], answer=c["answer"]) for c, _ in judged]
    fig = go.Figure()
    fig.add_trace(go.Bar(y=names, x=[v.of for _, v in judged], orientation="h", name=say("completions made"),
                         marker_color="#e0e0e0"))
    fig.add_trace(go.Bar(y=names, x=[v.agree for _, v in judged], orientation="h",
                         name=say("completions that reach the candidate's answer"),
                         marker_color=["#1a9850" if v.consistent else "#d73027" for _, v in judged],
                         text=[t("mutually consistent") if v.consistent else t("not consistent") for _, v in judged],
                         textposition="inside"))
    fig.add_trace(go.Scatter(y=names, x=[v.needed for _, v in judged], mode="markers", name=say("needed"),
                             marker=dict(symbol="line-ns-open", size=22, color="#222", line=dict(width=3))))
    fig.update_layout(barmode="overlay", height=160 + 48 * len(judged), template="plotly_white",
                      margin=dict(l=10, r=20, t=60, b=40), legend=dict(orientation="h", y=-0.2),
                      title=dict(text=say("Mutual consistency ({rule}): the discriminator completes each cut "
                                          "candidate; consistent when enough completions reach its answer",
                                          rule=judged[0][1].rule), font=dict(size=13)))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text=say("completions"), dtick=1, rangemode="tozero")
    return fig


def _rstar_sections(tree: Tree) -> list[dict]:
    if tree.candidates is None:
        return []
    return [_section("rstar", say("rStar's discriminator: mutual consistency"),
                     _fig("rstar-consistency", consistency_figure(tree)),
                     _html(md(rstar_view.discriminator_markdown(tree))))]


def _leco_sections(events: list[E.Event]) -> list[dict]:
    fig, steps, diff, summary = leco_tab.view_outputs(events)
    return [_section("leco", say("LECO: step confidence, the cut and the rethink"), _fig("leco-heatmap", fig),
                     _html(md(summary)), _html(steps), _html(diff), css=leco_tab.LECO_CSS)]


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


JUDGE_HEADERS = ("sample", "text", "vs cluster of", "text", "→ verdict", "← verdict", "same meaning", "how")


def _se_sections(events: list[E.Event]) -> list[dict]:
    run = next((ev for ev in events if isinstance(ev, E.RunStarted)), None)
    cfg = run.config if run else {}
    route_on = cfg.get("route_on", "mc2023")
    strict, lenient = se_tab.fold(events, "strict"), se_tab.fold(events, "lenient")
    blocks = [_fig("se-clusters", se_tab.bubble_figure(strict)), _html(md(se_tab.numbers_markdown(strict, route_on)))]
    if strict["routed"] is not None:
        blocks.append(_fig("se-routing", se_tab.threshold_figure(strict, cfg.get("low", -1.0), cfg.get("high", 0.5),
                                                                 route_on)))
    blocks.append(_html(md(se_tab.retrieval_markdown(strict))))
    # the judge's verdicts in the reader's language, as the bubbles' hover says them (the app's table shows them raw)
    rows = [[*r[:4], t(r[4]), t(r[5]), *r[6:]] for r in se_tab.comparison_rows(strict)]
    if rows:
        blocks.append(_html(f"<h3>{html.escape(t('Every judge call'))}</h3>"
                            + _table([say(h) for h in JUDGE_HEADERS], rows)))
    out = [_section("se", say("Semantic entropy: answers clustered by meaning"), *blocks)]
    if lenient["clusters"] is not None:
        out.append(_section("se-lenient", say("The same samples clustered leniently"),
                            _fig("se-clusters-lenient", se_tab.bubble_figure(lenient)),
                            _html(md(se_tab.numbers_markdown(lenient, route_on)))))
    return out


# ---- a generation's min-p pools ------------------------------------------------------------------

def pool_cutoff(cfg: dict) -> float | None:
    """min-p's cut as a share of the top token's own probability (temperature 1), or None when
    min-p is off or decoding is greedy. min-p keeps x when p_T(x) >= min_p * p_T(max); when
    temperature T comes first (transformers, vLLM) that is p(x) >= p(max) * min_p ** T, when it
    comes last (llama.cpp) p(x) >= p(max) * min_p."""
    min_p, temp = float(cfg.get("min_p") or 0.0), float(cfg.get("temperature") or 0.0)
    if min_p <= 0 or temp <= 0:
        return None
    order = ORDERS.get(cfg.get("order", "transformers"), ORDERS["transformers"])
    return min_p ** temp if order.index("temperature") < order.index("min_p") else min_p


def pools_figure(tokens: list[TokenLogprob], cfg: dict) -> go.Figure | None:
    """Per generated token: the top token's and the drawn token's probability (the model's own,
    T = 1) with min-p's cut, and how many of the stored alternatives min-p keeps. A run stores
    each token's top 5 alternatives, so a pool of 5 reads "5 or more"."""
    if not tokens:
        return None
    cut = pool_cutoff(cfg)
    xs = list(range(len(tokens)))
    p_max = [math.exp(tok.top[0][1]) if tok.top else math.exp(tok.logprob) for tok in tokens]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.6, 0.4],
                        subplot_titles=(say("p_max, the drawn token's p and min-p's cut (model probabilities, T = 1)"),
                                        say("tokens min-p keeps, of the {n} stored alternatives", n=5)))
    words = [visible(tok.token) for tok in tokens]
    fig.add_trace(go.Scatter(x=xs, y=p_max, mode="lines", name="p_max", line=dict(color="#CC79A7"),
                             customdata=words, hovertemplate="%{customdata}: p_max %{y:.3f}<extra></extra>"),
                  row=1, col=1)
    fig.add_trace(go.Scatter(x=xs, y=[math.exp(tok.logprob) for tok in tokens], mode="markers",
                             name=t("drawn token's p"), marker=dict(color=DRAWN, size=6, symbol="x"),
                             customdata=words, hovertemplate="%{customdata}: p %{y:.3f}<extra></extra>"),
                  row=1, col=1)
    if cut is not None:
        fig.add_trace(go.Scatter(x=xs, y=[p * cut for p in p_max], mode="lines", name=say("min-p's cut"),
                                 line=dict(color=VIEW_COLOURS["min_p"], dash="dash")), row=1, col=1)
        sizes = [sum(1 for _, lp in tok.top if math.exp(lp) >= pm * cut) or 1 for tok, pm in zip(tokens, p_max)]
        fig.add_trace(go.Bar(x=xs, y=sizes, name=say("min-p pool"), marker_color=VIEW_COLOURS["min_p"],
                             showlegend=False), row=2, col=1)
    fig.update_yaxes(range=[0, 1.05], row=1, col=1)
    fig.update_yaxes(range=[0, 5.5], dtick=1, row=2, col=1)
    fig.update_xaxes(title_text=t("position (generated token)"), row=2, col=1)
    title = (say("min-p {min_p} at T = {temp} ({order} order)", min_p=cfg.get("min_p"), temp=cfg.get("temperature"),
                 order=cfg.get("order", "transformers")) if cut is not None
             else say("min-p is off in this run (or decoding is greedy): no pool is cut"))
    fig.update_layout(height=520, template="plotly_white", margin=dict(l=55, r=20, t=80, b=50),
                      legend=dict(orientation="h", y=-0.15), title=dict(text=title, x=0.01, font=dict(size=14)))
    return fig


def _generate_sections(tree: Tree) -> list[dict]:
    node = next((n for n in tree.nodes if n.tokens), None)
    if node is None:
        return []
    tokens = [TokenLogprob.from_json(tok) for tok in node.tokens]
    cfg = tree.run.config if tree.run else {}
    gen = Generation(node.text, tuple(tokens), "length", None)   # the stop reason is not stored: no token is marked
    cut = pool_cutoff(cfg)
    note = min_p_note(cut, math.exp(tokens[0].top[0][1]) if tokens[0].top else 1.0) if cut is not None else ""
    return [_section("generate", say("The generation: tokens and min-p's pools"), _html(generation_html(gen)),
                     _fig("sampling-pools", pools_figure(tokens, cfg)), _html(md(note)), css=TOKENS_CSS)]


# ---- what an export takes -----------------------------------------------------------------------

def parts(events: list[E.Event]) -> list[dict]:
    """The run's sections, figures still plotly Figures (``block["fig"]``)."""
    method = _method(events)
    if TAB_OF_METHOD.get(method) == "leco":
        return _leco_sections(events)
    if TAB_OF_METHOD.get(method) == "se":
        return _se_sections(events)
    tree = Tree.fold(events)
    if not len(tree):
        return []
    out = _search_sections(tree, events)
    if rstar_view.is_rstar(tree):
        out += _rstar_sections(tree)
    if method == GENERATE:
        out += _generate_sections(tree)
    return out


def views(events: list[E.Event]) -> list[dict]:
    """The sections for engine/export_html.py: figures as plotly's JSON, without the tree (the page draws it)."""
    out = []
    for section in parts(events):
        blocks = [{"figure": b["figure"], "data": json.loads(b["fig"].to_json())} if "fig" in b else b
                  for b in section["blocks"]]
        out.append({**section, "blocks": blocks})
    return out


def figures(events: list[E.Event]) -> list[tuple[str, go.Figure]]:
    """Every figure of the run's views, named: the tree first where the app shows one (every
    method but LECO and semantic entropy, whose tabs have none)."""
    out = []
    if TAB_OF_METHOD.get(_method(events)) is None:
        tree = Tree.fold(events)
        if len(tree):
            fig = figure_for(tree)
            fig.update_layout(height=SLIDE_HEIGHT)
            out.append(("tree", fig))
    out += [(b["figure"], b["fig"]) for s in parts(events) for b in s["blocks"] if "fig" in b]
    return out
