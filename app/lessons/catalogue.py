"""The lessons: which recorded run each page shows, at which moment, with which figure and panel.

A lesson is a few short pages beside a live view. Each page names a recorded run (a file in
sample_runs/, so a lesson opens instantly, offline, for every student, with no model call and
no database row to own), a moment in it (a count of events folded: the tree exactly as it was
then), the figure drawn at that moment and the panel beside it. The words are data, in English
and Simplified Chinese (app/lessons/content/en.json, zh.json), keyed by lesson id and page
number, with ``{fields}`` that `page_facts` computes from the run (so "the search chose node
{chosen}" is read from the event, never typed in).

The min-p lesson's pages have no run: they view two recorded next-token distributions
(content/sampling.json, written by sampling_record.py) at the page's temperature.

Moments are `Moment` specs resolved against the run's events ("just before the first UCT
selection"), not event numbers, so a re-recorded sample keeps its pages on the right events.

Not here: the Gradio tab (app/lessons/tab.py), the predict-then-reveal check
(app/lessons/predict.py).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

from engine import events as E

SAMPLES = Path(__file__).resolve().parents[2] / "sample_runs"
CONTENT = Path(__file__).with_name("content")
LANGS = ("en", "zh")

# the recorded runs the lessons read (sample_runs/<name>.json)
MCTS_RUN = "mcts-fixes-greedy-heldout-hard-0023-mcts"            # c = 2 (MCTSConfig's default)
MCTS_SMALL_C_RUN = "lesson-c-small-heldout-hard-0023-mcts"       # c = 0.25, same problem and seed
LECO_RUN = "leco-fixes-error-heldout-hard-0061-leco"
SUGAR_RUN = "lesson-sugar-heldout-hard-0023-sugar"
RSTAR_RUN = "mcts-fixes-greedy-heldout-hard-0023-rstar"
SAMPLING = "sampling"          # not a run: content/sampling.json, recorded distributions (sampling_record.py)


@dataclass(frozen=True)
class Moment:
    """The ``nth`` event of type ``event`` (whose fields match ``where``); ``before`` folds the
    events up to it but not it (the tree a student predicts from). ``event=None``: the run's end."""
    event: str | None = None
    nth: int = 1
    where: tuple = ()                 # ((field, value), ...)
    before: bool = False

    def resolve(self, events: list[E.Event]) -> int:
        if self.event is None:
            return len(events)          # the run's end (0 for the sampling pages, which have no events)
        seen = 0
        for i, ev in enumerate(events):
            if ev.type == self.event and all(getattr(ev, f, None) == v for f, v in self.where):
                seen += 1
                if seen == self.nth:
                    return i if self.before else i + 1
        raise ValueError(f"moment: the run has no event #{self.nth} of type {self.event!r} with {dict(self.where)}")


@dataclass(frozen=True)
class Page:
    run: str                          # a sample_runs/ file name without .json
    moment: Moment
    figure: str = "tree"              # tree | leco | se-clusters | se-routing | sampling
    panel: str = "explain"            # explain | predict | compare-c | leco | se-numbers | se-answers | rstar | final | sampling
    temperature: float = 1.0          # sampling pages: the temperature the pools are seen at
    position: str = ""                # sampling pages: "unsure" or "sure" (content/sampling.json)


@dataclass(frozen=True)
class Lesson:
    id: str
    pages: tuple[Page, ...] = field(default_factory=tuple)


LESSONS: tuple[Lesson, ...] = (
    Lesson("mcts-phases", (
        Page(MCTS_RUN, Moment("node_proposed", 1), panel="final"),
        Page(MCTS_RUN, Moment("selected", 1)),
        Page(MCTS_RUN, Moment("expanded", 2)),
        Page(MCTS_RUN, Moment("terminal_reward", 1)),
        Page(MCTS_RUN, Moment("backprop", 1)),
        Page(MCTS_RUN, Moment("selected", 2, (("rule", "uct"), ("node", 0)), before=True), panel="predict"),
        Page(MCTS_RUN, Moment(), panel="final"),
    )),
    Lesson("exploration", (
        # the root's second UCT choice: its children's visits differ by then, so c matters
        Page(MCTS_SMALL_C_RUN, Moment("selected", 2, (("rule", "uct"), ("node", 0)))),
        Page(MCTS_RUN, Moment("selected", 2, (("rule", "uct"), ("node", 0)))),
        Page(MCTS_SMALL_C_RUN, Moment(), panel="final"),
        Page(MCTS_RUN, Moment(), panel="final"),
        Page(MCTS_SMALL_C_RUN, Moment(), panel="compare-c"),
    )),
    Lesson("min-p", (
        Page(SAMPLING, Moment(), figure="sampling", panel="sampling", temperature=1.0, position="unsure"),
        Page(SAMPLING, Moment(), figure="sampling", panel="sampling", temperature=2.0, position="unsure"),
        Page(SAMPLING, Moment(), figure="sampling", panel="sampling", temperature=3.0, position="unsure"),
        Page(SAMPLING, Moment(), figure="sampling", panel="sampling", temperature=3.0, position="sure"),
    )),
    Lesson("leco", (
        Page(LECO_RUN, Moment("leco_scores", 1), figure="leco", panel="leco"),
        Page(LECO_RUN, Moment("leco_cut", 1), figure="leco", panel="leco"),
        Page(LECO_RUN, Moment("leco_scores", 2), figure="leco", panel="leco"),     # the rethought round, scored
        Page(LECO_RUN, Moment(), figure="leco", panel="leco"),
    )),
    Lesson("semantic-entropy", (
        Page(SUGAR_RUN, Moment("clusters_formed", 1), figure="se-clusters", panel="se-answers"),
        Page(SUGAR_RUN, Moment("entropy_measured", 1), figure="se-clusters", panel="se-numbers"),
        Page(SUGAR_RUN, Moment("retrieval_routed", 1), figure="se-routing", panel="se-numbers"),
        Page(SUGAR_RUN, Moment(), figure="se-routing", panel="final"),
    )),
    Lesson("rstar", (
        Page(RSTAR_RUN, Moment("candidates", 1)),
        Page(RSTAR_RUN, Moment("discriminator_completion", 1), panel="rstar"),
        Page(RSTAR_RUN, Moment("discriminator_verdict", 1), panel="rstar"),
        Page(RSTAR_RUN, Moment(), panel="final"),
    )),
)
BY_ID = {lesson.id: lesson for lesson in LESSONS}


def lesson(lesson_id: str) -> Lesson:
    if lesson_id not in BY_ID:
        raise ValueError(f"lesson must be one of {', '.join(BY_ID)}, got {lesson_id!r}")
    return BY_ID[lesson_id]


@functools.lru_cache(maxsize=16)
def run_events(name: str) -> tuple[E.Event, ...]:
    """A recorded run's events, read once (the files are part of the install); none for the
    sampling pages, which read `sampling_data`."""
    if name == SAMPLING:
        return ()
    data = json.loads((SAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    return tuple(E.from_json(d) for d in data["events"])


@functools.lru_cache(maxsize=1)
def sampling_data() -> dict:
    """content/sampling.json: the recorded logits of two positions (app/lessons/sampling_record.py)."""
    return json.loads((CONTENT / "sampling.json").read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=4)
def content(lang: str) -> dict:
    """The lessons' words in ``lang``: {lesson id: {"title", "summary", "pages": [{"title", "text"}]}}."""
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {', '.join(LANGS)}, got {lang!r}")
    return json.loads((CONTENT / f"{lang}.json").read_text(encoding="utf-8"))["lessons"]


def page_of(lesson_id: str, page: int) -> Page:
    """Page ``page`` (1-based) of the lesson; a ValueError naming the field when out of range."""
    pages = lesson(lesson_id).pages
    if isinstance(page, bool) or not isinstance(page, int) or not 1 <= page <= len(pages):
        raise ValueError(f"page must be a whole number from 1 to {len(pages)} for lesson {lesson_id!r}, got {page!r}")
    return pages[page - 1]
