"""The model backend protocol and the records it returns.

Every reasoning method talks to a model only through `ModelBackend`: batched generation
with per-token logprobs and alternatives, the full next-token distribution, and scoring a
given continuation. Records are plain dataclasses with a JSON form, so they can go into
search events unchanged.

Logprobs are always the model's own (softmax of the raw logits, temperature 1), whatever
sampler drew the token: confidence scores (LECO, semantic entropy) need the model's belief,
not the sampler's reshaped pool.

Not here: loading (transformers_backend.py), the list of embedded models (registry.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Protocol, Sequence

import torch

from engine.events import USER_STOP
from engine.sampling import SamplingConfig

MAX_NEW_TOKENS_LIMIT = 4096   # the most tokens one generate call may ask for


class ModelLoadError(Exception):
    """A model could not be loaded; the message says what to do."""


class InputError(ValueError):
    """Bad user input (empty prompt, prompt longer than the model's context, ...)."""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    source: str                 # path or hub id it was loaded from
    parameters: int
    device: str
    dtype: str
    vocab_size: int
    context_length: int
    chat_template: bool
    architecture: str

    def to_json(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        p = self.parameters
        size = f"{p / 1e9:.2f}B" if p >= 1e9 else f"{p / 1e6:.1f}M" if p >= 1e6 else f"{p / 1e3:.0f}K"
        size = size if p > 0 else "?"       # 0: not known (a server that does not say its size)
        return f"{self.name} ({self.architecture}, {size} parameters, {self.device}, {self.dtype})"


@dataclass(frozen=True)
class StopSpec:
    """When generation stops: any of ``strings`` appears in the new text, or EOS. With
    ``after_text``, a stop string counts only after the first non-blank character, so a chat
    model's reply that opens with a blank line is not a blank step."""

    strings: tuple[str, ...] = ()
    eos: bool = True
    after_text: bool = False

    def __post_init__(self) -> None:
        if any(not isinstance(s, str) or s == "" for s in self.strings):
            raise ValueError(f"stop strings must be non-empty strings, got {self.strings!r}")
        object.__setattr__(self, "strings", tuple(self.strings))


@dataclass(frozen=True)
class TokenLogprob:
    """One generated (or scored) token: its id, text, logprob and the top alternatives."""

    token_id: int
    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()   # (token text, logprob), most likely first

    def to_json(self) -> list:
        return [self.token_id, self.token, round(self.logprob, 6),
                [[t, round(lp, 6)] for t, lp in self.top]]

    @staticmethod
    def from_json(d: list) -> "TokenLogprob":
        return TokenLogprob(int(d[0]), d[1], float(d[2]), tuple((t, float(lp)) for t, lp in d[3]))


@dataclass(frozen=True)
class Generation:
    text: str
    tokens: tuple[TokenLogprob, ...]
    stop_reason: str             # "stop" (a stop string), "eos" or "length"
    stop_string: str | None = None
    prompt_tokens: int = 0       # prompt tokens the model computed for this sequence
    reused_tokens: int = 0       # prompt tokens whose key/values came from a cache

    @property
    def token_ids(self) -> list[int]:
        return [t.token_id for t in self.tokens]

    @property
    def logprobs(self) -> list[float]:
        return [t.logprob for t in self.tokens]

    def to_json(self) -> dict:
        return {"text": self.text, "tokens": [t.to_json() for t in self.tokens],
                "stop_reason": self.stop_reason, "stop_string": self.stop_string,
                "prompt_tokens": self.prompt_tokens, "reused_tokens": self.reused_tokens}

    @staticmethod
    def from_json(d: dict) -> "Generation":
        return Generation(d["text"], tuple(TokenLogprob.from_json(t) for t in d["tokens"]),
                          d["stop_reason"], d.get("stop_string"), d.get("prompt_tokens", 0),
                          d.get("reused_tokens", 0))


@dataclass
class TokenDistribution:
    """The full next-token distribution after a prompt: ``logits`` and ``probs`` are (vocab,)."""

    logits: torch.Tensor
    probs: torch.Tensor
    tokens: list[str] = field(repr=False, default_factory=list)   # id -> readable text

    def top(self, k: int = 10) -> list[tuple[str, float]]:
        values, ids = torch.topk(self.probs, min(k, self.probs.numel()))
        return [(self.tokens[i], float(v)) for v, i in zip(values.tolist(), ids.tolist())]


class Stopped(Exception):
    """The run was asked to stop (Stop, or a server's time limit): raised by a search between
    model calls, and by ``generate`` between two tokens when its ``should_stop()`` turns true (so
    Stop takes effect within one forward pass, not at the end of a long generation). Its text is
    the reason."""


def stop_if(should_stop) -> None:
    """Raise `Stopped` when ``should_stop()`` is true. A text it returns is the reason (the
    app's RunControl says when a server's time limit, not the user, ended the run); anything
    else truthy means the user pressed Stop."""
    why = should_stop() if should_stop is not None else None
    if why:
        raise Stopped(why if isinstance(why, str) else USER_STOP)


class ModelBackend(Protocol):
    info: ModelInfo

    def generate(self, prompts: Sequence[str], *, sampling: SamplingConfig, stop: StopSpec,
                 max_new_tokens: int, seed: int,
                 should_stop: Callable[[], bool] | None = None) -> list[Generation]: ...

    def distribution(self, prompt: str) -> TokenDistribution: ...

    def score(self, prompt: str, continuation: str) -> list[TokenLogprob]: ...
