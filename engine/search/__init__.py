"""Search methods, each a generator of events with one signature:

    run(question, backend, *, config, seed, gold=None, should_stop=None) -> Iterator[Event]

`METHODS` maps a method name to its runner and config class; the CLI's choices and the app's
method dropdown are filled from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from engine.search import baselines, code_mcts, leco, mcts, rstar, sra_mcts, sugar


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    run: Callable
    config: type


METHODS: dict[str, Method] = {m.name: m for m in [
    Method("mcts", "MCTS (step-level)", mcts.run, mcts.MCTSConfig),
    Method("greedy", "Greedy chain", baselines.run_greedy, baselines.BaselineConfig),
    Method("sc", "Self-consistency", baselines.run_self_consistency, baselines.BaselineConfig),
    Method("bon", "Best-of-N (model confidence)", baselines.run_best_of_n, baselines.BaselineConfig),
    Method("beam", "Step-level beam search", baselines.run_beam, baselines.BaselineConfig),
    Method("leco", "LECO (rethink from the least confident step)", leco.run, leco.LECOConfig),
    Method("rstar", "rStar (generator MCTS + discriminator)", rstar.run, rstar.RStarConfig),
    Method("mcts-code", "MCTS, code-verified steps (rStar-Math)", code_mcts.run, code_mcts.CodeMCTSConfig),
    Method("sra-mcts", "SRA-MCTS (reflection + self-evaluation)", sra_mcts.run, sra_mcts.SRAConfig),
    Method("se", "Semantic entropy (answer clusters)", sugar.run_se, sugar.SEConfig),
    Method("sugar", "SUGAR (entropy-routed retrieval)", sugar.run_sugar, sugar.SugarConfig),
]}
