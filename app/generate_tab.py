"""The Generate tab: one question, one sampled solution, every token coloured by probability.

Callbacks are plain module-level functions (values in, values out), tested without a
browser; `build_generate_tab` only lays out components and wires them to the callbacks.
Per-user state (the random problem on screen and the click counter that seeds the next
pick) lives in a `gr.State`, never in module globals.

Bad input (an empty question, a sampler value out of range, a prompt longer than the model
reads) becomes a `gr.Error` with the engine's message: no traceback reaches the page.

Not here: the token HTML (app/figures.py), the page header and serving (app/main.py).
"""

from __future__ import annotations

import functools
import math
import random
from pathlib import Path
import threading
import time
import zlib
from typing import Any, Sequence

import gradio as gr

from engine.demo_model.problems import TIERS, Problem, load_problems
from engine.events import USER_STOP
from engine.evaluation.evaluate import HELDOUT, SOLUTION_STOP   # SOLUTION_STOP: a solution never starts a new question
from engine.inputs import MAX_SEED, check_text, whole
from engine.models.base import MAX_NEW_TOKENS_LIMIT, InputError, Stopped
from engine.sampling import MAX_TOP_K, ORDERS, SamplingConfig
from engine.search.common import MAX_SOLUTION_TOKENS
from engine.steps import answers_equal, extract_answer

from app.controls import Slider
from app.i18n import message, per_request, t
from app.figures import TOKENS_CSS, TOOLTIP_JS, generation_html

DEFAULT_MAX_NEW_TOKENS = MAX_SOLUTION_TOKENS   # room for a fully worked hard solution
MODEL_QUEUE = "model"      # concurrency id shared by every event that runs the model
STOP_REASONS = {"stop": "stop string", "eos": "end of sequence", "length": "max new tokens reached"}   # t() keys
PICK_START_SPREAD = 100_000   # the range of a tab's first click count (new_pick_state)
GOLD_MAX_CHARS = 1000      # a gold answer typed by hand, as the CLI's --answer
# the random-problem buttons, one t() key each (a marker cannot be joined with a tier's name)
RANDOM_TIER = {"easy": "Random easy", "medium": "Random medium", "hard": "Random hard"}
RANDOM_TIER_PROBLEM = {"easy": "Random easy problem", "medium": "Random medium problem", "hard": "Random hard problem"}


def new_pick_state(tab: str = "") -> dict:
    """The per-user state: clicks so far (seeds the next pick) and the problem on screen. Each
    tab starts its count at its own number (from its name), so "Random hard" does not give the
    same first problem in every tab; a given tab still starts the same way every time."""
    return {"clicks": zlib.crc32(tab.encode()) % PICK_START_SPREAD if tab else 0, "id": None, "question": None,
            "answer": None}


def _same_question(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.strip() == b.strip()


def gold_for(question: str | None, picked: dict | None) -> int | None:
    """The gold answer of the shown random problem, if ``question`` is still its text."""
    if not picked or picked.get("answer") is None:
        return None
    return picked["answer"] if _same_question(question, picked.get("question")) else None


def run_gold(question: str, gold_answer, picked: dict | None) -> str | int | None:
    """The gold answer a run is marked against: the gold box's text (blank: none) when the form
    sends one, else (a caller without the box) the picked problem's while the question is still
    its own. A gold answer that is no usable text is a gr.Error."""
    if gold_answer is None:
        return gold_for(question, picked)
    try:
        check_text(gold_answer, "the gold answer", required=False, max_chars=GOLD_MAX_CHARS)
    except InputError as e:
        raise gr.Error(message(e), print_exception=False) from None
    return gold_answer.strip() or None


# ---- callbacks ----------------------------------------------------------------------------

def pick_random_problem(problems: Sequence[Problem], picked: dict | None,
                        tier: str = "") -> tuple[str, str, dict]:
    """A held-out problem chosen by ``random.Random(clicks)``: (question, gold markdown, state)."""
    state = dict(picked or new_pick_state())
    if not problems:
        raise gr.Error(t("no held-out {tier} problems are available", tier=tier) if tier
                       else t("no held-out problems are available"), print_exception=False)
    clicks = int(state.get("clicks") or 0)
    problem = random.Random(clicks).choice(list(problems))
    state.update(clicks=clicks + 1, id=problem.id, question=problem.question, answer=problem.answer)
    return problem.question, gold_markdown(problem.question, state), state


def gold_markdown(question: str | None, picked: dict | None) -> str:
    """The gold line under the question; gone (with a note) once the question is edited."""
    if not picked or picked.get("answer") is None:
        return ""
    if gold_for(question, picked) is None:
        return t("*Question edited: the gold answer of {id} no longer applies.*", id=picked["id"])
    return t("Gold answer: **{answer}** &nbsp;<small>({id})</small>", answer=picked["answer"], id=picked["id"])


def pick_random_with_gold(problems: Sequence[Problem], picked: dict | None,
                          tier: str = "") -> tuple[str, str, dict, str]:
    """`pick_random_problem`, and its gold answer as text for the editable gold box."""
    question, line, state = pick_random_problem(problems, picked, tier)
    return question, line, state, str(state["answer"])


def question_edited(question: str | None, gold_text: str | None, picked: dict | None) -> tuple[str, Any]:
    """(gold line, gold box) once the question changes: a picked problem's gold answer leaves the
    box when the question is no longer that problem's; a gold answer typed by hand stays (the
    box is left as it is: ``gr.update()``)."""
    line = gold_markdown(question, picked)
    stale = (bool(picked) and picked.get("answer") is not None and gold_for(question, picked) is None
             and (gold_text or "").strip() == str(picked["answer"]))
    return line, "" if stale else gr.update()


def question_picker(c: dict, problems: dict[str, Sequence[Problem]], *, elem_prefix: str,
                    gold_box: bool = False) -> None:
    """The question box, a "Random <tier>" button per tier and the gold line under it, built in
    the current layout and wired to the per-user pick state ``c["picked"]``; stored in ``c``.
    The Search and LECO tabs share it. With ``gold_box`` an editable "Gold answer" box
    (``c["gold_answer"]``) follows: a pick fills it, and a question typed by hand can be given
    its gold answer there."""
    c["question"] = gr.Textbox(label=t("Question"), lines=3, max_lines=10, elem_id=f"{elem_prefix}-question",
                               placeholder=t("Type a problem or pick a random one."))
    with gr.Row():
        for tier in problems:
            c[f"random_{tier}"] = gr.Button(t(RANDOM_TIER[tier]), size="sm", elem_id=f"{elem_prefix}-random-{tier}")
    c["gold"] = gr.Markdown("")
    picked_out = [c["question"], c["gold"], c["picked"]]
    pick, edited, edited_out = pick_random_problem, gold_markdown, [c["gold"]]
    if gold_box:
        c["gold_answer"] = gr.Textbox(label=t("Gold answer (optional: marks the answer right or wrong)"), max_lines=1,
                                      placeholder=t("e.g. 18"), elem_id=f"{elem_prefix}-gold-answer")
        picked_out = [*picked_out, c["gold_answer"]]
        pick, edited, edited_out = pick_random_with_gold, question_edited, [c["gold"], c["gold_answer"]]
    for tier, tier_problems in problems.items():
        c[f"random_{tier}"].click(functools.partial(pick, tier_problems, tier=tier),
                                  inputs=[c["picked"]], outputs=picked_out, api_visibility="private")
    c["question"].change(edited, inputs=[c["question"], *([c["gold_answer"]] if gold_box else []), c["picked"]],
                         outputs=edited_out, api_visibility="private", show_progress="hidden",
                         trigger_mode="always_last")


def _number(value: Any, name: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)


def make_sampling(temperature: Any, top_k: Any, top_p: Any, min_p: Any, order: str) -> SamplingConfig:
    """A validated `SamplingConfig` from the controls' values (ValueError names the field)."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {sorted(ORDERS)}, got {order!r}")
    return SamplingConfig(temperature=_number(temperature, "temperature"),
                          top_k=whole(top_k, "top_k", 0, MAX_TOP_K),
                          top_p=_number(top_p, "top_p"), min_p=_number(min_p, "min_p"),
                          order=ORDERS[order])


def summary_markdown(gen, gold: int | None, problem_id: str | None = None) -> str:
    """Token count, stop reason, mean token probability, the answer and, with a gold, the verdict."""
    n = len(gen.tokens)
    mean_p = sum(math.exp(t.logprob) for t in gen.tokens) / n if n else float("nan")
    answer = extract_answer(gen.text)
    reason = STOP_REASONS.get(gen.stop_reason)
    parts = [t("**{n}** tokens", n=n),
             t("stopped: {reason}", reason=t(reason) if reason else gen.stop_reason),
             t("mean token probability **{p}**", p=f"{mean_p:.3f}") if n else t("mean token probability —"),
             t("answer: **{answer}**", answer=answer) if answer is not None else t("answer: *none found*")]
    if gold is not None:
        verdict = t("✓ correct") if answers_equal(answer, gold) else t("✗ incorrect")
        parts.append(t("**{verdict}** (gold {gold}, {id})", verdict=verdict, gold=gold, id=problem_id) if problem_id
                     else t("**{verdict}** (gold {gold})", verdict=verdict, gold=gold))
    return " · ".join(parts)


class RunControl:
    """Per-user stop flag, and the server's time limit on one run. ``gr.State`` deep-copies its
    initial value for each browser session, so each user gets a fresh flag; a copy never shares
    the event with the original.

    With ``limit_s`` (seconds; classroom mode sets one, `serve --run-limit`), `stopped` also
    turns true that long after `reset`, so one student's huge search cannot hold the model
    queue (one run at a time) for the whole class; the run ends as if Stop were pressed and
    keeps what it found. `timed_out` tells the two apart for the message."""

    def __init__(self, limit_s: float | None = None) -> None:
        self._stop = threading.Event()
        self.limit_s = limit_s or None
        self._deadline: float | None = None
        self._hit_limit = False
        self.running = False

    def __deepcopy__(self, memo) -> "RunControl":
        return RunControl(self.limit_s)

    def request_stop(self) -> None:
        self._stop.set()

    def reset(self) -> None:
        """A new run starts: clear Stop and start the clock."""
        self._stop.clear()
        self._hit_limit = False
        self.running = True
        self._deadline = time.monotonic() + self.limit_s if self.limit_s else None

    def stopped(self) -> str:
        """What the method polls (engine.models.base.stop_if): "" while the run may go on, else
        why it must end — Stop pressed, or the limit passed since `reset`."""
        if self._stop.is_set():
            return USER_STOP
        if self._deadline is not None and time.monotonic() >= self._deadline:
            self._hit_limit = True
            return self.limit_reason()
        return ""

    def end(self) -> bool:
        """The run has ended, however it ended: whether Stop was pressed while it ran."""
        stopped, self.running = self.running and self._stop.is_set(), False
        return stopped

    def timed_out(self) -> bool:
        """Whether this run was told to stop by the limit (a run that ended by itself was not)."""
        return self._hit_limit

    def limit_reason(self) -> str:
        return f"stopped at this server's limit of {self.limit_s:g} s a run"

    def limit_note(self) -> str:
        """The progress line's note after a run that the limit stopped, else empty."""
        return (" · " + t("stopped at this server's limit of {s} s a run (kept what it found)", s=f"{self.limit_s:g}")
                if self.timed_out() else "")


def limit_hint(run_limit_s: float | None, tab: str) -> gr.Markdown | None:
    """Under a tab's Run button on a server with a run limit: a line that says so before anyone
    runs (None where there is no limit)."""
    if not run_limit_s:
        return None
    # a marker cannot carry a number: a callable value is made again at each page load, in its language
    return gr.Markdown(per_request(lambda: t("*This server stops each run after {s} s and keeps what it found by then.*",
                                             s=f"{run_limit_s:g}")), elem_id=f"ts-{tab}-limit")


def run_generation(backend, question: str, temperature: float, top_k: float, top_p: float,
                   min_p: float, order: str, max_new_tokens: float, seed: float,
                   picked: dict | None = None, control: RunControl | None = None,
                   store=None) -> tuple[str, str]:
    """Generate one solution: ``(token HTML, summary markdown)``; bad input -> `gr.Error`.
    Stop (``control``) is polled before every token; a stopped generation shows nothing new.
    With a ``store`` the run is stored as a session (app/generate_record.py) and the summary
    names it."""
    from app.generate_record import generation_events, record_generation
    started = time.perf_counter()
    try:
        prompt = backend.render_prompt(question if isinstance(question, str) else "")
        sampling = make_sampling(temperature, top_k, top_p, min_p, order)
        n_new = whole(max_new_tokens, "max_new_tokens", 1, MAX_NEW_TOKENS_LIMIT)
        seed_ = whole(seed, "seed", 0, MAX_SEED)
        if control is not None:
            control.reset()
        gen = backend.generate([prompt], sampling=sampling, stop=SOLUTION_STOP, max_new_tokens=n_new, seed=seed_,
                               should_stop=control.stopped if control is not None else None)[0]
    except ValueError as e:         # InputError is a ValueError
        raise gr.Error(message(e), print_exception=False) from None
    except Stopped:
        gen = None
    gold = gold_for(question, picked)
    saved = ""
    if store is not None:
        config = {"temperature": sampling.temperature, "top_k": sampling.top_k, "top_p": sampling.top_p,
                  "min_p": sampling.min_p, "order": order, "max_new_tokens": n_new}
        events = generation_events(backend, question, prompt, gold, config, seed_, gen,
                                   status="done" if gen is not None else "stopped",
                                   message="" if gen is not None else USER_STOP)
        saved = " · " + t("session `{id}`", id=record_generation(store, events, time.perf_counter() - started))
    if gen is None:
        return generation_html(None), t("Stopped.") + saved
    return generation_html(gen), summary_markdown(gen, gold, picked["id"] if gold is not None else None) + saved


def generate_stored(backend, store, question: str, temperature, top_k, top_p, min_p, order: str, max_new_tokens,
                    seed, picked: dict | None = None, control: RunControl | None = None,
                    request: gr.Request = None) -> tuple[str, str]:
    """The Generate button: `run_generation`, stored as the logged-in user's session."""
    from app.auth import user_store
    return run_generation(backend, question, temperature, top_k, top_p, min_p, order, max_new_tokens, seed,
                          picked, control, store=user_store(store, request))


# ---- layout -------------------------------------------------------------------------------

def build_generate_tab(backend, *, problems_path: str | Path | None = None, store=None) -> dict:
    """Build the tab's components (inside an open ``gr.Tab``) and wire them; returns them by name.
    With a ``store`` (a `Store` or an `app.auth.Access`) each generation is stored as a session."""
    path = Path(problems_path) if problems_path is not None else HELDOUT
    problems = {tier: load_problems(path, tier) for tier in TIERS}
    max_tokens = max(1, min(backend.info.context_length, MAX_NEW_TOKENS_LIMIT))

    c: dict[str, Any] = {"picked": gr.State(new_pick_state("generate")), "control": gr.State(RunControl())}
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=360):
            c["question"] = gr.Textbox(label=t("Question"), lines=3, max_lines=12,
                                       placeholder=t("Type an arithmetic word problem (Shift+Enter generates), "
                                                     "or pick a random one below."),
                                       elem_id="ts-question")
            with gr.Row():
                for tier in TIERS:
                    c[f"random_{tier}"] = gr.Button(t(RANDOM_TIER_PROBLEM[tier]), size="sm",
                                                    elem_id=f"ts-random-{tier}")
            c["gold"] = gr.Markdown("", elem_id="ts-gold")
            with gr.Row():
                c["generate"] = gr.Button(t("Generate"), variant="primary", elem_id="ts-generate")
                c["stop"] = gr.Button(t("Stop"), variant="stop", elem_id="ts-generate-stop")
            c["summary"] = gr.Markdown("", elem_id="ts-summary")
            # a callable value: made at each page load, in that page's language (app/i18n.py)
            c["output"] = gr.HTML(per_request(lambda: generation_html(None)), css_template=TOKENS_CSS, js_on_load=TOOLTIP_JS,
                                  elem_id="ts-output")
        with gr.Column(scale=2, min_width=300):
            with gr.Accordion(t("Sampling"), open=True):
                c["temperature"] = Slider(0, 2, value=0.0, step=0.05, label=t("Temperature"),
                                          info=t("0 = greedy (always the most likely token)"))
                with gr.Row():
                    c["top_k"] = Slider(0, 100, value=0, step=1, label=t("Top-k"), info=t("0 = off"))
                    c["top_p"] = Slider(0.01, 1, value=1.0, step=0.01, label=t("Top-p"), info=t("1 = off"))
                with gr.Row():
                    c["min_p"] = Slider(0, 1, value=0.0, step=0.01, label=t("Min-p"), info=t("0 = off"))
                    c["order"] = gr.Dropdown(list(ORDERS), value="transformers", label=t("Sampler order"),
                                             info=t("the order an engine applies the stages in"))
                with gr.Row():
                    c["max_new_tokens"] = gr.Number(DEFAULT_MAX_NEW_TOKENS, precision=0, minimum=1,
                                                    maximum=max_tokens, label=t("Max new tokens"))
                    c["seed"] = gr.Number(0, precision=0, minimum=0, label=t("Seed"))

    for tier in TIERS:
        c[f"random_{tier}"].click(functools.partial(pick_random_problem, problems[tier], tier=tier),
                                  inputs=[c["picked"]], outputs=[c["question"], c["gold"], c["picked"]],
                                  api_name=f"random_{tier}")
    c["question"].change(gold_markdown, inputs=[c["question"], c["picked"]], outputs=[c["gold"]],
                         api_visibility="private", show_progress="hidden", trigger_mode="always_last")
    from app.auth import with_request
    generate = (with_request(generate_stored, backend, store) if store is not None
                else functools.partial(run_generation, backend))
    c["run_event"] = gr.on([c["generate"].click, c["question"].submit], generate,
          inputs=[c["question"], c["temperature"], c["top_k"], c["top_p"], c["min_p"],
                  c["order"], c["max_new_tokens"], c["seed"], c["picked"], c["control"]],
          outputs=[c["output"], c["summary"]], api_name="generate",
          concurrency_limit=1, concurrency_id=MODEL_QUEUE)
    c["stop"].click(lambda control: control.request_stop(), inputs=[c["control"]], api_name="stop_generate",
                    concurrency_limit=None, queue=False)   # Stop works even when the queue is full
    return c
