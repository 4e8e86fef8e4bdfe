"""One lesson page, rendered: its words with the run's numbers filled in, the figure at the
page's moment, and the panel beside it. Pure functions (no Gradio events): the tab and the
tests call `render`.

`page_facts` computes every ``{field}`` the page's words may use from the recorded events (the
question, the answer, the chosen child, the entropies, the cut step…), so the words stay true
if a sample is re-recorded; a field the words use and the run does not give is a KeyError,
which tests/test_lessons.py catches for every page in both languages.

Not here: which run and moment a page shows (catalogue.py), the predict check (predict.py).
"""

from __future__ import annotations

import math

from app.lessons import catalogue as C
from app.lessons import predict
from engine import events as E
from engine.tree import Tree


def _first(events, cls, where=lambda ev: True):
    return next((ev for ev in events if isinstance(ev, cls) and where(ev)), None)


def _root_visits(events) -> list[int]:
    tree = Tree.fold(events)
    return [tree[c].visits for c in tree[0].children]


def _plain(text: str, **fields) -> str:
    return text.format(**fields)


def page_facts(page: C.Page, events, k: int, t=_plain) -> dict:
    """The fields a page's words may use, read from the run's first ``k`` events (and, for
    the words that look ahead, the whole run); words among them (right, wrong, agrees…) in
    the language of ``t``."""
    shown = events[:k]
    tree = Tree.fold(shown)
    run = tree.run
    f: dict = {"question": run.question if run else "", "gold": run.gold if run else "",
               "nodes": len(tree), "events": k, "of_events": len(events)}
    cfg = run.config if run else {}
    for key in ("c", "rollouts", "children", "samples", "low", "high", "max_rounds", "lowest"):
        if key in cfg:
            f[key] = f"{cfg[key]:g}" if isinstance(cfg[key], float) else cfg[key]
    final = _first(events, E.FinalAnswer)
    if final is not None:
        f["answer"] = final.answer
        f["rule"] = final.rule
        f["verdict"] = t({True: "right", False: "wrong", None: "unknown"}[final.correct])
    last = shown[-1] if shown else None
    if isinstance(last, E.Selected):
        f["chosen"], f["parent_visits"], f["select_rule"] = last.chosen, last.parent_visits, last.rule
        best = max(last.candidates, key=lambda r: r["q"])
        f["best_q_node"], f["best_q"], f["best_q_visits"] = best["node"], f"{best['q']:.3f}", best["visits"]
    if isinstance(last, E.TerminalReward):
        f["reward"], f["reward_answer"], f["reward_node"] = f"{last.reward:.3f}", last.answer, last.node
    if isinstance(last, E.Backprop):
        f["path"] = " → ".join(map(str, last.path))
    if isinstance(last, E.Expanded):
        f["expanded"], f["expanded_children"] = last.node, len(last.children)
    if page.panel == "predict":
        f["chosen"] = predict.next_selection(events, k).chosen
    if page.panel == "compare-c":
        small, big = C.run_events(C.MCTS_SMALL_C_RUN), C.run_events(C.MCTS_RUN)
        for name, evs in (("small", small), ("big", big)):
            tr = Tree.fold(evs)
            f[f"c_{name}"] = f"{tr.run.config['c']:g}"
            f[f"visits_{name}"] = " / ".join(map(str, _root_visits(evs)))
            f[f"answers_{name}"] = len({n.answer for n in tr.nodes if n.terminal and n.answer is not None})
            f[f"answer_{name}"] = tr.final.answer
            f[f"verdict_{name}"] = t("right" if tr.final.correct else "wrong")
    scores = [ev for ev in shown if isinstance(ev, E.StepScores)]
    if scores:
        f["round"] = scores[-1].round
        f["steps"] = len(scores[-1].steps)
    cut = _first(reversed(shown), E.StepCut)
    if cut is not None:
        f["cut_step"] = "—" if cut.node is None else cut.index + 1
        f["kept"] = len(cut.kept)
    first_answer = _first(events, E.RoundAnswer)
    if first_answer is not None:
        f["first_answer"] = first_answer.answer
    clusters = _first(shown, E.ClustersFormed, lambda ev: ev.mode == "strict")
    if clusters is not None:
        f["clusters"] = len(clusters.clusters)
        f["largest"] = max(len(c) for c in clusters.clusters)
        f["samples_n"] = sum(len(c) for c in clusters.clusters)
        f["ln_n"] = f"{math.log(f['samples_n']):.3f}"
    ent = _first(shown, E.EntropyMeasured, lambda ev: ev.mode == "strict")
    if ent is not None:
        for est in ("discrete", "rao", "mc2023", "naive"):
            f[est] = f"{getattr(ent, est):.3f}"
    routed = _first(shown, E.RetrievalRouted)
    if routed is not None:
        from app.se_tab import DECISION_WORDS
        f["decision"], f["route_value"] = t(DECISION_WORDS[routed.decision]), f"{routed.value:.3f}"
    if final is not None and final.alternatives:
        for key, value in final.alternatives.items():
            f[f"alt_{key}"] = value
    table = _first(shown, E.CandidateTable)
    cands = _first(shown, E.CandidatesCollected)
    if cands is not None:
        f["candidates"] = len(cands.candidates)
        f["generator_answer"] = cands.generator_answer
    completion = _first(reversed(shown), E.DiscriminatorCompletion)
    if completion is not None:
        f["cand"], f["completion_answer"] = completion.candidate, completion.answer
        f["agrees"] = t("agrees" if completion.agrees else "disagrees")
    verdict = _first(reversed(shown), E.DiscriminatorVerdict)
    if verdict is not None:
        f["agree"], f["agree_of"], f["needed"] = verdict.agree, verdict.of, verdict.needed
        f["consistent"] = t("mutually consistent" if verdict.consistent else "not mutually consistent")
    if table is not None:
        f["consistent_count"] = sum(1 for r in table.rows if r.get("consistent"))
    return f


def sampling_view(page: C.Page):
    """(PositionView, LabConfig, the position's record) of a sampling page: the recorded logits
    seen through min-p, top-p and top-k at the page's temperature (engine/sampling_lab.py)."""
    import torch

    from engine.sampling_lab import LabConfig, position_view
    data = C.sampling_data()
    rec = data["positions"][page.position]
    cfg = LabConfig(temperature=page.temperature)
    view = position_view(torch.tensor(rec["logits"]), rec["token_id"], cfg, lambda i: data["vocab"][i],
                         rec["position"])
    return view, cfg, rec


def _sampling_facts(page: C.Page, t) -> dict:
    view, cfg, rec = sampling_view(page)
    data = C.sampling_data()
    ids = data["token_ids"][:rec["position"]]
    line = "".join(data["vocab"][i] for i in ids).split("\n")[-1]
    top = view.top
    return {"T": f"{cfg.temperature:g}", "min_p": f"{cfg.min_p:g}", "top_p": f"{cfg.top_p:g}",
            "pool_min_p": view.pool["min_p"], "pool_top_p": view.pool["top_p"], "vocab": len(data["vocab"]),
            "p_max": f"{view.p_max:.3f}", "threshold": f"{view.threshold:.4f}", "line": line.strip(),
            "drawn": view.drawn, "first": top[0].text, "p_first": f"{top[0].p_t:.3f}",
            "second": top[1].text, "p_second": f"{top[1].p_t:.3f}",
            "mass_min_p": f"{view.pool_mass['min_p']:.0%}", "mass_top_p": f"{view.pool_mass['top_p']:.0%}"}


def figure(page: C.Page, events, k: int):
    """The plotly figure of the page's moment."""
    if page.figure == "sampling":
        from app.sampling_figures import pool_figure
        view, cfg, _ = sampling_view(page)
        return pool_figure(view, cfg)
    shown = list(events[:k])
    if page.figure == "tree":
        from app.mcts_tab import figure_for
        return figure_for(Tree.fold(shown))
    if page.figure == "leco":
        from app.leco_tab import heatmap_figure
        return heatmap_figure(shown)
    from app.se_tab import bubble_figure, fold, threshold_figure
    view = fold(shown, "strict")
    if page.figure == "se-clusters":
        return bubble_figure(view)
    run = Tree.fold(shown).run
    return threshold_figure(view, run.config["low"], run.config["high"], run.config["route_on"])


def panel(page: C.Page, events, k: int, t) -> str:
    """The markdown beside the figure (``t``: the translator, app/i18n.py's `t`)."""
    shown = list(events[:k])
    tree = Tree.fold(shown)
    if page.panel == "explain":
        from app.replay import explain
        return explain(tree, shown[-1] if shown else None)
    if page.panel == "predict":
        return predict.reveal(events, k, None, t)["markdown"].split("\n")[0]
    if page.panel == "final":
        from app.replay import final_markdown
        return final_markdown(tree) if tree.final else t("No answer yet at this moment.")
    if page.panel == "compare-c":
        f = page_facts(page, events, k, t)
        return "\n".join([
            "| c | " + " | ".join([t("root children's visits"), t("distinct answers found"), t("answer")]) + " |",
            "|---|---|---|---|",
            f"| {f['c_small']} | {f['visits_small']} | {f['answers_small']} | {f['answer_small']} ({f['verdict_small']}) |",
            f"| {f['c_big']} | {f['visits_big']} | {f['answers_big']} | {f['answer_big']} ({f['verdict_big']}) |"])
    if page.panel == "leco":
        from app.leco_tab import summary_markdown
        return summary_markdown(shown)
    if page.panel in ("se-numbers", "se-answers"):
        from app.se_tab import fold, numbers_markdown, retrieval_markdown
        view = fold(shown, "strict")
        if page.panel == "se-numbers":
            return numbers_markdown(view, tree.run.config["route_on"])
        lines = [f"| {t('sample')} | {t('answer')} | {t('cluster')} |", "|---|---|---|"]
        c = view["clusters"]
        cluster_of = {n: i + 1 for i, members in enumerate(c.clusters) for n in members} if c else {}
        for nid, ev in view["samples"].items():
            lines.append(f"| {nid} | {ev.answer if ev.answer is not None else '—'} | {cluster_of.get(nid, '—')} |")
        return "\n".join(lines) if page.panel == "se-answers" else retrieval_markdown(view)
    if page.panel == "sampling":
        from app.sampling_tab import position_markdown
        view, cfg, _ = sampling_view(page)
        return position_markdown(view, cfg)
    if page.panel == "rstar":
        from app.rstar_view import discriminator_markdown
        return discriminator_markdown(tree)
    raise ValueError(f"panel must be a known panel kind, got {page.panel!r}")


def render(lesson_id: str, page_no: int, lang: str, t) -> dict:
    """Everything a page shows: title, words, figure, panel, and the predict choices (or None)."""
    page = C.page_of(lesson_id, page_no)
    events = C.run_events(page.run)
    k = page.moment.resolve(list(events))
    words = C.content(lang)[lesson_id]
    pw = words["pages"][page_no - 1]
    facts = _sampling_facts(page, t) if page.figure == "sampling" else page_facts(page, events, k, t)
    return {"lesson": lesson_id, "page": page_no, "pages": len(C.lesson(lesson_id).pages), "k": k,
            "lesson_title": words["title"], "title": pw["title"].format_map(facts), "text": pw["text"].format_map(facts),
            "figure": figure(page, events, k), "panel": panel(page, events, k, t),
            "choices": predict.choices(events, k) if page.panel == "predict" else None}
