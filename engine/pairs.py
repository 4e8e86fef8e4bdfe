"""Step-level preference pairs from a finished search tree: rStar-Math's data for a process
preference model (PPM).

For every node with at least two visited children (siblings share the same preceding steps):

- positive candidates: children whose subtree reaches a *right* answer;
- negative candidates: children whose subtree reaches a *wrong* answer — a stated answer that
  differs from the key. A child reaching both may be either, but a node is never paired with
  itself. Endings without an answer (the depth limit, a full context) and code-verified steps
  whose code failed are neither right nor wrong: they make no child a candidate;
- chosen: the ``top`` (2) positives with the highest Q; rejected: the ``top`` (2) negatives with
  the lowest Q; when one side has a single candidate, the other side fills up to ``fill_to`` (4)
  so that a step still yields up to four pairs (rStar-Math §3.3);
- a chosen × rejected pair is kept when its chosen step's *best continuation* averages a higher
  Q than the rejected step's, and its Q margin ``q_chosen − q_rejected`` is at least ``margin``.
  A step's best continuation: from the step, follow the visited child with the highest Q (ties:
  the lower id) until a node with no visited child; its average is the mean Q of the nodes on
  that path, the step included.

That is ``selection="official"`` (the default), rStar-Math's rule. ``selection="strict"`` is
this module's earlier rule, kept by name: a negative reaches answers and *none* is right, an
ending without an answer or a failed code step counts as wrong, and there is no continuation
check.

Correctness needs the answer key, so a tree run without a gold answer gives no pairs
(`pairs_from_tree` says why in its note). The JSONL rows carry ``prompt`` (the root prompt and
the shared preceding steps), ``chosen``, ``rejected``, ``q_chosen``, ``q_rejected`` and, for
tracing, the session and node ids.

Deliberate differences from rStar-Math (docs/code_mcts.md): rStar-Math relaxes the
shared-prefix rule for the final answer step (pairing full trajectories); here every pair is
between siblings. The margin filter's default (0.1) is ThoughtScope's choice.

Not here: training a PPM, or running searches (pairs_from_eval only drives them).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Callable, Iterable

from engine import events as E
from engine.search.common import check_field as _check, is_whole as _int
from engine.search.mcts import best_child
from engine.tree import Node, Tree

JSONL_KEYS = ("prompt", "chosen", "rejected", "q_chosen", "q_rejected")
SELECTIONS = ("official", "strict")     # rStar-Math's rule; this module's earlier, stricter one


@dataclass(frozen=True)
class PairConfig:
    top: int = 2            # chosen / rejected per side
    fill_to: int = 4        # when one side has a single candidate, take up to this many on the other
    margin: float = 0.1     # keep a pair only when q_chosen - q_rejected >= margin
    selection: str = "official"     # "official" (rStar-Math) or "strict" (see the module docstring)

    def __post_init__(self) -> None:
        _check("top", self.top, _int(self.top) and 1 <= self.top <= 32, "from 1 to 32")
        _check("fill_to", self.fill_to, _int(self.fill_to) and self.top <= self.fill_to <= 64,
               f"from top ({self.top}) to 64")
        _check("margin", self.margin, isinstance(self.margin, (int, float)) and not isinstance(self.margin, bool)
               and 0 <= self.margin <= 10, "a number from 0 to 10")
        _check("selection", self.selection, self.selection in SELECTIONS, f"one of {SELECTIONS}")


@dataclass(frozen=True)
class Pair:
    prompt: str
    chosen: str
    rejected: str
    q_chosen: float
    q_rejected: float
    parent: int
    chosen_node: int
    rejected_node: int
    session_id: str | None = None

    def to_json(self) -> dict:
        return asdict(self)


def _is_wrong(n: Node, selection: str) -> bool:
    """A terminal that counts as a wrong answer. Officially only a stated, wrong answer does:
    an ending without one, or a step whose code failed, says nothing about the answer."""
    if not n.terminal or n.correct is not False:
        return False
    if selection == "strict":
        return True
    code_failed = n.code is not None and n.code.get("passed") is False
    return n.answer is not None and not code_failed


def outcomes(tree: Tree, selection: str = "official") -> dict[int, tuple[bool, bool]]:
    """Per node: (reaches a right answer, reaches a wrong answer) in its subtree."""
    out: dict[int, tuple[bool, bool]] = {}
    for n in reversed(tree.nodes):           # children have larger ids: post-order by id
        right = n.terminal and n.correct is True
        wrong = _is_wrong(n, selection)
        for c in n.children:
            r, w = out[c]
            right, wrong = right or r, wrong or w
        out[n.id] = (right, wrong)
    return out


def continuation_q(tree: Tree, node_id: int) -> float:
    """Mean Q along the step's best continuation: from ``node_id``, the visited child with the
    highest Q (ties: lower id) until a node with no visited child, ``node_id`` included.

    A step with Q .5 whose visited children have Q .9 and .3, and under the .9 one leaf with Q .1:
    (.5 + .9 + .1) / 3 = .5 (unvisited children are never followed)."""
    path = [node_id]
    while (nxt := best_child(tree, path[-1], lambda n: n.q)) is not None:
        path.append(nxt)
    return sum(tree[n].q for n in path) / len(path)


def select_pairs(tree: Tree, parent: int, reach: dict[int, tuple[bool, bool]], cfg: PairConfig) -> list[tuple[int, int]]:
    """(chosen, rejected) node ids among ``parent``'s visited children."""
    kids = [tree[c] for c in tree[parent].children if tree[c].visits > 0]
    official = cfg.selection == "official"
    pos = sorted((k for k in kids if reach[k.id][0]), key=lambda k: (-k.q, k.id))
    # strict: a negative reaches no right answer; official: a step reaching both may be either
    neg = sorted((k for k in kids if reach[k.id][1] and (official or not reach[k.id][0])), key=lambda k: (k.q, k.id))
    if not pos or not neg:
        return []
    n_pos = cfg.fill_to if len(neg) == 1 else cfg.top
    n_neg = cfg.fill_to if len(pos) == 1 else cfg.top
    out = []
    for c in pos[:n_pos]:
        for r in neg[:n_neg]:
            if c.id == r.id or c.q - r.q < cfg.margin:
                continue
            if official and not continuation_q(tree, c.id) > continuation_q(tree, r.id):
                continue
            out.append((c.id, r.id))
    return out


def pairs_from_tree(tree: Tree, cfg: PairConfig = PairConfig(), session_id: str | None = None) -> tuple[list[Pair], str]:
    """The tree's preference pairs and a one-line note (why there are none, when there are none)."""
    if not len(tree):
        return [], "empty tree"
    if not any(n.correct is not None for n in tree.terminals()):
        return [], "no terminal is judged right or wrong: pairs need the answer key (run with a gold answer)"
    reach = outcomes(tree, cfg.selection)
    root_text = tree[E.ROOT].text
    pairs = []
    for n in tree.nodes:
        for c, r in select_pairs(tree, n.id, reach, cfg):
            if tree[c].text.strip() == tree[r].text.strip():
                continue    # the same step, sampled twice, with different futures: no preference in it
            pairs.append(Pair(prompt=root_text + tree.path_text(n.id), chosen=tree[c].text, rejected=tree[r].text,
                              q_chosen=round(tree[c].q, 6), q_rejected=round(tree[r].q, 6), parent=n.id,
                              chosen_node=c, rejected_node=r, session_id=session_id))
    if not pairs:
        if cfg.selection == "strict":
            return [], "no siblings where one leads to a right answer and another only to wrong ones (with the Q margin)"
        return [], ("no siblings where one leads to a right answer and another to a wrong one (with the Q margin "
                    "and a better continuation for the chosen step)")
    return pairs, f"{len(pairs)} pairs"


def write_jsonl(pairs: Iterable[Pair], fh) -> int:
    n = 0
    for p in pairs:
        fh.write(json.dumps(p.to_json(), ensure_ascii=False) + "\n")
        n += 1
    return n


def pairs_from_eval(backend, method: str, tier: str, n: int, seed: int, config, pair_cfg: PairConfig = PairConfig(),
                    progress: Callable[[int], None] = lambda k: None) -> tuple[list[Pair], dict]:
    """Run ``method`` on the first ``n`` held-out problems of ``tier`` (with their answer keys, as
    ``thoughtscope eval`` does) and collect every tree's pairs. Also returns a small summary."""
    from engine.evaluation.evaluate import eval_problems
    from engine.search import METHODS
    from engine.steps import answers_equal
    problems = eval_problems(method, tier, n)
    pairs, correct, tokens, with_pairs = [], 0, 0, 0
    for i, p in enumerate(problems):
        tree = Tree.fold(METHODS[method].run(p.question, backend, config=config, seed=seed + i, gold=str(p.answer)))
        got, _ = pairs_from_tree(tree, pair_cfg, session_id=f"eval:{method}:{tier}:{p.id}")
        pairs += got
        with_pairs += bool(got)
        correct += bool(tree.final and answers_equal(tree.final.answer, p.answer))
        tokens += tree.finished.generated_tokens if tree.finished else 0
        progress(1)
    return pairs, {"method": method, "tier": tier, "n": n, "seed": seed, "accuracy": round(correct / n, 4),
                   "generated_tokens": tokens, "pairs": len(pairs), "problems_with_pairs": with_pairs}
