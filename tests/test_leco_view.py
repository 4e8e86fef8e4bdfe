"""The LECO tab: its callbacks on the embedded model and a real SQLite file, and the served app
through gradio_client on loopback."""

import gradio as gr
import pytest

from app import leco_tab as L
from app.mcts_tab import RunControl
from engine import events as E
from engine.store import Store

QUESTION = ("Jonas starts with 245 beads. He loses 214 beads. Then Jonas's pile of beads grows to 6 times its "
            "size. He shares the beads equally among 3 children and keeps one share. Jonas is 7 years old. He "
            "gives away 15 beads. How many beads does Jonas have now?")
PICKED = {"clicks": 1, "id": "heldout-hard-0000", "question": QUESTION, "answer": 47}


def test_a_run_draws_every_round_marks_the_cut_and_is_stored(default_backend, store):
    outs = list(L.run_leco(default_backend, store, QUESTION, PICKED, 3, 2, "top5", 0.8, 0, RunControl()))
    fig, steps, diff, summary, progress, view = outs[-1]
    events = view["events"]
    assert [e.dumps() for e in store.events(view["session_id"])] == [e.dumps() for e in events]
    meta = store.session(view["session_id"])
    assert meta["method"] == "leco" and meta["status"] == "done" and meta["gold"] == "47"
    rounds = L.rounds(events)
    cuts = [e for e in events if isinstance(e, E.StepCut)]
    assert len(fig.data) == len(rounds) >= 2                      # one heatmap per round
    for trace, r in zip(fig.data, rounds):
        assert len(trace.z) == len(r["scores"].steps) and len(trace.z[0]) == 4
        assert trace.text[0][3] == f"{r['scores'].steps[0]['confidence']:.3f}"
    assert len(fig.layout.shapes) == len(cuts)                    # the cut boxed in each cut round
    assert any(L.CUT_MARK in t for t in fig.layout.yaxis.ticktext)
    assert steps.count("ts-leco-cut") == len(cuts) and "ts-tok" in steps
    assert "round 0 → round 1" in diff
    assert "Answer" in summary and "gold 47" in summary or "✓ correct" in summary
    assert "sampled" in summary                                   # the deviation is said in the UI
    assert "written token" in fig.layout.title.text and "top-1 token" in fig.layout.title.text   # whose probability
    again = L.open_leco(store, view["session_id"][:8])
    assert again[0].to_json() == fig.to_json() and again[1] == steps and again[2] == diff


def test_colour_ranks_each_column_within_a_round():
    assert L._sureness([0.5, 1.0, None, 0.75], invert=False) == [0.0, 1.0, None, 0.5]
    assert L._sureness([0.1, 0.3], invert=True) == pytest.approx([1.0, 0.0])     # larger divergence = less sure
    assert L._sureness([0.2, 0.2], invert=False) == [1.0, 1.0]
    tiny = L._sureness([0.99999, 0.99989], invert=False)         # a 1e-4 gap is not painted as one
    assert tiny[0] == 1.0 and tiny[1] > 0.99


def test_bad_input_is_a_gr_error(default_backend, store):
    with pytest.raises(gr.Error, match="lowest"):
        list(L.run_leco(default_backend, store, QUESTION, PICKED, 3, 0, "top5", 0.8, 0, RunControl()))
    with pytest.raises(gr.Error, match="empty"):
        list(L.run_leco(default_backend, store, "  ", PICKED, 3, 2, "top5", 0.8, 0, RunControl()))
    assert store.list_sessions() == []
    sid = store.create_session(method="greedy", model="m", question="q", gold=None, config={}, seed=0)
    with pytest.raises(gr.Error, match="not LECO"):
        L.open_leco(store, sid)
    with pytest.raises(gr.Error):
        L.open_leco(store, "no-such-session")


def test_empty_views_explain_themselves():
    assert L.heatmap_figure([]) is None
    assert "Run LECO" in L.steps_html([])
    assert "diffs" in L.diff_html([])


@pytest.mark.slow
def test_served_app_runs_leco_through_the_client(default_backend, tmp_path):
    from gradio_client import Client
    from app.main import LAUNCH_KWARGS, build_app
    from conftest import free_port
    store = Store(tmp_path / "served.db")
    demo = build_app(default_backend, store)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                            **LAUNCH_KWARGS)
    client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
    try:
        heatmap, steps, diff, summary, progress = client.predict(QUESTION, 1, 2, "full", 0.8, 0,
                                                                 api_name="/run_leco")
        assert "Answer" in summary and "session" in progress and "ts-tok" in steps
        (row,) = store.list_sessions()
        assert row["method"] == "leco" and row["status"] == "done"
        reopened = client.predict(row["session_id"], api_name="/open_leco")
        assert reopened[1] == steps and reopened[2] == diff
    finally:
        client.close()
        demo.close(verbose=False)
        store.close()


def test_round_titles_do_not_overlap_with_four_or_more_rounds():
    from types import SimpleNamespace
    rs = [{"round": i, "answer": SimpleNamespace(answer="1234", correct=False)} for i in range(7)]
    for n in (1, 3, 4, 5, 7):
        n_rows, n_cols = L.panel_grid(n)
        assert n_rows * n_cols >= n and n_cols <= 4
        panel_px = (1 - 0.06 * (n_cols - 1)) / n_cols * 600     # a 600 px wide plot
        for r in rs[:n]:
            longest = max(len(line) for line in L._round_title(r, "7", n_cols >= L.NARROW_FROM).split("<br>"))
            assert longest * 7 <= panel_px, (n, longest, panel_px)   # ~7 px a character at the titles' size


def test_a_heatmap_of_many_rounds_wraps_them_onto_rows(default_backend, store):
    import dataclasses
    outs = list(L.run_leco(default_backend, store, QUESTION, PICKED, 2, 2, "top5", 0.8, 0, RunControl()))
    events = outs[-1][-1]["events"]
    kinds = (E.StepScores, E.StepCut, E.Continuation, E.RoundAnswer)
    more = [dataclasses.replace(ev, round=ev.round + 10 * k) for k in (1, 2, 3) for ev in events if isinstance(ev, kinds)]
    fig = L.heatmap_figure(events + more)
    n = len(L.rounds(events + more))
    assert n >= 4 and len(fig.layout.annotations) == n
    rows = sorted({round(a.y, 3) for a in fig.layout.annotations})
    assert len(rows) == L.panel_grid(n)[0] and all(a.font.size == 12 for a in fig.layout.annotations)
    assert all("<br>" in a.text for a in fig.layout.annotations)
