"""MCTS: UCT arithmetic, backpropagation, answer rules, replay, determinism, stopping.

Pure search logic runs on `ScriptedBackend`, a stand-in whose steps are drawn from a seeded
script (allowed for search-logic tests only); determinism runs on a real tiny Llama.
"""

import copy
import dataclasses
import math
import random

import pytest

from engine import events as E
from engine.search import METHODS
from engine.search.common import reward_for
from engine.search.mcts import MCTSConfig, final_answers, run, select_child
from engine.tree import Tree
from scripted import ScriptBackend, word_generation

QUESTION = "Mia has 23 apples. She buys 14 more apples. How many apples does Mia have now?"


class ScriptedBackend(ScriptBackend):
    """Steps "Step d: vN" at depth d < 3, then "The answer is A." with A in {37, 36, 38}."""

    def reply(self, i, prompt, prompts, sampling, stop, seed):
        rng = random.Random(f"{seed}:{i}")
        depth = prompt.count("\n")                          # lines already written, question included
        text = (f"Step {depth}: v{rng.randint(1, 3)}\n" if depth < 3
                else f"The answer is {rng.choice(['37', '37', '36', '38'])}.\n")
        if prompt.endswith("Step 1:"):                       # the search wrote the first label
            text = text.removeprefix("Step 1:")
        return word_generation(text, prompt, lambda j: -0.1 * (j + 1))


def hand_built_tree():
    """root (N=10) with children A (N=5, W=3), B (N=3, W=2.5), C (N=2, W=0) and D unvisited."""
    t = Tree()
    t.apply(E.NodeProposed(node=0, parent=-1, depth=0, action="root", text="Q\n"))
    for i in range(1, 5):
        t.apply(E.NodeProposed(node=i, parent=0, depth=1, action="step", text=f"s{i}\n"))
    t.apply(E.Backprop(path=[0, 1, 2, 3], reward=0, before=[[0, 0]] * 4,
                       after=[[10, 5.5], [5, 3.0], [3, 2.5], [2, 0.0]]))
    return t


def test_uct_picks_the_child_with_the_highest_score_worked_by_hand():
    t = hand_built_tree()
    t.nodes[0].children.remove(4)                        # all visited: UCT decides
    sel = select_child(t, 0, c=2.0, rng=random.Random(0))
    rows = {r["node"]: r for r in sel.candidates}
    # ln 10 = 2.302585
    # A: Q 3/5 = 0.6,     explore 2*sqrt(2.302585/5) = 1.357226, UCT 1.957226
    # B: Q 2.5/3 = 0.8333, explore 2*sqrt(2.302585/3) = 1.752174, UCT 2.585507
    # C: Q 0/2 = 0,       explore 2*sqrt(2.302585/2) = 2.145966, UCT 2.145966
    assert rows[1]["uct"] == pytest.approx(1.957226, abs=1e-5)
    assert rows[2]["uct"] == pytest.approx(2.585507, abs=1e-5)
    assert rows[3]["uct"] == pytest.approx(2.145966, abs=1e-5)
    assert rows[2]["explore"] == pytest.approx(1.752174, abs=1e-5)
    assert sel.chosen == 2 and sel.rule == "uct" and sel.parent_visits == 10
    # with c = 0 the search is greedy on Q: B again (0.833 > 0.6 > 0)
    assert select_child(t, 0, c=0.0, rng=random.Random(0)).chosen == 2
    # with c = 5 exploration dominates: C (5*sqrt(2.302585/2) = 5.365) beats B (0.833 + 4.380)
    assert select_child(t, 0, c=5.0, rng=random.Random(0)).chosen == 3


def test_unvisited_children_are_tried_before_uct():
    sel = select_child(hand_built_tree(), 0, c=2.0, rng=random.Random(0))
    assert sel.chosen == 4 and sel.rule == "unvisited"
    assert next(r for r in sel.candidates if r["node"] == 4)["uct"] is None


def test_rewards_self_consistency_share_and_gold():
    # answers found so far: 37, 37, 36 and one without an answer
    assert reward_for("37", "self_consistency", None, ["37", "37", "36", None])[0] == pytest.approx(2 / 3)
    assert reward_for("36", "self_consistency", None, ["37", "37", "36", None])[0] == pytest.approx(1 / 3)
    assert reward_for(None, "self_consistency", None, ["37"])[0] == 0.0
    assert reward_for("37", "gold", "37", [])[0] == 1.0
    assert reward_for("36", "gold", "37", [])[0] == -1.0
    with pytest.raises(ValueError, match="gold"):
        reward_for("37", "gold", None, [])


def test_backprop_keeps_visits_and_values_consistent():
    events = list(run(QUESTION, ScriptedBackend(), config=MCTSConfig(rollouts=12, children=3), seed=1, gold="37"))
    tree = Tree.fold(events)
    rewards = [e.reward for e in events if isinstance(e, E.TerminalReward)]
    assert tree[0].visits == 12 == len(rewards)
    assert tree[0].value == pytest.approx(sum(rewards))
    for n in tree.nodes:
        if n.children and not n.terminal:
            assert n.visits == sum(tree[c].visits for c in n.children)
    for bp in (e for e in events if isinstance(e, E.Backprop)):
        for (v0, w0), (v1, w1) in zip(bp.before, bp.after):
            assert v1 == v0 + 1 and w1 == pytest.approx(w0 + bp.reward)
    kinds = [e.type for e in events]
    assert kinds[0] == "run_started" and kinds[-2:] == ["final_answer", "run_finished"]
    assert {n.answer for n in tree.terminals()} <= {"36", "37", "38"}


def test_answer_rules_on_a_finished_search():
    tree = Tree.fold(run(QUESTION, ScriptedBackend(), config=MCTSConfig(rollouts=10), seed=3))
    answers = final_answers(tree)
    counts = {}
    for n in tree.terminals():
        counts[n.answer] = counts.get(n.answer, 0) + 1
    assert counts[answers["majority"][0]] == max(counts.values())
    path = answers["most_visited"][1]
    for parent, child in zip(path, path[1:]):
        assert tree[child].visits == max(tree[c].visits for c in tree[parent].children)
    assert tree.final.alternatives.keys() == {"majority", "most_visited", "highest_q"}


def test_fold_of_the_first_k_events_equals_the_live_tree_at_k():
    live, snapshots, events = Tree(), [], []
    for ev in run(QUESTION, ScriptedBackend(), config=MCTSConfig(rollouts=6), seed=5):
        live.apply(ev)
        events.append(ev)
        snapshots.append(copy.deepcopy(live.nodes))
    stored = [E.loads(ev.dumps()) for ev in events]        # through JSON, as the store keeps them
    for k in range(1, len(events) + 1):
        assert Tree.fold(stored[:k]).nodes == snapshots[k - 1]


def test_every_event_survives_json():
    for ev in run(QUESTION, ScriptedBackend(), config=MCTSConfig(rollouts=4), seed=0, gold="37"):
        assert E.loads(ev.dumps()) == ev


@pytest.mark.parametrize("method", sorted(METHODS))
def test_same_seed_same_events_on_a_real_model(tiny_backend, method):
    m = METHODS[method]
    small = {"rstar": {"rollouts": 2, "max_depth": 3, "max_step_tokens": 8, "votes": 2, "final_votes": 2},
             "leco": {"max_rounds": 2}, "se": {"samples": 3}, "sugar": {"samples": 3}}
    tree_search = "rollouts" in {f.name for f in dataclasses.fields(m.config)}     # mcts and its variants
    cfg = m.config(**small.get(method, {"rollouts": 3, "max_depth": 3, "max_step_tokens": 8} if tree_search
                               else {"samples": 3, "max_depth": 3}))
    a = [e.dumps() for e in m.run(QUESTION, tiny_backend, config=cfg, seed=7, gold="37")]
    b = [e.dumps() for e in m.run(QUESTION, tiny_backend, config=cfg, seed=7, gold="37")]
    assert a == b
    if method != "greedy":
        c = [e.dumps() for e in m.run(QUESTION, tiny_backend, config=cfg, seed=8, gold="37")]
        assert a != c


def test_stop_ends_the_search_and_keeps_what_was_found():
    calls = {"n": 0}

    def should_stop():
        calls["n"] += 1
        return calls["n"] > 5

    events = list(run(QUESTION, ScriptedBackend(), config=MCTSConfig(rollouts=50), seed=0, should_stop=should_stop))
    tree = Tree.fold(events)
    assert tree.finished.status == "stopped"
    assert 1 < len(tree) and tree.iteration < 50
    assert isinstance(events[-2], E.FinalAnswer)


@pytest.mark.parametrize("field,value", [("rollouts", 0), ("children", 100), ("c", -1.0), ("c", math.nan),
                                         ("max_depth", 0), ("reward", "vibes"), ("final_rule", "coin"),
                                         ("temperature", -2.0), ("min_p", 3.0)])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        MCTSConfig(**{field: value})


def test_gold_reward_without_gold_is_refused():
    with pytest.raises(ValueError, match="gold"):
        list(run(QUESTION, ScriptedBackend(), config=MCTSConfig(reward="gold"), seed=0))


def test_a_path_that_fills_the_context_ends_its_branch_not_the_run(tiny_backend):
    # the random tiny model writes 96-token steps; its 512-token context fills within a few levels
    cfg = MCTSConfig(rollouts=3, max_depth=20, max_step_tokens=96, children=2)
    tree = Tree.fold(run(QUESTION, tiny_backend, config=cfg, seed=0))
    assert tree.finished.status == "done"
    full = [n for n in tree.nodes if n.text == "[context full]"]
    assert full and all(n.terminal and n.answer is None for n in full)
