"""Accuracy of a method on the held-out problem set, fresh problems or a user's data set: what
``thoughtscope eval`` runs.

Methods live in ``EVAL_METHODS``, a dict of callables that share one signature, so the CLI's
``--method`` choices come from the same dict. Each solves a list of problems in batches and
returns one `ProblemResult` per problem. Generated tokens count every token the model
sampled (all samples of self-consistency), the cost figure accuracy is weighed against.
Every summary also says how many problems got an answer at all (``answered``), so a format
whose answers cannot be read is told apart from a model that answers wrong. Greedy and
self-consistency read answers, stop and budget a solution as the model's prompt format does
(engine/formats.py), as the searches do.

Not here: the tree searches themselves (engine/search/); reading data files (engine/evaluation/datasets.py).
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from engine.demo_model.problems import TIERS, Problem, load_problems
from engine.evaluation.concurrent import check_concurrency, per_problem
from engine.evaluation.results import ProblemResult  # noqa: F401 (re-exported: evaluate.ProblemResult)
from engine.formats import format_of
from engine.models.base import StopSpec
from engine.sampling import GREEDY, SamplingConfig
from engine.search.common import majority_answer
from engine.steps import answers_equal

HELDOUT = Path(__file__).resolve().parents[2] / "assets" / "problems" / "heldout.jsonl"
SOLUTION_STOP = StopSpec(strings=("\nQuestion:",))   # a finished solution never starts another
EVAL_N = 100                   # problems evaluated when --n is not given


@dataclass(frozen=True)
class EvalConfig:
    samples: int = 8           # self-consistency samples per problem
    temperature: float = 0.8   # for sampled methods
    min_p: float = 0.0
    top_p: float = 1.0
    batch_size: int = 32

    def __post_init__(self) -> None:
        if not isinstance(self.samples, int) or isinstance(self.samples, bool) or not 1 <= self.samples <= 256:
            raise ValueError(f"samples must be a whole number from 1 to 256, got {self.samples!r}")
        if not isinstance(self.batch_size, int) or isinstance(self.batch_size, bool) or not 1 <= self.batch_size <= 1024:
            raise ValueError(f"batch_size must be a whole number from 1 to 1024, got {self.batch_size!r}")
        SamplingConfig(temperature=self.temperature, min_p=self.min_p, top_p=self.top_p)  # validates

    @property
    def sampling(self) -> SamplingConfig:
        return SamplingConfig(temperature=self.temperature, min_p=self.min_p, top_p=self.top_p)


def majority(answers: Sequence[str | None]) -> tuple[str | None, dict[str, int]]:
    """Most common non-empty answer (ties: the one seen first) and the vote counts."""
    return majority_answer(answers), dict(Counter(a for a in answers if a is not None))


def _solve_batches(backend, problems: list[Problem], copies: int, sampling: SamplingConfig,
                   cfg: EvalConfig, seed: int, progress: Callable[[int], None]) -> list[ProblemResult]:
    """Generate ``copies`` solutions per problem and vote (one copy: no vote)."""
    per_batch = max(1, cfg.batch_size // copies)
    # the embedded format's seed, stop, budget and reader are "Step 1:", SOLUTION_STOP, 256 tokens
    # and "The answer is N."; a chat model's solution ends at EOS and states \boxed{N}
    fmt = format_of(backend)
    seed_text, stop = fmt.solution_prefix, fmt.stop()
    results = []
    for start in range(0, len(problems), per_batch):
        chunk = problems[start:start + per_batch]
        prompts = [backend.render_prompt(p.question) + seed_text for p in chunk for _ in range(copies)]
        gens = backend.generate(prompts, sampling=sampling, stop=stop,
                                max_new_tokens=fmt.max_solution_tokens, seed=seed + start)
        for j, p in enumerate(chunk):
            mine = gens[j * copies:(j + 1) * copies]
            answer, votes = majority([fmt.read_answer(g.text) for g in mine])
            results.append(ProblemResult(p.id, answer, p.answer, answers_equal(answer, p.answer),
                                         sum(len(g.tokens) for g in mine), votes if copies > 1 else None))
        progress(len(chunk))
    return results


def eval_greedy(backend, problems, cfg: EvalConfig, seed: int, progress) -> list[ProblemResult]:
    return _solve_batches(backend, problems, 1, GREEDY, cfg, seed, progress)


def eval_self_consistency(backend, problems, cfg: EvalConfig, seed: int, progress) -> list[ProblemResult]:
    return _solve_batches(backend, problems, cfg.samples, cfg.sampling, cfg, seed, progress)


def search_result(problem: Problem, events) -> ProblemResult:
    """Fold one search run into a result (and the answer every rule would have given)."""
    from engine.tree import Tree
    tree = Tree.fold(events)
    answer = tree.final.answer if tree.final else None
    return ProblemResult(problem.id, answer, problem.answer, answers_equal(answer, problem.answer),
                         tree.finished.generated_tokens if tree.finished else 0, nodes=len(tree),
                         by_rule={rule: answers_equal(a, problem.answer)
                                  for rule, a in (tree.final.alternatives if tree.final else {}).items()},
                         discriminator=discriminator_summary(tree, problem))


@dataclass
class SearchResult(ProblemResult):
    """A tree search's result with its failure triage (engine/triage.py)."""
    triage: str | None = None              # a wrong run's class; else "right", "no_gold" or "unfinished"
    first_wrong_node: int | None = None    # the chosen path's first false arithmetic claim, where one is


def triaged_result(problem: Problem, events) -> SearchResult:
    """`search_result` with the run's triage class and first wrong step."""
    from engine.tree import Tree
    from engine.triage import WRONG, triage
    events = list(events)
    t = triage(Tree.fold(events))
    r = search_result(problem, events)
    return SearchResult(**{f.name: getattr(r, f.name) for f in dataclasses.fields(r)},
                        triage=t.klass if t.status == WRONG else t.status,
                        first_wrong_node=t.first_wrong.node if t.first_wrong else None)


def triage_summary(results: Sequence[ProblemResult]) -> dict:
    """The eval JSON's ``triage``: wrong runs per class, and the wrong ones that never stated a
    final answer event (``unfinished``); together they are the wrong runs."""
    from engine.triage import CLASSES, UNFINISHED
    got = [r.triage for r in results if isinstance(r, SearchResult)]
    return {"classes": {c: got.count(c) for c in CLASSES}, "unfinished": got.count(UNFINISHED)}


def discriminator_summary(tree, problem: Problem) -> dict | None:
    """rStar runs: candidates the discriminator judged and confirmed, the generator's own answer
    and whether the discriminator changed it; None for other methods."""
    if tree.candidates is None:
        return None
    verdicts = [d["verdict"] for d in tree.discriminator.values() if d["verdict"] is not None]
    gen = tree.candidates.generator_answer
    final = tree.final.answer if tree.final else None
    return {"judged": len(verdicts), "confirmed": sum(v.consistent for v in verdicts),
            "generator_answer": gen, "generator_correct": answers_equal(gen, problem.answer),
            "changed": bool(verdicts) and not answers_equal(gen, final) and not (gen is None and final is None),
            "generator_tokens": tree.candidates.generator_tokens}


def eval_search(method: str) -> Callable:
    """An evaluator that runs the event-yielding search ``method`` on each problem; ``cfg`` is
    that method's config (engine.search.METHODS[method].config)."""
    def solve(backend, cfg, seed: int, p: Problem) -> ProblemResult:
        from engine.search import METHODS
        return triaged_result(p, METHODS[method].run(p.question, backend, config=cfg, seed=seed, gold=str(p.answer)))
    return per_problem(solve, method)


def eval_leco(backend, problems, cfg, seed: int, progress) -> list[ProblemResult]:
    """LECO, one problem at a time, with the generator's step checks (engine/evaluation/leco.py)."""
    from engine.evaluation.leco import eval_leco as run_leco
    return run_leco(backend, problems, cfg, seed, progress)


def leco_summary(results: list[ProblemResult]) -> dict:
    """rounds_mean and the cut checks against the true intermediate values (engine/evaluation/leco.py)."""
    from engine.evaluation.leco import summarise
    return summarise(results)


def eval_semantic(method: str) -> Callable:
    """se / sugar, one search per question: the result also keeps the four entropies, the routing
    decision, and whether each alternative answer (without retrieval, top cluster, ...) was right."""
    def solve(backend, cfg, seed: int, p: Problem) -> ProblemResult:
        from engine import events as E
        from engine.search import METHODS
        from engine.retrieval import qa_contains
        from engine.search.sugar import is_correct, task_of
        if method not in QA_METHODS and cfg.task == "auto":
            # held-out, fresh and data-set problems have math answers, whatever the model's template
            cfg = dataclasses.replace(cfg, task="math")
        task = task_of(backend, cfg)
        events = list(METHODS[method].run(p.question, backend, config=cfg, seed=seed, gold=str(p.answer)))
        r = search_result(p, events)
        final = next(e for e in events if isinstance(e, E.FinalAnswer))
        r.correct = bool(final.correct)          # open questions: the strict check (engine/retrieval/__init__.py)
        if task == "open":
            r.correct_contains = qa_contains(final.answer, str(p.answer))
        r.by_rule = {rule: bool(is_correct(task, a, str(p.answer), p.question))
                     for rule, a in final.alternatives.items()}
        measured = next((e for e in events if isinstance(e, E.EntropyMeasured) and e.mode == cfg.mode), None)
        if measured is not None:
            r.entropies = {k: getattr(measured, k) for k in ("discrete", "rao", "mc2023", "naive")}
        routed = next((e for e in events if isinstance(e, E.RetrievalRouted)), None)
        r.retrieval = routed.decision if routed else None
        return r
    return per_problem(solve, method)


# greedy and sc are batched across problems (fast); the others run one search per problem.
EVAL_METHODS: dict[str, Callable] = {
    "greedy": eval_greedy,
    "sc": eval_self_consistency,
    "mcts": eval_search("mcts"),
    "bon": eval_search("bon"),
    "beam": eval_search("beam"),
    "leco": eval_leco,
    "rstar": eval_search("rstar"),
    "mcts-code": eval_search("mcts-code"),
    "sra-mcts": eval_search("sra-mcts"),
    "se": eval_semantic("se"),
    "sugar": eval_semantic("sugar"),
}
BATCHED = {"greedy", "sc"}
QA_METHODS = {"sugar"}        # evaluated on the fictional-corpus questions (assets/retrieval/), not the tiers
# Methods whose eval needs what only the problem generator knows (each step's true value): they
# refuse a data set, which has a question and a gold answer only.
NEEDS_STEPS = {"leco": "its eval checks each cut step against the generator's true intermediate values"}


def rstar_summary(results: list[ProblemResult]) -> dict:
    """discriminator_agreement: the share of judged candidates the discriminator confirmed
    (pooled over problems); how often it changed the generator's answer, for better and worse;
    the generator's own accuracy and tokens (before the discriminator)."""
    ds = [r.discriminator or {} for r in results]
    judged = sum(d.get("judged", 0) for d in ds)
    changed = [(d, r) for d, r in zip(ds, results) if d.get("changed")]
    return {"discriminator_agreement": round(sum(d.get("confirmed", 0) for d in ds) / judged, 4) if judged else None,
            "discriminator_changed": {"changed": len(changed),
                                      "better": sum(1 for d, r in changed if r.correct and not d["generator_correct"]),
                                      "worse": sum(1 for d, r in changed if d["generator_correct"] and not r.correct)},
            "generator_accuracy": round(sum(bool(d.get("generator_correct")) for d in ds) / len(results), 4),
            "generator_tokens": sum(d.get("generator_tokens", 0) for d in ds)}


# Methods whose eval JSON carries keys of their own, beside the common ones.
EVAL_SUMMARIES: dict[str, Callable[[list[ProblemResult]], dict]] = {
    "leco": leco_summary,
    "rstar": rstar_summary,
}


MAX_FRESH = 10_000


def fresh_problems(tier: str, n: int, seed: int, problems_path: Path = HELDOUT,
                   events: tuple[int, int] | None = None) -> list[Problem]:
    """``n`` problems of ``tier`` generated now with generator seed ``seed``, skipping any whose
    question is in the held-out file: a second test set, to tell a real difference between two
    models or settings from the luck of one 200-problem set. With ``events`` (LO, HI), each has
    LO to HI events instead of the tier's count (problems.with_events), from a stream of its own."""
    import random
    from engine.demo_model.problems import generate_problem, with_events
    held = {p.question for p in load_problems(problems_path)}
    spec = with_events(tier, *events) if events else None
    tag = f"{tier}-events{events[0]}-{events[1]}" if events else tier
    rng = random.Random(f"{seed}:{tag}")               # without events: the stream problems.generate(tier, n, seed) draws
    out: list[Problem] = []
    while len(out) < n:
        p = generate_problem(rng, tier, f"fresh{seed}-{tag}-{len(out):05d}", spec)
        if p.question not in held:
            out.append(p)
    return out


def eval_problems(method: str, tier: str, n: int, problems_path: Path = HELDOUT,
                  fresh: int | None = None, events: tuple[int, int] | None = None) -> list[Problem]:
    """The first ``n`` held-out problems of ``tier`` — or, with ``fresh`` (a generator seed),
    ``n`` freshly generated ones (`fresh_problems`, with ``events`` events each if given);
    checks the request before any model loads."""
    if method not in EVAL_METHODS:
        raise ValueError(f"method must be one of {sorted(EVAL_METHODS)}, got {method!r}")
    if events is not None and fresh is None:
        raise ValueError("--events needs --fresh: the held-out problems have the tier's own event count")
    if fresh is not None:
        if method in QA_METHODS:
            raise ValueError(f"--fresh makes arithmetic problems; {method} is evaluated on the Velmora questions")
        if tier not in TIERS:
            raise ValueError(f"tier must be one of {TIERS}, got {tier!r}")
        if not isinstance(n, int) or not 1 <= n <= MAX_FRESH:
            raise ValueError(f"n must be a whole number from 1 to {MAX_FRESH} with --fresh, got {n!r}")
        return fresh_problems(tier, n, fresh, problems_path, events)
    if method in QA_METHODS:
        from engine.retrieval import load_questions
        problems = [Problem(q.id, "velmora", q.question, q.answer, ()) for q in load_questions()]
        if not isinstance(n, int) or not 1 <= n <= len(problems):
            raise ValueError(f"n must be a whole number from 1 to {len(problems)} (the Velmora question set), "
                             f"got {n!r}")
        return problems[:n]
    if tier not in TIERS:
        raise ValueError(f"tier must be one of {TIERS}, got {tier!r}")
    problems = load_problems(problems_path, tier)
    if not isinstance(n, int) or not 1 <= n <= len(problems):
        raise ValueError(f"n must be a whole number from 1 to {len(problems)} (the {tier} held-out set), got {n!r}")
    return problems[:n]


def dataset_problems(method: str, source: str, *, split: str | None = None, question_field: str | None = None,
                     answer_field: str | None = None, n: int | None = None):
    """The problems of a user's data set (engine/evaluation/datasets.py) for ``method``: the first ``n``
    usable rows, or the first `EVAL_N` (all of a smaller set) when ``n`` is None. Returns the
    `engine.evaluation.datasets.Dataset`; checks the request before any model loads."""
    from engine.evaluation import datasets
    if method not in EVAL_METHODS:
        raise ValueError(f"method must be one of {sorted(EVAL_METHODS)}, got {method!r}")
    if method in NEEDS_STEPS:
        raise ValueError(f"--dataset does not work with method {method!r}: {NEEDS_STEPS[method]}, which a data "
                         f"set has not (run it on one question with `thoughtscope run {method}`)")
    loaded = datasets.load_problems(source, split=split, question_field=question_field, answer_field=answer_field,
                                    n=n)
    if n is None and len(loaded.problems) > EVAL_N:
        loaded = dataclasses.replace(loaded, problems=loaded.problems[:EVAL_N])
    return loaded


def semantic_entropy_summary(method: str, results: list[ProblemResult]) -> dict:
    """AUROC of each entropy estimator for predicting a wrong answer without retrieval (sugar) or
    a wrong top-cluster answer (se); None when every answer is right or every one wrong."""
    from engine.scoring.semantic_entropy import ESTIMATORS, auroc
    rule = "without_retrieval" if method in QA_METHODS else "top_cluster"
    rows = [r for r in results if r.entropies]
    wrong = [not (r.by_rule or {}).get(rule, r.correct) for r in rows]
    return {"auroc_error": {e: None if (a := auroc([r.entropies[e] for r in rows], wrong)) is None else round(a, 4)
                            for e in ESTIMATORS},
            "auroc_of": rule, "entropy_mean": {e: round(sum(r.entropies[e] for r in rows) / len(rows), 4)
                                               for e in ESTIMATORS}}


def run_eval(backend, method: str, tier: str, n: int, seed: int, cfg: EvalConfig,
             progress: Callable[[int], None] = lambda k: None, problems_path: Path = HELDOUT,
             fresh: int | None = None, events: tuple[int, int] | None = None,
             problems: list[Problem] | None = None, dataset=None, concurrency: int = 1) -> dict:
    """Run ``method`` over the problems `eval_problems` picks (or ``problems``, already picked
    by it; or ``dataset``'s, an `engine.evaluation.datasets.Dataset` from `dataset_problems`) and
    summarise: the JSON keys of `thoughtscope eval`. ``concurrency``: problems solved at once
    (methods that run one search per problem; `check_concurrency`)."""
    check_concurrency(method, concurrency)   # engine/evaluation/concurrent.py
    if dataset is not None:
        problems, tier = list(dataset.problems), "dataset"
    elif problems is None:
        problems = eval_problems(method, tier, n, problems_path, fresh, events)
    n = len(problems)
    clock = getattr(backend, "decode_clock", None)      # a model loaded here: where its decoding time goes
    before = clock.copy() if clock is not None else None
    t0 = time.perf_counter()
    extra = {"concurrency": concurrency} if concurrency != 1 else {}
    results = EVAL_METHODS[method](backend, problems, cfg, seed, progress, **extra)
    wall = time.perf_counter() - t0
    if dataset is not None:
        source = f"dataset:{dataset.source}" + (f":{dataset.split}" if dataset.split else "")
    elif fresh is None:
        source = "held-out"
    else:
        source = f"fresh:{fresh}" + (f":events {events[0]}-{events[1]}" if events else "")
    summary = {
        "method": method, "model": backend.info.name, "tier": tier, "n": n, "seed": seed,
        "problems": source,
        "accuracy": round(sum(r.correct for r in results) / n, 4),
        # the share with a final answer that could be read at all, right or wrong
        "answered": round(sum(r.answer is not None for r in results) / n, 4),
        "generated_tokens": sum(r.generated_tokens for r in results),
        "wall_s": round(wall, 2),
        "concurrency": concurrency,
    }
    if clock is not None:
        summary["decoding"] = clock.since(before)
    if method == "sc":
        summary.update(samples=cfg.samples, temperature=cfg.temperature, min_p=cfg.min_p, top_p=cfg.top_p)
    elif method not in BATCHED:
        summary["config"] = cfg.to_json()
        summary["nodes_mean"] = round(sum(r.nodes for r in results) / n, 1)
        rules = results[0].by_rule or {}
        summary["accuracy_by_rule"] = {rule: round(sum(r.by_rule.get(rule, False) for r in results) / n, 4)
                                       for rule in rules}
    if any(r.correct_contains is not None for r in results):
        summary["accuracy_contains"] = round(sum(bool(r.correct_contains) for r in results) / n, 4)
    if dataset is not None:
        summary["dataset"] = dataset.describe()
    if any(isinstance(r, SearchResult) for r in results):
        summary["triage"] = triage_summary(results)
    extra = EVAL_SUMMARIES.get(method)
    if extra is not None:
        summary.update(extra(results))
    if method in QA_METHODS:
        if dataset is None:
            summary["tier"] = "velmora"
        summary["retrieval_rate"] = round(sum(r.retrieval not in (None, "none") for r in results) / n, 4)
        summary["retrieval"] = {d: sum(r.retrieval == d for r in results) for d in ("none", "single", "multi")}
    if any(r.entropies for r in results):
        summary.update(semantic_entropy_summary(method, results))
    if method in QA_METHODS and getattr(cfg, "policy", None) == "sweep":
        from engine.search.sugar import threshold_sweep
        summary["sweep"] = [{k: round(v, 4) for k, v in row.items()} for row in threshold_sweep(
            [r.entropies[cfg.route_on] for r in results], [r.by_rule["without_retrieval"] for r in results],
            [r.by_rule["with_retrieval"] for r in results])]
    summary["results"] = [asdict(r) for r in results]
    return summary
