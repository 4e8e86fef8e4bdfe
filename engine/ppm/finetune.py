"""Fine-tune the policy on verified trajectories: the policy half of a self-evolution round.

rStar-Math (§3.3, §4) trains round r's policy SLM on the round's verified trajectories — MCTS
paths that reach the right answer, the best by Q kept per problem. Here the policy is the
embedded model (or any causal LM folder); each trajectory is one (prompt, completion) document,
the prompt the policy's root prompt for the question, the completion the path's steps ending in
its answer line and EOS, exactly as the model writes a solution. Loss on the completion only,
as in engine/demo_model/train.py, whose packing this follows (`pack_all`) and whose label mask
(`IGNORE`) and schedule it reuses.

Deliberate differences from rStar-Math: it retrains the policy from the base model on all
rounds' data for 2 epochs at LR 7e-6 on billions of tokens; a round here *continues* from the
previous round's policy on that round's trajectories only, with a small learning rate and a
few steps (``epochs``, ``lr``), because the data is a few hundred solutions and the budget is
minutes on one CPU thread. A seeded run gives the same weights on the same machine.

Output: a folder in the embedded model's layout (``save_pretrained`` safetensors, tokenizer
files, ``generation_config.json``) plus ``finetune.json`` (settings, loss curve, counts).

Not here: choosing trajectories (engine/ppm/data.py), the loop (engine/ppm/evolve.py).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from engine.demo_model.train import IGNORE, pack

FINETUNE_FILE = "finetune.json"


@dataclass(frozen=True)
class FinetuneConfig:
    lr: float = 1e-4          # peak learning rate (the shipped model trained at 3e-3)
    epochs: float = 2.0       # passes over the packed rows; steps = ceil(epochs * rows / batch)
    max_steps: int = 200      # cap, whatever the data size
    batch: int = 8            # packed rows per step
    seq: int = 512            # tokens per packed row (the embedded model's context)
    warmup: int = 10          # steps of linear warm-up, then cosine down to 10 % of lr
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        def need(name, ok, what):
            if not ok:
                raise ValueError(f"{name} must be {what}, got {getattr(self, name)!r}")
        whole = lambda v: isinstance(v, int) and not isinstance(v, bool)      # noqa: E731
        need("lr", isinstance(self.lr, (int, float)) and 0 < self.lr <= 1, "a number in (0, 1]")
        need("epochs", isinstance(self.epochs, (int, float)) and 0 < self.epochs <= 100, "a number in (0, 100]")
        need("max_steps", whole(self.max_steps) and 1 <= self.max_steps <= 100_000, "a whole number from 1 to 100000")
        need("batch", whole(self.batch) and 1 <= self.batch <= 1024, "a whole number from 1 to 1024")
        need("seq", whole(self.seq) and 16 <= self.seq <= 65_536, "a whole number from 16 to 65536")
        need("warmup", whole(self.warmup) and 0 <= self.warmup <= 10_000, "a whole number from 0 to 10000")
        need("threads", whole(self.threads) and 1 <= self.threads <= 256, "a whole number from 1 to 256")


def lr_at(step: int, total: int, cfg: FinetuneConfig) -> float:
    """Linear warm-up, then cosine from ``lr`` to 10 % of it (train.py's schedule); the warm-up
    is at most a fifth of the run, so a run of a few steps still reaches ``lr``."""
    warmup = min(cfg.warmup, max(1, total // 5))
    warm = min(1.0, (step + 1) / warmup) if cfg.warmup else 1.0
    progress = min(1.0, step / max(1, total))
    return cfg.lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def pack_all(tokenizer, docs: list[tuple[str, str]], seq: int) -> tuple[torch.Tensor, torch.Tensor]:
    """train.py's `pack`, keeping the last, partly filled row (a round's trajectories are few)."""
    return pack(tokenizer, docs, seq, keep_last=True, eos=tokenizer.eos_token_id)


def planned_steps(docs: Sequence[tuple[str, str]], init_from: str | Path, config: FinetuneConfig) -> int:
    """The optimizer steps `finetune_policy` will take on ``docs`` (for a progress bar's total)."""
    from transformers import AutoTokenizer
    from engine.models.registry import resolve
    tokenizer = AutoTokenizer.from_pretrained(resolve(str(init_from))[1])
    rows = pack_all(tokenizer, list(docs), config.seq)[0].shape[0]
    return _steps(rows, config)


def _steps(rows: int, config: FinetuneConfig) -> int:
    return min(config.max_steps, max(1, math.ceil(config.epochs * rows / config.batch)))


def finetune_policy(docs: Sequence[tuple[str, str]], *, init_from: str | Path, out: str | Path,
                    config: FinetuneConfig = FinetuneConfig(),
                    progress: Callable[[int], None] | None = None) -> dict:
    """Continue training the causal LM in ``init_from`` on ``docs`` ((prompt, completion) pairs,
    loss on the completion) and save it to ``out``; returns the summary written to finetune.json.

    ``progress(k)`` is called after each step with k = 1 (the CLI's bar)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from engine.models.registry import resolve
    if not docs:
        raise ValueError("docs must hold at least one (prompt, completion) trajectory, got none")
    _, source, gguf = resolve(str(init_from))        # an embedded model's name -> its folder
    if gguf:
        raise ValueError(f"init_from must be a transformers model folder to fine-tune, not a GGUF file ({gguf})")
    init_from = source
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(init_from))
    model = AutoModelForCausalLM.from_pretrained(str(init_from), dtype=torch.float32)
    X, Y = pack_all(tokenizer, list(docs), config.seq)   # (rows, seq) each
    if X.shape[0] == 0:
        raise ValueError(f"no trajectory fits in seq={config.seq} tokens")
    steps = _steps(X.shape[0], config)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(0.9, 0.98), weight_decay=0.0)
    gen = torch.Generator().manual_seed(config.seed)
    # an epoch is a seeded permutation of the rows, so every row is seen before any repeats
    order = torch.cat([torch.randperm(X.shape[0], generator=gen)
                       for _ in range(math.ceil(steps * config.batch / X.shape[0]) + 1)])
    log, t0 = [], time.perf_counter()
    model.train()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, config)
        idx = order[step * config.batch:(step + 1) * config.batch]
        loss = model(input_ids=X[idx], labels=Y[idx]).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        log.append({"step": step, "loss": round(loss.item(), 4), "lr": opt.param_groups[0]["lr"]})
        if progress is not None:
            progress(1)
    model.eval()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    summary = {"init_from": str(init_from), "config": asdict(config), "trajectories": len(docs),
               "rows": int(X.shape[0]), "loss_tokens": int((Y != IGNORE).sum()), "steps": steps,
               "first_loss": log[0]["loss"], "last_loss": log[-1]["loss"],
               "seconds": round(time.perf_counter() - t0, 1), "log": log}
    (out / FINETUNE_FILE).write_text(json.dumps(summary, indent=1))
    return summary
