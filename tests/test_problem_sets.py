"""Problem sets in the Search view (app/problem_set.py) and its gold answer box: the callbacks as
plain functions on files each test writes, then the served app driven through gradio_client on
loopback, on the tiny random Llama from conftest."""

from __future__ import annotations

import json

import gradio as gr
import pytest

from app import mcts_tab as M
from app.generate_tab import new_pick_state, question_edited, run_gold
from app.problem_set import NO_SET, load_set_from_path, load_uploaded_set, pick_from_set, set_status
from engine.store import Store

ROWS = [
    {"question": "Mia has 23 apples. She buys 14 more apples. How many apples does Mia have now?",
     "answer": "Mia has 23 + 14 = 37 apples.\n#### 37"},                                  # GSM8K's gold
    {"question": "Tom has 9 pens. He gives away 4 pens. How many pens does Tom have now?", "answer": 5},
    {"question": "What is 6 times 7?", "answer": "She thinks about it for a while.\nThen she writes it down."},
    {"question": "Ava has 3 bags of 4 marbles. How many marbles does she have?",
     "answer": "There are $3 \\cdot 4 = 12$ marbles, so the answer is \\boxed{12}."},      # MATH's gold
]
GOLDS = ["37", "5", "12"]           # row 2's gold states no answer: skipped, never asked


@pytest.fixture
def problem_file(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


# ---- loading --------------------------------------------------------------------------------

def test_a_file_is_read_and_the_status_says_how_many_problems_and_skipped_rows(problem_file):
    state, status, index = load_set_from_path(f"  {problem_file}  ")
    assert [p.answer for p in state["dataset"].problems] == GOLDS
    assert status.startswith(f"**{problem_file}**: 3 problems (index 0–2) read from 4 rows")
    assert "Skipped 1 row: 1 whose gold answer could not be read (row 2)." in status
    assert index.value == 0 and index.label == "Index (0–2)"
    assert set_status(None) == NO_SET


def test_an_upload_is_named_by_its_file_not_its_temporary_path(tmp_path, problem_file):
    upload = tmp_path / "gradio-cache" / "0123abcd" / "gsm8k-sample.jsonl"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(problem_file.read_bytes())
    _, status, _ = load_uploaded_set(str(upload), "", "", "")       # blank boxes: fields found by name
    assert status.startswith("**gsm8k-sample.jsonl**: 3 problems") and "gradio-cache" not in status
    broken = upload.with_name("broken.jsonl")
    broken.write_text('{"question": "Q?", "answer": 1}\n{not json\n')
    with pytest.raises(gr.Error) as err:
        load_uploaded_set(str(broken))
    assert err.value.message == "broken.jsonl:2: not JSON (Expecting property name enclosed in double quotes); " \
                                "a .jsonl file has one object a line"


def test_field_boxes_name_the_fields_and_their_errors_name_the_boxes(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text("task,key\nHow many legs do 2 cats have?,8\n")
    with pytest.raises(gr.Error, match="has no question field .* name it with the Question field box"):
        load_set_from_path(str(path))
    state, status, _ = load_set_from_path(str(path), "", "task", "key")
    assert state["dataset"].problems[0].answer == "8" and "question from `task`, gold answer from `key`" in status
    with pytest.raises(gr.Error, match="the Split box 'test' applies to hub data sets"):
        load_set_from_path(str(path), "test", "task", "key")


@pytest.mark.parametrize("name,content,needle", [
    ("notes.txt", "Q: 1+1?", "unknown format '.txt'"),
    ("missing.jsonl", None, "does not exist"),
    ("empty.csv", "", "empty, not even a header row"),
    ("latin1.csv", b"question,answer\ncaf\xe9?,1\n", "not UTF-8 text"),
    ("none.json", json.dumps([{"question": "Q?", "answer": "First this.\nThen that."}]), "none of its 1 rows"),
    ("scalar.json", "42", "holds int, not a list of objects"),
])
def test_a_bad_file_is_one_clear_line(tmp_path, name, content, needle):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    for load in (load_set_from_path, load_uploaded_set):
        with pytest.raises(gr.Error) as err:
            load(str(path))
        assert needle in err.value.message and "\n" not in err.value.message
        assert "Traceback" not in err.value.message


def test_nothing_to_load_is_said():
    with pytest.raises(gr.Error, match="choose a problem file"):
        load_uploaded_set(None)
    with pytest.raises(gr.Error, match="type the path of a problem file"):
        load_set_from_path("   ")


# ---- picking ------------------------------------------------------------------------------

def test_pick_by_index_fills_the_question_and_the_gold_box(problem_file):
    state, _, _ = load_set_from_path(str(problem_file))
    question, line, picked, gold, index = pick_from_set(state, new_pick_state(), 2)
    assert question == ROWS[3]["question"] and gold == "12" and index == 2
    assert picked["id"] == "dataset:mine:3" and picked["answer"] == "12"       # the id keeps the file's row
    assert line == "Gold answer: **12** &nbsp;<small>(dataset:mine:3)</small>"
    assert run_gold(question, gold, picked) == "12"
    assert pick_from_set(state, picked, 0.0)[3] == "37"                        # a form's 0.0 is index 0


def test_random_pick_is_seeded_by_the_click_counter(problem_file):
    state, _, _ = load_set_from_path(str(problem_file))
    seeded = {"clicks": 7, "id": None, "question": None, "answer": None}
    first = pick_from_set(state, seeded, at_random=True)
    assert pick_from_set(state, seeded, at_random=True) == first              # the same state, the same pick
    assert seeded["clicks"] == 7                                               # the given state is not changed
    question, _, picked, gold, index = first
    assert picked["clicks"] == 8 and question == state["dataset"].problems[index].question
    assert gold == GOLDS[index]
    seen, picked = set(), new_pick_state()
    for _ in range(12):
        *_, picked, _, index = pick_from_set(state, picked, at_random=True)
        seen.add(index)
    assert len(seen) > 1 and seen <= {0, 1, 2}


def test_bad_picks_are_gr_errors(problem_file):
    with pytest.raises(gr.Error, match="load a problem set first"):
        pick_from_set(None, new_pick_state(), 0)
    state, _, _ = load_set_from_path(str(problem_file))
    for index in (3, -1, None, 1.5):
        with pytest.raises(gr.Error, match=r"the index must be a whole number from 0 to 2.*mine.jsonl holds 3"):
            pick_from_set(state, new_pick_state(), index)


# ---- the gold answer box ------------------------------------------------------------------

def test_a_typed_question_takes_a_gold_answer_typed_by_hand():
    assert run_gold("Tom has 3 pens. How many pens?", " 3 ", None) == "3"
    assert run_gold("Tom has 3 pens. How many pens?", "   ", None) is None     # blank: no gold
    picked = {"clicks": 1, "id": "easy-0001", "question": "Q?", "answer": 37}
    assert run_gold("Q?", None, picked) == 37           # a caller without the box: the picked problem's
    assert run_gold("Q?", "", picked) is None           # the box cleared: no gold, whatever was picked
    with pytest.raises(gr.Error, match="the gold answer is 1,001 characters long"):
        run_gold("Q?", "9" * 1001, None)
    with pytest.raises(gr.Error, match="the gold answer must be text"):
        run_gold("Q?", 12, None)


def test_editing_a_picked_question_clears_its_gold_but_keeps_one_typed_by_hand(problem_file):
    state, _, _ = load_set_from_path(str(problem_file))
    question, _, picked, gold, _ = pick_from_set(state, new_pick_state(), 0)
    line, box = question_edited(question, gold, picked)                 # the pick itself changes the question
    assert line.startswith("Gold answer: **37**") and box == gr.update()
    line, box = question_edited(question + " Then she eats 2.", gold, picked)
    assert "no longer applies" in line and box == ""
    line, box = question_edited(question + " Then she eats 2.", "35", picked)
    assert box == gr.update()                                           # typed by hand: left alone
    assert question_edited("Tom has 3 pens.", "3", new_pick_state()) == ("", gr.update())


def test_a_run_is_marked_against_the_gold_box(tiny_backend, store):
    question = "Tom has 3 pens. He buys 2 more pens. How many pens does Tom have now?"
    out = list(M.run_search(tiny_backend, store, question, new_pick_state(), "greedy", 2, 2, 2.0, 3, 0.8, 0.0,
                            "self_consistency", "majority", 2, 2, 0, M.RunControl(), gold_answer="5"))
    *_, view, _ = out[-1]
    assert store.session(view["session_id"])["gold"] == "5" and view["events"][0].gold == "5"
    with pytest.raises(gr.Error, match="type one in the Gold answer box"):
        list(M.run_search(tiny_backend, store, question, None, "mcts", 2, 2, 2.0, 3, 0.8, 0.0, "gold", "majority",
                          2, 2, 0, M.RunControl(), gold_answer=""))


# ---- the served app -----------------------------------------------------------------------

@pytest.mark.slow
def test_served_app_loads_a_set_picks_a_problem_and_runs_it_with_its_gold(tiny_backend, problem_file, tmp_path):
    from gradio_client import Client, handle_file
    from app.main import LAUNCH_KWARGS, build_app
    from conftest import free_port
    store = Store(tmp_path / "served.db")
    demo = build_app(tiny_backend, store)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                            **LAUNCH_KWARGS)
    client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
    try:
        with pytest.raises(Exception, match="load a problem set first"):
            client.predict(0, api_name="/pick_problem")
        status, _ = client.predict(handle_file(str(problem_file)), "", "", "", api_name="/load_problem_file")
        assert status.startswith("**mine.jsonl**: 3 problems") and "Skipped 1 row" in status
        bad = tmp_path / "bad.jsonl"
        bad.write_text("{oops\n")
        with pytest.raises(Exception, match="bad.jsonl:1: not JSON"):
            client.predict(str(bad), "", "", "", api_name="/load_problem_set")
        # the failed load kept the set: pick its problem 1
        question, line, gold, index = client.predict(1, api_name="/pick_problem")
        assert question == ROWS[1]["question"] and gold == "5" and index == 1 and "Gold answer: **5**" in line
        out = client.predict(question, "greedy", 3, 2, 2.0, 3, 0.8, 0.0, "self_consistency", "majority", 3, 2, 0,
                             gold_answer=gold, api_name="/run_search")
        assert "Answer" in out[2] and "embedded format" in out[2]
        (session,) = store.list_sessions()
        assert session["method"] == "greedy" and session["status"] == "done" and session["gold"] == "5"
        assert store.events(session["session_id"])[0].gold == "5"
        # a path typed in loads the same file
        status, _ = client.predict(str(problem_file), "", "", "", api_name="/load_problem_set")
        assert status.startswith(f"**{problem_file}**: 3 problems")
    finally:
        client.close()
        demo.close(verbose=False)
        store.close()


def test_classroom_mode_has_no_path_box(tiny_backend, tmp_path):
    from app.main import build_app
    store = Store(tmp_path / "runs.db")
    try:
        demo = build_app(tiny_backend, store, multi_user=True)
        search = demo.thoughtscope_tabs["search"]
        assert "set_file" in search and "set_path" not in search
        assert "load_problem_set" not in {f.api_name for f in demo.fns.values()}
    finally:
        store.close()
