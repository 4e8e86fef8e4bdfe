"""``thoughtscope bench``: runs engine/evaluation/bench.py's workload and says its numbers.

engine/cli/__init__.py adds the parser and dispatches to `cmd_bench`. The report (each number
beside its target, ``[ok ]`` or ``[MISS]``), the step lines on stderr and the note on an ignored
``--prefix-cache-mb 0`` are in the language of LANG (`_t`); ``--json`` prints the measurement
itself, the same under any LANG.

Not here: the workload and what it measures (engine/evaluation/bench.py).
"""

from __future__ import annotations

import json
import sys


def format_report(r: dict) -> str:
    """The bench's numbers for a reader, each target beside its measure."""
    from engine.cli import _t

    def mark(ok: bool) -> str:
        return _t("[ok ]") if ok else _t("[MISS]")
    t = r["targets"]
    lines = [_t("thoughtscope bench — {model}", model=r["model"]),
             _t("MCTS, {rollouts} rollouts x {children} children: {nodes} nodes, {unique} unique tree tokens",
                rollouts=r["workload"]["rollouts"], children=r["workload"]["children"], nodes=r["tokens"]["nodes"],
                unique=r["tokens"]["unique"])
             + ("" if r["same_tree"] else "  " + _t("(WARNING: cached and naive trees differ)")),
             f"  {mark(r['computed_per_unique'] <= t['computed_per_unique'])} "
             + _t("computed / unique, cached: {value}  ({computed} computed, {reused} reused; target <= {target})",
                  value=r["computed_per_unique"], computed=r["tokens"]["computed"], reused=r["tokens"]["reused"],
                  target=t["computed_per_unique"]),
             f"  {mark(r['computed_per_unique_naive'] >= t['computed_per_unique_naive'])} "
             + _t("computed / unique, naive: {value}  (target >= {target})", value=r["computed_per_unique_naive"],
                  target=t["computed_per_unique_naive"]),
             "  " + _t("rollout: {cached} s cached, {naive} s naive; first step after {first} s",
                       cached=r["rollout_s"], naive=r["rollout_s_naive"], first=r["first_node_s"]),
             _t("sibling expansion, generated tokens/s (one batched call vs k calls):")]
    for k, row in r["batching"].items():
        lines.append("  " + _t("k={k}: {batched} vs {unbatched} -> x{speedup}", k=k, batched=row["batched_tok_s"],
                               unbatched=row["unbatched_tok_s"], speedup=row["speedup"]))
    lines.append(f"  {mark(r['batched_speedup'] >= t['batched_speedup'])} "
                 + _t("batched speedup x{value} (target >= {target})", value=r["batched_speedup"],
                      target=t["batched_speedup"]))
    lines.append(_t("tree redraw (layout + figure + JSON), ms:"))
    for n, ms in r["redraw_ms"].items():
        target = (f"  {mark(ms <= t['redraw_ms_2000'])} " + _t("target <= {target}", target=t["redraw_ms_2000"])
                  if n == "2000" else "")
        lines.append("  " + _t("{n} nodes: {ms}", n=f"{n:>6}", ms=ms) + target)
    lines.append(_t("peak RSS: {mb} MB", mb=r["peak_rss_mb"]))
    return "\n".join(lines)


def cmd_bench(args, load) -> int:
    from engine.cli import _t
    from engine.evaluation.bench import QUICK, BenchConfig, run_bench
    if getattr(args, "server", None):
        # bench measures this process's own decode loop, prefix cache and batching; a server's are its own
        raise ValueError("bench measures a model loaded here (its prefix cache and batching), not a server: "
                         "time an eval through the server instead (docs/scaling.md)")
    backend = load(args)
    cfg = QUICK if args.quick else BenchConfig()
    if not args.prefix_cache_mb:
        print(_t("bench: --prefix-cache-mb 0 ignored: the cached mode uses the default ceiling"), file=sys.stderr)
    # run_bench names each step by an English key of engine/evaluation/bench.py's STEPS
    result = run_bench(backend, cfg, cache_mb=args.prefix_cache_mb,
                       progress=lambda step: print(_t("bench: {step}…", step=_t(step)), file=sys.stderr, flush=True))
    print(json.dumps(result, indent=1) if args.json else format_report(result))
    return 0
