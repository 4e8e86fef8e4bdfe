"""Open a stored run in the tab of its method, with the form as the run had it.

A run's first event (`RunStarted`) holds its question, gold answer, method, seed and config;
opening a session from the Sessions tab puts those back into the tab that runs that method
(LECO and the semantic-entropy methods have their own tabs; everything else is the Search
view), shows the run there and switches to that tab. The other tabs are left as they were
(``gr.skip()``).

Callbacks are plain functions from the opened view (``{"session_id", "events"}``) to component
updates. Not here: reading the store (app/sessions_tab.py `open_session`), the wiring
(app/main.py).
"""

from __future__ import annotations

import dataclasses

import gradio as gr

from app.i18n import t
from engine import events as E

# the tab a method's stored runs open in; every method not named here opens in the Search view
TAB_OF_METHOD = {"leco": "leco", "se": "se", "sugar": "se"}
# the Search view's settings, named as the method configs name them (app/mcts_tab.py run_search)
SEARCH_SETTINGS = ("rollouts", "children", "c", "max_depth", "temperature", "min_p", "reward", "final_rule",
                   "samples", "beam_width", "one_step_thoughts", "subquestions", "votes", "final_votes",
                   "discriminate", "cut_mode", "cuts", "consistency", "gold_fallback", "discriminator_model",
                   "check", "self_eval", "reflection", "resample", "drop_failed")
LECO_SETTINGS = ("max_rounds", "lowest", "token_probs", "temperature")
SE_SETTINGS = ("samples", "temperature", "judge", "nli_model", "route_on", "low", "high", "policy", "passages",
               "corpus", "mode")


def started(view: dict | None) -> E.RunStarted | None:
    """The run's `RunStarted` (None for an empty or headless view)."""
    events = (view or {}).get("events") or []
    return next((ev for ev in events if isinstance(ev, E.RunStarted)), None)


def tab_of(view: dict | None) -> str:
    """The tab id (app/main.py) the opened run belongs in."""
    run = started(view)
    return TAB_OF_METHOD.get(run.method, "search") if run else "search"


def opened_tab(view: dict | None):
    """The opened run's tab; nothing changes when nothing was opened (a link without a run)."""
    return gr.Tabs(selected=tab_of(view)) if view else gr.skip()


def _settings(run: E.RunStarted, names) -> list:
    """One update per name: the run's config value, the default of a setting its method has but
    left out at its default, or no change where the method has no such setting."""
    from engine.search import METHODS
    from engine.search.code_mcts import OMITTED_AT_DEFAULT   # a run without one ran with the default
    cls = getattr(METHODS.get(run.method), "config", None)
    defaults = {f.name: f.default for f in dataclasses.fields(cls)} if cls is not None else {}
    out = []
    for n in names:
        if n in run.config and run.config[n] is not None:
            out.append(gr.update(value=run.config[n]))
        elif n in OMITTED_AT_DEFAULT and n in defaults:
            out.append(gr.update(value=defaults[n]))
        else:
            out.append(gr.update())
    return out


def _picked(run: E.RunStarted, picked: dict | None, sid: str) -> dict:
    """The pick state for the restored question: its gold answer stays while the question does;
    the click counter is kept, so the next "Random" is the one it would have been."""
    state = dict(picked or {})
    state.update(id=f"session {sid}", question=run.question, answer=run.gold)
    return state


def _question(run: E.RunStarted, picked: dict | None, sid: str) -> list:
    from app.generate_tab import gold_markdown
    state = _picked(run, picked, sid)
    return [run.question, gold_markdown(run.question, state), state]


def search_form(view: dict | None, picked: dict | None) -> tuple:
    """(question, gold line, pick state, gold box, method, seed, *SEARCH_SETTINGS) of the run."""
    run = started(view)
    if run is None:
        return tuple(gr.skip() for _ in range(6 + len(SEARCH_SETTINGS)))
    from engine.search import METHODS
    if run.method not in METHODS:      # a Generate run: its question and gold; the form keeps its method
        return (*_question(run, picked, view["session_id"]), "" if run.gold is None else str(run.gold),
                *(gr.skip() for _ in range(2 + len(SEARCH_SETTINGS))))
    return (*_question(run, picked, view["session_id"]), "" if run.gold is None else str(run.gold), run.method,
            run.seed, *_settings(run, SEARCH_SETTINGS))


def show_in_search(view: dict | None, picked: dict | None) -> tuple:
    """The opened run in the Search view: (view, plot, progress, final, explain, timeline,
    inspector, pairs, *search_form); nothing changes there for a LECO or semantic-entropy run."""
    from app.mcts_tab import view_outputs
    n_out = 8 + 6 + len(SEARCH_SETTINGS)
    if tab_of(view) != "search" or not (view or {}).get("events"):
        return tuple(gr.skip() for _ in range(n_out))
    events = view["events"]
    return (view, *view_outputs(events), gr.Slider(maximum=len(events), value=len(events)), "", "",
            *search_form(view, picked))


def show_in_leco(view: dict | None, picked: dict | None) -> tuple:
    """The opened LECO run in the LECO tab: (heatmap, steps, diff, summary, progress, view,
    question, gold line, pick state, seed, *LECO_SETTINGS)."""
    from app.leco_tab import view_outputs
    if tab_of(view) != "leco":
        return tuple(gr.skip() for _ in range(10 + len(LECO_SETTINGS)))
    run, events, sid = started(view), view["events"], view["session_id"]
    return (*view_outputs(events), t("Opened `{id}` ({n} events)", id=sid, n=len(events)), view,
            *_question(run, picked, sid), run.seed, *_settings(run, LECO_SETTINGS))


def show_in_se(view: dict | None, picked: dict | None) -> tuple:
    """The opened semantic-entropy or SUGAR run in its tab: (bubbles, numbers, bar, retrieval,
    comparisons, events, status, question, gold line, pick state, model, method, seed,
    *SE_SETTINGS)."""
    from app.se_tab import OPEN_MODEL, view_outputs
    if tab_of(view) != "se":
        return tuple(gr.skip() for _ in range(13 + len(SE_SETTINGS)))
    run, events, sid = started(view), view["events"], view["session_id"]
    cfg = run.config
    drawn = view_outputs(events, cfg.get("mode", "strict"), float(cfg.get("low", -1.0)), float(cfg.get("high", 0.5)),
                         cfg.get("route_on", "mc2023"))
    return (*drawn, events, t("Opened `{id}` ({method}, {n} events)", id=sid, method=run.method, n=len(events)),
            *_question(run, picked, sid),
            OPEN_MODEL if run.model == OPEN_MODEL else "loaded", run.method, run.seed, *_settings(run, SE_SETTINGS))
