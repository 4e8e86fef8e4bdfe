"""The Semantic entropy tab: callbacks as plain functions on the embedded model and a real SQLite
file, then the served app driven through gradio_client on loopback."""

from __future__ import annotations

import gradio as gr
import pytest
from conftest import free_port

from app import se_tab as T
from app.main import LAUNCH_KWARGS, build_app
from engine import events as E

QUESTION = "Mia has 23 apples. She buys 14 more apples. How many apples does Mia have now?"
PICKED = {"clicks": 1, "id": "easy-0001", "question": QUESTION, "answer": 37}
FORM = dict(model_choice="loaded", method="sugar", samples=4, temperature=1.0, judge="auto", nli_model="",
            mode="strict", low=0.5, high=1.2, route_on="rao", policy="adaptive", passages=1, corpus="", seed=0)


def run(backend, store, **overrides):
    f = {**FORM, **overrides}
    return list(T.run_se(backend, store, QUESTION, PICKED, f["model_choice"], f["method"], f["samples"],
                         f["temperature"], f["judge"], f["nli_model"], f["mode"], f["low"], f["high"], f["route_on"],
                         f["policy"], f["passages"], f["corpus"], f["seed"]))


@pytest.mark.slow
def test_a_run_shows_clusters_numbers_routing_and_is_stored(default_backend, store):
    bubbles, numbers, bar, retrieval, table, events, status = run(default_backend, store)[-1]
    clusters = next(e for e in events if isinstance(e, E.ClustersFormed) and e.mode == "strict")
    marker = bubbles.data[-1]
    assert len(marker.x) == len(clusters.clusters)                             # one bubble per cluster
    sizes = list(marker.marker.size)
    biggest = max(range(len(clusters.mass)), key=clusters.mass.__getitem__)
    assert sizes.index(max(sizes)) == biggest                                  # size follows the mass
    for e in ("discrete", "likelihood-weighted", "Monte-Carlo", "naive"):
        assert e in numbers
    assert "Judge:" in numbers and "math-verify" in numbers
    assert "model's own distribution" in numbers and "top-k 50" in numbers    # the reference's differs: said
    routed = next(e for e in events if isinstance(e, E.RetrievalRouted))
    assert T.DECISION_WORDS[routed.decision] in bar.layout.title.text
    assert "Answer without retrieval" in retrieval and "Answer with retrieval" in retrieval
    assert len(table) == len(clusters.comparisons)
    sid = status.split("`")[1]
    assert [e.dumps() for e in store.events(sid)] == [e.dumps() for e in events]
    assert store.session(sid)["status"] == "done" and store.session(sid)["gold"] == "37"
    assert f"· {default_backend.info.name} ·" in status       # the model that ran, whatever the header swapped


@pytest.mark.slow
def test_the_toggle_redraws_from_the_events_without_the_model(default_backend, store):
    *_, (_, _, _, _, _, events, _) = run(default_backend, store, method="se")
    strict = T.redraw(events, "strict", 0.5, 1.2, "rao")
    lenient = T.redraw(events, "lenient", 0.5, 1.2, "rao")
    assert "(strict)" in strict[1] and "(lenient)" in lenient[1]
    assert "strict" in strict[0].layout.title.text and "lenient" in lenient[0].layout.title.text
    assert "most probable cluster" in strict[3]
    empty = T.redraw([], "strict", 0.5, 1.2, "rao")
    assert empty[:4] == (None, "", None, "") and empty[4].empty       # an empty table, headers kept


def test_the_threshold_bar_marks_the_value_in_its_band():
    ent = E.EntropyMeasured(mode="strict", discrete=1.0, rao=0.8, mc2023=0.1, naive=2.0)
    routed = E.RetrievalRouted(decision="single", policy="adaptive", estimator="rao", mode="strict", value=0.8,
                               low=0.5, high=1.2)
    view = {"routed": routed, "entropy": ent}
    fig = T.threshold_figure(view, 0.5, 1.2, "rao")
    line = next(s for s in fig.layout.shapes if s.type == "line")
    assert line.x0 == 0.8 and "single-step retrieval" in fig.layout.title.text
    bands = [(s.x0, s.x1) for s in fig.layout.shapes if s.type == "rect"]
    assert (0.5, 1.2) in bands


def test_bad_settings_are_gr_errors(default_backend, store):
    with pytest.raises(gr.Error, match="high must be at least low"):
        run(default_backend, store, low=2.0, high=1.0)
    with pytest.raises(gr.Error, match="nli_model must be"):
        run(default_backend, store, judge="nli")
    with pytest.raises(gr.Error, match="does not exist"):
        run(default_backend, store, corpus="/nonexistent/folder", policy="always")


@pytest.mark.slow
def test_served_tab_runs_and_toggles_through_the_client(tiny_backend):
    from gradio_client import Client
    demo = build_app(tiny_backend)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                            **LAUNCH_KWARGS)
    client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
    try:
        bubbles, numbers, bar, retrieval, table, status = client.predict(
            QUESTION, "loaded", "se", 3, 1.0, "auto", "", "strict", 0.5, 1.2, "rao", "adaptive", 1, "", 0,
            api_name="/run_se")
        assert "3 samples" in numbers and "(strict)" in numbers and status.startswith("done")
        _, lenient, *_ = client.predict("lenient", 0.5, 1.2, "rao", api_name="/se_redraw")
        assert "(lenient)" in lenient
        with pytest.raises(Exception, match=r"Samples N must be from 2 to 20, got 1"):    # the slider's own bound
            client.predict(QUESTION, "loaded", "se", 1, 1.0, "auto", "", "strict", 0.5, 1.2, "rao", "adaptive", 1,
                           "", 0, api_name="/run_se")
    finally:
        client.close()
        demo.close(verbose=False)


@pytest.mark.parametrize("method", ["se", "sugar"])
def test_se_and_sugar_also_run_from_the_search_tab(tiny_backend, store, method):
    from app import mcts_tab as M
    outputs = list(M.run_search(tiny_backend, store, QUESTION, PICKED, method, 3, 2, 2.0, 3, 0.8, 0.0,
                                "self_consistency", "majority", 3, 2, 0, M.RunControl()))
    fig, progress, final, explanation, view, slider = outputs[-1]
    assert store.session(view["session_id"])["status"] == "done"
    assert fig is not None and final
