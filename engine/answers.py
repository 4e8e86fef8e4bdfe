"""Final answers: read them from what a real model writes, show them as written, compare by value.

A chat or base model ends its solution in many ways: ``\\boxed{18}`` (nested braces too),
``#### 18``, ``The final answer is $18$``, ``**Answer:** 18``, ``Answer: 18 apples``. `read_answer`
finds every such statement and keeps the *last* one (a model that corrects itself, or answers
sub-questions on the way, states its final answer at the end); inside a statement a ``\\boxed{}``
wins. What it returns is the answer as the model wrote it, cleaned of wrapping (``$…$``,
markdown bold, a trailing full stop, a currency sign, thousands commas, trailing units or
prose after a number) — never converted (``-3.5`` stays ``-3.5``, not ``-7/2``).

`answers_equal` compares by value: numbers exactly as fractions (the fast path: ``0.5`` = ``1/2``
= ``.50``), anything else through math-verify (``\\frac{1}{2}`` = 0.5, ``2\\sqrt{3}`` =
``\\sqrt{12}``), falling back to equal text. `answer_key` groups equal numbers for votes.

Not here: which statements a format accepts (engine/formats.py chooses a reader: the embedded
model's format reads only its own ``The answer is N.``, engine/steps.py), or gold answers in
data files (engine/evaluation/datasets.py reads ``#### 18`` and ``\\boxed{}`` there with `read_answer`).
"""

from __future__ import annotations

import functools
import re
import threading
from fractions import Fraction

NO_ANSWER = "no answer stated"          # what the UI says where no answer could be read

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
# statement heads; a statement's body is the rest of its line (the next statement on the same
# line starts a statement of its own, and the last one wins)
_HASHES = re.compile(r"^[ \t]*####[ \t]*", re.M)
_ANSWER_IS = re.compile(r"\b(?:the\s+)?(?:final\s+)?answer\s+is\s*:?\s*", re.I)
_ANSWER_LABEL = re.compile(r"(?:^|(?<=[\s*#>(]))(?:\*\*|__)?(?:final\s+)?answer(?:\*\*|__)?\s*[:：]\s*(?:\*\*|__)?",
                           re.I | re.M)
# a number as written: sign, currency, thousands commas, decimals, a fraction, a percent sign
_NUMBER = re.compile(r"(?P<sign>[-−–]?)\s*(?:\\?\$|€|£|¥)?\s*(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
                     r"(?:\s*/\s*(?P<den>\d+))?(?P<pct>\s*\\?%)?")
_PLAIN_NUMBER = re.compile(r"^-?(?:\d+(?:\.\d*)?|\.\d+)(?:/\d+)?$")
_TEXT_WRAP = re.compile(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}")
# after a number, what may follow and still leave the number the answer: units or prose after a
# space, punctuation, LaTeX spacing or text; a letter right after the digits ("3x", "2n") makes an
# expression, not a number
_TAIL_OK = re.compile(r"^(?:[\s.,;:!)*]|\\[,;! ]|\\text|\\mbox|\\mathrm|\{|\}|\\%|%|\(|'|’|°)")


def _balanced(text: str, open_at: int) -> tuple[str, int] | None:
    """(content, end) of the brace group whose ``{`` is at ``open_at``; None when unbalanced."""
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1:i], i + 1
    return None


def _boxed(text: str) -> list[tuple[int, str]]:
    """(start, content) of every ``\\boxed{...}`` in ``text``, nested braces kept."""
    out = []
    for m in _BOXED.finditer(text):
        got = _balanced(text, m.end() - 1)
        if got is not None:
            out.append((m.start(), got[0]))
    return out


def _strip_wrapping(s: str) -> str:
    s = s.strip()
    s = re.sub(r"^(?:\*\*|__)|(?:\*\*|__)$", "", s).strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right) and len(s) > len(left) + len(right) - 1:
            s = s[len(left):len(s) - len(right)].strip()
    return s


def _leading_number(s: str) -> str | None:
    """The number a text starts with, when what follows it is units or prose; as written, minus
    currency signs and thousands commas: ``"$1,200.50 per week"`` -> ``"1200.50"``."""
    m = _NUMBER.match(s)
    if not m:
        return None
    rest = s[m.end():]
    if rest and not _TAIL_OK.match(rest):
        return None                     # "3 + 4 = 7", "2^{3}", "18\sqrt{2}": an expression, not a number
    if re.match(r"^\s*[-+*/^=]", rest) or re.match(r"^\s*\\(?:sqrt|frac|pi|cdot|times)", rest):
        return None
    out = ("-" if m.group("sign") else "") + m.group("num").replace(",", "")
    if m.group("den"):
        out += "/" + m.group("den")
    if m.group("pct"):
        out += "%"
    return out


def clean_answer(body: str) -> str | None:
    """The answer in a statement's body (what follows "The answer is", a ``\\boxed{}``'s
    content): its boxed part if it has one, else the number it starts with, else the body up
    to the end of its sentence. None when nothing is left."""
    boxed = _boxed(body)
    if boxed:
        body = boxed[-1][1]
    s = _strip_wrapping(body)
    s = _TEXT_WRAP.sub(r"\1", s).replace("\\$", "$").replace("\\!", "").strip()
    number = _leading_number(s)
    if number is not None:
        return number
    if "=" in s:                # "2 * 4 = 8 apples", "x = 5": the result after the last "="
        number = _leading_number(s.rsplit("=", 1)[1].strip())
        if number is not None:
            return number
    s = re.split(r"(?<=[^\d\s])\.\s|\.\s*$|\s+(?:I hope|which is|so |because)\b", s, maxsplit=1)[0]
    s = _strip_wrapping(s.strip().rstrip(".;,:!").strip())
    return s or None


def statements(text: str) -> list[tuple[int, str, str]]:
    """Every answer statement in ``text``: (start, kind, body), in order of where it starts.
    Kinds: ``boxed``, ``hashes`` (``#### 18``), ``answer_is``, ``label`` (``Answer: 18``)."""
    def line_after(end: int) -> str:
        stop = text.find("\n", end)
        return text[end:] if stop < 0 else text[end:stop]

    found = [(s, "boxed", c) for s, c in _boxed(text)]
    for kind, head in (("hashes", _HASHES), ("answer_is", _ANSWER_IS), ("label", _ANSWER_LABEL)):
        found += [(m.start(), kind, line_after(m.end())) for m in head.finditer(text)]
    return sorted(found, key=lambda f: f[0])


def read_answer(text: str | None) -> str | None:
    """The last answer stated in ``text``, as written (see the module docstring), else None.

    ``read_answer("... so she earns $18 a day.\\n#### 18")`` is ``"18"``;
    ``read_answer("The final answer is $\\\\boxed{\\\\frac{1}{2}}$. I hope it is correct.")`` is
    ``"\\\\frac{1}{2}"``."""
    if not text:
        return None
    for _, _, body in reversed(statements(text)):
        a = clean_answer(body)
        if a:
            return a
    return None


# ---- comparing -------------------------------------------------------------------------------

def _as_fraction(a: str) -> Fraction | None:
    s = a.strip().rstrip(".").replace(",", "").replace("−", "-").lstrip("$").replace("$", "")
    if not _PLAIN_NUMBER.match(s):
        return None
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def answer_key(a: str) -> str:
    """A key equal for answers that are the same number (``"18.00"``, ``"18"``): what votes
    group by. Other answers key as their stripped text."""
    f = _as_fraction(a)
    if f is None:
        return a.strip()
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"


def _timeout() -> int | None:
    """math-verify's timeout in seconds: its timeouts use SIGALRM, which only the main thread may
    set (the app's runs are worker threads), so elsewhere it runs without one."""
    return 5 if threading.current_thread() is threading.main_thread() else None


@functools.lru_cache(maxsize=4096)
def _parsed(a: str):
    from math_verify import parse       # imported here: it loads sympy (about a second)
    wrapped = a if "$" in a else f"${a}$"
    return tuple(parse(wrapped, parsing_timeout=_timeout()))


def answers_equal(a: str | int | None, b: str | int | None) -> bool:
    """Whether two answers have the same value; None never equals anything.

    Numbers compare as fractions (``"0.5"`` = ``"1/2"``, ``"1,065"`` = ``"1065"``); anything
    else with math-verify (``"\\\\frac{1}{2}"`` = ``"0.5"``), else as equal text."""
    if a is None or b is None:
        return False
    a, b = str(a), str(b)
    fa, fb = _as_fraction(a), _as_fraction(b)
    if fa is not None and fb is not None:
        return fa == fb
    if a.strip() == b.strip():
        return True
    pa, pb = _parsed(a), _parsed(b)
    if not pa or not pb:
        return False
    from math_verify import verify
    return bool(verify(list(pb), list(pa), timeout_seconds=_timeout()))
