"""What the Search tab shows of an rStar run beyond the tree: node details in words, the
discriminator panel per candidate, the final candidates table, and the words for rStar's events
in the phase stepper. Pure functions over a folded `Tree` (and events): no Gradio here.

Not here: the tree figure's action colours (app/tree_figure.py), the search (engine/search/rstar.py).
"""

from __future__ import annotations

import html
import re

from engine import events as E
from engine.search.rstar import ACTION_NAMES, ACTIONS
from engine.tree import Tree

_CONDITION = re.compile(r"Condition \d+:")


def is_rstar(tree: Tree) -> bool:
    return tree.run is not None and tree.run.method == "rstar"


def action_label(action: str) -> str:
    """``"A3 sub-question + answer"``; other actions as they are."""
    return f"{action} {ACTION_NAMES[action]}" if action in ACTION_NAMES else action


def _md(text: str) -> str:
    """Text safe inside a markdown table cell or line."""
    return html.escape(" ".join(text.split())).replace("|", "\\|")


def _short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return _md(text if len(text) <= n else text[:n] + "…")


def _vote_summary(v: E.Voted) -> str:
    counts: dict[str, int] = {}
    for a in v.answers:
        key = "no answer" if a is None else a
        counts[key] = counts.get(key, 0) + 1
    parts = ", ".join(f"{html.escape(a)} ×{n}" for a, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return (f"votes: {parts} — majority <b>{html.escape(str(v.majority))}</b>, "
            f"confidence {v.confidence:.2f} ({len(v.answers)} samples)")


def node_details_html(tree: Tree, nid: int) -> str:
    """The node's action in words, and its content laid out: a rephrase as its list of
    conditions, a sub-question apart from its answer, the votes behind its answer."""
    n = tree[nid]
    if n.action not in ACTIONS:
        return ""
    rows = [f"<p><b>{html.escape(action_label(n.action))}</b></p>"]
    text = n.text.strip()
    if n.action == "A5":
        body = text.removeprefix("Rephrased:").strip()
        question = ""
        if " Question:" in body:
            body, question = body.rsplit(" Question:", 1)
        conds = [c.strip() for c in _CONDITION.split(body) if c.strip()]
        items = "".join(f"<li>{html.escape(c)}</li>" for c in conds)
        rows.append(f"<p>The question rephrased as its conditions:</p><ol>{items}</ol>"
                    f"<p>Question: {html.escape(question.strip())}</p>")
    elif n.action == "A3":
        sq, _, answer = text.partition("\n")
        rows.append(f"<p><i>{html.escape(sq)}</i><br>{html.escape(answer)}</p>")
        if "Now we can answer" in sq or n.terminal and n.answer is not None:
            rows.append("<p>This sub-question answers the original question: the path ends here.</p>")
    elif n.action == "A4":
        parent = tree[n.parent]
        rows.append(f"<p>Answers again: <i>{html.escape(parent.text.partition(chr(10))[0])}</i><br>"
                    f"{html.escape(text)}<br><small>(replaces the answer "
                    f"<i>{html.escape(parent.text.partition(chr(10))[2].strip())}</i>)</small></p>")
    else:
        rows.append("<p>" + html.escape(text).replace("\n", "<br>") + "</p>")
    if n.votes is not None:
        rows.append(f"<p>{_vote_summary(n.votes)}</p>")
    return '<div class="ts-rstar-node">' + "".join(rows) + "</div>"


def candidates_markdown(tree: Tree) -> str:
    """The final table: generator reward, survival rate, score, winner."""
    t = tree.candidate_table
    if t is None:
        return ""
    lines = ["#### Candidates", "",
             "| # | answer | found | generator reward | consistent | confidence | survival | score | |",
             "|---|---|---|---|---|---|---|---|---|"]
    fmt = (lambda x: "—" if x is None else f"{x:.3f}")
    for r in t.rows:
        cons = {True: "✓", False: "✗", None: "—"}[r["consistent"]]
        lines.append(f"| {r['candidate']} (node {r['node']}) | {r['answer'] if r['answer'] is not None else '—'} | "
                     f"{r['freq']}× | {r['reward']:.3f} | {cons} | {fmt(r['confidence'])} | {fmt(r['survival'])} | "
                     f"{fmt(r['score'])} | {'**winner**' if r['winner'] else ''} |")
    lines += ["", f"Chosen: {_md(t.reason)}. Score = confidence among the mutually consistent candidates "
              "(their generator rewards over their count) + survival rate (the answer's consistent "
              "candidates over all its candidates)."]
    return "\n".join(lines)


def candidate_panel(tree: Tree, cand: int) -> str:
    """One candidate's discriminator panel: where it was cut, what the discriminator wrote,
    whether that reaches the candidate's answer, and the verdict."""
    c = next(x for x in tree.candidates.candidates if x["candidate"] == cand)
    d = tree.discriminator.get(cand, {"cuts": [], "completions": [], "verdict": None})
    head = (f"**Candidate {cand}** (node {c['node']}, answer {c['answer']}, found {c['freq']}×, "
            f"generator reward {c['reward']:.3f})")
    if not d["cuts"]:
        return head + (": no answer, not judged." if c["answer"] is None else ": not judged.")
    lines = [head, "", "| cut | kept | …end of the kept prefix | the discriminator wrote | answer | agrees |",
             "|---|---|---|---|---|---|"]
    comps = d["completions"]
    for cut in d["cuts"]:
        unit = "words" if cut.mode == "words" else "steps"
        for comp in [x for x in comps if x.cut == cut.cut] or [None]:
            tail = cut.prefix[-45:]
            wrote = "…" if comp is None else _short(comp.text, 70)
            ans = "" if comp is None else (comp.answer or "—")
            ok = "" if comp is None else ("✓" if comp.agrees else "✗")
            lines.append(f"| {cut.cut + 1} | {cut.keep}/{cut.of} {unit} | …{_md(tail)} | {wrote} | {ans} | {ok} |")
    v = d["verdict"]
    if v is not None:
        lines += ["", f"{v.agree} of {v.of} completions reach {c['answer']} (needed {v.needed}, rule "
                  f"{v.rule}): **{'mutually consistent' if v.consistent else 'not consistent'}**."]
    return "\n".join(lines)


def discriminator_progress(tree: Tree) -> str:
    """One line for beside the answer: how far the discriminator is (its panel is below)."""
    if tree.candidates is None:
        return ""
    verdicts = [d["verdict"] for d in tree.discriminator.values() if d["verdict"] is not None]
    if tree.candidates.skipped:
        return f"Discriminator not run: {_md(tree.candidates.skipped)}."
    cands = tree.candidates.candidates
    silent = sum(1 for c in cands if c["answer"] is None)
    line = (f"Discriminator ({_md(tree.candidates.model)}): {len(verdicts)} of {len(cands)} candidates judged"
            + (f" ({silent} with no answer are not judged)" if silent else "")
            + f", {sum(v.consistent for v in verdicts)} mutually consistent")
    return line + (" — the table and each candidate's cuts are below the node inspector."
                   if tree.candidate_table is not None else " …")


def discriminator_markdown(tree: Tree) -> str:
    """Everything the discriminator did so far: the candidates table and each candidate's panel."""
    if tree.candidates is None:
        return ""
    cands = tree.candidates
    parts = [f"### Discriminator ({_md(cands.model)})",
             f"{len(cands.candidates)} distinct candidate trajectories; the generator alone would answer "
             f"**{cands.generator_answer}**."]
    if cands.skipped:
        parts.append(f"Not run: {_md(cands.skipped)}.")
    if tree.candidate_table is not None:
        parts.append(candidates_markdown(tree))
    for c in cands.candidates:     # folded, one line each: open all, the page ran to ~12,000 px
        if c["candidate"] in tree.discriminator and tree.discriminator[c["candidate"]]["cuts"]:
            v = tree.discriminator[c["candidate"]]["verdict"]
            said = "judging…" if v is None else ("mutually consistent" if v.consistent else "not consistent")
            parts.append(f"<details><summary>Candidate {c['candidate']} (node {c['node']}, answer "
                         f"{_md(str(c['answer']))}): {said}</summary>\n\n{candidate_panel(tree, c['candidate'])}"
                         "\n\n</details>")
    return "\n\n".join(parts)


def explain_event(tree: Tree, ev: E.Event) -> str | None:
    """Words for rStar's own events in the phase stepper; None for other events."""
    if isinstance(ev, E.Voted):
        n = tree[ev.node]
        return (f"**Votes** for node {ev.node} ({_md(action_label(n.action))}): "
                + _vote_summary(ev).replace("<b>", "**").replace("</b>", "**"))
    if isinstance(ev, E.CandidatesCollected):
        how = f" Not run: {_md(ev.skipped)}." if ev.skipped else (
            " Each is now cut, and the discriminator completes each cut.")
        return (f"**Discriminator begins**: {len(ev.candidates)} distinct candidate trajectories "
                f"(every answer node in the tree and every rollout's end). The generator alone would answer "
                f"**{ev.generator_answer}**.{how}")
    if isinstance(ev, (E.DiscriminatorCut, E.DiscriminatorCompletion, E.DiscriminatorVerdict)):
        return candidate_panel(tree, ev.candidate)
    if isinstance(ev, E.CandidateTable):
        return candidates_markdown(tree)
    return None
