"""Preference pairs (rStar-Math PPM data): selection on hand-built trees with known Q-values,
the fill rule, the margin filter, the official selection against the earlier strict one (steps
reaching both answers, code failures, endings without an answer, the continuation check), the
JSONL schema, and `thoughtscope export-pairs`."""

from __future__ import annotations

import dataclasses
import json

import pytest

from engine import events as E
from engine.cli import main
from engine.pairs import JSONL_KEYS, PairConfig, continuation_q, pairs_from_tree, write_jsonl
from engine.store import Store
from engine.tree import Tree

PROMPT = "Question: Q?\n"


def build(children: dict[int, tuple[float, bool | None]], *, gold: bool = True) -> list[E.Event]:
    """Events of a tree: root 0, under it one step per entry ``k: (Q, leads_to_right)``, each with
    a terminal answer below it (right or wrong); every step visited 10 times with value 10·Q."""
    evs = [E.RunStarted(method="mcts", question="Q?", prompt=PROMPT, gold="1" if gold else None, config={},
                        seed=0, model="m"),
           E.NodeProposed(node=0, parent=-1, depth=0, action="root", text=PROMPT)]
    ids = {k: i for i, k in enumerate(children, start=1)}
    for k in children:
        evs.append(E.NodeProposed(node=ids[k], parent=0, depth=1, action="step", text=f"Step 1: s{k}\n"))
    for leaf, (k, (q, right)) in enumerate(children.items(), start=len(children) + 1):
        evs.append(E.NodeProposed(node=leaf, parent=ids[k], depth=2, action="step", terminal=True,
                                  text=f"The answer is {1 if right else 2}.\n", answer="1" if right else "2",
                                  correct=None if not gold else bool(right)))
        evs.append(E.Backprop(path=[ids[k], leaf], reward=q, before=[[0, 0.0], [0, 0.0]],
                              after=[[10, 10 * q], [10, 10 * q]]))
    return evs


def grow(rows: list[tuple], *, gold: bool = True) -> list[E.Event]:
    """Events of a hand-built tree under root 0: rows ``(id, parent, name, Q, end)`` in id order,
    where ``end`` is None (a step), "right", "wrong", "none" (the depth limit: terminal, no
    answer) or "fail" (a code step whose code failed). Every node is visited 10 times at Q."""
    evs = build({}, gold=gold)
    for nid, parent, name, q, end in rows:
        answer = {"right": "1", "wrong": "2"}.get(end)
        text = f"The answer is {answer}.\n" if answer else f"Step: {name}\n"
        evs.append(E.NodeProposed(node=nid, parent=parent, depth=0, action="step", text=text,
                                  terminal=end is not None, answer=answer,
                                  correct=None if end is None or not gold else end == "right"))
        if end == "fail":
            evs.append(E.CodeExecuted(node=nid, code="x2 = y", program="x2 = y\nprint(x2)", status="error",
                                      output="NameError: name 'y' is not defined", passed=False, ends_branch=True))
        evs.append(E.Backprop(path=[nid], reward=q, before=[[0, 0.0]], after=[[10, 10 * q]]))
    return evs


def names(pairs) -> list[tuple[str, str]]:
    return sorted((p.chosen.split()[-1], p.rejected.split()[-1]) for p in pairs)


def chosen_rejected(tree: Tree, pairs) -> list[tuple[str, str]]:
    return [(p.chosen.split()[-1], p.rejected.split()[-1]) for p in pairs]


def test_top_two_chosen_and_bottom_two_rejected_among_siblings():
    # right: s1 Q .8, s2 Q .5, s3 Q .3     wrong: s4 Q -.6, s5 Q -.2, s6 Q .75 (a wrong step the search liked)
    tree = Tree.fold(build({1: (.8, True), 2: (.5, True), 3: (.3, True), 4: (-.6, False), 5: (-.2, False),
                            6: (.75, False)}))
    pairs, note = pairs_from_tree(tree, PairConfig(margin=0))
    # chosen = the two highest-Q right steps (s1, s2); rejected = the two lowest-Q wrong ones (s4, s5)
    assert sorted(chosen_rejected(tree, pairs)) == [("s1", "s4"), ("s1", "s5"), ("s2", "s4"), ("s2", "s5")]
    assert note == "4 pairs"
    by = {(c, r): p for (c, r), p in zip(chosen_rejected(tree, pairs), pairs)}
    assert (by[("s1", "s4")].q_chosen, by[("s1", "s4")].q_rejected) == (0.8, -0.6)
    assert all(p.prompt == PROMPT and p.parent == 0 for p in pairs)       # siblings share the prefix


def test_a_step_is_never_paired_with_the_same_text():
    # MCTS keeps duplicate siblings (as rStar does): the same step text sampled twice can lead to
    # a right answer once and a wrong one the other time; that pair would prefer a step to itself
    evs = [dataclasses.replace(e, text="Step 1: s1\n") if isinstance(e, E.NodeProposed) and e.node == 3 else e
           for e in build({1: (.8, True), 2: (.5, True), 4: (-.6, False)})]    # node 3 (was s4) now reads s1
    tree = Tree.fold(evs)
    assert tree[3].text == tree[1].text
    pairs, _ = pairs_from_tree(tree, PairConfig(margin=0))
    assert sorted(chosen_rejected(tree, pairs)) == [("s2", "s1")]       # s2 vs the wrong copy of s1 only


def test_the_margin_filter_drops_close_pairs():
    tree = Tree.fold(build({1: (.8, True), 2: (.5, True), 4: (-.6, False), 5: (-.2, False)}))
    # margins: s1-s4 1.4, s1-s5 1.0, s2-s4 1.1, s2-s5 0.7
    pairs, _ = pairs_from_tree(tree, PairConfig(margin=1.05))
    assert sorted(chosen_rejected(tree, pairs)) == [("s1", "s4"), ("s2", "s4")]
    pairs, note = pairs_from_tree(tree, PairConfig(margin=2.0))
    assert pairs == [] and "no siblings" in note


def test_one_candidate_on_a_side_fills_the_other_to_four():
    # one right step, five wrong: the four lowest-Q wrong steps are rejected
    tree = Tree.fold(build({1: (.9, True), 2: (-.1, False), 3: (-.5, False), 4: (-.3, False), 5: (-.7, False),
                            6: (-.9, False)}))
    pairs, _ = pairs_from_tree(tree, PairConfig(margin=0))
    assert sorted(chosen_rejected(tree, pairs)) == [("s1", "s3"), ("s1", "s4"), ("s1", "s5"), ("s1", "s6")]
    # and the mirror: one wrong step, three right ones -> all three right steps are chosen
    tree = Tree.fold(build({1: (.9, True), 2: (.4, True), 3: (.6, True), 4: (-.5, False)}))
    pairs, _ = pairs_from_tree(tree, PairConfig(margin=0))
    assert sorted(chosen_rejected(tree, pairs)) == [("s1", "s4"), ("s2", "s4"), ("s3", "s4")]


def test_unvisited_steps_and_a_tree_without_the_answer_key_give_no_pairs():
    evs = build({1: (.8, True), 2: (-.6, False)})
    evs.append(E.NodeProposed(node=5, parent=0, depth=1, action="step", text="Step 1: unvisited\n"))
    evs.append(E.NodeProposed(node=6, parent=5, depth=2, action="step", text="The answer is 1.\n", terminal=True,
                              answer="1", correct=True))      # right, but never visited: not a candidate
    pairs, _ = pairs_from_tree(Tree.fold(evs), PairConfig(margin=0))
    assert chosen_rejected(None, pairs) == [("s1", "s2")]
    pairs, note = pairs_from_tree(Tree.fold(build({1: (.8, True), 2: (-.6, False)}, gold=False)))
    assert pairs == [] and "answer key" in note


def test_config_validates_with_a_message_naming_the_field():
    with pytest.raises(ValueError, match="margin must be a number from 0 to 10, got -1"):
        PairConfig(margin=-1)
    with pytest.raises(ValueError, match="fill_to must be from top"):
        PairConfig(top=3, fill_to=2)
    with pytest.raises(ValueError, match=r"selection must be one of \('official', 'strict'\), got 'loose'"):
        PairConfig(selection="loose")
    assert PairConfig().selection == "official"


def test_a_step_reaching_both_answers_can_be_rejected_but_never_against_itself():
    # s1 reaches only the right answer; s2 reaches a right one and a wrong one
    tree = Tree.fold(grow([(1, 0, "s1", .8, None), (2, 0, "s2", -.2, None),
                           (3, 1, "a", .8, "right"), (4, 2, "b", .4, "right"), (5, 2, "c", -.6, "wrong")]))
    # official: s2 is a negative (and a positive: the fill rule takes it as chosen too, but
    # never against itself); under s2, its right answer is preferred to its wrong one
    pairs, _ = pairs_from_tree(tree, PairConfig(margin=0))
    assert [(p.parent, p.chosen_node, p.rejected_node) for p in pairs] == [(0, 1, 2), (2, 4, 5)]
    # the strict rule wanted negatives that reach no right answer: only the answers' pair
    pairs, _ = pairs_from_tree(tree, PairConfig(margin=0, selection="strict"))
    assert [(p.parent, p.chosen_node, p.rejected_node) for p in pairs] == [(2, 4, 5)]


def test_code_failures_are_not_wrong_answers():
    # s2's only ending is a step whose code failed: no answer was ever stated under it
    tree = Tree.fold(grow([(1, 0, "s1", .8, None), (2, 0, "s2", -.5, None),
                           (3, 1, "a", .8, "right"), (4, 2, "b", -1.0, "fail")]))
    assert tree[4].code["passed"] is False
    pairs, note = pairs_from_tree(tree, PairConfig(margin=0))
    assert pairs == [] and "no siblings" in note
    assert names(pairs_from_tree(tree, PairConfig(margin=0, selection="strict"))[0]) == [("s1", "s2")]


def test_endings_without_an_answer_are_neither_right_nor_wrong():
    # s2 reached the depth limit without an answer (terminal, answer None, judged not correct)
    tree = Tree.fold(grow([(1, 0, "s1", .8, None), (2, 0, "s2", -.5, None),
                           (3, 1, "a", .8, "right"), (4, 2, "b", -.5, "none")]))
    assert (tree[4].terminal, tree[4].answer, tree[4].correct) == (True, None, False)
    assert pairs_from_tree(tree, PairConfig(margin=0))[0] == []
    assert names(pairs_from_tree(tree, PairConfig(margin=0, selection="strict"))[0]) == [("s1", "s2")]
    # with a wrong answer elsewhere under s2, s2 is a negative again
    tree = Tree.fold(grow([(1, 0, "s1", .8, None), (2, 0, "s2", -.5, None), (3, 1, "a", .8, "right"),
                           (4, 2, "b", -.5, "none"), (5, 2, "c", -.6, "wrong")]))
    assert names(pairs_from_tree(tree, PairConfig(margin=0))[0]) == [("s1", "s2")]


def test_the_chosen_steps_best_continuation_must_average_a_higher_q():
    # s1 has the higher Q, but its best continuation averages (.4 - .4 - .4) / 3 = -.133;
    # s2's averages (-.2 + .6 + .6) / 3 = .333: the search preferred what followed s2
    rows = [(1, 0, "s1", .4, None), (2, 0, "s2", -.2, None), (3, 1, "x", -.4, None), (4, 2, "y", .6, None),
            (5, 3, "a", -.4, "right"), (6, 4, "b", .6, "wrong")]
    tree = Tree.fold(grow(rows))
    assert continuation_q(tree, 1) == pytest.approx(-.4 / 3) and continuation_q(tree, 2) == pytest.approx(1 / 3)
    assert pairs_from_tree(tree, PairConfig(margin=0))[0] == []
    assert names(pairs_from_tree(tree, PairConfig(margin=0, selection="strict"))[0]) == [("s1", "s2")]
    # the continuation follows the visited child with the highest Q: a better child under s1
    # (x2, Q .9, ending right) lifts s1's average to (.4 + .9 + .9) / 3 = .733
    tree = Tree.fold(grow(rows + [(7, 1, "x2", .9, None), (8, 7, "c", .9, "right")]))
    assert continuation_q(tree, 1) == pytest.approx(2.2 / 3)
    assert names(pairs_from_tree(tree, PairConfig(margin=0))[0]) == [("s1", "s2")]


def test_continuation_ties_go_to_the_lower_id_and_unvisited_children_are_not_followed():
    evs = grow([(1, 0, "s", .5, None), (2, 1, "a", .2, None), (3, 1, "b", .2, None), (4, 2, "c", 1.0, None),
                (5, 3, "d", -1.0, None)])
    evs.append(E.NodeProposed(node=6, parent=4, depth=0, action="step", text="Step: never\n"))
    assert continuation_q(Tree.fold(evs), 1) == pytest.approx((.5 + .2 + 1.0) / 3)      # s, a, c


def test_jsonl_rows_have_the_schema(tmp_path):
    tree = Tree.fold(build({1: (.8, True), 2: (.5, True), 4: (-.6, False)}))
    pairs, _ = pairs_from_tree(tree, session_id="abc")
    out = tmp_path / "pairs.jsonl"
    with out.open("w") as fh:
        assert write_jsonl(pairs, fh) == 2
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    for row in rows:
        assert set(JSONL_KEYS) <= set(row)
        assert all(isinstance(row[k], str) for k in ("prompt", "chosen", "rejected"))
        assert all(isinstance(row[k], float) for k in ("q_chosen", "q_rejected"))
        assert row["q_chosen"] > row["q_rejected"] and row["session_id"] == "abc"


def test_cli_exports_the_pairs_of_a_stored_session(tmp_path, capsys):
    db = tmp_path / "runs.db"
    with Store(db) as store:
        sid = store.create_session(method="mcts", model="m", question="Q?", gold="1", config={}, seed=0)
        for ev in build({1: (.8, True), 2: (-.6, False)}):
            store.append(sid, ev)
        store.finish(sid, status="done")
    out = tmp_path / "p.jsonl"
    assert main(["export-pairs", "--session", sid[:8], "--db", str(db), "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pairs"] == 1
    row = json.loads(out.read_text())
    assert (row["chosen"], row["rejected"], row["q_chosen"], row["q_rejected"]) == (
        "Step 1: s1\n", "Step 1: s2\n", 0.8, -0.6)
    assert main(["export-pairs", "--session", "nope", "--db", str(db)]) == 2
    # --selection: an ending without an answer is wrong only under the strict rule
    with Store(db) as store:
        sid2 = store.create_session(method="mcts", model="m", question="Q?", gold="1", config={}, seed=0)
        for ev in grow([(1, 0, "s1", .8, None), (2, 0, "s2", -.5, None), (3, 1, "a", .8, "right"),
                        (4, 2, "b", -.5, "none")]):
            store.append(sid2, ev)
        store.finish(sid2, status="done")
    for selection, n in (("official", 0), ("strict", 1)):
        assert main(["export-pairs", "--session", sid2, "--db", str(db), "--out", str(out), "--json",
                     "--selection", selection]) == 0
        assert json.loads(capsys.readouterr().out)["pairs"] == n
    assert main(["export-pairs", "--session", sid, "--db", str(db), "--rollouts", "3"]) == 2
