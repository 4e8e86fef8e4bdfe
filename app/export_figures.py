"""Exports of a stored run for a slide or an email: standalone HTML, SVG, PNG, GraphML, JSON.

`write_export` writes one format; the CLI (`thoughtscope export`, engine/cli/sessions.py) and the
Sessions tab both call it, so the two never drift apart.

- html: one page with the tree and its timeline replay, and below it the method's own views
  (app/export_views.py: LECO's heatmap, semantic entropy's clusters, rStar's consistency, a
  generation's min-p pools, with what their numbers mean), in the language asked for.
- svg / png: one file per figure of the run's views, named ``STEM-FIGURE.svg`` beside the
  ``out`` given (or ``session-ID-FIGURE.svg`` inside it, when ``out`` is a folder): e.g.
  ``run-tree.svg``, ``run-rstar-consistency.svg``; `figure_names` lists a run's figures.
- graphml, json: the tree; the lossless, re-importable session.

The language (``lang``): the page's words and the figures' labels, through `app.i18n.t` and the
exports' own words (app/export_words.py); by default the language of the request being served
(the app's UI language) or, in the CLI, of LANG.

Not here: the page itself (engine/export_html.py), the SVG/PNG renderer
(engine/export_images.py), which have no Gradio and no app figure code.
"""

from __future__ import annotations

import json
from pathlib import Path

from app import i18n
from app.export_words import say
from engine.export_html import LABELS, ExportError, write_session_html
from engine.export_images import IMAGE_FORMATS, figure_images

EXPORT_FORMATS = ("html", "svg", "png", "graphml", "json")


def page_labels(lang: str | None = None) -> dict:
    """The standalone page's words in ``lang`` (default: the request's, or the CLI's LANG)."""
    return {key: say(text, lang) for key, text in LABELS.items()}


def figure_names(events) -> list[str]:
    """The names of the figures an SVG/PNG export of these events writes, in order."""
    from app.export_views import figures
    return [name for name, _ in figures(events)]


def image_paths(out: Path, session_id: str, names: list[str], fmt: str) -> list[Path]:
    """Where each figure goes: inside ``out`` when it is a folder, else beside it, named after it."""
    if out.is_dir():
        return [out / f"session-{session_id}-{name}.{fmt}" for name in names]
    stem = out.name[:-len(out.suffix)] if out.suffix.lower() == f".{fmt}" else out.name
    return [out.with_name(f"{stem}-{name}.{fmt}") for name in names]


def write_export(store, session_id: str, fmt: str, out: str | Path, lang: str | None = None) -> list[Path]:
    """Write the session ``session_id`` (already resolved) of ``store`` as ``fmt`` at ``out``;
    the files written (one, or one per figure for svg and png)."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    lang = lang or i18n.current_lang()
    if lang not in i18n.LANGS:
        raise ValueError(f"lang must be one of {', '.join(i18n.LANGS)}, got {lang!r}")
    out = Path(out)
    if fmt == "graphml":
        return [store.export_graphml(session_id, out)]
    if fmt == "json":
        data = store.export_session(session_id)
        _write(out, (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
        return [out]
    from app.export_views import figures, views       # the app's figure code: plotly, the tabs
    if fmt == "html":
        data = store.export_session(session_id)
        with i18n.using(lang):
            page_views = views(store.events(session_id))
        return [write_session_html(data, out, page_labels(lang), page_views, lang)]
    assert fmt in IMAGE_FORMATS
    with i18n.using(lang):
        named = figures(store.events(session_id))
    if not named:
        raise ExportError(f"session {session_id} has nothing to draw yet")
    paths = image_paths(out, session_id, [name for name, _ in named], fmt)
    for path, data in zip(paths, figure_images([fig for _, fig in named], fmt)):
        _write(path, data)
    return paths


def _write(out: Path, data: bytes) -> None:
    try:
        out.write_bytes(data)
    except OSError as e:
        raise ExportError(f"cannot write {out}: {e}") from None
