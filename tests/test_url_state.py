"""app/url_state.py: the address's view is read strictly, a link opens a run only for a user
who may see it (classroom mode), and `seek` puts the Search view at the link's moment."""

from __future__ import annotations

import gradio as gr
import pytest

from app import url_state
from app.auth import Access
from engine import events as E
from engine.search import METHODS


def test_read_keeps_good_values_and_drops_bad_ones():
    tabs = {"start", "search", "lessons"}
    assert url_state.read({"tab": "search", "session": "3f2a9c", "k": "41", "node": "7", "lesson": "mcts-phases",
                           "lesson_page": "2", "lang": "zh"}, tabs) == {
        "tab": "search", "session": "3f2a9c", "k": 41, "node": 7, "lesson": "mcts-phases", "lesson_page": 2}
    assert url_state.read({"tab": "nowhere", "session": "../etc", "k": "-1", "node": "x", "lesson_page": "0"}, tabs) == {}
    assert url_state.read(None, tabs) == {}
    assert url_state.read({"session": "a" * 201}, tabs) == {}


def test_link_writes_the_params_in_their_order():
    assert url_state.link("http://127.0.0.1:7860/", {"node": 3, "session": "ab", "k": 9, "tab": "search"}) == \
        "http://127.0.0.1:7860/?tab=search&session=ab&k=9&node=3"
    assert url_state.link("http://h:1", {}) == "http://h:1/"


def test_track_refuses_a_key_the_address_does_not_hold():
    with gr.Blocks():
        box = gr.Textbox()
        with pytest.raises(ValueError, match="key must be one of tab, session, k, node, lesson, lesson_page, lang, got 'x'"):
            url_state.track(box, "x")


def own_run(store, owner: str) -> str:
    sid = store.create_session(method="mcts", model="tiny", question="What is 2 + 3?", gold="5",
                               config=METHODS["mcts"].config().to_json(), seed=1, owner=owner)
    for ev in (E.RunStarted(method="mcts", question="What is 2 + 3?", prompt="Q", gold="5",
                            config=METHODS["mcts"].config().to_json(), seed=1, model="tiny"),
               E.NodeProposed(node=E.ROOT, parent=E.NO_PARENT, depth=0, action="root", text="What is 2 + 3?"),
               E.RunFinished(status="done")):
        store.append(sid, ev)
    store.finish(sid, status="done", message="", wall_s=0.1)
    return sid


def test_in_classroom_mode_a_link_to_a_run_opens_only_for_its_owner(store):
    access = Access(store, multi_user=True)
    sid = own_run(store, "alice")
    link = {"session": sid, "tab": "search"}
    view, wanted, shown = url_state.open_from_link(access, ["search"], gr.Request(username="alice",
                                                                                 query_params=link))
    assert view["session_id"] == sid == shown and wanted == {"session": sid, "tab": "search"}
    with pytest.raises(gr.Error):
        url_state.open_from_link(access, ["search"], gr.Request(username="bob", query_params=link))
    # no run in the link: nothing is opened, for anyone
    assert url_state.open_from_link(access, ["search"], gr.Request(username="bob", query_params={"tab": "search"}))[:2] \
        == (None, {"tab": "search"})


def test_seek_shows_the_moment_and_the_node(store):
    from engine.sample_runs import import_samples
    from engine.tree import Tree
    from app.replay import explain
    import_samples(store)
    sid = next(r["session_id"] for r in store.list_sessions() if r["method"] == "mcts")
    view = {"session_id": sid, "events": store.events(sid)}
    k = 40
    slider, plot, progress, final, words, node, inspector = url_state.seek(view, {"k": k, "node": 3})
    tree = Tree.fold(view["events"][:k])
    assert slider.value == k and node == 3
    assert words == explain(tree, view["events"][k - 1])
    assert f"<b>node 3</b> · depth {tree[3].depth}" in inspector
    assert len(plot.data[2]["x"]) == len(tree)                # the tree as it was at moment k
    # a node that does not exist yet at that moment: the moment, and the inspector left alone
    *_, node, inspector = url_state.seek(view, {"k": 2, "node": 150})
    assert isinstance(node, type(gr.skip())) and isinstance(inspector, type(gr.skip()))
    assert all(isinstance(x, type(gr.skip())) for x in url_state.seek(view, {"tab": "search"}))
