"""``thoughtscope collect-pairs`` and ``thoughtscope train-ppm``: rStar-Math's process preference
model for a policy, from MCTS on generated training problems (docs/ppm.md).

- ``collect-pairs --problems N``: gold-guided MCTS on N generated training problems (never a
  held-out or reserved eval problem), the Q-value pairs (and hard negatives) as JSONL and the
  verified trajectories beside them;
- ``train-ppm --pairs FILE`` trains on a pairs file; ``train-ppm --pairs-from N`` collects first
  (both phases with a progress bar). The PPM folder goes to ``--out``; its ppm.json holds the
  training config, the log and the metrics (train and held-out pairwise accuracy).

engine/cli/__init__.py adds the parsers with `add_ppm_parsers` and dispatches to `cmd_collect_pairs`
and `cmd_train_ppm`. Not here: the PPM, its data or training (engine/ppm/).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _collect_flags(p, number) -> None:
    from engine.cli import _t  # LANG / LC_ALL: the help in Chinese (issue 24)
    p.add_argument("--rollouts", type=number(int, 1, 10_000, "--rollouts"), default=16,
                   help=_t("MCTS rollouts per training problem (default 16)"))
    p.add_argument("--children", type=number(int, 1, 32, "--children"), default=3,
                   help=_t("steps sampled per expansion (default 3)"))
    p.add_argument("--train-seed", type=number(int, 0, 2**31, "--train-seed"), default=1,
                   help=_t("seed of the training-problem generator and the searches (default 1)"))
    p.add_argument("--init-ppm", default=None, metavar="DIR",
                   help=_t("a PPM whose scores start each new step's Q during collection (rStar-Math's later rounds)"))
    p.add_argument("--code", action="store_true",
                   help=_t("collect from code-verified MCTS (mcts-code): pairs only between steps that pass --check"))
    p.add_argument("--check", choices=("runs", "runs_and_claim"), default="runs_and_claim",
                   help=_t("with --code: what a step must pass (default runs_and_claim: its code runs and "
                           "the comment's arithmetic claim matches the executed value)"))
    p.add_argument("--resample", type=number(int, 0, 16, "--resample"), default=0,
                   help=_t("with --code: replace an expansion's failed steps by new samples up to N times (default 0)"))
    p.add_argument("--drop-failed", action="store_true",
                   help=_t("with --code: never walk into a failed step while a sibling passed (rStar-Math drops them)"))
    p.add_argument("--selection", choices=("official", "strict"), default="official",
                   help=_t("pair rule (engine/pairs.py): official (rStar-Math) or strict (an ending without an "
                           "answer or a failed code step counts as wrong)"))
    p.add_argument("--tier", choices=("hard", "medium", "both"), default="both",
                   help=_t("training-problem tiers (default both, drawn equally)"))
    p.add_argument("--no-hard-negatives", action="store_true",
                   help=_t("only rStar-Math's Q-value pairs, no (true claim, false claim) sibling pairs"))


def add_ppm_parsers(subparsers, add_model_flags, number) -> None:
    from engine.cli import _t  # LANG / LC_ALL: the help in Chinese (issue 24)
    c = subparsers.add_parser("collect-pairs",
                              help=_t("PPM training pairs from gold-guided MCTS on generated problems"))
    c.add_argument("--problems", type=number(int, 1, 100_000, "--problems"), required=True,
                   help=_t("generated training problems (hard and medium; none held out)"))
    c.add_argument("--out", "-o", required=True, help=_t("pairs JSONL (trajectories go to FILE.traj.jsonl beside it)"))
    _collect_flags(c, number)
    c.add_argument("--json", action="store_true", help=_t("print the summary as JSON"))
    add_model_flags(c)

    t = subparsers.add_parser("train-ppm", help=_t("train a process preference model (rStar-Math PPM) for the model"))
    src = t.add_mutually_exclusive_group(required=True)
    src.add_argument("--pairs", default=None, metavar="FILE", help=_t("a pairs JSONL (collect-pairs or export-pairs)"))
    src.add_argument("--pairs-from", type=number(int, 1, 100_000, "--pairs-from"), default=None,
                     metavar="N_TRAIN_PROBLEMS", help=_t("collect pairs from this many generated problems first"))
    t.add_argument("--out", "-o", required=True, help=_t("the PPM folder to write"))
    t.add_argument("--held-out-pairs", default=None, metavar="FILE",
                   help=_t("pairs of other problems to measure pairwise accuracy on (default: a tenth of the problems)"))
    t.add_argument("--epochs", type=number(int, 1, 1000, "--epochs"), default=2)
    t.add_argument("--lr", type=number(float, 1e-8, 1, "--lr"), default=1e-4,
                   help=_t("body learning rate (the head's is 10 times this; default 1e-4)"))
    t.add_argument("--batch-size", type=number(int, 1, 1024, "--batch-size"), default=16)
    t.add_argument("--seed", type=number(int, 0, 2**31, "--seed"), default=0)
    t.add_argument("--freeze-body", action="store_true",
                   help=_t("train only the head on the policy's fixed last-token states (fast; one epoch is cheap)"))
    t.add_argument("--head-hidden", type=number(int, 0, 4096, "--head-hidden"), default=0,
                   help=_t("0: rStar-Math's linear head; N: a LayerNorm + N-wide GELU layer before it"))
    t.add_argument("--save-dtype", choices=("float32", "float16"), default="float32",
                   help=_t("weights on disk (float16 halves the folder; scores move by ~1e-3)"))
    _collect_flags(t, number)
    t.add_argument("--json", action="store_true", help=_t("print the metrics as JSON"))
    add_model_flags(t)


def _collect(args, load_backend, n: int, out: Path | None):
    from engine.cli.progress import progress
    from engine.pairs import PairConfig
    from engine.ppm.data import collect_pairs, training_problems, write_pairs, write_trajectories
    tiers = ("hard", "medium") if args.tier == "both" else (args.tier,)
    problems = training_problems(n, args.train_seed, tiers=tiers)
    backend = load_backend(args)
    from engine.cli import _t
    what = f"mcts-code, {args.check}" if args.code else "MCTS"
    with progress(n, _t("collect pairs ({search}, gold reward)", search=what)) as bar:
        res = collect_pairs(backend, problems, rollouts=args.rollouts, seed=args.train_seed, ppm=args.init_ppm,
                            code=args.code, check=args.check, resample=args.resample,
                            drop_failed=args.drop_failed, pair_config=PairConfig(selection=args.selection),
                            children=args.children,
                            hard_negatives=not args.no_hard_negatives, progress=bar.update)
    if out is not None:
        write_pairs(out, res.pairs)
        write_trajectories(out.with_suffix(".traj.jsonl"), res.trajectories)
    return backend, res


def _ready_to_write(out: Path) -> None:
    """Make ``out``'s folder, or say in one line why the pairs could not be written there."""
    if out.is_dir():
        raise ValueError(f"--out must be a file path, got the folder {out}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--out: cannot create the folder {out.parent} ({e.strerror})") from None


def cmd_collect_pairs(args, load_backend) -> int:
    from engine.cli import _t
    out = Path(args.out)
    _ready_to_write(out)            # before the collection, which can take hours: nothing to lose after
    _, res = _collect(args, load_backend, args.problems, out)
    if args.json:
        print(json.dumps(res.summary))
    else:
        print(_t("wrote {pairs} pairs to {out} and {trajectories} trajectories to {traj}", pairs=len(res.pairs),
                 out=out, trajectories=len(res.trajectories), traj=out.with_suffix(".traj.jsonl")), file=sys.stderr)
    return 0


def cmd_train_ppm(args, load_backend) -> int:
    from engine.cli import _t
    from engine.cli.progress import progress
    from engine.ppm.data import read_pairs, write_pairs
    from engine.ppm.train import split_by_problem, train_ppm
    if getattr(args, "server", None):
        # the PPM is the policy's own network with a score head (rStar-Math): training needs the
        # weights, which a server keeps to itself; collecting the pairs through it is fine
        raise ValueError("train-ppm trains a PPM from a model's weights, which a server does not give: collect "
                         "the pairs through the server (collect-pairs --server URL --out FILE), then train-ppm "
                         "--pairs FILE --model with a local copy of the model")
    out = Path(args.out)
    if args.pairs is not None:
        if not Path(args.pairs).is_file():
            raise ValueError(f"--pairs: no file at {args.pairs}")
        pairs, info = read_pairs(args.pairs), {"pairs_file": str(args.pairs)}
        from engine.ppm import text_format
        info["text_format"] = text_format(pairs)
        init = args.model
        from engine.models.registry import EMBEDDED
        if args.model not in EMBEDDED and not Path(args.model).is_dir():
            raise ValueError(f"--model must be an embedded model or a model folder to train a PPM from, "
                             f"got {args.model!r}")
    else:
        backend, res = _collect(args, load_backend, args.pairs_from, None)
        from engine.ppm import text_format
        pairs, info, init = res.pairs, {**res.summary, "text_format": text_format(res.pairs)}, backend
        out.mkdir(parents=True, exist_ok=True)
        write_pairs(out / "pairs.jsonl", pairs)
    if not pairs:
        raise ValueError("no pairs to train on: collect from more problems or with more --rollouts")
    held = None
    if args.held_out_pairs is not None:
        if not Path(args.held_out_pairs).is_file():
            raise ValueError(f"--held-out-pairs: no file at {args.held_out_pairs}")
        held = read_pairs(args.held_out_pairs)
        info["held_out_pairs_file"] = str(args.held_out_pairs)
    train = pairs if held is not None else split_by_problem(pairs, seed=args.seed)[0]
    steps = args.epochs if args.freeze_body else ((len(train) + args.batch_size - 1) // args.batch_size) * args.epochs
    with progress(steps, _t("train PPM"), unit="epoch" if args.freeze_body else "step") as bar:
        metrics = train_ppm(pairs, init_from=init, out=out, epochs=args.epochs, lr=args.lr,
                            batch_size=args.batch_size, seed=args.seed, threads=args.threads or 1,
                            progress=bar.update, save_dtype=args.save_dtype, data_info=info,
                            freeze_body=args.freeze_body, head_hidden=args.head_hidden, held_out=held)
    if args.json:
        print(json.dumps(metrics))
    else:
        print(_t("PPM saved to {out}: pairwise accuracy {train} on {train_pairs} training pairs, {held} on "
                 "{held_pairs} held-out pairs (problems it was not trained on)", out=out,
                 train=f"{metrics['train_accuracy']:.3f}", train_pairs=metrics["train_pairs"],
                 held=metrics["held_out_accuracy"], held_pairs=metrics["held_out_pairs"]), file=sys.stderr)
    return 0
