"""The Search tab: run MCTS or a baseline and watch the tree grow; replay it event by event.

A run is a generator callback: it iterates the method's events, appends each to the store as
it happens (a crash keeps the run up to its last event), folds it into the tree, and redraws
at most every REDRAW_S seconds. Stop sets a per-user flag that the method polls between model
calls, so the search ends at once and still records its partial tree and answer.

The view (events of the run on screen) lives in ``gr.State``; the timeline slider and the phase
stepper fold a prefix of those events (app/replay.py). Callbacks are plain functions.

Not here: the stored-run machinery shared with the LECO and SE tabs (app/recording.py) and the
node inspector (app/inspector.py); both are re-exported for the callers that import them from here.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any

import gradio as gr

from app.auth import user_store, with_request
from app.compare_tab import cost_line
from app.controls import Slider
from app.figures import TOKENS_CSS
from app.i18n import t
from app.generate_tab import MODEL_QUEUE, RunControl, limit_hint, new_pick_state, question_picker, run_gold
from app.inspector import forced_html, inspect_node, show_pairs  # noqa: F401  (forced_html: tests and other tabs)
from app.problem_set import problem_set_panel
from app.recording import (STOPPING, Recording, checked_seed, create_session, fail_session,  # noqa: F401
                           make_config, stop_search, stop_settled)
from app.replay import explain, final_markdown, phase_points, progress_markdown, step_to
from app.restore import SEARCH_SETTINGS
from app.rstar_view import discriminator_markdown, discriminator_progress, is_rstar
from app.tree_figure import tree_figure
from app.triage_view import COLOUR_CHOICES, coloured_figure, first_wrong, recolour, tally_markdown
from engine import events as E
from engine.demo_model.problems import TIERS, load_problems
from engine.evaluation.evaluate import HELDOUT
from engine.search import METHODS
from engine.search.common import ANSWER_RULES
from engine.search.rstar_discriminator import CONSISTENCY_RULES
from engine.tree import Tree

REDRAW_S = 0.3          # live redraws at most ~3 per second
CONSISTENCY_WORDS = {"mid": "mid: at least half of the completions agree",          # t() keys
                     "loose": "loose: at least one completion agrees",
                     "strict": "strict: every completion agrees",
                     "maj": "maj: the completions' majority answer is the candidate's"}
REWARD_CHOICES = [("self-consistency: share of the answer among answers found (no answer key)", "self_consistency"),
                  ("answer key: +1 right / −1 wrong (uses the gold answer — analysis only)", "gold"),
                  ("PPM: the process preference model's score of the path (no answer key)", "ppm")]   # t() keys


def figure_for(tree: Tree, highlight: list[int] | None = None):
    """The tree figure: colour = Q, or colour = action for rStar."""
    return tree_figure(tree, highlight=highlight, colour_by="action" if is_rstar(tree) else "q")


def final_for(tree: Tree) -> str:
    """The answer, and for rStar a line on the discriminator's progress (its panels are below)."""
    text = final_markdown(tree)
    return text + "\n\n" + discriminator_progress(tree) if is_rstar(tree) and tree.candidates else text


def rstar_panel(view: dict | None, k=None) -> str:
    """The full-width rStar panel for the first k events: the candidates table and every
    candidate's cuts, completions and verdict ("" for other methods)."""
    if not view or not view.get("events"):
        return ""
    events = view["events"]
    tree = Tree.fold(events[:int(k) if k is not None else None])
    return discriminator_markdown(tree) if is_rstar(tree) else ""


def view_outputs(events: list[E.Event], k: int | None = None, *, live: bool = False):
    """(figure, progress, final, explanation) for the first k events (all when None)."""
    k = len(events) if k is None else max(0, min(int(k), len(events)))
    tree = Tree.fold(events[:k])
    highlight = tree.last_path if live or (k < len(events)) else None
    fig = figure_for(tree, highlight=highlight) if len(tree) else None
    return fig, progress_markdown(tree), final_for(tree), explain(tree, events[k - 1] if k else None)


def run_search(backend, store, question: str, picked: dict | None, method: str, rollouts, children, c,
               max_depth, temperature, min_p, reward, final_rule, samples, beam_width, seed, control: RunControl,
               one_step_thoughts=3, subquestions=3, votes=10, final_votes=10, discriminate=True, cut_mode="words",
               cuts=4, consistency="mid", gold_fallback=False, discriminator_model="",
               check="runs", self_eval="prompt", reflection="common", gold_answer=None, resample=0,
               drop_failed=False, request: gr.Request = None):
    """Generator callback: yields (plot, progress, final, explanation, view, slider) as the run grows.
    The arguments after ``control`` are rStar's, then code-verified MCTS's and SRA-MCTS's (other
    methods ignore them), then the gold box's text (`run_gold`), then code-verified MCTS's
    failed-step handling (last, so API callers written before it keep working). The run is stored as the
    logged-in user's (app/auth.py)."""
    store = user_store(store, request)
    seed = checked_seed(backend, question, seed)
    gold = run_gold(question, gold_answer, picked)
    cfg = make_config(method, dict(rollouts=rollouts, children=children, c=c, max_depth=max_depth,
                                   temperature=temperature, min_p=min_p, reward=reward, final_rule=final_rule,
                                   samples=samples, beam_width=beam_width, one_step_thoughts=one_step_thoughts,
                                   subquestions=subquestions, votes=votes, final_votes=final_votes,
                                   discriminate=discriminate, cut_mode=cut_mode, cuts=cuts, consistency=consistency,
                                   gold_fallback=gold_fallback, discriminator_model=discriminator_model or "",
                                   check=check, self_eval=self_eval, reflection=reflection,
                                   resample=resample, drop_failed=drop_failed))
    if getattr(cfg, "reward", None) == "gold" and gold is None:
        raise gr.Error(t("The answer-key reward needs a gold answer: pick a problem, type one in the Gold answer "
                         "box, or use self-consistency."), print_exception=False)
    control.reset()
    rec = Recording(store, backend, method, question, gold, cfg, seed)
    tree = Tree()
    last = 0.0
    for ev in rec.follow(METHODS[method].run(question.strip(), backend, config=cfg, seed=seed, gold=gold,
                                             should_stop=control.stopped)):
        tree.apply(ev)
        now = time.perf_counter()
        if now - last >= REDRAW_S and len(tree):
            last = now
            yield (figure_for(tree, highlight=tree.last_path), progress_markdown(tree),
                   discriminator_progress(tree) if is_rstar(tree) else "",
                   explain(tree, ev), {"session_id": rec.sid, "events": rec.events},
                   gr.Slider(maximum=len(rec.events), value=len(rec.events)))
    fig, progress, final, expl = view_outputs(rec.events)
    yield (fig, progress + " · " + t("session `{id}`", id=rec.sid) + control.limit_note(), final, expl,
           {"session_id": rec.sid, "events": rec.events}, gr.Slider(maximum=len(rec.events), value=len(rec.events)))


def discriminator_choices(backend) -> list[tuple[str, str]]:
    """rStar's discriminator: the generator's own model, or another installed embedded model
    (loaded on first use)."""
    from engine.models.registry import EMBEDDED
    others = [(f"{m.name} ({m.parameters})", m.name) for m in EMBEDDED.values()
              if m.name != backend.info.name and m.path() is not None]
    return [(t("the generator's own model (named in the header)"), "")] + others


def run_ended(view: dict | None, control: RunControl):
    """After a run, however it ended: the progress line again where Stop was pressed, so the
    "Stopping…" that Stop wrote (it may arrive after the run's last update) does not stay."""
    if not control.end():
        return gr.skip()
    if not view or not view.get("events"):
        return t("Stopped.")
    tree = Tree.fold(view["events"])
    return (progress_markdown(tree) + " · " + t("stopped · session `{id}`", id=view["session_id"])
            + control.limit_note())


def cleared_inspector() -> tuple[str, str, str]:
    """(inspector, pairs, rStar panel) emptied as a new run starts: they spoke of the last run."""
    return "", "", ""


def replay_to(view: dict | None, k):
    if not view or not view.get("events"):
        return None, "", "", t("Run a search or open a session first.")
    return view_outputs(view["events"], k)


def step_phase(view: dict | None, k, direction: int):
    """Jump the timeline to the previous or next phase of an iteration."""
    if not view or not view.get("events"):
        return 0, None, "", "", t("Run a search or open a session first.")
    events = view["events"]
    k = step_to(phase_points(events), int(k or 0), direction)
    return (k, *view_outputs(events, k))


def method_note(backend, method: str = "mcts") -> str:
    """What the code sandbox is (code-verified MCTS) and what SRA-MCTS can do on this model, said
    when that method is chosen ("" for the others)."""
    from engine import sandbox
    lines = []
    if method == "mcts-code":
        lines.append(t("*MCTS, code-verified*: model-written code runs in the sandbox — {sandbox}.",
                       sandbox=sandbox.describe()))
    if method == "sra-mcts" and backend.info.name == "arith-llama-3m":
        lines.append(t("*SRA-MCTS*: the embedded model was never trained to reflect or score its steps; its "
                       "reflections and 0–10 scores are shown as written (unparsable scores count as 5), and its "
                       "'reflections' are usually the next step itself, which derails the guided children. "
                       "`--reflection simple --self-eval confidence` (CLI) is the setting this model can use."))
    return "\n\n".join(f"<small>{x}</small>" for x in lines)


def method_settings(backend, method: str) -> tuple:
    """What the page shows for a method: its note, the rStar accordion (rStar only), then one
    visibility per setting in `app.restore.SEARCH_SETTINGS` — shown when the method's config has
    that field, so a setting the method ignores is never on screen."""
    fields = {f.name for f in dataclasses.fields(METHODS[method].config)} if method in METHODS else set()
    return (method_note(backend, method), gr.update(visible=method == "rstar"),
            *(gr.update(visible=name in fields) for name in SEARCH_SETTINGS))


def method_defaults(method: str):
    """The method's own max depth, exploration constant and temperature, put into the sliders
    when the method changes (MCTS: depth 8, c = 2, T = 0.8; rStar: depth 5; SRA-MCTS: c = 0.5,
    T = 0.7 from its official code). A slider the method has no field for is left alone."""
    cls = METHODS[method].config if method in METHODS else None
    names = {f.name: f.default for f in dataclasses.fields(cls)} if cls else {}
    return tuple(gr.update(value=names[k]) if k in names else gr.update()
                 for k in ("max_depth", "c", "temperature"))


def build_mcts_tab(backend, store, *, problems_path: str | Path | None = None,
                   run_limit_s: float | None = None) -> dict:
    """Build the tab inside an open ``gr.Tab``; ``run_limit_s`` ends each run that long after it
    starts (classroom mode, `RunControl`). In classroom mode (``store`` an `app.auth.Access`
    with ``multi_user``) a problem set is uploaded, never read from a path on the server."""
    path = Path(problems_path) if problems_path is not None else HELDOUT
    problems = {tier: load_problems(path, tier) for tier in TIERS}
    c: dict[str, Any] = {"picked": gr.State(new_pick_state("search")), "control": gr.State(RunControl(run_limit_s)),
                         "view": gr.State(None)}
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=340):
            question_picker(c, problems, elem_prefix="ts-search", gold_box=True)
            problem_set_panel(c, allow_paths=not getattr(store, "multi_user", False))
            c["method"] = gr.Dropdown([(t(m.label), m.name) for m in METHODS.values()], value="mcts",
                                      label=t("Method"))
            c["method_note"] = gr.Markdown(method_note(backend), elem_id="ts-method-note")
            with gr.Accordion(t("Settings"), open=False):
                with gr.Row():
                    c["rollouts"] = Slider(1, 200, value=16, step=1, label=t("Rollouts (MCTS)"))
                    c["children"] = Slider(1, 8, value=3, step=1, label=t("Children per expansion"))
                with gr.Row():
                    c["c"] = Slider(0, 5, value=2.0, step=0.1, label=t("Exploration c (UCT)"))
                    c["max_depth"] = Slider(1, 16, value=8, step=1, label=t("Max depth (steps)"))
                with gr.Row():
                    c["temperature"] = Slider(0, 2, value=0.8, step=0.05, label=t("Temperature"))
                    c["min_p"] = Slider(0, 1, value=0.0, step=0.01, label=t("Min-p"))
                c["reward"] = gr.Radio([(t(label), v) for label, v in REWARD_CHOICES], value="self_consistency",
                                       label=t("Reward (MCTS)"))
                c["final_rule"] = gr.Radio([(t(r), r) for r in ANSWER_RULES], value="majority",
                                           label=t("Final answer rule (MCTS)"))
                with gr.Row():
                    c["samples"] = Slider(1, 64, value=8, step=1, label=t("Samples (sc, best-of-N)"))
                    c["beam_width"] = Slider(1, 8, value=3, step=1, label=t("Beam width"))
                with gr.Row():
                    c["check"] = gr.Dropdown([(t("code runs (rStar-Math)"), "runs"),
                                              (t("code runs and agrees with its comment"), "runs_and_claim")],
                                             value="runs", label=t("Step check (code-verified MCTS)"))
                    c["self_eval"] = gr.Dropdown([(t("the model writes Score: N (SRA-MCTS)"), "prompt"),
                                                  (t("10 × mean token probability (substitute)"), "confidence")],
                                                 value="prompt", label=t("Self-evaluation (SRA-MCTS)"))
                    c["reflection"] = gr.Dropdown([(t("guides the children (common)"), "common"),
                                                   (t("only ends a path (simple)"), "simple")],
                                                  value="common", label=t("Reflection (SRA-MCTS)"))
                with gr.Row():
                    c["resample"] = Slider(0, 16, value=0, step=1,
                                           label=t("Resample failed steps (code-verified MCTS)"))
                    c["drop_failed"] = gr.Checkbox(False, label=t("Drop failed steps (rStar-Math's filter)"))
                c["seed"] = gr.Number(0, precision=0, minimum=0, label=t("Seed"))
            with gr.Accordion(t("rStar settings"), open=False, visible=False) as c["rstar_settings"]:
                with gr.Row():
                    c["one_step_thoughts"] = Slider(1, 8, value=3, step=1, label=t("One-step thoughts (A1)"))
                    c["subquestions"] = Slider(1, 8, value=3, step=1, label=t("Sub-questions (A3)"))
                with gr.Row():
                    c["votes"] = Slider(1, 32, value=10, step=1, label=t("Votes per sub-answer (A3, A4)"))
                    c["final_votes"] = Slider(1, 64, value=10, step=1, label=t("Votes per final answer (A2, last A3)"))
                c["discriminate"] = gr.Checkbox(True, label=t("Discriminator (mutual consistency)"))
                with gr.Row():
                    c["cut_mode"] = gr.Radio([(t("words, 20–50 % (official code)"), "words"),
                                              (t("whole steps at random (paper)"), "steps")],
                                             value="words", label=t("Cut the candidates by"))
                    c["cuts"] = Slider(1, 8, value=4, step=1, label=t("Cuts per candidate"))
                c["consistency"] = gr.Radio([(t(CONSISTENCY_WORDS[r]), r) for r in CONSISTENCY_RULES], value="mid",
                                            label=t("Consistent when (mid: at least half of the completions agree)"))
                c["discriminator_model"] = gr.Dropdown(discriminator_choices(backend), value="",
                                                       label=t("Discriminator model"))
                c["gold_fallback"] = gr.Checkbox(False, label=t("ANALYSIS ONLY: the official script's gold-answer "
                                                                "fallback (uses the answer key)"))
            with gr.Row():
                c["run"] = gr.Button(t("Run"), variant="primary", elem_id="ts-search-run")
                c["stop"] = gr.Button(t("Stop"), variant="stop", elem_id="ts-search-stop")
            c["limit_hint"] = limit_hint(run_limit_s, "search")
            c["progress"] = gr.Markdown("", elem_id="ts-search-progress")
            c["final"] = gr.Markdown("", elem_id="ts-search-final")
            c["cost"] = gr.Markdown("", elem_id="ts-search-cost")        # tokens beside comparable runs
            c["compare_with"] = gr.Button(t("Compare with…"), size="sm", elem_id="ts-search-compare")
            c["tally"] = gr.Markdown("", elem_id="ts-search-tally")      # answer tally and triage (app/triage_view.py)
        with gr.Column(scale=3, min_width=420):
            c["plot"] = gr.Plot(label=t("Search tree: colour = Q (rStar: action), size = visits; ★ right, ✗ wrong, "
                                        "□ no answer stated, ◆ unjudged"), elem_id="ts-search-plot")
            c["timeline"] = Slider(0, 1, value=0, step=1, label=t("Timeline (events folded)"), elem_id="ts-timeline")
            c["colour"] = gr.Radio([(t(label), v) for label, v in COLOUR_CHOICES], value="q", label=t("Colour by (rStar: its actions)"),
                                   elem_id="ts-search-colour")
            with gr.Row():
                c["prev_phase"] = gr.Button(t("◀ previous phase"), size="sm")
                c["next_phase"] = gr.Button(t("next phase ▶"), size="sm")
                c["first_wrong"] = gr.Button(t("Jump to first wrong step"), size="sm", elem_id="ts-search-first-wrong")
            c["wrong_note"] = gr.Markdown("", elem_id="ts-search-wrong-note")
            c["explain"] = gr.Markdown("", elem_id="ts-search-explain")
    with gr.Row():
        c["node_id"] = gr.Number(0, precision=0, minimum=0, label=t("Node id (hover a node to see it)"), scale=1,
                                 elem_id="ts-node-id")
        c["inspect"] = gr.Button(t("Inspect node"), size="sm", scale=0, elem_id="ts-inspect")
    c["inspector"] = gr.HTML("", css_template=TOKENS_CSS, elem_id="ts-inspector")
    c["rstar_panel"] = gr.Markdown("", elem_id="ts-rstar-panel")    # rStar's discriminator, full width
    c["show_pairs"] = gr.Button(t("Preference pairs of this tree (rStar-Math)"), size="sm")
    c["pairs"] = gr.HTML("", elem_id="ts-pairs")

    _, _, *shown = method_settings(backend, "mcts")          # the page opens on MCTS: only its settings
    for name, update in zip(SEARCH_SETTINGS, shown):
        c[name].visible = update["visible"]
    view_out = [c["plot"], c["progress"], c["final"], c["explain"]]
    c["run_event"] = c["run"].click(
        with_request(run_search, backend, store),
        inputs=[c["question"], c["picked"], c["method"], c["rollouts"], c["children"], c["c"], c["max_depth"],
                c["temperature"], c["min_p"], c["reward"], c["final_rule"], c["samples"], c["beam_width"],
                c["seed"], c["control"], c["one_step_thoughts"], c["subquestions"], c["votes"], c["final_votes"],
                c["discriminate"], c["cut_mode"], c["cuts"], c["consistency"], c["gold_fallback"],
                c["discriminator_model"], c["check"], c["self_eval"], c["reflection"], c["gold_answer"],
                c["resample"], c["drop_failed"]],
        outputs=[*view_out, c["view"], c["timeline"]], api_name="run_search",
        concurrency_limit=1, concurrency_id=MODEL_QUEUE)
    c["run"].click(cleared_inspector, outputs=[c["inspector"], c["pairs"], c["rstar_panel"]],
                   api_visibility="private", queue=False)
    c["run"].click(lambda: "", outputs=[c["cost"]], api_visibility="private", queue=False)   # the last run's cost
    panel = dict(fn=rstar_panel, inputs=[c["view"], c["timeline"]], outputs=[c["rstar_panel"]],
                 api_visibility="private")
    c["run_event"].then(**panel)
    c["run_event"].then(with_request(cost_line, store), inputs=[c["view"]], outputs=[c["cost"]],
                        api_visibility="private")
    c["run_event"].then(run_ended, inputs=[c["view"], c["control"]], outputs=[c["progress"]], api_visibility="private")
    c["stop"].click(stop_search, inputs=[c["control"]], outputs=[c["progress"]], api_name="stop_search",
                    concurrency_limit=None, queue=False)   # Stop works even when the queue is full
    # input: a drag, and a value typed in the slider's box (Enter sends no release: only a drag or a blur does)
    c["timeline"].input(replay_to, inputs=[c["view"], c["timeline"]], outputs=view_out,
                        api_visibility="private", trigger_mode="always_last").then(**panel)
    for name, direction in (("prev_phase", -1), ("next_phase", 1)):
        c[name].click(functools.partial(step_phase, direction=direction), inputs=[c["view"], c["timeline"]],
                      outputs=[c["timeline"], *view_out], api_visibility="private").then(**panel)
    # only a choice by hand: opening a stored run sets the method and its own settings together
    c["method"].input(method_defaults, inputs=[c["method"]], outputs=[c["max_depth"], c["c"], c["temperature"]],
                       api_visibility="private")
    c["method"].change(functools.partial(method_settings, backend), inputs=[c["method"]],
                       outputs=[c["method_note"], c["rstar_settings"], *(c[k] for k in SEARCH_SETTINGS)],
                       api_visibility="private")
    # triage (app/triage_view.py): the tally follows the timeline; another colour redraws the tree
    c["timeline"].change(tally_markdown, inputs=[c["view"], c["timeline"]], outputs=[c["tally"]],
                         api_visibility="private", trigger_mode="always_last")
    c["timeline"].change(recolour, inputs=[c["view"], c["timeline"], c["colour"]], outputs=[c["plot"]],
                         api_visibility="private", trigger_mode="always_last")
    c["colour"].input(coloured_figure, inputs=[c["view"], c["timeline"], c["colour"]], outputs=[c["plot"]],
                      api_visibility="private")
    c["first_wrong"].click(first_wrong, inputs=[c["view"], c["timeline"], c["colour"]],
                           outputs=[c["node_id"], c["inspector"], c["plot"], c["wrong_note"]], api_name="first_wrong_step")
    c["run"].click(lambda: "", outputs=[c["wrong_note"]], api_visibility="private", queue=False)
    c["show_pairs"].click(show_pairs, inputs=[c["view"], c["timeline"]], outputs=[c["pairs"]],
                          api_visibility="private")
    c["inspect"].click(inspect_node, inputs=[c["view"], c["node_id"], c["timeline"]], outputs=[c["inspector"]],
                       api_visibility="private")
    return c
