"""What every search method shares: the step proposer, node events, rewards, answer rules.

`StepProposer` is the seam between a search and the model (llm-reasoners' WorldModel /
SearchConfig split): it turns a path into a prompt, asks the backend for continuations in
one batched call, and says whether a step ends the solution. Searches never build prompts:
the model's prompt format (engine/formats.py) writes the root prompt, delimits steps, sets the
budgets and reads answers.

Not here: any search's control flow (mcts.py, baselines.py).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

from engine import events as E
from engine.answers import answer_key
from engine.demo_model.formats import STEP_DELIMITER
from engine.formats import PromptFormat, format_of
from engine.models.base import Generation, StopSpec, stop_if
from engine.sampling import SamplingConfig
from engine.steps import answers_equal, extract_answer

REWARD_SOURCES = ("self_consistency", "gold", "ppm")
ANSWER_RULES = ("majority", "most_visited", "highest_q", "ppm")   # ppm: the terminal the PPM scores highest
MAX_STEP_TOKENS = 96          # one step; the embedded model's steps are ~15 tokens
MAX_SOLUTION_TOKENS = 256     # a whole remaining solution


class SampledConfig:
    """Base of the method configs that carry ``temperature``, ``top_p`` and ``min_p``: their
    sampling chain (validated by SamplingConfig) and their JSON (the session's config)."""

    @property
    def sampling(self) -> SamplingConfig:
        return SamplingConfig(temperature=self.temperature, top_p=self.top_p, min_p=self.min_p)

    def to_json(self) -> dict:
        return asdict(self)


def check_field(name: str, value, ok: bool, expect: str) -> None:
    """Config validation: a ValueError naming the field and the value it got (its repr cut
    to 60 characters, so a 300-digit number or a pasted page stays one readable line)."""
    if not ok:
        shown = repr(value)
        raise ValueError(f"{name} must be {expect}, got {shown if len(shown) <= 60 else shown[:57] + '...'}")


def is_whole(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def is_number(x) -> bool:
    """A real number that is not a bool (True is an int in Python, never a setting's value);
    NaN and infinities pass here and fail the caller's ``lo <= x <= hi``."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


@dataclass
class TokenCounter:
    generated: int = 0
    computed: int = 0
    reused: int = 0

    def add(self, gens: Sequence[Generation]) -> None:
        for g in gens:
            self.generated += len(g.tokens)
            self.computed += g.prompt_tokens + len(g.tokens)
            self.reused += g.reused_tokens

    def finished(self, status: str, message: str = "") -> E.RunFinished:
        return E.RunFinished(status=status, generated_tokens=self.generated, computed_tokens=self.computed,
                             reused_tokens=self.reused, message=message)


@dataclass
class Step:
    text: str
    tokens: list            # TokenLogprob.to_json() rows
    terminal: bool
    answer: str | None

    @property
    def mean_logprob(self) -> float | None:
        return sum(t[2] for t in self.tokens) / len(self.tokens) if self.tokens else None


CONTEXT_FULL = Step("[context full]", [], True, None)   # the model's context has no room for another step


def split_generation(gen: Generation, delimiter: str = STEP_DELIMITER, prefix: str = "",
                     fmt: PromptFormat | None = None) -> list[Step]:
    """Cut a multi-step generation into steps at the delimiter, keeping each token with the
    step its text starts in (a token like ``".\\n"`` ends its step). ``prefix`` is text the
    search wrote before the generation (a forced ``Step 1:``): it opens the first step.
    ``fmt`` reads the answers (default: the embedded format); where it says
    ``skip_leading_blank``, a delimiter before a step has any text does not end it, so blank
    lines never become steps of their own."""
    read = (fmt.read_answer if fmt is not None else extract_answer)
    merge_blank = fmt is not None and fmt.skip_leading_blank
    steps, text, toks = [], prefix, []
    for t in gen.tokens:
        text += t.token
        toks.append(t.to_json())
        if delimiter in t.token and not (merge_blank and not text.strip()):
            steps.append((text, toks))
            text, toks = "", []
    if toks:
        steps.append((text, toks))
    if len(steps) == 1:
        # the decoded text is authoritative (single-token texts need not concatenate to it)
        steps = [(prefix + gen.text, steps[0][1])]
    out = []
    for i, (text, toks) in enumerate(steps):
        answer = read(text)
        last = i == len(steps) - 1
        out.append(Step(text, toks, answer is not None or (last and gen.stop_reason == "eos"), answer))
        if answer is not None:
            break
    return out


class StepProposer:
    """Proposes steps for a path with a backend. ``prompt`` is the root text."""

    def __init__(self, backend, question: str, *, sampling: SamplingConfig, delimiter: str | None = None,
                 max_step_tokens: int = MAX_STEP_TOKENS, counter: TokenCounter | None = None,
                 should_stop: Callable[[], bool] | None = None):
        self.backend = backend
        self.format = format_of(backend)
        self.prompt = self.format.root_prompt(backend, question)
        self.sampling = sampling
        self.delimiter = self.format.delimiter if delimiter is None else delimiter
        self.max_step_tokens = max_step_tokens
        self.counter = counter or TokenCounter()
        self.should_stop = should_stop or (lambda: False)
        # the first step of a solution is seeded with the format's prefix, as rStar forces an
        # action by writing its prefix
        self.first_prefix = self.format.solution_prefix
        # a run starts from an empty prefix cache (engine/models/prefix_cache.py), so its events
        # depend only on model, config and seed, never on what ran before on the same backend
        getattr(backend, "reset_prefix_cache", lambda: None)()

    def _prompts(self, path_texts: Sequence[str], root: str | None = None) -> tuple[list[str], list[str]]:
        """(prompts, forced prefixes) for paths given as the text after the root prompt (``root``:
        another root for this request)."""
        prefixes = [self.first_prefix if p == "" else "" for p in path_texts]
        return [(self.prompt if root is None else root) + p + f for p, f in zip(path_texts, prefixes)], prefixes

    def room(self, prompts: Sequence[str]) -> int:
        """New tokens the longest prompt still has before the model's context is full."""
        encode = getattr(self.backend, "encode", None)
        if encode is None:
            return self.format.max_solution_tokens
        return self.backend.info.context_length - max(len(encode(p)) for p in set(prompts))

    def _generate(self, prompts: list[str], sampling: SamplingConfig, stop: StopSpec, max_new: int,
                  seed: int) -> list[Generation] | None:
        """The backend's generations, or None when the context has no room left: a path that
        long ends there (a terminal step without an answer) instead of failing the run."""
        stop_if(self.should_stop)
        room = self.room(prompts)
        if room < 1:
            return None
        gens = self.backend.generate(prompts, sampling=sampling, stop=stop, max_new_tokens=min(max_new, room),
                                     seed=seed, should_stop=self.should_stop)
        self.counter.add(gens)
        return gens

    def next_steps(self, path_texts: Sequence[str], *, seed: int, sampling: SamplingConfig | None = None) -> list[Step]:
        """One next step for each path (batched); a path is the text after the root prompt."""
        prompts, prefixes = self._prompts(path_texts)
        gens = self._generate(prompts, sampling or self.sampling, self.step_stop(), self.max_step_tokens, seed)
        if gens is None:
            return [CONTEXT_FULL for _ in path_texts]
        out = []
        for g, f in zip(gens, prefixes):
            steps = split_generation(g, self.delimiter, f, self.format)
            out.append(steps[0] if steps else Step(f + g.text, [t.to_json() for t in g.tokens], True, None))
        return out

    def complete(self, path_texts: Sequence[str], *, seed: int, sampling: SamplingConfig | None = None,
                 root: str | None = None) -> list[list[Step]]:
        """The rest of the solution for each path (batched), split into steps. ``root`` replaces
        the root prompt (a method's own prompt for this request, written by the format)."""
        prompts, prefixes = self._prompts(path_texts, root)
        gens = self._generate(prompts, sampling or self.sampling, self.format.stop(), self.format.max_solution_tokens,
                              seed)
        if gens is None:
            return [[CONTEXT_FULL] for _ in path_texts]
        return [split_generation(g, self.delimiter, f, self.format) or [Step("", [], True, None)]
                for g, f in zip(gens, prefixes)]

    def step_stop(self) -> StopSpec:
        """Where one step ends: the delimiter, after the step has text where the format says so."""
        return self.format.stop((self.delimiter,))

    def read_answer(self, text: str | None) -> str | None:
        """The answer ``text`` states, read the way the model's format writes answers."""
        return self.format.read_answer(text)


def node_event(node_id: int, parent: int, depth: int, action: str, step: Step, gold: str | None,
               force_terminal: bool = False) -> E.NodeProposed:
    terminal = step.terminal or force_terminal
    return E.NodeProposed(node=node_id, parent=parent, depth=depth, action=action, text=step.text,
                          tokens=step.tokens, terminal=terminal, answer=step.answer,
                          correct=None if gold is None or not terminal else answers_equal(step.answer, gold),
                          prior=step.mean_logprob)


def reward_for(answer: str | None, source: str, gold: str | None, terminal_answers: Sequence[str | None]) -> tuple[float, dict]:
    """Terminal reward. self_consistency: the answer's share among all terminal answers found so
    far (no answer: 0). gold: +1 right, -1 wrong or no answer (uses the answer key)."""
    if source == "gold":
        if gold is None:
            raise ValueError("reward 'gold' needs a gold answer (--answer)")
        return (1.0 if answers_equal(answer, gold) else -1.0), {}
    found = [a for a in terminal_answers if a is not None]
    if answer is None or not found:
        return 0.0, {"share": 0, "of": len(found)}
    same = sum(1 for a in found if answer_key(a) == answer_key(answer))
    return same / len(found), {"share": same, "of": len(found)}


def normalize_gold(gold) -> str | None:
    """The answer key as text, or None when there is none (None or blank)."""
    return None if gold is None or str(gold).strip() == "" else str(gold).strip()


def backprop_event(tree, path: list[int], reward: float) -> E.Backprop:
    """One more visit and ``reward`` more value for every node on ``path``, read from ``tree``."""
    before = [[tree[n].visits, tree[n].value] for n in path]
    return E.Backprop(path=path, reward=reward, before=before, after=[[v + 1, w + reward] for v, w in before])


def majority_answer(answers: Sequence[str | None]) -> str | None:
    """Most common non-empty answer; ties go to the one found first."""
    counts = Counter(answer_key(a) for a in answers if a is not None)     # "18" and "18.00" vote together
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a in answers if a is not None and counts[answer_key(a)] == best)


def uct_terms(q: float, visits: int, parent_visits: int, c: float) -> tuple[float | None, float | None]:
    """(explore, uct) for a child; unvisited children have no finite score (None)."""
    if visits == 0:
        return None, None
    explore = c * math.sqrt(math.log(max(parent_visits, 1)) / visits)
    return explore, q + explore
