"""``thoughtscope sweep``: accuracy per sampler and temperature (engine/evaluation/sweep.py), from a shell.

engine/cli/__init__.py adds the parser with `add_sweep_parser` and dispatches to `cmd_sweep`. Bad
flags (a temperature out of range, an unknown sampler, n larger than the tier) fail before
the model loads. Progress goes to stderr; ``--json`` prints the sweep alone on stdout and
``--out`` writes it to a file that the app's Sampling lab tab plots.

Not here: the sweep itself (engine/evaluation/sweep.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_sweep_parser(subparsers, add_model_flags, number) -> argparse.ArgumentParser:
    """Add ``sweep`` to ``subparsers``; ``add_model_flags`` and ``number`` are cli.py's helpers."""
    from engine.cli import _t  # LANG / LC_ALL: the help in Chinese (issue 24)
    from engine.demo_model.problems import TIERS
    from engine.evaluation.sweep import SAMPLERS, TEMPERATURES

    p = subparsers.add_parser("sweep", help=_t("accuracy per sampler (min-p, top-p, plain) and temperature"))
    add_model_flags(p)
    p.add_argument("--tier", choices=TIERS, default="hard")
    p.add_argument("--n", type=number(int, 1, 10**6, "--n"), default=100, help=_t("problems per cell (default 100)"))
    p.add_argument("--temperatures", default=",".join(f"{t:g}" for t in TEMPERATURES),
                   help=_t("comma-separated temperatures (default %(default)s)"))
    p.add_argument("--samplers", default=",".join(SAMPLERS),
                   help=_t("comma-separated, some of {samplers} (default all)", samplers=",".join(SAMPLERS)))
    p.add_argument("--seed", type=number(int, 0, 2**63 - 1, "--seed"), default=0)
    p.add_argument("--batch-size", type=number(int, 1, 1024, "--batch-size"), default=32)
    p.add_argument("--out", default=None, metavar="PATH", help=_t("also write the sweep JSON to PATH"))
    p.add_argument("--json", action="store_true", help=_t("print the sweep as JSON"))
    return p


def cmd_sweep(args, load) -> int:
    from engine.evaluation.evaluate import eval_problems
    from engine.evaluation.sweep import SweepConfig, parse_temperatures, run_sweep, sweep_table

    cfg = SweepConfig(temperatures=parse_temperatures(args.temperatures),
                      samplers=tuple(s.strip() for s in args.samplers.split(",") if s.strip()),
                      tier=args.tier, n=args.n, seed=args.seed, batch_size=args.batch_size)
    eval_problems("sc", cfg.tier, cfg.n)                   # n too large: fail before the model loads
    if args.out and not Path(args.out).expanduser().resolve().parent.is_dir():
        raise ValueError(f"--out {args.out}: its folder does not exist")
    backend = load(args)
    total = cfg.n * len(cfg.samplers) * len(cfg.temperatures)
    from engine.cli.progress import progress
    with progress(total, f"sweep {cfg.tier}") as bar:
        data = run_sweep(backend, cfg, progress=bar.update)
    if args.out:
        Path(args.out).expanduser().write_text(json.dumps(data, indent=1) + "\n")
        from engine.cli import _t   # LANG=zh: the status line in Chinese
        print(_t("sweep written to {path}", path=args.out), file=sys.stderr)
    if args.json:
        print(json.dumps(data))
    else:
        print(f"{data['model']} on {cfg.tier} (n={cfg.n} per cell, one sample each, seed {cfg.seed}): accuracy")
        print(sweep_table(data))
    return 0
