"""The sampling lab: what min-p, top-p and top-k keep, token by token, on real model logits.

For a prompt and a generation (greedy or sampled) the lab gives, at every position, the
model's top tokens with their probabilities, ``p_max``, the min-p threshold
``p_base * p_max``, the pools that min-p, top-p and top-k keep at the same temperature (each
alone, temperature first), the entropy and the token actually drawn (`analyse`). At any one
position it runs the same logits through each engine's stage order and through a hand-made
order (`engine_orders`), and it can branch: keep the first tokens and resample the rest with
another sampler or temperature (`branch`).

Every pool is computed by the stage functions of engine/sampling.py, so the lab shows exactly
what the backend samples from. Probabilities named ``p`` are the model's own (softmax of the
raw logits, temperature 1); ``p_t`` are after temperature.

Every view needs the model's whole next-token distribution at every position: a model on an
inference server returns only its top-k alternatives (engine/models/server_backend.py), so the
lab refuses it with one line (`check_full_distribution`) rather than draw pools from a
truncated distribution.

Not here: drawing tokens (the backend), the temperature sweep (engine/evaluation/sweep.py), figures (app/).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import torch

from engine import sampling as S
from engine.models.base import Generation, InputError, StopSpec

VIEWS = ("min_p", "top_p", "top_k")                   # the truncations compared side by side
VIEW_LABELS = {"min_p": "min-p", "top_p": "top-p", "top_k": "top-k"}
DRAWS = ("greedy", "min_p", "top_p", "top_k", "plain")  # what can draw a lab generation
DRAW_LABELS = {"greedy": "greedy", "min_p": "min-p", "top_p": "top-p", "top_k": "top-k",
               "plain": "plain sampling (temperature only)"}
TRANSFORMERS_DEFAULT_TOP_K = 50     # GenerationConfig._get_default_generation_params (docs/sampling.md)
ENGINE_LABELS = {"transformers": "transformers", "vllm": "vLLM V1", "llama.cpp": "llama.cpp"}
MAX_TOP_N = 200


def _check(name: str, value, ok: bool, expect: str) -> None:
    if not ok:
        raise ValueError(f"{name} must be {expect}, got {value!r}")


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _whole(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass(frozen=True)
class LabConfig:
    """The sampler settings the lab compares, all at one temperature.

    ``temperature`` must be above 0: a greedy generation is still viewed at some temperature
    (1 shows the model's own distribution)."""

    temperature: float = 1.0
    min_p: float = 0.1
    top_p: float = 0.9
    top_k: int = 40
    top_n: int = 20             # tokens listed per position

    def __post_init__(self) -> None:
        _check("temperature", self.temperature, _num(self.temperature) and 0 < self.temperature <= 100,
               "a number above 0 and at most 100 (the views need a temperature; draw greedily instead)")
        _check("min_p", self.min_p, _num(self.min_p) and 0 < self.min_p <= 1, "in (0, 1]")
        _check("top_p", self.top_p, _num(self.top_p) and 0 < self.top_p <= 1, "in (0, 1]")
        _check("top_k", self.top_k, _whole(self.top_k) and self.top_k >= 1, "a whole number >= 1")
        _check("top_n", self.top_n, _whole(self.top_n) and 1 <= self.top_n <= MAX_TOP_N,
               f"a whole number from 1 to {MAX_TOP_N}")

    def draw(self, name: str) -> S.SamplingConfig:
        """The sampler that draws a generation for ``name`` in `DRAWS`."""
        t = self.temperature
        table = {"greedy": S.GREEDY, "plain": S.SamplingConfig(temperature=t),
                 "min_p": S.SamplingConfig(temperature=t, min_p=self.min_p),
                 "top_p": S.SamplingConfig(temperature=t, top_p=self.top_p),
                 "top_k": S.SamplingConfig(temperature=t, top_k=self.top_k)}
        if name not in table:
            raise ValueError(f"sampler must be one of {DRAWS}, got {name!r}")
        return table[name]

    def to_json(self) -> dict:
        return asdict(self)


def entropy(probs: torch.Tensor) -> float:
    """Shannon entropy in nats of one distribution ``(vocab,)``; zero-probability tokens add 0."""
    p = probs[probs > 0]
    return float(-(p * p.log()).sum())


@dataclass(frozen=True)
class TokenRow:
    token_id: int
    text: str
    p: float                     # the model's own probability (temperature 1)
    p_t: float                   # after temperature
    kept: tuple[str, ...]        # the views (min_p, top_p, top_k) whose pool holds it


@dataclass(frozen=True)
class PositionView:
    """One position of a generation, seen through min-p, top-p and top-k at one temperature."""

    position: int
    drawn_id: int
    drawn: str
    drawn_p: float               # model's own probability of the drawn token
    drawn_p_t: float             # after temperature
    drawn_rank: int              # 1 = the most likely token
    p_max: float                 # largest probability after temperature
    threshold: float             # min-p threshold p_base * p_max
    entropy: float               # nats, after temperature
    entropy_model: float         # nats, the model's own distribution
    pool: dict[str, int]         # view -> number of tokens it keeps
    pool_mass: dict[str, float]  # view -> the probability (after temperature) its pool holds
    drawn_in: dict[str, bool]    # view -> whether the drawn token is in its pool
    top: tuple[TokenRow, ...]    # the top_n tokens by probability, most likely first

    def to_json(self) -> dict:
        return asdict(self)


def _kept_mask(logits: torch.Tensor) -> torch.Tensor:
    return logits > float("-inf")


def position_view(logits: torch.Tensor, drawn_id: int, cfg: LabConfig,
                  token_text: Callable[[int], str], position: int = 0) -> PositionView:
    """What each view keeps from one position's raw logits ``(vocab,)``; the input is unchanged.
    E.g. p = [0.5, 0.3, 0.15, 0.05] at T = 1 with min-p 0.2: threshold 0.1, min-p keeps 3 tokens."""
    x = logits.detach().float().reshape(1, -1)                       # (1, vocab)
    probs = x.softmax(-1)[0]
    xt = S.temperature(x, cfg.temperature)
    probs_t = xt.softmax(-1)[0]
    masks = {"min_p": _kept_mask(S.min_p(xt, cfg.min_p))[0], "top_p": _kept_mask(S.top_p(xt, cfg.top_p))[0],
             "top_k": _kept_mask(S.top_k(xt, cfg.top_k))[0]}
    p_max = float(probs_t.max())
    n = min(cfg.top_n, probs.numel())
    _, top_ids = torch.topk(probs_t, n)
    rows = tuple(TokenRow(int(i), token_text(int(i)), float(probs[i]), float(probs_t[i]),
                          tuple(v for v in VIEWS if bool(masks[v][i]))) for i in top_ids.tolist())
    return PositionView(
        position=position, drawn_id=int(drawn_id), drawn=token_text(int(drawn_id)),
        drawn_p=float(probs[drawn_id]), drawn_p_t=float(probs_t[drawn_id]),
        drawn_rank=int((probs > probs[drawn_id]).sum()) + 1,
        p_max=p_max, threshold=cfg.min_p * p_max, entropy=entropy(probs_t), entropy_model=entropy(probs),
        pool={v: int(m.sum()) for v, m in masks.items()},
        pool_mass={v: float(probs_t[m].sum()) for v, m in masks.items()},
        drawn_in={v: bool(m[drawn_id]) for v, m in masks.items()}, top=rows)


@dataclass
class LabRun:
    """A generation and its per-position views: what the lab's figures draw."""

    model: str
    prompt: str
    draw: str                          # which sampler drew it (`DRAWS`)
    sampling: S.SamplingConfig         # the exact config it was drawn with
    seed: int
    config: LabConfig
    generation: Generation
    positions: list[PositionView] = field(default_factory=list)
    logits: torch.Tensor | None = field(default=None, repr=False)    # (len, vocab): raw, per position

    def series(self) -> dict[str, list]:
        """Per position: pool size of each view, entropy, p_max and the drawn token's probability."""
        out: dict[str, list] = {f"pool_{v}": [p.pool[v] for p in self.positions] for v in VIEWS}
        out.update(entropy=[p.entropy for p in self.positions], p_max=[p.p_max for p in self.positions],
                   drawn_p_t=[p.drawn_p_t for p in self.positions])
        return out

    def to_json(self) -> dict:
        return {"model": self.model, "prompt": self.prompt, "draw": self.draw, "sampling": self.sampling.to_json(),
                "seed": self.seed, "config": self.config.to_json(), "generation": self.generation.to_json(),
                "positions": [p.to_json() for p in self.positions]}


def views(logits: torch.Tensor, token_ids: Sequence[int], cfg: LabConfig,
          token_text: Callable[[int], str]) -> list[PositionView]:
    """One `PositionView` per token of ``token_ids``, row ``j`` of ``logits`` being the raw
    logits token ``j`` was drawn from. Cheap: the lab re-views a generation at new settings."""
    return [position_view(logits[j], token_ids[j], cfg, token_text, position=j) for j in range(len(token_ids))]


def full_distribution(backend) -> bool:
    """Whether ``backend`` can give the whole next-token distribution the lab reads (a local
    model can; a model on a server gives only its top-k alternatives)."""
    return callable(getattr(backend, "continuation_logits", None))


def check_full_distribution(backend) -> None:
    """An `InputError` (one line) when ``backend`` is on a server: see the module docstring."""
    if not full_distribution(backend):
        raise InputError(f"the Sampling lab needs the whole next-token distribution at every position, but "
                         f"{backend.info.name} runs on a server that returns only its top-k alternatives: "
                         "choose a local model for the lab")


def analyse(backend, prompt: str, generation: Generation, cfg: LabConfig) -> list[PositionView]:
    """One `PositionView` per generated token, from one forward pass over prompt + generation
    (``backend.continuation_logits``)."""
    check_full_distribution(backend)
    ids = generation.token_ids
    if not ids:
        return []
    return views(backend.continuation_logits(prompt, ids), ids, cfg, backend.token_text)


def run_lab(backend, prompt: str, *, draw: str, cfg: LabConfig, seed: int, max_new_tokens: int,
            stop: StopSpec = StopSpec()) -> LabRun:
    """Generate from ``prompt`` with the ``draw`` sampler (at ``cfg``'s values) and view every
    position; the run keeps the raw logits so it can be re-viewed at other settings."""
    check_full_distribution(backend)
    sampling = cfg.draw(draw)
    gen = backend.generate([prompt], sampling=sampling, stop=stop, max_new_tokens=max_new_tokens, seed=seed)[0]
    ids = gen.token_ids
    logits = backend.continuation_logits(prompt, ids) if ids else torch.empty((0, backend.info.vocab_size))
    return LabRun(backend.info.name, prompt, draw, sampling, seed, cfg, gen,
                  views(logits, ids, cfg, backend.token_text), logits)


# ---- the same logits through each engine's order ----------------------------------------------

@dataclass(frozen=True)
class OrderResult:
    """One stage order applied to one position's logits."""

    name: str
    order: tuple[str, ...]
    sampling: S.SamplingConfig
    stages: tuple[tuple[str, int], ...]      # (stage, pool size after it), in order
    kept: tuple[int, ...]                    # surviving token ids, most likely first
    probs: tuple[float, ...]                 # their sampling probabilities (renormalised)
    note: str = ""

    @property
    def size(self) -> int:
        return len(self.kept)

    def prob_of(self, token_id: int) -> float:
        return dict(zip(self.kept, self.probs)).get(token_id, 0.0)

    def to_json(self) -> dict:
        return {"name": self.name, "order": list(self.order), "sampling": self.sampling.to_json(),
                "stages": [list(s) for s in self.stages], "kept": list(self.kept), "probs": list(self.probs),
                "note": self.note}


def run_order(name: str, logits: torch.Tensor, sampling: S.SamplingConfig, note: str = "") -> OrderResult:
    """``logits`` ``(vocab,)`` through ``sampling``'s stages in its order; the input is unchanged."""
    x = logits.detach().float().reshape(1, -1)
    trace = S.chain_trace(x, sampling)
    final = trace[-1][1] if trace else x
    probs = final.softmax(-1)[0]
    kept = _kept_mask(final)[0].nonzero().flatten()
    kept = kept[torch.argsort(probs[kept], descending=True, stable=True)]
    return OrderResult(name, sampling.order, sampling,
                       tuple((stage, int(_kept_mask(t)[0].sum())) for stage, t in trace),
                       tuple(int(i) for i in kept.tolist()), tuple(float(probs[i]) for i in kept.tolist()), note)


def check_order(order: Sequence[str]) -> tuple[str, ...]:
    """A hand-made stage order: each of `engine.sampling.STAGES` exactly once."""
    order = tuple(order)
    if sorted(order) != sorted(S.STAGES):
        raise ValueError(f"a hand-made order must use each stage once ({', '.join(S.STAGES)}), "
                         f"got {', '.join(map(str, order)) or 'nothing'}")
    return order


def engine_orders(logits: torch.Tensor, *, temperature: float, top_k: int, top_p: float, min_p: float,
                  custom: Sequence[str] | None = None) -> list[OrderResult]:
    """The same logits through the transformers, vLLM V1 and llama.cpp orders (and ``custom``).

    With ``top_k == 0`` (off) a second transformers row shows what ``model.generate()`` does
    when top_k is simply not passed: its default top_k of 50 still applies."""
    if not (_num(temperature) and temperature > 0):
        raise ValueError(f"temperature must be above 0 for the order comparison, got {temperature!r}")
    base = dict(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)
    rows = [run_order(ENGINE_LABELS["transformers"], logits, S.SamplingConfig(**base, order=S.TRANSFORMERS_ORDER),
                      "temperature, top-k, top-p, min-p")]
    if top_k == 0:
        rows.append(run_order("transformers, top_k not passed", logits,
                              S.SamplingConfig(**{**base, "top_k": TRANSFORMERS_DEFAULT_TOP_K},
                                               order=S.TRANSFORMERS_ORDER),
                              f"generate() fills an unset top_k with {TRANSFORMERS_DEFAULT_TOP_K}; "
                              "pass top_k=0 to switch it off"))
    rows.append(run_order(ENGINE_LABELS["vllm"], logits, S.SamplingConfig(**base, order=S.VLLM_ORDER),
                          "temperature, min-p, then top-k and top-p"))
    rows.append(run_order(ENGINE_LABELS["llama.cpp"], logits, S.SamplingConfig(**base, order=S.LLAMA_CPP_ORDER),
                          "top-k, top-p, min-p, temperature last"))
    if custom is not None:
        order = check_order(custom)
        rows.append(run_order("by hand", logits, S.SamplingConfig(**base, order=order), ", ".join(order)))
    return rows


# ---- branch here -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Branch:
    """A generation cut at ``position`` and continued with another sampler."""

    position: int
    prefix: str                  # the generated text kept (tokens 0 .. position-1)
    original: str                # the original text from ``position`` on
    generation: Generation       # the new continuation
    sampling: S.SamplingConfig
    seed: int

    def to_json(self) -> dict:
        return {"position": self.position, "prefix": self.prefix, "original": self.original,
                "generation": self.generation.to_json(), "sampling": self.sampling.to_json(), "seed": self.seed}


def branch(backend, prompt: str, generation: Generation, position: int, *, sampling: S.SamplingConfig,
           seed: int, max_new_tokens: int, stop: StopSpec = StopSpec()) -> Branch:
    """Keep the first ``position`` generated tokens and resample the rest: ``generate`` with the
    prompt plus those tokens' text as the new prompt (re-encoded, as any prompt is)."""
    check_full_distribution(backend)
    n = len(generation.tokens)
    if not _whole(position) or not 0 <= position < max(n, 1):
        raise ValueError(f"position must be a whole number from 0 to {max(n - 1, 0)}, got {position!r}")
    ids = generation.token_ids
    prefix = backend.tokenizer.decode(ids[:position]) if position else ""
    text = generation.text
    original = text[len(prefix):] if text.startswith(prefix) else backend.tokenizer.decode(ids[position:])
    gen = backend.generate([prompt + prefix], sampling=sampling, stop=stop, max_new_tokens=max_new_tokens,
                           seed=seed)[0]
    return Branch(position, prefix, original, gen, sampling, seed)
