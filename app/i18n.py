"""Chinese and English for the app (and the CLI): one function, `t`, that every user-visible
string goes through, and the catalogue it reads (app/locales/zh.json; English is the key).

How a string reaches the user's language depends on where it is made:

- Built with the page (a label, an info line, a placeholder, a button, a tab name, a fixed
  Markdown block): `t("Question")` returns Gradio's `gr.I18n` marker, and the browser shows
  the entry for its language (Gradio's frontend picks its locale from navigator.language when
  the page starts; the address's ``lang=`` and the header switch set it: `PAGE_SCRIPT`). One marker is one
  whole key: Gradio translates only the first marker in a string, so never join two.
- Made in a callback (a narration of an event, a summary with numbers, an error, a figure's
  legend): `t("{n} rollouts", n=5)` returns the finished text in the language of the request
  being served (`current_lang`): the ``ts_lang`` cookie that the page's script writes from the
  address's ``lang=`` or the header switch, else the browser's Accept-Language.
- Outside the app (the CLI, tests calling a text builder): the process default, English unless
  `set_default` changed it (`lang_from_env` reads LANG / LC_ALL / LC_MESSAGES / LANGUAGE);
  `using("zh")` sets a language for a block of code.

Two things made elsewhere are said here too:

- a table's column headers: `table` (English keys -> a gr.Dataframe value, a pandas DataFrame
  whose columns are in the current language; the callback that fills the table returns it);
- the messages the engine raises (ValueError, InputError, ModelLoadError, StoreError), English
  f-strings made where the engine has no language: `message` matches one against the English
  templates of app/locales/zh_messages.json (``{name}`` slots, the most specific first; each
  slot's text is looked up again, so "from 1 to 32" inside "rollouts must be from 1 to 32, got
  0" is translated too) and fills the Chinese template. A message no template matches stays
  English and nothing raises. The app's gr.Error boundary and the CLI's error line use it.

A key with no Chinese entry shows in English (tests/test_i18n.py fails on it). Adding a string:
docs/ARCHITECTURE.md, "Chinese and English".

Not here: which strings a view shows (each app module), the URL state (app/url_state.py).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import re
import string
import sys
from functools import cache
from http.cookies import SimpleCookie
from pathlib import Path

LANGS = ("en", "zh")
DEFAULT = "en"
COOKIE = "ts_lang"
LOCALES = Path(__file__).with_name("locales")
BROWSER_TAG = {"en": "en", "zh": "zh-CN"}     # the locale Gradio's frontend is switched to

_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("ts_lang", default=None)
_finished: contextvars.ContextVar[bool] = contextvars.ContextVar("ts_finished_text", default=False)
_default = DEFAULT


@cache
def catalogue(lang: str) -> dict[str, str]:
    """The translations of ``lang`` (English text -> text); English is its own key."""
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {', '.join(LANGS)}, got {lang!r}")
    if lang == DEFAULT:
        return {}
    path = LOCALES / f"{lang}.json"
    entries = json.loads(path.read_text(encoding="utf-8"))
    return {k: v for k, v in entries.items() if not k.startswith("//")}   # "//..." keys are comments


def reload() -> None:
    """Forget the loaded catalogues (a test or a translator editing zh.json while serving)."""
    catalogue.cache_clear()
    i18n.cache_clear()
    message_templates.cache_clear()


def normalise(lang: str | None) -> str | None:
    """'zh', 'zh-CN', 'zh_CN.UTF-8', 'zh-Hans' -> 'zh'; 'en-US' -> 'en'; anything else -> None."""
    if not lang:
        return None
    head = lang.strip().lower().replace("_", "-").split(".")[0].split("-")[0]
    return head if head in LANGS else None


def lang_from_accept(header: str | None) -> str | None:
    """The first language of an Accept-Language header that the app speaks, by q weight."""
    if not header:
        return None
    ranked = []
    for i, part in enumerate(header.split(",")):
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            weight = 0.0
        ranked.append((-weight, i, tag))
    for _, _, tag in sorted(ranked):
        if normalise(tag):
            return normalise(tag)
    return None


def lang_from_env(environ=os.environ) -> str:
    """The CLI's language from LANGUAGE, LC_ALL, LC_MESSAGES, LANG (the first set; gettext's order)."""
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(name)
        if value:
            return normalise(value.split(":")[0]) or DEFAULT
    return DEFAULT


def lang_of_request(request) -> str:
    """The language a `gr.Request` (or a Starlette request) asks for: the ``lang`` query
    parameter, the ``ts_lang`` cookie, then Accept-Language; English when none says."""
    try:
        params = getattr(request, "query_params", None) or {}
        chosen = normalise(params.get("lang"))
        if chosen:
            return chosen
        headers = getattr(request, "headers", None) or {}
        cookie = SimpleCookie()
        cookie.load(headers.get("cookie", "") or "")
        if COOKIE in cookie and normalise(cookie[COOKIE].value):
            return normalise(cookie[COOKIE].value)
        return lang_from_accept(headers.get("accept-language")) or DEFAULT
    except Exception:          # a malformed cookie header must not break a page: English
        return DEFAULT


def set_default(lang: str) -> None:
    """The language outside a request (the CLI); ValueError for one the app does not speak."""
    global _default
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {', '.join(LANGS)}, got {lang!r}")
    _default = lang


@contextlib.contextmanager
def using(lang: str):
    """``with using("zh"): ...`` — every `t` inside returns Chinese (tests, exports)."""
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {', '.join(LANGS)}, got {lang!r}")
    token = _override.set(lang)
    try:
        yield
    finally:
        _override.reset(token)


def current_lang() -> str:
    """The language of the text being made now: `using`'s, else the served request's, else the default."""
    chosen = _override.get()
    if chosen:
        return chosen
    request = _request()
    if request is None:
        return _default
    lang = request.__dict__.get("_ts_lang")          # read once per request: a tree's hover asks per node
    if lang is None:
        lang = lang_of_request(request)
        request.__dict__["_ts_lang"] = lang
    return lang


def _request():
    # gradio is only looked at where it is loaded already: with no app there is no request, and
    # importing it would add seconds to every CLI command (which asks for the language)
    context = sys.modules.get("gradio.context")
    return None if context is None else context.LocalContext.request.get(None)


def _building_page() -> bool:
    """Inside ``with gr.Blocks()`` and not inside an event handler: the page is being laid out."""
    if "gradio.context" not in sys.modules:
        return False
    from gradio.context import Context, LocalContext
    return Context.root_block is not None and not LocalContext.in_event_listener.get(False)


# Keys asked for in a language that has no entry for them, since start: tests/test_i18n_coverage.py
# shows recorded runs in Chinese and fails on any (a set, so it stays small while serving).
missing: set[str] = set()


def translate(text: str, lang: str | None = None) -> str:
    """``text`` (an English key) in ``lang`` (default `current_lang`); the key when no entry."""
    lang = lang or current_lang()
    if lang == DEFAULT:
        return text
    entries = catalogue(lang)
    if text not in entries:
        missing.add(text)
        return text
    return entries[text]


def t(text: str, /, lang: str | None = None, **fields):
    """The one door for user-visible text; ``text`` is the English and the catalogue's key.

    While the page is laid out (and no ``lang`` or ``fields`` given) a `gr.I18n` marker the
    browser translates; elsewhere the finished string in ``lang`` or `current_lang`, with
    ``fields`` filled in by `str.format` (``t("{n} rollouts", n=5)``: the key keeps the braces)."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    if lang is None and not fields and _building_page() and _override.get() is None and not _finished.get():
        return i18n()(text)
    out = translate(text, lang)
    return out.format(**fields) if fields else out


def per_request(fn):
    """A component's callable value that is made again at each page load, in that page's language:
    ``gr.HTML(per_request(lambda: steps_html([])))``. Gradio also calls it once while the page is
    laid out (the value shown until the load event answers): then it gives English text, never
    markers joined into HTML."""
    def value():
        token = _finished.set(True)
        try:
            return fn()
        finally:
            _finished.reset(token)
    return value


def plain(value, lang: str | None = None) -> str:
    """A label that may be a `t` marker as text (a `gr.Error` naming a slider by its label)."""
    key = getattr(value, "key", None)
    return translate(key, lang) if isinstance(key, str) else str(value)


def table(columns, rows):
    """A gr.Dataframe value: ``rows`` under ``columns`` (English keys) translated into the current
    language. A pandas DataFrame of Python objects (None stays empty, 3 stays 3, not 3.0)."""
    import pandas as pd
    return pd.DataFrame([list(r) for r in rows], columns=[translate(c) for c in columns], dtype=object)


# ---- the engine's messages ---------------------------------------------------------------------

MESSAGE_DEPTH = 2       # slots inside slots looked up (a "from 1 to 32" inside "... must be ...")


@cache
def message_templates(lang: str) -> tuple[dict[str, str], list[tuple[re.Pattern, str]]]:
    """(exact messages, [(pattern, target template)] most specific first) of ``lang``'s
    message catalogue, app/locales/{lang}_messages.json (English template -> template)."""
    path = LOCALES / f"{lang}_messages.json"
    if lang == DEFAULT or not path.exists():
        return {}, []
    entries = {k: v for k, v in json.loads(path.read_text(encoding="utf-8")).items() if not k.startswith("//")}
    exact, ranked = {}, []
    for english, target in entries.items():
        parts = list(string.Formatter().parse(english))
        if all(name is None for _, name, _, _ in parts):
            exact[english] = target
            continue
        pattern, seen, literal = [], set(), 0
        for text, name, _, _ in parts:
            pattern.append(re.escape(text))
            literal += len(text)
            if name is None:
                continue
            pattern.append(f"(?P={name})" if name in seen else f"(?P<{name}>.+?)")
            seen.add(name)
        ranked.append((-literal, english, re.compile("".join(pattern) + r"\Z", re.S), target))
    ranked.sort(key=lambda r: r[:2])
    return exact, [(pattern, target) for _, _, pattern, target in ranked]


def message(error, lang: str | None = None, _depth: int = 0) -> str:
    """An engine message (an exception or its text) in ``lang`` (default `current_lang`): the
    Chinese of the first template of zh_messages.json it matches, slots filled with its own text
    (each looked up again), else the message unchanged. Example: "rollouts must be from 1 to 32,
    got 0" -> "rollouts 必须是 1 到 32 之间的整数，收到的是 0". A slot named ``why`` holds another
    library's words (SQLite's, transformers'): they pass through as they are."""
    text = str(error)
    lang = lang or current_lang()
    found = message_match(text, lang)
    if found is None:
        return text
    target, fields = found
    try:
        fields = {k: v if k == "why" or _depth >= MESSAGE_DEPTH else message(v, lang, _depth + 1)
                  for k, v in fields.items()}
        return target.format(**fields)
    except (ValueError, KeyError, IndexError):      # a broken entry: the English
        return text


def message_match(text: str, lang: str) -> tuple[str, dict[str, str]] | None:
    """(target template, {slot: the text it matched}) of the first template of ``lang``'s message
    catalogue that ``text`` matches; None when none does (or the language is English)."""
    if lang == DEFAULT or not text:
        return None
    try:
        exact, ranked = message_templates(lang)
    except (ValueError, OSError, re.error):          # an unreadable catalogue: the English
        return None
    if text in exact:
        return exact[text].replace("{", "{{").replace("}", "}}"), {}
    return next(((target, found.groupdict()) for pattern, target in ranked
                 if (found := pattern.match(text))), None)


@cache
def i18n():
    """The `gr.I18n` passed to launch (LAUNCH_KWARGS): the Chinese catalogue, and English as
    its keys. Gradio looks up the browser's locale, then its language (zh-CN, then zh)."""
    import gradio as gr
    zh = catalogue("zh")
    return gr.I18n(en={k: k for k in zh}, zh=dict(zh))


# Runs first in the page, before Gradio's own scripts (`LangScript` puts it at the top of
# <head>): Gradio's frontend chooses its locale once, from navigator.language, when it starts,
# and tabs keep the labels of that moment; so a language chosen in the address (``?lang=zh``)
# or earlier by the header switch (the cookie) is given to Gradio as the browser's language, and
# the switch reloads the page (the address keeps the view: app/url_state.py). The cookie tells
# the server which language the callbacks write in.
PAGE_SCRIPT = """<script>
(() => {
  const COOKIE = '%(cookie)s', TAGS = %(tags)s;
  const fromUrl = new URL(location.href).searchParams.get('lang');
  const fromCookie = (document.cookie.match(new RegExp('(?:^|; )' + COOKIE + '=(\\w+)')) || [])[1];
  const browser = (navigator.language || 'en').toLowerCase().startsWith('zh') ? 'zh' : 'en';
  const lang = TAGS[fromUrl] ? fromUrl : TAGS[fromCookie] ? fromCookie : browser;
  const setCookie = (l) => { document.cookie = COOKIE + '=' + l + '; path=/; max-age=31536000; SameSite=Lax'; };
  setCookie(lang);
  document.documentElement.dataset.tsLang = lang;
  if (lang !== browser) {
    for (const [name, value] of [['language', TAGS[lang]], ['languages', [TAGS[lang]]]]) {
      try { Object.defineProperty(Navigator.prototype, name, {get: () => value, configurable: true}); } catch (e) {}
    }
  }
  window.tsSetLang = (l) => {
    if (!TAGS[l]) return;
    setCookie(l);
    const u = new URL(location.href); u.searchParams.set('lang', l); location.assign(u.toString());
  };
  document.addEventListener('click', (e) => {          // the header's 中文 | English links
    const a = e.target.closest && e.target.closest('a[data-ts-lang]');
    if (a) { e.preventDefault(); window.tsSetLang(a.dataset.tsLang); }
  }, true);
})();
</script>""" % {"cookie": COOKIE, "tags": json.dumps(BROWSER_TAG)}


# Scripts that must run before Gradio's own: this module's, then what other modules add
# (app/url_state.py's address helpers).
PAGE_SCRIPTS: list[str] = [PAGE_SCRIPT]


class LangScript:
    """ASGI middleware: puts `PAGE_SCRIPTS` at the top of <head> of Gradio's page (the HTML that
    carries ``window.gradio_config``); every other response passes untouched. Given to launch
    as ``app_kwargs={"middleware": [...]}`` (`middleware`)."""

    MARK = b"window.gradio_config"

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "GET":
            return await self.app(scope, receive, send)
        start, chunks = None, []

        async def capture(message):
            nonlocal start
            if message["type"] == "http.response.start":
                kind = dict(message.get("headers", [])).get(b"content-type", b"")
                if kind.startswith(b"text/html"):
                    start = message
                    return None
                return await send(message)
            if message["type"] == "http.response.body" and start is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body"):
                    return None
                body = b"".join(chunks)
                if self.MARK in body:
                    body = body.replace(b"<head>", b"<head>" + "".join(PAGE_SCRIPTS).encode(), 1)
                headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
                await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
                return await send({"type": "http.response.body", "body": body})
            return await send(message)

        return await self.app(scope, receive, capture)


def middleware() -> list:
    """launch's ``app_kwargs["middleware"]``: `LangScript`."""
    from starlette.middleware import Middleware
    return [Middleware(LangScript)]
