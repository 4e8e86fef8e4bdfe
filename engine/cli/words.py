"""The CLI's words: its one-line error type and its text in the language of LANG / LC_ALL.

Help texts, status lines and the error line's frame go through `_t` (app/i18n.py's catalogue);
the messages the engine raises go through `_message` (app/i18n.py's templates). English where the
app's package is not installed. Not here: the flags (flags.py), the commands (__init__.py).
"""

from __future__ import annotations

import argparse


class CliError(Exception):
    """Shown as one line, exit code 2."""


def _t(text: str, **fields) -> str:
    """The CLI's words in the language of LANG / LC_ALL (app/i18n.py's catalogue; English when
    the app's package is not there). Help texts and the error line's frame go through it; the
    messages the engine raises go through `_message`."""
    try:
        from app.i18n import t
    except ImportError:
        return text.format(**fields) if fields else text
    return t(text, **fields)


def _message(error) -> str:
    """An engine message (ValueError, InputError, ...) in the language of LANG: app/i18n.py's
    `message` matches it against the catalogue's templates; English when none matches."""
    try:
        from app.i18n import message
    except ImportError:
        return str(error)
    return message(error)


def _use_environment_language() -> None:
    """LANG=zh_CN.UTF-8 thoughtscope ...: help and errors in Chinese, argparse's own words too
    (argparse looks its words up through the module's ``_``, gettext's, at call time)."""
    try:
        from app import i18n
    except ImportError:
        return
    i18n.set_default(i18n.lang_from_env())
    if i18n.current_lang() != i18n.DEFAULT:
        argparse._ = lambda text: i18n.translate(text)
