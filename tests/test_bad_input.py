"""Bad input everywhere (issue 10): questions, numeric settings, model folders, database files,
through the engine, the CLI (in-process `engine.cli.main`, plus one real argv) and the served
app's API. Each must end in one clear line naming what is wrong and what to do, exit code 2 on
the CLI, and leave every stored session as it was. Real parts: the tiny random Llama of
conftest.py, real SQLite files, real Gradio on loopback."""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import re
import subprocess
import sys
import time

import gradio as gr
import pytest
from conftest import free_port

import engine.store as store_module
from engine.cli import main
from engine.inputs import MAX_QUESTION_CHARS, check_text, number, whole
from engine.models.base import InputError
from engine.search import METHODS
from engine.search.mcts import MCTSConfig
from engine.store import SCHEMA_VERSION, Store, StoreError

QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"


def cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and "Traceback" not in err and "internal error" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]


# ---- questions ---------------------------------------------------------------------------------

BAD_QUESTIONS = [
    ("", "is empty"),
    ("  \n\t ", "is empty"),
    ("x" * 100_000, f"the limit is {MAX_QUESTION_CHARS:,}"),       # 100 KB
    ("what is \udcff + 1?", "not valid UTF-8 text (byte 0xff at position 8)"),   # argv's undecodable byte
    ("half a pair \ud800", "not valid UTF-8"),                    # a JSON client's lone surrogate
    ("2 + 2\x00?", "NUL character"),
    (None, "is empty"),
    (42, "must be text"),
]


@pytest.mark.parametrize("question,needle", BAD_QUESTIONS, ids=lambda v: repr(v)[:20])
def test_a_bad_question_is_refused_by_the_backend_before_any_tokenizer_work(tiny_backend, question, needle):
    t0 = time.perf_counter()
    with pytest.raises(InputError) as info:
        tiny_backend.render_prompt(question)
    assert time.perf_counter() - t0 < 0.05          # a length check, not a tokenizer run
    assert needle in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("question,needle", [q for q in BAD_QUESTIONS if isinstance(q[0], str)],
                         ids=lambda v: repr(v)[:20])
def test_a_bad_question_on_the_cli_is_one_line_and_stores_nothing(capsys, tmp_path, question, needle):
    db = tmp_path / "runs.db"
    rc, _, err = cli(capsys, "run", "greedy", "--question", question, "--db", str(db))
    assert_one_line_error(rc, err, "--question", needle)
    assert not db.exists()                           # refused before the database is touched
    rc, _, err = cli(capsys, "generate", "--prompt", question)
    assert_one_line_error(rc, err, "--prompt", needle)


def test_a_non_utf8_argv_byte_is_one_line_from_a_real_process(tmp_path):
    env = {**os.environ, "THOUGHTSCOPE_THREADS": "1", "HF_HUB_OFFLINE": "1", "LC_ALL": "C.UTF-8"}
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "run", "greedy", "--question", b"what is \xff?",
                           "--db", str(tmp_path / "runs.db")], capture_output=True, env=env, timeout=600)
    err = proc.stderr.decode("utf-8")
    assert_one_line_error(proc.returncode, err, "--question is not valid UTF-8 text (byte 0xff")


def test_text_checks_accept_ordinary_unicode_and_an_optional_blank():
    assert check_text("Combien font 2 + 3 ? ½ → 🍎") == "Combien font 2 + 3 ? ½ → 🍎"
    assert check_text("", "--answer", required=False) == ""
    assert check_text(None, "--answer", required=False) == ""


# ---- numeric settings --------------------------------------------------------------------------

BAD_SETTINGS = [  # (method, field, value): each must be a ValueError naming the field
    ("mcts", "rollouts", 10**12), ("mcts", "rollouts", 0), ("mcts", "rollouts", -1), ("mcts", "rollouts", 2.0),
    ("mcts", "rollouts", True), ("mcts", "rollouts", None), ("mcts", "rollouts", "16"),
    ("mcts", "c", float("nan")), ("mcts", "c", float("inf")), ("mcts", "c", -0.5), ("mcts", "c", True),
    ("mcts", "temperature", float("nan")), ("mcts", "temperature", -1.0), ("mcts", "temperature", 1e300),
    ("mcts", "top_p", float("nan")), ("mcts", "top_p", 0.0), ("mcts", "min_p", float("nan")), ("mcts", "min_p", 1.5),
    ("greedy", "max_depth", 10**9), ("sc", "samples", 0), ("sc", "samples", float("nan")),
    ("beam", "beam_width", False), ("leco", "max_rounds", float("inf")), ("leco", "lowest", -3),
    ("rstar", "confident_skip", True), ("rstar", "cut_low", float("nan")), ("rstar", "cut_high", 1.0),
    ("rstar", "disc_temperature", float("nan")), ("rstar", "votes", 10**6),
    ("mcts-code", "max_failures", 0), ("sra-mcts", "alpha", float("nan")), ("sra-mcts", "end_gate", float("inf")),
    ("se", "samples", 1), ("se", "nli_model", 3), ("sugar", "low", float("nan")), ("sugar", "high", float("-inf")),
    ("sugar", "corpus", None), ("sugar", "passages", 10**12),
]


@pytest.mark.parametrize("method,field,value", BAD_SETTINGS, ids=lambda v: repr(v)[:16])
def test_a_bad_setting_is_a_value_error_naming_the_field(method, field, value):
    with pytest.raises(ValueError, match=field) as info:
        METHODS[method].config(**{field: value})
    assert len(str(info.value)) < 200 and "\n" not in str(info.value)


def test_a_300_digit_value_is_cut_in_the_message():
    with pytest.raises(ValueError, match=r"rollouts must be from 1 to 10000, got 1000\d+\.\.\.$"):
        MCTSConfig(rollouts=int(1e300))


def test_sampling_rejects_an_unbounded_top_k_and_a_non_sequence_order():
    from engine.sampling import MAX_TOP_K, SamplingConfig
    with pytest.raises(ValueError, match="top_k"):
        SamplingConfig(top_k=MAX_TOP_K + 1)
    for order in (None, 3, "temperature", ("temperature", 1, "top_p", "min_p")):
        with pytest.raises(ValueError, match="order"):
            SamplingConfig(order=order)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1, 2.5, True, None, "7", 2**64])
def test_raw_form_values_are_checked_before_a_config_sees_them(value):
    with pytest.raises(InputError, match="seed must be a whole number from 0"):
        whole(value, "seed", 0, 2**63 - 1)
    assert whole(3.0, "seed", 0, 10) == 3 and number(0.5, "t", 0, 1) == 0.5
    if value != 2.5:                                 # 2.5 is a fine temperature, only not a seed
        with pytest.raises(InputError, match="temperature must be a number from 0 to 100"):
            number(value, "temperature", 0, 100)


@pytest.mark.parametrize("flags,needle", [
    (["--rollouts", "1000000000000"], "rollouts must be from 1 to 10000"),
    (["--rollouts", "nan"], "--rollouts must be a int"),
    (["--c", "nan"], "--c must be from"),
    (["--c", "inf"], "--c must be from"),
    (["--temperature", "-1"], "temperature must be"),
    (["--top-p", "0"], "top_p must be"),
    (["--max-depth", "2.5"], "--max-depth must be a int"),
    (["--seed", "-1"], "--seed must be from 0"),
    (["--samples", "3"], "--samples does not apply to method 'mcts'"),
    (["--reward", "\udcff"], "invalid choice"),
])
def test_a_bad_flag_on_the_cli_is_one_line(capsys, tmp_path, flags, needle):
    db = tmp_path / "runs.db"
    rc, _, err = cli(capsys, "run", "mcts", "--question", QUESTION, "--db", str(db), *flags)
    assert_one_line_error(rc, err, needle)
    assert not db.exists()


# ---- models ------------------------------------------------------------------------------------

def _broken_model(tiny_llama_dir, tmp_path, kind: str):
    path = tmp_path / kind
    if kind == "missing":
        return path
    shutil.copytree(tiny_llama_dir, path)
    if kind == "corrupt-config":
        (path / "config.json").write_text("{not json")
    elif kind == "truncated-weights":
        w = path / "model.safetensors"
        w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    elif kind == "no-weights":
        (path / "model.safetensors").unlink()
    return path


@pytest.mark.parametrize("kind,needle", [
    ("missing", "does not exist"),
    ("corrupt-config", "not a valid JSON file"),
    ("truncated-weights", "damaged or incomplete"),
    ("no-weights", "no file named model.safetensors"),
])
def test_a_broken_model_folder_is_one_line(capsys, tiny_llama_dir, tmp_path, kind, needle):
    model = _broken_model(tiny_llama_dir, tmp_path, kind)
    rc, _, err = cli(capsys, "generate", "--prompt", QUESTION, "--model", str(model))
    assert_one_line_error(rc, err, needle)


def test_an_unknown_hub_id_offline_is_one_line(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc, _, err = cli(capsys, "run", "greedy", "--question", QUESTION, "--model", "nobody/no-such-model-xyz")
    assert_one_line_error(rc, err, "nobody/no-such-model-xyz", "no network", "--model PATH")


# ---- database files ----------------------------------------------------------------------------

@pytest.fixture
def filled_db(tiny_llama_dir, tmp_path, capsys):
    """A database holding one real greedy run; returns (path, session id, its export)."""
    db = tmp_path / "runs.db"
    rc, out, err = cli(capsys, "run", "greedy", "--question", QUESTION, "--model", str(tiny_llama_dir),
                       "--db", str(db), "--max-depth", "2", "--json")
    assert rc == 0, err
    sid = json.loads(out)["session_id"]
    with Store(db) as s:
        exported = s.export_session(sid)
    return db, sid, exported


def _intact(db, sid, exported) -> None:
    """The session is still there, row and events exactly as exported before the failure."""
    with Store(db) as s:
        again = s.export_session(sid)
    assert again["session"] == exported["session"] and again["events"] == exported["events"]


def _emulate_permissions(monkeypatch):
    """Root may write any file, so chmod alone proves nothing there: answer 'may I write?' from
    the permission bits, as the kernel would for the file's owner. Elsewhere, nothing is patched."""
    if os.geteuid() == 0:
        monkeypatch.setattr(store_module, "_writable", lambda p: bool(os.stat(p).st_mode & 0o200))


@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_read_only_database_lists_but_refuses_to_store(capsys, monkeypatch, tiny_llama_dir, filled_db, what):
    db, sid, exported = filled_db
    _emulate_permissions(monkeypatch)
    target = db if what == "file" else db.parent
    mode = target.stat().st_mode
    target.chmod(0o444 if what == "file" else 0o555)
    try:
        rc, out, err = cli(capsys, "sessions", "list", "--db", str(db), "--json")
        assert rc == 0, err
        assert [r["session_id"] for r in json.loads(out)] == [sid]
        rc, _, err = cli(capsys, "run", "greedy", "--question", QUESTION, "--model", str(tiny_llama_dir),
                         "--db", str(db))
        assert_one_line_error(rc, err, "is read-only", "chmod u+w", "--db")
        rc, _, err = cli(capsys, "sessions", "delete", sid, "--db", str(db))
        assert_one_line_error(rc, err, "is read-only")
    finally:
        target.chmod(mode)
    _intact(db, sid, exported)


def test_a_database_locked_by_another_process_is_one_line(capsys, monkeypatch, tiny_llama_dir, filled_db):
    db, sid, exported = filled_db
    monkeypatch.setenv(store_module.ENV_TIMEOUT, "0.2")
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sqlite3, sys, time\n"
                               f"c = sqlite3.connect({str(db)!r}); c.execute('BEGIN IMMEDIATE')\n"
                               "print('locked', flush=True); sys.stdin.readline()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        rc, out, err = cli(capsys, "sessions", "list", "--db", str(db), "--json")   # WAL: reading still works
        assert rc == 0 and [r["session_id"] for r in json.loads(out)] == [sid], err
        t0 = time.perf_counter()
        rc, _, err = cli(capsys, "run", "greedy", "--question", QUESTION, "--model", str(tiny_llama_dir),
                         "--db", str(db))
        assert_one_line_error(rc, err, "the database is locked by another ThoughtScope process", "0.2 s")
        assert time.perf_counter() - t0 < 30
    finally:
        holder.communicate("\n", timeout=10)
    _intact(db, sid, exported)
    with Store(db) as s:     # the refused run left no half-written session behind
        assert [r["session_id"] for r in s.list_sessions()] == [sid]


def test_a_bad_busy_timeout_is_a_store_error(tmp_path, monkeypatch):
    monkeypatch.setenv(store_module.ENV_TIMEOUT, "soon")
    with pytest.raises(StoreError, match="THOUGHTSCOPE_DB_TIMEOUT must be a number"):
        Store(tmp_path / "runs.db")
    with pytest.raises(StoreError, match="from 0 to 86400"):
        Store(tmp_path / "runs.db", timeout=float("nan"))


@pytest.mark.parametrize("damage,needle", [
    ("corrupt", "not a ThoughtScope database"),
    ("newer", f"newer ThoughtScope (schema {SCHEMA_VERSION + 1}"),
])
@pytest.mark.parametrize("command", ["list", "run", "serve"])
def test_a_corrupt_or_newer_database_is_one_line_everywhere_and_left_as_it_was(
        capsys, tiny_llama_dir, tmp_path, damage, needle, command):
    db = tmp_path / "runs.db"
    if damage == "corrupt":
        db.write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    else:
        Store(db).close()
        with sqlite3.connect(db) as conn:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = db.read_bytes()
    argv = {"list": ["sessions", "list", "--db", str(db)],
            "run": ["run", "greedy", "--question", QUESTION, "--model", str(tiny_llama_dir), "--db", str(db)],
            "serve": ["serve", "--model", str(tiny_llama_dir), "--db", str(db), "--port", str(free_port())]}[command]
    rc, _, err = cli(capsys, *argv)
    assert_one_line_error(rc, err, needle, str(db))
    assert db.read_bytes() == before                 # never "repaired" or overwritten


def test_a_database_path_in_a_missing_folder_is_one_line(capsys, tmp_path):
    rc, _, err = cli(capsys, "sessions", "list", "--db", str(tmp_path / "no" / "such" / "runs.db"))
    assert_one_line_error(rc, err, "cannot create", "pass another --db")


# ---- the app's callbacks and its API -----------------------------------------------------------

def test_search_callback_turns_raw_nan_and_a_read_only_store_into_gr_errors(tiny_backend, tmp_path, monkeypatch):
    from app.mcts_tab import RunControl, run_search
    args = dict(picked=None, method="mcts", rollouts=2, children=2, c=1.0, max_depth=2, temperature=0.8,
                min_p=0.0, reward="self_consistency", final_rule="majority", samples=2, beam_width=2, seed=0)
    store = Store(tmp_path / "runs.db")
    for bad, needle in [({"rollouts": float("nan")}, "rollouts must be"), ({"c": float("nan")}, "c must be"),
                        ({"seed": float("nan")}, "seed must be a whole number"), ({"seed": -1}, "seed must be"),
                        ({"temperature": "hot"}, "temperature must be"), ({"method": "nope"}, "unknown method")]:
        with pytest.raises(gr.Error, match=needle):
            list(run_search(tiny_backend, store, QUESTION, **{**args, **bad}, control=RunControl()))
    assert store.list_sessions() == []               # nothing was started
    store.close()
    _emulate_permissions(monkeypatch)
    (tmp_path / "runs.db").chmod(0o444)
    try:
        with Store(tmp_path / "runs.db") as ro:
            with pytest.raises(gr.Error, match="is read-only"):
                list(run_search(tiny_backend, ro, QUESTION, **args, control=RunControl()))
    finally:
        (tmp_path / "runs.db").chmod(0o644)


def test_app_sliders_name_the_setting_and_its_range_for_any_bad_api_value():
    from app.controls import Slider
    slider = Slider(1, 200, value=16, step=1, label="Rollouts (MCTS)")
    assert slider.get_block_name() == "slider"                 # drawn by Gradio's own slider
    assert slider.preprocess(16) == 16 and slider.preprocess(200.0) == 200
    for bad, needle in [(None, "must be a number from 1 to 200, got None"), ("7", "a number from 1 to 200, got '7'"),
                        (True, "a number from 1 to 200, got True"), (math.inf, "a number from 1 to 200, got inf"),
                        (0, "must be from 1 to 200, got 0"), (201, "must be from 1 to 200, got 201")]:
        with pytest.raises(gr.Error, match=re.escape(needle)):
            slider.preprocess(bad)


@pytest.mark.slow
def test_the_served_api_answers_bad_input_with_a_message_and_keeps_serving(tiny_backend, tmp_path):
    from gradio_client import Client
    from app.main import LAUNCH_KWARGS, build_app

    demo = build_app(tiny_backend, Store(tmp_path / "runs.db"))
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                            **LAUNCH_KWARGS)
    client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
    def gen(question, temperature=0.0, top_k=0):     # /generate's inputs, in order
        return client.predict(question, temperature, top_k, 1.0, 0.0, "transformers", 8, 0, api_name="/generate")
    try:
        for call, needle in [
            (lambda: client.predict(question="", method="greedy", api_name="/run_search"), "the question is empty"),
            (lambda: gen("  "), "the question is empty"),
            (lambda: gen("x" * 100_000), "the limit is 20,000"),
            (lambda: client.predict(question=QUESTION, method="mcts", rollouts=-3, api_name="/run_search"),
             re.escape("Rollouts (MCTS) must be from 1 to 200, got -3")),
            (lambda: client.predict(question=QUESTION, method="mcts", rollouts=1e12, api_name="/run_search"),
             re.escape("Rollouts (MCTS) must be from 1 to 200, got 1000000000000.0")),
            (lambda: client.predict(question=QUESTION, method="mcts", rollouts=None, api_name="/run_search"),
             re.escape("Rollouts (MCTS) must be a number from 1 to 200, got None")),
            (lambda: client.predict(question=QUESTION, method="mcts", c="lots", api_name="/run_search"),
             re.escape("Exploration c (UCT) must be a number from 0 to 5, got 'lots'")),
            (lambda: gen(QUESTION, top_k=2.5), "top_k must be a whole number"),
        ]:
            with pytest.raises(Exception, match=needle):
                call()
        with pytest.raises(ValueError, match="not JSON compliant"):   # NaN cannot even leave the client
            gen(QUESTION, temperature=math.nan)
        out, summary = gen(QUESTION)                 # still serving
        assert summary.startswith("**8** tokens")
        result = client.predict(question=QUESTION, method="greedy", max_depth=2, api_name="/run_search")
        assert any("session `" in str(x) for x in result)
    finally:
        client.close()
        demo.close(verbose=False)
