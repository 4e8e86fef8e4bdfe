"""``thoughtscope bench``: a fixed, seeded workload that measures how close a tree search comes
to computing each token of its tree once, what batching siblings buys, and how fast the live
view redraws.

Measured, in one process:

- tokens computed by the model / unique tokens in the final tree, for step-level MCTS at its
  default settings, with the prefix cache (``computed_per_unique``) and without it
  (``computed_per_unique_naive``, every prompt re-encoded in full). Unique tree tokens = the
  root prompt with the forced ``Step 1:`` + every node's own tokens (each sampled sibling is
  a node, duplicates included: each was drawn). Both modes build the same tree (same tokens).
- MCTS wall time per rollout in both modes (``rollout_s``, ``rollout_s_naive``) and the time
  from the start of the run to the first proposed step (``first_node_s``).
- expanding ``k`` siblings of one node in one batched call vs ``k`` calls of one prompt
  (generated tokens per second; best of ``repeats``), at k = 3 (MCTS's default) and k = 8;
  ``batched_speedup`` is the one at k = 8.
- redraw of synthetic trees of 500 / 2,000 / 10,000 nodes: layout + plotly figure + the JSON
  the browser receives (app/tree_figure.py; median of ``repeats``).
- peak resident memory of the process (``peak_rss_mb``) and what the prefix cache held when
  the cached MCTS run ended (``prefix_cache_at_end``).

Not here: absolute speed claims (they depend on the machine: docs/benchmarks.md records it),
GPU models, the command and its report (engine/cli/bench.py).
"""

from __future__ import annotations

import random
import resource
import statistics
import time
from dataclasses import asdict, dataclass

from engine import events as E
from engine.models.base import StopSpec
from engine.search import mcts
from engine.search.common import MAX_STEP_TOKENS, check_field, is_whole
from engine.tree import Tree

# held-out hard problem 0023 (a sample run in sample_runs/): long enough to branch
QUESTION = ("Zoe buys 8 bundles of stamps. Each of the bundles holds 6 stamps. Then Zoe's pile of stamps "
            "grows to 8 times its size. Then Zoe's pile of stamps grows to 2 times its size. She loses "
            "30 stamps. A friend gives Zoe 216 stamps. Lena has 242 buttons. How many stamps does Zoe "
            "have left?")
TARGETS = {"computed_per_unique": 1.05, "computed_per_unique_naive": 5.0, "batched_speedup": 3.0,
           "redraw_ms_2000": 150.0, "first_node_s": 1.0}


@dataclass(frozen=True)
class BenchConfig:
    rollouts: int = mcts.MCTSConfig.rollouts     # MCTS at its default settings
    children: int = mcts.MCTSConfig.children
    batch_k: tuple[int, ...] = (3, 8)
    redraw_nodes: tuple[int, ...] = (500, 2000, 10000)
    repeats: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        check_field("rollouts", self.rollouts, is_whole(self.rollouts) and self.rollouts >= 1, "a whole number >= 1")
        check_field("repeats", self.repeats, is_whole(self.repeats) and self.repeats >= 1, "a whole number >= 1")
        check_field("batch_k", self.batch_k, bool(self.batch_k) and all(is_whole(k) and k >= 1 for k in self.batch_k),
                    "whole numbers >= 1")


# the steps `run_bench` reports to ``progress``, in English: catalogue keys (the CLI says them in
# the language of LANG, engine/cli/bench.py)
STEPS = {"cached": "MCTS with the prefix cache", "naive": "MCTS without it (every prompt re-encoded)",
         "batching": "batched vs one-by-one sibling expansion", "redraw": "tree redraws"}

QUICK = BenchConfig(rollouts=2, batch_k=(2, 3), redraw_nodes=(50, 200), repeats=1)


def _mcts(backend, cfg: BenchConfig, cache_mb: float) -> dict:
    backend.configure_prefix_cache(cache_mb)
    config = mcts.MCTSConfig(rollouts=cfg.rollouts, children=cfg.children)
    tree, first = Tree(), None
    t0 = time.perf_counter()
    for ev in mcts.run(QUESTION, backend, config=config, seed=cfg.seed):
        tree.apply(ev)
        if first is None and isinstance(ev, E.NodeProposed) and ev.node != E.ROOT:
            first = time.perf_counter() - t0
    wall = time.perf_counter() - t0
    end = tree.finished
    prompt = len(backend.encode(tree[E.ROOT].text + backend.solution_prefix()))
    unique = prompt + tree.unique_tokens()
    return {"computed": end.computed_tokens, "reused": end.reused_tokens, "generated": end.generated_tokens,
            "unique": unique, "nodes": len(tree), "wall_s": wall, "first_node_s": first,
            "cache": backend.prefix_cache.stats() if backend.prefix_cache is not None else None,
            "tokens": [tuple(t[0] for t in n.tokens) for n in tree.nodes]}


def _throughput(backend, prompt: str, k: int, batched: bool, seed: int) -> tuple[float, int]:
    """(seconds, generated tokens) to expand ``k`` siblings of ``prompt``, from a cold cache."""
    from engine.sampling import SamplingConfig
    backend.reset_prefix_cache()
    sampling, stop = SamplingConfig(temperature=0.8), StopSpec(("\n",))
    t0 = time.perf_counter()
    if batched:
        gens = backend.generate([prompt] * k, sampling=sampling, stop=stop, max_new_tokens=MAX_STEP_TOKENS, seed=seed)
    else:
        gens = [g for i in range(k) for g in backend.generate([prompt], sampling=sampling, stop=stop,
                                                               max_new_tokens=MAX_STEP_TOKENS, seed=seed + i)]
    return time.perf_counter() - t0, sum(len(g.tokens) for g in gens)


def _batching(backend, cfg: BenchConfig, cache_mb: float) -> dict:
    backend.configure_prefix_cache(cache_mb)
    prompt = backend.render_prompt(QUESTION) + backend.solution_prefix()
    out = {}
    for k in cfg.batch_k:
        rates = {}
        for batched in (False, True):
            runs = [_throughput(backend, prompt, k, batched, cfg.seed + r) for r in range(cfg.repeats)]
            rates[batched] = max(n / s for s, n in runs)          # generated tokens per second, best run
        out[k] = {"batched_tok_s": rates[True], "unbatched_tok_s": rates[False],
                  "speedup": rates[True] / rates[False]}
    return out


def synthetic_tree(nodes: int, seed: int = 0, actions: tuple[str, ...] = ("step",)) -> Tree:
    """A search-shaped tree of ``nodes`` nodes: MCTS-like expansions of 3 children, deeper
    where visits concentrate, with visits and values backed up along random paths. Node ``i``
    takes action ``actions[i % len(actions)]`` (rStar's "A1"… to draw it by action)."""
    rng = random.Random(seed)
    tree = Tree()
    tree.apply(E.RunStarted(method="mcts", question="synthetic", prompt="Question: synthetic\n", gold=None,
                            config={"reward": "self_consistency"}, seed=seed, model="none"))
    tree.apply(E.NodeProposed(node=E.ROOT, parent=E.NO_PARENT, depth=0, action="root", text="Question: synthetic\n"))
    frontier = [E.ROOT]                              # unexpanded non-terminal nodes, newest first
    max_depth = 10                                   # MCTS defaults to 8
    while len(tree) < nodes:
        if not frontier:
            frontier = [n.id for n in tree.nodes if not n.terminal and not n.children] or [E.ROOT]
        parent = frontier.pop(min(int(rng.expovariate(0.05)), len(frontier) - 1))   # mostly recent nodes
        for _ in range(min(3, nodes - len(tree))):
            nid, depth = len(tree), tree[parent].depth + 1
            a, b = rng.randrange(100), rng.randrange(100)
            terminal = rng.random() < 0.15
            tree.apply(E.NodeProposed(node=nid, parent=parent, depth=depth, action=actions[nid % len(actions)],
                                      text=f"Step {depth}: {a} + {b} = {a + b}\n", terminal=terminal,
                                      answer=str(a + b) if terminal else None,
                                      correct=(rng.random() < 0.5) if terminal else None))
            if not terminal and depth < max_depth:
                frontier.insert(0, nid)
    for _ in range(nodes // 4):
        leaf = rng.randrange(1, nodes)
        path = tree.path_to(leaf)
        reward = rng.random()
        before = [[tree[n].visits, tree[n].value] for n in path]
        tree.apply(E.Backprop(path=path, reward=reward, before=before,
                              after=[[v + 1, w + reward] for v, w in before]))
    return tree


def redraw_ms(tree: Tree, repeats: int) -> float:
    """Median ms for what one live redraw costs the server: layout, figure, JSON."""
    from app.tree_figure import tree_figure
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        tree_figure(tree, highlight=tree.path_to(len(tree) - 1)).to_json()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def run_bench(backend, cfg: BenchConfig = BenchConfig(), *, cache_mb: float | None = None,
              progress=lambda msg: None) -> dict:
    from engine.models.prefix_cache import PREFIX_CACHE_MB
    cache_mb = cache_mb or PREFIX_CACHE_MB
    progress(STEPS["cached"])
    cached = _mcts(backend, cfg, cache_mb)
    progress(STEPS["naive"])
    naive = _mcts(backend, cfg, 0)
    progress(STEPS["batching"])
    batching = _batching(backend, cfg, cache_mb)
    progress(STEPS["redraw"])
    redraw = {str(n): round(redraw_ms(synthetic_tree(n, cfg.seed), cfg.repeats), 1) for n in cfg.redraw_nodes}
    backend.configure_prefix_cache(cache_mb)
    top_k = max(cfg.batch_k)
    return {
        "model": backend.info.describe(),
        "workload": {**asdict(cfg), "question": QUESTION, "prefix_cache_mb": cache_mb},
        "same_tree": cached["tokens"] == naive["tokens"],
        "computed_per_unique": round(cached["computed"] / cached["unique"], 3),
        "computed_per_unique_naive": round(naive["computed"] / naive["unique"], 3),
        "tokens": {"unique": cached["unique"], "computed": cached["computed"], "reused": cached["reused"],
                   "generated": cached["generated"], "computed_naive": naive["computed"], "nodes": cached["nodes"]},
        "prefix_cache_at_end": cached["cache"],
        "batched_speedup": round(batching[top_k]["speedup"], 2),
        "batching": {str(k): {key: round(v, 2) for key, v in row.items()} for k, row in batching.items()},
        "redraw_ms": redraw,
        "rollout_s": round(cached["wall_s"] / cfg.rollouts, 3),
        "rollout_s_naive": round(naive["wall_s"] / cfg.rollouts, 3),
        "first_node_s": round(cached["first_node_s"], 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "targets": TARGETS,
    }
