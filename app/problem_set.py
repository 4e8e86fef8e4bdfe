"""Problem sets in the Search view: the user's own file of problems, one of them put on the form.

The user uploads a file (or, on a one-person server, types its path or a hub id);
`load_uploaded_set` / `load_set_from_path` read it with engine.evaluation.datasets.load_problems and say
how many problems it holds and how many rows were skipped (a gold answer that cannot be read,
no usable question). `pick_from_set` puts one problem, by index or at random, into the question
box and its gold answer into the gold box, where the run takes it from. The set lives in the
tab's per-user ``gr.State`` (``c["problem_set"]``). A file that cannot be read is a `gr.Error`
of one line: the set loaded before, the question and the gold answer on screen all stay.

In classroom mode there is no path box: a student must not read the server's own files.

Not here: reading files (engine/evaluation/datasets.py); the question and gold boxes
(app/generate_tab.py `question_picker`); running (app/mcts_tab.py).
"""

from __future__ import annotations

import functools
import random
from pathlib import Path
from typing import Any

import gradio as gr

from app.i18n import t

from app.generate_tab import gold_markdown, new_pick_state
from engine.evaluation.datasets import SUFFIXES, load_problems
from engine.inputs import whole

NO_SET = "No problem set loaded."          # a t() key
# the CLI flags engine/evaluation/datasets.py names in its messages, and the boxes that set them here
FLAG_BOXES = {"--question-field": "the Question field box", "--answer-field": "the Answer field box",
              "--split": "the Split box"}
ROWS_SHOWN = 5          # skipped row numbers listed per reason


def _field(value) -> str | None:
    """A Split / field box's value: None when blank (found by name)."""
    return (value.strip() or None) if isinstance(value, str) else None


def _for_the_page(message: str, actual: str, shown: str) -> str:
    """An engine message as the page says it: the uploaded file by its own name, not its
    temporary path; the CLI's flags as the boxes that set them."""
    if actual and actual != shown:
        message = message.replace(actual, shown)
    for flag, box in FLAG_BOXES.items():
        message = message.replace(flag, box)
    return message


def set_status(problem_set: dict | None) -> str:
    """The line under the loader: what the set holds and which rows were left out and why."""
    if not problem_set:
        return t(NO_SET)
    ds, shown = problem_set["dataset"], problem_set["shown"]
    n = len(ds.problems)
    # English plurals are in the keys (one key per form), so each language words its own
    problems = t("{n} problem", n=f"{n:,}") if n == 1 else t("{n} problems", n=f"{n:,}")
    rows = t("{n} row", n=f"{ds.rows:,}") if ds.rows == 1 else t("{n} rows", n=f"{ds.rows:,}")
    line = t("**{shown}**: {problems} (index 0–{last}) read from {rows}; question from `{qf}`, gold answer "
             "from `{af}`.", shown=shown, problems=problems, last=n - 1, rows=rows, qf=ds.question_field,
             af=ds.answer_field)
    if ds.skipped:
        parts = [t("{n} {why} (row {rows})" if len(at) == 1 else "{n} {why} (rows {rows})", n=len(at), why=t(why),
                   rows=", ".join(map(str, at[:ROWS_SHOWN])) + (", …" if len(at) > ROWS_SHOWN else ""))
                 for why, at in ds.skipped.items()]
        line += " " + t("Skipped {n} row: {parts}." if ds.skipped_count == 1 else "Skipped {n} rows: {parts}.",
                        n=f"{ds.skipped_count:,}", parts="; ".join(parts))
    return line


def _load(source: str, shown: str, split, question_field, answer_field) -> tuple[dict, str, Any]:
    try:
        ds = load_problems(source, split=_field(split), question_field=_field(question_field),
                           answer_field=_field(answer_field))
    except ValueError as e:             # every bad file, field or split: one line (InputError is one too)
        raise gr.Error(_for_the_page(str(e), source, shown), print_exception=False) from None
    except Exception as e:              # something the reader did not foresee: still one line, no traceback
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise gr.Error(_for_the_page(t("could not read {source}: {why}", source=source,
                                       why=f"{type(e).__name__}: {first}"), source, shown),
                       print_exception=False) from None
    state = {"dataset": ds, "shown": shown}
    # no maximum on the box: pick_from_set says the range, with the set's name
    return state, set_status(state), gr.Number(value=0, label=t("Index (0–{last})", last=len(ds.problems) - 1))


def load_uploaded_set(upload, split=None, question_field=None, answer_field=None) -> tuple[dict, str, Any]:
    """An uploaded problem file (its path on the server): (set state, status line, index box)."""
    if not upload:
        raise gr.Error(t("choose a problem file ({kinds})", kinds=", ".join(SUFFIXES)), print_exception=False)
    path = str(upload)
    return _load(path, Path(path).name, split, question_field, answer_field)


def load_set_from_path(path, split=None, question_field=None, answer_field=None) -> tuple[dict, str, Any]:
    """A problem file by its path on this computer, or a hub id: (set state, status line, index box)."""
    if not isinstance(path, str) or not path.strip():
        raise gr.Error(t("type the path of a problem file ({kinds}) or a hub id, or upload a file",
                         kinds=", ".join(SUFFIXES)),
                       print_exception=False)
    return _load(path.strip(), path.strip(), split, question_field, answer_field)


def pick_from_set(problem_set: dict | None, picked: dict | None, index=None, *,
                  at_random: bool = False) -> tuple[str, str, dict, str, int]:
    """Problem ``index`` of the loaded set (0-based, among its usable problems), or with
    ``at_random`` one chosen by ``random.Random(clicks)`` as the tier buttons choose theirs (the
    pick state's click counter seeds it, so a given state picks the same problem again):
    (question, gold line, pick state, gold box, index)."""
    if not problem_set:
        raise gr.Error(t("load a problem set first: upload a file (or type its path) above"), print_exception=False)
    problems = problem_set["dataset"].problems
    state = dict(picked or new_pick_state())
    clicks = int(state.get("clicks") or 0)
    if at_random:
        i = random.Random(clicks).randrange(len(problems))
    else:
        try:
            i = whole(index, "the index", 0, len(problems) - 1)
        except ValueError as e:
            raise gr.Error(t("{why} ({shown} holds {n} problems)", why=e, shown=problem_set["shown"], n=len(problems)),
                           print_exception=False) from None
    p = problems[i]
    state.update(clicks=clicks + 1, id=p.id, question=p.question, answer=p.answer)
    return p.question, gold_markdown(p.question, state), state, str(p.answer), i


def problem_set_panel(c: dict, *, allow_paths: bool = True) -> None:
    """The "Problem set" accordion, built in the current layout under the question and gold
    boxes (``c["question"]``, ``c["gold"]``, ``c["gold_answer"]``, ``c["picked"]``) and wired to
    them; its components are stored in ``c``. ``allow_paths`` adds the path box (one-person
    servers only)."""
    c["problem_set"] = gr.State(None)
    with gr.Accordion(t("Problem set: your own file of problems"), open=False, elem_id="ts-set"):
        c["set_file"] = gr.File(label=t("Upload a problem file (.jsonl, .json, .csv, .parquet): one question and "
                                        "gold answer a row"), file_types=list(SUFFIXES), type="filepath",
                                elem_id="ts-set-file")
        if allow_paths:
            with gr.Row():
                c["set_path"] = gr.Textbox(label=t("…or its path on this computer (or a hub id, with network)"),
                                           scale=4, elem_id="ts-set-path")
                c["set_load"] = gr.Button(t("Load"), scale=0, elem_id="ts-set-load")
        with gr.Row():
            c["set_split"] = gr.Textbox(label=t("Split"), placeholder=t("for several lists"), elem_id="ts-set-split")
            c["set_question_field"] = gr.Textbox(label=t("Question field"), placeholder=t("found by name"),
                                                 elem_id="ts-set-question-field")
            c["set_answer_field"] = gr.Textbox(label=t("Answer field"), placeholder=t("found by name"),
                                               elem_id="ts-set-answer-field")
        c["set_status"] = gr.Markdown(t(NO_SET), elem_id="ts-set-status")
        with gr.Row():
            c["set_index"] = gr.Number(0, precision=0, minimum=0, label=t("Index"), elem_id="ts-set-index")
            c["set_pick"] = gr.Button(t("Pick this one"), size="sm", elem_id="ts-set-pick")
            c["set_random"] = gr.Button(t("Random from the set"), size="sm", elem_id="ts-set-random")
    options = [c["set_split"], c["set_question_field"], c["set_answer_field"]]
    loaded = [c["problem_set"], c["set_status"], c["set_index"]]
    c["set_file"].upload(load_uploaded_set, inputs=[c["set_file"], *options], outputs=loaded,
                         api_name="load_problem_file")
    if allow_paths:
        gr.on([c["set_load"].click, c["set_path"].submit], load_set_from_path, inputs=[c["set_path"], *options],
              outputs=loaded, api_name="load_problem_set")
    picked_out = [c["question"], c["gold"], c["picked"], c["gold_answer"], c["set_index"]]
    c["set_pick"].click(pick_from_set, inputs=[c["problem_set"], c["picked"], c["set_index"]], outputs=picked_out,
                        api_name="pick_problem")
    c["set_random"].click(functools.partial(pick_from_set, at_random=True), inputs=[c["problem_set"], c["picked"]],
                          outputs=picked_out, api_name="pick_random_problem")
