"""Generate runs are stored as sessions like every other run (issue 23): listed, filtered by
method, opened in the Search view as a two-node tree with the tokens in the node inspector."""

from app import generate_tab as G
from app import mcts_tab as M
from app import restore
from app import sessions_tab as S
from engine import events as E
from engine.tree import Tree

QUESTION = "Mia has 23 apples. She buys 14 more apples. How many apples does Mia have now?"
PICKED = {"clicks": 1, "id": "easy-0001", "question": QUESTION, "answer": 37}


def test_a_generation_is_stored_as_a_session_and_opens_in_the_search_view(tiny_backend, store):
    html, summary = G.run_generation(tiny_backend, QUESTION, 0.0, 0, 1.0, 0.0, "transformers", 12, 5, PICKED,
                                     G.RunControl(), store=store)
    [row] = store.list_sessions()
    assert row["method"] == "generate" and row["status"] == "done" and row["gold"] == "37"
    assert row["session_id"] in summary
    assert S.session_rows(store, method="generate")[0][0] == row["session_id"]
    view, _ = S.open_session(store, row["session_id"])
    tree = Tree.fold(view["events"])
    assert len(tree) == 2 and tree[1].terminal and tree.final.rule == "the one sample"
    assert tree.finished.generated_tokens == len(tree[1].tokens) > 0
    assert view["events"][0].config["max_new_tokens"] == 12 and view["events"][0].seed == 5
    assert "ts-tok" in M.inspect_node(view, 1, len(view["events"]))
    shown = restore.show_in_search(view, None)
    assert QUESTION in shown and restore.tab_of(view) == "search"


def test_a_stopped_generation_is_stored_as_stopped(tiny_backend, store):
    control = G.RunControl()
    original = control.reset
    control.reset = lambda: (original(), control.request_stop())
    _, summary = G.run_generation(tiny_backend, QUESTION, 0.0, 0, 1.0, 0.0, "transformers", 12, 0, None, control,
                                  store=store)
    [row] = store.list_sessions()
    assert summary.startswith("Stopped.") and row["status"] == "stopped"
    assert isinstance(store.events(row["session_id"])[-1], E.RunFinished)


def test_the_app_stores_generate_runs_and_lists_them(tiny_backend, store):
    from app.main import build_app
    demo = build_app(tiny_backend, store)
    fns = {f.api_name: f for f in demo.fns.values()}
    fns["generate"].fn(QUESTION, 0.0, 0, 1.0, 0.0, "transformers", 8, 0, PICKED, G.RunControl())
    assert [r["method"] for r in store.list_sessions()] == ["generate"]
    assert "generate" in demo.thoughtscope_tabs["sessions"]["method"].choices[-1]
