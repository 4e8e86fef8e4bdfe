"""The Search view's node inspector: the path to a node with its tokens coloured by probability,
the text the search forced before the model's tokens, the node's statistics and method details;
and the tree's preference pairs.

Not here: the tree figure (app/tree_figure.py) or the method-specific parts of a node's details
(app/node_details.py, app/rstar_view.py), which this page puts together.
"""

from __future__ import annotations

import html

import gradio as gr

from app.figures import legend_html, token_span
from app.i18n import t
from app.number_notes import q_note
from app.node_details import node_details_html, pairs_html
from app.rstar_view import node_details_html as rstar_details_html
from app.tree_figure import reward_meaning
from engine import events as E
from engine.models.base import TokenLogprob
from engine.tree import Tree

FORCED_MATCH_CHARS = 12  # the generated text's opening matched in a step's text to find a forced prefix


def forced_html(text: str, tokens: list[TokenLogprob]) -> str:
    """The text the search wrote before the model's tokens (a forced "Step 1:"), as the tree shows
    it, marked as not sampled ("" when the step is all generated tokens)."""
    head = "".join(t.token for t in tokens).strip()[:FORCED_MATCH_CHARS]    # how the generated text starts
    at = text.find(head) if head else -1
    if at <= 0 or not text[:at].strip():
        return ""
    return forced_span(text[:at])


def forced_span(forced: str) -> str:
    """``forced`` (text written before the model's tokens) marked as not sampled: the inspector's
    and the Sampling lab's markup ("" for no text)."""
    if not forced:
        return ""
    return (f'<span class="ts-forced" title="{html.escape(t("written by the search, not sampled"))}">'
            f'{html.escape(forced)}</span>')


def inspect_node(view: dict | None, node_id, k) -> str:
    """The path to a node, its tokens coloured by probability, and its statistics."""
    if not view or not view.get("events"):
        return "<p>" + t("Run a search or open a session first.") + "</p>"
    tree = Tree.fold(view["events"][:int(k) if k is not None else None])
    try:
        nid = int(node_id)
    except (TypeError, ValueError):
        raise gr.Error(t("node id must be a whole number (hover a node to see its id)"),
                       print_exception=False) from None
    if not 0 <= nid < len(tree):
        raise gr.Error(t("node {id} does not exist at this point of the run (nodes 0–{last})", id=nid,
                         last=len(tree) - 1), print_exception=False)
    n = tree[nid]
    parts = [rstar_details_html(tree, nid), legend_html(), '<div class="ts-tokens">']
    for pid in tree.path_to(nid):
        node = tree[pid]
        if pid == E.ROOT:
            parts.append(f'<div style="opacity:.7">{html.escape(node.text)}</div>')
            continue
        tokens = [TokenLogprob.from_json(t) for t in node.tokens]
        spans = "".join(token_span(t) for t in tokens)
        style = "" if pid == nid else "opacity:.75"
        parts.append(f'<div style="{style}"><small>{t("node {id}", id=pid)}</small> {forced_html(node.text, tokens)}'
                     f'{spans or html.escape(node.text)}</div>')
    parts.append("</div>")
    stats = [f"N = {n.visits}", f"Q = {n.q:.3f}", t("value = {v}", v=f"{n.value:.3f}"),
             html.escape(q_note(tree.run.config.get("reward") if tree.run else None))]
    if n.reward is not None:
        stats.append(t("reward = {r}", r=f"{n.reward:.3f}"))
    meaning = reward_meaning(tree, nid)
    if meaning:
        stats.append(html.escape(meaning))
    if n.prior is not None:
        stats.append(t("mean token logprob = {p}", p=f"{n.prior:.3f}"))
    if n.terminal:
        stats.append(t("answer = {answer}", answer=n.answer) + ("" if n.correct is None else (" ✓" if n.correct else " ✗")))
    sel = n.last_selection
    if sel and sel.get("uct") is not None:
        stats.append(t("last UCT = {q} + {e} = {u}", q=f"{sel['q']:.3f}", e=f"{sel['explore']:.3f}",
                       u=f"{sel['uct']:.3f}"))
    head = t("<b>node {id}</b> · depth {depth}", id=nid, depth=n.depth)
    return (f"<p>{head} · {' · '.join(stats)}</p>" + node_details_html(tree, nid)
            + "".join(parts))


def show_pairs(view: dict | None, k) -> str:
    """rStar-Math preference pairs of the tree on screen."""
    if not view or not view.get("events"):
        return "<p>" + t("Run a search or open a session first.") + "</p>"
    return pairs_html(Tree.fold(view["events"][:int(k) if k else None]))
