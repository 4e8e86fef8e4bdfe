"""A search process killed with SIGKILL at a random moment: the database opens cleanly, keeps
every event the run had committed, marks the session interrupted, and the app shows it."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from app.mcts_tab import view_outputs
from app.sessions_tab import open_session, session_rows
from engine import events as E
from engine.store import Store
from engine.tree import Tree

QUESTION = "Mia has 23 apples. She buys 14 more apples. How many apples does Mia have now?"
# (method, extra flags): long runs on the tiny random model, each killed at a random moment
KILLS = [("mcts", ["--rollouts", "2000"]), ("mcts", ["--rollouts", "2000", "--children", "4"]),
         ("rstar", ["--rollouts", "500"]), ("sra-mcts", ["--rollouts", "2000"]),
         ("beam", ["--beam-width", "16", "--children", "8", "--max-depth", "64"])]   # width 4 could finish in 3 s


def _events_so_far(db) -> int:
    if not db.exists():
        return 0
    try:
        with Store(db) as s:
            rows = s.list_sessions()
            return rows[0]["events"] if rows else 0
    except Exception:              # the writer may be creating the schema right now
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("point", range(len(KILLS)))
def test_a_search_killed_at_a_random_moment_leaves_a_database_the_app_can_show(tiny_llama_dir, tmp_path, point):
    method, flags = KILLS[point]
    rng = random.Random(f"kill-{point}")
    db = tmp_path / "killed.db"
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "run", method, "--model", str(tiny_llama_dir),
                             "--question", QUESTION, "--db", str(db), "--seed", str(point), *flags],
                            env={**os.environ, "THOUGHTSCOPE_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while _events_so_far(db) < 1 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(rng.uniform(0.0, 3.0))              # a random moment: mid-token, mid-commit, ...
        assert proc.poll() is None, "the run ended before the kill point: make it longer"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with Store(db) as s:
        assert s.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        (row,) = s.list_sessions()
        assert row["status"] == "interrupted" and row["method"] == method
        events = s.events(row["session_id"])
        assert len(events) == row["events"] >= 1 and isinstance(events[0], E.RunStarted)
        assert [r[0] for r in s.db.execute("SELECT seq FROM events ORDER BY seq")] == list(range(len(events)))
        tree = Tree.fold(events)                       # every committed event folds; no end event
        assert tree.finished is None
        # the app lists it and opens it into the Search view, like any finished run
        assert [r[0] for r in session_rows(s)] == [row["session_id"]]
        view, status = open_session(s, row["session_id"][:8])
        assert "interrupted" in status and len(view["events"]) == len(events)
        fig, progress, final, explanation = view_outputs(view["events"])
        assert progress
        # and the file takes new runs
        sid = s.create_session(method="greedy", model="m", question="q", gold=None, config={}, seed=0)
        s.append(sid, E.RunStarted(method="greedy", question="q", prompt="q", gold=None, config={}, seed=0,
                                   model="m"))
        assert len(s.events(sid)) == 1
