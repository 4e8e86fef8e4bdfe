"""HTML views of model output: tokens coloured by the model's probability, with a legend.

Pure functions from engine records to HTML strings, so they are tested without a browser.
Every piece of model text goes through `html.escape`; braces and ``$`` are written as
entities too, because gr.HTML fills its value into a JS/Handlebars template.

The colour scale runs from red-orange (unlikely) through yellow to light blue (likely),
the ColorBrewer RdYlBu stops, which stay distinguishable with red-green colour blindness.
Every colour is light enough for dark text, and the text colour is set explicitly, so
the view reads the same in Gradio's dark mode.

Not here: layout (app/main.py) or callbacks (app/generate_tab.py).
"""

from __future__ import annotations

import html
import math
from typing import Sequence

from app.i18n import t
from engine.models.base import Generation, TokenLogprob

# (probability, RGB) stops, interpolated linearly in between.
SCALE: tuple[tuple[float, tuple[int, int, int]], ...] = (
    (0.00, (0xF4, 0x6D, 0x43)),
    (0.25, (0xFD, 0xAE, 0x61)),
    (0.50, (0xFE, 0xE0, 0x90)),
    (0.75, (0xE0, 0xF3, 0xF8)),
    (1.00, (0xAB, 0xD9, 0xE9)),
)

CHOSEN = "  \u2190 chosen"
NEWLINE_MARK = "\u21b5"     # ↵, shown for a newline token so it can be seen and hovered

# Scoped to the gr.HTML component that shows the tokens (its css_template), so the view is
# styled however the app is launched.
TOKENS_CSS = """
.ts-tokens { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 15px; line-height: 1.9; white-space: pre-wrap; word-break: break-word;
  color: #111; background: #fff; border: 1px solid #ddd; border-radius: 8px;
  padding: 12px 14px; margin-top: 6px; }
.ts-empty { color: #666; font-style: italic; font-family: inherit; }
.ts-tok { position: relative; border-radius: 3px; padding: 1px 0; color: #111;
  box-shadow: inset 0 -1px 0 rgba(0,0,0,0.08); cursor: help; }
.ts-tok:hover { outline: 2px solid #333; z-index: 2; }
.ts-tok.ts-nl::before { content: "↵"; color: #555; font-size: 12px; }
.ts-tok.ts-blank::before { content: "∅"; color: #555; font-size: 12px; }
.ts-tok.ts-stop { opacity: 0.55; text-decoration: line-through dotted #555; }
.ts-tok.ts-special { font-style: italic; }
.ts-tok[data-tip]:hover::after { content: attr(data-tip); position: absolute; left: 0;
  top: calc(100% + 4px); z-index: 20; white-space: pre; background: #222; color: #f5f5f5;
  font-size: 12.5px; line-height: 1.45; padding: 6px 9px; border-radius: 6px;
  box-shadow: 0 2px 8px rgba(0,0,0,0.3); pointer-events: none; min-width: 12ch; }
.ts-tok.ts-tip-left[data-tip]:hover::after { left: auto; right: 0; }
.ts-tok.ts-tip-up[data-tip]:hover::after { top: auto; bottom: calc(100% + 4px); }
.ts-legend { display: flex; align-items: center; gap: 8px; font-size: 13px; color: inherit;
  margin: 2px 0 4px 0; flex-wrap: wrap; }
.ts-legend-bar { display: inline-block; width: 220px; height: 12px; border-radius: 3px;
  border: 1px solid #bbb; }
.ts-legend-hint { opacity: 0.75; }
"""

# Tooltips open below and to the right of their token; near the right edge of the view they
# open to the left, near the bottom of the window above (event delegation, so it survives
# every re-render of the value).
TOOLTIP_JS = """
element.addEventListener('mouseover', (event) => {
  const tok = event.target.closest && event.target.closest('.ts-tok');
  if (!tok) return;
  const box = tok.getBoundingClientRect();
  tok.classList.toggle('ts-tip-left', box.left > element.getBoundingClientRect().right - 360);
  tok.classList.toggle('ts-tip-up', box.bottom > window.innerHeight - 200);
});
"""


def prob_colour(p: float) -> str:
    """Background colour (``#rrggbb``) for a token of probability ``p`` (clamped to [0, 1])."""
    if not isinstance(p, (int, float)) or math.isnan(p):
        p = 0.0
    p = min(1.0, max(0.0, float(p)))
    for (p0, c0), (p1, c1) in zip(SCALE, SCALE[1:]):
        if p <= p1:
            f = 0.0 if p1 == p0 else (p - p0) / (p1 - p0)
            rgb = [round(a + (b - a) * f) for a, b in zip(c0, c1)]
            return "#{:02x}{:02x}{:02x}".format(*rgb)
    return "#{:02x}{:02x}{:02x}".format(*SCALE[-1][1])


def _escape(text: str) -> str:
    """HTML-escape, and neutralise template syntax (``{{``, ``${``) with entities."""
    return (html.escape(text, quote=True)
            .replace("{", "&#123;").replace("}", "&#125;").replace("$", "&#36;"))


def _visible(token: str) -> str:
    """A token's text as shown in a tooltip: whitespace spelled out, quoted."""
    shown = token.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    return f"'{shown}'"


def token_tooltip(tok: TokenLogprob, note: str | None = None) -> str:
    """Plain-text tooltip: the token's probability, then its top alternatives."""
    lines = [f"{_visible(tok.token)}  p = {math.exp(tok.logprob):.3f}"]
    if note:
        lines.append(note)
    if tok.top:
        lines.append(t("top alternatives:"))
        width = max(len(_visible(t)) for t, _ in tok.top)
        marked = False
        for text, lp in tok.top:
            # alternatives carry no token id, and different ids can share a text ("\ufffd"
            # for byte pieces): mark one entry only, the one that also has the chosen logprob
            mark = not marked and text == tok.token and abs(lp - tok.logprob) < 1e-6
            marked = marked or mark
            lines.append(f"  {_visible(text):<{width}}  {math.exp(lp):.3f}" + (CHOSEN if mark else ""))
        if not marked:
            lines.append("  " + t("(the chosen token is not among these {n})", n=len(tok.top)))
    return "\n".join(lines)


def _stop_tokens(tokens: Sequence[TokenLogprob], stop_string: str | None) -> set[int]:
    """Indexes of the trailing tokens that spell the stop string (when texts concatenate)."""
    if not stop_string:
        return set()
    joined = "".join(t.token for t in tokens)
    at = joined.rfind(stop_string)
    if at < 0:
        return set()
    out, pos = set(), 0
    for i, t in enumerate(tokens):
        end = pos + len(t.token)
        if end > at and pos < at + len(stop_string):
            out.add(i)
        pos = end
    return out


def token_span(tok: TokenLogprob, *, stop: bool = False, special: bool = False) -> str:
    """One token as a coloured ``<span>`` with a hover tooltip; newlines become ``<br>``."""
    p = math.exp(tok.logprob)
    classes = ["ts-tok"]
    note = None
    if stop:
        classes.append("ts-stop")
        note = t("(part of the stop string)")
    if special:
        classes.append("ts-special")
        note = t("(end-of-sequence token)")
    if "\n" in tok.token:
        classes.append("ts-nl")
    elif not tok.token.replace("\r", ""):
        classes.append("ts-blank")            # e.g. a special token that decodes to nothing
    body = _escape(tok.token).replace("\r", "").replace("\n", "<br>")
    tip = _escape(token_tooltip(tok, note)).replace("\n", "&#10;")
    return (f'<span class="{" ".join(classes)}" style="background-color:{prob_colour(p)}" '
            f'data-p="{p:.4f}" data-tip="{tip}">{body}</span>')


def legend_html() -> str:
    stops = ", ".join(f"{prob_colour(p)} {p * 100:.0f}%" for p, _ in SCALE)
    return ('<div class="ts-legend">'
            f'<span>{t("token probability:")}</span><span>0</span>'
            f'<span class="ts-legend-bar" style="background:linear-gradient(to right, {stops})"></span>'
            '<span>1</span>'
            f'<span class="ts-legend-hint">&middot; {t("hover a token for its top alternatives")} '
            f'&middot; {NEWLINE_MARK} = {t("newline")}</span></div>')


def generation_html(gen: Generation | None) -> str:
    """The whole output view: legend, then one span per generated token."""
    if gen is None:
        return (legend_html() + '<div class="ts-tokens"><span class="ts-empty">'
                + t("The generated solution appears here, one coloured span per token.") + "</span></div>")
    stop = _stop_tokens(gen.tokens, gen.stop_string) if gen.stop_reason == "stop" else set()
    last = len(gen.tokens) - 1
    spans = [token_span(t, stop=i in stop, special=gen.stop_reason == "eos" and i == last)
             for i, t in enumerate(gen.tokens)]
    return legend_html() + '<div class="ts-tokens">' + "".join(spans) + "</div>"
