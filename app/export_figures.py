"""Exports of a stored run for a slide or an email: standalone HTML, SVG, PNG, GraphML, JSON.

`session_figure` picks the figure a run is shown with in the app (the tree for the searches,
coloured by action for rStar; LECO's per-round heatmap; semantic entropy's cluster bubbles,
strict clustering), so an SVG or PNG looks like the view the teacher saw. `write_export`
writes one format to a file; the CLI (`thoughtscope export`, engine/cli/sessions.py) and the
Sessions tab both call it, so the two never drift apart.

Not here: the standalone page itself (engine/export_html.py) and the SVG/PNG renderer
(engine/export_images.py), which have no Gradio and no app figure code.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine import events as E
from app.i18n import t
from engine.export_html import LABELS, ExportError, write_session_html
from engine.export_images import IMAGE_FORMATS, figure_image
from engine.tree import Tree

EXPORT_FORMATS = ("html", "svg", "png", "graphml", "json")
SLIDE_HEIGHT = 700       # px of an exported tree figure (the app's is 560, for a browser pane)


def session_figure(events: list[E.Event]):
    """The plotly figure the app shows this run with (None when the run has nothing to draw yet)."""
    from app.leco_tab import heatmap_figure
    from app.mcts_tab import figure_for
    from app.restore import TAB_OF_METHOD
    from app.se_tab import bubble_figure, fold
    run = next((ev for ev in events if isinstance(ev, E.RunStarted)), None)
    tab = TAB_OF_METHOD.get(run.method, "search") if run else "search"
    if tab == "leco":
        return heatmap_figure(events)
    if tab == "se":
        return bubble_figure(fold(events, "strict"))
    tree = Tree.fold(events)
    if not len(tree):
        return None
    fig = figure_for(tree)
    fig.update_layout(height=SLIDE_HEIGHT)
    return fig


def page_labels() -> dict:
    """The standalone page's words in the reader's language (the request's, or the CLI's LANG)."""
    return {key: t(text) for key, text in LABELS.items()}


def write_export(store, session_id: str, fmt: str, out: str | Path) -> Path:
    """Write the session ``session_id`` (already resolved) of ``store`` as ``fmt`` to ``out``."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    out = Path(out)
    if fmt == "graphml":
        return store.export_graphml(session_id, out)
    if fmt == "json":
        data = store.export_session(session_id)
        _write(out, (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
        return out
    if fmt == "html":
        return write_session_html(store.export_session(session_id), out, page_labels())
    assert fmt in IMAGE_FORMATS
    fig = session_figure(store.events(session_id))
    if fig is None:
        raise ExportError(f"session {session_id} has nothing to draw yet")
    _write(out, figure_image(fig, fmt))
    return out


def _write(out: Path, data: bytes) -> None:
    try:
        out.write_bytes(data)
    except OSError as e:
        raise ExportError(f"cannot write {out}: {e}") from None
