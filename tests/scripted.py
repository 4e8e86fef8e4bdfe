"""Stand-in backends for tests of pure search logic (never the product, never a model test).

`ScriptBackend` holds what every stand-in shares: the plain-step prompt, the ``Step 1:``
solution prefix, a record of every prompt it was given, and `reply`'s text turned into a
`Generation` of word tokens. A test's subclass only says what to write for each prompt.
"""

from __future__ import annotations

import re
from typing import Callable

from engine.models.base import Generation, ModelInfo, TokenLogprob


def word_generation(text: str, prompt: str, logprob: Callable[[int], float] = lambda j: -0.1) -> Generation:
    """``text`` as one token per word (trailing space kept), token j with ``logprob(j)``."""
    toks = tuple(TokenLogprob(j, w, logprob(j), ()) for j, w in enumerate(re.findall(r"\S+\s*", text)))
    return Generation(text, toks, "stop", "\n", len(prompt.split()), 0)


class ScriptBackend:
    # a small vocabulary, as the embedded model's: formats.auto_name picks the embedded format
    # (a vocabulary size of 0 means "not known", a server's, and picks the base format)
    info = ModelInfo("scripted", "test", 0, "cpu", "float32", 64, 4096, False, "Scripted")

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def render_prompt(self, question: str) -> str:
        return f"Question: {question}\n"

    def solution_prefix(self) -> str:
        return "Step 1:"

    def reply(self, i: int, prompt: str, prompts: list[str], sampling, stop, seed: int) -> Generation:
        """The generation for ``prompts[i]``."""
        raise NotImplementedError

    def generate(self, prompts, *, sampling, stop, max_new_tokens, seed, should_stop=None):
        prompts = list(prompts)
        self.prompts += prompts
        return [self.reply(i, p, prompts, sampling, stop, seed) for i, p in enumerate(prompts)]
