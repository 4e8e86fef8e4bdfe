"""HTTP to an OpenAI-compatible inference server: requests, retries, and reading its replies.

What this module does: one `ServerClient` per server URL, safe to share between threads (each
thread gets its own `httpx.Client`, so concurrent searches never share a connection), with a
timeout on every request and bounded retries with backoff on connection errors and 5xx replies;
and the parsers for the two shapes of per-token logprobs a completions reply may carry:

- the legacy completions shape (vLLM, SGLang, llama-cpp-python):
  ``{"tokens": [...], "token_logprobs": [...], "top_logprobs": [{text: logprob}, ...]}``
  (no token ids: they are recorded as -1);
- llama.cpp's ``llama-server``: ``{"content": [{"id", "token", "logprob", "top_logprobs":
  [{"id", "token", "logprob"}]}]}``.

What it does not do: decide when a generation stops or what a model call means (that is
server_backend.py); it never retries a 4xx reply (the request itself is wrong, and the
server's own message is shown).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from typing import Iterator

import httpx

from engine.models.base import ModelLoadError

CONNECT_TIMEOUT_S = 5.0     # a server that does not accept a connection in 5 s is down
READ_TIMEOUT_S = 300.0      # between two bytes of a reply: a long prompt on a busy CPU server
RETRIES = 3                 # attempts after the first, on a connection error or a 5xx reply
BACKOFF_S = 0.5             # first wait; doubled after each failed attempt (0.5, 1, 2 s)


class ServerError(ModelLoadError):
    """The server failed, refused a request or replied without what we need; the message is one line."""


@dataclass(frozen=True)
class Piece:
    """One token as a server reports it: id (-1 where the server gives none), text, logprob and
    the top alternatives ``(text, logprob)``, most likely first."""

    token_id: int
    token: str
    logprob: float
    top: tuple[tuple[str, float], ...]


def pieces(logprobs) -> list[Piece]:
    """The tokens in a choice's ``logprobs`` field, either shape (see the module docstring);
    [] for none."""
    if not logprobs:
        return []
    if isinstance(logprobs.get("content"), list):               # llama-server
        out = []
        for t in logprobs["content"]:
            top = tuple((a.get("token", ""), float(a["logprob"])) for a in t.get("top_logprobs") or ())
            out.append(Piece(int(t.get("id", -1)), t.get("token", ""), float(t["logprob"]), top))
        return out
    tokens = logprobs.get("tokens") or []                       # legacy completions
    lps = logprobs.get("token_logprobs") or []
    tops = logprobs.get("top_logprobs") or [None] * len(tokens)
    out = []
    for tok, lp, top in zip(tokens, lps, tops):
        alts = tuple(sorted(((a, float(b)) for a, b in (top or {}).items()), key=lambda x: -x[1]))
        # the first prompt token of an echoed prompt has no logprob (nothing precedes it)
        out.append(Piece(-1, tok, float("nan") if lp is None else float(lp), alts))
    return out


def usage_counts(chunk: dict) -> tuple[int, int] | None:
    """``(prompt tokens computed, prompt tokens reused from the server's cache)`` from a reply
    or stream chunk: llama.cpp's ``timings`` (``prompt_n``, ``cache_n``), else the OpenAI
    ``usage`` with vLLM's ``prompt_tokens_details.cached_tokens``; None when it has neither."""
    t = chunk.get("timings")
    if isinstance(t, dict) and "cache_n" in t:
        return int(t.get("prompt_n") or 0), int(t.get("cache_n") or 0)
    u = chunk.get("usage")
    if isinstance(u, dict) and u.get("prompt_tokens") is not None:
        cached = int(((u.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0)
        return int(u["prompt_tokens"]) - cached, cached
    return None


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _server_message(resp: httpx.Response) -> str:
    """The error text a server put in its reply (OpenAI shape ``{"error": {"message"}}``)."""
    try:
        body = resp.json()
    except (ValueError, UnicodeDecodeError):
        return _one_line(resp.text) or resp.reason_phrase
    err = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(err, dict):
        return _one_line(err.get("message") or err.get("detail") or json.dumps(err))
    return _one_line(err)


class ServerClient:
    """Requests to one server. ``api_key_env`` names the environment variable holding the key
    sent as ``Authorization: Bearer`` (the key itself is never stored in a session or shown)."""

    def __init__(self, url: str, *, api_key_env: str | None = None, retries: int = RETRIES,
                 backoff_s: float = BACKOFF_S, read_timeout_s: float = READ_TIMEOUT_S):
        if not isinstance(url, str) or not url.strip().startswith(("http://", "https://")):
            raise ValueError(f"server URL must start with http:// or https://, got {url!r}")
        base = url.strip().rstrip("/")
        self.url = base[:-3] if base.endswith("/v1") else base      # the root; paths add /v1 themselves
        self.headers = {}
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise ValueError(f"api_key_env names {api_key_env!r}, but that environment variable is not set")
            self.headers["Authorization"] = f"Bearer {key}"
        self.retries, self.backoff_s = retries, backoff_s
        self.timeout = httpx.Timeout(read_timeout_s, connect=CONNECT_TIMEOUT_S)
        self._local = threading.local()

    def _client(self) -> httpx.Client:
        c = getattr(self._local, "client", None)
        if c is None:
            c = self._local.client = httpx.Client(timeout=self.timeout, headers=self.headers)
        return c

    def _attempts(self, what: str):
        """Yields attempt numbers; the caller breaks on success. Sleeps between attempts."""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            yield attempt

    def _fail(self, path: str, e: Exception) -> ServerError:
        if isinstance(e, httpx.ConnectError):
            return ServerError(f"no server answers at {self.url} ({_one_line(e) or 'connection refused'}): "
                               "start it, or check the --server URL")
        if isinstance(e, httpx.TimeoutException):
            return ServerError(f"the server at {self.url} did not answer {path} in time ({type(e).__name__}); "
                               "it may be overloaded or stuck")
        return ServerError(f"the server at {self.url} failed on {path}: {_one_line(e)}")

    def get(self, path: str) -> dict:
        return self._request("GET", path, None)

    def post(self, path: str, body: dict) -> dict:
        return self._request("POST", path, body)

    def _request(self, method: str, path: str, body: dict | None) -> dict:
        last: Exception | None = None
        for attempt in self._attempts(path):
            try:
                resp = self._client().request(method, self.url + path, json=body)
            except httpx.TransportError as e:
                last = e
                continue
            if resp.status_code >= 500:
                last = ServerError(f"the server at {self.url} answered {path} with {resp.status_code}: "
                                   f"{_server_message(resp)}")
                continue
            if resp.status_code >= 400:
                raise ServerError(f"the server at {self.url} refused {path} ({resp.status_code}): "
                                  f"{_server_message(resp)}")
            try:
                return resp.json()
            except ValueError:
                raise ServerError(f"the server at {self.url} answered {path} with something that is not "
                                  f"JSON: {_one_line(resp.text, 120)!r}") from None
        raise last if isinstance(last, ServerError) else self._fail(path, last)

    def stream(self, path: str, body: dict) -> Iterator[dict]:
        """The chunks of a server-sent-events reply, as dicts. A connection error or a 5xx reply
        before the first chunk is retried; one after it is an error (the caller's tokens so far
        would be repeated). Leaving the loop early closes the connection, which tells the server
        to abort the request (llama.cpp, vLLM and SGLang all do)."""
        last: Exception | None = None
        for attempt in self._attempts(path):
            started = False
            try:
                with self._client().stream("POST", self.url + path, json=body) as resp:
                    if resp.status_code >= 500:
                        resp.read()
                        last = ServerError(f"the server at {self.url} answered {path} with {resp.status_code}: "
                                           f"{_server_message(resp)}")
                        continue
                    if resp.status_code >= 400:
                        resp.read()
                        raise ServerError(f"the server at {self.url} refused {path} ({resp.status_code}): "
                                          f"{_server_message(resp)}")
                    for line in resp.iter_lines():
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            return
                        try:
                            chunk = json.loads(data)
                        except ValueError:
                            raise ServerError(f"the server at {self.url} sent a stream chunk that is not JSON: "
                                              f"{_one_line(data, 120)!r}") from None
                        if isinstance(chunk, dict) and "error" in chunk:
                            err = chunk["error"]
                            raise ServerError(f"the server at {self.url} failed during {path}: "
                                              f"{_one_line(err.get('message') if isinstance(err, dict) else err)}")
                        started = True
                        yield chunk
                    return
            except httpx.TransportError as e:
                if started:
                    raise self._fail(path, e) from e
                last = e
        raise last if isinstance(last, ServerError) else self._fail(path, last)
