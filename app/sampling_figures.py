"""Plotly figures of the Sampling lab: one position's pools, the whole generation, the engine
orders side by side, and the temperature sweep.

Pure functions from engine records (engine/sampling_lab.py, engine/evaluation/sweep.py) to figures, so
they are tested without a browser. Token texts are shown with whitespace made visible
(``␣`` for a space, ``↵`` for a newline) and placed at numbered x positions, so two tokens
that print alike never merge into one bar.

Not here: layout and callbacks (app/sampling_tab.py).
"""

from __future__ import annotations

from typing import Callable, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app import i18n
from engine.sampling_lab import VIEW_LABELS, VIEWS, LabConfig, OrderResult, PositionView

# Okabe-Ito colours (readable with colour blindness)
VIEW_COLOURS = {"min_p": "#0072B2", "top_p": "#E69F00", "top_k": "#009E73"}
OUT_OF_POOL = "#c9c9c9"
DRAWN = "#D55E00"
ORDER_COLOURS = ["#0072B2", "#56B4E9", "#E69F00", "#009E73", "#CC79A7", "#D55E00"]
SWEEP_COLOURS = {"min_p=0.05": "#0072B2", "min_p=0.1": "#56B4E9", "top_p=0.9": "#E69F00",
                 "top_p=0.95": "#F0E442", "plain": "#555555"}
HEIGHT = 420


def visible(text: str) -> str:
    """A token's text for an axis label: spaces and newlines made visible, at most 12 chars."""
    shown = text.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥").replace("\r", "")
    shown = shown or "∅"
    return shown if len(shown) <= 12 else shown[:11] + "…"


def _log_ticks(top: float) -> list[int]:
    """1, 2, 5, 10, 20, 50, ... up to past ``top``: readable ticks for a log axis of pool sizes."""
    ticks, base = [], 1
    while not ticks or ticks[-1] < top:
        ticks += [base, 2 * base, 5 * base]
        base *= 10
    return ticks


def _t(text: str, **fields) -> str:
    """`app.i18n.t` as finished text always: a figure may be drawn while the page is laid out
    (the sweep plot), where `t` would give a Gradio marker that plotly refuses."""
    return i18n.t(text, lang=i18n.current_lang(), **fields)


def _layout(fig: go.Figure, title: str, height: int = HEIGHT) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0.01, font=dict(size=15)), height=height, template="plotly_white",
                      margin=dict(l=55, r=20, t=60, b=60), legend=dict(orientation="h", y=-0.18, x=0))
    return fig


def empty_figure(message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(size=14, color="#666"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, "", height=260)


def _pool_end(view: PositionView, name: str) -> int | None:
    """Index (in ``view.top``) of the last token kept by view ``name``, when it is shown."""
    kept = [i for i, r in enumerate(view.top) if name in r.kept]
    return kept[-1] if kept else None


def pool_figure(view: PositionView, cfg: LabConfig) -> go.Figure:
    """One position: bars of the top tokens' probabilities after temperature (min-p's pool in
    blue), the min-p threshold line, where the top-p and top-k pools end, the drawn token
    outlined; at the right, the three pool sizes side by side."""
    fig = make_subplots(rows=1, cols=2, column_widths=[0.78, 0.22], horizontal_spacing=0.08,
                        subplot_titles=("", _t("pool size (tokens kept)")))
    xs = list(range(len(view.top)))
    colours = [VIEW_COLOURS["min_p"] if "min_p" in r.kept else OUT_OF_POOL for r in view.top]
    outline = [DRAWN if r.token_id == view.drawn_id else "rgba(0,0,0,0)" for r in view.top]
    fig.add_trace(go.Bar(
        x=xs, y=[r.p_t for r in view.top], marker=dict(color=colours, line=dict(color=outline, width=3)),
        name=_t("in the min-p {p} pool (blue)", p=f"{cfg.min_p:g}"),
        customdata=[[r.text.replace("\n", "\\n"), r.p, ", ".join(VIEW_LABELS[v] for v in r.kept) or "none"]
                    for r in view.top],
        hovertemplate="'%{customdata[0]}'<br>p = %{y:.4f} at T · %{customdata[1]:.4f} model<br>"
                      "kept by: %{customdata[2]}<extra></extra>"), row=1, col=1)
    fig.add_hline(y=view.threshold, line=dict(color=VIEW_COLOURS["min_p"], dash="dash", width=1.5), row=1, col=1,
                  annotation_text=_t("min-p threshold {p} × {pmax} = {thr}", p=f"{cfg.min_p:g}", pmax=f"{view.p_max:.3f}",
                                    thr=f"{view.threshold:.4f}"),
                  annotation_position="top right", annotation_font_size=11)
    for name, label in (("top_p", f"top-p {cfg.top_p:g}"), ("top_k", f"top-k {cfg.top_k}")):
        end = _pool_end(view, name)
        if end is not None and end < len(view.top) - 1:
            fig.add_vline(x=end + 0.5, line=dict(color=VIEW_COLOURS[name], dash="dot", width=2), row=1, col=1)
            fig.add_annotation(x=end + 0.5, y=1.0, yref="y domain", xref="x", text=_t("{label} ends", label=label),
                               showarrow=False, xanchor="left", yanchor="top", font=dict(size=11, color=VIEW_COLOURS[name]))
    drawn_at = next((i for i, r in enumerate(view.top) if r.token_id == view.drawn_id), None)
    if drawn_at is not None:
        fig.add_annotation(x=drawn_at, y=view.top[drawn_at].p_t, text=_t("drawn"), showarrow=True, arrowhead=2,
                           ax=0, ay=-28, font=dict(color=DRAWN, size=12), row=1, col=1)
    fig.update_xaxes(tickvals=xs, ticktext=[visible(r.text) for r in view.top], tickangle=-45, row=1, col=1)
    fig.update_yaxes(title_text=_t("probability at T={temp}", temp=f"{cfg.temperature:g}"), rangemode="tozero",
                     row=1, col=1)
    fig.add_trace(go.Bar(
        x=[VIEW_LABELS[v] for v in VIEWS], y=[view.pool[v] for v in VIEWS], showlegend=False,
        marker_color=[VIEW_COLOURS[v] for v in VIEWS], text=[str(view.pool[v]) for v in VIEWS],
        textposition="outside", cliponaxis=False, hovertemplate="%{x}: %{y} tokens<extra></extra>"), row=1, col=2)
    fig.update_yaxes(type="log", tickvals=_log_ticks(max(view.pool.values())), row=1, col=2)
    drawn_note = "" if drawn_at is not None else _t(" — drawn {token} (rank {rank}) not shown",
                                                   token=f"'{visible(view.drawn)}'", rank=view.drawn_rank)
    return _layout(fig, _t("Position {pos}: p_max {pmax}, entropy {ent} nats", pos=view.position,
                          pmax=f"{view.p_max:.3f}", ent=f"{view.entropy:.2f}") + drawn_note)


def generation_figure(positions: Sequence[PositionView], cfg: LabConfig, at: int | None = None) -> go.Figure:
    """The whole generation: pool size of each view, entropy, and p_max (with the drawn token's
    probability) per position, at the same temperature; a line marks position ``at``."""
    if not positions:
        return empty_figure(_t("Generate to see pool sizes, entropy and p_max per position."))
    xs = [p.position for p in positions]
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06, row_heights=[0.45, 0.27, 0.28],
                        subplot_titles=(_t("pool size at T={temp} (log scale)", temp=f"{cfg.temperature:g}"), _t("entropy (nats)"),
                                        "p_max and the drawn token's p"))
    params = {"min_p": f"min-p {cfg.min_p:g}", "top_p": f"top-p {cfg.top_p:g}", "top_k": f"top-k {cfg.top_k}"}
    for v in VIEWS:
        fig.add_trace(go.Scatter(x=xs, y=[p.pool[v] for p in positions], mode="lines+markers", name=params[v],
                                 line=dict(color=VIEW_COLOURS[v], width=2), marker=dict(size=4)), row=1, col=1)
    fig.add_trace(go.Scatter(x=xs, y=[p.entropy for p in positions], mode="lines", name=_t("entropy"),
                             line=dict(color="#444")), row=2, col=1)
    fig.add_trace(go.Scatter(x=xs, y=[p.p_max for p in positions], mode="lines", name="p_max",
                             line=dict(color="#CC79A7")), row=3, col=1)
    fig.add_trace(go.Scatter(x=xs, y=[p.drawn_p_t for p in positions], mode="markers", name=_t("drawn token's p"),
                             marker=dict(color=DRAWN, size=5, symbol="x")), row=3, col=1)
    fig.update_yaxes(type="log", tickvals=_log_ticks(max(max(p.pool.values()) for p in positions)), row=1, col=1)
    fig.update_yaxes(range=[0, 1.05], row=3, col=1)
    fig.update_xaxes(title_text=_t("position (generated token)"), row=3, col=1)
    if at is not None:
        for row in (1, 2, 3):
            fig.add_vline(x=at, line=dict(color="#999", dash="dot"), row=row, col=1)
    return _layout(fig, _t("Over the whole generation"), height=560)


def orders_figure(results: Sequence[OrderResult], logits_top: Sequence[tuple[int, str, float]]) -> go.Figure:
    """The final sampling probability of the top tokens under each order, grouped per token.
    ``logits_top``: ``(token id, text, model probability)`` of the tokens to show, most likely first."""
    if not results:
        return empty_figure(_t("Generate, then pick a position."))
    xs = list(range(len(logits_top)))
    fig = go.Figure()
    for i, r in enumerate(results):
        fig.add_trace(go.Bar(x=xs, y=[r.prob_of(tid) for tid, _, _ in logits_top],
                             name=_t("{name} ({n} kept)", name=r.name, n=r.size), marker_color=ORDER_COLOURS[i % len(ORDER_COLOURS)],
                             hovertemplate=f"{r.name}<br>" + "p = %{y:.4f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=xs, y=[p for _, _, p in logits_top], mode="markers", name=_t("model's own p (T=1)"),
                             marker=dict(symbol="line-ew-open", size=18, color="#222", line=dict(width=2))))
    fig.update_layout(barmode="group")
    fig.update_xaxes(tickvals=xs, ticktext=[visible(text) for _, text, _ in logits_top], tickangle=-45)
    fig.update_yaxes(title_text=_t("sampling probability"), rangemode="tozero")
    return _layout(fig, _t("The same logits through each engine's stage order"))


def sweep_figure(data: dict | None) -> go.Figure:
    """Accuracy against temperature, one line per sampler (engine/evaluation/sweep.py's JSON)."""
    if not data:
        return empty_figure(_t("No sweep loaded: run `thoughtscope sweep --out FILE`, then load FILE here."))
    temps = data["config"]["temperatures"]
    fig = go.Figure()
    for sampler, accs in data["accuracy"].items():
        fig.add_trace(go.Scatter(x=temps, y=accs, mode="lines+markers", name=sampler,
                                 line=dict(color=SWEEP_COLOURS.get(sampler, "#888"), width=2,
                                           dash="dash" if sampler.startswith("top_p") else "solid")))
    fig.update_xaxes(title_text=_t("temperature"))
    fig.update_yaxes(title_text=_t("accuracy (one sample per problem)"), range=[0, 1.02], tickformat=".0%")
    cfg = data["config"]
    return _layout(fig, f"{data['model']}, {cfg['tier']} tier, n={cfg['n']} per point, seed {cfg['seed']}")


def top_tokens(logits, token_text: Callable[[int], str], n: int) -> list[tuple[int, str, float]]:
    """``(id, text, model probability)`` of the ``n`` most likely tokens of ``logits`` ``(vocab,)``."""
    probs = logits.float().softmax(-1)
    values, ids = probs.topk(min(n, probs.numel()))
    return [(int(i), token_text(int(i)), float(v)) for v, i in zip(values.tolist(), ids.tolist())]
