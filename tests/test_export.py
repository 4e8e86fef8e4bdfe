"""Exports for a slide or an email: standalone HTML (opened from disk and stepped in headless
Chromium, no server), SVG and PNG of a run's figures, GraphML and JSON, by the CLI and the
Sessions tab's callback. Each method's own views in the export: tests/test_export_views.py.

The recorded sample runs (sample_runs/) are the sessions: real MCTS, rStar, LECO runs of the
embedded model. The HTML page's fold is checked against `engine.tree.Tree.fold` at several
timeline positions, so the page's replay cannot drift from the app's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.export_html import session_html
from engine.tree import Tree

SAMPLES = Path(__file__).resolve().parents[1] / "sample_runs"
MCTS_SAMPLE = SAMPLES / "mcts-fixes-greedy-heldout-hard-0023-mcts.json"
LECO_SAMPLE = SAMPLES / "leco-fixes-error-heldout-hard-0061-leco.json"
CHROMIUM = "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed")


@pytest.fixture
def mcts_sid(store) -> str:
    return store.import_session(json.loads(MCTS_SAMPLE.read_text()))


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_html_is_one_file_with_the_events_and_plotly_inline():
    data = json.loads(MCTS_SAMPLE.read_text())
    page = session_html(data)
    assert "<script src" not in page and "<link" not in page        # nothing to fetch
    assert page.count("Plotly.react(") == 1
    events = page.split("const EVENTS = ", 1)[1].split(";\n", 1)[0]
    assert json.loads(events.replace("<\\/", "</")) == data["events"]


def test_html_survives_a_question_that_closes_the_script():
    data = json.loads(MCTS_SAMPLE.read_text())
    data["session"]["question"] = "What is </script><script>alert(1)</script> %EVENTS%?"
    page = session_html(data)
    assert "</script><script>alert(1)" not in page
    session = page.split("const SESSION = ", 1)[1].split(";\n", 1)[0]
    assert json.loads(session.replace("<\\/", "</"))["question"] == data["session"]["question"]


def test_html_refuses_what_is_not_a_session_export():
    with pytest.raises(ValueError, match="export must be"):
        session_html({"events": "nope"})


@needs_chromium
def test_exported_html_opens_from_disk_and_steps_its_timeline(store, mcts_sid, tmp_path):
    from test_app_browser import Browser
    out = tmp_path / "run.html"
    r = cli("export", "--db", str(store.path), "--session", mcts_sid[:6], "--format", "html", "--out", str(out))
    assert r.returncode == 0, r.stderr
    events = store.events(mcts_sid)
    b = Browser(tmp_path / "profile")
    try:
        b.goto(out.as_uri())                                   # file://, and no server is running
        b.wait_for("window.tsState && document.querySelectorAll('#ts-tree .point').length > 0",
                   what="the tree drawn")

        def check(k: int) -> None:
            tree = Tree.fold(events[:k])
            state = b.js("(() => { const t = window.tsState.tree; return {k: window.tsState.k, "
                         "nodes: t.nodes.length, visits: t.nodes.map(n => n.visits), "
                         "values: t.nodes.map(n => n.value)}; })()")
            assert state["k"] == k
            assert state["nodes"] == len(tree)
            assert state["visits"] == [n.visits for n in tree.nodes]
            assert state["values"] == pytest.approx([n.value for n in tree.nodes], abs=1e-9)
            status = b.js("document.getElementById('ts-status').textContent")
            assert status.startswith(f"event {k} of {len(events)}") and f"{len(tree)} nodes" in status
            assert b.js("document.querySelectorAll('#ts-tree .scatterlayer .trace:last-child .point').length") \
                == len(tree)

        check(len(events))
        b.js("document.getElementById('ts-prev').click()")
        check(len(events) - 1)
        b.js("(() => { const s = document.getElementById('ts-step'); s.value = 40;"
             " s.dispatchEvent(new Event('input')); })()")
        check(40)
        for _ in range(3):
            b.js("document.getElementById('ts-next').click()")
        check(43)
        # node details at this moment: the node's visits and its last UCT row, as the tree has them
        tree = Tree.fold(events[:43])
        node = max((n for n in tree.nodes if n.last_selection and n.last_selection.get("uct") is not None),
                   key=lambda n: n.id)
        b.js(f"window.tsShowNode({node.id})")
        details = b.js("document.getElementById('ts-details').textContent")
        assert details.startswith(f"node {node.id} · {node.action} · depth {node.depth}")
        assert f"visits N={node.visits} " in details
        assert f"UCT={node.last_selection['uct']:.4f}" in details
        # nothing was fetched from a network: every resource the page loaded is the file itself
        urls = b.js("performance.getEntriesByType('resource').map(e => e.name)")
        assert all(u.startswith("file:") for u in urls), urls
        assert b.js("document.body.innerText").count("Traceback") == 0
    finally:
        b.close()


def test_cli_json_and_graphml(store, mcts_sid, tmp_path):
    import networkx as nx
    r = cli("export", "--db", str(store.path), "--session", mcts_sid, "--format", "json",
            "--out", str(tmp_path / "s.json"))
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "s.json").read_text())["events"] == store.export_session(mcts_sid)["events"]
    r = cli("sessions", "export", mcts_sid, "--db", str(store.path), "--format", "graphml",
            "--out", str(tmp_path / "s.graphml"))
    assert r.returncode == 0, r.stderr
    g = nx.read_graphml(tmp_path / "s.graphml")
    assert g.number_of_nodes() == len(store.tree(mcts_sid))


def test_cli_refuses_bad_exports_in_one_line(store, mcts_sid, tmp_path):
    r = cli("export", "--db", str(store.path), "--session", "ffffffff", "--format", "html", "--out",
            str(tmp_path / "x.html"))
    assert r.returncode == 2 and r.stderr.strip() == f"thoughtscope: error: no session 'ffffffff' in {store.path}"
    r = cli("export", "--db", str(store.path), "--session", mcts_sid, "--format", "svg")
    assert r.returncode == 2 and r.stderr.strip() == "thoughtscope: error: --format svg needs --out FILE"
    r = cli("export", "--db", str(store.path), "--session", mcts_sid, "--format", "pdf", "--out", "x")
    assert r.returncode == 2 and "invalid choice: 'pdf'" in r.stderr
    r = cli("export", "--db", str(store.path), "--session", mcts_sid, "--format", "html", "--lang", "fr", "--out", "x")
    assert r.returncode == 2 and "invalid choice: 'fr'" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cli("export", "--db", str(store.path), "--session", mcts_sid, "--format", "html",
            "--out", str(tmp_path / "no-such-folder" / "x.html"))
    assert r.returncode == 2 and r.stderr.startswith("thoughtscope: error: cannot write") \
        and len(r.stderr.strip().splitlines()) == 1


@needs_chromium
def test_svg_and_png_of_a_tree_and_a_leco_heatmap(store, mcts_sid, tmp_path):
    from app.export_figures import write_export
    leco = store.import_session(json.loads(LECO_SAMPLE.read_text()))
    paths = write_export(store, mcts_sid, "svg", tmp_path / "run.svg")
    assert paths == [tmp_path / "run-tree.svg"]                # an MCTS run's view draws one figure: the tree
    svg = paths[0].read_text()
    assert svg.startswith("<svg") and "Q (share of answers)" in svg
    # one marker per node (the nodes trace carries node ids as customdata): the tree's node count
    assert svg.count('class="point plotly-customdata"') == len(store.tree(mcts_sid))
    paths = write_export(store, leco, "png", tmp_path / "run.png")
    assert paths == [tmp_path / "run-leco-heatmap.png"]          # LECO's tab draws no tree
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image
    with Image.open(paths[0]) as im:
        assert im.size[0] >= 1200                            # slide size at 2x: sharp on a projector


def test_sessions_tab_exports_each_format_and_respects_owners(store, tmp_path):
    import gradio as gr

    from app.auth import Access
    from app.sessions_tab import export_as
    own = store.import_session({**json.loads(MCTS_SAMPLE.read_text())})
    path = Path(export_as(store, own[:5], "html"))
    assert path.suffix == ".html" and "const EVENTS" in path.read_text()
    assert Path(export_as(store, own, "graphml")).read_text().startswith("<?xml")
    with pytest.raises(gr.Error, match="export format must be one of"):
        export_as(store, own, "pdf")
    with pytest.raises(gr.Error, match="select a session"):
        export_as(store, "", "html")
    # classroom mode: another student's run is "no session", word for word
    sid = store.create_session(method="mcts", model="tiny", question="q", gold=None, config={}, seed=1,
                               owner="alice")
    access = Access(store, multi_user=True)
    with pytest.raises(gr.Error, match=f"no session '{sid}'"):
        export_as(access, sid, "html", request=gr.Request(username="bob"))
    assert Path(export_as(access, sid, "json", request=gr.Request(username="alice"))).exists()


@needs_chromium
def test_exported_html_speaks_the_readers_language(store, mcts_sid, tmp_path):
    from test_app_browser import Browser

    from app import i18n
    from app.export_figures import write_export
    with i18n.using("zh"):
        out, = write_export(store, mcts_sid, "html", tmp_path / "zh.html")
    n = len(store.events(mcts_sid))
    b = Browser(tmp_path / "profile")
    try:
        b.goto(out.as_uri())
        b.wait_for("window.tsState && document.getElementById('ts-status').textContent", what="the status line")
        assert b.js("document.getElementById('ts-status').textContent").startswith(f"第 {n} 个事件，共 {n} 个")
        assert b.js("document.getElementById('ts-play').textContent") == "播放"
        b.js("window.tsShowNode(1)")
        assert b.js("document.getElementById('ts-details').textContent").startswith("节点 1 · ")
    finally:
        b.close()
