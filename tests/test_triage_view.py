"""Triage in the app (app/triage_view.py, app/tree_figure.py colour modes): the answer tally beside
the tree, "jump to first wrong step", colour by correctness or reward source, and the failures
list — on hand-built trees and a real tmp database (issue 23)."""

import gradio as gr
import pytest
from test_triage import run_events

from app import triage_view as V
from app.tree_figure import SOURCE_COLOURS, UNVISITED, right_share, tree_figure
from engine import events as E
from engine.store import record
from engine.tree import Tree


def view_of(evs):
    return {"session_id": "s", "events": evs}


def reached_not_chosen():
    return run_events("7", "9", {"majority": "9", "most_visited": "7"}, [
        ("The answer is 9.", "9", 1, 1.0, 1.0),      # the chosen, wrong answer (node 1)
        ("The answer is 9.", "9", 1, 0.5, 0.5),      # node 2
        ("The answer is 7.", "7", 3, 1.5, 0.5),      # gold (node 3)
    ])


def test_the_tally_lists_each_answer_with_its_terminals_visits_q_and_rightness():
    md = V.tally_markdown(view_of(reached_not_chosen()))
    assert md.startswith("**Triage**: reached not chosen")
    assert "| `9` | 1, 2 | 2 | 1.000 | 0.750 | ✗ |" in md
    assert "| `7` | 3 | 3 | 0.500 | 0.500 | ✓ |" in md
    assert V.tally_markdown(None) == ""


def test_jump_to_first_wrong_step_names_the_node_and_draws_the_path_to_it():
    evs = run_events("37", "38", {"majority": "38"}, [("45 - 8 = 38.\nThe answer is 38.", "38", 1, 0.0, None)],
                     steps=["Tom has 45 apples.", "He buys 5: 40 + 5 = 45."])
    tree = Tree.fold(evs)
    leaf = tree.terminals()[0].id
    nid, inspector, fig, note = V.first_wrong(view_of(evs), None)
    assert nid == leaf and f"<b>node {leaf}</b>" in inspector
    assert "`45 - 8 = 38.` claims 38, but it is 37" in note
    thick = next(t for t in fig.data if t.name == "chosen path")      # the highlighted path: root .. the step
    assert len([x for x in thick.x if x is not None]) == 2 * (len(tree.path_to(leaf)) - 1)


def test_no_first_wrong_step_is_said_not_guessed():
    evs = run_events("7", "9", {"majority": "9"}, [("So it is nine. The answer is 9.", "9", 1, 0.0, None)])
    out = V.first_wrong(view_of(evs), None)
    assert "claim no `a op b = c`" in out[3]
    with pytest.raises(gr.Error, match="Run a search"):
        V.first_wrong(None, None)


def test_colour_by_correctness_is_the_share_of_right_answers_below_each_node():
    tree = Tree.fold(reached_not_chosen())
    assert right_share(tree) == {0: pytest.approx(1 / 3), 1: 0.0, 2: 0.0, 3: 1.0}
    fig = tree_figure(tree, colour_by="correct")
    nodes = next(t for t in fig.data if t.name == "nodes")
    assert list(nodes.marker.color) == [pytest.approx(1 / 3), 0.0, 0.0, 1.0]
    assert nodes.marker.colorscale is not None and nodes.marker.cmin == 0 and nodes.marker.cmax == 1
    q = next(t for t in tree_figure(tree).data if t.name == "nodes")      # Q: the bright wrong path (Q 1.0)
    assert list(q.marker.color)[1] == 1.0


def test_colour_by_reward_source_colours_each_rewarded_terminal_by_its_source():
    evs = reached_not_chosen()
    evs.insert(-1, E.TerminalReward(node=3, reward=1.0, source="self_consistency"))   # node 3's source changes
    sources = V.reward_sources(evs)
    assert sources == {1: "gold", 2: "gold", 3: "self_consistency"}
    fig = tree_figure(Tree.fold(evs), colour_by="source", sources=sources)
    nodes = next(t for t in fig.data if t.name == "nodes")
    assert list(nodes.marker.color) == [UNVISITED, SOURCE_COLOURS["gold"], SOURCE_COLOURS["gold"],
                                        SOURCE_COLOURS["self_consistency"]]
    assert {t.name for t in fig.data if t.name and t.name.startswith("reward:")} == {"reward: gold",
                                                                                     "reward: self_consistency"}
    with pytest.raises(ValueError, match="colour_by must be one of"):
        tree_figure(Tree.fold(evs), colour_by="rainbow")


def test_recolour_leaves_q_to_the_views_own_redraw():
    evs = reached_not_chosen()
    assert V.recolour(view_of(evs), None, "q") == gr.skip()
    fig = V.recolour(view_of(evs), None, "correct")
    assert next(t for t in fig.data if t.name == "nodes").marker.cmin == 0


def _stored(store, evs, method="mcts"):
    run = evs[0]
    evs = [E.RunStarted(method=method, question=run.question, prompt=run.prompt, gold=run.gold, config={},
                        seed=0, model="m"), *evs[1:], E.RunFinished(status="done")]
    sid = store.create_session(method=method, model="m", question=run.question, gold=run.gold, config={}, seed=0)
    record(store, sid, evs)
    return sid


def test_the_failures_list_filters_by_class_and_method(store):
    reached = _stored(store, reached_not_chosen())
    never = _stored(store, run_events("7", "9", {"majority": "9"}, [("The answer is 9.", "9", 1, 0.0, None)]),
                    method="sc")
    _stored(store, run_events("7", "7", {"majority": "7"}, [("The answer is 7.", "7", 1, 1.0, None)]))  # right
    rows = V.failure_rows(store)
    assert {r[0] for r in rows} == {reached, never}
    assert [r[:3] for r in V.failure_rows(store, "reached_not_chosen")] == [[reached, "mcts", "reached_not_chosen"]]
    assert [r[0] for r in V.failure_rows(store, "any", "sc")] == [never]
    assert V.failure_rows(store, "no_answer") == []
