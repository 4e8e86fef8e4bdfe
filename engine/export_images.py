"""A plotly figure as SVG or PNG bytes, rendered offline by kaleido in a local Chromium.

Kaleido (1.x) drives a Chrome or Chromium it finds on PATH (or at ``BROWSER_PATH``); it draws
with the plotly.js that the ``plotly`` package ships, and MathJax is turned off here because
kaleido's default loads it from a CDN. So nothing is fetched: with no browser installed the
export says so in one line (`ExportError`) instead of downloading one.

`figure_images` draws several figures in one browser session (a run's views have up to five).

Not here: which figures to draw (app/export_views.py picks them from the app's own figures),
the standalone HTML page (engine/export_html.py).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading

from engine.export_html import ExportError

IMAGE_FORMATS = ("svg", "png")
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
DEFAULT_SIZE = (1200, 700)       # px; a 16:9-ish slide area
PNG_SCALE = 2                    # device pixels per px, so a PNG stays sharp on a projector
RENDER_TIMEOUT_S = 90


def find_browser() -> str | None:
    return os.environ.get("BROWSER_PATH") or next(filter(None, map(shutil.which, BROWSER_NAMES)), None)


def _size_opts(fig_dict: dict, fmt: str, width: int | None, height: int | None) -> dict:
    layout = fig_dict.get("layout", {})
    w = width or layout.get("width") or DEFAULT_SIZE[0]
    h = height or layout.get("height") or DEFAULT_SIZE[1]
    return {"format": fmt, "width": w, "height": h, "scale": PNG_SCALE if fmt == "png" else 1}


def figure_images(figs, fmt: str, *, width: int | None = None, height: int | None = None) -> list[bytes]:
    """Each of ``figs`` (plotly Figures or their dicts) as ``fmt`` ("svg" or "png") bytes, all
    drawn by one Chromium (starting it takes seconds; a run's views draw up to five figures)."""
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
    dicts = [fig.to_dict() if hasattr(fig, "to_dict") else dict(fig) for fig in figs]

    async def render() -> list:
        async with kaleido.Kaleido(mathjax=False, timeout=RENDER_TIMEOUT_S) as k:
            return [await k.calc_fig(d, opts=_size_opts(d, fmt, width, height)) for d in dicts]

    result: dict = {}

    def run() -> None:      # a thread of its own: the caller may be inside a running event loop (Gradio)
        try:
            result["images"] = asyncio.run(render())
        except Exception as e:                 # kaleido's errors have no common base class
            result["error"] = e

    old = os.environ.get("BROWSER_PATH")
    os.environ["BROWSER_PATH"] = browser       # choreographer reads it when it starts the browser
    try:
        worker = threading.Thread(target=run, name="thoughtscope-kaleido")
        worker.start()
        worker.join()
    finally:
        if old is None:
            os.environ.pop("BROWSER_PATH", None)
        else:
            os.environ["BROWSER_PATH"] = old
    if "error" in result:
        e = result["error"]
        raise ExportError(f"rendering the figures as {fmt} failed: {type(e).__name__}: {e}") from None
    return [data if isinstance(data, bytes) else data.encode("utf-8") for data in result["images"]]


def figure_image(fig, fmt: str, *, width: int | None = None, height: int | None = None) -> bytes:
    """``fig`` (a plotly Figure or its dict) as ``fmt`` ("svg" or "png") bytes."""
    return figure_images([fig], fmt, width=width, height=height)[0]
