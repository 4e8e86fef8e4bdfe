"""The process preference model (PPM): the policy's transformer with a scalar head, as in
rStar-Math (Guan et al. 2025, §3.3).

The body is the policy's own base model (for a Llama, its ``LlamaModel``: embeddings, blocks,
final norm; the language-model head is dropped), initialised from the policy's weights; the
head is ``tanh(linear(h_last))``: one score in (-1, 1) read at the last token of the text.
The text is exactly what the policy sees: the root prompt its format writes for the question,
then the steps so far (each with its delimiter), so the PPM judges "the path so far".

A saved PPM is a folder in the model's own layout (``config.json`` of the body, weights,
tokenizer files) plus ``ppm.json``: the format, the head's shape, the training config and the
training log. Weights may be stored in float16 (the shipped PPM is, to stay small); they are
computed in float32.

Not here: building training pairs (engine/ppm/data.py), training (engine/ppm/train.py), or
searching with it (engine/search/mcts.py, engine/search/baselines.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from engine.models.base import ModelLoadError

PPM_FILE = "ppm.json"
WEIGHTS_FILE = "model.safetensors"
PPM_VERSION = 1              # ppm.json's format: bumped when its keys change meaning
SCORE_BATCH = 16             # texts per forward pass in score_texts


class PPMLoadError(ModelLoadError, ValueError):
    """A --ppm path that is missing, not a PPM folder, or damaged (a ValueError too, so the app's
    boundary shows it as a message like any bad setting)."""


class ProcessPreferenceModel(nn.Module):
    """``body`` (a transformers base model) + ``head`` (hidden -> 1) + tanh."""

    def __init__(self, body: nn.Module, tokenizer, *, format_name: str = "embedded", instruction: str = "",
                 add_special_tokens: bool = True, meta: dict | None = None, head_hidden: int = 0):
        super().__init__()
        self.body = body
        self.tokenizer = tokenizer
        hidden = int(body.config.hidden_size)
        # rStar-Math's head is one linear layer; head_hidden > 0 puts a GELU layer of that width
        # before it (a larger head for a frozen body, docs/ppm.md)
        self.head_hidden = int(head_hidden)
        # (the larger head normalises its input first: the body's last states reach tens, which
        # would drive the tanh into saturation, where chosen and rejected both score 1)
        self.head = nn.Linear(hidden, 1) if not head_hidden else nn.Sequential(
            nn.LayerNorm(hidden), nn.Linear(hidden, head_hidden), nn.GELU(), nn.Linear(head_hidden, 1))
        self.format_name = format_name
        self.instruction = instruction
        self.add_special_tokens = add_special_tokens
        self.meta = dict(meta or {})       # ppm.json's training config and log, kept on save
        self.context_length = int(getattr(body.config, "max_position_embeddings", 2048) or 2048)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    # ---- building ----------------------------------------------------------------------------

    @property
    def out_layer(self) -> nn.Linear:
        return self.head if isinstance(self.head, nn.Linear) else self.head[-1]

    @classmethod
    def from_policy(cls, source, *, seed: int = 0, head_hidden: int = 0) -> "ProcessPreferenceModel":
        """A PPM initialised from a policy: ``source`` is a loaded `TransformersBackend` or a model
        folder. The body gets the policy's weights; the head is zero (every score 0 at first), so
        training starts from the policy's own features and no random preference."""
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging
        from engine.formats import format_of
        hf_logging.disable_progress_bar()       # no "Loading weights" bar on a CLI's stderr
        if hasattr(source, "model") and hasattr(source, "tokenizer"):
            causal, tokenizer = source.model, source.tokenizer
            fmt = format_of(source)
            fmt_name, instruction, special = fmt.name, fmt.instruction, not source.use_chat_template
        else:
            path = _model_dir(source)
            tokenizer = AutoTokenizer.from_pretrained(str(path))
            causal = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
            has_template = bool(getattr(tokenizer, "chat_template", None))
            fmt_name, instruction, special = ("chat" if has_template else "embedded"), "", not has_template
        base = getattr(causal, causal.base_model_prefix)
        body = _fresh_body(base.config)
        body.load_state_dict(base.state_dict())
        torch.manual_seed(seed)
        ppm = cls(body, tokenizer, format_name=fmt_name, instruction=instruction, add_special_tokens=special,
                  head_hidden=head_hidden)
        nn.init.zeros_(ppm.out_layer.weight)
        nn.init.zeros_(ppm.out_layer.bias)
        ppm.float().eval()
        return ppm

    # ---- prompts and scores ------------------------------------------------------------------

    def apply_chat_template(self, messages: list[dict]) -> str:
        """What a chat policy's backend does (engine/formats.py calls it for the root prompt)."""
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def prompt(self, question: str, steps: Sequence[str] = ()) -> str:
        """The policy's text for the path: the root prompt of its format, then the steps as written."""
        from engine.formats import FORMATS, PromptFormat
        import dataclasses
        fmt: PromptFormat = FORMATS[self.format_name]
        if self.instruction:
            fmt = dataclasses.replace(fmt, instruction=self.instruction)
        return fmt.root_prompt(self, question) + "".join(steps)

    def _encode(self, text: str) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=self.add_special_tokens)["input_ids"]
        # a path longer than the context: its end is what is judged (the step just taken)
        return ids[-self.context_length:] if ids else [self.pad_id]

    def forward_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Scores in (-1, 1) with gradients, one forward pass: (len(texts),)."""
        return self.from_features(self.features(texts))

    def from_features(self, h: torch.Tensor) -> torch.Tensor:
        """Scores from last-token hidden states (batch, hidden) -> (batch,)."""
        return torch.tanh(self.head(h.float())).squeeze(-1)

    def features(self, texts: Sequence[str]) -> torch.Tensor:
        """The body's hidden state at each text's last token: (len(texts), hidden)."""
        ids = [self._encode(t) for t in texts]
        width = max(len(x) for x in ids)
        device = self.out_layer.weight.device
        # right padding: the last real token of each row is at len - 1, positions start at 0
        batch = torch.full((len(ids), width), self.pad_id, dtype=torch.long, device=device)
        mask = torch.zeros((len(ids), width), dtype=torch.long, device=device)
        for i, x in enumerate(ids):
            batch[i, :len(x)] = torch.tensor(x, dtype=torch.long)
            mask[i, :len(x)] = 1
        hidden = self.body(input_ids=batch, attention_mask=mask).last_hidden_state    # (batch, width, hidden)
        last = torch.tensor([len(x) - 1 for x in ids], device=device)
        return hidden[torch.arange(len(ids), device=device), last]                   # (batch, hidden)

    @torch.no_grad()
    def score_texts(self, texts: Sequence[str], batch_size: int = SCORE_BATCH) -> list[float]:
        """Scores of full texts (root prompt + steps), batched."""
        was = self.training
        self.eval()
        out: list[float] = []
        for i in range(0, len(texts), batch_size):
            out += [float(v) for v in self.forward_texts(texts[i:i + batch_size])]
        self.train(was)
        return out

    def score(self, question: str, steps: Sequence[str]) -> float:
        """Score in (-1, 1) of the path ``steps`` so far for ``question``."""
        return self.score_texts([self.prompt(question, steps)])[0]

    def score_many(self, question: str, paths: Sequence[Sequence[str]]) -> list[float]:
        """`score` for several paths of one question, batched."""
        return self.score_texts([self.prompt(question, p) for p in paths])

    # ---- files -------------------------------------------------------------------------------

    def save(self, path, *, dtype: str = "float32") -> Path:
        """Write the folder: config.json, model.safetensors (body + head), tokenizer files, ppm.json."""
        from safetensors.torch import save_file
        if dtype not in ("float32", "float16"):
            raise ValueError(f"dtype must be float32 or float16, got {dtype!r}")
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        self.body.config.save_pretrained(str(out))
        self.tokenizer.save_pretrained(str(out))
        cast = torch.float16 if dtype == "float16" else torch.float32
        state = {f"body.{k}": v.detach().to(cast).contiguous() for k, v in self.body.state_dict().items()}
        for k, v in self.head.state_dict().items():
            state[f"head.{k}"] = v.detach().float().contiguous()               # the head stays float32
        save_file(state, str(out / WEIGHTS_FILE), metadata={"format": "pt", "thoughtscope": "ppm"})
        meta = {**self.meta, "ppm_version": PPM_VERSION, "format": self.format_name,
                "instruction": self.instruction, "add_special_tokens": self.add_special_tokens,
                "head": {"in": int(self.body.config.hidden_size), "hidden": self.head_hidden, "out": 1,
                         "activation": "tanh"}, "dtype": dtype}
        (out / PPM_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        self.meta = meta
        return out

    @classmethod
    def load(cls, path, device: str = "cpu") -> "ProcessPreferenceModel":
        """Load a saved PPM; a missing or damaged folder raises `PPMLoadError` with one line."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        from transformers import AutoConfig, AutoTokenizer
        folder = Path(str(path)).expanduser()
        if not folder.is_dir():
            raise PPMLoadError(f"no PPM at {folder}: the folder does not exist (train one with "
                               f"`thoughtscope train-ppm`)")
        for name in (PPM_FILE, "config.json", WEIGHTS_FILE):
            if not (folder / name).is_file():
                raise PPMLoadError(f"{folder} is not a PPM folder: it has no {name}")
        try:
            meta = json.loads((folder / PPM_FILE).read_text(encoding="utf-8"))
            if not isinstance(meta, dict) or meta.get("ppm_version") != PPM_VERSION:
                raise ValueError(f"ppm_version must be {PPM_VERSION}")
            config = AutoConfig.from_pretrained(str(folder))
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
            state = load_file(str(folder / WEIGHTS_FILE))
            body = _fresh_body(config)
            ppm = cls(body, tokenizer, format_name=meta["format"], instruction=meta.get("instruction", ""),
                      add_special_tokens=bool(meta.get("add_special_tokens", True)), meta=meta,
                      head_hidden=int(meta.get("head", {}).get("hidden", 0)))
            missing = ppm.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
            del missing
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError, json.JSONDecodeError) as e:
            first = str(e).strip().splitlines()[0].rstrip(".") if str(e).strip() else type(e).__name__
            raise PPMLoadError(f"could not load the PPM at {folder}: {first[:200]}") from e
        return ppm.to(device).float().eval()


def _fresh_body(config) -> nn.Module:
    from transformers import AutoModel
    return AutoModel.from_config(config, dtype=torch.float32)


def _model_dir(source) -> Path:
    from engine.models.registry import EMBEDDED
    if str(source) in EMBEDDED:
        path = EMBEDDED[str(source)].path()
        if path is None or not Path(path).is_dir():
            raise ModelLoadError(f"the embedded model {source!r} has no model folder here")
        return Path(path)
    path = Path(str(source)).expanduser()
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path} is not a model folder: it has no config.json")
    return path
