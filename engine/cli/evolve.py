"""``thoughtscope evolve``: rStar-Math's self-evolution rounds (engine/ppm/evolve.py), resumable.

engine/cli/__init__.py adds the parser with `add_evolve_parser` and dispatches to `cmd_evolve`.
Each phase of each round has its own progress bar on stderr (engine/cli/progress.py); one line a
round says its numbers; ``--json`` prints the rounds' rows on stdout at the end. The bars' labels,
the phase lines and the round lines follow LANG (engine/ppm/evolve.py words them through the `_t`
it is given); the JSON does not. Running the same
command again on the same ``--out`` resumes the run: finished rounds are kept, an unfinished one
starts again at the phase that was cut off.

Not here: the rounds themselves (engine/ppm/evolve.py, engine/ppm/phases.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DEFAULT_THREADS = 1          # a round is minutes of one thread; the app or other work keeps the rest


def add_evolve_parser(subparsers, number) -> None:
    from engine.cli import _t  # LANG / LC_ALL: the help in Chinese (issue 24)
    from engine.demo_model.problems import TIERS
    from engine.models.registry import DEFAULT_MODEL
    from engine.ppm.evolve import EvolveConfig
    from engine.ppm.finetune import FinetuneConfig
    d, f = EvolveConfig(), FinetuneConfig()
    p = subparsers.add_parser(
        "evolve",
        help=_t("self-evolution rounds: MCTS on fresh problems -> fine-tuned policy and PPM -> held-out eval"),
        description=_t("rStar-Math's self-evolution on a local model (docs/ppm.md). Round 0 evaluates the starting "
                       "policy; each later round searches fresh training problems with the current policy and PPM, "
                       "fine-tunes the policy on the verified trajectories, trains the next PPM on the Q-value pairs "
                       "and evaluates both on held-out problems. Run it again with the same --out to resume."))
    p.add_argument("--rounds", type=number(int, 1, 100, "--rounds"), required=True, help=_t("rounds after round 0"))
    p.add_argument("--train-problems", type=number(int, 2, 100_000, "--train-problems"), required=True,
                   help=_t("training problems generated per round (fresh each round, never held-out ones)"))
    p.add_argument("--out", default=None, help=_t("folder for the rounds' weights and data "
                                                  "(default: <user data folder>/evolve/<model>-seed<seed>)"))
    p.add_argument("--db", default=None, help=_t("SQLite file for the rounds and their example trees "
                                                 "(default: $THOUGHTSCOPE_DB or the user data folder)"))
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=_t("the starting policy (default {model})", model=DEFAULT_MODEL))
    p.add_argument("--ppm", default=None, metavar="PATH",
                   help=_t("a starting PPM for round 1's search and round 0's eval (default none: round 1 is "
                           "terminal-guided only, as in rStar-Math)"))
    p.add_argument("--train-tier", choices=TIERS, default=d.train_tier)
    p.add_argument("--rollouts", type=number(int, 1, 10_000, "--rollouts"), default=d.rollouts,
                   help=_t("MCTS rollouts per training problem (default {n})", n=d.rollouts))
    p.add_argument("--eval-n", type=number(int, 1, 10_000, "--eval-n"), default=d.eval_n,
                   help=_t("held-out problems evaluated each round (default {n})", n=d.eval_n))
    p.add_argument("--eval-tier", choices=TIERS, default=d.eval_tier)
    p.add_argument("--eval-rollouts", type=number(int, 1, 10_000, "--eval-rollouts"), default=d.eval_rollouts,
                   help=_t("MCTS + PPM rollouts at evaluation (default {n})", n=d.eval_rollouts))
    p.add_argument("--sc-samples", type=number(int, 1, 256, "--sc-samples"), default=d.sc_samples)
    p.add_argument("--examples", type=number(int, 0, 100, "--examples"), default=d.examples,
                   help=_t("collection trees per round kept as sessions (default {n})", n=d.examples))
    p.add_argument("--ppm-val-share", type=number(float, 0.01, 0.99, "--ppm-val-share"), default=d.ppm_val_share,
                   help=_t("share of a round's problems whose pairs measure the PPM and never train it"))
    p.add_argument("--ppm-epochs", type=number(int, 1, 1000, "--ppm-epochs"), default=d.ppm_epochs)
    p.add_argument("--ppm-lr", type=number(float, 1e-9, 1, "--ppm-lr"), default=d.ppm_lr)
    p.add_argument("--ppm-min-pairs", type=number(int, 1, 1_000_000, "--ppm-min-pairs"), default=d.ppm_min_pairs,
                   help=_t("a round with fewer training pairs keeps the PPM it started with (default {n})",
                           n=d.ppm_min_pairs))
    p.add_argument("--ppm-freeze-body", action="store_true",
                   help=_t("train only the PPM's head, on the body's cached last-token states (engine/ppm/train.py)"))
    p.add_argument("--ppm-head-hidden", type=number(int, 0, 65_536, "--ppm-head-hidden"), default=d.ppm_head_hidden,
                   help=_t("a hidden layer of this width in the PPM's head (default 0: linear + tanh, as rStar-Math)"))
    p.add_argument("--code", action="store_true",
                   help=_t("collect and evaluate with claim-checked code MCTS (mcts-code: the comment's arithmetic must "
                           "match the executed value; docs/ppm.md)"))
    p.add_argument("--seed", type=number(int, 0, 2**32 - 1, "--seed"), default=d.seed)
    p.add_argument("--lr", type=number(float, 1e-9, 1, "--lr"), default=f.lr,
                   help=_t("fine-tuning LR (default {lr})", lr=f.lr))
    p.add_argument("--epochs", type=number(float, 0.01, 100, "--epochs"), default=f.epochs)
    p.add_argument("--max-steps", type=number(int, 1, 100_000, "--max-steps"), default=f.max_steps,
                   help=_t("fine-tuning steps at most per round (default {n})", n=f.max_steps))
    p.add_argument("--threads", type=number(int, 1, 256, "--threads"), default=DEFAULT_THREADS)
    p.add_argument("--prefix-cache-mb", type=number(float, 0, 10**6, "--prefix-cache-mb"), default=256.0)
    p.add_argument("--json", action="store_true", help=_t("print the rounds as JSON at the end"))


def default_out(model: str, seed: int) -> Path:
    import platformdirs
    return Path(platformdirs.user_data_dir("thoughtscope")) / "evolve" / f"{Path(model).name}-seed{seed}"


def cmd_evolve(args) -> int:
    import dataclasses
    import torch
    from engine.cli import _t
    from engine.cli.progress import progress
    from engine.models.registry import load_backend
    from engine.ppm.evolve import EvolveConfig, evolve, open_run, summary_line
    from engine.ppm.finetune import FinetuneConfig
    from engine.store import Store, default_db_path
    torch.set_num_threads(args.threads)
    ft = FinetuneConfig(lr=args.lr, epochs=args.epochs, max_steps=args.max_steps, threads=args.threads)
    cfg = EvolveConfig(train_problems=args.train_problems, train_tier=args.train_tier, rollouts=args.rollouts,
                       eval_n=args.eval_n, eval_tier=args.eval_tier, eval_rollouts=args.eval_rollouts,
                       sc_samples=args.sc_samples, examples=args.examples, ppm_val_share=args.ppm_val_share,
                       ppm_epochs=args.ppm_epochs, ppm_lr=args.ppm_lr, ppm_min_pairs=args.ppm_min_pairs,
                       ppm_freeze_body=args.ppm_freeze_body, ppm_head_hidden=args.ppm_head_hidden, code=args.code,
                       seed=args.seed, finetune=dataclasses.replace(ft))
    if args.ppm is not None:
        from engine.ppm.model import PPM_FILE
        if not (Path(args.ppm) / PPM_FILE).is_file():
            raise ValueError(f"--ppm {args.ppm} is not a PPM folder (no {PPM_FILE})")
    out = Path(args.out) if args.out else default_out(args.model, args.seed)
    loaded: dict[str, object] = {}

    def load(path: str):
        # one policy at a time in memory: round r's eval and round r+1's collection share it
        if path not in loaded:
            loaded.clear()
            loaded[path] = load_backend(path, threads=args.threads, prefix_cache_mb=args.prefix_cache_mb)
        return loaded[path]

    with Store(args.db or default_db_path()) as store:
        run = open_run(store, out, model=args.model, ppm=args.ppm, config=cfg)
        print(_t("evolve run {run_id}: {out} (database {db})", run_id=run.run_id, out=out, db=store.path),
              file=sys.stderr, flush=True)
        # the phases' labels, log lines and round summaries in the language of LANG (`say=_t`)
        rows = evolve(run, args.rounds, load_backend=load,
                      progress=lambda desc, total, unit: progress(total, desc, unit=unit),
                      log=lambda s: print(s, file=sys.stderr, flush=True), say=_t)
    if args.json:
        print(json.dumps({"run_id": run.run_id, "out": str(out), "rounds": rows}, indent=1))
    else:
        for r in rows:
            print(_t("round {round}: {summary}", round=r["round"], summary=summary_line(r, _t)))
    return 0
