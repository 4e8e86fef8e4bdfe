"""The Lessons tab: pick a lesson, step through its pages; each page's figure and panel sit
beside its words, and a "predict" page asks for the next MCTS selection before revealing it.

The lesson and the page are two plain components, ``c["lesson"]`` (a Dropdown whose value is
the lesson id, elem_id ``ts-lesson``) and ``c["page"]`` (a Number, 1-based, elem_id
``ts-lesson-page``), so the address can carry them (app/main.py binds them to the URL) and
a link opens a lesson at a page. Everything is read from recorded runs in sample_runs/: no
model call, no stored session, so a lesson works the same for every student in classroom mode
and in any number of browsers at once (nothing per-user but the two values).

Words come from app/lessons/content/<lang>.json in the request's language (app/i18n.py);
labels go through `t`. Not here: the pages themselves (pages.py), the check (predict.py).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from app import i18n
from app.i18n import t
from app.lessons import catalogue as C
from app.lessons import pages as P
from app.lessons import predict

DEFAULT_LESSON = C.LESSONS[0].id


def _t_for(lang: str):
    return lambda text, **fields: i18n.t(text, lang=lang, **fields)


def _page_number(lesson_id: str, page) -> int:
    """The page as a whole number, or a gr.Error naming the field."""
    if isinstance(page, float) and page.is_integer():      # gr.Number sends 3.0
        page = int(page)
    try:
        C.page_of(lesson_id, page)
    except ValueError as e:
        raise gr.Error(i18n.message(e), print_exception=False) from None
    return page


def _lesson_id(lesson_id) -> str:
    try:
        return C.lesson(lesson_id).id
    except ValueError as e:
        raise gr.Error(i18n.message(e), print_exception=False) from None


def show(lesson_id, page):
    """Every output of a page: header, words, figure, panel, the prediction controls."""
    lesson_id = _lesson_id(lesson_id)
    page = _page_number(lesson_id, page)
    lang = i18n.current_lang()
    r = P.render(lesson_id, page, lang, _t_for(lang))
    head = f"### {r['lesson_title']}\n\n**{i18n.t('Page {n} of {of}', lang=lang, n=page, of=r['pages'])}: {r['title']}**"
    predicting = r["choices"] is not None
    return (head, r["text"], r["figure"], r["panel"],
            gr.Radio(choices=r["choices"] or [], value=None, visible=predicting),
            gr.Button(visible=predicting), "")


def turn(lesson_id, page, step: int) -> int:
    """The page ``step`` away, kept within the lesson."""
    lesson_id = _lesson_id(lesson_id)
    try:
        page = int(page)
    except (TypeError, ValueError):
        page = 1
    return max(1, min(len(C.lesson(lesson_id).pages), page + step))


def reveal(lesson_id, page, picked) -> str:
    """The reveal of a predict page for the student's pick (right or wrong read from the event)."""
    lesson_id = _lesson_id(lesson_id)
    page_no = _page_number(lesson_id, page)
    p = C.page_of(lesson_id, page_no)
    if p.panel != "predict":
        raise gr.Error(i18n.t("this page asks for no prediction"), print_exception=False)
    events = C.run_events(p.run)
    k = p.moment.resolve(list(events))
    if picked is not None:
        try:
            picked = int(picked)
        except (TypeError, ValueError):
            raise gr.Error(i18n.t("prediction must be a node id, got {value}", value=repr(picked)),
                           print_exception=False) from None
        if picked not in {nid for _, nid in predict.choices(events, k)}:
            raise gr.Error(i18n.t("prediction must be one of the children shown, got {value}", value=picked),
                           print_exception=False)
    lang = i18n.current_lang()
    return predict.reveal(events, k, picked, _t_for(lang))["markdown"]


def build_lessons_tab() -> dict:
    c: dict[str, Any] = {}
    with gr.Row():
        c["lesson"] = gr.Dropdown([(t(C.content("en")[lesson.id]["title"]), lesson.id) for lesson in C.LESSONS],
                                  value=DEFAULT_LESSON, label=t("Lesson"), scale=3, elem_id="ts-lesson")
        c["page"] = gr.Number(1, label=t("Page"), precision=0, minimum=1, scale=1, elem_id="ts-lesson-page")
        c["prev"] = gr.Button(t("◀ Previous page"), scale=1, elem_id="ts-lesson-prev")
        c["next"] = gr.Button(t("Next page ▶"), variant="primary", scale=1, elem_id="ts-lesson-next")
    c["head"] = gr.Markdown("", elem_id="ts-lesson-head")
    with gr.Row():
        with gr.Column(scale=3):
            c["plot"] = gr.Plot(show_label=False, elem_id="ts-lesson-plot")
        with gr.Column(scale=2):
            c["text"] = gr.Markdown("", elem_id="ts-lesson-text")
            c["guess"] = gr.Radio([], label=t("Your prediction: which child will MCTS choose?"), visible=False,
                                  elem_id="ts-lesson-guess")
            c["reveal"] = gr.Button(t("Reveal"), visible=False, elem_id="ts-lesson-reveal")
            c["result"] = gr.Markdown("", elem_id="ts-lesson-result")
            c["panel"] = gr.Markdown("", elem_id="ts-lesson-panel")

    outputs = [c["head"], c["text"], c["plot"], c["panel"], c["guess"], c["reveal"], c["result"]]
    # triggers=None: on page load and whenever the lesson or the page changes (a link, a button, typing)
    gr.on(triggers=None, fn=show, inputs=[c["lesson"], c["page"]], outputs=outputs, api_name="lesson_page")
    c["lesson"].input(lambda _: 1, inputs=[c["lesson"]], outputs=[c["page"]], api_visibility="private")
    c["prev"].click(lambda lesson, page: turn(lesson, page, -1), inputs=[c["lesson"], c["page"]],
                    outputs=[c["page"]], api_visibility="private")
    c["next"].click(lambda lesson, page: turn(lesson, page, +1), inputs=[c["lesson"], c["page"]],
                    outputs=[c["page"]], api_visibility="private")
    c["reveal"].click(reveal, inputs=[c["lesson"], c["page"], c["guess"]], outputs=[c["result"]],
                      api_name="lesson_reveal")
    return c
