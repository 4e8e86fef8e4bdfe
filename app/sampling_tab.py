"""The Sampling lab tab: min-p, top-p and top-k pools token by token, the engines' stage
orders side by side, branching a generation, and the temperature sweep.

Generate once (greedy or with one sampler); the run's raw logits stay in the per-user state,
so moving the position slider or changing a sampler value re-views the same generation at
once, without running the model. The model is either the app's own or an embedded one
(``smollm2-135m`` for open-ended text with wide pools), loaded on first use and shared by
every user (`BackendPool`).

Callbacks are plain module-level functions (values in, values out); bad input becomes a
`gr.Error` with the engine's one-line message.

Not here: the figures (app/sampling_figures.py), pools and orders (engine/sampling_lab.py).
"""

from __future__ import annotations

import functools
import html
import threading
from pathlib import Path
from typing import Any

import gradio as gr

from app.auth import refuse_server_paths
from app.controls import Slider
from app.figures import TOKENS_CSS, token_span
from app.inspector import forced_span
from app.i18n import message, per_request, t
from app.generate_tab import MODEL_QUEUE, gold_for, gold_markdown, new_pick_state, pick_random_problem
from app.number_notes import min_p_note
from app.sampling_figures import (empty_figure, generation_figure, orders_figure, pool_figure, sweep_figure,
                                  top_tokens)
from engine.demo_model.problems import load_problems
from engine.evaluation.evaluate import HELDOUT, SOLUTION_STOP
from engine.inputs import MAX_SEED, whole
from engine.models.base import MAX_NEW_TOKENS_LIMIT, ModelLoadError
from engine.sampling import MAX_TOP_K, STAGES, TRANSFORMERS_ORDER
from engine.sampling_lab import (DRAW_LABELS, DRAWS, VIEW_LABELS, VIEWS, LabConfig, branch, engine_orders,
                                 full_distribution, run_lab, views)
from engine.steps import answers_equal, extract_answer
from engine.evaluation.sweep import load_sweep, sweep_table

SWEEP_FILE = Path(__file__).resolve().parents[1] / "assets" / "sweeps" / "temperature_sweep.json"
TOP_N = 20                  # tokens shown per position
ORDER_TOKENS = 12           # tokens shown in the order comparison
DEFAULT_MAX_NEW_TOKENS = 100
OPEN_PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
STAGE_LABELS = {"temperature": "temperature", "top_k": "top-k", "top_p": "top-p", "min_p": "min-p"}   # t() keys
STAGE_NUMBERS = ("stage 1", "stage 2", "stage 3", "stage 4")                                          # t() keys


class BackendPool:
    """The models the lab offers: the app's own backend and the embedded models, each loaded on
    first use (a few seconds) and then kept. Shared by all users, like the app's backend."""

    def __init__(self, backend, loader=None):
        from engine.models.registry import EMBEDDED, load_backend
        self._loaded = {backend.info.name: backend}
        self._loader = loader or load_backend
        self._lock = threading.Lock()
        self.choices = list(dict.fromkeys([backend.info.name, *EMBEDDED]))

    def get(self, name: str):
        if name not in self.choices:
            raise ValueError(f"model must be one of {self.choices}, got {name!r}")
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = self._loader(name)        # ModelLoadError says how to install it
            return self._loaded[name]

    def loaded(self, name: str) -> bool:
        return name in self._loaded


def _error(e: Exception) -> gr.Error:
    return gr.Error(message(e), print_exception=False)


def lab_config(temperature: Any, min_p: Any, top_p: Any, top_k: Any) -> LabConfig:
    """The controls' values as a validated `LabConfig` (ValueError names the field)."""
    return LabConfig(temperature=temperature, min_p=min_p, top_p=top_p, top_k=whole(top_k, "top_k", 1, MAX_TOP_K),
                     top_n=TOP_N)


def model_note(pool: BackendPool, name: str) -> str:
    from engine.models.registry import EMBEDDED
    m = EMBEDDED.get(name)
    if pool.loaded(name):
        if not full_distribution(pool.get(name)):
            return t("⚠ **{name}** runs on a server, which returns only its top-k alternatives, not the whole "
                     "distribution the lab's pools are drawn from: choose a local model here.", name=name)
        return t("**{name}** is loaded.", name=name)
    if m is not None and m.path() is None:
        return f"⚠ {m.missing_message()}"
    return t("**{name}** loads on first use (a few seconds).", name=name) + (f" {m.description}." if m else "")


# ---- callbacks ----------------------------------------------------------------------------

def generate_lab(pool: BackendPool, model: str, question: str, draw: str, temperature: float, min_p: float,
                 top_p: float, top_k: float, seed: float, max_new_tokens: float, picked: dict | None = None):
    """Generate once and keep the run: ``(tokens HTML, summary, state, position slider)``; the
    slider starts at the position of highest entropy."""
    try:
        backend = pool.get(model)
        if draw not in DRAWS:
            raise ValueError(f"sampler must be one of {DRAWS}, got {draw!r}")
        cfg = lab_config(temperature, min_p, top_p, top_k)
        # the forced "Step 1:" (non-chat models) is part of the prompt, shown before the tokens as the tree shows it
        forced = backend.solution_prefix()
        prompt = backend.render_prompt(question if isinstance(question, str) else "") + forced
        run = run_lab(backend, prompt, draw=draw, cfg=cfg, seed=whole(seed, "seed", 0, MAX_SEED),
                      max_new_tokens=whole(max_new_tokens, "max_new_tokens", 1, MAX_NEW_TOKENS_LIMIT), stop=SOLUTION_STOP)
    except (ValueError, ModelLoadError) as e:
        raise _error(e) from None
    gen = run.generation
    how = t("greedy") if draw == "greedy" else t("{sampler} at T={temp}, seed {seed}", sampler=t(DRAW_LABELS[draw]),
                                                temp=f"{cfg.temperature:g}", seed=run.seed)
    parts = [t("**{n}** tokens from **{model}**, drawn {how}", n=len(gen.tokens), model=run.model, how=how)]
    answer = extract_answer(gen.text)
    gold = gold_for(question, picked)
    if answer is not None:
        parts.append(t("answer **{answer}**", answer=answer))
    if gold is not None:
        parts.append((t("✓ correct") if answers_equal(answer, gold) else t("✗ incorrect"))
                     + t(" (gold {gold})", gold=gold))
    spans = "".join(token_span(tok) for tok in gen.tokens)
    tokens_html = f'<div class="ts-tokens">{forced_span(forced)}{spans or "<i>" + t("(no tokens)") + "</i>"}</div>'
    state = {"run": run, "views": (cfg, run.positions)}
    # start at the most uncertain position: where the samplers disagree most
    start = max(run.positions, key=lambda v: v.entropy).position if run.positions else 0
    slider = Slider(minimum=0, maximum=max(len(gen.tokens) - 1, 0), value=start, step=1)
    return tokens_html, " · ".join(parts), state, slider


def _views(state: dict, cfg: LabConfig, token_text):
    """The run's position views at ``cfg`` (cached in the state for the last settings)."""
    run = state["run"]
    seen_cfg, seen = state.get("views", (None, None))
    if seen_cfg != cfg:
        seen = views(run.logits, run.generation.token_ids, cfg, token_text)
        state["views"] = (cfg, seen)
    return seen


def position_markdown(view, cfg: LabConfig) -> str:
    pools = " · ".join(t("{name}: **{n}** tokens ({mass} of the mass)", name=VIEW_LABELS[v], n=view.pool[v],
                         mass=f"{view.pool_mass[v]:.0%}")
                       + ("" if view.drawn_in[v] else t(" — drawn token outside")) for v in VIEWS)
    return (t("Position **{pos}**: drawn `{token}` (rank {rank}, p = {p} by the model, {pt} at T={temp}). p_max "
              "{pmax}, min-p threshold {minp} × p_max = {thr}, entropy {ent} nats.", pos=view.position,
              token=html.escape(view.drawn), rank=view.drawn_rank, p=f"{view.drawn_p:.3f}",
              pt=f"{view.drawn_p_t:.3f}", temp=f"{cfg.temperature:g}", pmax=f"{view.p_max:.3f}",
              minp=f"{cfg.min_p:g}", thr=f"{view.threshold:.4f}", ent=f"{view.entropy:.2f}")
            + f" {min_p_note(cfg.min_p, view.p_max)}\n\n"
            + t("Pools at T={temp}: {pools}", temp=f"{cfg.temperature:g}", pools=pools))


def orders_markdown(results, custom_error: str | None) -> str:
    lines = [t("| order | stages (pool size after each) | kept | top token's p |"), "| --- | --- | ---: | ---: |"]
    for r in results:
        stages = " → ".join(f"{t(STAGE_LABELS[s])} ({n})" for s, n in r.stages)
        lines.append(f"| {r.name} | {stages} | {r.size} | {r.probs[0]:.3f} |")
    notes = [f"*{r.name}*: {r.note}" for r in results if "not passed" in r.name]
    if custom_error:
        notes.append(f"⚠ {custom_error}")
    return "\n".join(lines) + ("\n\n" + "\n\n".join(notes) if notes else "")


def show_position(pool: BackendPool, state: dict | None, position: float, temperature: float, min_p: float,
                  top_p: float, top_k: float, s1: str, s2: str, s3: str, s4: str, orders_top_k: bool = False):
    """``(pool figure, position text, whole-generation figure, orders figure, orders table)``.

    The orders get the top-k value only when ``orders_top_k``; otherwise top-k is not passed,
    and the table shows that transformers' ``generate()`` still applies its default of 50."""
    if not state or not state.get("run") or not state["run"].generation.tokens:
        msg = t("Generate first: the pools of every position show here.")
        return empty_figure(msg), "", empty_figure(msg), empty_figure(msg), ""
    try:
        cfg = lab_config(temperature, min_p, top_p, top_k)
        run = state["run"]
        token_text = pool.get(run.model).token_text
        positions = _views(state, cfg, token_text)
        at = min(whole(position, "position", 0, MAX_SEED), len(positions) - 1)
    except ValueError as e:
        raise _error(e) from None
    view = positions[at]
    custom, custom_error = (s1, s2, s3, s4), None
    if sorted(custom) != sorted(STAGES):
        custom_error = (f"the hand-made order must use each stage once (temperature, top-k, top-p, min-p), "
                        f"got {', '.join(map(str, custom))}")
        custom = None
    results = engine_orders(run.logits[at], temperature=cfg.temperature, top_k=cfg.top_k if orders_top_k else 0,
                            top_p=cfg.top_p,
                            min_p=cfg.min_p, custom=custom)
    shown = top_tokens(run.logits[at], token_text, ORDER_TOKENS)
    return (pool_figure(view, cfg), position_markdown(view, cfg), generation_figure(positions, cfg, at),
            orders_figure(results, shown), orders_markdown(results, custom_error))


def branch_here(pool: BackendPool, state: dict | None, position: float, draw: str, temperature: float,
                min_p: float, top_p: float, top_k: float, seed: float, max_new_tokens: float) -> str:
    """Resample from ``position`` on with another sampler: both continuations side by side (HTML)."""
    if not state or not state.get("run"):
        raise gr.Error(t("generate first, then branch at a position"), print_exception=False)
    run = state["run"]
    try:
        backend = pool.get(run.model)
        cfg = lab_config(temperature, min_p, top_p, top_k)
        if draw not in DRAWS:
            raise ValueError(f"sampler must be one of {DRAWS}, got {draw!r}")
        b = branch(backend, run.prompt, run.generation, whole(position, "position", 0, MAX_SEED),
                   sampling=cfg.draw(draw), seed=whole(seed, "seed", 0, MAX_SEED),
                   max_new_tokens=whole(max_new_tokens, "max_new_tokens", 1, MAX_NEW_TOKENS_LIMIT), stop=SOLUTION_STOP)
    except (ValueError, ModelLoadError) as e:
        raise _error(e) from None
    prefix = html.escape(b.prefix).replace("\n", "<br>")
    forced = backend.solution_prefix() if run.prompt.endswith(backend.solution_prefix()) else ""
    old = "".join(token_span(t) for t in run.generation.tokens[b.position:])
    new = "".join(token_span(t) for t in b.generation.tokens)
    was = "greedy" if run.draw == "greedy" else f"{DRAW_LABELS[run.draw]}, T={run.sampling.temperature:g}"
    now = "greedy" if draw == "greedy" else f"{DRAW_LABELS[draw]}, T={cfg.temperature:g}, seed {b.seed}"

    def column(title: str, body: str, text: str) -> str:
        answer = extract_answer(b.prefix + text)
        tail = f"<p>answer: <b>{html.escape(str(answer))}</b></p>" if answer is not None else ""
        return (f'<div style="flex:1;min-width:300px"><h4>{html.escape(title)}</h4><div class="ts-tokens">'
                f'{forced_span(forced)}<span style="opacity:.55">{prefix}</span>{body}</div>{tail}</div>')
    return (f"<p>Kept the first {b.position} generated tokens (greyed) and resampled the rest.</p>"
            '<div style="display:flex;gap:14px;flex-wrap:wrap">'
            + column(f"original ({was})", old, b.original) + column(f"branch ({now})", new, b.generation.text)
            + "</div>")


def show_sweep(path: str, request: gr.Request = None):
    """``(figure, markdown table)`` of a sweep file written by ``thoughtscope sweep --out``.
    A shared (classroom) server shows only the shipped one: other paths would read its files."""
    if path and Path(str(path).strip()).expanduser().resolve() != SWEEP_FILE:
        refuse_server_paths(None, request, **{"The sweep file": path})
    if not path or not str(path).strip():
        return sweep_figure(None), t("Give the path of a sweep file.")
    if not Path(path).expanduser().exists():
        return sweep_figure(None), t("No sweep at `{path}` yet. Run e.g. `thoughtscope sweep --n 100 --out {path}` "
                                     "(accuracy on the hard tier per sampler and temperature).", path=path)
    try:
        data = load_sweep(Path(path).expanduser())
    except ValueError as e:
        raise _error(e) from None
    cfg = data["config"]
    return sweep_figure(data), (f"**{data['model']}**, {cfg['tier']} tier, n = {cfg['n']} problems per point, "
                                f"one sample each, seed {cfg['seed']}.\n\n" + sweep_table(data))


# ---- layout -------------------------------------------------------------------------------

def build_sampling_tab(backend, *, problems_path: str | Path | None = None, pool: BackendPool | None = None) -> dict:
    """Build the tab's components (inside an open ``gr.Tab``) and wire them; returns them by name."""
    pool = pool or BackendPool(backend)
    hard = load_problems(Path(problems_path) if problems_path is not None else HELDOUT, "hard")
    c: dict[str, Any] = {"picked": gr.State(new_pick_state("sampling")), "lab": gr.State(None), "pool": pool}
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            c["model"] = gr.Radio(pool.choices, value=pool.choices[0], label=t("Model"), elem_id="ts-lab-model")
            # a callable value: made at each page load, in that page's language
            c["model_note"] = gr.Markdown(per_request(lambda: model_note(pool, pool.choices[0])))
            c["question"] = gr.Textbox(label=t("Question or prompt"), lines=3, max_lines=10, elem_id="ts-lab-question",
                                       placeholder=t("An arithmetic problem, or open-ended text for SmolLM2."))
            with gr.Row():
                c["random"] = gr.Button(t("Random hard problem"), size="sm", elem_id="ts-lab-random")
                c["open"] = gr.Button(t("Open-ended prompt"), size="sm")
            c["gold"] = gr.Markdown("")
            c["draw"] = gr.Dropdown([(t(DRAW_LABELS[d]), d) for d in DRAWS], value="min_p",
                                    label=t("Draw the generation with"))
            c["temperature"] = Slider(0.05, 3, value=1.0, step=0.05, label=t("Temperature"),
                                      info=t("for drawing and for every view"))
            with gr.Row():
                c["min_p"] = Slider(0.01, 1, value=0.1, step=0.01, label=t("Min-p p_base"))
                c["top_p"] = Slider(0.01, 1, value=0.9, step=0.01, label=t("Top-p"))
                c["top_k"] = Slider(1, 200, value=40, step=1, label=t("Top-k"))
            with gr.Row():
                c["seed"] = gr.Number(0, precision=0, minimum=0, label=t("Seed"))
                c["max_new_tokens"] = gr.Number(DEFAULT_MAX_NEW_TOKENS, precision=0, minimum=1,
                                                label=t("Max new tokens"))
            c["generate"] = gr.Button(t("Generate"), variant="primary", elem_id="ts-lab-generate")
        with gr.Column(scale=3, min_width=420):
            c["summary"] = gr.Markdown("", elem_id="ts-lab-summary")
            c["tokens"] = gr.HTML("", css_template=TOKENS_CSS, elem_id="ts-lab-tokens")
            c["position"] = Slider(0, 1, value=0, step=1, label=t("Position (generated token)"),
                                   elem_id="ts-lab-position")
            c["pool_plot"] = gr.Plot(label=t("Pool at this position"), elem_id="ts-lab-pool")
            c["position_text"] = gr.Markdown("", elem_id="ts-lab-position-text")
    c["generation_plot"] = gr.Plot(label=t("Pool size, entropy and p_max per position"), elem_id="ts-lab-generation")
    with gr.Accordion(t("Engine orders: the same logits through transformers, vLLM V1, llama.cpp and your order"),
                      open=True):
        c["orders_top_k"] = gr.Checkbox(False, label=t("Pass the top-k value to the orders too (unchecked: top-k "
                                                       "not passed, and transformers' generate() still applies its "
                                                       "default 50)"))
        with gr.Row():
            c["stages"] = [gr.Dropdown([(t(STAGE_LABELS[s]), s) for s in STAGES], value=s, label=t(STAGE_NUMBERS[i]))
                           for i, s in enumerate(TRANSFORMERS_ORDER)]
        c["orders_plot"] = gr.Plot(label=t("Sampling probability under each order"), elem_id="ts-lab-orders")
        c["orders_text"] = gr.Markdown("", elem_id="ts-lab-orders-text")
    with gr.Accordion(t("Branch here: resample the rest from this position"), open=False):
        with gr.Row():
            c["branch_draw"] = gr.Dropdown([(t(DRAW_LABELS[d]), d) for d in DRAWS], value="plain",
                                           label=t("Branch with"))
            c["branch_temperature"] = Slider(0.05, 3, value=1.5, step=0.05, label=t("Branch temperature"))
            c["branch_seed"] = gr.Number(1, precision=0, minimum=0, label=t("Branch seed"))
            c["branch"] = gr.Button(t("Branch here"), elem_id="ts-lab-branch")
        c["branch_view"] = gr.HTML("", css_template=TOKENS_CSS, elem_id="ts-lab-branch-view")
    with gr.Accordion(t("Temperature sweep: accuracy per sampler (from `thoughtscope sweep --out FILE`)"), open=False):
        with gr.Row():
            c["sweep_path"] = gr.Textbox(str(SWEEP_FILE), label=t("Sweep file"), scale=4)
            c["sweep_load"] = gr.Button(t("Load"), size="sm", scale=1)
        fig, _ = show_sweep(str(SWEEP_FILE))
        c["sweep_plot"] = gr.Plot(fig, label=t("Accuracy against temperature"), elem_id="ts-lab-sweep")
        c["sweep_text"] = gr.Markdown(per_request(lambda: show_sweep(str(SWEEP_FILE))[1]))     # per page load, in its language

    c["model"].change(functools.partial(model_note, pool), inputs=[c["model"]], outputs=[c["model_note"]],
                      api_visibility="private")
    c["random"].click(functools.partial(pick_random_problem, hard, tier="hard"), inputs=[c["picked"]],
                      outputs=[c["question"], c["gold"], c["picked"]], api_visibility="private")
    c["open"].click(lambda: OPEN_PROMPT, outputs=[c["question"]], api_visibility="private")
    c["question"].change(gold_markdown, inputs=[c["question"], c["picked"]], outputs=[c["gold"]],
                         api_visibility="private", show_progress="hidden", trigger_mode="always_last")
    view_in = [c["lab"], c["position"], c["temperature"], c["min_p"], c["top_p"], c["top_k"], *c["stages"],
               c["orders_top_k"]]
    view_out = [c["pool_plot"], c["position_text"], c["generation_plot"], c["orders_plot"], c["orders_text"]]
    show = functools.partial(show_position, pool)
    c["generate"].click(
        functools.partial(generate_lab, pool),
        inputs=[c["model"], c["question"], c["draw"], c["temperature"], c["min_p"], c["top_p"], c["top_k"],
                c["seed"], c["max_new_tokens"], c["picked"]],
        outputs=[c["tokens"], c["summary"], c["lab"], c["position"]], api_name="lab_generate",
        concurrency_limit=1, concurrency_id=MODEL_QUEUE,
    ).success(show, inputs=view_in, outputs=view_out, api_visibility="private")
    c["position"].release(show, inputs=view_in, outputs=view_out, api_name="lab_position",
                          trigger_mode="always_last")
    for name in ("temperature", "min_p", "top_p", "top_k"):
        c[name].release(show, inputs=view_in, outputs=view_out, api_visibility="private",
                        trigger_mode="always_last")
    for stage in [*c["stages"], c["orders_top_k"]]:
        stage.change(show, inputs=view_in, outputs=view_out, api_visibility="private",
                     trigger_mode="always_last")
    c["branch"].click(functools.partial(branch_here, pool),
                      inputs=[c["lab"], c["position"], c["branch_draw"], c["branch_temperature"], c["min_p"],
                              c["top_p"], c["top_k"], c["branch_seed"], c["max_new_tokens"]],
                      outputs=[c["branch_view"]], api_name="lab_branch", concurrency_limit=1,
                      concurrency_id=MODEL_QUEUE)
    c["sweep_load"].click(show_sweep, inputs=[c["sweep_path"]], outputs=[c["sweep_plot"], c["sweep_text"]],
                          api_name="lab_sweep")
    return c
