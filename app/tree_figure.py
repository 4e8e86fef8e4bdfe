"""The search tree as a plotly figure: a tidy layout in linear time, colour = Q, size = visits.

Layout: leaves take consecutive x positions in depth-first order (children in creation
order), each parent sits midway between its first and last child, y is the depth. One
post-order pass, O(nodes). Siblings never cross and a subtree occupies a contiguous band,
which is what a reader needs to follow a search; it is not the minimum-width Reingold-Tilford
layout.

The figure is three traces whatever the tree's size (edges, highlighted path, nodes), so a
2,000-node redraw is a few arrays, not thousands of shapes.

Not here: folding events into the tree (engine/tree.py), Gradio callbacks.
"""

from __future__ import annotations

import html
import math

import plotly.graph_objects as go

from engine import events as E
from engine.tree import Tree

HOVER_TEXT_CHARS = 160
ACTION_COLOURS = {"root": "#555555"}
UNVISITED = "#c8c8c8"


def layout(tree: Tree) -> tuple[list[float], list[float]]:
    """(x, y) per node id. ``y`` is minus the depth, so the root is on top."""
    n = len(tree)
    xs, ys = [0.0] * n, [0.0] * n
    if n == 0:
        return xs, ys
    next_leaf = 0.0
    stack = [(E.ROOT, False)]
    while stack:                                     # iterative post-order: no recursion limit
        nid, done = stack.pop()
        node = tree[nid]
        ys[nid] = -float(node.depth)
        if not node.children:
            xs[nid] = next_leaf
            next_leaf += 1.0
        elif done:
            xs[nid] = (xs[node.children[0]] + xs[node.children[-1]]) / 2
        else:
            stack.append((nid, True))
            stack.extend((c, False) for c in reversed(node.children))
    return xs, ys


def _hover(tree: Tree, nid: int) -> str:
    n = tree[nid]
    text = n.text.strip() or "(empty step)"
    if nid == E.ROOT:
        text = tree.run.question if tree.run else text
    if len(text) > HOVER_TEXT_CHARS:
        text = text[:HOVER_TEXT_CHARS] + "…"
    lines = [f"<b>node {nid}</b> · depth {n.depth} · {n.action}", html.escape(text).replace("\n", "<br>"),
             f"N = {n.visits}   Q = {n.q:.3f}   value = {n.value:.3f}"]
    if n.reward is not None:
        lines.append(f"reward = {n.reward:.3f}")
    if n.terminal:
        verdict = "" if n.correct is None else (" ✓ correct" if n.correct else " ✗ wrong")
        lines.append(f"terminal · answer {n.answer}{verdict}")
    if n.code is not None:
        lines.append(f"code {'passed' if n.code['passed'] else 'failed'} ({n.code['status']})"
                     + (" · branch ended" if n.code.get("ends_branch") else ""))
    if n.self_eval is not None:
        lines.append(f"self-evaluation {n.self_eval['score']:g}/10" + ("" if n.self_eval["parsed"] else " (fallback)"))
    if n.reflection is not None:
        lines.append("reflection: " + html.escape(n.reflection[:HOVER_TEXT_CHARS]))
    sel = n.last_selection
    if sel is not None:
        if sel.get("uct") is None:
            lines.append("last selection: unvisited (tried before UCT)")
        else:
            lines.append(f"last selection: Q {sel['q']:.3f} + explore {sel['explore']:.3f} = UCT {sel['uct']:.3f}")
    return "<br>".join(lines)


def tree_figure(tree: Tree, *, highlight: list[int] | None = None, height: int = 560,
                q_range: tuple[float, float] | None = None) -> go.Figure:
    """The whole tree; ``highlight`` (default: the final answer's path) is drawn thick."""
    xs, ys = layout(tree)
    ex, ey = [], []
    for node in tree.nodes[1:]:
        ex += [xs[node.parent], xs[node.id], None]
        ey += [ys[node.parent], ys[node.id], None]
    path = highlight if highlight is not None else (tree.final.path if tree.final else [])
    hx, hy = [], []
    for a, b in zip(path, path[1:]):
        if a < len(tree) and b < len(tree):
            hx += [xs[a], xs[b], None]
            hy += [ys[a], ys[b], None]
    if q_range is None:
        gold = bool(tree.run and tree.run.config.get("reward") == "gold")
        q_range = (-1.0, 1.0) if gold else (0.0, 1.0)
    colours, sizes, symbols, lines = [], [], [], []
    for n in tree.nodes:
        colours.append(n.q if n.visits else None)
        sizes.append(min(34.0, 8.0 + 4.0 * math.sqrt(n.visits)))
        if n.terminal:
            symbols.append("star" if n.correct else "x" if n.correct is False else "diamond")
        else:
            symbols.append("circle")
        lines.append(2.5 if n.terminal else 0.8)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=ex, y=ey, mode="lines", line=dict(color="#b0b0b0", width=1),
                             hoverinfo="skip", name="edges", showlegend=False))
    fig.add_trace(go.Scatter(x=hx, y=hy, mode="lines", line=dict(color="#ff7f0e", width=4),
                             hoverinfo="skip", name="chosen path", showlegend=bool(hx)))
    visited = [c is not None for c in colours]
    fig.add_trace(go.Scatter(
        x=xs, y=ys, mode="markers", name="nodes", showlegend=False,
        customdata=list(range(len(tree))),
        hovertext=[_hover(tree, i) for i in range(len(tree))], hoverinfo="text",
        marker=dict(size=sizes, symbol=symbols,
                    color=[c if v else q_range[0] for c, v in zip(colours, visited)],
                    cmin=q_range[0], cmax=q_range[1], colorscale="Viridis",
                    colorbar=dict(title="Q", thickness=12),
                    line=dict(width=lines, color=["#222222" if v else UNVISITED for v in visited]),
                    opacity=[1.0 if v else 0.45 for v in visited])))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), plot_bgcolor="white",
                      xaxis=dict(visible=False), yaxis=dict(visible=False),
                      legend=dict(orientation="h", y=1.02, x=0), hoverlabel=dict(align="left"),
                      uirevision="tree")            # keep the user's zoom across live redraws
    return fig
