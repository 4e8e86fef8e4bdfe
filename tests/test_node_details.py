"""The Search view shows code-verified and SRA-MCTS nodes: code, output, pass/fail, the
cumulative program; reflection and self-evaluation; the phase explanations; the pair table."""

from __future__ import annotations

from app import mcts_tab as M
from app.node_details import pairs_html
from engine import events as E
from engine.tree import Tree
from test_code_mcts import BROKEN, GOOD, CodeScriptBackend
from test_sra_mcts import SRAScriptBackend

QUESTION = "Mia has 6 packs of 16 cards. She gives half away. How many cards does Mia have?"
PICKED = {"clicks": 1, "id": "x", "question": QUESTION, "answer": 48}


def run(backend, store, method, extra=None, **kw):
    form = dict(rollouts=2, children=2, c=2.0, max_depth=4, temperature=0.8, min_p=0.0, reward="gold",
                final_rule="majority", samples=3, beam_width=2, seed=0) | kw
    *_, last = M.run_search(backend, store, QUESTION, PICKED, method, form["rollouts"], form["children"], form["c"],
                            form["max_depth"], form["temperature"], form["min_p"], form["reward"], form["final_rule"],
                            form["samples"], form["beam_width"], form["seed"], M.RunControl(), **(extra or {}))
    return last[4]


def test_the_inspector_shows_code_output_verdict_and_the_cumulative_program(store):
    view = run(CodeScriptBackend(GOOD), store, "mcts-code")
    tree = Tree.fold(view["events"])
    step2 = next(n.id for n in tree.nodes if n.depth == 2)
    html = M.inspect_node(view, step2, len(view["events"]))
    assert "Code</b> · ✓ passed" in html and "x2 = x1 // 2" in html
    assert "Cumulative program" in html and "x1 = 6 * 16\nx2 = x1 // 2\nprint(x2)" in html
    assert "comment claims 48 (agrees)" in html
    view = run(CodeScriptBackend(BROKEN), store, "mcts-code")
    html = M.inspect_node(view, 1, len(view["events"]))
    assert "✗ failed" in html and "NameError" in html and "branch ends" in html
    code_at = next(i + 1 for i, e in enumerate(view["events"]) if isinstance(e, E.CodeExecuted))
    *_, why = M.replay_to(view, code_at)
    assert "Run code" in why and "reward −1" in why


def test_the_inspector_shows_reflection_and_self_evaluation(store):
    view = run(SRAScriptBackend(score=lambda step: " banana"), store, "sra-mcts", rollouts=3)
    tree = Tree.fold(view["events"])
    assert tree.run.method == "sra-mcts"
    html = M.inspect_node(view, 0, len(view["events"]))
    assert "Reflection</b> before expanding: add the apples" in html
    html = M.inspect_node(view, tree[0].children[0], len(view["events"]))
    assert "Self-evaluation</b>: 5 / 10" in html and "no 0–10 score could be read from the output; fallback 5" in html
    view2 = run(SRAScriptBackend(score=lambda step: " Score: 226"), store, "sra-mcts", rollouts=1)
    html = M.inspect_node(view2, Tree.fold(view2["events"])[0].children[0], len(view2["events"]))
    assert "read 226, off the 0–10 scale: clamped to 10" in html             # clamped, never silently
    texts = [M.replay_to(view, i + 1)[-1] for i, e in enumerate(view["events"])
             if isinstance(e, (E.Reflected, E.SelfEvaluated, E.SraRollout, E.Selected))]
    assert any("Reflect" in t for t in texts) and any("Self-evaluate" in t for t in texts)
    assert any("Simulate" in t for t in texts) and any("SRA-MCTS's UCB" in t for t in texts)


def test_pairs_show_in_the_view(store):
    view = run(CodeScriptBackend(GOOD), store, "mcts-code")
    html = M.show_pairs(view, len(view["events"]))
    assert "No preference pairs" in html          # every path agrees: nothing to prefer
    evs = [E.RunStarted(method="mcts", question="Q", prompt="Q\n", gold="1", config={}, seed=0, model="m"),
           E.NodeProposed(node=0, parent=-1, depth=0, action="root", text="Q\n"),
           E.NodeProposed(node=1, parent=0, depth=1, action="step", text="The answer is 1.\n", terminal=True,
                          answer="1", correct=True),
           E.NodeProposed(node=2, parent=0, depth=1, action="step", text="The answer is 2.\n", terminal=True,
                          answer="2", correct=False),
           E.Backprop(path=[0, 1, 2], reward=0, before=[[0, 0]] * 3, after=[[2, 0], [1, 1.0], [1, -1.0]])]
    html = pairs_html(Tree.fold(evs))
    assert "1 preference pairs" in html and "The answer is 1." in html and "-1.000" in html


def test_method_change_sets_that_methods_own_constants():
    d, c, t = M.method_defaults("sra-mcts")
    assert (c["value"], t["value"]) == (0.5, 0.7)
    d, c, t = M.method_defaults("mcts")
    assert (d["value"], c["value"], t["value"]) == (8, 2.0, 0.8)
    d, c, t = M.method_defaults("rstar")
    assert d["value"] == 5


def test_every_method_change_fills_the_three_sliders_it_is_wired_to():
    # one registration, three outputs: a second definition once shadowed the first and the
    # max-depth slider received a pair
    for method in M.METHODS:
        out = M.method_defaults(method)
        assert len(out) == 3 and all(isinstance(u, dict) for u in out)


def test_the_variants_settings_reach_their_configs(store):
    view = run(CodeScriptBackend(["Step 1: x1 = 6 * 16  # 6 * 16 = 98\n", "The answer is 98.\n"]), store,
               "mcts-code")
    assert Tree.fold(view["events"])[1].code["passed"]                     # default check: the code runs
    *_, last = M.run_search(CodeScriptBackend(["Step 1: x1 = 6 * 16  # 6 * 16 = 98\n", "The answer is 98.\n"]),
                            store, QUESTION, PICKED, "mcts-code", 1, 1, 2.0, 4, 0.8, 0.0, "gold", "majority", 3, 2,
                            0, M.RunControl(), check="runs_and_claim", self_eval="prompt",
                            reflection="common")
    tree = Tree.fold(last[4]["events"])
    assert not tree[1].code["passed"] and tree.run.config["check"] == "runs_and_claim"
    *_, last = M.run_search(SRAScriptBackend(), store, QUESTION, PICKED, "sra-mcts", 2, 2, 0.5, 4, 0.7, 0.0, "gold",
                            "majority", 3, 2, 0, M.RunControl(), check="runs", self_eval="confidence",
                            reflection="simple")
    cfg = Tree.fold(last[4]["events"]).run.config
    assert (cfg["self_eval"], cfg["reflection"]) == ("confidence", "simple")


def test_the_search_form_runs_code_mcts_with_failed_steps_dropped_and_reopens_with_them(store):
    from app.restore import SEARCH_SETTINGS, search_form
    view = run(CodeScriptBackend(GOOD), store, "mcts-code", extra=dict(resample=2, drop_failed=True, check="runs_and_claim"))
    started = view["events"][0]
    assert (started.config["resample"], started.config["drop_failed"]) == (2, True)
    form = dict(zip(SEARCH_SETTINGS, search_form(view, PICKED)[6:]))
    assert (form["resample"]["value"], form["drop_failed"]["value"]) == (2, True)
    # a run at the defaults leaves them out of its config; reopening it puts the defaults back
    view = run(CodeScriptBackend(GOOD), store, "mcts-code")
    assert "resample" not in view["events"][0].config
    form = dict(zip(SEARCH_SETTINGS, search_form(view, PICKED)[6:]))
    assert (form["resample"]["value"], form["drop_failed"]["value"]) == (0, False)
    # a method without the settings leaves the form as it is
    view = run(CodeScriptBackend(GOOD), store, "mcts")
    form = dict(zip(SEARCH_SETTINGS, search_form(view, PICKED)[6:]))
    assert "value" not in form["resample"] and "value" not in form["drop_failed"]
