"""A plotly figure as SVG or PNG bytes, rendered offline by kaleido in a local Chromium.

Kaleido (1.x) drives a Chrome or Chromium it finds on PATH (or at ``BROWSER_PATH``); it draws
with the plotly.js that the ``plotly`` package ships, and MathJax is turned off here because
kaleido's default loads it from a CDN. So nothing is fetched: with no browser installed the
export says so in one line (`ExportError`) instead of downloading one.

Not here: which figure to draw (the app's tree_figure, leco and se figures build them), the
standalone HTML page (engine/export_html.py).
"""

from __future__ import annotations

import os
import shutil

from engine.export_html import ExportError

IMAGE_FORMATS = ("svg", "png")
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
DEFAULT_SIZE = (1200, 700)       # px; a 16:9-ish slide area
PNG_SCALE = 2                    # device pixels per px, so a PNG stays sharp on a projector
RENDER_TIMEOUT_S = 90


def find_browser() -> str | None:
    return os.environ.get("BROWSER_PATH") or next(filter(None, map(shutil.which, BROWSER_NAMES)), None)


def figure_image(fig, fmt: str, *, width: int | None = None, height: int | None = None) -> bytes:
    """``fig`` (a plotly Figure or its dict) as ``fmt`` ("svg" or "png") bytes."""
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"format must be one of {', '.join(IMAGE_FORMATS)}, got {fmt!r}")
    try:
        import kaleido
    except ImportError:
        raise ExportError("SVG/PNG export needs the kaleido package: pip install kaleido") from None
    browser = find_browser()
    if browser is None:
        raise ExportError("SVG/PNG export needs Chromium or Chrome installed (apt-get install chromium), "
                          "or BROWSER_PATH naming one; none was found")
    fig_dict = fig.to_dict() if hasattr(fig, "to_dict") else dict(fig)
    layout = fig_dict.get("layout", {})
    w = width or layout.get("width") or DEFAULT_SIZE[0]
    h = height or layout.get("height") or DEFAULT_SIZE[1]
    opts = {"format": fmt, "width": w, "height": h, "scale": PNG_SCALE if fmt == "png" else 1}
    old = os.environ.get("BROWSER_PATH")
    os.environ["BROWSER_PATH"] = browser       # choreographer reads it when it starts the browser
    try:
        data = kaleido.calc_fig_sync(fig_dict, opts=opts,
                                     kopts={"mathjax": False, "timeout": RENDER_TIMEOUT_S})
    except Exception as e:                     # kaleido's errors have no common base class
        raise ExportError(f"rendering the figure as {fmt} failed: {type(e).__name__}: {e}") from None
    finally:
        if old is None:
            os.environ.pop("BROWSER_PATH", None)
        else:
            os.environ["BROWSER_PATH"] = old
    return data if isinstance(data, bytes) else data.encode("utf-8")
