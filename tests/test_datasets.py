"""Problems from a user's data (engine/evaluation/datasets.py) and `thoughtscope eval --dataset`: every file
format on small files the tests write themselves (GSM8K- and MATH-style gold answers, no real
data set shipped), field detection, unreadable gold answers counted, hub ids without the
library or the network, one-line errors before the model loads, an eval end to end."""

from __future__ import annotations

import csv
import json

import pytest

from engine.evaluation import datasets as D
from engine.cli import main

# GSM8K's shape: the worked solution, then "#### N"
GSM = [
    {"question": "Mia has 12 apples. She gives away 5. How many apples does she have now?",
     "answer": "Mia has 12 - 5 = <<12-5=7>>7 apples.\n#### 7"},
    {"question": "Tom has 30 pens and buys 1,200 more. How many pens does he have?",
     "answer": "He has 30 + 1200 = <<30+1200=1230>>1,230 pens.\n#### 1,230"},
    {"question": "Ava has 8 cards and buys 4 more. How many cards does she have?",
     "answer": "She has 8 + 4 = 12 cards.\nSo she ends with twelve cards."},       # states no answer
    {"question": "A ribbon is 9 m long and is cut in half. How long is each piece?", "answer": "#### 4.5"},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ---- gold answers ------------------------------------------------------------------------------

@pytest.mark.parametrize("value, gold", [
    ("She earns 3 * 6 = 18 dollars.\n#### 18", "18"),            # GSM8K
    ("#### 1,065", "1065"),                                       # thousands commas dropped, as answers are read
    ("So the sum is $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),   # MATH: the boxed content, as written
    ("First $\\boxed{3}$, then $\\boxed{x^{2}+1}$.", "x^{2}+1"),  # the last box, nested braces kept
    ("18", "18"), (" 18 ", "18"), (18, "18"), (18.0, "18"), (-3.5, "-3.5"),
    ("Paris", "Paris"),                                           # a short plain answer, as written
    ("She has 8 + 4 = 12 cards.\nSo she ends with twelve.", None),   # a worked solution stating nothing
    ("", None), ("   ", None), (None, None), (True, None), (float("nan"), None), (["18"], None),
])
def test_gold_answers_are_read_as_data_sets_write_them(value, gold):
    assert D.read_gold(value) == gold


def test_a_solution_field_gives_only_the_answer_it_states():
    assert D.read_gold("It follows from the lemma.", worked=True) is None    # a short proof is not a gold answer
    assert D.read_gold("Hence $x = \\boxed{3}$.", worked=True) == "3"


# ---- formats -----------------------------------------------------------------------------------

def test_gsm8k_jsonl_reads_gold_after_the_hashes_and_counts_the_rows_it_skips(tmp_path):
    ds = D.load_problems(write_jsonl(tmp_path / "gsm.jsonl", GSM))
    assert [p.answer for p in ds.problems] == ["7", "1230", "4.5"]
    assert [p.id for p in ds.problems] == ["dataset:gsm:0", "dataset:gsm:1", "dataset:gsm:3"]
    assert ds.problems[0].question == GSM[0]["question"] and ds.problems[0].tier == "dataset"
    assert ds.problems[0].steps == ()                            # no generator steps: LECO's eval refuses these
    assert (ds.question_field, ds.answer_field, ds.rows) == ("question", "answer", 4)
    assert ds.skipped == {"whose gold answer could not be read": (2,)} and ds.skipped_count == 1
    assert "skipped 1 of 4 rows" in ds.skipped_line() and "rows 2" in ds.skipped_line()
    assert ds.describe()["skipped_rows"] == {"whose gold answer could not be read": [2]}
    assert [p.answer for p in D.load_problems(tmp_path / "gsm.jsonl", n=2).problems] == ["7", "1230"]


def test_math_style_json_object_with_boxed_solutions(tmp_path):
    rows = [{"problem": "What is $1/2 + 1/4$?",
             "solution": "We get $\\frac{2}{4}+\\frac{1}{4}=\\boxed{\\frac{3}{4}}$."},
            {"problem": "Solve $2x = 6$.", "solution": "Dividing, $x = \\boxed{3}$."},
            {"problem": "Prove the claim.", "solution": "It follows from the lemma, as shown above in the text."}]
    (tmp_path / "math.json").write_text(json.dumps({"version": 1, "data": rows}))
    ds = D.load_problems(tmp_path / "math.json")
    assert (ds.question_field, ds.answer_field) == ("problem", "solution")
    assert [p.answer for p in ds.problems] == ["\\frac{3}{4}", "3"] and ds.skipped_count == 1
    from engine.answers import answers_equal
    assert answers_equal("0.75", ds.problems[0].answer)          # compared by value later
    # a plain list works too; several lists need --split
    (tmp_path / "list.json").write_text(json.dumps(rows[:2]))
    assert len(D.load_problems(tmp_path / "list.json").problems) == 2
    (tmp_path / "splits.json").write_text(json.dumps({"train": rows[:1], "test": rows[1:2]}))
    with pytest.raises(ValueError, match="several lists \\(train, test\\): choose one with --split"):
        D.load_problems(tmp_path / "splits.json")
    test = D.load_problems(tmp_path / "splits.json", split="test")
    assert [p.answer for p in test.problems] == ["3"] and test.problems[0].id == "dataset:splits.test:0"


def test_csv_fields_by_name_case_aside_or_named_explicitly(tmp_path):
    with open(tmp_path / "sheet.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Question", "Answer", "Notes"])
        w.writerow(["Lena has 4 shells and finds 3 more. How many shells now?", "She has 4 + 3 = 7.\n#### 7", "x"])
        w.writerow(["What is the capital of France?", "Paris", "y"])
        w.writerow(["How many legs has a spider?", "", "an empty cell"])
    ds = D.load_problems(tmp_path / "sheet.csv")
    assert (ds.question_field, ds.answer_field) == ("Question", "Answer")
    assert [p.answer for p in ds.problems] == ["7", "Paris"] and ds.skipped_count == 1
    notes = D.load_problems(tmp_path / "sheet.csv", answer_field="Notes")
    assert [p.answer for p in notes.problems] == ["x", "y", "an empty cell"]


def test_parquet_is_read_with_pyarrow(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.Table.from_pylist([{"prompt": "Noah has 10 coins and spends 4. How many are left?", "target": 6},
                                         {"prompt": "What is 7 times 8?", "target": None}]),
                   tmp_path / "small.parquet")
    ds = D.load_problems(tmp_path / "small.parquet")
    assert (ds.question_field, ds.answer_field) == ("prompt", "target")
    assert [(p.id, p.answer) for p in ds.problems] == [("dataset:small:0", "6")] and ds.skipped_count == 1


def test_auto_detection_takes_the_first_candidate_in_order(tmp_path):
    # both "answer" and "solution": the answer field wins; "question" before "problem"
    write_jsonl(tmp_path / "both.jsonl", [{"problem": "p", "question": "What is 2 + 3?", "solution": "long",
                                            "answer": "5"}])
    ds = D.load_problems(tmp_path / "both.jsonl")
    assert (ds.question_field, ds.answer_field) == ("question", "answer") and ds.problems[0].answer == "5"


# ---- errors: one line each, naming what is wrong ----------------------------------------------

@pytest.mark.parametrize("name, content, kwargs, says", [
    ("missing.jsonl", None, {}, "dataset file '.*missing.jsonl' does not exist"),
    ("notes.txt", "hello", {}, "unknown format '.txt'"),
    ("bad.jsonl", '{"question": "q", "answer": "1"}\nnot json\n', {}, "bad.jsonl:2: not JSON"),
    ("bad.json", "[1, 2", {}, "not JSON"),
    ("scalars.json", "[1, 2]", {}, "row 0 is int, not an object"),
    ("odd.jsonl", '{"q": "What?", "a": "1"}\n', {}, "has no question field .*its fields: q, a.*--question-field"),
    ("noans.jsonl", '{"question": "What?", "reply": "1"}\n', {}, "has no answer field .*its fields: question, reply"),
    ("named.jsonl", '{"question": "What?", "answer": "1"}\n', {"answer_field": "gold"},
     "answer field 'gold' is not in .*its fields: question, answer"),
    ("same.jsonl", '{"question": "What?", "answer": "1"}\n', {"question_field": "answer"}, "both read from field"),
    ("empty.csv", "", {}, "empty, not even a header row"),
    ("none.jsonl", "\n\n", {}, "holds no rows"),
    ("unread.jsonl", '{"question": "What?", "answer": "worked out\\nat length"}\n', {},
     "none of its 1 rows is usable"),
    ("split.jsonl", '{"question": "What?", "answer": "1"}\n', {"split": "test"}, "--split 'test' applies to"),
    ("small.jsonl", '{"question": "What?", "answer": "1"}\n', {"n": 2}, "n must be from 1 to 1"),
    ("fake.parquet", "not parquet", {}, "not a Parquet file"),
])
def test_bad_files_are_one_clear_line(tmp_path, name, content, kwargs, says):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=says) as e:
        D.load_problems(path, **kwargs)
    assert "\n" not in str(e.value)


def test_a_folder_or_an_empty_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        D.load_problems(tmp_path)
    with pytest.raises(ValueError, match="dataset is empty"):
        D.load_problems("  ")


# ---- hub ids ------------------------------------------------------------------------------------

class FakeHub:
    """What the datasets library's load_dataset returns: every split, or the one asked for."""

    def __init__(self, splits=None, error=None):
        self.splits = splits or {"train": [{"question": "What is 1 + 1?", "answer": "1 + 1 = 2\n#### 2"}],
                                 "test": [{"question": "What is 2 + 2?", "answer": "2 + 2 = 4\n#### 4"}]}
        self.error, self.calls = error, []

    def load_dataset(self, name, config=None, split=None):
        self.calls.append((name, config, split))
        if self.error:
            raise self.error
        return self.splits if split is None else self.splits[split]


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(D, "_online", lambda *a, **k: True)


def test_a_hub_id_without_the_datasets_library_is_one_line(monkeypatch):
    monkeypatch.setattr(D, "_hub_library", lambda: None)
    with pytest.raises(ValueError, match=r"needs the datasets library, which is not installed \(pip install"):
        D.load_problems("openai/gsm8k")


def test_a_hub_id_offline_says_so(monkeypatch):
    monkeypatch.setattr(D, "_hub_library", lambda: FakeHub())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE is set"):
        D.load_problems("openai/gsm8k")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(D, "_online", lambda *a, **k: False)
    with pytest.raises(ValueError, match="this machine has no network"):
        D.load_problems("openai/gsm8k")


def test_a_hub_data_set_takes_its_test_split_or_the_one_named(monkeypatch, online):
    hub = FakeHub()
    monkeypatch.setattr(D, "_hub_library", lambda: hub)
    ds = D.load_problems("openai/gsm8k:main")
    assert hub.calls == [("openai/gsm8k", "main", None)] and ds.split == "test"
    assert [(p.id, p.answer) for p in ds.problems] == [("dataset:openai/gsm8k:main/test:0", "4")]
    assert D.load_problems("openai/gsm8k:main", split="train").problems[0].answer == "2"
    monkeypatch.setattr(D, "_hub_library", lambda: FakeHub({"train": [], "validation": []}))
    with pytest.raises(ValueError, match="has the splits train, validation: choose one with --split"):
        D.load_problems("someone/qa")
    monkeypatch.setattr(D, "_hub_library", lambda: FakeHub(error=ConnectionError("Couldn't reach the hub\nretry")))
    with pytest.raises(ValueError, match="^could not load hub data set 'someone/qa': Couldn't reach the hub$"):
        D.load_problems("someone/qa")


# ---- thoughtscope eval --dataset -----------------------------------------------------------------

def test_eval_on_a_dataset_scores_as_on_the_same_held_out_problems(tmp_path, capsys):
    from engine.demo_model.problems import load_problems
    from engine.evaluation.evaluate import HELDOUT
    held = load_problems(HELDOUT, "easy")[:3]
    # the same three questions, with GSM8K-style gold answers, after a row whose gold is unreadable
    rows = [{"question": "What is 3 + 4?", "answer": "Add them.\nThat makes seven."}]
    rows += [{"question": p.question, "answer": f"The result.\n#### {p.answer}"} for p in held]
    path = write_jsonl(tmp_path / "mine.jsonl", rows)
    assert main(["eval", "--dataset", str(path), "--method", "greedy", "--n", "3", "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["problems"] == f"dataset:{path}" and out["tier"] == "dataset" and out["n"] == 3
    assert 0 <= out["accuracy"] <= out["answered"] <= 1
    assert out["dataset"]["skipped"] == 1 and out["dataset"]["usable"] == 3
    assert "skipped 1 of 4 rows" in captured.err
    assert main(["eval", "--tier", "easy", "--method", "greedy", "--n", "3", "--json"]) == 0
    same = json.loads(capsys.readouterr().out)
    assert same["problems"] == "held-out" and "answered" in same
    for key in ("accuracy", "answered", "generated_tokens"):
        assert out[key] == same[key], key
    assert main(["eval", "--dataset", str(path), "--method", "greedy", "--n", "3", "--details", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert [r["problem_id"] for r in results] == [f"dataset:mine:{i}" for i in (1, 2, 3)]
    assert [r["gold"] for r in results] == [str(p.answer) for p in held]


@pytest.mark.parametrize("args, says", [
    (["--dataset", "{good}", "--fresh", "3"], "--fresh picks built-in problems; --dataset brings its own"),
    (["--dataset", "{good}", "--tier", "easy"], "--tier picks built-in problems"),
    (["--dataset", "{good}", "--method", "leco"], "--dataset does not work with method 'leco'"),
    (["--split", "test"], "--split needs --dataset"),
    (["--answer-field", "gold"], "--answer-field needs --dataset"),
    (["--dataset", "{missing}"], "does not exist"),
    (["--dataset", "{good}", "--question-field", "prompt"], "question field 'prompt' is not in"),
])
def test_eval_refuses_bad_dataset_requests_before_the_model_loads(tmp_path, capsys, args, says):
    good = write_jsonl(tmp_path / "good.jsonl", GSM)
    args = [a.format(good=good, missing=tmp_path / "missing.jsonl") for a in args]
    # a model that does not exist: the dataset's error comes first, so nothing was loaded
    assert main(["eval", "--model", str(tmp_path / "no-model"), *args]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and says in err[0], err
