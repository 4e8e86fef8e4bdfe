"""The CLI's flags: the parser that errs in one line, number and boolean checks, the model,
sampling and per-method config flags, and turning parsed flags into a config or a loaded backend.

Not here: the commands and their parser (engine/cli/__init__.py), the CLI's words (words.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import math

from engine.cli.words import CliError, _t


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        raise CliError(_t("{prog}: {message} (see {prog} --help)", prog=self.prog, message=message))


def _number(kind, lo, hi, name):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a {kind.__name__}, got {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value) or not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{name} must be from {lo} to {hi}, got {text!r}")
        return value
    return parse


def _workers(text: str):
    """--workers: auto, or a whole number from 1 to 64."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"--workers must be auto or a whole number from 1 to 64, got {text!r}")
    return value


def _boolean(name):
    def parse(text: str) -> bool:
        value = {"true": True, "yes": True, "on": True, "1": True,
                 "false": False, "no": False, "off": False, "0": False}.get(text.strip().lower())
        if value is None:
            raise argparse.ArgumentTypeError(f"{name} must be true or false, got {text!r}")
        return value
    return parse


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    from engine.models.registry import DEFAULT_MODEL
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=_t("embedded model name, local folder, .gguf file or hub id (default {model})",
                           model=DEFAULT_MODEL))
    p.add_argument("--device", default="auto",
                   help=_t("auto, cpu, cuda or cuda:N (auto with GPUs: spread over all of them by accelerate's device_map)"))
    p.add_argument("--quantize", choices=("4bit", "8bit"), default=None,
                   help=_t("load the weights quantised by bitsandbytes (needs it installed and a CUDA GPU)"))
    p.add_argument("--dtype", default="auto", help=_t("auto, float32, float16 or bfloat16"))
    p.add_argument("--threads", type=_number(int, 1, 256, "--threads"), default=None,
                   help=_t("torch threads (default: the idle cores)"))
    from engine.models.prefix_cache import PREFIX_CACHE_MB
    p.add_argument("--prefix-cache-mb", type=_number(float, 0, 10**6, "--prefix-cache-mb"), default=PREFIX_CACHE_MB,
                   help=_t("MB of key/value states kept for shared prompt prefixes (default {mb}; 0 = off)",
                           mb=PREFIX_CACHE_MB))
    from engine.formats import CHOICES
    p.add_argument("--format", choices=CHOICES, default="auto",
                   help=_t("prompt format: embedded (ThoughtScope's model), chat (chat template, \\boxed{} answers), "
                        "base (few-shot); auto picks from the model (docs/models.md). --format base on a chat "
                        "model runs it without its chat template"))
    p.add_argument("--instruction", default=None, help=_t("chat format: the instruction before the question"))
    p.add_argument("--exemplars", default=None, metavar="FILE",
                   help=_t("base format: your few-shot exemplars (JSON/JSONL of question, steps, answer)"))
    p.add_argument("--max-solution-tokens", type=_number(int, 1, 32768, "--max-solution-tokens"), default=None,
                   help=_t("tokens a whole solution may take (default: the format's: embedded 256, chat 1024, base 512)"))
    p.add_argument("--server", default=None, metavar="URL",
                   help=_t("run on an OpenAI-compatible server (vLLM, SGLang, llama.cpp's llama-server) at URL, e.g. "
                        "http://127.0.0.1:8080, instead of loading --model here (docs/scaling.md)"))
    p.add_argument("--server-model", default=None, metavar="NAME",
                   help=_t("with --server: which of the server's models (default: the only one it serves)"))
    p.add_argument("--api-key-env", default=None, metavar="VAR",
                   help=_t("with --server: the environment variable holding the server's API key"))


def _add_sampling_flags(p: argparse.ArgumentParser, temperature: float) -> None:
    from engine.sampling import ORDERS
    p.add_argument("--temperature", type=_number(float, 0, 100, "--temperature"), default=temperature,
                   help=_t("0 = greedy"))
    p.add_argument("--top-k", type=_number(int, 0, 10**6, "--top-k"), default=0, help=_t("0 = off"))
    p.add_argument("--top-p", type=_number(float, 1e-9, 1, "--top-p"), default=1.0, help=_t("1 = off"))
    p.add_argument("--min-p", type=_number(float, 0, 1, "--min-p"), default=0.0, help=_t("0 = off"))
    p.add_argument("--order", choices=sorted(ORDERS), default="transformers",
                   help=_t("order of the sampler stages, as that engine applies them"))


def _add_config_flags(p: argparse.ArgumentParser, config_classes, hidden: bool = False,
                      skip: set[str] = frozenset()) -> None:
    """One flag per field of the given config dataclasses (``--max-depth`` for ``max_depth``),
    default None: a flag not given leaves the config's own default. The config validates.
    ``hidden`` flags are accepted but left out of ``--help`` (`config_from_args` then says which
    method they belong to); fields in ``skip`` are not added."""
    seen = dict.fromkeys(skip)
    for cls in config_classes:
        for f in dataclasses.fields(cls):
            if f.name in seen:
                continue
            seen[f.name] = f.default
            kind = type(f.default)
            conv = {int: _number(int, -2**63, 2**63, f"--{f.name.replace('_', '-')}"),
                    float: _number(float, -1e300, 1e300, f"--{f.name.replace('_', '-')}"),
                    bool: _boolean(f"--{f.name.replace('_', '-')}")}.get(kind, str)
            from engine.search.common import ANSWER_RULES, REWARD_SOURCES
            from engine.search.code_mcts import CHECKS
            from engine.search.sra_mcts import EARLY_STOPS, REFLECTIONS, SELF_EVALS
            choices = {"reward": REWARD_SOURCES, "final_rule": ANSWER_RULES, "check": CHECKS,
                       "self_eval": SELF_EVALS, "reflection": REFLECTIONS, "early_stop": EARLY_STOPS}.get(f.name)
            p.add_argument(f"--{f.name.replace('_', '-')}", dest=f"cfg_{f.name}", type=conv, default=None,
                           choices=choices, metavar=None if choices else f.name.upper(),
                           help=argparse.SUPPRESS if hidden else _t("default {value}", value=f.default))


def config_from_args(cls, args, method: str):
    """Build ``cls`` from the ``--field`` flags given; a flag the method does not take is an error."""
    names = {f.name for f in dataclasses.fields(cls)}
    given = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}
    stray = sorted(set(given) - names)
    if stray:
        flags = ", ".join(f"--{s.replace('_', '-')}" for s in stray)
        raise CliError(f"thoughtscope: {flags} does not apply to method {method!r} "
                       f"(it takes {', '.join('--' + n.replace('_', '-') for n in sorted(names))})")
    return cls(**{k: v for k, v in given.items()})


def _format_kwargs(args) -> dict:
    """The prompt-format flags, as load_backend takes them."""
    return dict(format=args.format, instruction=args.instruction, exemplars=args.exemplars,
                max_solution_tokens=args.max_solution_tokens)


def _server_kwargs(args) -> dict:
    """The server flags, as load_backend takes them; --server-model and --api-key-env need --server."""
    if not args.server:
        for flag, value in (("--server-model", args.server_model), ("--api-key-env", args.api_key_env)):
            if value is not None:
                raise CliError(f"thoughtscope: {flag} needs --server URL")
        return {}
    return dict(server=args.server, server_model=args.server_model, api_key_env=args.api_key_env)


def _load_kwargs(args) -> dict:
    """load_backend's keyword arguments from the model flags, all but --threads."""
    quantize = {"quantize": args.quantize} if getattr(args, "quantize", None) else {}
    return dict(device=args.device, dtype=args.dtype, prefix_cache_mb=args.prefix_cache_mb, **quantize,
                **_format_kwargs(args), **_server_kwargs(args))


def _load(args):
    from engine.models.registry import load_backend
    return load_backend(args.model, threads=args.threads, **_load_kwargs(args))
