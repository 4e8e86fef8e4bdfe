"""Recorded sessions the app shows on first start: ``python -m engine.sample_runs``.

Walks the held-out hard problems in order, runs greedy and MCTS (default config) on each, and
keeps the first problem where MCTS fixes a greedy mistake and the first where MCTS fails;
the fixed problem is also run with the other baselines, for comparison, and both problems
with rStar (`SAMPLE_CONFIGS`: fewer rollouts than its default, so the golden-run test stays
quick). Then LECO (default config) on the same problems: the first run that fixes its first
solution's error and the first whose cut falls on a step that was right, each with greedy
beside it. Then the lessons' own runs (`LESSON_RUNS`: MCTS with a small exploration constant,
SUGAR's semantic entropy; `--only-lessons` records just those). Each run is recorded through
the store like any other and exported as JSON into sample_runs/.

`import_samples(store)` loads them into a database that has no sessions yet.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.search import METHODS
from engine.store import Store, record

SAMPLES = Path(__file__).resolve().parents[1] / "sample_runs"
# config overrides of a recorded sample (method -> fields); other methods use their defaults
SAMPLE_CONFIGS: dict[str, dict] = {"rstar": {"rollouts": 8}}


def import_samples(store: Store, folder: Path = SAMPLES) -> list[str]:
    """Import every sample run into ``store`` if it holds no sessions yet (and may be written);
    returns the new ids."""
    if store.read_only or store.list_sessions(limit=1) or not folder.is_dir():
        return []
    return [store.import_session(json.loads(f.read_text())) for f in sorted(folder.glob("*.json"))]


def _record(store: Store, backend, method: str, problem, seed: int) -> str:
    m = METHODS[method]
    cfg = m.config(**SAMPLE_CONFIGS.get(method, {}))
    sid = store.create_session(method=method, model=backend.info.name, question=problem.question,
                               gold=str(problem.answer), config=cfg.to_json(), seed=seed)
    record(store, sid, m.run(problem.question, backend, config=cfg, seed=seed, gold=str(problem.answer)))
    return sid


LECO_KINDS = ("leco-fixes-error", "leco-cuts-correct-step")


def leco_kind(store: Store, sid: str, problem) -> str | None:
    """Which LECO sample a recorded LECO session is: its first solution wrong and its final
    answer right ("leco-fixes-error"), or its first cut on a step that was right
    ("leco-cuts-correct-step": before the first wrong step, or in a solution with none)."""
    from engine.evaluation.leco import leco_result
    r = leco_result(problem, store.events(sid))
    if not r.original_correct and r.correct:
        return "leco-fixes-error"
    if r.first_cut is not None and (r.first_wrong is None or r.first_cut < r.first_wrong):
        return "leco-cuts-correct-step"
    return None


def record_leco_samples(store: Store, backend, problems, seed: int, out: Path) -> None:
    """The first hard problem of each LECO_KINDS, recorded with LECO and greedy beside it."""
    wanted: dict[str, str | None] = dict.fromkeys(LECO_KINDS)
    for problem in problems:
        sid = _record(store, backend, "leco", problem, seed)
        kind = leco_kind(store, sid, problem)
        if kind is None or wanted[kind] is not None:
            continue
        wanted[kind] = problem.id
        for method, run_id in (("leco", sid), ("greedy", _record(store, backend, "greedy", problem, seed))):
            path = out / f"{kind}-{problem.id}-{method}.json"
            path.write_text(json.dumps(store.export_session(run_id), indent=1, sort_keys=True))
            print(f"wrote {path}", file=sys.stderr)
        if all(wanted.values()):
            return
    for kind, found in wanted.items():
        if found is None:
            print(f"no example of {kind} in the first {len(problems)} hard problems", file=sys.stderr)


# The lessons' own runs (app/lessons/): the fixed problem again with MCTS at a small exploration
# constant, beside the default c's recorded run (lesson "exploration"), and SUGAR's semantic entropy
# and routing on it (lesson "semantic-entropy"): its ten samples disagree, so there are clusters to see.
LESSON_PROBLEM = "heldout-hard-0023"
LESSON_RUNS: dict[str, tuple[str, dict]] = {"lesson-c-small": ("mcts", {"c": 0.25}),
                                            "lesson-sugar": ("sugar", {})}


def record_lesson_samples(store: Store, backend, problems, seed: int, out: Path) -> None:
    problem = next(p for p in problems if p.id == LESSON_PROBLEM)
    for kind, (method, overrides) in LESSON_RUNS.items():
        m = METHODS[method]
        cfg = m.config(**overrides)
        sid = store.create_session(method=method, model=backend.info.name, question=problem.question,
                                   gold=str(problem.answer), config=cfg.to_json(), seed=seed)
        record(store, sid, m.run(problem.question, backend, config=cfg, seed=seed, gold=str(problem.answer)))
        path = out / f"{kind}-{problem.id}-{method}.json"
        path.write_text(json.dumps(store.export_session(sid), indent=1, sort_keys=True))
        print(f"wrote {path}", file=sys.stderr)


def main(argv=None) -> int:
    from engine.evaluation.evaluate import HELDOUT
    from engine.demo_model.problems import load_problems
    from engine.models.registry import DEFAULT_MODEL, load_backend

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-problems", type=int, default=300)
    ap.add_argument("--out", type=Path, default=SAMPLES)
    ap.add_argument("--only-lessons", action="store_true", help="record only the lessons' runs (LESSON_RUNS)")
    args = ap.parse_args(argv)

    backend = load_backend(args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    store = Store(args.out / "recording.db")
    if args.only_lessons:
        record_lesson_samples(store, backend, load_problems(HELDOUT, "hard"), args.seed, args.out)
        _drop(store, args.out)
        return 0
    wanted = {"mcts-fixes-greedy": None, "mcts-fails": None}
    for problem in load_problems(HELDOUT, "hard")[:args.max_problems]:
        greedy = _record(store, backend, "greedy", problem, args.seed)
        if store.session(greedy)["correct"]:
            continue
        mcts = _record(store, backend, "mcts", problem, args.seed)
        kind = "mcts-fixes-greedy" if store.session(mcts)["correct"] else "mcts-fails"
        if wanted[kind] is None:
            wanted[kind] = (problem, greedy, mcts)
            print(f"{kind}: {problem.id}", file=sys.stderr)
        if all(wanted.values()):
            break
    for kind, found in wanted.items():
        if found is None:
            print(f"no example of {kind} in the first {args.max_problems} hard problems", file=sys.stderr)
            continue
        problem, greedy, mcts = found
        runs = {"greedy": greedy, "mcts": mcts}
        if kind == "mcts-fixes-greedy":
            for method in ("sc", "bon", "beam"):
                runs[method] = _record(store, backend, method, problem, args.seed)
        runs["rstar"] = _record(store, backend, "rstar", problem, args.seed)
        for method, sid in runs.items():
            path = args.out / f"{kind}-{problem.id}-{method}.json"
            path.write_text(json.dumps(store.export_session(sid), indent=1, sort_keys=True))
            print(f"wrote {path}", file=sys.stderr)
    record_leco_samples(store, backend, load_problems(HELDOUT, "hard")[:args.max_problems], args.seed, args.out)
    record_lesson_samples(store, backend, load_problems(HELDOUT, "hard"), args.seed, args.out)
    _drop(store, args.out)
    return 0


def _drop(store: Store, out: Path) -> None:
    """Close and delete the recording database: the JSON files are what is kept."""
    store.close()
    (out / "recording.db").unlink(missing_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(str(out / "recording.db") + suffix).unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
