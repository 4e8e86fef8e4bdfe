"""Method-specific parts of the node inspector and the preference-pair table.

Code-verified MCTS: the step's code, its output or error, pass/fail, the claim check and the
cumulative program that ran. SRA-MCTS: the reflection written at the node, its 0–10
self-evaluation (and whether the model's output held a score at all), the last simulation
from it, and what a summary node is (the greedy completion written after an early stop).
Pure functions from a folded tree to HTML, in the request's language (app/i18n.py); no Gradio here.
"""

from __future__ import annotations

import html

from app.i18n import t
from engine.pairs import PairConfig, pairs_from_tree
from engine.search.sra_mcts import SUMMARY_ACTION
from engine.tree import Tree

EMBEDDED_SRA_NOTE = ("The embedded model was never trained to reflect or to score steps: its reflections and "
                     "scores are whatever it writes after <code>Analysis:</code> / <code>Score:</code>, shown as "
                     "written. An unparsable score counts as 5 (SRA-MCTS's fallback) and is marked.")   # a t() key


def _pre(text: str) -> str:
    return f'<pre style="white-space:pre-wrap;margin:2px 0">{html.escape(text)}</pre>'


def code_html(info: dict) -> str:
    verdict = t("✓ passed") if info["passed"] else t("✗ failed")
    claim = ""
    if info.get("claim") is not None:
        ok = t({True: "agrees", False: "disagrees", None: "not checked"}[info.get("claim_ok")])
        claim = t(" · value {value}, comment claims {claim} ({ok})", value=html.escape(str(info.get("value"))),
                  claim=html.escape(info["claim"]), ok=ok)
    end = t(" · branch ends (failures in a row: {n})", n=info["failures"]) if info.get("ends_branch") else (
        t(" · failures in a row: {n}", n=info["failures"]) if info.get("failures") else "")
    parts = [t("<p><b>Code</b> · {verdict} · status <code>{status}</code>", verdict=verdict,
               status=html.escape(info["status"])) + claim + end
             + (t(" · sandbox: {sandbox}", sandbox=html.escape(info["isolation"])) if info.get("isolation") else "")
             + "</p>", _pre(info["code"] or t("(no code in this step)"))]
    if info.get("output"):
        parts += ["<p>" + t("Output / error:") + "</p>", _pre(info["output"])]
    if info.get("program"):
        parts += ["<details><summary>" + t("Cumulative program (earlier passing steps + this step)") + "</summary>",
                  _pre(info["program"]), "</details>"]
    return "".join(parts)


def sra_html(tree: Tree, nid: int) -> str:
    from engine.search.sra_mcts import read_score
    n = tree[nid]
    parts = []
    if n.self_eval is not None:
        se = n.self_eval
        how = t("model's written score") if se["source"] == "prompt" else t("10 × mean token probability")
        parsed = "" if se["parsed"] else t(" — <b>no 0–10 score could be read from the output; fallback 5</b>")
        raw = (t(" (wrote <code>{raw}</code>)", raw=html.escape(se["raw"].strip()[:80])) if se["source"] == "prompt"
               else "")
        stated = read_score(se["raw"]) if se["source"] == "prompt" and se["parsed"] else None
        if stated is not None and not 0 <= stated <= 10:
            parsed = t(" — <b>read {stated}, off the 0–10 scale: clamped to {score}</b>, as the official code does",
                       stated=f"{stated:g}", score=f"{se['score']:g}")
        parts.append(t("<p><b>Self-evaluation</b>: {score} / 10 ({how})", score=f"{se['score']:g}", how=how)
                     + raw + parsed + "</p>")
    if n.reflection is not None:
        text = (t("&lt;end&gt;: the path is finished") if n.reflection_ends
                else html.escape(n.reflection or t("(empty)")))
        parts.append(t("<p><b>Reflection</b> before expanding: {text}</p>", text=text))
    if n.rollout is not None:
        r = n.rollout
        steps = "".join(f"<li><code>{html.escape(s.strip())}</code> — {sc:g}</li>"
                        for s, sc in zip(r["steps"], r["scores"]))
        parts.append(t("<p><b>Simulation</b>: ") + f"V {r['value_before']:g} → {r['value_after']:g} "
                     f"= (1 − {r['alpha']:g})·{r['value_before']:g} + {r['alpha']:g}·{r['best']:g}</p>"
                     + (f"<ul>{steps}</ul>" if steps else ""))
    if n.action == SUMMARY_ACTION and tree.run is not None and tree.run.method == "sra-mcts":
        parts.append(t("<p><b>Summary</b>: the search stopped at node {node} (V ≥ end_gate) before an answer "
                       "was stated; this is one greedy completion of the solution from there, and the run's "
                       "answer is read from it (SRA's summary step, written as a continuation rather than with "
                       "SRA's prompt).</p>", node=n.parent))
    if parts and tree.run is not None and tree.run.method == "sra-mcts" and tree.run.model == "arith-llama-3m":
        parts.append(f"<p><small>{t(EMBEDDED_SRA_NOTE)}</small></p>")
    return "".join(parts)


def ppm_html(tree: Tree, nid: int) -> str:
    """A process preference model's score of the path to ``nid`` and what the search did with it."""
    n = tree[nid]
    if n.score is None:
        return ""
    out = "<p>" + t("<b>PPM score</b> {score} from {model}: the process preference model's score of the "
                    "question and the steps up to this one", score=f"{n.score['score']:.3f}",
                    model=html.escape(n.score["model"]))
    if n.q_init is not None:
        out += t("; MCTS started this step's Q from it (one pseudo-visit)")
    if n.reward is not None and tree.run is not None and tree.run.config.get("reward") == "ppm":
        out += t("; the terminal reward is this score (the answer key is not used)")
    return out + ".</p>"


def node_details_html(tree: Tree, nid: int) -> str:
    """The method-specific details of node ``nid`` ("" when it has none)."""
    n = tree[nid]
    out = code_html(n.code) if n.code is not None else ""
    return out + sra_html(tree, nid) + ppm_html(tree, nid)


def pairs_html(tree: Tree, cfg: PairConfig = PairConfig()) -> str:
    """The tree's rStar-Math preference pairs as a table (or why there are none)."""
    pairs, note = pairs_from_tree(tree, cfg)
    if not pairs:
        return t("<p>No preference pairs: {why}.</p>", why=html.escape(t(note)))
    rows = "".join(f"<tr><td>{p.parent}</td><td>{p.chosen_node}: <code>{html.escape(p.chosen.strip())}</code></td>"
                   f"<td>{p.q_chosen:.3f}</td><td>{p.rejected_node}: <code>{html.escape(p.rejected.strip())}</code></td>"
                   f"<td>{p.q_rejected:.3f}</td></tr>" for p in pairs)
    rule = (t("that reach a wrong one, the chosen step's best continuation averaging a higher Q")
            if cfg.selection == "official" else t("that reach only wrong ones"))
    return (t("<p>{n} preference pairs (rStar-Math: among siblings, the top-{top} Q steps that reach a right answer "
              "against the bottom-{top} {rule}; Q margin ≥ {margin}). Export them with <code>thoughtscope "
              "export-pairs --session ID</code>.</p>", n=len(pairs), top=cfg.top, rule=rule, margin=f"{cfg.margin:g}")
            + t("<table><tr><th>after node</th><th>chosen</th><th>Q</th><th>rejected</th><th>Q</th></tr>")
            + f"{rows}</table>")
