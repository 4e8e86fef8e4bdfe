"""The Search and Sessions tabs' callbacks, as plain functions on a real tiny model and a real
SQLite file (the served app and the browser are covered in test_app*.py)."""

import json

import gradio as gr
import pytest

from app import mcts_tab as M
from app import sessions_tab as S
from app.replay import final_markdown, phase_points
from app.tree_figure import layout, node_symbol, tree_figure
from conftest import stored_run
from engine import events as E
from engine.answers import NO_ANSWER
from engine.store import Store
from engine.tree import Tree

QUESTION = "Mia has 23 apples. She buys 14 more apples. How many apples does Mia have now?"
PICKED = {"clicks": 1, "id": "easy-0001", "question": QUESTION, "answer": 37}
FORM = dict(method="mcts", rollouts=3, children=2, c=2.0, max_depth=3, temperature=0.8, min_p=0.0,
            reward="self_consistency", final_rule="majority", samples=3, beam_width=2, seed=0)


def run(backend, store, control=None, question=QUESTION, **overrides):
    form = {**FORM, **overrides}
    return list(M.run_search(backend, store, question, PICKED, form["method"], form["rollouts"], form["children"],
                             form["c"], form["max_depth"], form["temperature"], form["min_p"], form["reward"],
                             form["final_rule"], form["samples"], form["beam_width"], form["seed"],
                             control or M.RunControl()))


def test_a_run_streams_the_tree_and_stores_every_event(tiny_backend, store):
    outputs = run(tiny_backend, store)
    fig, progress, final, explanation, view, slider = outputs[-1]
    sid = view["session_id"]
    assert len(view["events"]) == len(store.events(sid))
    assert [e.dumps() for e in view["events"]] == [e.dumps() for e in store.events(sid)]
    meta = store.session(sid)
    assert meta["status"] == "done" and meta["method"] == "mcts" and meta["gold"] == "37"
    assert "Answer" in final and sid in progress
    assert len(fig.data[2].x) == len(Tree.fold(view["events"]))      # one marker per node


@pytest.mark.parametrize("method", ["greedy", "sc", "bon", "beam"])
def test_every_baseline_runs_from_the_view(tiny_backend, store, method):
    *_, (fig, _, final, _, view, _) = run(tiny_backend, store, method=method)
    assert store.session(view["session_id"])["status"] == "done"
    assert fig is not None and final


def test_stop_before_the_first_model_call_keeps_a_stopped_session(tiny_backend, store):
    control = M.RunControl()
    original = control.reset
    control.reset = lambda: (original(), control.request_stop())     # Stop pressed as the run starts
    *_, (_, _, final, _, view, _) = run(tiny_backend, store, control=control, rollouts=50)
    meta = store.session(view["session_id"])
    assert meta["status"] == "stopped"
    assert isinstance(view["events"][-1], E.RunFinished) and view["events"][-1].status == "stopped"


def test_run_controls_are_per_user_copies():
    import copy
    a = M.RunControl()
    b = copy.deepcopy(a)
    a.request_stop()
    assert a.stopped() and not b.stopped()


@pytest.mark.parametrize("overrides,needle", [
    ({"rollouts": 0}, "rollouts"), ({"c": -1.0}, "c must"), ({"temperature": -0.5}, "temperature"),
    ({"method": "telepathy"}, "unknown method"),
])
def test_bad_settings_are_gr_errors_naming_the_field(tiny_backend, store, overrides, needle):
    with pytest.raises(gr.Error, match=needle):
        run(tiny_backend, store, **overrides)
    assert store.list_sessions() == []                               # nothing half-created


def test_empty_question_and_gold_reward_without_gold(tiny_backend, store):
    with pytest.raises(gr.Error, match="empty"):
        run(tiny_backend, store, question="   ")
    with pytest.raises(gr.Error, match="gold answer"):
        list(M.run_search(tiny_backend, store, "Tom has 3 pens. How many pens?", None, "mcts", 2, 2, 2.0, 3,
                          0.8, 0.0, "gold", "majority", 3, 2, 0, M.RunControl()))


def test_replay_phase_stepper_and_inspector(tiny_backend, store):
    *_, (_, _, _, _, view, _) = run(tiny_backend, store)
    events = view["events"]
    points = phase_points(events)
    k, fig, progress, final, text = M.step_phase(view, 0, direction=1)
    assert k == points[0] and "Rollout 1" in text
    k2, *_ , text2 = M.step_phase(view, k, direction=1)
    assert k2 == points[1] and k2 > k
    back, *_ = M.step_phase(view, k2, direction=-1)
    assert back == k
    again, *_ = M.step_phase(view, len(events), direction=1)        # at the end, "next" replays
    assert again == points[0]
    select_at = next(i + 1 for i, e in enumerate(events) if isinstance(e, E.Selected))
    *_, why = M.replay_to(view, select_at)
    assert "Select" in why and "chosen" in why
    html = M.inspect_node(view, 1, len(events))
    assert "node 1" in html and "ts-tok" in html
    with pytest.raises(gr.Error, match="does not exist"):
        M.inspect_node(view, 10_000, len(events))


def test_layout_keeps_subtrees_in_bands(tiny_backend, store):
    *_, (_, _, _, _, view, _) = run(tiny_backend, store, rollouts=4)
    tree = Tree.fold(view["events"])
    xs, ys = layout(tree)
    for n in tree.nodes:
        assert ys[n.id] == -n.depth
        if n.children:
            kids = [xs[c] for c in n.children]
            assert kids == sorted(kids) and min(kids) <= xs[n.id] <= max(kids)
    assert tree_figure(tree).to_json()


def test_sessions_tab_lists_opens_exports_imports_and_deletes(tiny_backend, store, tmp_path):
    *_, (_, _, _, _, view, _) = run(tiny_backend, store)
    sid = view["session_id"]
    rows = S.session_rows(store)
    assert rows[0][0] == sid and rows[0][1] == "mcts"
    assert S.session_rows(store, method="sc") == []
    assert S.session_rows(store, model="another-model") == []
    assert S.session_rows(store, model=tiny_backend.info.name)[0][0] == sid
    assert S.model_choices(store) == [("any", "any"), tiny_backend.info.name]     # "any" is a translated label
    opened, status = S.open_session(store, sid[:6])
    assert [e.dumps() for e in opened["events"]] == [e.dumps() for e in view["events"]]
    exported = S.export_session(store, sid)
    assert json.loads(open(exported).read())["events"]
    rows, status = S.import_session(store, exported, "any", "any")
    assert len(rows) == 2 and "Imported" in status
    rows, status, _ = S.delete_session(store, sid, "any", "any")
    assert len(rows) == 1
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(gr.Error, match="not a session"):
        S.import_session(store, str(bad), "any", "any")
    with pytest.raises(gr.Error):
        S.open_session(store, "nope-not-an-id")


@pytest.mark.slow
def test_served_app_runs_a_search_through_the_client(tiny_backend, tmp_path):
    from gradio_client import Client
    from app.main import LAUNCH_KWARGS, build_app
    from conftest import free_port
    port = free_port()
    store = Store(tmp_path / "served.db")
    demo = build_app(tiny_backend, store)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, **LAUNCH_KWARGS)
    client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
    try:
        out = client.predict(QUESTION, "mcts", 3, 2, 2.0, 3, 0.8, 0.0, "self_consistency", "majority", 3, 2, 0,
                             api_name="/run_search")
        plot, progress, final, explanation, timeline = out
        assert "Answer" in final and "session" in progress
        sessions = store.list_sessions()
        assert len(sessions) == 1 and sessions[0]["status"] == "done" and sessions[0]["method"] == "mcts"
    finally:
        client.close()
        demo.close(verbose=False)
        store.close()


def test_no_answer_stated_is_said_and_drawn_apart_from_a_wrong_answer():
    evs = [E.RunStarted(method="greedy", question="Q", prompt="Q\n", gold="5", config={}, seed=0, model="m"),
           E.NodeProposed(node=0, parent=-1, depth=0, action="root", text="Q\n"),
           E.NodeProposed(node=1, parent=0, depth=1, action="step", text="Tom has 5.", terminal=True, answer=None,
                          correct=False),
           E.NodeProposed(node=2, parent=0, depth=1, action="step", text="The answer is 4.", terminal=True,
                          answer="4", correct=False),
           E.FinalAnswer(answer=None, rule="greedy", path=[0, 1], correct=False, alternatives={"greedy": None})]
    tree = Tree.fold(evs)
    assert node_symbol(tree[1]) == "square-open" and node_symbol(tree[2]) == "x"
    md = final_markdown(tree)
    assert f"Answer: {NO_ANSWER}" in md and "None" not in md


# ---- issue 23: the Search view's state -------------------------------------------------------------

def chained(demo, block, event: str = "click"):
    """The functions an event of ``block`` runs, with everything chained after them (.then/.success)."""
    fns = list(demo.fns.values())
    chain = [f for f in fns if any(t[0] == block._id and t[1] == event for t in f.targets)]
    ids = {f._id for f in chain}
    for f in fns:                       # chained functions are registered after their parent
        if f.trigger_after in ids and f._id not in ids:
            chain.append(f)
            ids.add(f._id)
    return chain


def written_by(demo, block, event: str = "click") -> set[int]:
    return {o._id for f in chained(demo, block, event) for o in f.outputs}


def test_opening_a_stored_run_restores_its_question_gold_method_and_settings(tiny_backend, store):
    from app import restore
    sid = stored_run(store, "rstar", {"rollouts": 5, "c": 1.5, "max_depth": 4, "votes": 3, "cut_mode": "steps"})
    view, _ = S.open_session(store, sid)
    shown = restore.show_in_search(view, {"clicks": 4, "id": "easy-0001", "question": QUESTION, "answer": 37})
    names = ["view", "plot", "progress", "final", "explain", "timeline", "inspector", "pairs", "question", "gold",
             "picked", "gold_answer", "method", "seed", *restore.SEARCH_SETTINGS]
    out = dict(zip(names, shown))
    assert out["question"] == "What is 2 + 3?" and out["gold_answer"] == "5" and out["method"] == "rstar"
    assert out["seed"] == 7 and out["picked"]["clicks"] == 4 and out["picked"]["answer"] == "5"
    assert "Gold answer: **5**" in out["gold"]
    assert out["rollouts"]["value"] == 5 and out["c"]["value"] == 1.5 and out["cut_mode"]["value"] == "steps"
    assert out["children"] == gr.update()             # rStar has no such setting: the slider stays
    assert out["inspector"] == "" and out["view"] is view
    assert restore.tab_of(view) == "search"


@pytest.mark.parametrize("method,tab", [("leco", "leco"), ("sugar", "se"), ("se", "se"), ("mcts", "search")])
def test_leco_and_semantic_entropy_runs_open_in_their_own_tabs(tiny_backend, store, method, tab):
    from app import restore
    from engine.search import METHODS
    sid = stored_run(store, method, METHODS[method].config().to_json())
    view, _ = S.open_session(store, sid)
    assert restore.tab_of(view) == tab and restore.opened_tab(view).selected == tab
    search = restore.show_in_search(view, None)
    if tab == "search":
        return
    assert all(x is gr.skip() or x == gr.skip() for x in search)     # the Search view keeps what it shows
    shown = restore.show_in_leco(view, None) if tab == "leco" else restore.show_in_se(view, None)
    # (by identity and type: a table's value is a DataFrame, which `in` cannot compare with text)
    assert any(isinstance(x, str) and x == "What is 2 + 3?" for x in shown)
    assert any(x is view or x is view["events"] for x in shown)


def test_the_app_wires_open_to_the_form_of_every_tab(tiny_backend, store):
    from app.main import build_app
    demo = build_app(tiny_backend, store)
    t = demo.thoughtscope_tabs
    written = written_by(demo, t["sessions"]["open"])
    for tab, name in (("search", "question"), ("search", "method"), ("search", "rollouts"), ("search", "gold_answer"),
                      ("search", "inspector"), ("leco", "question"), ("leco", "heatmap"), ("se", "question"),
                      ("se", "bubbles")):
        assert t[tab][name]._id in written, f"{tab}.{name}"
    # a method chosen by hand resets depth/c/T; a stored run's method, set with its settings, must not
    assert not any(f.fn is M.method_defaults for f in chained(demo, t["search"]["method"], "change"))
    assert any(f.fn is M.method_defaults for f in chained(demo, t["search"]["method"], "input"))


def test_the_node_inspector_clears_when_a_new_run_starts(tiny_backend, store):
    from app.main import build_app
    demo = build_app(tiny_backend, store)
    search = demo.thoughtscope_tabs["search"]
    written = written_by(demo, search["run"])
    assert {search["inspector"]._id, search["pairs"]._id} <= written
    assert M.cleared_inspector() == ("", "", "")


@pytest.mark.parametrize("method,shown,hidden", [
    ("mcts", {"rollouts", "children", "c", "reward", "final_rule"},
     {"samples", "beam_width", "votes", "check", "resample", "drop_failed"}),
    ("sc", {"samples", "temperature"}, {"rollouts", "reward", "final_rule", "c", "self_eval"}),
    ("rstar", {"rollouts", "votes", "cut_mode", "discriminate"}, {"children", "reward", "samples", "reflection"}),
    ("mcts-code", {"check", "reward", "resample", "drop_failed"}, {"self_eval", "votes"}),
    ("sra-mcts", {"self_eval", "reflection"}, {"check", "reward", "final_rule"}),
])
def test_only_the_chosen_methods_settings_and_notes_are_shown(tiny_backend, method, shown, hidden):
    from app.restore import SEARCH_SETTINGS
    note, rstar, *settings = M.method_settings(tiny_backend, method)
    visible = {name for name, u in zip(SEARCH_SETTINGS, settings) if u["visible"]}
    assert shown <= visible and not hidden & visible
    assert rstar["visible"] == (method == "rstar")
    assert ("sandbox" in note) == (method == "mcts-code")


def test_the_page_opens_with_mcts_settings_only_and_redraws_them_per_method(tiny_backend, store):
    from app.main import build_app
    demo = build_app(tiny_backend, store)
    search = demo.thoughtscope_tabs["search"]
    assert search["rollouts"].visible and search["reward"].visible
    assert not search["samples"].visible and not search["self_eval"].visible
    assert "sandbox" not in search["method_note"].value
    written = written_by(demo, search["method"], "change")
    assert {search["samples"]._id, search["rstar_settings"]._id, search["method_note"]._id} <= written


def test_identical_sibling_steps_are_said_as_identical():
    from app.replay import explain
    q = "What is 2 + 3?"
    events = [E.RunStarted(method="mcts", question=q, prompt=q, gold="5", config={}, seed=0, model="tiny"),
              E.NodeProposed(node=E.ROOT, parent=E.NO_PARENT, depth=0, action="root", text=q)]
    events += [E.NodeProposed(node=i, parent=E.ROOT, depth=1, action="step", text="Step 1: 2 + 3 = 5.") for i in (1, 2, 3)]
    events.append(E.Expanded(node=E.ROOT, children=[1, 2, 3]))
    said = explain(Tree.fold(events), events[-1])
    assert "3 samples, 1 distinct" in said and "3 distinct" not in said
    events[3] = E.NodeProposed(node=2, parent=E.ROOT, depth=1, action="step", text="Step 1: 3 + 2 = 5.")
    assert "3 samples, 2 distinct" in explain(Tree.fold(events), events[-1])


def sc_events(answers, reward="self_consistency"):
    """An MCTS run whose terminals state ``answers`` in turn, each rewarded as MCTS would."""
    q = "What is 2 + 3?"
    events = [E.RunStarted(method="mcts", question=q, prompt=q, gold="5", config={"rollouts": 4, "reward": reward},
                           seed=0, model="tiny"),
              E.NodeProposed(node=E.ROOT, parent=E.NO_PARENT, depth=0, action="root", text=q)]
    for i, a in enumerate(answers, start=1):
        events.append(E.NodeProposed(node=i, parent=E.ROOT, depth=1, action="step", text=f"The answer is {a}.",
                                     terminal=True, answer=a, correct=a == "5"))
        same = sum(1 for b in answers[:i] if b == a)
        events.append(E.TerminalReward(node=i, reward=same / i, source=reward, answer=a,
                                       detail={"share": same, "of": i}))
    return events


def test_a_self_consistency_reward_says_what_it_means_where_q_is_shown(tiny_backend):
    from app.tree_figure import reward_meaning
    events = sc_events(["7", "5", "5"])
    tree = Tree.fold(events)
    said = reward_meaning(tree, 1)                 # the first answer: reward 1.0, a wrong one
    assert "not its correctness" in said and "1 of 3 answers so far" in said
    view = {"session_id": "x", "events": events}
    assert "1 of 3 answers so far" in M.inspect_node(view, 1, len(events))
    fig = tree_figure(tree)
    hover = fig.data[2].hovertext[1]
    assert "share of the answers" in hover and "1 of 3" in hover
    assert fig.data[2].marker.colorbar.title.text != "Q"
    assert reward_meaning(Tree.fold(sc_events(["7", "5"], reward="gold")), 1) == ""


def test_random_hard_gives_each_tab_its_own_first_problem(tiny_backend, store):
    from app.generate_tab import pick_random_problem
    from app.main import build_app
    from engine.demo_model.problems import load_problems
    from engine.evaluation.evaluate import HELDOUT
    hard = load_problems(HELDOUT, "hard")
    demo = build_app(tiny_backend, store)
    tabs = demo.thoughtscope_tabs
    first = {tab: pick_random_problem(hard, tabs[tab]["picked"].value, tier="hard")[0]
             for tab in ("generate", "search", "leco")}
    assert len(set(first.values())) == 3, first
    again = build_app(tiny_backend, store).thoughtscope_tabs["search"]["picked"].value
    assert pick_random_problem(hard, again, tier="hard")[0] == first["search"]     # still reproducible


def test_a_typed_timeline_value_moves_the_tree(tiny_backend, store):
    from app.main import build_app
    demo = build_app(tiny_backend, store)
    search = demo.thoughtscope_tabs["search"]
    # the slider's box sends "input" as a value is typed; Enter sends no "release"
    assert any(f.fn is M.replay_to for f in chained(demo, search["timeline"], "input"))


def test_the_forced_step_prefix_shows_in_the_node_inspector_as_in_the_tree():
    q = "What is 2 + 3?"
    tokens = [[17, " 2", -0.1, []], [18, " + 3 = 5.", -0.2, []]]
    events = [E.RunStarted(method="mcts", question=q, prompt=q, gold="5", config={}, seed=0, model="tiny"),
              E.NodeProposed(node=E.ROOT, parent=E.NO_PARENT, depth=0, action="root", text=q),
              E.NodeProposed(node=1, parent=E.ROOT, depth=1, action="step", text="Step 1: 2 + 3 = 5.", tokens=tokens)]
    shown = M.inspect_node({"session_id": "x", "events": events}, 1, len(events))
    assert "Step 1:" in shown and "ts-tok" in shown


def test_stopping_clears_once_the_stop_has_finished(tiny_backend, store):
    control = M.RunControl()
    assert M.stop_search(control) != M.STOPPING                 # nothing running: nothing said to be stopping
    original, said = control.reset, []
    control.reset = lambda: (original(), said.append(M.stop_search(control)))    # Stop pressed as the run starts
    *_, (_, progress, _, _, view, _) = run(tiny_backend, store, control=control, rollouts=50)
    assert said == [M.STOPPING]
    line = M.run_ended(view, control)
    assert line != M.STOPPING and "stopped" in line and view["session_id"] in line
    assert M.run_ended(view, control) == gr.skip()               # a run without Stop leaves its own line
    control.reset()
    control.request_stop()
    assert M.stop_settled(control, M.STOPPING) == "Stopped."
    from app.main import build_app
    demo = build_app(tiny_backend, store)
    for tab, line_box in (("search", "progress"), ("leco", "progress"), ("se", "status")):
        c = demo.thoughtscope_tabs[tab]
        assert c[line_box]._id in {o._id for f in chained(demo, c["run"]) if f.fn is not None
                                   and getattr(f.fn, "__name__", "") in ("run_ended", "stop_settled") for o in f.outputs}
