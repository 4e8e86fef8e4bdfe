"""Classroom mode (``thoughtscope serve --auth USERS_FILE``): the users file and password hashes,
who may see which run (the store, the handlers, then the real app on loopback driven by
logged-in gradio_client clients), the queue, the launch options, and ten clients at once
against a real ``thoughtscope serve`` process."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import gradio as gr
import httpx
import psutil
import pytest
from conftest import free_port, stop_process

from app import sessions_tab as S
from app.auth import (Access, AuthFileError, UserStore, hash_password, load_users, user_store, verify_password,
                      with_request)
from app.leco_tab import open_leco
from app.main import LAUNCH_KWARGS, build_app, check_launch_options, exposure_warning, launch_app, serve
from engine import events as E
from engine.cli import main as cli_main
from engine.store import SessionNotFound, Store, StoreError

ROOT = Path(__file__).resolve().parents[1]
FAST = 1_000                     # PBKDF2 iterations for test accounts (real files use 600,000)
QUESTION = "Tom has 3 pens and buys 4 more. How many pens does Tom have?"
# /run_search inputs after the question: method, rollouts, children, c, max_depth, temperature,
# min_p, reward, final rule, samples, beam width, seed
SMALL_MCTS = ("mcts", 2, 2, 2.0, 3, 0.8, 0.0, "self_consistency", "majority", 3, 2, 0)
LONG_MCTS = ("mcts", 200, 4, 2.0, 8, 1.0, 0.0, "self_consistency", "majority", 3, 2, 0)
SID = re.compile(r"session `([0-9a-f]+)`")


def users_file(path: Path, names, iterations: int = FAST) -> Path:
    path.write_text("# classroom accounts\n\n" + "".join(
        f"{n}:{hash_password('pw-' + n, iterations=iterations)}\n" for n in names))
    return path


# ---- password hashes and the users file ---------------------------------------------------

def test_password_hash_round_trip_and_salt():
    h = hash_password("correct horse", iterations=FAST)
    assert h.startswith(f"pbkdf2_sha256${FAST}$") and "correct horse" not in h
    assert verify_password("correct horse", h) and not verify_password("correct hors", h)
    assert hash_password("correct horse", iterations=FAST) != h           # a fresh salt each time
    with pytest.raises(ValueError, match="iterations"):
        hash_password("x", iterations=10)
    with pytest.raises(ValueError, match="empty"):
        hash_password("")


def test_users_file_checks_passwords(tmp_path):
    users = load_users(users_file(tmp_path / "users.txt", ["alice", "bob.b"]))
    assert users.names == ["alice", "bob.b"] and len(users) == 2
    assert users.check("alice", "pw-alice") and users.check("bob.b", "pw-bob.b")
    assert not users.check("alice", "pw-bob.b") and not users.check("alice", "")
    assert not users.check("mallory", "pw-alice") and not users.check(None, None)


def test_five_failed_logins_lock_that_name_for_a_minute(tmp_path):
    from app.auth import LOCKOUT_S, MAX_FAILURES
    users = load_users(users_file(tmp_path / "users.txt", ["alice", "bob"]))
    now = [1000.0]
    users.clock = lambda: now[0]
    for _ in range(MAX_FAILURES):
        assert not users.check("alice", "guess")
    assert not users.check("alice", "pw-alice")            # locked: even the right password
    assert users.check("bob", "pw-bob")                    # other names are not
    now[0] += LOCKOUT_S - 1
    assert not users.check("alice", "pw-alice")
    now[0] += 1                                            # the oldest failure is a minute old
    assert users.check("alice", "pw-alice")
    for _ in range(MAX_FAILURES - 1):                      # a success clears the count
        assert not users.check("alice", "guess")
    assert users.check("alice", "pw-alice")
    for _ in range(MAX_FAILURES):
        assert not users.check("mallory", "x")             # unknown names are counted alike
    assert ("mallory" in users._failures) and len(users._failures["mallory"]) == MAX_FAILURES


@pytest.mark.parametrize("text, message", [
    ("alice\n", r"line 1: expected name:hash"),
    ("alice:hunter2\n", r"line 1 \(alice\): the password must be a pbkdf2_sha256\$\.\.\. hash"),
    ("al ice:{h}\n", r"line 1: user name 'al ice'"),
    (":{h}\n", r"line 1: user name ''"),
    ("# c\nalice:{h}\nalice:{h}\n", r"line 3: user 'alice' is listed twice"),
    ("alice:pbkdf2_sha256$10$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 43 + "\n", r"weak or malformed"),
    ("alice:pbkdf2_sha256$many$salt$digest\n", r"malformed pbkdf2_sha256 hash"),
    ("", r"names no users"),
    ("# only a comment\n\n", r"names no users"),
])
def test_malformed_users_file_is_one_line_naming_the_line(tmp_path, text, message):
    path = tmp_path / "users.txt"
    path.write_text(text.replace("{h}", hash_password("pw", iterations=FAST)))
    with pytest.raises(AuthFileError, match=message) as err:
        load_users(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_missing_users_file_is_a_clear_error(tmp_path):
    with pytest.raises(AuthFileError, match="does not exist.*hash-password"):
        load_users(tmp_path / "nope.txt")
    with pytest.raises(AuthFileError, match="cannot read"):
        load_users(tmp_path)                                           # a folder


def test_cli_serve_with_a_bad_users_file_exits_2_before_loading_a_model(tmp_path, capsys):
    assert cli_main(["serve", "--model", str(tmp_path / "no-model"), "--auth", str(tmp_path / "none.txt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "users file" in err and "does not exist" in err
    (tmp_path / "bad.txt").write_text("alice:plain-password\n")
    assert cli_main(["serve", "--auth", str(tmp_path / "bad.txt")]) == 2
    assert "never the password itself" in capsys.readouterr().err
    assert cli_main(["serve", "--queue-size", "0"]) == 2
    assert "--queue-size must be from 1" in capsys.readouterr().err
    assert cli_main(["serve", "--ssl-certfile", "cert.pem"]) == 2
    assert "go together" in capsys.readouterr().err


def test_cli_hash_password_writes_a_users_file_line(tmp_path, monkeypatch, capsys):
    import io
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret pass\n"))
    assert cli_main(["hash-password", "carol", "--iterations", str(FAST)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("carol:pbkdf2_sha256$") and "s3cret" not in line
    (tmp_path / "users.txt").write_text(line + "\n")
    users = load_users(tmp_path / "users.txt")
    assert users.check("carol", "s3cret pass") and not users.check("carol", "s3cret")
    assert cli_main(["hash-password", "bad name"]) == 2


# ---- who sees which run: the store and the handlers ------------------------------------------

def _run(store, owner: str | None = None, question: str = QUESTION) -> str:
    sid = store.create_session(method="greedy", model="m", question=question, gold=None, config={}, seed=0,
                               owner=owner)
    store.append(sid, E.RunStarted(method="greedy", question=question, prompt=question, gold=None, config={},
                                   seed=0, model="m"))
    store.finish(sid, status="done")
    return sid


def test_user_store_scopes_every_read_and_write(store):
    alice_run, bob_run, shared = _run(store, "alice"), _run(store, "bob"), _run(store, None)
    alice, bob = UserStore(store, "alice", restricted=True), UserStore(store, "bob", restricted=True)
    assert {r["session_id"] for r in alice.list_sessions()} == {alice_run, shared}
    assert {r["session_id"] for r in bob.list_sessions(method="greedy")} == {bob_run, shared}
    missing = f"^no session '{alice_run}' in {re.escape(str(store.path))}$"   # as for an id nobody has
    for action in (bob.session, bob.events, bob.export_session, bob.delete, bob.resolve):
        with pytest.raises(SessionNotFound, match=missing):
            action(alice_run)
    with pytest.raises(SessionNotFound, match=f"no session '{alice_run[:6]}'"):
        bob.resolve(alice_run[:6])                                     # prefixes only among visible runs
    assert alice.resolve(alice_run[:6]) == alice_run and bob.resolve(shared) == shared
    assert len(bob.events(shared)) == 1 and bob.export_session(shared)["session"]["session_id"] == shared
    with pytest.raises(StoreError, match="shared run"):
        bob.delete(shared)
    alice.delete(alice_run)
    assert {r["session_id"] for r in store.list_sessions()} == {bob_run, shared}
    new = bob.create_session(method="greedy", model="m", question="q", gold=None, config={}, seed=0)
    assert store.session(new)["owner"] == "bob"


def test_import_makes_the_importer_the_owner(store):
    exported = store.export_session(_run(store, "alice"))
    sid = UserStore(store, "bob", restricted=True).import_session(exported)   # a file that says alice
    assert store.session(sid)["owner"] == "bob"
    shared = UserStore(store, None, restricted=False).import_session(exported)
    assert store.session(shared)["owner"] is None
    nobody = UserStore(store, None, restricted=True)                   # classroom mode, not logged in
    with pytest.raises(StoreError, match="log in"):
        nobody.import_session(exported)
    with pytest.raises(StoreError, match="log in"):
        nobody.create_session(method="greedy", model="m", question="q", gold=None, config={}, seed=0)
    assert all(r["owner"] is None for r in nobody.list_sessions())


def test_single_user_mode_sees_everything(store):
    runs = {_run(store, "alice"), _run(store, None)}
    access = Access(store)
    view = user_store(access, None)
    assert {r["session_id"] for r in view.list_sessions()} == runs
    for sid in runs:
        view.delete(sid)
    assert store.list_sessions() == [] and user_store(store, None) is store


def test_handlers_check_the_logged_in_user(store):
    access = Access(store, multi_user=True)
    alice_run = _run(store, "alice")
    alice, bob = gr.Request(username="alice"), gr.Request(username="bob")
    assert [r[0] for r in S.session_rows(access, request=alice)] == [alice_run]
    assert S.session_rows(access, request=bob) == []
    assert S.model_choices(access, request=bob) == [("any", "any")]        # (label, value): the label is translated
    for call in (lambda: S.open_session(access, alice_run, request=bob),
                 lambda: S.export_session(access, alice_run, request=bob),
                 lambda: S.delete_session(access, alice_run, "any", "any", request=bob),
                 lambda: open_leco(access, alice_run, request=bob)):
        with pytest.raises(gr.Error, match=f"no session '{alice_run}'"):
            call()
    with pytest.raises(gr.Error, match="log in first"):
        S.session_rows(access)
    assert S.open_session(access, alice_run[:5], request=alice)[0]["session_id"] == alice_run
    exported = S.export_session(access, alice_run, request=alice)
    _, status = S.import_session(access, exported, "any", "any", request=bob)
    copy = re.search(r"`(\w+)`", status).group(1)
    assert store.session(copy)["owner"] == "bob"
    S.delete_session(access, alice_run, "any", "any", request=alice)
    assert [r["session_id"] for r in store.list_sessions()] == [copy]


def test_classroom_mode_refuses_inputs_that_read_server_files(store):
    from app.sampling_tab import SWEEP_FILE, show_sweep
    from app.se_tab import run_se
    access, alice = Access(store, multi_user=True), gr.Request(username="alice")
    for corpus, nli, field in (("/etc", "", "Corpus folder"), ("", "/root/model", "NLI model")):
        with pytest.raises(gr.Error, match=f"{field} names a file, folder or download on the server"):
            next(run_se(None, access, QUESTION, None, "loaded", "sugar", 2, 0.8, "auto", nli, "strict", 0.5, 1.0,
                        "rao", "adaptive", 2, corpus, 0, request=alice))
    with pytest.raises(gr.Error, match="sweep file names a file"):
        show_sweep("/etc/hostname", request=alice)
    assert "No sweep at" in show_sweep("/no/such/sweep.json")[1]          # single-user: any path
    assert store.list_sessions() == []                                    # refused before a run was stored
    if SWEEP_FILE.exists():
        assert "n = " in show_sweep(str(SWEEP_FILE), request=alice)[1]   # the shipped one still shows


def test_with_request_keeps_the_request_parameter_visible_to_gradio():
    from gradio.helpers import special_args

    def handler(store, a, b="x", request: gr.Request = None):
        return store, a, b, request.username

    def stream(store, a, request: gr.Request = None):
        yield store, a, request.username

    req = gr.Request(username="dora")
    for fn in (handler, stream):
        bound = with_request(fn, "S")
        args, *_ = special_args(bound, ["A"] if fn is stream else ["A", "B"], request=req)
        out = bound(*args)
        assert (next(out) if fn is stream else out)[-1] == "dora"
        assert list(__import__("inspect").signature(bound).parameters)[0] == "a"
    assert __import__("inspect").isgeneratorfunction(with_request(stream, 1))


# ---- launch options --------------------------------------------------------------------------

def test_launch_options_are_the_safe_set():
    assert LAUNCH_KWARGS["share"] is False and LAUNCH_KWARGS["enable_monitoring"] is False
    assert LAUNCH_KWARGS["mcp_server"] is False and LAUNCH_KWARGS["allowed_paths"] is None
    assert LAUNCH_KWARGS["max_file_size"] == "50mb" and LAUNCH_KWARGS["show_error"] is False
    assert exposure_warning("127.0.0.1", None) is None and exposure_warning("::1", None) is None
    assert exposure_warning("0.0.0.0", object(), tls=True) is None
    assert "without --auth" in exposure_warning("0.0.0.0", None)
    assert "unencrypted" in exposure_warning("192.168.1.5", object())
    for bad in (0, -1, 10_001, 2.5, True, "8"):
        with pytest.raises(ValueError, match="queue_size"):
            check_launch_options(bad)


def test_model_runs_share_one_queue_show_progress_and_stop_skips_the_queue(tiny_backend):
    from app.generate_tab import MODEL_QUEUE
    demo = build_app(tiny_backend, multi_user=True)
    fns = {f.api_name: f for f in demo.fns.values() if f.api_name}
    runs = [f for f in demo.fns.values() if f.concurrency_id == MODEL_QUEUE]
    assert {"run_search", "run_leco", "run_se", "generate"} <= {f.api_name for f in runs}
    for f in runs:        # one model call at a time; the overlay shows a waiting run its place in the queue
        assert f.concurrency_limit == 1 and f.show_progress != "hidden", f.api_name
    assert not fns["stop_search"].queue and not fns["stop_leco"].queue
    assert any(f.name == "refresh" and f.trigger_after is None and f.targets and f.targets[0][1] == "load"
               for f in demo.fns.values())                        # classroom: each page lists its user's runs


@pytest.mark.slow
def test_serve_without_auth_listens_on_loopback_only(tmp_path, capsys):
    port = free_port()
    thread = threading.Thread(target=serve, args=("arith-llama-3m",),
                              kwargs=dict(port=port, device="cpu", db=str(tmp_path / "runs.db")), daemon=True)
    thread.start()
    deadline = time.monotonic() + 240                     # generous: CI machines can be loaded
    while not any(d.is_running and d.server_port == port for d in gr.Blocks.get_instances()):
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.1)
    demo = next(d for d in gr.Blocks.get_instances() if d.is_running and d.server_port == port)
    try:
        listening = [c.laddr for c in psutil.Process().net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
        assert listening and all(addr.ip == "127.0.0.1" for addr in listening)
        assert not demo.share and demo.share_url is None and demo.auth is None
        assert demo._queue.max_size == 32
        assert "warning" not in capsys.readouterr().err
    finally:
        demo.close(verbose=False)
    thread.join(timeout=10)


# ---- two logged-in clients on the served app ------------------------------------------------

@pytest.fixture(scope="module")
def classroom(default_backend, tmp_path_factory):
    """The app in classroom mode on loopback, a queue of one, two accounts."""
    folder = tmp_path_factory.mktemp("classroom")
    store = Store(folder / "runs.db")
    shared = store.import_session(json.loads(sorted((ROOT / "sample_runs").glob("*.json"))[0].read_text()))
    users = load_users(users_file(folder / "users.txt", ["alice", "bob"]))
    demo = build_app(default_backend, store, multi_user=True)
    _, url, _ = launch_app(demo, "127.0.0.1", free_port(), users=users, queue_size=1)
    yield url, store, shared
    demo.close(verbose=False)
    store.close()


def _client(url, name):
    from gradio_client import Client
    return Client(url, auth=(name, "pw-" + name), verbose=False, analytics_enabled=False, download_files=False,
                  httpx_kwargs={"timeout": 300})                       # a loaded CI machine is slow to answer


@contextlib.contextmanager
def _alice_and_bob(url):
    """Two logged-in clients, closed however the test ends."""
    alice, bob = _client(url, "alice"), _client(url, "bob")
    try:
        yield alice, bob
    finally:
        alice.close()
        bob.close()


def _listed(client) -> list[str]:
    table, _ = client.predict("any", "any", "any", api_name="/list_sessions")
    return [row[0] for row in table["data"]]


@pytest.mark.slow
def test_two_logged_in_users_see_only_their_own_runs(classroom):
    from gradio_client import Client
    url, store, shared = classroom
    with _alice_and_bob(url) as (alice, bob):
        out = alice.predict(QUESTION, *SMALL_MCTS, api_name="/run_search")
        sid = SID.search(out[1]).group(1)
        assert store.session(sid)["owner"] == "alice" and store.session(sid)["status"] == "done"
        assert _listed(alice) == [sid, shared] and _listed(bob) == [shared]
        for api, args in (("/open_session", (sid,)), ("/export_session", (sid,)), ("/open_leco", (sid,)),
                          ("/delete_session", (sid, "any", "any", "any"))):
            with pytest.raises(Exception, match=f"no session '{sid}'"):
                bob.predict(*args, api_name=api)
        with pytest.raises(Exception, match=f"no session '{sid[:6]}'"):
            bob.predict(sid[:6], api_name="/open_session")
        with pytest.raises(Exception, match="shared run"):
            bob.predict(shared, "any", "any", "any", api_name="/delete_session")
        assert bob.predict(shared, api_name="/open_session").startswith(f"Opened `{shared}`")
        assert alice.predict(sid[:6], api_name="/open_session").startswith(f"Opened `{sid}`")
        exported = alice.predict(sid, api_name="/export_session")
        assert Path(exported["path"]).name == f"session-{sid}.json"
        alice.predict(sid, "any", "any", "any", api_name="/delete_session")
        assert _listed(alice) == [shared] and store.list_sessions(owner="alice") == []
        with pytest.raises(Exception, match="credentials were not provided"):
            Client(url, verbose=False, analytics_enabled=False)
        with pytest.raises(Exception):
            _client(url, "mallory")


@pytest.mark.slow
def test_a_waiting_run_shows_its_queue_position_and_a_full_queue_turns_runs_away(classroom):
    url, store, _ = classroom
    with _alice_and_bob(url) as (alice, bob):
        long_run = alice.submit(QUESTION, *LONG_MCTS, api_name="/run_search")
        deadline = time.monotonic() + 60
        while long_run.status().code.name not in ("PROCESSING", "ITERATING"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        waiting = bob.submit(QUESTION, *SMALL_MCTS, api_name="/run_search")
        status = waiting.status()
        while not (status.code.name == "IN_QUEUE" and status.rank is not None):
            assert time.monotonic() < deadline and not long_run.done(), status
            time.sleep(0.05)
            status = waiting.status()
        assert status.rank == 0 and status.queue_size == 1                  # first in line, one waiting
        refused = alice.submit(QUESTION, *SMALL_MCTS, api_name="/run_search")    # the queue holds one
        with pytest.raises(Exception, match="Queue is full"):
            refused.result(timeout=60)
        # Stop is not queued (queue=False): the browser posts it directly, so it works with the queue full
        stop = httpx.post(f"{url}gradio_api/api/stop_search/", json={"data": [None], "session_hash": alice.session_hash},
                          cookies=alice.cookies, timeout=60)
        assert stop.status_code == 200 and stop.json()["data"] == ["Stopping…"], stop.text
        assert httpx.post(f"{url}gradio_api/api/stop_search/", json={"data": [None], "session_hash": "x"},
                          timeout=60).status_code == 401                # not without logging in
        assert "session" in long_run.result(timeout=120)[1] and "session" in waiting.result(timeout=120)[1]
        assert {r["status"] for r in store.list_sessions(owner="alice")} <= {"stopped", "done"}
        assert len(store.list_sessions(owner="bob")) == 1


# ---- ten clients at once against `thoughtscope serve --auth` ---------------------------------

CLIENTS = 10


@pytest.mark.slow
def test_ten_concurrent_clients_each_see_only_their_own_runs_with_bounded_memory(tmp_path):
    names = [f"student{i}" for i in range(CLIENTS)]
    port, db = free_port(), tmp_path / "runs.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "THOUGHTSCOPE_THREADS": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", "--model", "arith-llama-3m", "--device", "cpu",
         "--threads", "1", "--port", str(port), "--db", str(db), "--auth",
         str(users_file(tmp_path / "users.txt", names)), "--queue-size", "32"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines: list[str] = []
        for line in server.stdout:                       # until the URL line (or the server dies)
            lines.append(line)
            if "is running at" in line:
                break
        assert f"http://127.0.0.1:{port}" in lines[-1] and f"for {CLIENTS} users" in lines[-1], lines
        threading.Thread(target=server.stdout.read, daemon=True).start()   # never block its prints
        proc = psutil.Process(server.pid)
        with Store(db) as s:
            shared = {r["session_id"] for r in s.list_sessions()}       # the sample runs
        rss_before, peak = proc.memory_info().rss, [0]
        done = threading.Event()

        def watch():
            while not done.is_set():
                peak[0] = max(peak[0], proc.memory_info().rss)
                time.sleep(0.05)

        results: dict[str, object] = {}

        def student(name: str):
            try:
                client = _client(f"http://127.0.0.1:{port}/", name)
                try:
                    out = client.predict(QUESTION, *SMALL_MCTS, api_name="/run_search")
                    results[name] = (SID.search(out[1]).group(1), set(_listed(client)))
                finally:
                    client.close()
            except Exception as e:          # reported below, with the student's name
                results[name] = e

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        started = time.monotonic()
        threads = [threading.Thread(target=student, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=180)
        wall = time.monotonic() - started
        done.set()
        watcher.join()
        rss_after = proc.memory_info().rss
        failures = {n: r for n, r in results.items() if isinstance(r, Exception)}
        assert not failures and len(results) == CLIENTS, failures
        with Store(db) as s:
            owners = {r["session_id"]: r["owner"] for r in s.list_sessions()}
        for name, (sid, listed) in results.items():
            assert owners[sid] == name
            assert listed == shared | {sid}, name              # its own run and the samples, no one else's
        growth_mb = (max(peak[0], rss_after) - rss_before) / 2**20
        print(f"\n{CLIENTS} concurrent clients: all done in {wall:.1f} s; server RSS "
              f"{rss_before / 2**20:.0f} MB before, peak {peak[0] / 2**20:.0f} MB, after {rss_after / 2**20:.0f} MB "
              f"(growth {growth_mb:.0f} MB)")
        assert growth_mb < 1536
    finally:
        stop_process(server, timeout=20)


# ---- the limit on one run's wall time (serve --run-limit) --------------------------------------

def test_classroom_mode_limits_each_run_by_default_and_the_flag_is_checked(tiny_backend, capsys):
    from app.main import CLASSROOM_RUN_LIMIT_S, effective_run_limit
    assert effective_run_limit(None, classroom=True) == CLASSROOM_RUN_LIMIT_S == 120
    assert effective_run_limit(None, classroom=False) == 0          # one person: no limit
    assert effective_run_limit(0, classroom=True) == 0 and effective_run_limit(30, classroom=False) == 30
    for bad in (-1, 86_401, float("nan"), "10"):
        with pytest.raises(ValueError, match="run_limit_s"):
            check_launch_options(32, run_limit_s=bad)
    assert cli_main(["serve", "--run-limit", "-5"]) == 2
    assert "--run-limit must be from 0 to 86400" in capsys.readouterr().err
    demo = build_app(tiny_backend, multi_user=True, run_limit_s=7.5)
    for tab in ("search", "leco", "se"):                   # each browser session gets a copy with the limit
        assert demo.thoughtscope_tabs[tab]["control"].value.limit_s == 7.5
        assert "stops each run after 7.5 s" in demo.thoughtscope_tabs[tab]["limit_hint"].value   # said up front
    plain = build_app(tiny_backend)
    assert all(plain.thoughtscope_tabs[tab]["limit_hint"] is None for tab in ("search", "leco", "se"))


def test_a_run_control_tells_the_limit_from_stop_and_from_a_run_that_ended_by_itself():
    from app.generate_tab import RunControl
    control = RunControl(limit_s=0.05)
    control.reset()
    assert control.stopped() == "" and control.limit_note() == ""
    time.sleep(0.06)
    assert control.stopped() == "stopped at this server's limit of 0.05 s a run"
    assert "kept what it found" in control.limit_note()
    control.reset()                                         # the next run starts a fresh clock
    assert control.stopped() == "" and control.limit_note() == ""
    control.request_stop()
    assert control.stopped() == E.USER_STOP and control.limit_note() == ""
    ended = RunControl(limit_s=0.05)
    ended.reset()
    time.sleep(0.06)                                        # the run finished before it was polled again
    assert ended.limit_note() == ""


@pytest.mark.slow
def test_a_long_search_in_the_served_classroom_app_stops_at_the_limit_and_keeps_its_tree(tiny_backend, tmp_path):
    store = Store(tmp_path / "runs.db")
    users = load_users(users_file(tmp_path / "users.txt", ["carol"]))
    demo = build_app(tiny_backend, store, multi_user=True, run_limit_s=1.0)
    _, url, _ = launch_app(demo, "127.0.0.1", free_port(), users=users)
    client = _client(url, "carol")
    try:
        out = client.predict(QUESTION, *LONG_MCTS, api_name="/run_search")      # 200 rollouts
        progress = out[1]
        assert "stopped at this server's limit of 1 s a run (kept what it found)" in progress
        sid = SID.search(progress).group(1)
        meta, events = store.session(sid), store.events(sid)
        assert meta["owner"] == "carol" and meta["status"] == "stopped"
        assert meta["message"] == "stopped at this server's limit of 1 s a run"
        assert events[-1].message == meta["message"]
        assert len(events) > 2                             # a partial tree is kept
        assert sum(isinstance(e, E.Backprop) for e in events) < 200                      # short of the 200
    finally:
        client.close()
        demo.close(verbose=False)
        store.close()
