"""``thoughtscope``: the command line — its parser, `COMMANDS` and `main`. Every command is listed in
`COMMANDS`; the larger ones live in their own modules here (sessions, triage, sweep, compare,
pairs, ppm, evolve), the flags shared by several in flags.py and the CLI's words (Chinese under
LANG=zh) in words.py.

Bad input (a flag out of range, a missing model, an empty question) ends with one line on
stderr and exit code 2, never a traceback; a bug that escapes is one "internal error" line and
exit code 1 (docs/reliability.md). ``--json`` output goes to stdout alone; progress
bars go to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from contextlib import contextmanager

from engine.cli.flags import (_Parser, _add_config_flags, _add_model_flags, _add_sampling_flags, _format_kwargs,
                              _load, _load_kwargs, _number, _server_kwargs, _workers, config_from_args)
from engine.cli.words import CliError, _message, _t, _use_environment_language  # noqa: F401 (submodules: _t)
from engine.models.base import InputError, ModelLoadError
from engine.search.common import MAX_SOLUTION_TOKENS

EXIT_USAGE = 2
EXIT_INTERNAL = 1


def build_parser() -> argparse.ArgumentParser:
    from engine.demo_model.problems import TIERS
    from engine.evaluation.evaluate import EVAL_METHODS, EVAL_N, EvalConfig
    from engine.search import METHODS

    ap = _Parser(prog="thoughtscope", description=_t("Watch language models reason: a local web app and its engine."))
    sub = ap.add_subparsers(dest="command", parser_class=_Parser)

    s = sub.add_parser("serve", help=_t("start the web app (the default command)"))
    _add_model_flags(s)
    s.add_argument("--host", default="127.0.0.1", help=_t("address to bind (default loopback only)"))
    s.add_argument("--port", type=_number(int, 1, 65535, "--port"), default=7860)
    s.add_argument("--db", default=None, help=_t("SQLite file for runs (default: the user data folder)"))
    s.add_argument("--auth", default=None, metavar="USERS_FILE",
                   help=_t("classroom mode: a login page for the users of this file (lines name:hash from "
                        "`thoughtscope hash-password NAME`); each user sees only their own runs (docs/classroom.md)"))
    s.add_argument("--queue-size", type=_number(int, 1, 10_000, "--queue-size"), default=32,
                   help=_t("events that may wait in the queue; more are turned away (default 32)"))
    s.add_argument("--run-limit", type=_number(float, 0, 86_400, "--run-limit"), default=None, metavar="SECONDS",
                   help=_t("end each Search, LECO or Semantic-entropy run this long after it starts, keeping what it "
                        "found (0: never; default 120 with --auth, so one student cannot hold the model queue, "
                        "else never)"))
    s.add_argument("--ssl-certfile", default=None, help=_t("serve HTTPS with this certificate (with --ssl-keyfile)"))
    s.add_argument("--ssl-keyfile", default=None, help=_t("the certificate's private key"))

    h = sub.add_parser("hash-password", help=_t("a users-file line for classroom mode (serve --auth)"))
    h.add_argument("user", help=_t("the user name (1-64 of A-Z a-z 0-9 _ . @ -)"))
    h.add_argument("--iterations", type=_number(int, 1000, 10**8, "--iterations"), default=600_000,
                   help=_t("PBKDF2-HMAC-SHA256 iterations (default 600000)"))

    m = sub.add_parser("models", help=_t("list the embedded models"))
    m.add_argument("--json", action="store_true")

    g = sub.add_parser("generate", help=_t("one generation with its per-token logprobs"))
    _add_model_flags(g)
    g.add_argument("--prompt", required=True, help=_t("the question (wrapped in the model's prompt format)"))
    g.add_argument("--raw", action="store_true", help=_t("send the prompt as is, without the question format"))
    _add_sampling_flags(g, temperature=0.0)
    g.add_argument("--max-new-tokens", type=_number(int, 1, 4096, "--max-new-tokens"), default=MAX_SOLUTION_TOKENS)
    g.add_argument("--seed", type=_number(int, 0, 2**63 - 1, "--seed"), default=0)
    g.add_argument("--json", action="store_true")

    r = sub.add_parser("run", help=_t("run one search headless and store it as a session"),
                       description=_t("run one search headless and store it as a session; "
                                   "`thoughtscope run METHOD --help` lists that method's own settings"))
    methods = r.add_subparsers(dest="method", required=True, metavar="METHOD")
    for name in sorted(METHODS):
        m = METHODS[name]
        mp = methods.add_parser(name, help=_t(m.label),
                                description=_t("{label}: one search, stored as a session. The settings below are "
                                               "this method's own; docs/ explains each method.", label=_t(m.label)))
        mp.add_argument("--question", required=True, help=_t("the question to search on"))
        mp.add_argument("--answer", default=None, help=_t("the gold answer, to mark the result right or wrong"))
        mp.add_argument("--seed", type=_number(int, 0, 2**63 - 1, "--seed"), default=0)
        mp.add_argument("--db", default=None, help=_t("SQLite file (default: the user data folder)"))
        mp.add_argument("--json", action="store_true")
        _add_model_flags(mp)
        _add_config_flags(mp, [m.config])
        # other methods' settings are accepted, unlisted, and refused by config_from_args with a line
        # that names the method's own
        _add_config_flags(mp, [o.config for o in METHODS.values()], hidden=True,
                          skip={f.name for f in dataclasses.fields(m.config)})

    from engine.cli.sessions import add_export_parser, add_sessions_parser
    add_sessions_parser(sub, "SQLite file for runs (default: $THOUGHTSCOPE_DB or the user data folder)")
    add_export_parser(sub, "SQLite file for runs (default: $THOUGHTSCOPE_DB or the user data folder)")
    from engine.cli.triage import add_triage_parser
    add_triage_parser(sub, "SQLite file for runs (default: $THOUGHTSCOPE_DB or the user data folder)")

    e = sub.add_parser("eval", help=_t("accuracy on the held-out problems, or on your own data set"))
    _add_model_flags(e)
    e.add_argument("--method", choices=sorted(EVAL_METHODS), default="greedy")
    # None: not given (hard), so --dataset can refuse a tier it would ignore
    e.add_argument("--tier", choices=TIERS, default=None, help=_t("held-out tier (default hard)"))
    e.add_argument("--n", type=_number(int, 1, 10**6, "--n"), default=None,
                   help=_t("problems to evaluate (default {n}, or every usable row of a smaller --dataset)", n=EVAL_N))
    e.add_argument("--seed", type=_number(int, 0, 2**63 - 1, "--seed"), default=0)
    e.add_argument("--fresh", type=_number(int, 0, 2**63 - 1, "--fresh"), default=None, metavar="GEN_SEED",
                   help=_t("evaluate on --n problems generated now with this generator seed (none from the "
                        "held-out file) instead of the held-out set: a second test set"))
    e.add_argument("--events", type=int, nargs=2, metavar=("LO", "HI"), default=None,
                   help=_t("with --fresh: LO to HI events a problem instead of the tier's own count "
                        "(numbers as the tier), to test past what the model was trained on"))
    e.add_argument("--dataset", default=None, metavar="PATH_OR_HUB_ID",
                   help=_t("evaluate on your own problems instead of the held-out set: a .jsonl, .json, .csv or "
                        ".parquet file, or a hub data set id (ID or ID:CONFIG; needs the datasets library and "
                        "network). Gold answers are read as GSM8K (#### 18) and MATH (\\boxed{}) write them; "
                        "rows whose gold cannot be read are skipped and counted"))
    e.add_argument("--split", default=None, help=_t("with --dataset: the hub split (default test), or which list "
                                                 "of a JSON file holding several"))
    e.add_argument("--question-field", default=None, metavar="FIELD",
                   help=_t("with --dataset: the question's field (default the first of question, problem, prompt, "
                        "input, query)"))
    e.add_argument("--answer-field", default=None, metavar="FIELD",
                   help=_t("with --dataset: the gold answer's field (default the first of answer, final_answer, "
                        "solution, target, output, gold)"))
    e.add_argument("--json", action="store_true", help=_t("print the summary as JSON"))
    e.add_argument("--details", action="store_true", help=_t("include per-problem results in the JSON"))
    e.add_argument("--concurrency", type=_number(int, 1, 256, "--concurrency"), default=1, metavar="K",
                   help=_t("solve K problems at once (tree searches, se, sugar): locally their model calls share "
                        "forward passes, through --server K requests are in flight; each search's events are "
                        "those it yields alone (docs/scaling.md)"))
    e.add_argument("--workers", type=_workers, default="auto", metavar="W",
                   help=_t("with --concurrency K on a CPU: spread the K searches over W processes, each with "
                        "its own copy of the model and its share of the cores; auto (default): one per idle "
                        "core and per 2 searches, as many as fit in half the free memory (docs/scaling.md)"))
    _add_config_flags(e, [EvalConfig] + [m.config for m in METHODS.values()])

    from engine.cli.sweep import add_sweep_parser
    add_sweep_parser(sub, _add_model_flags, _number)

    b = sub.add_parser("bench", help=_t("tokens computed per tree token, batching, redraw time, memory"))
    _add_model_flags(b)
    b.add_argument("--quick", action="store_true", help=_t("a tiny workload (seconds; for tests)"))
    b.add_argument("--json", action="store_true")

    from engine.cli.pairs import add_pairs_parser
    add_pairs_parser(sub, _add_model_flags, _add_config_flags, _number)
    from engine.cli.ppm import add_ppm_parsers
    add_ppm_parsers(sub, _add_model_flags, _number)

    from engine.cli.evolve import add_evolve_parser
    add_evolve_parser(sub, _number)

    from engine.cli.compare import add_compare_parser
    add_compare_parser(sub, _add_model_flags, _number)

    from engine.sandbox import ISOLATIONS
    sb = sub.add_parser("sandbox", help=_t("run a Python file exactly as model-written code is run, print the outcome"))
    sb.add_argument("file", help=_t("a Python file"))
    sb.add_argument("--isolation", choices=ISOLATIONS, default=None,
                    help=_t("force an isolation level (default: the strongest that works here)"))
    sb.add_argument("--json", action="store_true", help=_t("print status, output, seconds, isolation as JSON"))
    return ap


def cmd_models(args) -> int:
    from engine.models.registry import DEFAULT_MODEL, EMBEDDED
    rows = [{"name": m.name, "default": m.name == DEFAULT_MODEL, "parameters": m.parameters,
             "available": m.path() is not None, "size_mb": round(m.size_bytes() / 1e6, 1),
             "role": m.role, "description": m.description,
             "install": None if m.path() else m.missing_message()} for m in EMBEDDED.values()]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for r in rows:
        state = f"{r['size_mb']} MB" if r["available"] else f"missing — {r['install']}"
        print(f"{'*' if r['default'] else ' '} {r['name']:<16} {r['parameters']:>6}  {state}\n    {r['description']}")
    return 0


def cmd_generate(args) -> int:
    from engine.sampling import ORDERS, SamplingConfig
    from engine.inputs import check_text
    check_text(args.prompt, "--prompt")
    sampling = SamplingConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                              min_p=args.min_p, order=ORDERS[args.order])
    backend = _load(args)
    prompt = args.prompt if args.raw else backend.render_prompt(args.prompt)
    from engine.evaluation.evaluate import SOLUTION_STOP
    gen = backend.generate([prompt], sampling=sampling, stop=SOLUTION_STOP, max_new_tokens=args.max_new_tokens,
                           seed=args.seed)[0]
    if args.json:
        print(json.dumps({"model": backend.info.name, "prompt": prompt, "sampling": sampling.to_json(),
                          "seed": args.seed, **gen.to_json()}))
        return 0
    print(gen.text)
    print("\n" + _t("[{model}; {n} tokens, stopped: {reason}]", model=backend.info.describe(), n=len(gen.tokens),
                    reason=gen.stop_reason), file=sys.stderr)
    for t in gen.tokens:
        alts = "  ".join(f"{a!r}:{math.exp(lp):.2f}" for a, lp in t.top[:3])
        print(f"{t.token!r:>12} p={math.exp(t.logprob):.3f}   {alts}", file=sys.stderr)
    return 0


def _eval_source_flags(args) -> None:
    """--dataset brings its own problems: the flags that pick held-out or fresh ones make no sense
    beside it, and its own flags none without it."""
    if args.dataset is not None:
        for flag, value in (("--fresh", args.fresh), ("--events", args.events), ("--tier", args.tier)):
            if value is not None:
                raise CliError(f"thoughtscope: {flag} picks built-in problems; --dataset brings its own: "
                               f"give one or the other")
        return
    for flag, value in (("--split", args.split), ("--question-field", args.question_field),
                        ("--answer-field", args.answer_field)):
        if value is not None:
            raise CliError(f"thoughtscope: {flag} needs --dataset")


@contextmanager
def _eval_backend(args):
    """The model an eval runs on: loaded here, or in ``--workers`` processes (engine/evaluation/workers.py)."""
    if args.workers == 1:
        yield _load(args)
        return
    from engine.evaluation.workers import WorkerSpec, Workers, worker_threads
    spec = WorkerSpec(args.model, _load_kwargs(args), worker_threads(args.threads, args.workers))
    with Workers(spec, args.workers) as workers:
        yield workers


def cmd_eval(args) -> int:
    from engine.evaluation.evaluate import BATCHED, EVAL_N, EvalConfig, dataset_problems, eval_problems, run_eval
    from engine.search import METHODS
    cls = EvalConfig if args.method in BATCHED else METHODS[args.method].config
    cfg = config_from_args(cls, args, args.method)
    _eval_source_flags(args)
    from engine.evaluation.concurrent import check_concurrency
    from engine.evaluation.workers import check_workers, resolve_workers
    check_concurrency(args.method, args.concurrency)      # refused before the model loads
    args.workers = resolve_workers(args.workers, args.concurrency, args.model, args.threads, args.server,
                                   args.device)
    check_workers(args.workers, args.concurrency, args.server, args.device)
    events = tuple(args.events) if args.events else None
    tier, dataset = args.tier or "hard", None
    # the problems are picked (and a bad request refused) before the model loads
    if args.dataset is not None:
        dataset = dataset_problems(args.method, args.dataset, split=args.split, question_field=args.question_field,
                                   answer_field=args.answer_field, n=args.n)
        problems, tier = list(dataset.problems), "dataset"
        if dataset.skipped_line():
            print(f"thoughtscope: {dataset.skipped_line()}", file=sys.stderr)
    else:
        problems = eval_problems(args.method, tier, args.n or EVAL_N, fresh=args.fresh, events=events)
    from engine.cli.progress import progress
    from engine.evaluation.evaluate import QA_METHODS
    label = "velmora" if args.method in QA_METHODS and dataset is None else tier
    with _eval_backend(args) as backend:
        tokens = (lambda: backend.generated_tokens) if hasattr(backend, "generated_tokens") else None
        with progress(len(problems), f"{args.method} {label}", tokens=tokens) as bar:
            summary = run_eval(backend, args.method, tier, len(problems), args.seed, cfg, progress=bar.update,
                               fresh=args.fresh, events=events, problems=problems, dataset=dataset,
                               concurrency=args.concurrency)
    if args.workers > 1:
        summary["workers"] = args.workers
    if not args.details:
        summary.pop("results")
    if args.json:
        print(json.dumps(summary))
    else:
        extra = f", {summary['samples']} samples at T={summary['temperature']}" if "samples" in summary else ""
        where = "" if summary["problems"] == "held-out" else f", {summary['problems']}"
        print(f"{summary['method']} on {summary['tier']} (n={summary['n']}{where}{extra}): accuracy "
              f"{summary['accuracy']:.1%} ({summary['answered']:.1%} answered), {summary['generated_tokens']} "
              f"generated tokens, {summary['wall_s']} s")
        if "accuracy_contains" in summary:
            print(f"  accuracy under the lenient contains check: {summary['accuracy_contains']:.1%}")
        for rule, acc in summary.get("accuracy_by_rule", {}).items():
            print(f"  answer rule {rule}: {acc:.1%}")
        if "discriminator_agreement" in summary:
            ch = summary["discriminator_changed"]
            agree = summary["discriminator_agreement"]
            print(f"  discriminator confirmed {'—' if agree is None else f'{agree:.1%}'} of candidates; changed the "
                  f"generator's answer {ch['changed']} times ({ch['better']} for the better, {ch['worse']} for the worse)")
    return 0


def cmd_run(args) -> int:
    import time
    from engine.search import METHODS
    from engine.store import Store, default_db_path, record
    from engine.inputs import check_text
    check_text(args.question, "--question")
    check_text(args.answer, "--answer", required=False, max_chars=1000)
    method = METHODS[args.method]
    cfg = config_from_args(method.config, args, args.method)
    store = Store(args.db or default_db_path())
    backend = _load(args)
    sid = store.create_session(method=args.method, model=backend.info.name, question=args.question,
                               gold=args.answer, config=cfg.to_json(), seed=args.seed)
    t0 = time.perf_counter()
    print(_t("session {sid}: running {method} …", sid=sid, method=_t(method.label)), file=sys.stderr)
    tree = record(store, sid, method.run(args.question, backend, config=cfg, seed=args.seed, gold=args.answer))
    out = {"session_id": sid, "method": args.method, "answer": tree.final.answer if tree.final else None,
           "correct": tree.final.correct if tree.final else None, "nodes": len(tree),
           "generated_tokens": tree.finished.generated_tokens if tree.finished else 0,
           "wall_s": round(time.perf_counter() - t0, 2), "status": store.session(sid)["status"]}
    if args.json:
        print(json.dumps(out))
    else:
        right = "" if out["correct"] is None else (" (correct)" if out["correct"] else " (wrong)")
        print(f"{args.method}: answer {out['answer']}{right}; {out['nodes']} nodes, "
              f"{out['generated_tokens']} generated tokens, {out['wall_s']} s; session {sid}")
    return 0


def cmd_sandbox(args) -> int:
    from engine import sandbox
    try:
        code = open(args.file, encoding="utf-8").read()
    except UnicodeDecodeError:
        raise InputError(f"{args.file} is not UTF-8 text") from None
    try:
        result = sandbox.run_code(code, isolation_level=args.isolation)
    except sandbox.SandboxUnavailable as e:
        raise InputError(str(e)) from None
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print(result.output, end="" if result.output.endswith("\n") or not result.output else "\n")
        print(f"[{result.status} in {result.seconds:.2f} s; isolation: {result.isolation} — "
              f"{sandbox.describe(result.isolation)}]", file=sys.stderr)
    return 0


def cmd_export_pairs(args) -> int:
    from engine.cli.pairs import cmd_export_pairs as export
    return export(args, _load, config_from_args)


def cmd_collect_pairs(args) -> int:
    from engine.cli.ppm import cmd_collect_pairs as collect
    return collect(args, _load)


def cmd_train_ppm(args) -> int:
    from engine.cli.ppm import cmd_train_ppm as train
    return train(args, _load)


def cmd_evolve(args) -> int:
    from engine.cli.evolve import cmd_evolve as run_evolve
    return run_evolve(args)


def cmd_serve(args) -> int:
    from app.main import serve
    serve(model=args.model, host=args.host, port=args.port, db=args.db, device=args.device,
          dtype=args.dtype, threads=args.threads, prefix_cache_mb=args.prefix_cache_mb, auth=args.auth,
          format_options=_format_kwargs(args), server_options=_server_kwargs(args),
          queue_size=args.queue_size, ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile,
          run_limit_s=args.run_limit)
    return 0


def cmd_hash_password(args) -> int:
    """Reads the password twice from the terminal (or once from stdin when piped); prints name:hash."""
    import getpass
    from app.auth import USER_RE, hash_password
    if not USER_RE.match(args.user):
        raise CliError(f"thoughtscope: user name {args.user!r} must be 1-64 of A-Z a-z 0-9 _ . @ -")
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.user}: ")
        if password != getpass.getpass("again: "):
            raise CliError("thoughtscope: the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    print(f"{args.user}:{hash_password(password, iterations=args.iterations)}")
    return 0


def cmd_sessions(args) -> int:
    from engine.cli.sessions import cmd_sessions as run_sessions
    return run_sessions(args)


def cmd_triage(args) -> int:
    from engine.cli.triage import cmd_triage as run_triage
    return run_triage(args)


def cmd_sweep(args) -> int:
    from engine.cli.sweep import cmd_sweep as run_sweep
    return run_sweep(args, _load)


def cmd_compare(args) -> int:
    from engine.cli.compare import cmd_compare as run_compare
    return run_compare(args, _load)


def cmd_bench(args) -> int:
    from engine.cli.bench import cmd_bench as run_bench
    return run_bench(args, _load)


COMMANDS = {"serve": cmd_serve, "models": cmd_models, "generate": cmd_generate, "eval": cmd_eval,
            "run": cmd_run, "sessions": cmd_sessions, "sweep": cmd_sweep, "bench": cmd_bench,
            "sandbox": cmd_sandbox, "export-pairs": cmd_export_pairs,
            "triage": cmd_triage}
COMMANDS["hash-password"] = cmd_hash_password
COMMANDS["evolve"] = cmd_evolve
COMMANDS["collect-pairs"] = cmd_collect_pairs
COMMANDS["train-ppm"] = cmd_train_ppm
COMMANDS["compare"] = cmd_compare
COMMANDS["export"] = cmd_sessions          # `export --session ID` is `sessions export ID`


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _use_environment_language()
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["serve", *argv]
    from engine.export_html import ExportError
    from engine.store import StoreError
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except (CliError, InputError, ModelLoadError, StoreError, ExportError, ValueError, OSError) as e:
        msg = _message(e)
        if isinstance(e, UnicodeError):     # an argument with bytes that are not UTF-8 (surrogate escapes)
            msg = _t("an argument is not valid UTF-8 text ({why}): re-type it in UTF-8", why=e)
        # one line, printable on any terminal whatever the message quotes
        msg = " ".join(msg.split()).encode("utf-8", "backslashreplace").decode("utf-8")
        print(msg if msg.startswith("thoughtscope") else _t("thoughtscope: error: {msg}", msg=msg), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(_t("thoughtscope: interrupted"), file=sys.stderr)
        return 130
    except Exception as e:      # a bug, not bad input: still one line, and a distinct exit code
        msg = " ".join(f"{type(e).__name__}: {e}".split()).encode("utf-8", "backslashreplace").decode("utf-8")
        print(_t("thoughtscope: internal error ({msg}); please report it", msg=msg), file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
