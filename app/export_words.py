"""The exports' own words in Chinese: section titles, figure titles and CLI help that only the
exports use (app/locales/export_zh.json; English is the key, as in app/locales/zh.json).

They live apart from the app's catalogue so that the exports can grow without touching zh.json
while it is being edited elsewhere; `say` reads this file first and falls back to the app's
catalogue (`app.i18n.translate`), so a string already translated there is not repeated here.
tests/test_export_views.py fails when a `say` key used in the exports has no entry in either.

Not here: what the exports show (app/export_views.py), the page (engine/export_html.py).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from app import i18n

LOCALE = Path(__file__).with_name("locales") / "export_zh.json"


@cache
def catalogue() -> dict[str, str]:
    entries = json.loads(LOCALE.read_text(encoding="utf-8"))
    return {k: v for k, v in entries.items() if not k.startswith("//")}     # "//..." keys are comments


def say(text: str, /, lang: str | None = None, **fields) -> str:
    """``text`` (English, the key) in ``lang`` (default: `i18n.current_lang`), fields filled in."""
    lang = lang or i18n.current_lang()
    out = text
    if lang == "zh":
        out = catalogue().get(text) or i18n.translate(text, "zh")
    return out.format(**fields) if fields else out
