"""``thoughtscope export-pairs``: rStar-Math preference pairs as JSONL, from stored sessions or
from an eval run (the searches are run with the held-out answer keys, as ``eval`` runs them).

engine/cli/__init__.py adds the parser with `add_pairs_parser` and dispatches to `cmd_export_pairs`.
The JSONL goes to ``--out`` or stdout; a one-line summary goes to stderr (``--json``: to stdout
as JSON when ``--out`` is given).

Not here: pair selection (engine/pairs.py).
"""

from __future__ import annotations

import json
import sys

from engine.pairs import SELECTIONS, PairConfig, pairs_from_eval, pairs_from_tree, write_jsonl


def add_pairs_parser(subparsers, add_model_flags, add_config_flags, number) -> None:
    from engine.cli import _t  # LANG / LC_ALL: the help in Chinese (issue 24)
    from engine.demo_model.problems import TIERS
    from engine.evaluation.evaluate import EVAL_METHODS
    from engine.search import METHODS
    p = subparsers.add_parser("export-pairs", help=_t("step-level preference pairs (rStar-Math PPM data) as JSONL"))
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--session", action="append", metavar="ID",
                     help=_t("a stored session (repeatable; a unique prefix will do)"))
    src.add_argument("--eval", dest="eval_method", metavar="METHOD",
                     choices=sorted(m for m in EVAL_METHODS if m in METHODS),
                     help=_t("run this search on held-out problems and export every tree's pairs"))
    p.add_argument("--db", default=None, help=_t("SQLite file for --session (default: the user data folder)"))
    p.add_argument("--tier", choices=TIERS, default="hard")
    p.add_argument("--n", type=number(int, 1, 10**6, "--n"), default=20)
    p.add_argument("--seed", type=number(int, 0, 2**63 - 1, "--seed"), default=0)
    p.add_argument("--margin", type=number(float, 0, 10, "--margin"), default=PairConfig.margin,
                   help=_t("keep pairs with q_chosen - q_rejected >= this (default {margin})",
                           margin=PairConfig.margin))
    p.add_argument("--selection", choices=SELECTIONS, default=PairConfig.selection,
                   help=_t("official: rStar-Math's rule; strict: negatives reach only wrong answers, endings "
                           "without an answer count as wrong, no continuation check (docs/code_mcts.md; "
                           "default {selection})", selection=PairConfig.selection))
    p.add_argument("--out", "-o", default=None, help=_t("JSONL file (default: stdout)"))
    p.add_argument("--json", action="store_true", help=_t("with --out: print the summary as JSON"))
    add_model_flags(p)
    add_config_flags(p, [m.config for m in METHODS.values()])


def cmd_export_pairs(args, load_backend, config_from_args) -> int:
    from engine.search import METHODS
    from engine.store import Store, default_db_path
    pair_cfg = PairConfig(margin=args.margin, selection=args.selection)
    if args.session:
        given = [k for k, v in vars(args).items() if k.startswith("cfg_") and v is not None]
        if given:
            raise ValueError("method flags apply only with --eval, not to stored sessions")
        pairs, notes = [], {}
        with Store(args.db or default_db_path()) as store:
            for ref in args.session:
                sid = store.resolve(ref)
                got, note = pairs_from_tree(store.tree(sid), pair_cfg, session_id=sid)
                pairs += got
                notes[sid] = note
        summary = {"sessions": notes, "pairs": len(pairs)}
    else:
        from engine.cli.progress import progress
        cfg = config_from_args(METHODS[args.eval_method].config, args, args.eval_method)
        from engine.evaluation.evaluate import eval_problems
        eval_problems(args.eval_method, args.tier, args.n)      # fail fast, before the model loads
        backend = load_backend(args)
        with progress(args.n, f"{args.eval_method} {args.tier}") as bar:
            pairs, summary = pairs_from_eval(backend, args.eval_method, args.tier, args.n, args.seed, cfg, pair_cfg,
                                             progress=bar.update)
    from engine.cli import _t   # LANG=zh: the status lines on stderr in Chinese
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            write_jsonl(pairs, fh)
        if args.json:
            print(json.dumps(summary))
        else:
            print(_t("wrote {n} pairs to {path}", n=len(pairs), path=args.out), file=sys.stderr)
    else:
        write_jsonl(pairs, sys.stdout)
        print(_t("{n} pairs", n=len(pairs)), file=sys.stderr)
    for sid, note in summary.get("sessions", {}).items():
        if not note.endswith("pairs"):
            print(f"session {sid}: {note}", file=sys.stderr)
    return 0
