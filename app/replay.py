"""Replay a run from its event log: the tree at any moment, and what each phase did, in words.

The timeline slider folds the first k events; the phase stepper jumps between the events that
start a phase of an MCTS iteration (select, expand/simulate, reward, backpropagate) and
explains the arithmetic of that step — the UCT terms that picked a child, the reward, the
visit and value updates. Pure functions over events: no Gradio here.
"""

from __future__ import annotations

import html

from engine import events as E
from engine.answers import NO_ANSWER
from engine.tree import Tree

PHASE_EVENTS = (E.IterationStarted, E.Selected, E.Reflected, E.Expanded, E.SraRollout, E.TerminalReward,
                E.Backprop, E.FinalAnswer,
                # rStar's discriminator: its start, each candidate's verdict, the final table
                E.CandidatesCollected, E.DiscriminatorVerdict, E.CandidateTable)


def phase_points(events: list[E.Event]) -> list[int]:
    """Moments (number of events folded) at which a phase has just happened."""
    return [i + 1 for i, ev in enumerate(events) if isinstance(ev, PHASE_EVENTS)]


def step_to(points: list[int], k: int, direction: int) -> int:
    """The previous (-1) or next (+1) phase moment from moment k. "Next" at the end of a run
    starts the replay again from the first phase; "previous" stays put at the start."""
    if direction > 0:
        return next((p for p in points if p > k), points[0] if points else k)
    return next((p for p in reversed(points) if p < k), k)


def _short(text: str, n: int = 70) -> str:
    text = " ".join(text.split())
    return html.escape(text if len(text) <= n else text[:n] + "…")


def _action(action: str) -> str:
    """rStar's action in words before a child's text ("[A1 one-step thought] "); nothing for MCTS."""
    from app.rstar_view import action_label
    label = action_label(action)
    return "" if label == action else f"[{label}] "


def _fmt(x) -> str:
    return "—" if x is None else f"{x:.3f}"


def explain(tree: Tree, ev: E.Event | None) -> str:
    """Markdown saying what event ``ev`` (the last one folded into ``tree``) did."""
    if ev is None:
        return "Start of the run: only the question."
    if isinstance(ev, E.IterationStarted):
        return f"**Rollout {ev.iteration} of {ev.of} begins** at the root."
    if isinstance(ev, E.Selected):
        why = {"uct": f"highest UCT = Q + {ev.c:g}·√(ln N_parent / N), N_parent = {ev.parent_visits}",
               "unvisited": "an unvisited child is tried before UCT applies (chosen at random, seeded)",
               "only": "the only child",
               "sra_ucb": f"SRA-MCTS's UCB = V + {ev.c:g}·√(2·ln N_parent / N) on the 0–10 self-evaluation scale, "
                          f"unvisited children V + a fixed bonus, N_parent = {ev.parent_visits}"}.get(ev.rule, ev.rule)
        rows = ["| child | N | Q | explore | UCT | |", "|---|---|---|---|---|---|"]
        for r in ev.candidates:
            mark = "**← chosen**" if r["node"] == ev.chosen else ""
            rows.append(f"| {r['node']}: {_short(tree[r['node']].text, 40)} | {r['visits']} | {_fmt(r['q'])} | "
                        f"{_fmt(r['explore'])} | {_fmt(r['uct'])} | {mark} |")
        return f"**Select** at node {ev.node}: {why}.\n\n" + "\n".join(rows)
    if isinstance(ev, E.Expanded):
        verb = "Expand" if ev.phase == "expand" else "Simulate (expand on the way down)"
        kids = "\n".join(f"- node {c}: {_action(tree[c].action)}`{_short(tree[c].text)}`"
                         + (" (terminal)" if tree[c].terminal else "") for c in ev.children)
        if ev.children and _action(tree[ev.children[0]].action):     # rStar: every legal action at once
            counts = {}
            for c in ev.children:
                counts[tree[c].action] = counts.get(tree[c].action, 0) + 1
            what = ", ".join(f"{a} ×{n}" for a, n in counts.items())
            return (f"**{verb}** node {ev.node}: {len(ev.children)} children, from every legal action ({what}), "
                    f"one batched call per action.\n\n{kids}")
        n, distinct = len(ev.children), len({" ".join(tree[c].text.split()) for c in ev.children})
        same = " (identical samples are kept: each is a vote)" if distinct < n else ""
        return (f"**{verb}** node {ev.node}: {n} sample{'s' * (n != 1)}, {distinct} distinct next step"
                f"{'s' * (distinct != 1)}, in one batch{same}.\n\n{kids}")
    if isinstance(ev, E.TerminalReward):
        if ev.source == "gold":
            how = "+1 if it matches the answer key, −1 otherwise (**uses the answer key**)"
        elif ev.source == "votes":
            d = ev.detail or {}
            how = (f"the majority answer's share among the node's sampled completions: {d['share']} of {d['of']}"
                   if "of" in d else f"0 — {d.get('why', 'no answer')}")
        else:
            d = ev.detail or {}
            how = f"share of this answer among terminal answers so far: {d.get('share', 0)} of {d.get('of', 0)}"
        return f"**Reward** at node {ev.node} (answer {ev.answer}): {ev.reward:.3f} — {how}."
    if isinstance(ev, E.Backprop):
        rows = ["| node | N before → after | value before → after | Q after |", "|---|---|---|---|"]
        for nid, (v0, w0), (v1, w1) in zip(ev.path, ev.before, ev.after):
            rows.append(f"| {nid} | {v0} → {v1} | {w0:.3f} → {w1:.3f} | {w1 / v1 if v1 else 0:.3f} |")
        return f"**Backpropagate** reward {ev.reward:.3f} along the path.\n\n" + "\n".join(rows)
    if isinstance(ev, (E.FinalAnswer, E.RunFinished)):
        return final_markdown(tree)
    from app.rstar_view import explain_event
    words = explain_event(tree, ev)
    if words is not None:
        return words
    if isinstance(ev, E.NodeProposed):
        return f"Node {ev.node} proposed under node {ev.parent}: `{_short(ev.text)}`"
    if isinstance(ev, E.CodeExecuted):
        verdict = "passed" if ev.passed else "failed" + (" — the branch ends, reward −1" if ev.ends_branch else "")
        return (f"**Run code** of node {ev.node} with the earlier steps' code (sandbox: {ev.isolation or '—'}): "
                f"`{_short(ev.code)}` → {ev.status}" + (f", value {ev.value}" if ev.value is not None else "")
                + f"; {verdict}.")
    if isinstance(ev, E.Reflected):
        return f"**Reflect** at node {ev.node}: " + ("`<end>` — the path is finished." if ev.ends
                                                     else f"“{_short(ev.text)}”")
    if isinstance(ev, E.SelfEvaluated):
        return (f"**Self-evaluate** node {ev.node}: {ev.score:g} / 10" +
                ("" if ev.parsed else " (no score in the model's output: fallback 5)"))
    if isinstance(ev, E.SraRollout):
        return (f"**Simulate** from node {ev.node}: best rollout score {ev.best:g}; V {ev.value_before:g} → "
                f"{ev.value_after:g} = (1 − {ev.alpha:g})·V + {ev.alpha:g}·best.")
    return f"`{ev.type}`"


def final_markdown(tree: Tree) -> str:
    f = tree.final
    if f is None:
        return "No answer yet."
    gold = tree.run.gold if tree.run else None
    if f.answer is None:        # not a silent wrong: nothing the reader could take as an answer
        verdict = "" if gold is None else f" — counts as wrong (gold {gold})"
    else:
        verdict = "" if f.correct is None else (" — ✓ correct" if f.correct else f" — ✗ wrong (gold {gold})")
    alts = ", ".join(f"{rule}: **{a if a is not None else NO_ANSWER}**" for rule, a in f.alternatives.items()
                     if rule != f.rule)
    status = tree.finished.status if tree.finished else "running"
    lines = [f"### Answer: {f.answer if f.answer is not None else NO_ANSWER}{verdict}", f"Chosen by **{f.rule}**" + (f"; the other rules would say {alts}" if alts else "") + "."]
    if tree.finished:
        fmt = f" · {tree.run.format} format" if tree.run else ""       # which prompt format ran (engine/formats.py)
        lines.append(f"{len(tree)} nodes · {tree.finished.generated_tokens} generated tokens{fmt} · status {status}"
                     + (f" ({tree.finished.message})" if tree.finished.message else ""))
    return "\n\n".join(lines)


def progress_markdown(tree: Tree) -> str:
    if tree.run is None:
        return ""
    it = f"rollout {tree.iteration} of {tree.iterations} · " if tree.iterations > 1 else ""
    return f"{tree.run.method}: {it}{len(tree)} nodes · {len(tree.terminals())} terminal"
