"""The compute-matched experiment as one plotly chart: accuracy against mean generated tokens per
problem (left) and against mean wall seconds per problem (right), one line per method through
its sizes, greedy a single point, 95 % Wilson intervals as error bars. The app shows the figure;
``thoughtscope compare --out`` writes it (HTML always; PNG/SVG through kaleido, which needs a
Chromium: /usr/bin/chromium is used when kaleido finds none of its own).

Every word on the chart (panel titles, axis titles, the hover text's template) is a parameter,
`LABELS` by default (English, for the CLI); the app passes the same keys translated
(app/experiments_tab.py: each English text is the key of its entry in app/locales/zh.json), so
the engine needs no language of its own.

Not here: running or storing the experiment (engine/evaluation/compare.py, engine/compare_store.py).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Sequence

from engine.evaluation.compare import ArmResult

# one colour per method, stable across charts
COLOURS = {"greedy": "#444444", "sc": "#1f77b4", "bon": "#17becf", "beam": "#9467bd", "mcts": "#d62728",
           "mcts-code": "#ff7f0e", "rstar": "#2ca02c", "mcts-ppm": "#8c564b"}
IMAGE_SUFFIXES = (".png", ".svg")
CHROMIUM = "/usr/bin/chromium"

# the chart's words; the hover keys are format strings with the named fields shown
LABELS = {
    "tokens_panel": "accuracy vs generated tokens per problem",
    "wall_panel": "accuracy vs wall seconds per problem",
    "tokens_axis": "mean generated tokens per problem (log)",
    "wall_axis": "mean wall seconds per problem (log)",
    "accuracy_axis": "accuracy",
    "hover_tokens": "target {target} tokens, got {got}",
    "hover_accuracy": "accuracy {accuracy} ({right}/{runs}), 95 % {low}–{high}",
    "hover_wall": "{seconds} s per problem",
}


def compare_figure(arm_results: Sequence[ArmResult], title: str = "", labels: dict[str, str] | None = None):
    """The two-panel figure (plotly.graph_objects.Figure). ``labels``: `LABELS`'s keys in another
    language (a key left out keeps its English)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
    words = {**LABELS, **(labels or {})}
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=(words["tokens_panel"], words["wall_panel"]))
    methods = list(dict.fromkeys(a.method for a in arm_results))
    for m in methods:
        arms = sorted((a for a in arm_results if a.method == m and a.runs), key=lambda a: a.mean_tokens)
        if not arms:
            continue
        err = dict(type="data", symmetric=False, array=[a.interval[1] - a.accuracy for a in arms],
                   arrayminus=[a.accuracy - a.interval[0] for a in arms], thickness=1, width=3)
        hover = [f"<b>{m}</b> · {a.label}<br>"
                 + words["hover_tokens"].format(target=", ".join(map(str, a.budgets)) if a.knob else "—",
                                                got=f"{a.mean_tokens:.0f}") + "<br>"
                 + words["hover_accuracy"].format(accuracy=f"{a.accuracy:.3f}", right=a.right, runs=a.runs,
                                                  low=f"{a.interval[0]:.2f}", high=f"{a.interval[1]:.2f}") + "<br>"
                 + words["hover_wall"].format(seconds=f"{a.mean_wall_s:.2f}")
                 for a in arms]
        mode = "markers" if len(arms) == 1 else "lines+markers"
        style = dict(mode=mode, name=m, legendgroup=m, marker=dict(size=9, color=COLOURS.get(m)),
                     line=dict(color=COLOURS.get(m)), error_y=err, hovertext=hover, hoverinfo="text")
        fig.add_trace(go.Scatter(x=[a.mean_tokens for a in arms], y=[a.accuracy for a in arms], **style),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=[a.mean_wall_s for a in arms], y=[a.accuracy for a in arms],
                                 showlegend=False, **style), row=1, col=2)
    fig.update_xaxes(type="log", title_text=words["tokens_axis"], row=1, col=1)
    fig.update_xaxes(type="log", title_text=words["wall_axis"], row=1, col=2)
    fig.update_yaxes(title_text=words["accuracy_axis"], range=[0, 1], row=1, col=1)
    fig.update_layout(title=title or None, height=460, width=1100, template="plotly_white",
                      legend=dict(orientation="h", y=-0.22), margin=dict(l=60, r=20, t=70, b=90))
    return fig


def write_chart(fig, path: str | Path) -> tuple[Path, str]:
    """Write ``fig`` to ``path`` (.html, .png or .svg); returns (the file written, a note). A PNG
    or SVG needs kaleido with a Chromium; without one the HTML is written beside it instead and
    the note says so."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".html", *IMAGE_SUFFIXES):
        raise ValueError(f"--out must end in .html, .png or .svg, got {str(path)!r}")
    if not path.parent.exists():
        raise ValueError(f"--out: the folder {path.parent} does not exist")
    if suffix == ".html":
        fig.write_html(str(path), include_plotlyjs="cdn")
        return path, "HTML (plotly.js from its CDN)"
    try:
        import kaleido  # noqa: F401
        if shutil.which("chromium") is None and os.path.exists(CHROMIUM):
            os.environ.setdefault("BROWSER_PATH", CHROMIUM)
        fig.write_image(str(path))
        return path, f"{suffix[1:].upper()} through kaleido"
    except Exception as e:   # kaleido missing, or no Chromium it can start
        html = path.with_suffix(".html")
        fig.write_html(str(html), include_plotlyjs="cdn")
        return html, f"HTML instead of {suffix[1:].upper()}: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
