"""The search tree as a plotly figure: a tidy layout in linear time, colour = Q, size = visits.

Layout: leaves take consecutive x positions in depth-first order (children in creation
order), each parent sits midway between its first and last child, y is the depth. One
post-order pass, O(nodes). Siblings never cross and a subtree occupies a contiguous band,
which is what a reader needs to follow a search; it is not the minimum-width Reingold-Tilford
layout.

The figure is three traces whatever the tree's size (edges, highlighted path, nodes), so a
2,000-node redraw is a few arrays, not thousands of shapes. A tree of more than
``MAX_DRAWN_NODES`` draws its most visited nodes (with their ancestors and the highlighted
path) and aggregates the rest into one "+n" marker per parent, so a 10,000-node session opens
without freezing the page.

Not here: folding events into the tree (engine/tree.py), Gradio callbacks.
"""

from __future__ import annotations

import html
import math

import plotly.graph_objects as go

from app.i18n import t
from engine import events as E
from engine.answers import NO_ANSWER, answer_key
from engine.tree import Tree

HOVER_TEXT_CHARS = 160
ACTION_COLOURS = {"root": "#555555",
                  # rStar's actions (colour_by="action"); colour-blind-safe (Okabe-Ito)
                  "A1": "#0072B2", "A2": "#D55E00", "A3": "#009E73", "A4": "#CC79A7", "A5": "#E69F00"}
UNVISITED = "#c8c8c8"


MAX_DRAWN_NODES = 2500      # above this, the most visited nodes are drawn and the rest aggregated


def layout(tree: Tree) -> tuple[list[float], list[float]]:
    """(x, y) per node id. ``y`` is minus the depth, so the root is on top."""
    xs, ys, _ = layout_some(tree)
    return xs, ys


def layout_some(tree: Tree, keep: set[int] | None = None,
                hidden: dict[int, int] | None = None) -> tuple[list[float], list[float], dict[int, float]]:
    """`layout` of part of the tree, and the x of each aggregate marker. ``keep``: draw only these nodes (closed under parents); ``hidden``: nodes
    whose children were not all kept get one more leaf slot, after their kept children, for a
    "+n not drawn" marker."""
    n = len(tree)
    xs, ys = [0.0] * n, [0.0] * n
    agg: dict[int, float] = {}
    if n == 0:
        return xs, ys, agg
    hidden = hidden or {}
    next_leaf = 0.0
    stack = [(E.ROOT, False)]
    while stack:                                     # iterative post-order: no recursion limit
        nid, done = stack.pop()
        node = tree[nid]
        ys[nid] = -float(node.depth)
        kids = node.children if keep is None else [c for c in node.children if c in keep]
        if done:
            if nid in hidden:
                agg[nid] = next_leaf
                next_leaf += 1.0
            first = xs[kids[0]] if kids else agg[nid]
            last = agg[nid] if nid in hidden else xs[kids[-1]]
            xs[nid] = (first + last) / 2
        elif not kids and nid not in hidden:
            xs[nid] = next_leaf
            next_leaf += 1.0
        else:
            stack.append((nid, True))
            stack.extend((c, False) for c in reversed(kids))
    return xs, ys, agg


def visible_nodes(tree: Tree, must: list[int] = (), limit: int = MAX_DRAWN_NODES) -> tuple[set[int] | None, dict[int, int]]:
    """Which nodes to draw when the tree is larger than ``limit``: the root, ``must`` (the
    highlighted path) and the most visited nodes (then the oldest), each with its ancestors.
    Returns (kept ids or None for all, {kept node: nodes below it not drawn})."""
    if len(tree) <= limit:
        return None, {}
    keep = {E.ROOT} | {m for m in must if 0 <= m < len(tree)}
    for m in list(keep):
        keep.update(tree.path_to(m))
    for nid in sorted(range(len(tree)), key=lambda i: (-tree[i].visits, i)):
        if len(keep) >= limit:
            break
        chain, x = [], nid
        while x not in keep:
            chain.append(x)
            x = tree[x].parent
        if len(keep) + len(chain) <= limit:
            keep.update(chain)
    size = [1] * len(tree)
    for node in reversed(tree.nodes):                # children have larger ids than parents
        if node.parent != E.NO_PARENT:
            size[node.parent] += size[node.id]
    hidden: dict[int, int] = {}
    for node in tree.nodes:
        if node.id not in keep and node.parent in keep:
            hidden[node.parent] = hidden.get(node.parent, 0) + size[node.id]
    return keep, hidden


def node_symbol(n) -> str:
    """A node's marker: ★ right, ✗ wrong, □ no answer stated (never drawn as a wrong answer),
    ◆ an answer with no key to judge it, ● not terminal."""
    if not n.terminal:
        return "circle"
    if n.answer is None:
        return "square-open"
    return "star" if n.correct else "x" if n.correct is False else "diamond"


def self_consistency(tree: Tree) -> bool:
    """Whether the run's terminal reward is self-consistency (a share of answers, not correctness)."""
    return bool(tree.run) and tree.run.config.get("reward") == "self_consistency"


def reward_meaning(tree: Tree, nid: int) -> str:
    """What a self-consistency reward means at this moment of the run ("" for other rewards or
    nodes without one): the answer's share among the answers found when it was scored, and now.
    The first terminal's reward is 1.0 (1 of 1) whatever its answer: a bright colour is no verdict."""
    n = tree[nid]
    if n.reward is None or not self_consistency(tree):
        return ""
    found = [t.answer for t in tree.terminals() if t.answer is not None]
    same = sum(1 for a in found if n.answer is not None and answer_key(a) == answer_key(n.answer))
    now = (t("{same} of {n} answers so far ({share})", same=same, n=len(found), share=f"{same / len(found):.2f}")
           if found else t("no answers yet"))
    return t("self-consistency: the reward {reward} was this answer's share of the answers found when it was "
             "scored, not its correctness; now {now}", reward=f"{n.reward:.3f}", now=now)


def _hover(tree: Tree, nid: int) -> str:
    n = tree[nid]
    text = n.text.strip() or t("(empty step)")
    if nid == E.ROOT:
        text = tree.run.question if tree.run else text
    if len(text) > HOVER_TEXT_CHARS:
        text = text[:HOVER_TEXT_CHARS] + "…"
    lines = [t("<b>node {id}</b> · depth {depth}", id=nid, depth=n.depth) + f" · {n.action}",
             html.escape(text).replace("\n", "<br>"),
             f"N = {n.visits}   Q = {n.q:.3f}   " + t("value = {v}", v=f"{n.value:.3f}")]
    if n.reward is not None:
        lines.append(t("reward = {r}", r=f"{n.reward:.3f}"))
        if tree.run is not None and tree.run.config.get("reward") == "ppm":
            lines.append(t("reward source: the PPM's score of this path (no answer key)"))
    if n.score is not None:
        lines.append(t("PPM score = {score} ({model})", score=f"{n.score['score']:.3f}", model=n.score["model"]))
    meaning = reward_meaning(tree, nid)
    if meaning:
        lines.append(html.escape(meaning))
    if n.terminal:
        if n.answer is None:
            lines.append(t("terminal · {what}", what=t(NO_ANSWER)))
        else:
            verdict = "" if n.correct is None else (t(" ✓ correct") if n.correct else t(" ✗ wrong"))
            lines.append(t("terminal · answer {answer}", answer=n.answer) + verdict)
    if n.code is not None:
        lines.append((t("code passed ({status})", status=n.code["status"]) if n.code["passed"]
                      else t("code failed ({status})", status=n.code["status"]))
                     + (t(" · branch ended") if n.code.get("ends_branch") else ""))
    if n.self_eval is not None:
        lines.append(t("self-evaluation {score}/10", score=f"{n.self_eval['score']:g}")
                     + ("" if n.self_eval["parsed"] else t(" (fallback)")))
    if n.reflection is not None:
        lines.append(t("reflection: ") + html.escape(n.reflection[:HOVER_TEXT_CHARS]))
    sel = n.last_selection
    if sel is not None:
        if sel.get("uct") is None:
            lines.append(t("last selection: unvisited (tried before UCT)"))
        else:
            lines.append(t("last selection: Q {q} + explore {e} = UCT {u}", q=f"{sel['q']:.3f}",
                           e=f"{sel['explore']:.3f}", u=f"{sel['uct']:.3f}"))
    return "<br>".join(lines)


COLOUR_BY = ("q", "correct", "source")      # the Search view's "Colour by" (rStar: "action")
# reward sources (TerminalReward.source) as colours; others get OTHER_SOURCE
SOURCE_COLOURS = {"self_consistency": "#0072B2", "gold": "#E69F00", "ppm": "#CC79A7", "votes": "#009E73",
                  "code": "#D55E00", "none": "#999999"}
OTHER_SOURCE = "#56B4E9"


def right_share(tree: Tree) -> dict[int, float]:
    """Per node, the share of right answers among the terminals below it (itself for a terminal);
    nodes with no judged terminal below are left out. A terminal with no answer stated counts as
    not right."""
    from engine.answers import answers_equal
    gold = tree.run.gold if tree.run is not None else None
    below: dict[int, list[int]] = {}
    for n in tree.terminals():
        right = n.correct if n.correct is not None else (None if gold is None else answers_equal(n.answer, gold))
        if right is None:
            continue            # no gold: nothing to count
        nid = n.id
        while nid != -1:
            below.setdefault(nid, []).append(1 if right else 0)
            nid = tree[nid].parent
    return {nid: sum(v) / len(v) for nid, v in below.items()}


def tree_figure(tree: Tree, *, highlight: list[int] | None = None, height: int = 560,
                q_range: tuple[float, float] | None = None, colour_by: str = "q",
                max_nodes: int = MAX_DRAWN_NODES, sources: dict[int, str] | None = None) -> go.Figure:
    """The whole tree; ``highlight`` (default: the final answer's path) is drawn thick. A tree
    of more than ``max_nodes`` nodes draws its most visited ones and one grey "+n" square per
    node whose other descendants are not drawn, so the browser never gets more than about
    ``max_nodes`` markers. Traces are built as plain dicts without plotly's per-element
    validation (most of a redraw's time otherwise).

    ``colour_by="action"`` (rStar) colours nodes and the edges into them by action, with a
    legend naming the actions; the default colours nodes by Q. ``"correct"``: by the share of
    right answers among the terminals below a node (red 0 → green 1; pale: none judged below),
    so a bright Q on a wrong path is seen for what it is; ``"source"``: each rewarded terminal by
    where its reward came from (``sources``: node -> `E.TerminalReward.source`), the rest pale."""
    if colour_by == "action":
        return _action_figure(tree, highlight=highlight, height=height, max_nodes=max_nodes)
    if colour_by not in COLOUR_BY:
        raise ValueError(f"colour_by must be one of {', '.join(COLOUR_BY + ('action',))}, got {colour_by!r}")
    path = highlight if highlight is not None else (tree.final.path if tree.final else [])
    keep, hidden = visible_nodes(tree, path, max_nodes)
    xs, ys, agg = layout_some(tree, keep, hidden)
    drawn = [n for n in tree.nodes if keep is None or n.id in keep]
    ex, ey = _lines([*_edges(drawn[1:], xs, ys), *_stubs(agg, xs, ys)])
    hx, hy = _lines(_path_edges(tree, path, keep, xs, ys))
    if q_range is None:
        gold = bool(tree.run and tree.run.config.get("reward") in ("gold", "ppm"))     # both in [-1, 1]
        q_range = (-1.0, 1.0) if gold else (0.0, 1.0)
    colours, sizes, symbols, lines, visited = [], [], [], [], []
    for n in drawn:
        v = n.visits > 0
        visited.append(v)
        colours.append(n.q if v else q_range[0])
        sizes.append(min(34.0, 8.0 + 4.0 * math.sqrt(n.visits)))
        symbols.append(node_symbol(n))
        lines.append(2.5 if n.terminal else 0.8)
    marker = dict(size=sizes, symbol=symbols, color=colours, cmin=q_range[0], cmax=q_range[1], colorscale="Viridis",
                  colorbar=dict(title=dict(text=t("Q (share of answers)") if self_consistency(tree) else "Q"),
                                thickness=12),
                  line=dict(width=lines, color=["#222222" if v else UNVISITED for v in visited]),
                  opacity=[1.0 if v else 0.45 for v in visited])
    if colour_by == "correct":
        share = right_share(tree)
        marker.update(color=[share.get(n.id, 0.5) for n in drawn], cmin=0.0, cmax=1.0, colorscale="RdYlGn",
                      colorbar=dict(title=dict(text=t("share right below")), thickness=12),
                      opacity=[1.0 if n.id in share else 0.25 for n in drawn])
    elif colour_by == "source":
        sources = sources or {}
        marker.pop("colorbar"), marker.pop("colorscale"), marker.pop("cmin"), marker.pop("cmax")
        marker.update(color=[SOURCE_COLOURS.get(sources[n.id], OTHER_SOURCE) if n.id in sources else UNVISITED
                             for n in drawn],
                      opacity=[1.0 if n.id in sources else 0.35 for n in drawn])
    traces = [
        dict(type="scatter", x=ex, y=ey, mode="lines", line=dict(color="#b0b0b0", width=1),
             hoverinfo="skip", name="edges", showlegend=False),
        dict(type="scatter", x=hx, y=hy, mode="lines", line=dict(color="#ff7f0e", width=4),
             hoverinfo="skip", name=t("chosen path"), showlegend=bool(hx)),
        dict(type="scatter", x=[xs[n.id] for n in drawn], y=[ys[n.id] for n in drawn], mode="markers",
             name="nodes", showlegend=False, customdata=[n.id for n in drawn],
             hovertext=[_hover(tree, n.id) for n in drawn], hoverinfo="text", marker=marker),
    ]
    if colour_by == "source":      # one legend entry per source present
        for src in dict.fromkeys((sources or {}).values()):
            traces.append(dict(type="scatter", x=[None], y=[None], mode="markers", name=t("reward: {source}", source=src),
                               marker=dict(size=10, color=SOURCE_COLOURS.get(src, OTHER_SOURCE))))
    if agg:
        traces.append(_not_drawn_trace(tree, xs, ys, agg, hidden, len(drawn)))
    title = _bounded_title(tree, len(drawn)) if keep is not None else None
    layout_ = dict(height=height, margin=dict(l=10, r=10, t=30, b=10), plot_bgcolor="white",
                   xaxis=dict(visible=False), yaxis=dict(visible=False),
                   legend=dict(orientation="h", y=1.02, x=0), hoverlabel=dict(align="left"),
                   uirevision="tree")            # keep the user's zoom across live redraws
    if title:
        layout_["title"] = title
    return go.Figure(dict(data=traces, layout=layout_), _validate=False)


Segment = tuple[float, float, float, float]   # x0, y0, x1, y1


def _lines(segments: list[Segment]) -> tuple[list, list]:
    """Plotly line coordinates: each segment's two ends, then a None that breaks the line."""
    xs, ys = [], []
    for x0, y0, x1, y1 in segments:
        xs += [x0, x1, None]
        ys += [y0, y1, None]
    return xs, ys


def _edges(nodes, xs, ys) -> list[Segment]:
    """Each node's edge from its parent."""
    return [(xs[n.parent], ys[n.parent], xs[n.id], ys[n.id]) for n in nodes]


def _stubs(agg: dict[int, float], xs, ys) -> list[Segment]:
    """The edge from each node down to its "+n" square (at ``agg[node]``, one level below)."""
    return [(xs[nid], ys[nid], x, ys[nid] - 1) for nid, x in agg.items()]


def _path_edges(tree: Tree, path: list[int], keep: set[int] | None, xs, ys) -> list[Segment]:
    """The highlighted path's edges whose two ends are drawn."""
    return [(xs[a], ys[a], xs[b], ys[b]) for a, b in zip(path, path[1:])
            if a < len(tree) and b < len(tree) and (keep is None or (a in keep and b in keep))]


def _not_drawn_trace(tree: Tree, xs, ys, agg: dict[int, float], hidden: dict[int, int], drawn: int) -> dict:
    """One grey "+n" square under each drawn node whose other descendants are not drawn."""
    return dict(type="scatter", x=list(agg.values()), y=[ys[nid] - 1 for nid in agg], mode="markers+text",
                text=[f"+{hidden[nid]}" for nid in agg], textposition="bottom center",
                hovertext=[t("{hidden} nodes below node {node} not drawn<br>(the tree has {n} nodes; the {drawn} most "
                             "visited are drawn)", hidden=hidden[nid], node=nid, n=len(tree), drawn=drawn)
                           for nid in agg],
                hoverinfo="text", name="not drawn", showlegend=False,
                marker=dict(symbol="square", size=9, color=UNVISITED))


def _bounded_title(tree: Tree, drawn: int) -> dict:
    return dict(text=t("{drawn} of {n} nodes drawn (most visited); grey squares count the rest", drawn=drawn,
                       n=len(tree)),
                font=dict(size=12), x=0.01)


def _action_figure(tree: Tree, *, highlight: list[int] | None, height: int,
                   max_nodes: int = MAX_DRAWN_NODES) -> go.Figure:
    """Nodes and edges coloured by action: one edge trace and one node trace per action (at
    most six of each, whatever the tree's size), so the legend names each action. Bounded
    like the Q figure: above ``max_nodes`` the most visited nodes are drawn, the rest counted."""
    from engine.search.rstar import ACTION_NAMES
    path = highlight if highlight is not None else (tree.final.path if tree.final else [])
    keep, hidden = visible_nodes(tree, path, max_nodes)
    xs, ys, agg = layout_some(tree, keep, hidden)
    drawn = [n for n in tree.nodes if keep is None or n.id in keep]
    fig = go.Figure()
    actions = [a for a in ACTION_COLOURS if any(n.action == a for n in drawn)]
    for a in actions:
        ex, ey = _lines(_edges([n for n in drawn[1:] if n.action == a], xs, ys))
        if ex:
            fig.add_trace(go.Scatter(x=ex, y=ey, mode="lines", line=dict(color=ACTION_COLOURS[a], width=1.5),
                                     hoverinfo="skip", legendgroup=a, showlegend=False, name=f"edges {a}"))
    if agg:
        ex, ey = _lines(_stubs(agg, xs, ys))
        fig.add_trace(go.Scatter(x=ex, y=ey, mode="lines", line=dict(color="#b0b0b0", width=1),
                                 hoverinfo="skip", showlegend=False, name="edges not drawn"))
        fig.add_trace(_not_drawn_trace(tree, xs, ys, agg, hidden, len(drawn)))
    hx, hy = _lines(_path_edges(tree, path, keep, xs, ys))
    fig.add_trace(go.Scatter(x=hx, y=hy, mode="lines", line=dict(color="#222222", width=4, dash="dot"),
                             hoverinfo="skip", name=t("chosen path"), showlegend=bool(hx)))
    for a in actions:
        ids = [n.id for n in drawn if n.action == a]
        nodes = [tree[i] for i in ids]
        fig.add_trace(go.Scatter(
            x=[xs[i] for i in ids], y=[ys[i] for i in ids], mode="markers", customdata=ids,
            name=t("question") if a == "root" else f"{a} {t(ACTION_NAMES[a])}", legendgroup=a,
            hovertext=[_hover(tree, i) for i in ids], hoverinfo="text",
            marker=dict(size=[min(34.0, 8.0 + 4.0 * math.sqrt(n.visits)) for n in nodes],
                        symbol=[node_symbol(n) for n in nodes],
                        color=ACTION_COLOURS[a], line=dict(width=[2.5 if n.terminal else 0.8 for n in nodes],
                                                           color="#222222"),
                        opacity=[1.0 if n.visits else 0.45 for n in nodes])))
    # the legend below the tree: above it, six actions wrap onto rows that cover the root
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=60), plot_bgcolor="white",
                      xaxis=dict(visible=False), yaxis=dict(visible=False),
                      legend=dict(orientation="h", y=-0.02, yanchor="top", x=0, title_text=t("action:")),
                      hoverlabel=dict(align="left"), uirevision="tree")
    if keep is not None:
        fig.update_layout(title=_bounded_title(tree, len(drawn)))
    return fig
