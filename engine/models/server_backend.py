"""`ModelBackend` over an OpenAI-compatible inference server (vLLM, SGLang, llama.cpp's server).

Prompts are sent as text to ``/v1/completions``, each prompt of a batch as its own request, in
flight together from a thread pool (the server batches them); each reply streams back token by
token with the chosen token's logprob and the top alternatives (``logprobs: 5``). The logprobs are
the model's own, before any sampler (llama.cpp's default; vLLM's ``raw_logprobs``), as the
local backend records them.

What the server cannot do as the contract says is emulated, and said:

- Stop strings (`StopSpec`): a server trims the stop string and its token from the reply and
  does not say which string matched, and none knows ``after_text``. So no stop string is sent:
  we read the stream, find the stop in the text as the local backend does (``after_text``
  included), keep the text up to the stop string's end and the tokens up to the one that
  completed it, and close the connection, which makes the server abort the request (llama.cpp,
  vLLM and SGLang all do). The server has sampled each token without knowing the stop strings,
  so the tokens are the ones it would have drawn anyway.
- Seeds: each request of a batch gets its own seed derived from ``seed`` and its row
  (`row_seed`); one seed for all would draw the same text for equal prompts.
- Sampler order: llama.cpp takes ours (``samplers``); vLLM and SGLang apply their own fixed
  order (vLLM: temperature, min-p, then top-k/top-p) whatever `SamplingConfig.order` says.
- Token ids: llama.cpp reports them; the legacy logprobs shape (vLLM, SGLang) does not, and
  they are recorded as -1. Events keep ids only for display; nothing a method does reads them.
- `distribution`: a server returns only its top-k next tokens (vLLM's default maximum is 20),
  never the whole vocabulary, so it returns a `TopKDistribution` over those k. The Sampling lab
  refuses a server model with a message (engine/sampling_lab.py `check_full_distribution`).
- `score`: prompt logprobs through ``echo`` (vLLM); the continuation's tokens are those the
  server cut the joined text into (a token across the boundary counts with the continuation's
  side only if it starts there). A server that does not echo them
  (llama.cpp's) raises `ServerError` "this server cannot score text".
- Token counts: computed and reused prompt tokens come from llama.cpp's ``timings``
  (``prompt_n``, ``cache_n``) or vLLM's ``usage.prompt_tokens_details.cached_tokens``
  (``--enable-prompt-tokens-details``), read from the last chunk before the stop.
- The prompt format's chat template is the server's own, fetched from llama.cpp's ``/props``;
  a server that does not publish it (vLLM, SGLang) runs the base format (few-shot) unless
  ``--format`` says otherwise, and ``--format chat`` is refused there.

Not here: HTTP, retries and the two logprobs shapes (server_http.py); choosing this backend
(registry.py `load_backend`).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Callable, Sequence

import torch

from engine.models.base import (MAX_NEW_TOKENS_LIMIT, Generation, InputError, ModelInfo, StopSpec,
                                TokenDistribution, TokenLogprob, stop_if)
from engine.models.server_http import ServerClient, ServerError, pieces, usage_counts
from engine.sampling import SamplingConfig

TOP_ALTERNATIVES = 5        # alternatives kept per generated token, as the local backend keeps
DISTRIBUTION_TOP_K = 20     # next tokens `distribution` asks for: vLLM's default --max-logprobs
MAX_IN_FLIGHT = 16          # requests one backend keeps in flight at once (the server queues more)
SEED_SPAN = 2**32 - 1       # llama.cpp's seed is 32-bit, and 0xFFFFFFFF means "random"
SEED_STRIDE = 0x9E3779B1    # rows' seeds spread over the 32-bit range (the golden ratio's bits)
PROBE_PROMPT = "Hello"


def row_seed(seed: int, row: int) -> int:
    """The seed of row ``row`` of a batch: distinct rows, distinct seeds, all below 2**32 - 1."""
    return (int(seed) + row * SEED_STRIDE) % SEED_SPAN


class TopKDistribution(TokenDistribution):
    """The next-token distribution as far as a server shows it: its top ``k`` tokens only.
    ``probs`` are those tokens' own probabilities (they sum to less than 1; the rest of the
    vocabulary is not known), ``logits`` their logprobs."""

    complete = False


class ServerBackend:
    """A model served over HTTP. Build one with `ServerBackend.connect(url, ...)`."""

    prefix_cache = None     # the server keeps its own (llama.cpp's slots, vLLM's --enable-prefix-caching)

    def __init__(self, client: ServerClient, *, model_id: str, info: ModelInfo, flavor: str,
                 chat_template: str | None = None, special_tokens: dict | None = None,
                 can_tokenize: bool = False, max_in_flight: int = MAX_IN_FLIGHT):
        if not isinstance(max_in_flight, int) or not 1 <= max_in_flight <= 1024:
            raise ValueError(f"max_in_flight must be a whole number from 1 to 1024, got {max_in_flight!r}")
        self.client = client
        self.model_id = model_id
        self.info = info
        self.flavor = flavor                    # "llamacpp", "vllm", "sglang" or "openai"
        self.chat_template = chat_template
        self.use_chat_template = bool(chat_template)
        self.special_tokens = special_tokens or {}
        self.can_tokenize = can_tokenize
        self._pool = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="thoughtscope-server")

    # ---- connecting ----------------------------------------------------------------------

    @classmethod
    def connect(cls, url: str, *, model: str | None = None, api_key_env: str | None = None,
                max_in_flight: int = MAX_IN_FLIGHT, **client_kwargs) -> "ServerBackend":
        """Ask the server which models it serves (``/v1/models``), pick ``model`` (or the only
        one), read its context length and chat template where the server tells them, and make one
        1-token request to check that logprobs come back. Every failure is one `ServerError`
        line (a `ModelLoadError`)."""
        client = ServerClient(url, api_key_env=api_key_env, **client_kwargs)
        listing = client.get("/v1/models")
        entries = [e for e in (listing.get("data") or []) if isinstance(e, dict) and e.get("id")]
        names = {}
        for e in entries:
            for n in [e["id"], *(e.get("aliases") or [])]:
                names.setdefault(n, e)
        if not entries:
            raise ServerError(f"the server at {client.url} lists no models at /v1/models")
        if model:
            if model not in names:
                served = ", ".join(repr(e["id"]) for e in entries)
                raise ServerError(f"the server at {client.url} does not serve {model!r}; it serves {served}: "
                                  "pass one of them with --server-model")
            entry = names[model]
        elif len(entries) == 1:
            entry = entries[0]
        else:
            raise ServerError(f"the server at {client.url} serves {len(entries)} models "
                              f"({', '.join(repr(e['id']) for e in entries)}): choose one with --server-model")
        model_id = entry["id"]
        owner = str(entry.get("owned_by") or "").lower()
        flavor = next((f for f in ("llamacpp", "vllm", "sglang") if f in owner), "openai")
        meta = entry.get("meta") or {}                          # llama.cpp's model facts
        props = {}
        if flavor == "llamacpp":
            try:
                props = client.get("/props")
            except ServerError:
                props = {}
        context = int(meta.get("n_ctx") or entry.get("max_model_len")
                      or (props.get("default_generation_settings") or {}).get("n_ctx") or 0)
        template = props.get("chat_template") or None
        name = Path(model_id).name if model_id.endswith(".gguf") else model_id
        info = ModelInfo(name=name, source=client.url, parameters=int(meta.get("n_params") or 0), device="server",
                         dtype=str(meta.get("ftype") or "?"), vocab_size=int(meta.get("n_vocab") or 0),
                         context_length=context, chat_template=bool(template), architecture=flavor)
        backend = cls(client, model_id=model_id, info=info, flavor=flavor, chat_template=template,
                      special_tokens={"bos_token": props.get("bos_token", ""), "eos_token": props.get("eos_token", "")},
                      max_in_flight=max_in_flight)
        backend._probe()
        return backend

    def _probe(self) -> None:
        body = {**self._body(PROBE_PROMPT, SamplingConfig(temperature=0), StopSpec(), 1, 0), "stream": False}
        body.pop("stream_options", None)        # vLLM refuses stream options on a request that does not stream
        reply = self.client.post("/v1/completions", body)
        choice = (reply.get("choices") or [{}])[0]
        if not pieces(choice.get("logprobs")):
            raise ServerError(f"the server at {self.client.url} returned no logprobs for {self.model_id!r}; "
                              "ThoughtScope needs them for every token (vLLM: raise --max-logprobs; "
                              "an API that hides logprobs cannot run searches)")
        if self.info.context_length > 0:
            try:
                toks = self.client.post("/tokenize", {"content": PROBE_PROMPT, "prompt": PROBE_PROMPT,
                                                      "model": self.model_id})
                self.can_tokenize = isinstance(toks.get("tokens"), list) and len(toks["tokens"]) > 0
            except ServerError:
                self.can_tokenize = False

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ---- prompts and tokens --------------------------------------------------------------

    def render_prompt(self, question: str) -> str:
        """The text a solution continues from, in the backend's prompt format (engine/formats.py)."""
        from engine.formats import format_of
        return format_of(self).root_prompt(self, question)

    def apply_chat_template(self, messages: list[dict]) -> str:
        """The server's chat template (llama.cpp's ``/props``) rendered here, as transformers renders one."""
        if not self.chat_template:
            raise ServerError(f"the server at {self.client.url} does not publish a chat template: "
                              "use --format base")
        from transformers.utils.chat_template_utils import render_jinja_template
        rendered, _ = render_jinja_template([messages], chat_template=self.chat_template,
                                            add_generation_prompt=True, **self.special_tokens)
        return rendered[0]

    def solution_prefix(self) -> str:
        from engine.formats import format_of
        return format_of(self).solution_prefix

    @property
    def encode(self):
        """Text -> token ids through the server's ``/tokenize`` (llama.cpp, vLLM); None where the
        server has none or does not say its context length (searches then skip the room check)."""
        return self._encode if self.can_tokenize else None

    def _encode(self, text: str) -> list[int]:
        return list(self.client.post("/tokenize", {"content": text, "prompt": text, "model": self.model_id})["tokens"])

    def configure_prefix_cache(self, max_mb: float | None) -> None:
        """A no-op: the server's prefix cache is the server's (e.g. vLLM ``--enable-prefix-caching``)."""

    def reset_prefix_cache(self) -> None:
        """A no-op: a server's cache is shared by every client; it changes speed, not tokens."""

    # ---- the protocol --------------------------------------------------------------------

    def _body(self, prompt: str, sampling: SamplingConfig, stop: StopSpec, max_new_tokens: int, seed: int,
              *, logprobs: int = TOP_ALTERNATIVES) -> dict:
        body = {"model": self.model_id, "prompt": prompt, "max_tokens": max_new_tokens, "logprobs": logprobs,
                "seed": seed, "temperature": float(sampling.temperature), "top_p": float(sampling.top_p),
                # off is -1 for every server (SGLang refuses 0); llama.cpp's defaults (top_k 40,
                # top_p 0.95, min_p 0.05) would otherwise apply where we asked for none
                "top_k": sampling.top_k or -1, "min_p": float(sampling.min_p), "stream": True}
        if not stop.eos:
            body["ignore_eos"] = True
        if self.flavor == "llamacpp":
            body.update(samplers=list(sampling.order), timings_per_token=True, cache_prompt=True)
        else:
            body["stream_options"] = {"include_usage": True, "continuous_usage_stats": True}
        return body

    def generate(self, prompts: Sequence[str], *, sampling: SamplingConfig, stop: StopSpec = StopSpec(),
                 max_new_tokens: int = 256, seed: int = 0,
                 should_stop: Callable[[], bool] | None = None) -> list[Generation]:
        """One continuation per prompt, the requests in flight together. ``should_stop()`` is
        polled at every streamed token; when it turns true every request is closed and this
        raises `Stopped`."""
        if not isinstance(max_new_tokens, int) or not 1 <= max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
            raise ValueError(f"max_new_tokens must be a whole number from 1 to {MAX_NEW_TOKENS_LIMIT}, "
                             f"got {max_new_tokens!r}")
        if not prompts:
            return []
        if any(not isinstance(p, str) or not p for p in prompts):
            raise InputError("the prompt is empty")
        stop_if(should_stop)
        futures = [self._pool.submit(self._one, self._body(p, sampling, stop, max_new_tokens, row_seed(seed, i)),
                                     stop, should_stop) for i, p in enumerate(prompts)]
        results, errors = [], []
        for f in futures:
            try:
                results.append(f.result())
            except Exception as e:      # collected, so every request has ended before we raise
                errors.append(e)
        if errors:
            stop_if(should_stop)        # a Stop wins over the errors it caused
            raise errors[0]
        return results

    def _one(self, body: dict, stop: StopSpec, should_stop) -> Generation:
        with closing(self.client.stream("/v1/completions", body)) as stream:
            return self._read(stream, body, stop, should_stop)

    def _read(self, stream, body: dict, stop: StopSpec, should_stop) -> Generation:
        text, toks, ends = "", [], []   # ends[i]: length of the joined token texts through token i
        counts, finish = None, None
        for chunk in stream:
            stop_if(should_stop)        # leaving the loop closes the stream: the server aborts
            counts = usage_counts(chunk) or counts
            choice = (chunk.get("choices") or [None])[0]
            if not choice:
                continue
            new = pieces(choice.get("logprobs"))
            delta = choice.get("text") or ""
            if delta and not new:
                raise ServerError(f"the server at {self.client.url} returned text without logprobs for "
                                  f"{self.model_id!r}; ThoughtScope needs them for every token")
            for p in new:
                toks.append(TokenLogprob(p.token_id, p.token, p.logprob, p.top))
                ends.append((ends[-1] if ends else 0) + len(p.token))
            text += delta
            finish = choice.get("finish_reason") or finish
            hit = find_stop(text, stop)
            if hit is not None:
                at, s = hit
                # the tokens up to the one that completed the stop string (token texts may not
                # join to the decoded text exactly; then the text is authoritative, as in split)
                end = at + len(s)
                keep = next((i + 1 for i, e in enumerate(ends) if e >= end), len(toks))
                return self._generation(text[:end], toks[:keep], "stop", s, counts)
            if finish:
                break
        reason = "length" if finish == "length" or (finish is None and len(toks) >= body["max_tokens"]) else "eos"
        return self._generation(text, toks, reason, None, counts)

    @staticmethod
    def _generation(text, toks, reason, stop_string, counts) -> Generation:
        computed, reused = counts or (0, 0)
        return Generation(text=text, tokens=tuple(toks), stop_reason=reason, stop_string=stop_string,
                          prompt_tokens=computed, reused_tokens=reused)

    def distribution(self, prompt: str) -> TopKDistribution:
        """The server's top-k next tokens after ``prompt`` (k = `DISTRIBUTION_TOP_K`), not the
        whole vocabulary: see `TopKDistribution`."""
        if not isinstance(prompt, str) or not prompt:
            raise InputError("the prompt is empty")
        body = {**self._body(prompt, SamplingConfig(temperature=0), StopSpec(), 1, 0,
                             logprobs=DISTRIBUTION_TOP_K), "stream": False}
        body.pop("stream_options", None)
        choice = (self.client.post("/v1/completions", body).get("choices") or [{}])[0]
        got = pieces(choice.get("logprobs"))
        if not got or not got[0].top:
            raise ServerError(f"the server at {self.client.url} returned no top logprobs for the next token")
        top = got[0].top
        lps = torch.tensor([lp for _, lp in top], dtype=torch.float32)
        return TopKDistribution(logits=lps, probs=lps.exp(), tokens=[t for t, _ in top])

    def score(self, prompt: str, continuation: str) -> list[TokenLogprob]:
        """Logprob of each token of ``continuation`` after ``prompt``, from the server's prompt
        logprobs (``echo``). A server that does not echo them raises
        `ServerError`: the text cannot be scored there."""
        if not continuation:
            return []
        # max_tokens 1, not 0, as lm-evaluation-harness asks vLLM: some servers refuse 0; the one
        # generated token is dropped below
        body = {"model": self.model_id, "prompt": prompt + continuation, "max_tokens": 1, "echo": True,
                "logprobs": TOP_ALTERNATIVES, "temperature": 0}
        try:
            reply = self.client.post("/v1/completions", body)
        except ServerError as e:
            raise ServerError(f"this server cannot score text (prompt logprobs through echo): {e}") from None
        choice = (reply.get("choices") or [{}])[0]
        logprobs = choice.get("logprobs") or {}
        got = pieces(logprobs)
        offsets = logprobs.get("text_offset")
        if not str(choice.get("text", "")).startswith(prompt + continuation) or not offsets or len(got) != len(offsets):
            raise ServerError(f"this server cannot score text: the server at {self.client.url} does not return "
                              "prompt logprobs (echo); vLLM does, llama.cpp's server does not")
        end = len(prompt + continuation)
        return [TokenLogprob(p.token_id, p.token, p.logprob, p.top)
                for p, off in zip(got, offsets) if len(prompt) <= off < end and not math.isnan(p.logprob)]


def find_stop(text: str, stop: StopSpec) -> tuple[int, str] | None:
    """``(where, which)`` of the first stop string in ``text``, as the local backend finds it: with
    ``after_text`` only after the first non-blank character. None when there is none."""
    if not stop.strings:
        return None
    start = len(text) - len(text.lstrip()) if stop.after_text else 0
    hits = [(text.find(s, start), s) for s in stop.strings if s in text[start:]]
    return min(hits) if hits else None
