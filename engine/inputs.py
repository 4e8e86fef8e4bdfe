"""Checks on text a user types (a question, an answer key) before any model or database sees it.

One function, `check_text`, shared by the backend's ``render_prompt``, the CLI and the app's
callbacks, so every entry point rejects the same things with the same one-line message:

- not text at all (None, a number from the Gradio API);
- empty or whitespace only (when text is required);
- longer than ``MAX_QUESTION_CHARS`` — checked on the length alone, before any tokenizer
  work, so a 100 KB paste is refused in microseconds;
- a NUL character (C tools and terminals cut text there);
- not valid UTF-8: lone surrogates, which is how Python hands over undecodable bytes from
  argv (``"\\udcff"`` for byte 0xff) and how a JSON client can send half a pair. SQLite and
  a UTF-8 terminal would fail on them later with a UnicodeEncodeError.

`whole` and `number` do the same for a numeric setting that arrives raw from a form or
the Gradio API (None, NaN, a string, 1e300) before a config dataclass sees it.

Not here: the token-level limit (the model's context; TransformersBackend._check_prompt) or
the ranges of method settings (each config dataclass validates its own fields).
"""

from __future__ import annotations

import math

from engine.models.base import InputError

MAX_QUESTION_CHARS = 20_000      # ~5k tokens; far above the embedded model's 512-token context


def check_text(text, what: str = "the question", *, required: bool = True,
               max_chars: int = MAX_QUESTION_CHARS) -> str:
    """``text`` unchanged when usable, else an `InputError` naming what is wrong and what to do:
    ``check_text("  ", "--question")`` raises "--question is empty: type a question or pick a
    random problem"."""
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise InputError(f"{what} must be text, got {type(text).__name__}")
    if len(text) > max_chars:        # before strip(): O(1), whatever was pasted
        raise InputError(f"{what} is {len(text):,} characters long; the limit is {max_chars:,}: shorten it")
    if required and not text.strip():
        raise InputError(f"{what} is empty: type a question or pick a random problem")
    if "\x00" in text:
        raise InputError(f"{what} contains a NUL character (\\x00) at position {text.index(chr(0))}: "
                         "remove it")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        bad = text[e.start]
        byte = f"byte 0x{ord(bad) - 0xDC00:02x}" if 0xDC80 <= ord(bad) <= 0xDCFF else f"{bad!r}"
        raise InputError(f"{what} is not valid UTF-8 text ({byte} at position {e.start}): "
                         "re-type it, or save the file it came from as UTF-8") from None
    return text


MAX_SEED = 2**63 - 1


def whole(value, name: str, lo: int, hi: int) -> int:
    """A setting that must be a whole number in [lo, hi], as a raw value from a form or the
    Gradio API arrives: an int, or a float with no fraction (sliders send 3.0). None, bools,
    NaN, infinities, text and out-of-range values are an `InputError` naming the field."""
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
          and float(value).is_integer() and lo <= value <= hi)
    if not ok:
        shown = repr(value)
        raise InputError(f"{name} must be a whole number from {lo} to {hi}, "
                         f"got {shown if len(shown) <= 40 else shown[:37] + '...'}")
    return int(value)


def number(value, name: str, lo: float, hi: float) -> float:
    """A setting that must be a finite number in [lo, hi] (see `whole`)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= value <= hi   # NaN fails
    if not ok:
        shown = repr(value)
        raise InputError(f"{name} must be a number from {lo} to {hi}, "
                         f"got {shown if len(shown) <= 40 else shown[:37] + '...'}")
    return float(value)
