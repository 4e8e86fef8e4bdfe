"""The SQLite store on real files: runs in and out, migrations, corrupt and newer files, a
process killed mid-run, exports, and the `sessions` CLI. Events are written by hand: no model."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import networkx as nx
import pytest

from engine import events as E
from engine.cli.sessions import add_sessions_parser, cmd_sessions
from engine.store import SCHEMA_VERSION, SessionNotFound, Store, StoreError, default_db_path, record

ROOT = Path(__file__).resolve().parents[1]
META = dict(method="mcts", model="tiny", question="What is 2+3*4?", gold="14",
            config={"iterations": 4, "c": 1.4}, seed=7)


def run_events() -> list[E.Event]:
    """A small finished MCTS-like run: root, two steps, one answer leaf, a reward, a backprop."""
    return [
        E.RunStarted(method="mcts", question=META["question"], prompt="Q: What is 2+3*4?\n",
                     gold="14", config=META["config"], seed=7, model="tiny"),
        E.NodeProposed(node=0, parent=-1, depth=0, action="root", text="What is 2+3*4?"),
        E.IterationStarted(iteration=1, of=4),
        E.NodeProposed(node=1, parent=0, depth=1, action="step", text="3*4 = 12.\n",
                       tokens=[[5, "3", -0.1234567891], [6, "*", -0.5]], prior=-0.31),
        E.NodeProposed(node=2, parent=0, depth=1, action="step", text="2+3 = 5.\n", prior=-1.2),
        E.Expanded(node=0, children=[1, 2]),
        E.Selected(node=0, chosen=1, rule="unvisited",
                   candidates=[{"node": 1, "visits": 0, "q": 0.0, "explore": 1.0, "uct": 1.0}], c=1.4),
        E.NodeProposed(node=3, parent=1, depth=2, action="answer", text="2+12 = 14. Answer: 14",
                       terminal=True, answer="14", correct=True),
        E.TerminalReward(node=3, reward=1.0, source="gold", answer="14"),
        E.Backprop(path=[0, 1, 3], reward=1.0, before=[[0, 0.0], [0, 0.0], [0, 0.0]],
                   after=[[1, 1.0], [1, 1.0], [1, 1.0]]),
        E.FinalAnswer(answer="14", rule="most_visited", path=[0, 1, 3], correct=True),
        E.RunFinished(status="done", generated_tokens=21, computed_tokens=30, reused_tokens=9),
    ]


def finished_session(store: Store, **overrides) -> str:
    sid = store.create_session(**{**META, **overrides})
    record(store, sid, run_events())
    return sid


# ---- runs in and out --------------------------------------------------------------------

def test_create_append_finish_and_read_back(store):
    sid = store.create_session(**META)
    assert store.session(sid)["status"] == "running"
    evs = run_events()
    assert [store.append(sid, ev) for ev in evs] == list(range(len(evs)))   # seq is 0-based order
    row = store.finish(sid, status="done", wall_s=1.23456)

    assert row["status"] == "done" and row["answer"] == "14" and row["correct"] is True
    assert (row["nodes"], row["events"]) == (4, len(evs))
    assert (row["generated_tokens"], row["computed_tokens"], row["reused_tokens"], row["wall_s"]) == (21, 30, 9, 1.235)
    assert row["config"] == META["config"] and row["pid"] == os.getpid() and row["finished"]
    assert set(row["versions"]) == {"python", "torch", "transformers", "thoughtscope"}
    assert [e.dumps() for e in store.events(sid)] == [e.dumps() for e in evs]
    assert [e.dumps() for e in store.events(sid, limit=3)] == [e.dumps() for e in evs[:3]]
    assert store.event_counts(sid)["node_proposed"] == 4

    # the derived node rows, as any SQLite tool sees them
    nodes = list(store.db.query("SELECT node, parent, visits, value, reward, terminal FROM nodes "
                                "WHERE session_id = ? ORDER BY node", [sid]))
    assert [(n["node"], n["parent"]) for n in nodes] == [(0, -1), (1, 0), (2, 0), (3, 1)]
    assert nodes[3] == {"node": 3, "parent": 1, "visits": 1, "value": 1.0, "reward": 1.0, "terminal": 1}
    assert nodes[2]["visits"] == 0 and nodes[2]["reward"] is None


def test_list_filters_newest_first_and_delete(store):
    a = finished_session(store)
    b = finished_session(store, method="greedy", owner="ada")
    c = store.create_session(**META)           # still running, in this process: stays 'running'
    assert [r["session_id"] for r in store.list_sessions()] == [c, b, a]
    assert [r["session_id"] for r in store.list_sessions(method="greedy")] == [b]
    assert [r["session_id"] for r in store.list_sessions(owner="ada")] == [b]
    assert [r["session_id"] for r in store.list_sessions(correct=True)] == [b, a]
    assert store.list_sessions(correct=False) == [] and store.list_sessions(model="other") == []
    assert store.session(c)["status"] == "running"

    store.delete(b)
    assert [r["session_id"] for r in store.list_sessions()] == [c, a]
    for call in (store.session, store.events, store.delete, lambda s: store.append(s, run_events()[0])):
        with pytest.raises(SessionNotFound):
            call(b)
    assert store.db.execute("SELECT count(*) FROM events WHERE session_id = ?", [b]).fetchone()[0] == 0


def test_record_marks_failed_and_stopped(store):
    def broken():
        yield from run_events()[:3]
        raise RuntimeError("backend fell over")

    sid = store.create_session(**META)
    with pytest.raises(RuntimeError):
        record(store, sid, broken())
    row = store.session(sid)
    assert (row["status"], row["events"]) == ("failed", 3) and "backend fell over" in row["message"]

    sid = store.create_session(**META)
    record(store, sid, iter(run_events()), should_stop=lambda: True)
    assert (store.session(sid)["status"], store.session(sid)["events"]) == ("stopped", 1)

    stopped = run_events()[:-1] + [E.RunFinished(status="stopped", message="user pressed stop")]
    sid = store.create_session(**META)
    tree = record(store, sid, stopped)
    assert len(tree) == 4 and store.session(sid)["status"] == "stopped"


def test_a_running_session_left_by_an_earlier_process_with_our_pid_is_interrupted(tmp_path):
    with Store(tmp_path / "a.db") as s:
        sid = s.create_session(**META)
        s.append(sid, run_events()[0])
        s.db.execute("UPDATE sessions SET pid = ? WHERE session_id = ?", [os.getpid(), sid])
        from engine import store as store_module
        store_module._ACTIVE.discard(sid)         # as if this process had been restarted
        assert s.session(sid)["status"] == "interrupted"
        assert s.session(sid)["finished"] and s.session(sid)["events"] == 1


def test_threads_and_a_second_connection_append_safely(store):
    """Gradio worker threads share one Store; another Store (another connection) writes too."""
    other = Store(store.path)
    sids = [store.create_session(**META) for _ in range(3)] + [other.create_session(**META)]
    owners = [store, store, store, other]

    def write(s, sid):
        s.append(sid, run_events()[1])
        for i in range(1, 40):
            s.append(sid, E.NodeProposed(node=i, parent=0, depth=1, action="step", text=str(i)))

    threads = [threading.Thread(target=write, args=(s, sid)) for s, sid in zip(owners, sids)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    for sid in sids:
        assert [e.node for e in store.events(sid)] == list(range(40))


# ---- export / import --------------------------------------------------------------------

def test_export_import_round_trip_is_lossless(store, tmp_path):
    sid = finished_session(store)
    data = store.export_session(sid)
    assert (data["format"], data["version"]) == ("thoughtscope-session", 1)
    text = json.dumps(data)                          # through a file, as a user would

    with Store(tmp_path / "other.db") as other:
        new_same = other.import_session(json.loads(text))   # its id is free there: kept
        assert new_same == sid
    new = store.import_session(json.loads(text))     # taken here: a new id
    assert new != sid

    old_row, new_row = store.session(sid), store.session(new)
    assert {**old_row, "session_id": None} == {**new_row, "session_id": None}
    old_events = store.db.execute("SELECT payload FROM events WHERE session_id = ? ORDER BY seq", [sid]).fetchall()
    new_events = store.db.execute("SELECT payload FROM events WHERE session_id = ? ORDER BY seq", [new]).fetchall()
    assert old_events == new_events                  # the canonical JSON, byte for byte
    assert [e.dumps() for e in store.events(new)] == [e.dumps() for e in run_events()]
    assert store.db.execute("SELECT count(*) FROM nodes WHERE session_id = ?", [new]).fetchone()[0] == 4


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d.update(format="something-else"), "not a ThoughtScope session"),
    (lambda d: d.update(version=99), "newer"),
    (lambda d: d.pop("events"), "events"),
    (lambda d: d["session"].update(status="exploded"), "status"),
    (lambda d: d["events"].append({"type": "teleported"}), "event 12"),
    (lambda d: d["events"].append({"type": "node_proposed", "node": 9}), "event 12"),
    (lambda d: d["events"].insert(1, d["events"].pop(3)), "do not fold"),  # a child before its root
])
def test_import_rejects_malformed_files(store, mutate, words):
    data = store.export_session(finished_session(store))
    mutate(data)
    before = len(store.list_sessions())
    with pytest.raises(StoreError, match=words):
        store.import_session(data)
    assert len(store.list_sessions()) == before     # nothing half-imported


def test_import_rejects_a_non_dict(store):
    with pytest.raises(StoreError, match="not a ThoughtScope session"):
        store.import_session([1, 2, 3])


def test_graphml_export_reads_back(store, tmp_path):
    sid = finished_session(store)
    path = store.export_graphml(sid, tmp_path / "tree.graphml")
    g = nx.read_graphml(path)
    assert sorted(g.nodes) == ["0", "1", "2", "3"] and ("1", "3") in g.edges
    assert g.nodes["3"]["answer"] == "14" and g.nodes["3"]["reward"] == 1.0
    assert isinstance(g.nodes["2"]["value"], float)      # one type per attribute
    assert g.graph["session_id"] == sid and g.graph["question"] == META["question"]


# ---- the file: schema, corruption, a killed writer -------------------------------------

def test_fresh_db_gets_the_latest_schema_in_wal_mode(store, tmp_path):
    assert store.schema_version == SCHEMA_VERSION >= 1
    assert store.db.journal_mode == "wal"
    assert {"sessions", "events", "nodes"} <= set(store.db.table_names())
    with Store(tmp_path / "runs.db") as again:      # reopening does not migrate again
        assert again.schema_version == SCHEMA_VERSION


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "future.db"
    Store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match=f"newer ThoughtScope \\(schema {SCHEMA_VERSION + 1}"):
        Store(path)


def test_a_corrupt_file_is_a_store_error(tmp_path):
    path = tmp_path / "corrupt.db"
    path.write_bytes(os.urandom(8192))
    with pytest.raises(StoreError, match="not a ThoughtScope database"):
        Store(path)


def test_a_foreign_sqlite_file_is_refused(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE sessions (x)")
    with pytest.raises(StoreError, match="not a ThoughtScope one"):
        Store(path)


def test_default_path_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("THOUGHTSCOPE_DB", str(tmp_path / "env.db"))
    assert default_db_path() == tmp_path / "env.db"


WRITER = textwrap.dedent("""
    import sys, time
    from engine import events as E
    from engine.store import Store
    store = Store(sys.argv[1])
    sid = store.create_session(method="mcts", model="tiny", question="q", gold=None, config={}, seed=0)
    print(sid, flush=True)
    store.append(sid, E.NodeProposed(node=0, parent=-1, depth=0, action="root", text="q"))
    i = 1
    while True:
        seq = store.append(sid, E.NodeProposed(node=i, parent=0, depth=1, action="step", text=f"step {i}"))
        print(seq, flush=True)
        i += 1
        time.sleep(0.002)
""")


def test_a_run_killed_with_sigkill_keeps_its_events(tmp_path):
    path = tmp_path / "killed.db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)
    try:
        sid = proc.stdout.readline().strip()
        assert sid, "the writer did not start"
        last = 0
        while last < 25:
            last = int(proc.stdout.readline())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    with Store(path) as s:
        assert s.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        seqs = [r[0] for r in s.db.execute("SELECT seq FROM events WHERE session_id = ? ORDER BY seq", [sid])]
        assert seqs[:last + 1] == list(range(last + 1))
        [row] = s.list_sessions()
        assert row["session_id"] == sid and row["status"] == "interrupted"
        assert row["nodes"] == len(seqs) and "ended" in row["message"]


# ---- the `sessions` CLI -----------------------------------------------------------------

def sessions_cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="thoughtscope")
    add_sessions_parser(ap.add_subparsers(dest="command"), db_flag_help="SQLite file")
    return cmd_sessions(ap.parse_args(["sessions", *argv]))


def test_sessions_cli(tmp_path, capsys):
    db = str(tmp_path / "cli.db")
    with Store(db) as s:
        sid = finished_session(s)
        finished_session(s, method="greedy")

    assert sessions_cli(["list", "--db", db, "--method", "mcts", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["session_id"] == sid and row["events"] == 12 and row["status"] == "done"
    assert {"method", "created", "model", "answer", "correct"} <= row.keys()

    assert sessions_cli(["list", "--db", db]) == 0
    assert capsys.readouterr().out.count("\n") == 2

    assert sessions_cli(["show", sid[:6], "--db", db, "--json"]) == 0     # a unique prefix will do
    shown = json.loads(capsys.readouterr().out)
    assert shown["event_counts"]["node_proposed"] == 4 and shown["answer"] == "14"

    out = tmp_path / "run.json"
    assert sessions_cli(["export", sid, "--db", db, "--out", str(out), "--graphml", str(tmp_path / "t.graphml")]) == 0
    assert json.loads(out.read_text())["session"]["session_id"] == sid
    assert nx.read_graphml(tmp_path / "t.graphml").number_of_nodes() == 4

    capsys.readouterr()
    assert sessions_cli(["import", str(out), "--db", db]) == 0
    new = capsys.readouterr().out.strip()
    assert new != sid
    assert sessions_cli(["delete", new, "--db", db]) == 0
    with Store(db) as s:
        assert len(s.list_sessions()) == 2

    with pytest.raises(SessionNotFound):
        sessions_cli(["show", "nope", "--db", db])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(StoreError, match="not a JSON session file"):
        sessions_cli(["import", str(bad), "--db", db])

