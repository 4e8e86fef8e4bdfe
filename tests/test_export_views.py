"""Exports of every method's own view (issue 24 part 6): a real LECO, SUGAR, rStar and Generate
run of the embedded model, stored in a real SQLite file, exported as one HTML file that headless
Chromium opens from disk (no server) and as SVG/PNG files, one per figure.

What is checked comes from the stored events, not from the view code: the heatmap has one
panel per LECO round with one row per scored step and a box per cut; the cluster bubbles are
as many as the clusters; each consistency bar is its candidate's agreeing completions; the
generation's pool sizes are the stored alternatives at or above p_max x min_p.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

from app.export_figures import write_export
from app.export_views import pool_cutoff
from app.recording import Recording
from engine import events as E
from engine import sampling as S
from engine.search import METHODS
from engine.store import Store

CHROMIUM = "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed")
HARD = ("Jonas starts with 245 beads. He loses 214 beads. Then Jonas's pile of beads grows to 6 times its size. "
        "He shares the beads equally among 3 children and keeps one share. Jonas is 7 years old. He gives away "
        "15 beads. How many beads does Jonas have now?")
EASY = "Mia has 23 apples. She buys 14 more apples. How many apples does Mia have now?"
RUNS = {   # small enough to run in seconds on one CPU core
    "leco": (HARD, 47, dict(max_rounds=3, lowest=2, token_probs="top5", temperature=0.8)),
    "sugar": (HARD, 47, dict(samples=5, temperature=1.0, low=0.5, high=1.2, route_on="rao", passages=1)),
    "rstar": (HARD, 47, dict(rollouts=4, max_depth=5, one_step_thoughts=2, subquestions=2, votes=3, final_votes=3)),
}
GENERATE_CONFIG = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.1, "order": "transformers",
                   "max_new_tokens": 200}


@pytest.fixture(scope="module")
def runs(default_backend, tmp_path_factory):
    """{method: session id} in one SQLite file: each method run through the real engine and stored."""
    from app.generate_record import generation_events, record_generation
    from engine.evaluation.evaluate import SOLUTION_STOP
    torch.set_num_threads(1)
    store = Store(tmp_path_factory.mktemp("export-views") / "runs.db")
    sids = {}
    for method, (question, gold, values) in RUNS.items():
        cfg = METHODS[method].config(**values)
        rec = Recording(store, default_backend, method, question, gold, cfg, 0)
        for _ in rec.follow(METHODS[method].run(question, default_backend, config=cfg, seed=0, gold=gold)):
            pass
        sids[method] = rec.sid
    prompt = default_backend.render_prompt(EASY)
    sampling = S.SamplingConfig(temperature=GENERATE_CONFIG["temperature"], min_p=GENERATE_CONFIG["min_p"])
    gen = default_backend.generate([prompt], sampling=sampling, stop=SOLUTION_STOP, max_new_tokens=200, seed=0)[0]
    sids["generate"] = record_generation(store, generation_events(default_backend, EASY, prompt, 37, GENERATE_CONFIG,
                                                                  0, gen), 0.1)
    yield store, sids
    store.close()


def figure_js(name: str, expr: str) -> str:
    """``expr`` over the drawn figure ``name`` (``gd``: its div, with plotly's decoded ``_fullData``)."""
    return f"(() => {{ const gd = document.getElementById('ts-fig-{name}'); return {expr}; }})()"


@needs_chromium
def test_each_methods_view_is_in_the_exported_html_with_its_data(runs, tmp_path):
    from test_app_browser import Browser
    store, sids = runs
    pages = {m: write_export(store, sid, "html", tmp_path / f"{m}.html", lang="en")[0] for m, sid in sids.items()}
    events = {m: store.events(sid) for m, sid in sids.items()}
    b = Browser(tmp_path / "profile")
    try:
        def open_page(method: str) -> None:
            b.goto(pages[method].as_uri())                 # file://, no server
            b.wait_for("window.tsFigures && window.tsFigures.length > 0", what=f"{method}'s figures drawn")
            assert b.js("performance.getEntriesByType('resource').every(e => e.name.startsWith('file:'))")

        # LECO: one heatmap panel per round, one row per scored step, the cut boxed; the rounds table
        open_page("leco")
        scored = [ev for ev in events["leco"] if isinstance(ev, E.StepScores)]
        cuts = [ev for ev in events["leco"] if isinstance(ev, E.StepCut) and ev.node is not None]
        assert len(scored) >= 2 and cuts
        assert b.js(figure_js("leco-heatmap", "gd._fullData.map(d => d.z.length)")) == [len(s.steps) for s in scored]
        assert b.js(figure_js("leco-heatmap", "gd.querySelectorAll('.heatmaplayer .hm').length")) == len(scored)
        assert b.js(figure_js("leco-heatmap", "(gd.layout.shapes || []).length")) == len(cuts)
        text = b.js("document.querySelector('.ts-view[data-view=leco]').innerText")
        assert "avg: the mean probability of the step's tokens" in text          # what the numbers mean
        assert b.js("document.querySelectorAll('.ts-view[data-view=leco] .ts-leco-cut').length") == len(cuts)
        rows = b.js("[...document.querySelectorAll('.ts-view[data-view=leco] table tbody tr')].map(r => r.cells[0].innerText)")
        assert rows == [str(s.round) for s in scored]

        # SUGAR: as many bubbles as clusters, the four entropies with how to read them, the routing
        open_page("sugar")
        strict = next(ev for ev in events["sugar"] if isinstance(ev, E.ClustersFormed) and ev.mode == "strict")
        entropy = next(ev for ev in events["sugar"] if isinstance(ev, E.EntropyMeasured) and ev.mode == "strict")
        routed = next(ev for ev in events["sugar"] if isinstance(ev, E.RetrievalRouted))
        assert len(strict.clusters) >= 2
        assert b.js(figure_js("se-clusters", "gd.querySelectorAll('.scatterlayer .trace:last-child .point').length")) \
            == len(strict.clusters)
        assert b.js(figure_js("se-clusters", "gd.layout.title.text")).startswith(f"{len(strict.clusters)} clusters")
        text = b.js("document.querySelector('.ts-view[data-view=se]').innerText")
        n = len([ev for ev in events["sugar"] if isinstance(ev, E.NodeProposed) and ev.action == "sample"])
        assert f"{entropy.mc2023:.3f}" in text and f"{entropy.rao:.3f}" in text
        assert f"−ln {n} = −{math.log(n):.3f}" in text                              # why mc2023 can be < 0
        assert "se-routing" in b.js("window.tsFigures") and routed.decision in ("none", "single", "multi")
        judged = b.js("document.querySelectorAll('.ts-view[data-view=se] table')[1].tBodies[0].rows.length")
        assert judged == len(strict.comparisons)

        # rStar: one bar per judged candidate, its length the completions that agree; the candidates table
        open_page("rstar")
        verdicts = [ev for ev in events["rstar"] if isinstance(ev, E.DiscriminatorVerdict)]
        table = next(ev for ev in events["rstar"] if isinstance(ev, E.CandidateTable))
        assert verdicts
        assert b.js(figure_js("rstar-consistency", "Array.from(gd._fullData[1].x)")) == [v.agree for v in verdicts]
        assert b.js(figure_js("rstar-consistency", "Array.from(gd._fullData[2].x)")) == [v.needed for v in verdicts]
        assert b.js("document.querySelector('.ts-view[data-view=rstar] table').tBodies[0].rows.length") == len(table.rows)
        assert "explore = c·√(ln N_parent / N)" in b.js("document.querySelector('.ts-view[data-view=answer]').innerText")

        # Generate: the pool of each position is the stored alternatives at or above p_max × min_p (T = 1)
        open_page("generate")
        node = next(ev for ev in events["generate"] if isinstance(ev, E.NodeProposed) and ev.tokens)
        expect = [max(1, sum(1 for _, lp in tok[3] if math.exp(lp) >= 0.1 * math.exp(tok[3][0][1]))) for tok in node.tokens]
        assert b.js(figure_js("sampling-pools", "Array.from(gd._fullData[3].y)")) == expect
        assert b.js("document.querySelectorAll('.ts-view[data-view=generate] .ts-tok').length") == len(node.tokens)
        assert b.js("document.body.innerText").count("Traceback") == 0
    finally:
        b.close()


@needs_chromium
def test_a_chinese_export_says_its_views_in_chinese(runs, tmp_path):
    from test_app_browser import Browser
    store, sids = runs
    out = write_export(store, sids["leco"], "html", tmp_path / "leco-zh.html", lang="zh")[0]
    own = json.loads(Path("app/locales/export_zh.json").read_text(encoding="utf-8"))
    b = Browser(tmp_path / "profile")
    try:
        b.goto(out.as_uri())
        b.wait_for("window.tsFigures && window.tsFigures.length > 0", what="the figures drawn")
        assert b.js("document.documentElement.lang") == "zh"
        assert b.js("document.querySelector('.ts-view[data-view=leco] h2').textContent") \
            == own["LECO: step confidence, the cut and the rethink"]
        assert b.js("document.getElementById('ts-views-note').textContent").startswith("下面是该方法自己的视图")
        assert b.js("document.getElementById('ts-status').textContent").startswith("第 ")
        assert "步骤置信度" in b.js(figure_js("leco-heatmap", "gd.layout.title.text"))
    finally:
        b.close()


@needs_chromium
def test_every_figure_becomes_its_own_svg_or_png(runs, tmp_path, capsys):
    from PIL import Image

    from app.sessions_tab import export_as
    store, sids = runs
    expected = {"leco": ["leco-heatmap"], "sugar": ["se-clusters", "se-routing", "se-clusters-lenient"],
                "generate": ["tree", "sampling-pools"]}
    for method, names in expected.items():
        paths = write_export(store, sids[method], "svg", tmp_path / f"{method}.svg")
        assert [p.name for p in paths] == [f"{method}-{n}.svg" for n in names]
        for p in paths:
            assert ET.parse(p).getroot().tag == "{http://www.w3.org/2000/svg}svg"
    # the Sessions tab's export button: every figure, one download each
    files = export_as(store, sids["rstar"], "svg")
    assert [Path(f).name for f in files] == [f"session-{sids['rstar']}-{n}.svg" for n in ("tree", "rstar-consistency")]
    # the CLI: png, into a folder, in Chinese
    folder = tmp_path / "slides"
    folder.mkdir()
    from engine.cli import main                      # in this process: a subprocess would import gradio again
    assert main(["export", "--db", str(store.path), "--session", sids["rstar"][:8], "--format", "png",
                 "--out", str(folder), "--lang", "zh"]) == 0
    written = re.findall(r"wrote (\S+)", capsys.readouterr().err)
    assert [Path(w).name for w in written] == [f"session-{sids['rstar']}-{n}.png" for n in ("tree", "rstar-consistency")]
    for w in written:
        with Image.open(w) as im:
            im.verify()
            assert im.format == "PNG" and im.size[0] >= 2000            # 1200 px at 2x


@pytest.mark.parametrize("order", sorted(S.ORDERS))
@pytest.mark.parametrize("temp", [0.5, 1.0, 2.0])
def test_the_pool_cut_matches_the_samplers_min_p_stage(order, temp):
    """min-p's pool from the model's own probabilities alone (what a run stores) is the pool the
    sampler chain keeps, whichever side of min-p the temperature is applied."""
    logits = torch.tensor([3.0, 2.2, 1.9, 1.0, 0.3, -0.5, -2.0])     # (vocab,)
    cfg = S.SamplingConfig(temperature=temp, min_p=0.2, order=S.ORDERS[order])
    kept = torch.isfinite(S.apply_chain(logits, cfg)).tolist()
    p = logits.softmax(-1)
    cut = pool_cutoff({"temperature": temp, "min_p": 0.2, "order": order})
    assert [bool(x >= p.max() * cut) for x in p] == kept
    assert sum(kept) > 1 and not all(kept)                              # a real cut, not all or nothing
    assert pool_cutoff({"temperature": temp, "min_p": 0.0, "order": order}) is None
    assert pool_cutoff({"temperature": 0, "min_p": 0.2, "order": order}) is None     # greedy


def test_every_word_of_the_exports_has_chinese():
    """The exports' own words (app/export_words.py `say`, the CLI's `_xt`, the page's LABELS) each
    have a Chinese entry, in export_zh.json or the app's catalogue, with the same {fields}."""
    import string

    from app import i18n
    from app.export_words import catalogue
    from app.export_views import JUDGE_HEADERS
    from engine.cli import sessions
    from engine.export_html import LABELS
    root = Path(__file__).resolve().parents[1]
    keys = set(LABELS.values()) | {sessions.FORMAT_HELP, sessions.OUT_HELP, sessions.LANG_HELP} | set(JUDGE_HEADERS)
    for name in ("app/export_views.py", "app/export_figures.py"):
        tree = ast.parse((root / name).read_text(encoding="utf-8"))
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "say"]
        keys |= {c.args[0].value for c in calls if isinstance(c.args[0], ast.Constant)}   # the rest: LABELS, JUDGE_HEADERS
    own, app_zh = catalogue(), i18n.catalogue("zh")
    fields = lambda s: sorted(f for _, f, _, _ in string.Formatter().parse(s) if f)  # noqa: E731
    missing = sorted(k for k in keys if k not in own and k not in app_zh)
    assert missing == []
    for k, v in own.items():
        assert v.strip() and fields(k) == fields(v), k


def test_the_sessions_tab_exports_in_the_pages_language(runs):
    """The app passes its UI language: the request's ``ts_lang`` cookie (the header switch) decides."""
    import gradio as gr
    from gradio.context import LocalContext

    from app.export_words import catalogue
    from app.sessions_tab import export_as
    store, sids = runs
    for lang, title in (("zh", catalogue()["LECO: step confidence, the cut and the rethink"]),
                        ("en", "LECO: step confidence, the cut and the rethink")):
        token = LocalContext.request.set(gr.Request(headers={"cookie": f"ts_lang={lang}"}))
        try:
            page = Path(export_as(store, sids["leco"], "html")).read_text(encoding="utf-8")
        finally:
            LocalContext.request.reset(token)
        assert f'<html lang="{lang}">' in page and f"<h2>{title}</h2>" in page
