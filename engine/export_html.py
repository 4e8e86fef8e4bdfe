"""One stored session as ONE standalone HTML file: the tree, its timeline replay, node details.

The file works offline in any browser with no server: plotly.js is inlined (the copy the
``plotly`` package ships), the session's events are inlined as JSON, and a small script folds
the first k of them into the tree for the timeline, as `engine.tree.Tree.apply` does. The
script folds only what the tree view needs (`node_proposed`, `backprop`, `terminal_reward`,
`selected`, `iteration_started`, `final_answer`, `run_finished`); every other event still
counts as a timeline step and is named in the status line. The layout is the app's tidy
layout (app/tree_figure.py: leaves left to right in depth-first order, a parent midway
between its first and last child); colour is Q, size is visits, the chosen (or, before the
answer, the last backpropagated) path is drawn thick.

Element ids are part of the contract that tests/test_export.py drives in headless Chromium:
``ts-step`` (the range input), ``ts-prev``, ``ts-next``, ``ts-status``, ``ts-details``,
``ts-tree``; ``window.tsShowNode(id)`` fills the details as a click on the node does.

Below the tree come the method's own views (``views``: LECO's heatmap, rounds and rethinks;
semantic entropy's clusters, numbers and routing; rStar's discriminator; a generation's tokens
and min-p pools), as the app builds them (app/export_views.py): each a ``<section
class="ts-view" data-view=KEY>`` of static HTML and plotly figures, drawn once at the end of the
run (the timeline steps the tree only). Each figure is a ``<div class="ts-fig"
data-figure=NAME>``; ``window.tsFigures`` lists the names drawn.

Not here: the Gradio views, the app's own figures (app/), SVG/PNG rendering
(engine/export_images.py). The file is about 4.7 MB, most of it plotly.js, inlined once.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path


# The page's words, English; `session_html(labels=...)` replaces any of them (the app passes its
# translations: app/export_figures.py). ``{name}`` fields are filled in by the page's script.
LABELS = {
    "prev": "◀ step", "next": "step ▶", "play": "play", "pause": "pause",
    "click": "Click a node to see its details.",
    "event": "event {k} of {n}", "nodes": "{n} nodes", "iteration": "iteration {i} of {n}",
    "root": "root N={n}", "final": "answer {answer} ({rule})",
    "node": "node {id} · {action} · depth {depth} · parent {parent}",
    "stats": "visits N={n} · value {value} · Q={q}", "reward": "reward {r}",
    "answer": "answer {answer} · correct {correct}",
    "selection": "last selection: N={n} Q={q} explore={explore} UCT={uct} (c={c}, parent N={pn}, {rule})",
    "method": "method", "model": "model", "status": "status", "seed": "seed", "gold": "gold",
    "correct": "correct", "answer_head": "answer",
    "views": "Below: the method's own view at the end of the run (the timeline above steps the tree only).",
}


class ExportError(Exception):
    """An export that cannot be made here (a missing renderer, an unwritable file)."""


def _script_json(data) -> str:
    # "</" inside a <script> would end it early; "<\/" means the same in JSON
    return json.dumps(data, ensure_ascii=False, sort_keys=True).replace("</", "<\\/")


def _views_html(views) -> tuple[str, dict, str]:
    """(the sections' HTML, {figure name: figure dict}, their CSS) of ``views``: each a dict with
    ``key``, ``title``, ``blocks`` (``{"html": ...}`` already escaped by its maker, or
    ``{"figure": NAME, "data": plotly figure dict}``) and optional ``css``."""
    parts, figures, css = [], {}, []
    for v in views:
        if not isinstance(v, dict) or not re.fullmatch(r"[a-z0-9-]+", str(v.get("key", ""))):
            raise ValueError(f"views: each must be a dict whose key is lowercase letters, digits and -, got {v!r:.80}")
        parts.append(f'<section class="ts-view" data-view="{v["key"]}"><h2>{html.escape(v["title"])}</h2>')
        for b in v.get("blocks", ()):
            if "figure" in b:
                name = str(b["figure"])
                if not re.fullmatch(r"[a-z0-9-]+", name) or name in figures:
                    raise ValueError(f"views: figure names must be unique lowercase-and-dash, got {name!r}")
                figures[name] = b["data"]
                parts.append(f'<div class="ts-fig" id="ts-fig-{name}" data-figure="{name}"></div>')
            else:
                parts.append(f'<div class="ts-block">{b["html"]}</div>')
        parts.append("</section>")
        css.append(v.get("css", ""))
    return "\n".join(parts), figures, "\n".join(c for c in css if c)


def session_html(export: dict, labels: dict | None = None, views=(), lang: str = "en") -> str:
    """The standalone page for ``export``, a `Store.export_session` dict; ``labels`` replaces
    any of `LABELS` (the page's words, e.g. in Chinese); ``views`` are the method's own views
    drawn below the tree (`_views_html`); ``lang`` is the page's ``<html lang>``."""
    if not isinstance(export, dict) or not isinstance(export.get("events"), list) \
            or not isinstance(export.get("session"), dict):
        raise ValueError("export must be a Store.export_session dict with 'session' and 'events'")
    if not re.fullmatch(r"[a-z]{2}", str(lang)):
        raise ValueError(f"lang must be a two-letter language code, got {lang!r}")
    views_html, figures, css = _views_html(views)
    import plotly      # here, not at the top: the CLI imports ExportError on every command
    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    try:
        plotly_js = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ExportError(f"cannot read plotly.js from the plotly package ({path}): {e}") from None
    meta = export["session"]
    title = f"ThoughtScope {meta.get('method', '')} run {meta.get('session_id', '')}"
    head = {k: meta.get(k) for k in ("session_id", "method", "model", "question", "gold", "answer",
                                      "correct", "status", "seed", "created", "config")}
    parts = {"TITLE": html.escape(title), "PLOTLY": plotly_js.replace("</script", "<\\/script"),
             "SESSION": _script_json(head), "EVENTS": _script_json(export["events"]),
             "LABELS": _script_json({**LABELS, **(labels or {})}), "LANG": lang, "VIEWS": views_html,
             "FIGURES": _script_json(figures), "CSS": css.replace("</", "<\\/")}
    # one pass, so a question that happens to contain "%EVENTS%" is never substituted into
    return re.sub(r"%(TITLE|PLOTLY|SESSION|EVENTS|LABELS|LANG|VIEWS|FIGURES|CSS)%", lambda m: parts[m.group(1)], PAGE)


def write_session_html(export: dict, path: str | Path, labels: dict | None = None, views=(),
                       lang: str = "en") -> Path:
    path = Path(path)
    try:
        path.write_text(session_html(export, labels, views, lang), encoding="utf-8")
    except OSError as e:
        raise ExportError(f"cannot write {path}: {e}") from None
    return path


PAGE = """<!DOCTYPE html>
<html lang="%LANG%"><head><meta charset="utf-8">
<title>%TITLE%</title>
<style>
 body{font-family:system-ui,sans-serif;margin:16px;color:#222}
 #ts-head{margin-bottom:8px} #ts-head b{font-weight:600}
 #ts-controls{display:flex;gap:8px;align-items:center;margin:8px 0}
 #ts-step{flex:1}
 #ts-main{display:flex;gap:16px} #ts-tree{flex:3;min-height:560px} 
 #ts-details{flex:2;white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:13px;
   border:1px solid #ddd;padding:8px;max-height:560px;overflow:auto}
 #ts-status{font-size:14px;color:#444}
 table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
 #ts-views-note{margin:18px 0 4px;color:#555;font-size:14px}
 .ts-view{border-top:2px solid #ddd;margin-top:14px;padding-top:6px}
 .ts-view h2{font-size:18px;margin:6px 0} .ts-view td,.ts-view th{text-align:left;vertical-align:top}
 .ts-fig{margin:8px 0} .ts-block{margin:8px 0;font-size:14px}
 details{margin:4px 0} summary{cursor:pointer}
%CSS%
</style>
<script>%PLOTLY%</script>
</head><body>
<div id="ts-head"></div>
<div id="ts-controls">
 <button id="ts-prev" type="button"></button>
 <input id="ts-step" type="range" min="0" value="0" step="1">
 <button id="ts-next" type="button"></button>
 <button id="ts-play" type="button"></button>
</div>
<div id="ts-status"></div>
<div id="ts-main"><div id="ts-tree"></div><div id="ts-details"></div></div>
<div id="ts-views-note"></div>
<div id="ts-views">
%VIEWS%
</div>
<script>
const SESSION = %SESSION%;
const EVENTS = %EVENTS%;
const L = %LABELS%;
const NO_PARENT = -1;
// a label with its {fields} filled: say("event", {k: 3, n: 9})
const say = (key, f) => L[key].replace(/\\{(\\w+)\\}/g, (m, name) => (name in (f || {})) ? String(f[name]) : m);

// The tree after the first k events: engine/tree.py's Tree.apply, for what this view draws.
function fold(k) {
  const t = {nodes: [], final: null, finished: null, iteration: 0, of: 0, lastPath: [], run: null};
  for (let i = 0; i < k; i++) {
    const e = EVENTS[i];
    switch (e.type) {
      case "run_started": t.run = e; break;
      case "node_proposed":
        t.nodes.push({id: e.node, parent: e.parent, depth: e.depth, action: e.action, text: e.text,
                      terminal: e.terminal, answer: e.answer, correct: e.correct, prior: e.prior,
                      children: [], visits: 0, value: 0, reward: null, sel: null});
        if (e.parent !== NO_PARENT) t.nodes[e.parent].children.push(e.node);
        break;
      case "backprop":
        e.path.forEach((nid, j) => { t.nodes[nid].visits = e.after[j][0]; t.nodes[nid].value = e.after[j][1]; });
        t.lastPath = e.path.slice(); break;
      case "terminal_reward": t.nodes[e.node].reward = e.reward; break;
      case "selected":
        e.candidates.forEach(row => { t.nodes[row.node].sel = Object.assign({c: e.c, rule: e.rule,
                                         parent_visits: e.parent_visits}, row); });
        break;
      case "iteration_started": t.iteration = e.iteration; t.of = e.of; break;
      case "final_answer": t.final = e; break;
      case "run_finished": t.finished = e; break;
    }
  }
  return t;
}
const q = n => n.visits ? n.value / n.visits : 0;

// app/tree_figure.py's layout(): leaves in depth-first order, a parent midway over its children.
function layout(t) {
  const xs = new Array(t.nodes.length).fill(0);
  let next = 0;
  const stack = t.nodes.length ? [[0, false]] : [];
  while (stack.length) {
    const [nid, done] = stack.pop();
    const kids = t.nodes[nid].children;
    if (done) xs[nid] = (xs[kids[0]] + xs[kids[kids.length - 1]]) / 2;
    else if (!kids.length) xs[nid] = next++;
    else { stack.push([nid, true]); for (let j = kids.length - 1; j >= 0; j--) stack.push([kids[j], false]); }
  }
  return xs;
}

const fmt = (x, d) => (x === null || x === undefined) ? "-" : Number(x).toFixed(d);
function draw(k) {
  const t = fold(k);
  window.tsState = {k: k, tree: t};
  const xs = layout(t), ys = t.nodes.map(n => -n.depth);
  const ex = [], ey = [];
  t.nodes.forEach(n => { if (n.parent !== NO_PARENT) { ex.push(xs[n.parent], xs[n.id], null); ey.push(ys[n.parent], ys[n.id], null); } });
  const path = t.final ? t.final.path : t.lastPath, hx = [], hy = [];
  for (let j = 1; j < path.length; j++) { hx.push(xs[path[j-1]], xs[path[j]], null); hy.push(ys[path[j-1]], ys[path[j]], null); }
  const gold = !!(t.run && t.run.config && t.run.config.reward === "gold");
  const lo = gold ? -1 : 0;
  const nodes = {type: "scatter", mode: "markers", x: xs, y: ys, customdata: t.nodes.map(n => n.id),
    hovertext: t.nodes.map(n => `node ${n.id} (${n.action})<br>N=${n.visits} Q=${fmt(q(n), 3)}` +
                                 (n.answer !== null && n.answer !== undefined ? `<br>answer ${n.answer}` : "")),
    hoverinfo: "text", showlegend: false,
    marker: {size: t.nodes.map(n => Math.min(34, 8 + 4 * Math.sqrt(n.visits))),
             color: t.nodes.map(n => n.visits ? q(n) : lo), cmin: lo, cmax: 1, colorscale: "Viridis",
             colorbar: {title: {text: "Q"}, thickness: 12},
             symbol: t.nodes.map(n => n.terminal ? "diamond" : "circle"),
             opacity: t.nodes.map(n => n.visits ? 1 : 0.45),
             line: {width: t.nodes.map(n => n.terminal ? 2.5 : 0.8), color: "#222"}}};
  Plotly.react("ts-tree", [
    {type: "scatter", mode: "lines", x: ex, y: ey, line: {color: "#b0b0b0", width: 1}, hoverinfo: "skip", showlegend: false},
    {type: "scatter", mode: "lines", x: hx, y: hy, line: {color: "#ff7f0e", width: 4}, hoverinfo: "skip", showlegend: false},
    nodes], {height: 560, margin: {l: 10, r: 10, t: 10, b: 10}, plot_bgcolor: "white",
             xaxis: {visible: false}, yaxis: {visible: false}, uirevision: "tree"}, {displaylogo: false});
  const e = k ? EVENTS[k - 1] : null;
  let s = say("event", {k: k, n: EVENTS.length}) + (e ? ` (${e.type})` : "") + " · " + say("nodes", {n: t.nodes.length});
  if (t.of) s += " · " + say("iteration", {i: t.iteration, n: t.of});
  if (t.nodes.length) s += " · " + say("root", {n: t.nodes[0].visits});
  if (t.final) s += " · " + say("final", {answer: t.final.answer, rule: t.final.rule});
  document.getElementById("ts-status").textContent = s;
  document.getElementById("ts-step").value = k;
}

function showNode(nid) {
  const t = window.tsState.tree, n = t.nodes[nid];
  if (!n) return;
  let s = say("node", {id: n.id, action: n.action, depth: n.depth, parent: n.parent}) + "\\n" +
          say("stats", {n: n.visits, value: fmt(n.value, 4), q: fmt(q(n), 4)}) +
          (n.reward !== null ? " · " + say("reward", {r: fmt(n.reward, 4)}) : "") + "\\n";
  if (n.terminal || n.answer !== null) s += say("answer", {answer: n.answer, correct: n.correct}) + "\\n";
  if (n.sel) s += say("selection", {n: n.sel.visits, q: fmt(n.sel.q, 4), explore: fmt(n.sel.explore, 4),
                                    uct: fmt(n.sel.uct, 4), c: n.sel.c, pn: n.sel.parent_visits, rule: n.sel.rule}) + "\\n";
  s += "\\n" + n.text;
  document.getElementById("ts-details").textContent = s;
}
window.tsShowNode = showNode;

const head = document.getElementById("ts-head");
head.innerHTML = "";
[["method", SESSION.method], ["model", SESSION.model], ["status", SESSION.status], ["seed", SESSION.seed],
 ["answer_head", SESSION.answer], ["gold", SESSION.gold], ["correct", SESSION.correct]].forEach(([k, v]) => {
  const b = document.createElement("b"); b.textContent = L[k] + ": ";
  head.append(b, String(v === null || v === undefined ? "-" : v), "   ");
});
const qd = document.createElement("div"); qd.textContent = SESSION.question || ""; head.append(qd);

document.getElementById("ts-prev").textContent = L.prev;
document.getElementById("ts-next").textContent = L.next;
document.getElementById("ts-play").textContent = L.play;
document.getElementById("ts-details").textContent = L.click;
const step = document.getElementById("ts-step");
step.max = EVENTS.length;
step.addEventListener("input", () => draw(Number(step.value)));
document.getElementById("ts-prev").onclick = () => draw(Math.max(0, window.tsState.k - 1));
document.getElementById("ts-next").onclick = () => draw(Math.min(EVENTS.length, window.tsState.k + 1));
let timer = null;
document.getElementById("ts-play").onclick = ev => {
  if (timer) { clearInterval(timer); timer = null; ev.target.textContent = L.play; return; }
  ev.target.textContent = L.pause;
  timer = setInterval(() => { if (window.tsState.k >= EVENTS.length) { clearInterval(timer); timer = null; ev.target.textContent = L.play; }
                              else draw(window.tsState.k + 1); }, 150);
};
draw(EVENTS.length);
// the method's views: static figures of the whole run, drawn once
const FIGURES = %FIGURES%;
window.tsFigures = [];
for (const [name, f] of Object.entries(FIGURES)) {
  Plotly.newPlot("ts-fig-" + name, f.data || [], f.layout || {}, {displaylogo: false, responsive: true});
  window.tsFigures.push(name);
}
if (document.querySelector(".ts-view")) document.getElementById("ts-views-note").textContent = L.views;
document.getElementById("ts-tree").on("plotly_click", d => { const p = d.points.find(p => p.customdata !== undefined); if (p) showNode(p.customdata); });
</script>
</body></html>
"""
