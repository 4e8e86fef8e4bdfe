"""Replay a run from its event log: the tree at any moment, and what each phase did, in words.

The timeline slider folds the first k events; the phase stepper jumps between the events that
start a phase of an MCTS iteration (select, expand/simulate, reward, backpropagate) and
explains the arithmetic of that step — the UCT terms that picked a child, the reward, the
visit and value updates, in the request's language (app/i18n.py). Pure functions over events:
no Gradio components here.
"""

from __future__ import annotations

import html

from app.i18n import t
from app.number_notes import explore_note
from engine import events as E
from engine.answers import NO_ANSWER
from engine.tree import Tree

STATUS_WORDS = {"done": "done", "stopped": "stopped", "failed": "failed", "interrupted": "interrupted",
                "running": "running"}     # a run's status, as t() keys

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
    """Markdown saying what event ``ev`` (the last one folded into ``tree``) did, in the language
    of the request (app/i18n.py)."""
    if ev is None:
        return t("Start of the run: only the question.")
    if isinstance(ev, E.IterationStarted):
        return t("**Rollout {i} of {n} begins** at the root.", i=ev.iteration, n=ev.of)
    if isinstance(ev, E.Selected):
        rule = {"uct": lambda: t("highest UCT = Q + {c}·√(ln N_parent / N), N_parent = {n}", c=f"{ev.c:g}",
                                 n=ev.parent_visits),
                "unvisited": lambda: t("an unvisited child is tried before UCT applies (chosen at random, seeded)"),
                "only": lambda: t("the only child"),
                "sra_ucb": lambda: t("SRA-MCTS's UCB = V + {c}·√(2·ln N_parent / N) on the 0–10 self-evaluation "
                                     "scale, unvisited children V + a fixed bonus, N_parent = {n}", c=f"{ev.c:g}",
                                     n=ev.parent_visits)}.get(ev.rule)
        why = rule() if rule else ev.rule
        rows = [t("| child | N | Q | explore | UCT | |"), "|---|---|---|---|---|---|"]
        for r in ev.candidates:
            mark = t("**← chosen**") if r["node"] == ev.chosen else ""
            rows.append(f"| {r['node']}: {_short(tree[r['node']].text, 40)} | {r['visits']} | {_fmt(r['q'])} | "
                        f"{_fmt(r['explore'])} | {_fmt(r['uct'])} | {mark} |")
        note = f"\n\n{explore_note()}" if ev.rule == "uct" else ""
        return t("**Select** at node {node}: {why}.", node=ev.node, why=why) + "\n\n" + "\n".join(rows) + note
    if isinstance(ev, E.Expanded):
        verb = t("Expand") if ev.phase == "expand" else t("Simulate (expand on the way down)")
        kids = "\n".join(t("- node {id}: ", id=c) + f"{_action(tree[c].action)}`{_short(tree[c].text)}`"
                         + (t(" (terminal)") if tree[c].terminal else "") for c in ev.children)
        if ev.children and _action(tree[ev.children[0]].action):     # rStar: every legal action at once
            counts = {}
            for c in ev.children:
                counts[tree[c].action] = counts.get(tree[c].action, 0) + 1
            what = ", ".join(f"{a} ×{n}" for a, n in counts.items())
            return t("**{verb}** node {node}: {n} children, from every legal action ({what}), one batched call per "
                     "action.", verb=verb, node=ev.node, n=len(ev.children), what=what) + f"\n\n{kids}"
        n, distinct = len(ev.children), len({" ".join(tree[c].text.split()) for c in ev.children})
        same = t(" (identical samples are kept: each is a vote)") if distinct < n else ""
        key = ("**{verb}** node {node}: {n} sample, {distinct} distinct next step, in one batch{same}." if n == 1 else
               "**{verb}** node {node}: {n} samples, {distinct} distinct next step, in one batch{same}."
               if distinct == 1 else
               "**{verb}** node {node}: {n} samples, {distinct} distinct next steps, in one batch{same}.")
        return t(key, verb=verb, node=ev.node, n=n, distinct=distinct, same=same) + f"\n\n{kids}"
    if isinstance(ev, E.TerminalReward):
        d = ev.detail or {}
        if ev.source == "gold":
            how = t("+1 if it matches the answer key, −1 otherwise (**uses the answer key**)")
        elif ev.source == "votes":
            how = (t("the majority answer's share among the node's sampled completions: {share} of {of}",
                     share=d["share"], of=d["of"]) if "of" in d
                   else "0 — " + (d["why"] if d.get("why") else t("no answer")))
        else:
            how = t("share of this answer among terminal answers so far: {share} of {of}", share=d.get("share", 0),
                    of=d.get("of", 0))
        return t("**Reward** at node {node} (answer {answer}): {reward} — {how}.", node=ev.node, answer=ev.answer,
                 reward=f"{ev.reward:.3f}", how=how)
    if isinstance(ev, E.Backprop):
        rows = [t("| node | N before → after | value before → after | Q after |"), "|---|---|---|---|"]
        for nid, (v0, w0), (v1, w1) in zip(ev.path, ev.before, ev.after):
            rows.append(f"| {nid} | {v0} → {v1} | {w0:.3f} → {w1:.3f} | {w1 / v1 if v1 else 0:.3f} |")
        return t("**Backpropagate** reward {reward} along the path.", reward=f"{ev.reward:.3f}") + "\n\n" + \
            "\n".join(rows)
    if isinstance(ev, (E.FinalAnswer, E.RunFinished)):
        return final_markdown(tree)
    from app.rstar_view import explain_event
    words = explain_event(tree, ev)
    if words is not None:
        return words
    if isinstance(ev, E.NodeProposed):
        return t("Node {node} proposed under node {parent}: ", node=ev.node, parent=ev.parent) + f"`{_short(ev.text)}`"
    if isinstance(ev, E.CodeExecuted):
        verdict = t("passed") if ev.passed else (t("failed — the branch ends, reward −1") if ev.ends_branch
                                                 else t("failed"))
        value = t(", value {value}", value=ev.value) if ev.value is not None else ""
        return t("**Run code** of node {node} with the earlier steps' code (sandbox: {sandbox}): ",
                 node=ev.node, sandbox=ev.isolation or "—") + f"`{_short(ev.code)}` → {ev.status}{value}; {verdict}."
    if isinstance(ev, E.Reflected):
        return t("**Reflect** at node {node}: ", node=ev.node) + (t("`<end>` — the path is finished.") if ev.ends
                                                                  else f"“{_short(ev.text)}”")
    if isinstance(ev, E.SelfEvaluated):
        return (t("**Self-evaluate** node {node}: {score} / 10", node=ev.node, score=f"{ev.score:g}") +
                ("" if ev.parsed else t(" (no score in the model's output: fallback 5)")))
    if isinstance(ev, E.SraRollout):
        return t("**Simulate** from node {node}: best rollout score {best}; V {v0} → {v1} = (1 − {a})·V + {a}·best.",
                 node=ev.node, best=f"{ev.best:g}", v0=f"{ev.value_before:g}", v1=f"{ev.value_after:g}",
                 a=f"{ev.alpha:g}")
    if isinstance(ev, E.RunStarted):
        return t("Start of the run: only the question.")
    return t("Event `{type}`.", type=ev.type)      # an event this view has no words for (another tab's)


def final_markdown(tree: Tree) -> str:
    f = tree.final
    if f is None:
        return t("No answer yet.")
    gold = tree.run.gold if tree.run else None
    if f.answer is None:        # not a silent wrong: nothing the reader could take as an answer
        verdict = "" if gold is None else t(" — counts as wrong (gold {gold})", gold=gold)
    else:
        verdict = "" if f.correct is None else (t(" — ✓ correct") if f.correct else t(" — ✗ wrong (gold {gold})",
                                                                                      gold=gold))
    alts = ", ".join(f"{rule}: **{a if a is not None else t(NO_ANSWER)}**" for rule, a in f.alternatives.items()
                     if rule != f.rule)
    answer = f.answer if f.answer is not None else t(NO_ANSWER)
    chosen = (t("Chosen by **{rule}**; the other rules would say {alts}.", rule=f.rule, alts=alts) if alts
              else t("Chosen by **{rule}**.", rule=f.rule))
    lines = [t("### Answer: {answer}", answer=answer) + verdict, chosen]
    if tree.finished:
        status = t(STATUS_WORDS.get(tree.finished.status, tree.finished.status))
        fmt = t(" · {format} format", format=tree.run.format) if tree.run else ""   # which prompt format ran
        message = f" ({t(tree.finished.message)})" if tree.finished.message else ""
        lines.append(t("{nodes} nodes · {tokens} generated tokens", nodes=len(tree),
                       tokens=tree.finished.generated_tokens) + fmt + t(" · status {status}", status=status) + message)
    return "\n\n".join(lines)


def progress_markdown(tree: Tree) -> str:
    if tree.run is None:
        return ""
    it = t("rollout {i} of {n} · ", i=tree.iteration, n=tree.iterations) if tree.iterations > 1 else ""
    return f"{tree.run.method}: {it}" + t("{nodes} nodes · {terminal} terminal", nodes=len(tree),
                                          terminal=len(tree.terminals()))
