"""The first screen (the Start tab): what ThoughtScope is, in three sentences, and three things
to do in one click — watch a recorded search (a sample run opens in the Search view at its first
phase, ready to step), run a search now (a random easy problem in the Search view, started at
once with the default MCTS settings), take a lesson (the Lessons tab).

The watch button opens the recorded run through the Sessions tab's `open_session`, as a link
does (app/url_state.py); a database without it (a fresh test database, or one where a user
deleted the samples) gets it imported from sample_runs/ first, shared by everyone.

Not here: what opening shows (app/restore.py), the lessons (app/lessons/).
"""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from app.i18n import message, t

SAMPLE = Path(__file__).resolve().parents[1] / "sample_runs" / "mcts-fixes-greedy-heldout-hard-0023-mcts.json"
LESSONS_TAB = "lessons"          # the Lessons tab's id (app/main.py)

INTRO = ("ThoughtScope runs reasoning searches — Monte Carlo tree search over reasoning steps, rStar, LECO, "
         "min-p sampling, semantic entropy — on a small model on this computer, and shows each one as it "
         "happens: every step the model proposed, every score and vote, and the arithmetic behind every "
         "choice. Every run is kept, so it can be replayed moment by moment, compared and shared by link.")


def sample_session(store) -> str:
    """The id of the recorded search the watch button opens, imported into ``store`` (the raw
    `Store`) when it is not there yet."""
    from engine.store import StoreError
    data = json.loads(SAMPLE.read_text(encoding="utf-8"))
    sid = data["session"]["session_id"]
    try:
        store.session(sid)
        return sid
    except StoreError:
        return store.import_session(data)


def first_phase(view: dict | None) -> int:
    """The moment a replay is ready at: the first phase point (the first selection), else 0."""
    from app.replay import phase_points
    points = phase_points((view or {}).get("events") or [])
    return points[0] if points else 0


def build_welcome(has_lessons: bool = True) -> dict:
    """Lay out the Start tab (inside an open ``gr.Tab``); the buttons are wired by `wire_welcome`."""
    c: dict = {}
    with gr.Column(elem_id="ts-start"):
        c["intro"] = gr.Markdown(t(INTRO), elem_id="ts-start-intro")
        with gr.Row():
            with gr.Column(min_width=220):
                c["watch"] = gr.Button(t("▶ Watch a recorded search"), variant="primary", elem_id="ts-start-watch")
                c["watch_note"] = gr.Markdown(t("A finished MCTS run on a hard problem, where the search fixes "
                                                "the greedy answer: step through it phase by phase."))
            with gr.Column(min_width=220):
                c["run"] = gr.Button(t("⚡ Run a search now"), elem_id="ts-start-run")
                c["run_note"] = gr.Markdown(t("A random easy problem in the Search view, searched with the "
                                              "default MCTS settings while you watch."))
            with gr.Column(min_width=220):
                c["lesson"] = gr.Button(t("🎓 Take a lesson"), elem_id="ts-start-lesson")
                c["lesson_note"] = gr.Markdown(t("Short guided walk-throughs of recorded runs: MCTS's four "
                                                 "phases, exploration, LECO, semantic entropy, rStar."))
        c["status"] = gr.Markdown("", elem_id="ts-start-status")
    return c


def watch(access, request: gr.Request = None):
    """The watch button: (opened view, the moment to seek to) for the recorded search."""
    from app.sessions_tab import open_session
    try:
        sid = sample_session(access.store if hasattr(access, "store") else access)
    except (OSError, ValueError) as e:        # StoreError is a ValueError; a missing sample file
        raise gr.Error(t("the recorded search could not be opened: {why}", why=message(e)),
                       print_exception=False) from None
    view, _ = open_session(access, sid, request)
    return view, {"k": first_phase(view)}


def run_now(problems, picked: dict | None):
    """The run button's first half: a random easy problem in the Search form, and the Search tab.
    The browser then presses Run (`RUN_JS`), so the run is the Search tab's own, with its Stop."""
    from app.generate_tab import pick_random_with_gold
    question, line, state, gold = pick_random_with_gold(problems, picked, "easy")
    return question, line, state, gold, gr.Tabs(selected="search")


RUN_JS = "() => { const b = document.querySelector('#ts-search-run'); if (b) b.click(); return []; }"


def wire_welcome(c: dict, *, access, search: dict, tabs, problems, lessons: dict | None, show_opened):
    """Wire the three buttons. ``show_opened(event, state)`` shows a run an event opened
    (app/main.py's chain for the Sessions tab's Open) and returns the Search view's last step,
    after which the timeline is moved to the replay's start (app/url_state.seek). Returns the
    watch button's (event, state), for the address (app/url_state.py)."""
    from app.auth import with_request
    from app import url_state
    opened, wanted = gr.State(None), gr.State(None)
    event = c["watch"].click(with_request(watch, access), outputs=[opened, wanted], api_visibility="private")
    last = show_opened(event, opened)
    last.then(url_state.seek, inputs=[opened, wanted],
              outputs=[search["timeline"], search["plot"], search["progress"], search["final"], search["explain"],
                       search["node_id"], search["inspector"]], api_visibility="private")
    c["run"].click(lambda picked: run_now(problems, picked), inputs=[search["picked"]],
                   outputs=[search["question"], search["gold"], search["picked"], search["gold_answer"], tabs],
                   api_visibility="private").then(None, js=RUN_JS)
    outputs = [tabs] + ([lessons["page"]] if lessons else [])
    c["lesson"].click(lambda: (gr.Tabs(selected=LESSONS_TAB), *([1] if lessons else [])), outputs=outputs,
                      api_visibility="private")
    return event, opened
