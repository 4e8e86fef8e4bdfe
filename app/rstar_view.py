"""What the Search tab shows of an rStar run beyond the tree: node details in words, the
discriminator panel per candidate, the final candidates table, and the words for rStar's events
in the phase stepper, in the request's language (app/i18n.py). Pure functions over a folded
`Tree` (and events): no Gradio components here.

Not here: the tree figure's action colours (app/tree_figure.py), the search (engine/search/rstar.py).
"""

from __future__ import annotations

import html
import re

from app.i18n import message, t
from engine import events as E
from engine.search.rstar import ACTION_NAMES, ACTIONS
from engine.tree import Tree

_CONDITION = re.compile(r"Condition \d+:")


def is_rstar(tree: Tree) -> bool:
    return tree.run is not None and tree.run.method == "rstar"


def action_label(action: str) -> str:
    """``"A3 sub-question + answer"``; other actions as they are."""
    return f"{action} {t(ACTION_NAMES[action])}" if action in ACTION_NAMES else action


def _md(text: str) -> str:
    """Text safe inside a markdown table cell or line."""
    return html.escape(" ".join(text.split())).replace("|", "\\|")


def _short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return _md(text if len(text) <= n else text[:n] + "…")


def _vote_summary(v: E.Voted) -> str:
    counts: dict[str, int] = {}
    for a in v.answers:
        key = t("no answer") if a is None else a
        counts[key] = counts.get(key, 0) + 1
    parts = ", ".join(f"{html.escape(a)} ×{n}" for a, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return t("votes: {parts} — majority <b>{majority}</b>, confidence {confidence} ({n} samples)", parts=parts,
             majority=html.escape(str(v.majority)), confidence=f"{v.confidence:.2f}", n=len(v.answers))


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
        rows.append(t("<p>The question rephrased as its conditions:</p>") + f"<ol>{items}</ol>"
                    + t("<p>Question: {question}</p>", question=html.escape(question.strip())))
    elif n.action == "A3":
        sq, _, answer = text.partition("\n")
        rows.append(f"<p><i>{html.escape(sq)}</i><br>{html.escape(answer)}</p>")
        if "Now we can answer" in sq or n.terminal and n.answer is not None:
            rows.append(t("<p>This sub-question answers the original question: the path ends here.</p>"))
    elif n.action == "A4":
        parent = tree[n.parent]
        rows.append(t("<p>Answers again: <i>{question}</i><br>{text}<br><small>(replaces the answer "
                      "<i>{old}</i>)</small></p>", question=html.escape(parent.text.partition(chr(10))[0]),
                      text=html.escape(text), old=html.escape(parent.text.partition(chr(10))[2].strip())))
    else:
        rows.append("<p>" + html.escape(text).replace("\n", "<br>") + "</p>")
    if n.votes is not None:
        rows.append(f"<p>{_vote_summary(n.votes)}</p>")
    return '<div class="ts-rstar-node">' + "".join(rows) + "</div>"


def candidates_markdown(tree: Tree) -> str:
    """The final table: generator reward, survival rate, score, winner."""
    table = tree.candidate_table
    if table is None:
        return ""
    lines = [t("#### Candidates"), "",
             t("| # | answer | found | generator reward | consistent | confidence | survival | score | |"),
             "|---|---|---|---|---|---|---|---|---|"]
    fmt = (lambda x: "—" if x is None else f"{x:.3f}")
    for r in table.rows:
        cons = {True: "✓", False: "✗", None: "—"}[r["consistent"]]
        lines.append(f"| {r['candidate']} " + t("(node {node})", node=r["node"])
                     + f" | {r['answer'] if r['answer'] is not None else '—'} | "
                     f"{r['freq']}× | {r['reward']:.3f} | {cons} | {fmt(r['confidence'])} | {fmt(r['survival'])} | "
                     f"{fmt(r['score'])} | {t('**winner**') if r['winner'] else ''} |")
    lines += ["", t("Chosen: {reason}. Score = confidence among the mutually consistent candidates "
                    "(their generator rewards over their count) + survival rate (the answer's consistent "
                    "candidates over all its candidates).", reason=_md(message(table.reason)))]
    return "\n".join(lines)


def candidate_panel(tree: Tree, cand: int) -> str:
    """One candidate's discriminator panel: where it was cut, what the discriminator wrote,
    whether that reaches the candidate's answer, and the verdict."""
    c = next(x for x in tree.candidates.candidates if x["candidate"] == cand)
    d = tree.discriminator.get(cand, {"cuts": [], "completions": [], "verdict": None})
    head = t("**Candidate {cand}** (node {node}, answer {answer}, found {freq}×, generator reward {reward})",
             cand=cand, node=c["node"], answer=c["answer"], freq=c["freq"], reward=f"{c['reward']:.3f}")
    if not d["cuts"]:
        return head + (t(": no answer, not judged.") if c["answer"] is None else t(": not judged."))
    lines = [head, "", t("| cut | kept | …end of the kept prefix | the discriminator wrote | answer | agrees |"),
             "|---|---|---|---|---|---|"]
    comps = d["completions"]
    for cut in d["cuts"]:
        unit = t("words") if cut.mode == "words" else t("steps")
        for comp in [x for x in comps if x.cut == cut.cut] or [None]:
            tail = cut.prefix[-45:]
            wrote = "…" if comp is None else _short(comp.text, 70)
            ans = "" if comp is None else (comp.answer or "—")
            ok = "" if comp is None else ("✓" if comp.agrees else "✗")
            lines.append(f"| {cut.cut + 1} | {cut.keep}/{cut.of} {unit} | …{_md(tail)} | {wrote} | {ans} | {ok} |")
    v = d["verdict"]
    if v is not None:
        lines += ["", t("{agree} of {of} completions reach {answer} (needed {needed}, rule {rule}): **{verdict}**.",
                        agree=v.agree, of=v.of, answer=c["answer"], needed=v.needed, rule=v.rule,
                        verdict=t("mutually consistent") if v.consistent else t("not consistent"))]
    return "\n".join(lines)


def discriminator_progress(tree: Tree) -> str:
    """One line for beside the answer: how far the discriminator is (its panel is below)."""
    if tree.candidates is None:
        return ""
    verdicts = [d["verdict"] for d in tree.discriminator.values() if d["verdict"] is not None]
    if tree.candidates.skipped:
        return t("Discriminator not run: {why}.", why=_md(message(tree.candidates.skipped)))
    cands = tree.candidates.candidates
    silent = sum(1 for c in cands if c["answer"] is None)
    line = (t("Discriminator ({model}): {judged} of {n} candidates judged", model=_md(tree.candidates.model),
              judged=len(verdicts), n=len(cands))
            + (t(" ({n} with no answer are not judged)", n=silent) if silent else "")
            + t(", {n} mutually consistent", n=sum(v.consistent for v in verdicts)))
    return line + (t(" — the table and each candidate's cuts are below the node inspector.")
                   if tree.candidate_table is not None else " …")


def discriminator_markdown(tree: Tree) -> str:
    """Everything the discriminator did so far: the candidates table and each candidate's panel."""
    if tree.candidates is None:
        return ""
    cands = tree.candidates
    parts = [t("### Discriminator ({model})", model=_md(cands.model)),
             t("{n} distinct candidate trajectories; the generator alone would answer **{answer}**.",
               n=len(cands.candidates), answer=cands.generator_answer)]
    if cands.skipped:
        parts.append(t("Not run: {why}.", why=_md(message(cands.skipped))))
    if tree.candidate_table is not None:
        parts.append(candidates_markdown(tree))
    for c in cands.candidates:     # folded, one line each: open all, the page ran to ~12,000 px
        if c["candidate"] in tree.discriminator and tree.discriminator[c["candidate"]]["cuts"]:
            v = tree.discriminator[c["candidate"]]["verdict"]
            said = t("judging…") if v is None else (t("mutually consistent") if v.consistent else t("not consistent"))
            summary = t("Candidate {cand} (node {node}, answer {answer}): {said}", cand=c["candidate"], node=c["node"],
                        answer=_md(str(c["answer"])), said=said)
            parts.append(f"<details><summary>{summary}</summary>\n\n{candidate_panel(tree, c['candidate'])}"
                         "\n\n</details>")
    return "\n\n".join(parts)


def explain_event(tree: Tree, ev: E.Event) -> str | None:
    """Words for rStar's own events in the phase stepper; None for other events."""
    if isinstance(ev, E.Voted):
        n = tree[ev.node]
        return (t("**Votes** for node {node} ({action}): ", node=ev.node, action=_md(action_label(n.action)))
                + _vote_summary(ev).replace("<b>", "**").replace("</b>", "**"))
    if isinstance(ev, E.CandidatesCollected):
        how = " " + t("Not run: {why}.", why=_md(message(ev.skipped))) if ev.skipped else (
            " " + t("Each is now cut, and the discriminator completes each cut."))
        return t("**Discriminator begins**: {n} distinct candidate trajectories (every answer node in the tree and "
                 "every rollout's end). The generator alone would answer **{answer}**.", n=len(ev.candidates),
                 answer=ev.generator_answer) + how
    if isinstance(ev, (E.DiscriminatorCut, E.DiscriminatorCompletion, E.DiscriminatorVerdict)):
        return candidate_panel(tree, ev.candidate)
    if isinstance(ev, E.CandidateTable):
        return candidates_markdown(tree)
    return None
