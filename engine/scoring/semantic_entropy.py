"""Semantic entropy: cluster sampled answers by meaning, then measure entropy over the clusters.

Kuhn, Gal & Farquhar, "Semantic Uncertainty" (ICLR 2023) and Farquhar, Kossen, Kuhn & Gal,
"Detecting hallucinations in large language models using semantic entropy" (Nature 2024).

- Clustering (`cluster`): each answer, in sampling order, is compared with the first member of
  each existing cluster, in the order the clusters were made, and joins the first one it is
  equivalent to; otherwise it opens a new cluster. Equivalence is bidirectional:
  ``strict`` (the Nature paper's default): each entails the other; ``lenient`` (the official
  code's non-strict rule): neither contradicts the other and they are not both neutral.
- Judges (the `Judge` protocol, one verdict "does A entail B"): `MathJudge` (math-verify on the
  extracted final answers), `NLIJudge` (a sequence-classification NLI model by hub id or path),
  `LMJudge` (the loaded language model asked, a weak judge when the model is small).
- Estimators, pure functions of cluster ids and per-answer log-likelihoods (nats):
  `discrete_entropy` (cluster frequencies), `rao_entropy` (likelihood-weighted, Nature 2024),
  `mc_entropy_2023` (the Monte-Carlo estimator of the 2023 paper), `naive_entropy` (predictive
  entropy over raw sequences, for contrast). `sequence_loglik` makes the per-answer number;
  length normalisation (mean token logprob) is the default, as in both papers' code.

Not here: sampling the answers or routing retrieval (engine/search/sugar.py).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

from engine.formats import format_of
from engine.method_prompts import se_judge_prompt
from engine.models.base import ModelLoadError
from engine.steps import extract_answer

ENTAILMENT, NEUTRAL, CONTRADICTION = "entailment", "neutral", "contradiction"
VERDICTS = (ENTAILMENT, NEUTRAL, CONTRADICTION)
MODES = ("strict", "lenient")
LOGLIK = ("mean", "sum")
ESTIMATORS = ("discrete", "rao", "mc2023", "naive")


# ---- equivalence and clustering ------------------------------------------------------------

class Judge(Protocol):
    name: str
    note: str          # shown in the UI: what the judge is and how far to trust it

    def check(self, premise: str, hypothesis: str, question: str) -> str:
        """One of VERDICTS: does ``premise`` entail ``hypothesis`` (as answers to ``question``)?"""
        ...


def equivalent(forward: str, backward: str, mode: str = "strict") -> bool:
    """Bidirectional equivalence from the two verdicts (A→B, B→A)."""
    if mode == "strict":
        return forward == ENTAILMENT and backward == ENTAILMENT
    if mode == "lenient":
        pair = (forward, backward)
        return CONTRADICTION not in pair and pair != (NEUTRAL, NEUTRAL)
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


@dataclass(frozen=True)
class Comparison:
    """Answer ``a`` compared with cluster representative ``b`` (indices into the answers)."""
    a: int
    b: int
    forward: str        # a entails b?
    backward: str       # b entails a?
    equivalent: bool
    source: str = "judge"   # "judge", or "identical" (same text: equivalent without asking)


@dataclass
class Clustering:
    ids: list[int]                                   # cluster id per answer (0, 1, ... in order made)
    comparisons: list[Comparison] = field(default_factory=list)

    @property
    def clusters(self) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in range(max(self.ids, default=-1) + 1)]
        for i, c in enumerate(self.ids):
            out[c].append(i)
        return out


class VerdictCache:
    """Judge verdicts by (premise text, hypothesis text), so a pair is never judged twice
    (the strict and lenient clusterings share them)."""

    def __init__(self, judge: Judge, question: str):
        self.judge, self.question = judge, question
        self.verdicts: dict[tuple[str, str], str] = {}

    def __call__(self, premise: str, hypothesis: str) -> str:
        key = (premise, hypothesis)
        if key not in self.verdicts:
            v = self.judge.check(premise, hypothesis, self.question)
            if v not in VERDICTS:
                raise ValueError(f"judge {self.judge.name!r} returned {v!r}, not one of {VERDICTS}")
            self.verdicts[key] = v
        return self.verdicts[key]


def cluster(answers: Sequence[str], verdict, mode: str = "strict") -> Clustering:
    """Group ``answers`` by bidirectional equivalence (see the module docstring).

    ``verdict(premise, hypothesis) -> str`` is a judge's check (a `VerdictCache`, or any
    callable). Identical texts are equivalent without asking the judge. Example, with a judge
    for which "4" and "four" entail each other and "5" contradicts both:
    ``cluster(["4", "four", "5", "4"], ...).ids == [0, 0, 1, 0]``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    ids: list[int] = []
    reps: list[int] = []            # first member of each cluster
    comparisons = []
    for i, text in enumerate(answers):
        joined = None
        for cid, r in enumerate(reps):
            if answers[r] == text:
                comparisons.append(Comparison(i, r, ENTAILMENT, ENTAILMENT, True, "identical"))
                joined = cid
                break
            fwd, bwd = verdict(text, answers[r]), verdict(answers[r], text)
            same = equivalent(fwd, bwd, mode)
            comparisons.append(Comparison(i, r, fwd, bwd, same))
            if same:
                joined = cid
                break
        if joined is None:
            joined = len(reps)
            reps.append(i)
        ids.append(joined)
    return Clustering(ids, comparisons)


# ---- judges ----------------------------------------------------------------------------------

class MathJudge:
    """Mathematical equivalence of the final answers with math-verify. ``read_answer`` reads a
    final answer from a text: the model's format's reader (`engine.formats.PromptFormat.read_answer`:
    ``\\boxed{18}``, "The answer is 18.", ...); default, the embedded model's ``The answer is N.``.

    Same value: entailment; different values: contradiction; an answer missing: neutral."""

    name = "math"
    note = "math-verify on the extracted final answers (exact for numbers)"

    def __init__(self, read_answer: Callable[[str], str | None] | None = None) -> None:
        from math_verify import parse, verify      # imported here: it loads sympy (about a second)
        self._parse, self._verify = parse, verify
        self._read = read_answer or extract_answer

    def answer_of(self, text: str) -> str | None:
        return self._read(text)

    def check(self, premise: str, hypothesis: str, question: str = "") -> str:
        a, b = self.answer_of(premise), self.answer_of(hypothesis)
        if a is None or b is None:
            return NEUTRAL
        pa, pb = self._parse(a), self._parse(b)
        if not pa or not pb:        # math-verify could not read one of them
            return ENTAILMENT if a == b else NEUTRAL
        return ENTAILMENT if self._verify(pa, pb) else CONTRADICTION


def _nli_label(name: str) -> str | None:
    n = name.lower()
    for verdict, stem in ((ENTAILMENT, "entail"), (NEUTRAL, "neutral"), (CONTRADICTION, "contradict")):
        if stem in n:
            return verdict
    return None


class NLIJudge:
    """A natural-language-inference model (e.g. a DeBERTa MNLI checkpoint) by hub id or path.

    The premise and hypothesis are prefixed with the question, as the official code does
    (``condition_on_question``); the verdict is the arg-max class. The model's ``id2label`` must
    name entailment, neutral and contradiction classes."""

    name = "nli"

    def __init__(self, model: str, *, device: str = "auto"):
        if not model or not str(model).strip():
            raise ModelLoadError("the NLI judge needs a model: give a hub id or a local folder "
                                 "(e.g. microsoft/deberta-large-mnli)")
        import torch
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.model = AutoModelForSequenceClassification.from_pretrained(model).to(device).eval()
        except (OSError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelLoadError(f"cannot load NLI model {model!r}: {first}") from None
        labels = {i: _nli_label(str(n)) for i, n in self.model.config.id2label.items()}
        if sorted(v for v in labels.values() if v) != sorted(VERDICTS):
            raise ModelLoadError(f"{model!r} is not an NLI model: its labels "
                                 f"{sorted(self.model.config.id2label.values())} do not name "
                                 "entailment, neutral and contradiction")
        self.labels = labels
        self.device = device
        self.note = f"NLI model {model}"

    def check(self, premise: str, hypothesis: str, question: str = "") -> str:
        import torch
        a, b = (f"{question} {premise}".strip(), f"{question} {hypothesis}".strip())
        enc = self.tokenizer(a, b, return_tensors="pt", truncation=True).to(self.device)
        with torch.no_grad():
            logits = self.model(**enc).logits[0]          # (labels,)
        return self.labels[int(logits.argmax())]


LM_JUDGE_PROMPT = ('We are evaluating answers to the question "{question}".\n'
                   "Answer 1: {a}\nAnswer 2: {b}\n"
                   "Does Answer 1 semantically entail Answer 2? "
                   "Reply with one word: entailment, contradiction or neutral.")
WEAK_JUDGE_PARAMETERS = 1_000_000_000


class LMJudge:
    """The loaded language model asked whether answer A entails answer B.

    As in the official code's LLM judges, the prompt names the question and both answers and
    asks for entailment, contradiction or neutral. We do not parse free text: from the model's
    full next-token distribution we add up the probability of the tokens that begin each of the
    three words (``Ent``, ``neutral``, ``contr``, any case) and take the likeliest, one forward
    pass per direction. A model below 1B parameters is flagged as a weak judge (SmolLM2-135M
    answers "neutral" to almost every pair, so each answer tends to stay alone in its cluster)."""

    name = "lm"

    def __init__(self, backend):
        self.backend = backend
        params = getattr(backend.info, "parameters", 0)
        self.weak = params < WEAK_JUDGE_PARAMETERS
        self.note = (f"{backend.info.name} asked whether A entails B"
                     + (f" — a weak judge: a {params / 1e6:.0f}M-parameter model judging entailment "
                        "is mostly guessing; prefer an NLI model (judge nli) or the math judge"
                        if self.weak else ""))
        self._verdict_of_token: dict[int, str] | None = None
        self._vocab = 0

    def prompt(self, premise: str, hypothesis: str, question: str) -> str:
        """The judge's question as the model's format asks it (engine/formats.py
        `se_judge_prompt`: a chat model gets it without the format's math instruction)."""
        return se_judge_prompt(format_of(self.backend), self.backend,
                               LM_JUDGE_PROMPT.format(question=question, a=premise.strip(), b=hypothesis.strip()))

    @staticmethod
    def verdict_of(token_text: str) -> str | None:
        """The verdict word a reply starting with this token would begin, if any."""
        t = token_text.strip().lower()
        return next((v for v in VERDICTS if len(t) >= 2 and v.startswith(t)), None)

    def read(self, tokens: Sequence[str], probs: Sequence[float], complete: bool = True) -> str:
        """The verdict from a next-token distribution (token texts and their probabilities).
        ``complete=False``: only a server's top-k (engine/models/server_backend.py), other tokens
        at every call, so the token -> verdict map is built for this call alone."""
        if not complete:
            verdict_of_token = {i: v for i, t in enumerate(tokens) if (v := self.verdict_of(t))}
        else:
            if self._verdict_of_token is None or self._vocab != len(tokens):     # built once per vocabulary
                self._verdict_of_token = {i: v for i, t in enumerate(tokens) if (v := self.verdict_of(t))}
                self._vocab = len(tokens)
            verdict_of_token = self._verdict_of_token
        mass = dict.fromkeys(VERDICTS, 0.0)
        for i, v in verdict_of_token.items():
            mass[v] += float(probs[i])
        return max(VERDICTS, key=lambda v: (mass[v], -VERDICTS.index(v)))

    def check(self, premise: str, hypothesis: str, question: str = "") -> str:
        d = self.backend.distribution(self.prompt(premise, hypothesis, question))
        return self.read(d.tokens, d.probs.tolist(), complete=getattr(d, "complete", True))


# ---- estimators ------------------------------------------------------------------------------

def _logsumexp(xs: Sequence[float]) -> float:
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


def sequence_loglik(token_logprobs: Sequence[float], loglik: str = "mean") -> float:
    """Log-likelihood of one answer from its token logprobs: their mean (length-normalised, the
    default in both papers' code) or their sum (the sequence's joint log-probability)."""
    if loglik not in LOGLIK:
        raise ValueError(f"loglik must be one of {LOGLIK}, got {loglik!r}")
    if not token_logprobs:
        return 0.0
    total = float(sum(token_logprobs))
    return total / len(token_logprobs) if loglik == "mean" else total


def cluster_frequencies(ids: Sequence[int]) -> list[float]:
    """Share of the answers in each cluster (cluster ids 0..K-1)."""
    counts = Counter(ids)
    return [counts[c] / len(ids) for c in range(max(ids) + 1)]


def cluster_masses(ids: Sequence[int], logliks: Sequence[float]) -> list[float]:
    """p(C) = sum over the cluster's answers of p_i / sum_j p_j, with p_i = exp(loglik_i)."""
    if len(ids) != len(logliks):
        raise ValueError(f"{len(ids)} cluster ids but {len(logliks)} log-likelihoods")
    z = _logsumexp(logliks)
    masses = [0.0] * (max(ids) + 1)
    for c, ll in zip(ids, logliks):
        masses[c] += math.exp(ll - z)
    return masses


def _entropy(ps: Sequence[float]) -> float:
    return max(0.0, -sum(p * math.log(p) for p in ps if p > 0))    # masses summing to 1 + 1e-16: not -0.0


def discrete_entropy(ids: Sequence[int]) -> float:
    """-sum_C f(C) log f(C), f = the share of the N answers in cluster C (no likelihoods)."""
    return _entropy(cluster_frequencies(ids))


def rao_entropy(ids: Sequence[int], logliks: Sequence[float]) -> float:
    """-sum_C p(C) log p(C), p(C) from `cluster_masses` (the Nature paper's semantic entropy)."""
    return _entropy(cluster_masses(ids, logliks))


def mc_entropy_2023(ids: Sequence[int], logliks: Sequence[float]) -> float:
    """-(1/|C|) sum_C log sum_{i in C} p_i, with the unnormalised p_i = exp(loglik_i) (Kuhn et al.
    2023, eq. 3; also SUGAR's formula). Duplicates count again, so it can be negative."""
    clusters: dict[int, list[float]] = {}
    for c, ll in zip(ids, logliks):
        clusters.setdefault(c, []).append(ll)
    return -sum(_logsumexp(v) for v in clusters.values()) / len(clusters)


def naive_entropy(logliks: Sequence[float]) -> float:
    """Predictive entropy over raw sequences, Monte-Carlo: -(1/N) sum_i loglik_i (no clusters)."""
    return -sum(logliks) / len(logliks)


def entropies(ids: Sequence[int], logliks: Sequence[float]) -> dict[str, float]:
    """All four estimators on the same samples."""
    if not ids:
        raise ValueError("no answers to measure")
    return {"discrete": discrete_entropy(ids), "rao": rao_entropy(ids, logliks),
            "mc2023": mc_entropy_2023(ids, logliks), "naive": naive_entropy(logliks)}


def auroc(scores: Sequence[float], positives: Sequence[bool]) -> float | None:
    """Area under the ROC curve of ``scores`` for telling positives (here: wrong answers) from
    negatives; ties count half. None when one class is missing."""
    pos = [s for s, y in zip(scores, positives) if y]
    neg = [s for s, y in zip(scores, positives) if not y]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))
