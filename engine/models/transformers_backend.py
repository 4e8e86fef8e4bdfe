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

import functools
import inspect
import logging
import os
import threading
from pathlib import Path
from typing import Callable, Sequence

import torch
from safetensors import SafetensorError

from engine.models import cascade
from engine.models.base import (MAX_NEW_TOKENS_LIMIT, Generation, InputError, ModelInfo, ModelLoadError,
                                StopSpec, TokenDistribution, TokenLogprob, stop_if)
from engine.models.prefix_cache import PREFIX_CACHE_MB, PrefixCache  # noqa: F401 (re-exported)
from engine.models.cpu_linear import pack_linears
from engine.models.decode import TOP_ALTERNATIVES, DecodeClock
from engine.models.threads import configure_threads
from engine.sampling import SamplingConfig

QUANTIZE = ("4bit", "8bit")   # --quantize choices (bitsandbytes)
ENCODE_MEMO = 1024             # prompts whose token ids a backend keeps (an LRU: TransformersBackend.encode)
log = logging.getLogger(__name__)


class OutOfMemory(ModelLoadError):
    """Generation ran out of accelerator memory even for one sequence; the message says what to try."""


def is_out_of_memory(e: BaseException) -> bool:
    """CUDA's (or another accelerator's) out-of-memory error, whatever class it comes as."""
    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(e, oom) or (isinstance(e, RuntimeError) and "out of memory" in str(e).lower())


def free_accelerator_memory() -> None:
    """Hand freed tensors' GPU memory back (a retry or the next model needs it); no-op on CPU."""
    import gc
    gc.collect()
    if torch.cuda.is_available():   # pragma: no cover - needs a GPU
        torch.cuda.empty_cache()


def _resolve_device(device: str) -> str:
    """The device to put the whole model on; ``auto`` is spread by accelerate where there are GPUs
    (see `TransformersBackend.load`), so here it only decides CPU or CUDA."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} was asked for but no CUDA GPU is visible; use --device cpu")
    if device not in ("cpu", "mps") and not device.startswith("cuda"):
        raise ModelLoadError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    return device


def _placement(device: str, spread: bool, quantize: str | None, torch_dtype) -> dict:
    """from_pretrained's placement kwargs: accelerate's device_map (``spread``: over every GPU)
    and bitsandbytes' quantization config; {} for a model loaded whole and moved to ``device``."""
    out = {"device_map": "auto"} if spread else {}
    if quantize is None:
        return out
    import importlib.util
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelLoadError(f"--quantize {quantize} needs the bitsandbytes package and a CUDA GPU: "
                             "pip install 'thoughtscope[gpu]' (or pip install bitsandbytes), or drop --quantize")
    if not device.startswith("cuda"):
        raise ModelLoadError(f"--quantize {quantize} needs a CUDA GPU (bitsandbytes) and this run is on {device}: "
                             "drop --quantize")
    from transformers import BitsAndBytesConfig   # pragma: no cover - needs a GPU
    bits = (dict(load_in_4bit=True, bnb_4bit_compute_dtype=torch_dtype, bnb_4bit_quant_type="nf4")
            if quantize == "4bit" else dict(load_in_8bit=True))
    return {**out, "device_map": out.get("device_map", device), "quantization_config": BitsAndBytesConfig(**bits)}


def _quantized(model) -> str | None:
    q = getattr(getattr(model, "config", None), "quantization_config", None)
    if q is None:
        return None
    get = q.get if isinstance(q, dict) else lambda k, d=None: getattr(q, k, d)
    # bitsandbytes' only: a GGUF file's quantization is undone when transformers reads it
    return "4-bit" if get("load_in_4bit", False) else "8-bit" if get("load_in_8bit", False) else None


def _plain_attention_cache(config) -> bool:
    """Whether every layer's cache is key/value attention, full or sliding-window (decode.py
    then keeps plain key/value layers, which the prefix cache and batching can cut and pad)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer
    return all(type(layer) in (DynamicLayer, DynamicSlidingWindowLayer)
               for layer in DynamicCache(config=config).layers)


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
        # inputs go where the embeddings are: with a device_map that is the first of several GPUs
        self.device = str(model.get_input_embeddings().weight.device)
        # on the CPU, weights packed once for oneDNN: a decode pass's few rows no longer pay for
        # a copy of every weight matrix per call (cpu_linear.py)
        self.packed_linears = pack_linears(model) if self.device == "cpu" else 0
        placed = sorted({str(d) for d in (getattr(model, "hf_device_map", None) or {}).values()})
        has_template = bool(getattr(tokenizer, "chat_template", None))
        self.use_chat_template = has_template if use_chat_template is None else (use_chat_template and has_template)
        cfg = model.config
        self.info = ModelInfo(
            name=name, source=source,
            parameters=sum(p.numel() for p in model.parameters()),
            device="+".join(placed) if len(placed) > 1 else self.device,
            dtype=str(next(model.parameters()).dtype).replace("torch.", "")
            + (f", {quantized} quantized" if (quantized := _quantized(model)) else ""),
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
        # one forward pass at a time: the batching scheduler (batching.py) and a search's own
        # score/distribution calls would otherwise compete for the same cores or GPU
        self.model_lock = threading.RLock()
        self.generated_tokens = 0      # tokens sampled so far, every call (progress shows tokens/s)
        self.decode_clock = DecodeClock()     # where decoding time goes (eval --json's "decoding")
        # a search encodes one prompt several times (the room it has left, then the call itself,
        # and an expansion's equal prompts): the tokenizer's own call costs more than the lookup.
        # The memo holds the tokenizer, not the backend (no cycle keeping a swapped-out model alive)
        tok, special = tokenizer, not self.use_chat_template
        self._encode_memo = functools.lru_cache(maxsize=ENCODE_MEMO)(
            lambda text: tuple(tok(text, add_special_tokens=special)["input_ids"]))
        self.num_layers = int(cfg.get_text_config().num_hidden_layers)
        # logits for the last position only, where the model's forward can be told so
        params = inspect.signature(model.forward).parameters
        self.keeps_logits = "logits_to_keep" in params
        # transformers 5 renamed the forward's past_key_values to cache (the old name goes in 5.40)
        self.cache_kw = "cache" if "cache" in params else "past_key_values"
        self.plain_cache = _plain_attention_cache(model.config)
        # transformers counts a sliding window in mask columns, pads included, so a row padded
        # in a batch sees fewer real tokens past the window than alone: batching.py does not
        # merge such models' calls
        text_cfg = cfg.get_text_config()
        types = getattr(text_cfg, "layer_types", None)
        self.sliding_window = bool(getattr(text_cfg, "sliding_window", None)) and (
            types is None or "sliding_attention" in types)
        # on the CPU, a decode pass of many rows reads each shared prompt's keys once (cascade.py)
        self.cascade = self.device == "cpu" and self.plain_cache and not self.sliding_window and cascade.enable(model)
        self.configure_prefix_cache(prefix_cache_mb)

    # ---- loading -------------------------------------------------------------------------

    @classmethod
    def load(cls, source: str | os.PathLike, *, name: str | None = None, gguf_file: str | None = None,
             device: str = "auto", dtype: str = "auto", threads: int | None = None,
             use_chat_template: bool | None = None, prefix_cache_mb: float | None = None,
             quantize: str | None = None) -> "TransformersBackend":
        """Load by local folder, a ``.gguf`` file, or hub id (downloaded only if allowed).

        ``device="auto"`` with CUDA GPUs loads through accelerate's ``device_map="auto"``: a model
        too big for one GPU is spread over all of them (layers in order, CPU last). ``quantize``
        (``4bit`` or ``8bit``) loads the weights quantised by bitsandbytes, on a CUDA GPU."""
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        if quantize is not None and quantize not in QUANTIZE:
            raise ModelLoadError(f"quantize must be one of {', '.join(QUANTIZE)}, got {quantize!r}")
        configure_threads(threads)
        spread = device == "auto" and torch.cuda.is_available()
        device = _resolve_device(device)
        torch_dtype = _resolve_dtype(dtype, device)
        placement = _placement(device, spread, quantize, torch_dtype)
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
        kwargs.update(placement)
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        logging.getLogger("transformers").setLevel(logging.ERROR)
        try:
            tokenizer = AutoTokenizer.from_pretrained(src, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(src, dtype=torch_dtype, **kwargs)
            if "device_map" not in placement:
                model.to(device)                  # inside: moving to the GPU is where memory runs out
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
        return list(self._encode_memo(text))

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
        Replaces the current cache. Sliding-window models use it too: their layers keep every
        key/value (the attention mask applies the window), so a cached prefix gives the same
        logits as computing it whole. Models with other layer kinds (linear attention, state
        space) always run without it."""
        if max_mb is not None and (not isinstance(max_mb, (int, float)) or isinstance(max_mb, bool)
                                   or not 0 <= max_mb <= 1e7 or max_mb != max_mb):
            raise ValueError(f"prefix cache size must be a number of MB from 0 to 10000000, got {max_mb!r}")
        self.prefix_cache = PrefixCache(int(max_mb * 2**20)) if max_mb and self.plain_cache else None

    def reset_prefix_cache(self) -> None:
        """Forget every cached prefix (a search calls this when it starts)."""
        if self.prefix_cache is not None:
            with self._cache_lock:
                self.prefix_cache.clear()

    def check_request(self, prompts: Sequence[str], max_new_tokens: int) -> list[list[int]]:
        """The prompts' token ids, after checking the budget and that each fits the context."""
        if not isinstance(max_new_tokens, int) or not 1 <= max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
            raise ValueError(f"max_new_tokens must be a whole number from 1 to {MAX_NEW_TOKENS_LIMIT}, "
                             f"got {max_new_tokens!r}")
        encoded = [self.encode(p) for p in prompts]
        for ids in encoded:
            self._check_prompt(ids, max_new_tokens)
        return encoded

    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], *, sampling: SamplingConfig, stop: StopSpec = StopSpec(),
                 max_new_tokens: int = 256, seed: int = 0,
                 should_stop: Callable[[], bool] | None = None) -> list[Generation]:
        """One continuation per prompt (batched, left-padded; the loop is engine/models/decode.py).
        ``should_stop()`` is polled before every forward pass; when it turns true the generation is
        abandoned with `Stopped` (the prefix cache keeps nothing of it). Out of GPU memory, the
        batch is halved and each half run with the same seed (so the tokens can differ from one
        run of the whole batch); one prompt that does not fit raises `OutOfMemory`."""
        encoded = self.check_request(prompts, max_new_tokens)
        if not encoded:
            return []
        return self.generate_ids(encoded, sampling=sampling, stop=stop, max_new_tokens=max_new_tokens, seed=seed,
                                 should_stop=should_stop, prefix_cache=self.prefix_cache)

    @torch.inference_mode()
    def generate_ids(self, encoded: list[list[int]], *, sampling: SamplingConfig, stop: StopSpec, max_new_tokens: int,
                     seed: int, should_stop=None, prefix_cache: PrefixCache | None = None) -> list[Generation]:
        """`generate` for prompts already encoded and checked, reading and filling ``prefix_cache``."""
        from engine.models.decode import Decoder, Request
        request = Request(encoded, sampling, stop, max_new_tokens, seed, should_stop, prefix_cache)
        try:
            with self.model_lock:
                return Decoder(self).run(request)
        except Exception as e:
            if not is_out_of_memory(e):
                raise
        free_accelerator_memory()
        if len(encoded) == 1:
            raise OutOfMemory(f"out of {self.device} memory generating one sequence of {len(encoded[0])} prompt "
                              f"tokens + {max_new_tokens} new ones with {self.info.name}: lower the token budget, "
                              "or load the model smaller (--dtype float16, --quantize 4bit) or spread over more "
                              "GPUs (--device auto)")
        half = (len(encoded) + 1) // 2
        log.warning("out of %s memory generating %d sequences: retrying as two batches of %d and %d",
                    self.device, len(encoded), half, len(encoded) - half)
        kw = dict(sampling=sampling, stop=stop, max_new_tokens=max_new_tokens, seed=seed, should_stop=should_stop,
                  prefix_cache=prefix_cache)
        return self.generate_ids(encoded[:half], **kw) + self.generate_ids(encoded[half:], **kw)

    @torch.inference_mode()
    def _logits(self, ids: list[int], last: int) -> torch.Tensor:
        """Next-token logits after each of the ``last`` final tokens of ``ids``: (last, vocab), only
        those computed (a 150k vocabulary times every prompt position is most of the memory)."""
        x = torch.tensor([ids], device=self.device)
        kw = {"logits_to_keep": last} if self.keeps_logits else {}
        with self.model_lock:
            return self.model(input_ids=x, **kw).logits[0, -last:].float()

    def distribution(self, prompt: str) -> TokenDistribution:
        ids = self.encode(prompt)
        self._check_prompt(ids, 1)
        logits = self._logits(ids, 1)[-1].cpu()
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
        return self._logits(ids + list(continuation_ids), len(continuation_ids) + 1)[:-1].cpu()

    def score(self, prompt: str, continuation: str) -> list[TokenLogprob]:
        """Logprob of each token of ``continuation`` after ``prompt``, tokenised separately
        (as generation produces them)."""
        return self.score_ids(prompt, self.tokenizer(continuation, add_special_tokens=False)["input_ids"])

    def score_ids(self, prompt: str, continuation_ids: list[int]) -> list[TokenLogprob]:
        ids = self.encode(prompt)
        self._check_prompt(ids, max(1, len(continuation_ids)))
        if not continuation_ids:
            return []
        # (cont, vocab): the logits before each continuation token
        rows = torch.log_softmax(self._logits(ids + list(continuation_ids), len(continuation_ids) + 1)[:-1], dim=-1)
        top_lp, top_id = torch.topk(rows, TOP_ALTERNATIVES, dim=-1)
        out = []
        for j, tid in enumerate(continuation_ids):
            out.append(TokenLogprob(tid, self.token_text(tid), float(rows[j, tid]), tuple(
                (self.token_text(a), b) for a, b in zip(top_id[j].tolist(), top_lp[j].tolist()))))
        return out
