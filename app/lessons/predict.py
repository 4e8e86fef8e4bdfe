"""Predict the next selection, then reveal the UCT arithmetic.

On a "predict" page the tree is shown just before a `Selected` event. The student sees each
child's visits N and mean value Q (what the tree shows on hover) and picks the child they
think MCTS will descend into; the reveal reads the event that follows: every child's N, Q,
explore term c·√(ln N_parent / N) and UCT = Q + explore, which child the search chose and
whether the student's pick was it. Right or wrong is the recorded event's ``chosen``, not a
value typed into the lesson.

Not here: the words around it (app/lessons/content/), the tab (app/lessons/tab.py).
"""

from __future__ import annotations

import math

from engine import events as E
from engine.tree import Tree


def next_selection(events, k: int) -> E.Selected:
    """The `Selected` event at moment ``k`` (the one a predict page stops just before)."""
    if not 0 <= k < len(events) or not isinstance(events[k], E.Selected):
        raise ValueError(f"moment {k} is not just before a selection")
    return events[k]


def choices(events, k: int) -> list[tuple[str, int]]:
    """(label, node id) per child of the selecting node, as the student sees it: N and Q only."""
    ev = next_selection(events, k)
    tree = Tree.fold(events[:k])
    out = []
    for row in ev.candidates:
        n = tree[row["node"]]
        text = " ".join(n.text.split())
        out.append((f"node {n.id}: N = {n.visits}, Q = {n.q:.3f} · {text[:50]}", n.id))
    return out


def reveal(events, k: int, picked: int | None, t=lambda s, **f: s.format(**f)) -> dict:
    """What the reveal says for ``picked``: {"right": bool | None, "chosen", "rows", "markdown"}.
    ``t`` translates the sentences (app/i18n.py's `t`; plain English by default)."""
    ev = next_selection(events, k)
    rows = []
    for r in ev.candidates:
        rows.append({"node": r["node"], "visits": r["visits"], "q": r["q"], "explore": r["explore"],
                     "uct": r["uct"]})
    right = None if picked is None else int(picked) == ev.chosen
    lines = []
    if picked is None:
        lines.append(t("Pick the child you think MCTS will choose, then press Reveal."))
    elif right:
        lines.append(t("✓ Right: MCTS chose node {chosen}.", chosen=ev.chosen))
    else:
        lines.append(t("✗ Not this time: you picked node {picked}, MCTS chose node {chosen}.",
                       picked=int(picked), chosen=ev.chosen))
    if ev.rule == "uct":
        lines.append(t("UCT = Q + c·√(ln N_parent / N), with c = {c} and N_parent = {n}: "
                       "ln {n} = {ln}.", c=f"{ev.c:g}", n=ev.parent_visits, ln=f"{math.log(ev.parent_visits):.3f}"))
    lines += ["", "| " + " | ".join([t("child"), "N", "Q", t("explore") + " c·√(ln N_parent / N)", "UCT", ""]) + " |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        mark = t("← chosen") if r["node"] == ev.chosen else ""
        arith = "—" if r["explore"] is None else (
            f"{ev.c:g}·√({math.log(ev.parent_visits):.3f} / {r['visits']}) = {r['explore']:.3f}")
        uct = "—" if r["uct"] is None else f"{r['q']:.3f} + {r['explore']:.3f} = **{r['uct']:.3f}**"
        lines.append(f"| {r['node']} | {r['visits']} | {r['q']:.3f} | {arith} | {uct} | {mark} |")
    lines += ["", t("The explore term is large for a child visited few times and shrinks as N grows; "
                    "Q is the mean reward of the rollouts through the child. The highest sum wins.")]
    return {"right": right, "chosen": ev.chosen, "rows": rows, "markdown": "\n".join(lines)}
