"""``eval --workers W``: K searches spread over W processes, each with its own copy of the model
(engine/evaluation/workers.py). Each problem gets the result it gets in one process, one at a
time (answers, tokens, nodes, triage: exactly); a worker's error reaches the command as its own
one-line message, at once (a problem that fails does not wait for the worker's other searches);
a worker that dies is named with its exit code; workers end when their command is killed; bad
settings are refused before any model loads; ``--workers auto`` (the default) picks one worker per
idle core and per 2 searches, within half the free memory, and 1 where workers cannot help."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.evaluation.evaluate import eval_problems, run_eval
from engine.evaluation.workers import (PROCESS_BYTES, WorkerSpec, Workers, auto_workers, check_workers,
                                        model_bytes, resolve_workers, shares)
from engine.models.base import InputError
from engine.models.registry import DEFAULT_MODEL, load_backend
from engine.search import METHODS

ROOT = Path(__file__).resolve().parents[1]
ROLLOUTS = 4


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_two_workers_give_each_problem_the_result_of_one_process_one_at_a_time():
    done = cli("eval", "--method", "mcts", "--tier", "hard", "--n", "5", "--rollouts", str(ROLLOUTS),
               "--concurrency", "3", "--workers", "2", "--threads", "2", "--json", "--details")
    assert done.returncode == 0, done.stderr
    together = json.loads(done.stdout)
    assert together["workers"] == 2 and together["concurrency"] == 3
    assert together["decoding"]["passes"] > 0          # the workers' clocks came back and were summed

    backend = load_backend(DEFAULT_MODEL, prefix_cache_mb=256)      # as the CLI loads it
    alone = run_eval(backend, "mcts", "hard", 5, 0, METHODS["mcts"].config(rollouts=ROLLOUTS))
    assert together["results"] == alone["results"]
    assert together["generated_tokens"] == alone["generated_tokens"]


def test_a_worker_that_cannot_load_its_model_stops_the_eval_with_that_error():
    spec = WorkerSpec("no-such-model-anywhere", {"prefix_cache_mb": 0}, threads=1)
    with pytest.raises(Exception) as caught:
        with Workers(spec, 2):
            pass
    assert "no-such-model-anywhere" in str(caught.value)


@pytest.mark.slow
def test_a_worker_that_dies_is_named_with_its_exit_code():
    spec = WorkerSpec(DEFAULT_MODEL, {"prefix_cache_mb": 0}, threads=1)
    problems = eval_problems("mcts", "hard", 4)
    with Workers(spec, 2) as workers:
        workers._procs[1].kill()
        workers._procs[1].join()
        with pytest.raises(RuntimeError, match=r"worker 1 stopped \(exit code -9\)"):
            workers.map("mcts", METHODS["mcts"].config(rollouts=2), 0, problems, shares(2, 2), lambda n: None)


@pytest.mark.slow
def test_a_problem_that_fails_in_a_worker_stops_the_eval_with_its_message_at_once():
    import dataclasses
    import time
    spec = WorkerSpec(DEFAULT_MODEL, {"prefix_cache_mb": 0}, threads=1)
    good = eval_problems("mcts", "hard", 12)
    bad = dataclasses.replace(good[0], question="")
    done = []
    with Workers(spec, 2) as workers:
        started = time.monotonic()
        with pytest.raises(InputError, match="the question is empty"):
            workers.map("mcts", METHODS["mcts"].config(rollouts=ROLLOUTS), 0, [bad] + good, shares(4, 2),
                        done.append)
        waited = time.monotonic() - started
    # said when it happened, not once the worker's other search had run out of problems: at most
    # the problems the 3 other searches had already started can have come back
    assert len(done) <= 3, (len(done), waited)


def _stat(pid: int) -> tuple[str, int] | None:
    """A process's state letter and parent, from /proc; None once it is gone."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    state, ppid = stat.rsplit(")", 1)[1].split()[:2]
    return state, int(ppid)


def _live(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] != "Z"


def _children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``."""
    return [int(d) for d in filter(str.isdigit, os.listdir("/proc"))
            if (st := _stat(int(d))) is not None and st[1] == pid and st[0] != "Z"]


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads processes from /proc")
def test_workers_end_with_a_command_that_is_killed():
    cmd = subprocess.Popen([sys.executable, "-m", "engine.cli", "eval", "--method", "mcts", "--n", "40",
                            "--concurrency", "2", "--workers", "2", "--threads", "2", "--json"], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(_children(cmd.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = _children(cmd.pid)
        assert len(workers) >= 2, "the workers did not start"
        time.sleep(2)                                  # solving by now
        cmd.kill()                                     # no cleanup runs in the command
        cmd.wait(timeout=30)
        deadline = time.monotonic() + 15
        while any(map(_live, workers)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [w for w in workers if _live(w)] == [], "workers went on after their command was killed"
    finally:
        cmd.kill()


def test_bad_worker_settings_are_refused_before_a_model_loads():
    for workers, k, server, says in [(0, 4, None, "from 1 to 64"), (3, 2, None, "at most concurrency (2)"),
                                     (2, 4, "http://127.0.0.1:1", "with --server"), (True, 4, None, "whole number")]:
        with pytest.raises(ValueError, match=says.replace("(", r"\(").replace(")", r"\)")):
            check_workers(workers, k, server)
    check_workers(1, 1)
    check_workers(2, 8)
    done = cli("eval", "--method", "mcts", "--n", "2", "--concurrency", "2", "--workers", "3")
    assert done.returncode != 0 and done.stdout == ""
    assert "workers must be at most concurrency (2)" in done.stderr and "Traceback" not in done.stderr


def test_searches_are_shared_out_as_evenly_as_whole_numbers_allow():
    assert shares(8, 2) == [4, 4]
    assert shares(7, 3) == [3, 2, 2]
    assert shares(2, 2) == [1, 1]
    assert sum(shares(13, 5)) == 13


def test_auto_picks_a_worker_per_core_and_per_two_searches_within_half_the_free_memory():
    gib = 2**30
    assert auto_workers(8, 2, copy_bytes=gib, free_bytes=16 * gib) == 2           # this machine: 2 cores
    assert auto_workers(8, 16, copy_bytes=gib, free_bytes=16 * gib) == 4          # 2 searches a worker at least
    assert auto_workers(8, 16, copy_bytes=4 * gib, free_bytes=16 * gib) == 2      # half of 16 GiB holds 2 copies
    assert auto_workers(8, 16, copy_bytes=12 * gib, free_bytes=16 * gib) == 1     # not even one more copy
    assert auto_workers(3, 8, copy_bytes=gib, free_bytes=16 * gib) == 1           # fewer than 4 searches
    assert auto_workers(8, 1, copy_bytes=gib, free_bytes=16 * gib) == 1           # one idle core
    assert auto_workers(8, 8, copy_bytes=None, free_bytes=16 * gib) == 1          # a model of unknown size
    assert resolve_workers("auto", 8, DEFAULT_MODEL, 2, "http://127.0.0.1:1", "cpu") == 1   # a server
    assert resolve_workers("auto", 8, DEFAULT_MODEL, 2, None, "cpu") == 2                  # the CLI's path
    assert resolve_workers(3, 8, DEFAULT_MODEL, 2, None, "cpu") == 3                       # as given
    assert auto_workers(8, 8, copy_bytes=gib, free_bytes=16 * gib, gpu=True) == 1


def test_a_models_size_is_read_from_its_files(tmp_path):
    embedded = model_bytes(DEFAULT_MODEL)
    assert embedded is not None and 0 < embedded < PROCESS_BYTES            # a few MB of weights, twice over
    (tmp_path / "m.gguf").write_bytes(b"\0" * 1000)
    assert model_bytes(str(tmp_path / "m.gguf")) == 8000                    # dequantized to float32
    assert model_bytes("someone/not-downloaded-here") is None                # a hub id: unknown, so 1 worker


@pytest.mark.slow
def test_eval_spreads_searches_over_workers_by_default_where_they_help():
    auto = cli("eval", "--method", "mcts", "--tier", "hard", "--n", "4", "--rollouts", "2",
               "--concurrency", "4", "--threads", "2", "--json")
    assert auto.returncode == 0, auto.stderr
    assert json.loads(auto.stdout)["workers"] == 2
    few = cli("eval", "--method", "mcts", "--tier", "hard", "--n", "2", "--rollouts", "2",
              "--concurrency", "3", "--threads", "2", "--json")
    assert few.returncode == 0, few.stderr
    assert "workers" not in json.loads(few.stdout)                          # 3 searches: one process
    bad = cli("eval", "--method", "mcts", "--workers", "many")
    assert bad.returncode != 0 and "--workers must be auto or a whole number from 1 to 64" in bad.stderr
