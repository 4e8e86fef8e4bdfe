"""``thoughtscope compare``: methods at equal generated tokens per problem, stored and charted.

    thoughtscope compare --methods greedy,sc,mcts,rstar,mcts-code --budgets 700,2000,6000 --tier hard --n 100
    thoughtscope compare --show ID[,ID2...] [--out chart.png] [--json]
    thoughtscope compare --list

engine/cli/__init__.py adds the parser with `add_compare_parser`. The problems are picked, and a
bad request refused, before the model loads; the run shows a progress bar (a tqdm bar on a
terminal, a line every 30 s in a log: engine/cli/progress.py) over the pilot and every run. The
table printed after (and by ``--show``) has per arm the size, the target budget(s), the achieved
mean tokens, accuracy with its 95 % interval, mean wall seconds, and the triage of its wrong runs;
then which method wins at each budget.

Not here: choosing sizes and running (engine/evaluation/compare.py), the tables
(engine/compare_store.py), the chart (engine/evaluation/compare_chart.py).
"""

from __future__ import annotations

import argparse
import json
import sys

from engine.evaluation.compare import OVER_BUDGET, PILOT, available_methods


def add_compare_parser(subparsers, add_model_flags, number) -> argparse.ArgumentParser:
    from engine.demo_model.problems import TIERS
    from engine.cli import _t  # LANG / LC_ALL: the help in Chinese (issue 24)
    p = subparsers.add_parser("compare", help=_t("methods at equal generated tokens per problem: accuracy against "
                                                 "tokens and wall time, stored and charted (docs/compare.md)"))
    add_model_flags(p)
    what = p.add_mutually_exclusive_group()
    what.add_argument("--show", default=None, metavar="ID[,ID2...]",
                      help=_t("a stored experiment's table (and --out chart); several ids on the same problems "
                              "are shown as one"))
    what.add_argument("--list", action="store_true", help=_t("the stored experiments"))
    p.add_argument("--methods", default=None, metavar="M1,M2,...",
                   help=_t("methods to compare, from {methods}", methods=",".join(available_methods())))
    p.add_argument("--budgets", default=None, metavar="B1,B2,...",
                   help=_t("mean generated tokens per problem, increasing (each method's size is chosen to match)"))
    p.add_argument("--tier", choices=TIERS, default=None, help=_t("held-out tier (default hard)"))
    p.add_argument("--fresh", type=number(int, 0, 2**63 - 1, "--fresh"), default=None, metavar="GEN_SEED",
                   help=_t("--n problems of --tier generated now with this generator seed"))
    p.add_argument("--dataset", default=None, metavar="PATH", help=_t("your own problems (as `eval --dataset`)"))
    p.add_argument("--n", type=number(int, 1, 10**6, "--n"), default=None, help=_t("problems (default 100)"))
    p.add_argument("--seed", type=number(int, 0, 2**63 - 1, "--seed"), default=0)
    p.add_argument("--pilot", type=number(int, 1, 50, "--pilot"), default=PILOT,
                   help=_t("problems each method's size is calibrated on (default {pilot})", pilot=PILOT))
    p.add_argument("--out", default=None, metavar="CHART", help=_t("write the chart: .html, .png or .svg"))
    p.add_argument("--json", action="store_true", help=_t("print the experiment as JSON"))
    p.add_argument("--db", default=None, metavar="PATH",
                   help=_t("SQLite file for runs (default: the user data folder)"))
    return p


def _csv(text: str | None, flag: str, kind=str) -> tuple:
    if not text:
        raise ValueError(f"thoughtscope compare: {flag} is needed (comma-separated)")
    try:
        return tuple(kind(x.strip()) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"thoughtscope compare: {flag} must be comma-separated whole numbers, got {text!r}") from None


def _problems(args):
    """(problems, source, tier), refused before any model loads."""
    from engine.evaluation.evaluate import EVAL_N, dataset_problems, eval_problems
    if args.dataset is not None:
        if args.fresh is not None or args.tier is not None:
            raise ValueError("thoughtscope compare: --tier and --fresh pick built-in problems; --dataset brings "
                             "its own: give one or the other")
        ds = dataset_problems("mcts", args.dataset, n=args.n)
        return list(ds.problems), f"dataset:{ds.source}", "dataset"
    tier = args.tier or "hard"
    problems = eval_problems("mcts", tier, args.n or EVAL_N, fresh=args.fresh)
    return problems, "held-out" if args.fresh is None else f"fresh:{args.fresh}", tier


def experiment_report(store, eid: str | list[str]) -> dict:
    """The experiment row, its arms (with the triage of each arm's wrong runs) and the winners.
    Several ids (experiments on the same problems: model, problems, tier, n and seed equal, such
    as one method run later or beside the others) are reported as one: their arms together."""
    from engine.compare_store import CompareStore
    from engine.evaluation.compare import results, winners
    from engine.triage import summarize, triage
    cs = CompareStore(store)
    eids = [eid] if isinstance(eid, str) else list(eid)
    exps = [cs.experiment(e) for e in eids]
    same = ("model", "problems", "tier", "n", "seed")
    for e in exps[1:]:
        if any(e[k] != exps[0][k] for k in same):
            raise ValueError(f"experiments {exps[0]['experiment_id']} and {e['experiment_id']} ran on different "
                             f"problems or models ({', '.join(same)} must be equal) and cannot be shown as one")
    # merged: one arm per (method, size), the experiment's with the most runs (the same seeds give
    # the same runs, so a shorter copy is a prefix of the longer one); none stopped before a run
    best: dict[tuple, tuple[str, int]] = {}
    for e in eids:
        for a in results(store, e):
            key = (a.method, a.size)
            if a.runs and a.runs > best.get(key, ("", 0))[1]:
                best[key] = (e, a.runs)
    arms, res = [], []
    for e in eids:
        for a in results(store, e):
            if len(eids) > 1 and best.get((a.method, a.size), ("", 0))[0] != e:
                continue
            reports = [triage(store.tree(r["session_id"])) for r in cs.runs(e, a.method)
                       if r["size"] == (a.size or 0) and not r["correct"]]
            arms.append({**a.to_json(), "triage": summarize(reports)})
            res.append(a)
    exp = dict(exps[0])
    if len(exps) > 1:
        exp.update(experiment_id="+".join(eids), methods=[m for e in exps for m in e["methods"]],
                   budgets=sorted({b for e in exps for b in e["budgets"]}),
                   status="done" if all(e["status"] == "done" for e in exps) else "+".join(e["status"] for e in exps),
                   wall_s=sum(e["wall_s"] or 0 for e in exps))
    return {"experiment": exp, "arms": arms, "results": res,
            "winners": {str(b): w for b, w in winners(res, exp["budgets"]).items()}}


def _chart_labels() -> dict[str, str]:
    """The chart's words (compare_chart.LABELS) in the language of LANG (app/i18n.py's catalogue)."""
    from engine.cli import _t
    from engine.evaluation.compare_chart import LABELS
    return {key: _t(english) for key, english in LABELS.items()}


def _print_table(report: dict) -> None:
    exp = report["experiment"]
    print(f"experiment {exp['experiment_id']} · {exp['model']} · {exp['tier']} ({exp['problems']}), n={exp['n']}, "
          f"seed {exp['seed']} · {exp['status']}" + (f" in {exp['wall_s']:.0f} s" if exp["wall_s"] else ""))
    print(f"{'method':<10} {'size':<15} {'target':>12} {'tokens':>8} {'accuracy':>9} {'95% CI':>12} "
          f"{'s/problem':>9}  wrong: never_reached / reached_not_chosen / no_answer / unfinished")
    for a in report["arms"]:
        size = "one size" if a["knob"] is None else f"{a['knob']}={a['size']}"
        target = "—" if a["knob"] is None else ",".join(map(str, a["budgets"]))
        acc = "—" if a["accuracy"] is None else f"{a['accuracy']:.3f}"
        toks = "—" if a["mean_tokens"] is None else f"{a['mean_tokens']:.0f}"
        wall = "—" if a["mean_wall_s"] is None else f"{a['mean_wall_s']:.2f}"
        t = a["triage"]
        cls = " / ".join(str(t["classes"][c]) for c in ("never_reached", "reached_not_chosen", "no_answer"))
        print(f"{a['method']:<10} {size:<15} {target:>12} {toks:>8} {acc:>9} "
              f"{a['ci95'][0]:.2f}–{a['ci95'][1]:.2f}   {wall:>9}  {cls} / {t['status']['unfinished']}")
    for b, w in report["winners"].items():
        over = sorted({a["method"] for a in report["arms"] if a["knob"] is not None and int(b) in a["budgets"]
                       and a["mean_tokens"] is not None and a["mean_tokens"] > (1 + OVER_BUDGET) * int(b)})
        print(f"budget {b}: best {', '.join(w) if w else '—'}"
              + (f" (over this budget, not counted: {', '.join(over)})" if over else ""))


def cmd_compare(args, load) -> int:
    from engine.store import Store, default_db_path
    from engine.compare_store import CompareStore
    db = args.db if getattr(args, "db", None) else default_db_path()
    if args.list:
        with Store(db) as store:
            for e in CompareStore(store).experiments():
                print(f"{e['experiment_id']}  {e['created']}  {e['status']:<8} {e['model']}  {e['tier']} n={e['n']}  "
                      f"{','.join(e['methods'])}  budgets {','.join(map(str, e['budgets']))}")
        return 0
    if args.show is None:
        from engine.evaluation.compare import CompareRequest, pilot_runs
        req = CompareRequest(_csv(args.methods, "--methods"), _csv(args.budgets, "--budgets", int), seed=args.seed,
                             pilot=args.pilot)
        problems, source, tier = _problems(args)
        backend = load(args)
        from engine.cli.progress import progress
        from engine.evaluation.compare import run_compare
        # the pilot, then each method's arms: the arm count is known only after the pilot, so the
        # bar's total is an upper bound (one arm per budget) until the pilot sets it
        total = pilot_runs(req) + len(problems) * sum(1 if m == "greedy" else len(req.budgets) for m in req.methods)
        with Store(db) as store, progress(total, "compare", "run") as bar:
            eid = run_compare(backend, store, req, problems, source=source, tier=tier, progress=bar.update,
                              planned=lambda total: setattr(bar, "total", total))
    with Store(db) as store:
        eids = [CompareStore(store).resolve(x) for x in args.show.split(",")] if args.show is not None else [eid]
        report = experiment_report(store, eids)
        if args.out:
            from engine.evaluation.compare_chart import compare_figure, write_chart
            exp = report["experiment"]
            fig = compare_figure(report["results"], f"{exp['model']}, {exp['tier']} tier, n={exp['n']}",
                                 labels=_chart_labels())
            path, note = write_chart(fig, args.out)
            from engine.cli import _t   # LANG=zh: the status line in Chinese
            print(_t("thoughtscope compare: wrote {path} ({note})", path=path, note=_t(note)), file=sys.stderr)
    report.pop("results")
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        _print_table(report)
    return 0
