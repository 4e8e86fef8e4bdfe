"""`ModelBackend` over any transformers causal LM: hub id, local folder or GGUF file.

Generation is our own decoding loop over the model's forward pass with a key/value cache,
not `model.generate`: the loop applies our sampler chain in its named order, records each
token's logprob under the model's own distribution with the top alternatives, stops on
stop strings found in the decoded text (never on hard-coded token ids), and counts how
many prompt tokens were computed and how many were reused. Sampling uses one seeded
`torch.Generator` per call, so the same prompts, config and seed give the same tokens.

Prefix cache (optional, ``prefix_cache_mb``; off by default in the library, on by default in
the CLI and app): key/value states of every computed sequence are kept in a radix tree
(prefix_cache.py), and a prompt computes only what follows its longest cached prefix; equal
prompts in one batch are computed once. It gives the same tokens as the plain loop (tested),
but the floats differ in the last bits (a prefix computed in pieces is not summed in the same
order as one computed whole), so logprobs can differ in the 6th decimal: the recorded sample
sessions were made without it and replay byte for byte only without it.

Not here: which models are embedded (registry.py), prompt formats (demo_model/formats.py).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Callable, Sequence

import torch
from safetensors import SafetensorError

from engine.models.base import (MAX_NEW_TOKENS_LIMIT, Generation, InputError, ModelInfo, ModelLoadError,
                                StopSpec, TokenDistribution, TokenLogprob, stop_if)
from engine.models.prefix_cache import PREFIX_CACHE_MB, PrefixCache  # noqa: F401 (re-exported)
from engine.models.threads import configure_threads
from engine.sampling import SamplingConfig, apply_chain

TOP_ALTERNATIVES = 5      # alternatives kept per generated token


def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} was asked for but no CUDA GPU is visible; use --device cpu")
    if device not in ("cpu", "mps") and not device.startswith("cuda"):
        raise ModelLoadError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    return device


def _resolve_dtype(dtype: str, device: str) -> torch.dtype:
    table = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if dtype not in table:
        raise ModelLoadError(f"dtype must be auto, float32, float16 or bfloat16, got {dtype!r}")
    return table[dtype]


class TransformersBackend:
    """A loaded causal LM. Build one with `TransformersBackend.load(...)`."""

    def __init__(self, model, tokenizer, *, name: str, source: str, use_chat_template: bool | None = None,
                 prefix_cache_mb: float | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = str(next(model.parameters()).device)
        has_template = bool(getattr(tokenizer, "chat_template", None))
        self.use_chat_template = has_template if use_chat_template is None else (use_chat_template and has_template)
        cfg = model.config
        self.info = ModelInfo(
            name=name, source=source,
            parameters=sum(p.numel() for p in model.parameters()),
            device=self.device, dtype=str(next(model.parameters()).dtype).replace("torch.", ""),
            vocab_size=int(cfg.vocab_size),
            context_length=int(getattr(cfg, "max_position_embeddings", 2048) or 2048),
            chat_template=self.use_chat_template,
            architecture=(cfg.architectures or [type(model).__name__])[0])
        self._eos = set()
        for cand in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
            if isinstance(cand, int):
                self._eos.add(cand)
            elif isinstance(cand, (list, tuple)):
                self._eos.update(cand)
        self._pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (min(self._eos) if self._eos else 0)
        self._token_text: list[str] | None = None
        self._cache_lock = threading.Lock()
        self.configure_prefix_cache(prefix_cache_mb)

    # ---- loading -------------------------------------------------------------------------

    @classmethod
    def load(cls, source: str | os.PathLike, *, name: str | None = None, gguf_file: str | None = None,
             device: str = "auto", dtype: str = "auto", threads: int | None = None,
             use_chat_template: bool | None = None,
             prefix_cache_mb: float | None = None) -> "TransformersBackend":
        """Load by local folder, a ``.gguf`` file, or hub id (downloaded only if allowed)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        configure_threads(threads)
        device = _resolve_device(device)
        torch_dtype = _resolve_dtype(dtype, device)
        src = str(source)
        path = Path(src).expanduser()
        if path.suffix == ".gguf":
            if not path.is_file():
                raise ModelLoadError(f"no GGUF file at {path}")
            src, gguf_file = str(path.parent), path.name
        elif path.exists():
            if not (path / "config.json").exists() and gguf_file is None:
                raise ModelLoadError(f"{path} is not a model folder: it has no config.json "
                                     "(expected a folder written by save_pretrained, or a .gguf file)")
            src = str(path)
        elif src.startswith((".", "/", "~")) or src.count("/") > 1:   # a path, not "org/name"
            raise ModelLoadError(f"no model at {src}: the path does not exist")
        kwargs = {"gguf_file": gguf_file} if gguf_file else {}
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        logging.getLogger("transformers").setLevel(logging.ERROR)
        try:
            tokenizer = AutoTokenizer.from_pretrained(src, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(src, dtype=torch_dtype, **kwargs)
            model.to(device)                      # inside: moving to the GPU is where memory runs out
        except torch.cuda.OutOfMemoryError as e:  # pragma: no cover - needs a GPU
            raise ModelLoadError(f"out of GPU memory loading {src}; try --dtype float16 or --device cpu") from e
        except (OSError, ValueError, KeyError, ImportError, RuntimeError, SafetensorError) as e:
            hint = ""
            if not path.exists():
                hint = (" If this is a hub id, this machine may have no network: download the model "
                        "elsewhere and pass its local folder with --model PATH.")
            elif isinstance(e, SafetensorError):     # a truncated or damaged weights file
                hint = " The weights file is damaged or incomplete: download or copy the model again."
            first = str(e).strip().splitlines()[0].rstrip(".") if str(e).strip() else type(e).__name__
            raise ModelLoadError(f"could not load model {src!r}: {first}.{hint}") from e
        return cls(model, tokenizer, name=name or Path(src).name, source=str(source),
                   use_chat_template=use_chat_template, prefix_cache_mb=prefix_cache_mb)

    # ---- prompts and tokens --------------------------------------------------------------

    def render_prompt(self, question: str) -> str:
        """The text a solution continues from, as the model's prompt format writes it
        (engine/formats.py: the embedded ``Question: ...`` line, a chat template with an
        instruction, or a few-shot prompt)."""
        from engine.formats import format_of
        return format_of(self).root_prompt(self, question)

    def apply_chat_template(self, messages: list[dict]) -> str:
        """The chat template's text for ``messages``, ready for the assistant's reply."""
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def solution_prefix(self) -> str:
        """What a plain step-by-step solution is seeded with: ``"Step 1:"`` in the embedded
        models' format (it shares its ``Question:`` prompt with the rStar formats, so sampling
        alone may start a sub-question trace); nothing in the chat and base formats."""
        from engine.formats import format_of
        return format_of(self).solution_prefix

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=not self.use_chat_template)["input_ids"]

    def token_text(self, token_id: int) -> str:
        if self._token_text is None:
            self._token_text = [self.tokenizer.decode([i]) for i in range(len(self.tokenizer))]
        return self._token_text[token_id] if token_id < len(self._token_text) else f"<{token_id}>"

    def _check_prompt(self, ids: list[int], max_new_tokens: int) -> None:
        if not ids:
            raise InputError("the prompt is empty")
        if len(ids) + max_new_tokens > self.info.context_length:
            raise InputError(f"the prompt is {len(ids)} tokens and {max_new_tokens} new tokens were asked for, "
                             f"but {self.info.name} reads at most {self.info.context_length}: "
                             "shorten the question or lower max_new_tokens")

    # ---- the protocol --------------------------------------------------------------------

    def configure_prefix_cache(self, max_mb: float | None) -> None:
        """Keep at most ``max_mb`` MB of key/value states for prompts that share prefixes;
        0 or None turns the cache off (every prompt is computed in full, the plain loop).
        Replaces the current cache. Models whose cache is not one plain key/value tensor per
        layer (sliding-window or linear-attention layers) always run without it."""
        if max_mb is not None and (not isinstance(max_mb, (int, float)) or isinstance(max_mb, bool)
                                   or not 0 <= max_mb <= 1e7 or max_mb != max_mb):
            raise ValueError(f"prefix cache size must be a number of MB from 0 to 10000000, got {max_mb!r}")
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer
        plain_layers = all(type(layer) is DynamicLayer for layer in DynamicCache(config=self.model.config).layers)
        self.prefix_cache = PrefixCache(int(max_mb * 2**20)) if max_mb and plain_layers else None

    def reset_prefix_cache(self) -> None:
        """Forget every cached prefix (a search calls this when it starts)."""
        if self.prefix_cache is not None:
            with self._cache_lock:
                self.prefix_cache.clear()

    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], *, sampling: SamplingConfig, stop: StopSpec = StopSpec(),
                 max_new_tokens: int = 256, seed: int = 0,
                 should_stop: Callable[[], bool] | None = None) -> list[Generation]:
        """One continuation per prompt (batched, left-padded). ``should_stop()`` is polled before
        every forward pass; when it turns true the generation is abandoned with `Stopped` (the
        prefix cache keeps nothing of it)."""
        if not isinstance(max_new_tokens, int) or not 1 <= max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
            raise ValueError(f"max_new_tokens must be a whole number from 1 to {MAX_NEW_TOKENS_LIMIT}, "
                             f"got {max_new_tokens!r}")
        if not prompts:
            return []
        encoded = [self.encode(p) for p in prompts]
        for ids in encoded:
            self._check_prompt(ids, max_new_tokens)
        cached = self.prefix_cache is not None
        cache, mask, next_pos, logits, counts = (self._prefill_cached if cached else self._prefill)(encoded)
        gen = torch.Generator(device=self.device).manual_seed(int(seed))
        batch = len(encoded)
        new_ids: list[list[int]] = [[] for _ in range(batch)]
        records: list[list[TokenLogprob]] = [[] for _ in range(batch)]
        done = [None] * batch                                    # (reason, stop string, text)
        fed = [0] * batch                                        # new tokens whose key/values are in `cache`
        end_logits: list[torch.Tensor | None] = [None] * batch   # next-token logits after the last fed token
        for step in range(max_new_tokens):
            stop_if(should_stop)
            logp = torch.log_softmax(logits, dim=-1)             # the model's own belief
            if sampling.greedy:
                chosen = logits.argmax(dim=-1)
            else:
                probs = torch.softmax(apply_chain(logits, sampling), dim=-1)
                chosen = torch.multinomial(probs, 1, generator=gen).squeeze(-1)
            top_lp, top_id = torch.topk(logp, TOP_ALTERNATIVES, dim=-1)
            chosen_lp = logp.gather(-1, chosen[:, None]).squeeze(-1)
            chosen_l, chosen_lp_l = chosen.tolist(), chosen_lp.tolist()
            top_lp_l, top_id_l = top_lp.tolist(), top_id.tolist()
            feed = []                                            # rows whose newest token goes in the cache
            for i in range(batch):
                if done[i] is not None:
                    continue
                tid = chosen_l[i]
                new_ids[i].append(tid)
                records[i].append(TokenLogprob(tid, self.token_text(tid), chosen_lp_l[i], tuple(
                    (self.token_text(a), b) for a, b in zip(top_id_l[i], top_lp_l[i]))))
                if stop.eos and tid in self._eos:
                    done[i] = ("eos", None, self.tokenizer.decode(new_ids[i][:-1]))
                    continue
                if stop.strings:
                    text = self.tokenizer.decode(new_ids[i])
                    start = len(text) - len(text.lstrip()) if stop.after_text else 0
                    hits = [(text.find(s, start), s) for s in stop.strings if s in text[start:]]
                    if hits:
                        at, s = min(hits)
                        done[i] = ("stop", s, text[:at + len(s)])
                if step == max_new_tokens - 1 and done[i] is None:
                    done[i] = ("length", None, self.tokenizer.decode(new_ids[i]))
                # a finished row's last token is fed too when caching, so a later prompt that
                # extends this sequence (its child step) finds every key/value and the logits
                if done[i] is None or (cached and done[i][0] != "eos"):
                    feed.append(i)
            if not feed:
                break
            col = torch.zeros((batch, 1), dtype=mask.dtype, device=self.device)
            col[feed] = 1
            ids_in = torch.full((batch, 1), self._pad, dtype=torch.long)
            ids_in[feed, 0] = torch.tensor([new_ids[i][-1] for i in feed])
            mask = torch.cat([mask, col], dim=1)
            out = self.model(input_ids=ids_in.to(self.device), attention_mask=mask, position_ids=next_pos,
                             past_key_values=cache, use_cache=True)
            logits = out.logits[:, -1, :].float()
            next_pos = next_pos + 1
            for i in feed:
                fed[i] += 1
                if done[i] is not None:
                    end_logits[i] = logits[i].clone()
            if all(d is not None for d in done):
                break
        if cached:
            self._remember(encoded, new_ids, fed, end_logits, cache, mask)
        results = []
        for i in range(batch):
            reason, stop_s, text = done[i]
            results.append(Generation(text=text, tokens=tuple(records[i]), stop_reason=reason,
                                      stop_string=stop_s, prompt_tokens=counts[i][0], reused_tokens=counts[i][1]))
        return results

    def _prefill(self, encoded: list[list[int]]):
        """Every prompt computed in full, left-padded into one batch. Returns the cache, the
        attention mask, the next position ids (batch, 1), the last logits (batch, vocab) and
        (computed, reused) prompt tokens per row."""
        batch, width = len(encoded), max(len(ids) for ids in encoded)
        input_ids = torch.full((batch, width), self._pad, dtype=torch.long)
        mask = torch.zeros((batch, width), dtype=torch.long)
        for i, ids in enumerate(encoded):                       # left padding
            input_ids[i, width - len(ids):] = torch.tensor(ids)
            mask[i, width - len(ids):] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        from transformers import DynamicCache
        cache = DynamicCache(config=self.model.config)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                         past_key_values=cache, use_cache=True)
        return cache, mask, positions[:, -1:] + 1, out.logits[:, -1, :].float(), [(len(ids), 0) for ids in encoded]

    def _prefill_cached(self, encoded: list[list[int]]):
        """Like `_prefill`, computing only what the prefix cache lacks. Equal prompts are
        computed once and their rows copied from it. Row layout (columns):

            [pad][cached prefix c][pad][new suffix s]      the mask is 0 on the pads

        so rows with different cached lengths share one forward pass; position ids count only
        real tokens, so every key/value sits at its true position."""
        unique: dict[tuple, int] = {}
        row_of = [unique.setdefault(tuple(ids), len(unique)) for ids in encoded]
        prompts = [list(k) for k in unique]
        with self._cache_lock:
            matches = [self.prefix_cache.match(ids) for ids in prompts]
        lens = [len(ids) for ids in prompts]
        # a prompt whose next-token logits are not cached recomputes at least its last token
        cached = [m.length if m.length < n or m.logits is not None else n - 1 for m, n in zip(matches, lens)]
        suffix = [n - c for n, c in zip(lens, cached)]
        U, C, S = len(prompts), max(cached), max(suffix)
        from transformers import DynamicCache
        cache = DynamicCache(config=self.model.config)
        mask = torch.zeros((U, C + S), dtype=torch.long)
        for u in range(U):
            mask[u, C - cached[u]:C] = 1
            mask[u, C + S - suffix[u]:] = 1
        if C:
            for layer in range(len(cache.layers)):
                ks, vs = [], []
                for u, m in enumerate(matches):
                    k, v = (m.kv(layer, cached[u]) if cached[u] else (None, None))
                    ks.append(k)
                    vs.append(v)
                proto_k = next(k for k in ks if k is not None)
                proto_v = next(v for v in vs if v is not None)
                K = proto_k.new_zeros((U, proto_k.shape[0], C, proto_k.shape[2]))   # (batch, heads, C, head_dim)
                V = proto_v.new_zeros((U, proto_v.shape[0], C, proto_v.shape[2]))
                for u in range(U):
                    if cached[u]:
                        K[u, :, C - cached[u]:] = ks[u]
                        V[u, :, C - cached[u]:] = vs[u]
                cache.update(K, V, layer)
        mask = mask.to(self.device)
        logits = [m.logits if s == 0 else None for m, s in zip(matches, suffix)]
        if S:
            input_ids = torch.full((U, S), self._pad, dtype=torch.long)
            positions = torch.zeros((U, S), dtype=torch.long)
            for u, ids in enumerate(prompts):
                if suffix[u]:
                    input_ids[u, S - suffix[u]:] = torch.tensor(ids[cached[u]:])
                    positions[u, S - suffix[u]:] = torch.arange(cached[u], lens[u])
            out = self.model(input_ids=input_ids.to(self.device), attention_mask=mask,
                             position_ids=positions.to(self.device), past_key_values=cache, use_cache=True)
            last = out.logits[:, -1, :].float()
            logits = [last[u] if logits[u] is None else logits[u] for u in range(U)]
        logits = torch.stack([x.to(self.device) for x in logits])            # (U, vocab)
        next_pos = torch.tensor(lens, device=self.device)[:, None]
        index = torch.tensor(row_of, device=self.device)
        if U != len(encoded):
            cache.batch_select_indices(index)           # copy each unique prompt's rows out (batch, ...)
        counts, seen = [], set()
        for r, u in enumerate(row_of):
            counts.append((suffix[u], cached[u]) if u not in seen else (0, lens[u]))
            seen.add(u)
        return cache, mask[index], next_pos[index], logits[index], counts

    def _remember(self, encoded, new_ids, fed, end_logits, cache, mask) -> None:
        """Put every row's prompt + fed tokens, with its key/values, in the prefix cache."""
        for i, ids in enumerate(encoded):
            seq = list(ids) + new_ids[i][:fed[i]]
            cols = mask[i].nonzero().squeeze(-1)[:len(seq)]  # this row's real tokens, in order

            def kv_slice(start, end, i=i, cols=cols):
                return [(layer.keys[i][:, cols[start:end]], layer.values[i][:, cols[start:end]])
                        for layer in cache.layers]
            logits = end_logits[i] if fed[i] == len(new_ids[i]) and fed[i] else None
            with self._cache_lock:
                self.prefix_cache.insert(seq, kv_slice, logits)

    @torch.inference_mode()
    def _logits(self, ids: list[int]) -> torch.Tensor:
        x = torch.tensor([ids], device=self.device)
        return self.model(input_ids=x).logits[0].float()         # (len, vocab)

    def distribution(self, prompt: str) -> TokenDistribution:
        ids = self.encode(prompt)
        self._check_prompt(ids, 1)
        logits = self._logits(ids)[-1].cpu()
        vocab = [self.token_text(i) for i in range(logits.shape[0])]   # ids past the tokenizer: "<id>"
        return TokenDistribution(logits=logits, probs=logits.softmax(-1), tokens=vocab)

    def continuation_logits(self, prompt: str, continuation_ids: Sequence[int]) -> torch.Tensor:
        """The raw next-token logits each continuation token was drawn from, in one forward pass:
        ``(len(continuation_ids), vocab)`` on the CPU; row 0 is ``distribution(prompt).logits``.
        What the sampling lab views read (engine/sampling_lab.py)."""
        ids = self.encode(prompt)
        self._check_prompt(ids, max(1, len(continuation_ids)))
        if not continuation_ids:
            return torch.empty((0, self.info.vocab_size))
        rows = self._logits(ids + list(continuation_ids))[len(ids) - 1: len(ids) - 1 + len(continuation_ids)]
        return rows.cpu()

    def score(self, prompt: str, continuation: str) -> list[TokenLogprob]:
        """Logprob of each token of ``continuation`` after ``prompt``, tokenised separately
        (as generation produces them)."""
        return self.score_ids(prompt, self.tokenizer(continuation, add_special_tokens=False)["input_ids"])

    def score_ids(self, prompt: str, continuation_ids: list[int]) -> list[TokenLogprob]:
        ids = self.encode(prompt)
        self._check_prompt(ids, max(1, len(continuation_ids)))
        if not continuation_ids:
            return []
        logp = torch.log_softmax(self._logits(ids + list(continuation_ids)), dim=-1)
        rows = logp[len(ids) - 1: len(ids) - 1 + len(continuation_ids)]   # (cont, vocab)
        top_lp, top_id = torch.topk(rows, TOP_ALTERNATIVES, dim=-1)
        out = []
        for j, tid in enumerate(continuation_ids):
            out.append(TokenLogprob(tid, self.token_text(tid), float(rows[j, tid]), tuple(
                (self.token_text(a), b) for a, b in zip(top_id[j].tolist(), top_lp[j].tolist()))))
        return out
