"""Semantic entropy ("se") and SUGAR adaptive retrieval ("sugar"), as event generators.

se (Kuhn et al. 2023; Farquhar et al., Nature 2024): sample N answers at temperature 1 with
their token logprobs, cluster them by bidirectional equivalence (strict and lenient, both
emitted so the view can toggle), measure the four entropies; the answer is the representative
of the cluster with the most likelihood-weighted mass.

sugar (Zubkova, Park & Lee 2025, "SUGAR: Leveraging Contextual Confidence for Smarter Retrieval",
arXiv 2501.04899):
the same semantic entropy routes the question: below ``low`` answer without retrieval, from
``low`` up to ``high`` retrieve once (BM25, top ``passages``) and answer, at or above ``high``
retrieve, answer from those passages, retrieve again with the question plus that intermediate
answer, and answer from both sets. The paper's thresholds are not public: they are settings.
``policy`` "always" / "never" give the fixed baselines (single-step retrieval / none);
"sweep" computes the entropy, the answer without retrieval and the single-step answer for every
question, so `threshold_sweep` can score every threshold on one run of a question set.

The answer without retrieval is the greedy answer (the Nature paper scores accuracy on a
low-temperature answer); it is computed in every sugar run, so the view shows both.

Each sample, intermediate answer and answer is a `NodeProposed` under the root (so the Search
tab, the store and replay show it); clusters, entropies, the routing decision and the passages
are their own events (engine/events.py).

Not here: the clustering and the estimators (engine/scoring/semantic_entropy.py), BM25
(engine/retrieval/__init__.py).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Iterator

from engine import events as E
from engine import method_prompts as F
from engine.formats import format_of
from engine.models.base import StopSpec, Stopped, stop_if
from engine.retrieval import build_index, qa_strict
from engine.sampling import GREEDY, SamplingConfig
from engine.scoring import semantic_entropy as S
from engine.search.common import (SampledConfig, TokenCounter, check_field as _check,
                                  is_whole as _int, majority_answer, normalize_gold)
from engine.steps import answers_equal

TASKS = ("auto", "math", "open")
JUDGES = ("auto", "math", "lm", "nli")
POLICIES = ("adaptive", "always", "never", "sweep")
DECISIONS = ("none", "single", "multi")
OPEN_STOP = StopSpec(("\n",))
# the embedded format's open-question prompts; every format's are in engine/formats.py (se_open_prompt)
OPEN_PROMPT = F.SE_OPEN_EMBEDDED
NOTES_PROMPT = F.SE_NOTES_EMBEDDED


@dataclass(frozen=True)
class SEConfig(SampledConfig):
    samples: int = 10           # N answers sampled for the entropy
    temperature: float = 1.0    # the papers sample at T = 1
    top_p: float = 1.0
    min_p: float = 0.0
    task: str = "auto"          # math (final answers), open (short sentences); auto: math for non-chat models
    judge: str = "auto"         # math, lm, nli; auto: math for math tasks, nli when nli_model is set, else lm
    nli_model: str = ""         # hub id or folder of an NLI model (judge nli)
    mode: str = "strict"        # strict: entail both ways; lenient: no contradiction, not both neutral
    loglik: str = "mean"        # per-answer log-likelihood: mean token logprob (length-normalised) or sum
    max_answer_tokens: int = 48  # open answers (math solutions get the full solution budget)

    def __post_init__(self) -> None:
        _check("samples", self.samples, _int(self.samples) and 2 <= self.samples <= 64, "from 2 to 64")
        _check("task", self.task, self.task in TASKS, f"one of {TASKS}")
        _check("judge", self.judge, self.judge in JUDGES, f"one of {JUDGES}")
        _check("nli_model", self.nli_model, isinstance(self.nli_model, str), "text (a hub id or folder)")
        _check("nli_model", self.nli_model, self.judge != "nli" or bool(self.nli_model.strip()),
               "a hub id or folder when judge is nli")
        _check("mode", self.mode, self.mode in S.MODES, f"one of {S.MODES}")
        _check("loglik", self.loglik, self.loglik in S.LOGLIK, f"one of {S.LOGLIK}")
        _check("max_answer_tokens", self.max_answer_tokens,
               _int(self.max_answer_tokens) and 1 <= self.max_answer_tokens <= 512, "from 1 to 512")
        self.sampling



@dataclass(frozen=True)
class SugarConfig(SEConfig):
    low: float = -1.0           # SE below this: no retrieval (nats; for mc2023 with N = 10, mean loglik)
    high: float = 0.5           # SE at or above this: multi-step retrieval (between: single-step)
    route_on: str = "mc2023"    # which estimator routes: SUGAR's formula (Kuhn et al. 2023)
    policy: str = "adaptive"    # adaptive (SUGAR), always (single-step), never, sweep (both answers, for a sweep)
    passages: int = 3           # BM25 hits per retrieval step
    corpus: str = ""            # a folder of .txt/.jsonl files searched with the shipped corpus

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("low", "high"):
            v = getattr(self, name)
            _check(name, v, isinstance(v, (int, float)) and not isinstance(v, bool) and -100 <= v <= 100,
                   "a number from -100 to 100")
        _check("high", self.high, self.high >= self.low, f"at least low ({self.low})")
        _check("route_on", self.route_on, self.route_on in S.ESTIMATORS, f"one of {S.ESTIMATORS}")
        _check("policy", self.policy, self.policy in POLICIES, f"one of {POLICIES}")
        _check("corpus", self.corpus, isinstance(self.corpus, str), "text (a folder, or empty)")
        _check("passages", self.passages, _int(self.passages) and 1 <= self.passages <= 20, "from 1 to 20")


def route(value: float, low: float, high: float) -> str:
    """"none" when value < low, "single" when low <= value < high, "multi" when value >= high."""
    if value < low:
        return "none"
    return "single" if value < high else "multi"


def task_of(backend, config: SEConfig) -> str:
    if config.task != "auto":
        return config.task
    return "open" if getattr(backend, "use_chat_template", False) else "math"


def make_judge(config: SEConfig, backend, task: str):
    kind = config.judge
    if kind == "auto":
        kind = "math" if task == "math" else "nli" if config.nli_model else "lm"
    if kind == "math":
        return S.MathJudge(read_answer=format_of(backend).read_answer)     # answers as the format writes them
    if kind == "nli":
        return _nli_judge(config.nli_model)
    return S.LMJudge(backend)


@functools.lru_cache(maxsize=2)
def _nli_judge(model: str):
    return S.NLIJudge(model)


@functools.lru_cache(maxsize=4)
def _index(folder: str):
    return build_index(folder or None)


class _Asker:
    """Prompts, generation and answer reading for one question (math or open). A math question
    is asked with the format's root prompt; an open one with the format's short-answer prompt
    (engine/formats.py `se_open_prompt`)."""

    def __init__(self, backend, question: str, task: str, config: SEConfig, counter: TokenCounter,
                 should_stop: Callable[[], bool]):
        self.backend, self.question, self.task, self.config = backend, question, task, config
        self.counter, self.should_stop = counter, should_stop

    def prompt(self, notes: list[dict] | None = None) -> str:
        text = "\n".join(f"[{i}] {p['text']}" for i, p in enumerate(notes, start=1)) if notes else ""
        if self.task == "open":
            return F.se_open_prompt(format_of(self.backend), self.backend, self.question, text)
        q = f"{text}\n{self.question}" if text else self.question
        return self.backend.render_prompt(q) + getattr(self.backend, "solution_prefix", lambda: "")()

    def generate(self, prompt: str, n: int, sampling: SamplingConfig, seed: int):
        stop_if(self.should_stop)
        math_task = self.task == "math"
        fmt = format_of(self.backend)
        # a math answer is a whole solution: the format's budget and stop (embedded: 256, "\nQuestion:")
        max_new = fmt.max_solution_tokens if math_task else self.config.max_answer_tokens
        encode = getattr(self.backend, "encode", None)
        if encode is not None:
            max_new = min(max_new, self.backend.info.context_length - len(encode(prompt)))
            if max_new < 1:
                raise Stopped("the prompt fills the model's context")
        # an open answer is its first line; a chat or base reply opening with a blank line goes on
        stop = fmt.stop() if math_task else fmt.stop(OPEN_STOP.strings)
        gens = self.backend.generate([prompt] * n, sampling=sampling, stop=stop,
                                     max_new_tokens=max_new, seed=seed, should_stop=self.should_stop)
        self.counter.add(gens)
        return gens

    def answer_of(self, text: str) -> str | None:
        if self.task == "math":
            return format_of(self.backend).read_answer(text)
        line = text.strip().split("\n")[0].strip()
        return line or None

    def correct(self, answer: str | None, gold: str | None) -> bool | None:
        return is_correct(self.task, answer, gold, self.question)


def is_correct(task: str, answer: str | None, gold: str | None, question: str = "") -> bool | None:
    """Math: the same number; open: the answer the reply states, less what ``question`` says, is
    the gold (engine.retrieval.qa_strict; the eval reports the lenient "contains" check beside
    it). None: no gold."""
    if gold is None:
        return None
    return answers_equal(answer, gold) if task == "math" else qa_strict(answer, gold, question)


def _node(tree_size: int, parent: int, depth: int, action: str, gen, asker: _Asker, gold) -> E.NodeProposed:
    answer = asker.answer_of(gen.text)
    toks = [t.to_json() for t in gen.tokens]
    return E.NodeProposed(node=tree_size, parent=parent, depth=depth, action=action, text=gen.text, tokens=toks,
                          terminal=True, answer=answer, correct=asker.correct(answer, gold),
                          prior=sum(t[2] for t in toks) / len(toks) if toks else None)


def semantic_entropy_events(samples: list[E.NodeProposed], texts: list[str], judge, question: str,
                            loglik: str) -> Iterator[E.Event]:
    """ClustersFormed and EntropyMeasured for both modes (strict first); verdicts are shared."""
    verdict = S.VerdictCache(judge, question)
    logliks = [S.sequence_loglik([t[2] for t in n.tokens], loglik) for n in samples]
    node_ids = [n.node for n in samples]
    for mode in S.MODES:
        c = S.cluster(texts, verdict, mode)
        yield E.ClustersFormed(
            mode=mode, judge=judge.name, judge_note=judge.note,
            clusters=[[node_ids[i] for i in members] for members in c.clusters],
            mass=S.cluster_masses(c.ids, logliks), frequency=S.cluster_frequencies(c.ids),
            comparisons=[{"a": node_ids[x.a], "b": node_ids[x.b], "forward": x.forward, "backward": x.backward,
                          "equivalent": x.equivalent, "source": x.source} for x in c.comparisons])
        yield E.EntropyMeasured(mode=mode, loglik=loglik, logliks=logliks, **S.entropies(c.ids, logliks))


def _run(method: str, question: str, backend, config: SEConfig, seed: int, gold, should_stop) -> Iterator[E.Event]:
    gold = normalize_gold(gold)
    counter = TokenCounter()
    task = task_of(backend, config)
    asker = _Asker(backend, question, task, config, counter, should_stop or (lambda: False))
    root_prompt = asker.prompt()
    yield E.RunStarted(method=method, question=question, prompt=root_prompt, gold=gold, config=config.to_json(),
                       seed=seed, model=backend.info.name, format=format_of(backend).name)
    yield E.NodeProposed(node=E.ROOT, parent=E.NO_PARENT, depth=0, action="root", text=root_prompt)
    size = 1
    status, message = "done", ""
    adaptive = method == "se" or getattr(config, "policy", "adaptive") in ("adaptive", "sweep")
    answers: dict[str, str | None] = {}
    final_path, se_value = [E.ROOT], None
    try:
        top = None
        if adaptive:
            yield E.IterationStarted(iteration=1, of=1)
            gens = asker.generate(root_prompt, config.samples, config.sampling, seed)
            samples = []
            for g in gens:
                ev = _node(size, E.ROOT, 1, "sample", g, asker, gold)
                size += 1
                samples.append(ev)
                yield ev
            judge = make_judge(config, backend, task)
            texts = [g.text.strip() for g in gens]
            for ev in semantic_entropy_events(samples, texts, judge, question, config.loglik):
                if isinstance(ev, E.ClustersFormed) and ev.mode == config.mode:
                    best = max(range(len(ev.mass)), key=lambda k: (ev.mass[k], -k))
                    top = next(s for s in samples if s.node == ev.clusters[best][0])
                if isinstance(ev, E.EntropyMeasured) and ev.mode == config.mode:
                    se_value = getattr(ev, getattr(config, "route_on", "mc2023"))
                yield ev
            answers["top_cluster"] = top.answer
            if task == "math":        # raw open answers are all different strings: no vote
                answers["majority"] = majority_answer([s.answer for s in samples])
        if method == "se":
            final_path = [E.ROOT, top.node]
            yield E.FinalAnswer(answer=top.answer, rule="top_cluster", path=final_path,
                                correct=asker.correct(top.answer, gold), alternatives=answers)
            yield counter.finished(status, message)
            return
        # SUGAR: the greedy answer without retrieval, then the routing decision
        yield from _sugar(asker, config, seed, gold, se_value, answers, size)
    except Stopped as e:
        status, message = "stopped", str(e) or E.USER_STOP
        yield E.FinalAnswer(answer=None, rule="stopped", path=final_path, correct=None if gold is None else False,
                            alternatives=answers)
    yield counter.finished(status, message)


def _sugar(asker: _Asker, config: SugarConfig, seed: int, gold, se_value, answers, size: int) -> Iterator[E.Event]:
    greedy = asker.generate(asker.prompt(), 1, GREEDY, seed + 1)[0]
    without = _node(size, E.ROOT, 1, "answer", greedy, asker, gold)
    size += 1
    yield without
    answers["without_retrieval"] = without.answer
    if config.policy == "adaptive":
        decision = route(se_value, config.low, config.high)
    elif config.policy == "sweep":      # two-way on the low threshold; the single-step answer is made anyway
        decision = "none" if se_value < config.low else "single"
    else:
        decision = "single" if config.policy == "always" else "none"
    yield E.RetrievalRouted(decision=decision, policy=config.policy, estimator=config.route_on, mode=config.mode,
                            value=se_value, low=config.low, high=config.high)
    final = without
    retrieve = "single" if config.policy == "sweep" else decision
    if retrieve != "none":
        index = _index(config.corpus)
        notes = _retrieve(index, asker.question, config.passages, [])
        yield E.PassagesRetrieved(step=1, query=asker.question, passages=notes)
        parent = E.ROOT
        if retrieve == "multi":
            gen = asker.generate(asker.prompt(notes), 1, GREEDY, seed + 2)[0]
            sub = _node(size, E.ROOT, 1, "sub_answer", gen, asker, gold)
            size += 1
            yield sub
            query = f"{asker.question} {gen.text.strip()}"
            more = _retrieve(index, query, config.passages, notes)
            yield E.PassagesRetrieved(step=2, query=query, passages=more)
            notes, parent = notes + more, sub.node
        gen = asker.generate(asker.prompt(notes), 1, GREEDY, seed + 3)[0]
        with_notes = _node(size, parent, 2 if parent != E.ROOT else 1, "answer_retrieval", gen, asker, gold)
        yield with_notes
        answers["with_retrieval"] = with_notes.answer
        if decision != "none":
            final = with_notes
    path = [E.ROOT, final.node] if final.parent == E.ROOT else [E.ROOT, final.parent, final.node]
    yield E.FinalAnswer(answer=final.answer, rule=f"retrieval:{decision}", path=path, correct=final.correct,
                        alternatives=answers)


def threshold_sweep(se: list[float], right_without: list[bool], right_with: list[bool],
                    thresholds: list[float] | None = None) -> list[dict]:
    """Accuracy and retrieval rate of "retrieve once when SE >= t" for each threshold t, from one
    sweep run: per question its SE and whether the answers without and with retrieval were right.
    Default thresholds: every distinct SE value plus one above the largest (never retrieve).

    Example: se = [0.1, 0.9], right_without = [True, False], right_with = [False, True] gives at
    t = 0.9 accuracy 1.0 (the first answered from memory, the second retrieved), rate 0.5."""
    if not (len(se) == len(right_without) == len(right_with)) or not se:
        raise ValueError("threshold_sweep needs one SE and two answers' correctness per question")
    if thresholds is None:
        thresholds = sorted(set(se)) + [max(se) + 1.0]
    n = len(se)
    return [{"threshold": t, "retrieval_rate": sum(v >= t for v in se) / n,
             "accuracy": sum(w if v >= t else wo for v, wo, w in zip(se, right_without, right_with)) / n}
            for t in thresholds]


def _retrieve(index, query: str, k: int, seen: list[dict]) -> list[dict]:
    """The top ``k`` passages for ``query`` that are not in ``seen`` (as event rows)."""
    have = {p["id"] for p in seen}
    hits = [(p, s) for p, s in index.search(query, k + len(have)) if p.id not in have][:k]
    return [{**p.to_json(), "score": s} for p, s in hits]


def run_se(question, backend, *, config: SEConfig = SEConfig(), seed: int = 0, gold=None,
           should_stop: Callable[[], bool] | None = None) -> Iterator[E.Event]:
    yield from _run("se", question, backend, config, seed, gold, should_stop)


def run_sugar(question, backend, *, config: SugarConfig = SugarConfig(), seed: int = 0, gold=None,
              should_stop: Callable[[], bool] | None = None) -> Iterator[E.Event]:
    yield from _run("sugar", question, backend, config, seed, gold, should_stop)
