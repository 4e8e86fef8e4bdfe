"""The view in the address, in a real headless Chromium (issue 24 part 4): a link with a run, a
timeline position and a node opens at that moment; a reload keeps it; the page's moves write
the address; the Start tab's watch button opens a recorded search ready to replay.

Driven like tests/test_app_browser.py (its DevTools-pipe `Browser`); skipped without Chromium.
"""

from __future__ import annotations

import re
import time

import pytest
from conftest import free_port

from app import url_state
from app.main import LAUNCH_KWARGS, build_app
from app.replay import explain
from engine.tree import Tree
from test_app_browser import CHROMIUM, Browser  # noqa: F401  (the skip marks)
from test_app_browser import pytestmark  # noqa: F401

K, NODE = 40, 3


@pytest.fixture(scope="module")
def served(tiny_backend, tmp_path_factory):
    from engine.sample_runs import import_samples
    from engine.store import Store
    store = Store(tmp_path_factory.mktemp("url") / "runs.db")
    import_samples(store)
    sid = next(r["session_id"] for r in store.list_sessions() if r["method"] == "mcts")
    demo = build_app(tiny_backend, store)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                            **LAUNCH_KWARGS)
    yield url, store, sid
    demo.close(verbose=False)
    store.close()


@pytest.fixture
def browser(tmp_path):
    b = Browser(tmp_path / "profile")
    yield b
    b.close()


SELECTED_TAB = ("[...document.querySelectorAll('button[role=tab]')]"
                ".filter(b => b.getAttribute('aria-selected') === 'true').map(b => b.innerText.trim()).join()")
TIMELINE = "(document.querySelector('#ts-timeline input[type=number]') || {value: ''}).value"
NODE_BOX = "(document.querySelector('#ts-node-id input') || {value: ''}).value"
INSPECTOR = "(document.querySelector('#ts-inspector') || {innerText: ''}).innerText"
EXPLAIN = "(document.querySelector('#ts-search-explain') || {innerText: ''}).innerText"


def plain(markdown: str) -> str:
    """Markdown as the page shows it in innerText: no ** or backticks, one space."""
    return " ".join(re.sub(r"\*\*|`", "", markdown).split())


def see_the_moment(browser, store, sid) -> None:
    events = store.events(sid)
    tree = Tree.fold(events[:K])
    browser.wait_for(f"{SELECTED_TAB} === 'Search'", what="the Search tab")
    browser.wait_for(f"{TIMELINE} === '{K}'", what=f"the timeline at {K}")
    browser.wait_for(f"{NODE_BOX} === '{NODE}'", what=f"node {NODE} in the node box")
    browser.wait_for(f"{INSPECTOR}.includes('node {NODE} · depth {tree[NODE].depth}')", what="the inspector")
    said = plain(explain(tree, events[K - 1]))
    shown = browser.wait_for(f"{EXPLAIN}.trim()", what="the explanation")
    assert " ".join(shown.split()) == said
    # the tree at moment K, not the finished one
    browser.wait_for("(() => { const p = document.querySelector('#ts-search-plot .js-plotly-plot');"
                     f" return p && p.data && p.data[2].x.length === {len(tree)}; }})()",
                     what=f"the tree drawn with its {len(tree)} nodes at moment {K}")
    assert "Traceback" not in browser.js("document.body.innerText")


def test_a_link_opens_that_moment_and_a_reload_keeps_it(served, browser):
    url, store, sid = served
    link = url_state.link(url, {"session": sid, "k": K, "node": NODE})
    browser.goto(link)
    see_the_moment(browser, store, sid)
    assert browser.js("window.tsUrl.get('k')") == str(K) and browser.js("window.tsUrl.get('session')") == sid
    browser.send("Page.reload")
    time.sleep(1)
    see_the_moment(browser, store, sid)


def test_moving_the_view_writes_the_address(served, browser):
    url, store, sid = served
    browser.goto(url_state.link(url, {"session": sid, "k": K}))
    browser.wait_for(f"{TIMELINE} === '{K}'", what=f"the timeline at {K}")
    browser.js("[...document.querySelectorAll('button')].find(b => b.innerText.includes('next phase')).click()")
    browser.wait_for(f"window.tsUrl.get('k') !== '{K}' && window.tsUrl.get('k') === {TIMELINE}",
                     what="the address following the timeline")
    assert int(browser.js("window.tsUrl.get('k')")) > K
    browser.js("""(() => { const n = document.querySelector('#ts-node-id input'); n.value = '5';
                   n.dispatchEvent(new Event('input', {bubbles: true})); })()""")
    time.sleep(0.5)
    browser.js("document.querySelector('#ts-inspect').click()")
    browser.wait_for("window.tsUrl.get('node') === '5'", what="the inspected node in the address")
    browser.js("[...document.querySelectorAll('button[role=tab]')].find(b => b.innerText.trim() === 'Sessions')"
               ".click()")
    browser.wait_for("window.tsUrl.get('tab') === 'sessions'", what="the tab in the address")
    assert browser.js("window.tsUrl.get('session')") == sid


def test_the_start_tab_opens_a_recorded_search_ready_to_replay(served, browser):
    url, store, sid = served
    browser.goto(url)
    browser.wait_for("!!document.querySelector('#ts-start-watch')", what="the Start tab's watch button")
    assert browser.js(SELECTED_TAB) == "Start"
    browser.js("document.querySelector('#ts-start-watch').click()")
    browser.wait_for(f"{SELECTED_TAB} === 'Search'", what="the Search tab")
    from app.welcome import SAMPLE, first_phase
    import json
    watched = json.loads(SAMPLE.read_text())["session"]["session_id"]
    k = first_phase({"events": store.events(watched)})
    browser.wait_for(f"{TIMELINE} === '{k}'", what="the replay at its first phase")
    browser.wait_for(f"window.tsUrl.get('session') === '{watched}'", what="the run in the address")
    assert "Rollout 1 of" in browser.js(EXPLAIN)
