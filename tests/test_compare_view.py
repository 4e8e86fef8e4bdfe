"""The Compare tab (app/compare_tab.py) and the Search view's token-cost line: callbacks on real
stored runs of a tiny model, and in headless Chromium two stored runs side by side, their shared
timeline stepped (issue 23)."""

import json
import os
import time

import gradio as gr
import pytest
from conftest import free_port

from app import compare_tab as C
from engine import events as E
from engine.search import METHODS
from engine.store import record

QUESTION = "Ada has 4 pens and buys 3 more. How many pens?"


def real_run(store, backend, method, question=QUESTION, gold="7", seed=0, **cfg):
    """A real run of ``method`` on ``backend``, stored as the app stores it."""
    config = METHODS[method].config(**cfg)
    sid = store.create_session(method=method, model=backend.info.name, question=question, gold=gold,
                               config=config.to_json(), seed=seed)
    record(store, sid, METHODS[method].run(question, backend, config=config, seed=seed, gold=gold))
    return sid


@pytest.fixture
def two_runs(store, tiny_backend):
    mcts = real_run(store, tiny_backend, "mcts", rollouts=3, max_depth=2, children=2)
    sc = real_run(store, tiny_backend, "sc", samples=2, max_depth=2)
    return mcts, sc


def test_upto_iteration_cuts_before_the_next_iteration_starts(store, two_runs):
    mcts, _ = two_runs
    events = store.events(mcts)
    starts = C.iteration_starts(events)
    assert len(starts) == 3                                       # one per rollout
    assert C.upto_iteration(events, 0) == events[:starts[0]]      # the root only
    assert isinstance(C.upto_iteration(events, 2)[-1], E.Event) and len(C.upto_iteration(events, 2)) == starts[2]
    assert C.upto_iteration(events, 3) == events == C.upto_iteration(events, 99)


def test_compare_shows_each_run_and_the_timeline_steps_all_of_them(store, two_runs):
    mcts, sc = two_runs
    view, slider, status, *cols = C.compare(store, f"{mcts[:8]}, {sc}")
    assert [r["session_id"] for r in view["runs"]] == [mcts, sc]
    assert slider.maximum == 3 and "same problem" in status
    heads = [cols[i * 3]["value"] for i in range(2)]
    assert heads[0].startswith("**mcts**") and "iteration 3 of 3 · finished" in heads[0]
    assert heads[1].startswith("**sc**") and "iteration 1 of 1 · finished" in heads[1]
    row = store.session(mcts)
    assert f"{row['generated_tokens']} generated tokens" in heads[0] and "rule: majority" in heads[0]
    assert [cols[i * 3 + 2]["visible"] for i in range(4)] == [True, True, False, False]
    k, *cols = C.step(view, 3, -1)
    assert k == 2 and "iteration 2 of 3" in cols[0]["value"] and "finished" not in cols[0]["value"]
    assert "iteration 1 of 1 · finished" in cols[3]["value"]     # sc used its one iteration up
    k, *cols = C.step(view, 0, -1)
    assert k == 0 and "iteration 0 of 3" in cols[0]["value"]


@pytest.mark.parametrize("ids, says", [("", "got 0"), ("abc", "got 1"), ("a,b,c,d,e", "got 5")])
def test_compare_needs_two_to_four_runs(store, ids, says):
    with pytest.raises(gr.Error, match=says):
        C.compare(store, ids)


def test_an_unknown_run_is_named(store, two_runs):
    with pytest.raises(gr.Error, match="run 'nosuch'"):
        C.compare(store, f"{two_runs[0]}, nosuch")


def test_add_id_keeps_at_most_four_and_the_same_problem_lists_the_others(store, two_runs):
    mcts, sc = two_runs
    assert C.add_id("a, b", "c") == "a, b, c" and C.add_id("a, b", "a") == "a, b"
    assert C.add_id("a, b, c, d", "e") == "a, b, c, e"
    with pytest.raises(gr.Error, match="select a run first"):
        C.add_id("a", "")
    offered = C.same_problem(store, mcts)
    assert [v for _, v in offered["choices"]] == [sc]
    assert C.with_ticked(mcts, [sc]) == f"{mcts}, {sc}"


def test_cost_line_names_this_run_and_the_latest_of_each_other_method(store, tiny_backend, two_runs):
    mcts, sc = two_runs
    other = real_run(store, tiny_backend, "greedy", question="Bo has 9 cups. How many cups?", gold="9")
    line = C.cost_line(store, {"session_id": mcts, "events": []})
    mine, theirs = store.session(mcts)["generated_tokens"], store.session(sc)["generated_tokens"]
    assert f"this run (mcts) {mine:,} tokens" in line and f"sc {theirs:,}" in line
    assert "greedy" not in line                         # another problem's run is not comparable
    assert "no other method" in C.cost_line(store, {"session_id": other, "events": []})
    assert C.cost_line(store, None) == ""


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed")
def test_browser_opens_two_stored_runs_side_by_side_and_steps_their_timeline(tiny_backend, store, two_runs,
                                                                              tmp_path):
    from test_app_browser import Browser, open_tab

    from app.main import LAUNCH_KWARGS, build_app
    mcts, sc = two_runs
    demo = build_app(tiny_backend, store)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                            **LAUNCH_KWARGS)
    browser = Browser(tmp_path / "profile")
    try:
        browser.goto(url)
        open_tab(browser, "Sessions")
        box = "document.querySelector('#ts-session-id textarea, #ts-session-id input')"
        browser.wait_for(f"!!{box}")
        browser.js("(() => { const t = %s; t.value = %s; t.dispatchEvent(new Event('input', {bubbles: true})); })()"
                   % (box, json.dumps(mcts)))
        time.sleep(0.5)
        browser.js("document.querySelector('#ts-sessions-compare').click()")
        ids = "(document.querySelector('#ts-compare-ids textarea, #ts-compare-ids input') || {value: ''}).value"
        browser.wait_for(f"{ids} === {json.dumps(mcts)}", what="the run's id in the Compare tab")
        # the same problem's other run is offered: tick it, add it, compare
        browser.wait_for("document.querySelectorAll('#ts-compare-same input[type=checkbox]').length === 1",
                         what="the sc run offered as the same problem's")
        browser.js("document.querySelector('#ts-compare-same input[type=checkbox]').click()")
        time.sleep(0.5)
        browser.js("[...document.querySelectorAll('button')].find(b => b.innerText.trim() === 'Add ticked').click()")
        browser.wait_for(f"{ids} === {json.dumps(f'{mcts}, {sc}')}", what="both ids in the box")
        browser.js("document.querySelector('#ts-compare-go').click()")
        head = "(document.querySelector('#ts-compare-head-%d') || {innerText: ''}).innerText"
        browser.wait_for(f"{head % 0}.includes('iteration 3 of 3') && {head % 1}.includes('iteration 1 of 1')",
                         what="both runs at their last iteration")
        for i in (0, 1):        # each column draws its own tree
            browser.wait_for(f"document.querySelectorAll('#ts-compare-plot-{i} .scatterlayer .point').length",
                             what=f"run {i + 1}'s tree")
        assert not browser.js("!!document.querySelector('#ts-compare-head-2') && "
                              "document.querySelector('#ts-compare-head-2').offsetParent !== null")
        browser.js("document.querySelector('#ts-compare-prev').click()")
        browser.wait_for(f"{head % 0}.includes('iteration 2 of 3')", what="the MCTS run one rollout back")
        assert "iteration 1 of 1 · finished" in browser.js(head % 1)
        for k in (1, 0):        # one click at a time: each reads the timeline the last one set
            browser.js("document.querySelector('#ts-compare-prev').click()")
            browser.wait_for(f"{head % 0}.includes('iteration {k} of 3')", what=f"the MCTS run at iteration {k}")
        assert "iteration 0 of 1" in browser.js(head % 1)      # the sc run at its root too
        assert "Traceback" not in browser.js("document.body.innerText")
    finally:
        browser.close()
        demo.close(verbose=False)
