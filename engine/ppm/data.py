"""Training data for the PPM and for policy fine-tuning, made the way rStar-Math makes it: MCTS
on *training* problems, terminal-guided by their answer keys, then step-level preference pairs
from the trees' Q-values (engine/pairs.py) and verified trajectories (full paths that reach the
right answer).

Training problems come from the problem generator (engine/demo_model/problems.py) with a seed
stream of their own (``ppm-train:SEED:TIER``), and every one is checked against the held-out file
(assets/problems/heldout.jsonl) and the fresh evaluation sets this project reports
(``eval --fresh SEED`` for each seed in ``RESERVED_FRESH_SEEDS``): a question in either is
skipped while generating and refused by `collect_pairs` (`check_disjoint`).

rStar-Math's final-answer pairs (``final_pairs``, on by default) relax the shared-prefix rule for
the last step: two right whole trajectories with the highest mean Q against two wrong ones with
the lowest (`final_answer_pairs`; engine/pairs.py builds sibling pairs only).

Optionally (``hard_negatives``) a third kind of pair is added, which rStar-Math does not have:
at a node whose children disagree on arithmetic, a child whose ``a op b = c`` claim is false
(engine/triage.py's check) is rejected against a sibling with a true claim that reaches the
right answer. The embedded model's slips are exactly such claims, and Q-values alone rarely
order siblings that far apart with 16 rollouts (docs/ppm.md).

With ``code=True`` the trees are claim-checked code MCTS (engine/search/code_mcts.py), whose
programs are run by fast_exec.py; on the embedded model such trees hold no two different steps
that both pass, so they give almost no pairs (docs/ppm.md, second round).

Not here: the MCTS itself (engine/search/), training (engine/ppm/train.py).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from engine import events as E
from engine.demo_model.problems import Problem, generate_problem
from engine.pairs import Pair, PairConfig, pairs_from_tree
from engine.tree import Tree

# fresh eval seeds whose problems training never uses (docs/ppm.md reports eval --fresh 7)
RESERVED_FRESH_SEEDS = (7, 11)
RESERVED_FRESH_N = 1000       # the first this many problems of each reserved fresh set, per tier
TRAIN_TIERS = ("hard", "medium")


@dataclass
class Trajectory:
    """A full path that reaches the right answer: policy fine-tuning data."""
    question: str
    steps: list[str]
    answer: str
    problem_id: str

    def to_json(self) -> dict:
        return {"question": self.question, "steps": self.steps, "answer": self.answer, "problem_id": self.problem_id}


@dataclass
class CollectResult:
    pairs: list[Pair]
    trajectories: list[Trajectory]
    session_ids: list[str] = field(default_factory=list)   # per problem: its stored session, else train:ID
    summary: dict = field(default_factory=dict)


def reserved_questions(tiers: Iterable[str] = ("easy", "medium", "hard")) -> set[str]:
    """Questions training must never see: the held-out file and the reserved fresh eval sets."""
    from engine.demo_model.problems import load_problems
    from engine.evaluation.evaluate import HELDOUT, fresh_problems
    out = {p.question for p in load_problems(HELDOUT)}
    for tier in tiers:
        for s in RESERVED_FRESH_SEEDS:
            out |= {p.question for p in fresh_problems(tier, RESERVED_FRESH_N, s)}
    return out


def training_problems(n: int, seed: int, tiers: Sequence[str] = TRAIN_TIERS,
                      weights: Sequence[float] | None = None) -> list[Problem]:
    """``n`` generated training problems (tiers drawn by ``weights``, default equal), none of them
    held out or in a reserved fresh eval set."""
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 100_000:
        raise ValueError(f"n must be a whole number from 1 to 100000, got {n!r}")
    reserved = reserved_questions()
    rng = random.Random(f"ppm-train:{seed}")
    streams = {t: random.Random(f"ppm-train:{seed}:{t}") for t in tiers}
    w = list(weights) if weights else [1.0] * len(tiers)
    out, seen = [], set()
    while len(out) < n:
        tier = rng.choices(list(tiers), w)[0]
        p = generate_problem(streams[tier], tier, f"train{seed}-{tier}-{len(out):05d}")
        if p.question in reserved or p.question in seen:
            continue
        seen.add(p.question)
        out.append(p)
    return out


def check_disjoint(problems: Iterable[Problem]) -> None:
    """Refuse training problems that are held out or in a reserved fresh eval set."""
    reserved = reserved_questions()
    bad = [p.id for p in problems if p.question in reserved]
    if bad:
        raise ValueError(f"problems must not be held-out or reserved eval problems: {len(bad)} are "
                         f"(first {bad[0]!r})")


def trajectories_from_tree(tree: Tree, problem: Problem) -> list[Trajectory]:
    """Each distinct right full path (text) in the tree."""
    out, seen = [], set()
    for n in tree.terminals():
        if n.correct is not True:
            continue
        steps = [tree[i].text for i in tree.path_to(n.id)[1:]]
        key = "".join(steps)
        if key not in seen:
            seen.add(key)
            out.append(Trajectory(problem.question, steps, str(n.answer), problem.id))
    return out


def hard_negative_pairs(tree: Tree, session_id: str | None = None) -> list[Pair]:
    """Siblings where one step's arithmetic claim is false and another's is true and reaches the
    right answer: (true, false) pairs at that first wrong step. Q is recorded as it was."""
    from engine.pairs import outcomes
    from engine.triage import claim_error
    reach = outcomes(tree)
    root_text = tree[E.ROOT].text
    out = []
    for n in tree.nodes:
        kids = [tree[c] for c in n.children if tree[c].visits > 0]
        if len(kids) < 2 or any(claim_error(tree[i].text) for i in tree.path_to(n.id)[1:]):
            continue            # only at the *first* wrong step: the path so far has no false claim
        # a code step that failed its check is cut by the search before any PPM sees it
        # (engine/search/mcts.py scores it -1): no pair is spent on it
        kids = [k for k in kids if k.code is None or k.code.get("passed")]
        good = [k for k in kids if reach[k.id][0] and claim_error(k.text) is None]
        bad = [k for k in kids if claim_error(k.text) is not None]
        seen = set()
        for c in good[:2]:
            for r in bad[:2]:
                key = (c.text.strip(), r.text.strip())
                if key in seen or key[0] == key[1]:
                    continue
                seen.add(key)
                out.append(Pair(prompt=root_text + tree.path_text(n.id), chosen=c.text, rejected=r.text,
                                q_chosen=round(c.q, 6), q_rejected=round(r.q, 6), parent=n.id,
                                chosen_node=c.id, rejected_node=r.id, session_id=session_id))
    return out


def final_answer_pairs(tree: Tree, top: int = 2, session_id: str | None = None) -> list[Pair]:
    """rStar-Math's pairs for the final answer step, which relax the shared-prefix rule: the
    ``top`` right full trajectories with the highest mean Q against the ``top`` wrong ones (a
    stated, wrong answer) with the lowest; the prompt is the root alone, chosen and rejected are
    whole solutions. Distinct texts only."""
    def mean_q(n) -> float:
        path = tree.path_to(n.id)[1:]
        return sum(tree[i].q for i in path) / len(path)
    right, wrong, seen = [], [], set()
    for n in tree.terminals():
        text = tree.path_text(n.id)
        if n.answer is None or n.correct is None or text in seen:
            continue
        seen.add(text)
        (right if n.correct else wrong).append((mean_q(n), n.id, n, text))
    right.sort(key=lambda r: (-r[0], r[1]))
    wrong.sort(key=lambda r: (r[0], r[1]))
    root = tree[E.ROOT].text
    return [Pair(prompt=root, chosen=c[3], rejected=r[3], q_chosen=round(c[0], 6), q_rejected=round(r[0], 6),
                 parent=E.ROOT, chosen_node=c[1], rejected_node=r[1], session_id=session_id)
            for c in right[:top] for r in wrong[:top]]


def collect_pairs(backend, problems: Sequence[Problem], *, rollouts: int = 16, seed: int = 0, ppm=None,
                  code: bool = False, check: str = "runs_and_claim", resample: int = 0, drop_failed: bool = False,
                  progress: Callable[[int], None] | None = None,
                  pair_config: PairConfig = PairConfig(), hard_negatives: bool = True, final_pairs: bool = True,
                  children: int = 3, store=None) -> CollectResult:
    """MCTS (``mcts``, or ``mcts-code`` with ``code``) on each training problem with the gold
    reward, then its pairs and right trajectories. With ``code`` the steps are code-verified by
    ``check`` (engine/search/code_mcts.py; default ``runs_and_claim``: the comment's arithmetic
    claim must match the executed value), so every pair is between steps that passed: the PPM
    learns which *verified* step leads to the right answer, as rStar-Math's PPM does;
    ``resample`` and ``drop_failed`` make the search drop failed steps as rStar-Math's does
    (code_mcts.py's options of the same names). ``ppm`` (a folder path) initialises each new
    step's Q from that PPM's score, as rStar-Math's later rounds do; the terminal reward stays
    the answer key. ``store`` (an engine.store.Store) keeps every tree as a session."""
    from engine.search import METHODS
    check_disjoint(problems)
    method = "mcts-code" if code else "mcts"
    cls = METHODS[method].config
    extra = {"ppm": str(ppm)} if ppm else {}
    if code:
        extra.update(check=check, resample=resample, drop_failed=drop_failed)
    cfg = cls(rollouts=rollouts, children=children, reward="gold", final_rule="highest_q", **extra)
    pairs, trajs, sids = [], [], []
    solved = q_pairs = neg_pairs = fin_pairs = 0
    for i, p in enumerate(problems):
        if code:        # plain-arithmetic programs evaluated in-process (fast_exec.py), others sandboxed
            from engine.ppm import fast_exec
            from engine.search.code_mcts import run as code_run
            events = list(code_run(p.question, backend, config=cfg, seed=seed + i, gold=str(p.answer),
                                   run_code=fast_exec.run_code))
        else:
            events = list(METHODS[method].run(p.question, backend, config=cfg, seed=seed + i, gold=str(p.answer)))
        sid = f"train:{p.id}"
        if store is not None:
            sid = _store_run(store, events)
        sids.append(sid)
        tree = Tree.fold(events)
        got, _ = pairs_from_tree(tree, pair_config, session_id=sid)
        q_pairs += len(got)
        if hard_negatives:
            have = {(x.parent, x.chosen.strip(), x.rejected.strip()) for x in got}
            extra_pairs = [x for x in hard_negative_pairs(tree, sid)
                           if (x.parent, x.chosen.strip(), x.rejected.strip()) not in have]
            neg_pairs += len(extra_pairs)
            got += extra_pairs
        if final_pairs:
            fin = final_answer_pairs(tree, session_id=sid)
            fin_pairs += len(fin)
            got += fin
        pairs += got
        t = trajectories_from_tree(tree, p)
        solved += bool(t)
        trajs += t
        if progress:
            progress(1)
    summary = {"problems": len(problems), "method": method, "rollouts": rollouts, "children": children,
               "seed": seed, "check": check if code else None,
               "resample": resample if code else None, "drop_failed": drop_failed if code else None, "pairs": len(pairs), "q_value_pairs": q_pairs, "hard_negative_pairs": neg_pairs,
               "final_answer_pairs": fin_pairs,
               "trajectories": len(trajs), "problems_solved": solved, "ppm": str(ppm) if ppm else None}
    return CollectResult(pairs, trajs, sids, summary)


def _store_run(store, events: list[E.Event]) -> str:
    """Keep one training tree as a stored session (so its trees can be opened in the app)."""
    start = events[0]
    sid = store.create_session(method=start.method, model=start.model, question=start.question, gold=start.gold,
                               config=start.config, seed=start.seed)
    for ev in events:
        store.append(sid, ev)
    store.finish(sid, status=events[-1].status if isinstance(events[-1], E.RunFinished) else "done")
    return sid


def _write_jsonl(path, items) -> int:
    """Each item's ``to_json()`` as one line of ``path``; returns how many were written."""
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for item in items:
            fh.write(json.dumps(item.to_json(), ensure_ascii=False) + "\n")
            n += 1
    return n


def write_pairs(path, pairs: Iterable[Pair]) -> int:
    return _write_jsonl(path, pairs)


def read_pairs(path) -> list[Pair]:
    """Pairs from a JSONL file (export-pairs or collect-pairs); a bad line is named in the error."""
    out = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out.append(Pair(**{k: row[k] for k in ("prompt", "chosen", "rejected", "q_chosen", "q_rejected")},
                            parent=row.get("parent", 0), chosen_node=row.get("chosen_node", 0),
                            rejected_node=row.get("rejected_node", 0), session_id=row.get("session_id")))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"pairs file {path}: line {i} is not a pair ({e})") from None
    return out


def write_trajectories(path, trajs: Iterable[Trajectory]) -> int:
    return _write_jsonl(path, trajs)
