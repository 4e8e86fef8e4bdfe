"""rStar in the Search tab: the run from the view, colour by action with a legend in words, the
inspector's rephrase and sub-question layout, the discriminator panel and candidates table,
phase stepping through the discriminator; and the served app through gradio_client."""

import pytest

from app import mcts_tab as M
from app import rstar_view as V
from app.replay import explain, phase_points
from app.tree_figure import ACTION_COLOURS, tree_figure
from engine import events as E
from engine.search import METHODS
from engine.store import Store
from engine.tree import Tree

QUESTION = ("Jonas starts with 245 beads. He loses 214 beads. Then Jonas's pile of beads grows to 6 times its size. "
            "He shares the beads equally among 3 children and keeps one share. Jonas is 7 years old. He gives away "
            "15 beads. How many beads does Jonas have now?")
PICKED = {"clicks": 1, "id": "heldout-hard-0000", "question": QUESTION, "answer": 47}
SMALL = dict(one_step_thoughts=2, subquestions=2, votes=3, final_votes=3)


@pytest.fixture(scope="module")
def rstar_view(default_backend, tmp_path_factory):
    """One small rStar run through the Search tab's own callback."""
    s = Store(tmp_path_factory.mktemp("rstar-view") / "runs.db")
    out = list(M.run_search(default_backend, s, QUESTION, PICKED, "rstar", 4, 3, 2.0, 5, 0.8, 0.0,
                            "self_consistency", "majority", 8, 3, 0, M.RunControl(), **SMALL))
    yield out, s
    s.close()


def test_rstar_is_in_the_method_dropdown_and_runs_from_the_view(rstar_view):
    outputs, store = rstar_view
    fig, progress, final, explanation, view, slider = outputs[-1]
    meta = store.session(view["session_id"])
    assert meta["status"] == "done" and meta["method"] == "rstar"
    assert meta["config"]["subquestions"] == 2 and meta["config"]["max_depth"] == 5
    assert "rstar" in METHODS
    assert "Answer" in final and "Discriminator" in final and "mutually consistent" in final
    panel = M.rstar_panel(view, len(view["events"]))                  # the full-width panel below
    assert "Candidates" in panel and "**winner**" in panel and "Candidate 0" in panel


def test_nodes_are_coloured_by_action_with_a_legend_in_words(rstar_view):
    (*_, (fig, _, _, _, view, _)), _ = rstar_view
    tree = Tree.fold(view["events"])
    names = {t.name for t in fig.data if t.showlegend is not False and t.mode == "markers"}
    assert {"A1 one-step thought", "A2 remaining steps (direct answer)", "A3 sub-question + answer"} <= names
    markers = [t for t in fig.data if t.mode == "markers"]
    assert sum(len(t.x) for t in markers) == len(tree)                 # every node drawn once
    for t in markers:
        action = t.legendgroup
        assert t.marker.color == ACTION_COLOURS[action]
        assert all(tree[i].action == action for i in t.customdata)
    edge_colours = {t.line.color for t in fig.data if t.mode == "lines" and t.name.startswith("edges")}
    assert len(edge_colours) >= 3                                        # edges coloured by their child's action


def test_mcts_keeps_its_q_colour_look(default_backend, store):
    *_, (fig, *_rest) = M.run_search(default_backend, store, QUESTION, PICKED, "mcts", 2, 2, 2.0, 3, 0.8, 0.0,
                                     "self_consistency", "majority", 3, 2, 0, M.RunControl())
    assert len(fig.data) == 3 and fig.data[2].marker.colorscale            # three traces, colour = Q
    with pytest.raises(ValueError, match="colour_by"):
        tree_figure(Tree(), colour_by="mood")


def test_inspector_shows_rephrase_conditions_and_subquestion_pairs(rstar_view):
    (*_, (_, _, _, _, view, _)), _ = rstar_view
    tree = Tree.fold(view["events"])
    k = len(view["events"])
    a5 = next(n for n in tree.nodes if n.action == "A5")
    html = M.inspect_node(view, a5.id, k)
    assert "A5 rephrase the question" in html and "<ol><li>" in html and "Jonas starts with 245 beads." in html
    a3 = next(n for n in tree.nodes if n.action == "A3")
    html = M.inspect_node(view, a3.id, k)
    sq, answer = a3.text.rstrip("\n").split("\n")
    assert "A3 sub-question + answer" in html and f"<i>{sq}</i><br>" in html.replace("&#x27;", "'")
    assert "votes:" in html and "confidence" in html and "ts-tok" in html


def test_discriminator_panel_shows_cuts_completions_and_verdicts(rstar_view):
    (*_, (_, _, _, _, view, _)), _ = rstar_view
    tree = Tree.fold(view["events"])
    judged = [c for c in tree.candidates.candidates if tree.discriminator[c["candidate"]]["verdict"]]
    assert judged
    c = judged[0]
    panel = V.candidate_panel(tree, c["candidate"])
    d = tree.discriminator[c["candidate"]]
    assert f"{d['cuts'][0].keep}/{d['cuts'][0].of} words" in panel
    assert ("mutually consistent" in panel) != ("not consistent" in panel)
    assert panel.count("✓") + panel.count("✗") == len(d["completions"])
    table = V.candidates_markdown(tree)
    assert table.count("**winner**") == (1 if tree.candidate_table.winner is not None else 0)
    assert "survival" in table and "generator reward" in table


def test_phase_stepper_walks_the_discriminator(rstar_view):
    (*_, (_, _, _, _, view, _)), _ = rstar_view
    events = view["events"]
    points = phase_points(events)
    kinds = [type(events[p - 1]) for p in points]
    assert E.CandidatesCollected in kinds and E.DiscriminatorVerdict in kinds and E.CandidateTable in kinds
    start = next(p for p in points if isinstance(events[p - 1], E.CandidatesCollected))
    k, *_, text = M.step_phase(view, start - 1, direction=1)
    assert k == start and "Discriminator begins" in text
    k2, *_, text2 = M.step_phase(view, k, direction=1)
    assert isinstance(events[k2 - 1], (E.DiscriminatorVerdict, E.CandidateTable))
    reward_at = next(i + 1 for i, e in enumerate(events) if isinstance(e, E.TerminalReward))
    tree = Tree.fold(events[:reward_at])
    assert "Reward" in explain(tree, events[reward_at - 1])
    expand_at = next(i + 1 for i, e in enumerate(events) if isinstance(e, E.Expanded))
    assert "[A2 remaining steps" in explain(Tree.fold(events[:expand_at]), events[expand_at - 1])
    # replay at a moment inside the discriminator shows a partial panel
    mid = next(i for i, e in enumerate(events) if isinstance(e, E.DiscriminatorCompletion))
    _, _, final, _ = M.replay_to(view, mid + 1)
    panel = M.rstar_panel(view, mid + 1)
    n = len(Tree.fold(events[:mid + 1]).candidates.candidates)
    assert "Discriminator" in final and f"0 of {n} candidates judged" in final
    assert "Candidate 0" in panel and "Candidates" not in panel                # no table yet
    assert M.rstar_panel(view, 5) == "" and M.rstar_panel(None) == ""


@pytest.mark.slow
def test_served_app_runs_rstar_through_the_client(default_backend, tmp_path):
    from gradio_client import Client
    from app.main import LAUNCH_KWARGS, build_app
    from conftest import free_port
    store = Store(tmp_path / "served.db")
    demo = build_app(default_backend, store)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                            **LAUNCH_KWARGS)
    client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
    try:
        plot, progress, final, explanation, timeline = client.predict(
            QUESTION, "rstar", 2, 3, 2.0, 5, 0.8, 0.0, "self_consistency", "majority", 3, 2, 0,
            2, 2, 3, 3, True, "steps", 2, "mid", False, api_name="/run_search")
        assert "Answer" in final and "Discriminator" in final
        (row,) = store.list_sessions()
        assert row["status"] == "done" and row["method"] == "rstar"
        cfg = store.session(row["session_id"])["config"]
        assert cfg["cut_mode"] == "steps" and cfg["cuts"] == 2 and cfg["one_step_thoughts"] == 2
    finally:
        client.close()
        demo.close(verbose=False)
        store.close()


def test_an_rstar_runs_counts_agree_and_its_page_stays_readable(rstar_view):
    (*_, (fig, _, final, _, view, _)), _ = rstar_view
    tree = Tree.fold(view["events"])
    rows = len(tree.candidate_table.rows)
    judged = sum(1 for d in tree.discriminator.values() if d["verdict"] is not None)
    assert f"{judged} of {rows} candidates judged" in final           # the same count as the table below
    silent = sum(1 for c in tree.candidates.candidates if c["answer"] is None)
    assert (f"{silent} with no answer are not judged" in final) == bool(silent)
    panel = M.rstar_panel(view)
    assert panel.count("<details>") == sum(1 for d in tree.discriminator.values() if d["cuts"])
    assert fig.layout.legend.y < 0                                     # below the tree, not over the root
