"""Training the PPM on step-level preference pairs with rStar-Math's pairwise Bradley-Terry loss:
for a pair (prompt, chosen step, rejected step), ``loss = -log sigmoid(r(prompt + chosen) -
r(prompt + rejected))``, ``r`` the PPM's tanh score (rStar-Math §3.3, Eq. 4, with one chosen
and one rejected step per row rather than its 2 x 2 groups: the same loss, averaged per pair).

Pairs are split by *problem* (the pair's session id) into train and held-out parts, so the
held-out pairwise accuracy is measured on problems the PPM never saw. The run is seeded
(torch and the shuffles) and single-threaded by default: the machine is shared.

Not here: making pairs (engine/ppm/data.py), the model (engine/ppm/model.py).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from engine.pairs import Pair
from engine.search.common import check_field as _check, is_number, is_whole

HEAD_LR_FACTOR = 10.0
HOLDOUT_SHARE = 0.1        # problems (not pairs) kept aside for the held-out pairwise accuracy


def split_by_problem(pairs: Sequence[Pair], share: float = HOLDOUT_SHARE, seed: int = 0) -> tuple[list[Pair], list[Pair]]:
    """(train, held-out): every pair of one problem on the same side."""
    keys = sorted({p.session_id or p.prompt.split("\n", 1)[0] for p in pairs})
    random.Random(seed).shuffle(keys)
    held = set(keys[:round(len(keys) * share)])
    train = [p for p in pairs if (p.session_id or p.prompt.split("\n", 1)[0]) not in held]
    return train, [p for p in pairs if (p.session_id or p.prompt.split("\n", 1)[0]) in held]


def pair_loss(ppm, batch: Sequence[Pair]) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean Bradley-Terry loss, per-pair margin r_chosen - r_rejected) of one batch, one forward."""
    texts = [p.prompt + p.chosen for p in batch] + [p.prompt + p.rejected for p in batch]
    r = ppm.forward_texts(texts)                                    # (2 * batch,)
    margin = r[:len(batch)] - r[len(batch):]
    return -F.logsigmoid(margin).mean(), margin


@torch.no_grad()
def pairwise_accuracy(ppm, pairs: Sequence[Pair], batch_size: int = 32) -> float:
    """Share of pairs whose chosen text the PPM scores strictly above the rejected one."""
    if not pairs:
        return float("nan")
    was = ppm.training
    ppm.eval()
    right = 0
    for i in range(0, len(pairs), batch_size):
        _, margin = pair_loss(ppm, pairs[i:i + batch_size])
        right += int((margin > 0).sum())
    ppm.train(was)
    return right / len(pairs)


def train_ppm(pairs: Sequence[Pair], *, init_from, out, epochs: int = 2, lr: float = 1e-4, batch_size: int = 16,
              seed: int = 0, threads: int = 1, progress: Callable[[int], None] | None = None,
              held_out: Sequence[Pair] | None = None, holdout_share: float = HOLDOUT_SHARE,
              save_dtype: str = "float32", data_info: dict | None = None, freeze_body: bool = False,
              head_hidden: int = 0) -> dict:
    """Train a PPM initialised from ``init_from`` (a policy folder, embedded model name or loaded
    backend) and save it to ``out``. ``held_out``: pairs for the held-out accuracy (default: a
    by-problem split of ``pairs``). Returns the metrics, also written to ``out``/ppm.json with the
    config and the per-epoch log. ``progress`` gets one call per optimizer step."""
    from engine.ppm.model import ProcessPreferenceModel
    _check("epochs", epochs, is_whole(epochs) and 1 <= epochs <= 1000, "from 1 to 1000")
    _check("lr", lr, is_number(lr) and 0 < lr <= 1, "a number in (0, 1]")
    _check("batch_size", batch_size, is_whole(batch_size) and 1 <= batch_size <= 1024, "from 1 to 1024")
    _check("threads", threads, is_whole(threads) and 1 <= threads <= 256, "from 1 to 256")
    if not pairs:
        raise ValueError("pairs must not be empty: there is nothing to train on")
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    if held_out is None:
        train, held = split_by_problem(pairs, holdout_share, seed)
    else:
        train, held = list(pairs), list(held_out)
    if not train:
        raise ValueError("pairs must leave some for training after the held-out split")
    ppm = ProcessPreferenceModel.from_policy(init_from, seed=seed, head_hidden=head_hidden)
    if freeze_body:
        metrics, log = _train_head(ppm, train, held, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                                   progress=progress)
        return _save(ppm, out, metrics, log, init_from, save_dtype, data_info,
                     dict(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, threads=threads,
                          holdout_share=holdout_share, freeze_body=True, head_hidden=head_hidden))
    # the head starts at zero, so the body gets no gradient until the head has grown: the head
    # learns HEAD_LR_FACTOR times faster (the body is already a good feature extractor)
    opt = torch.optim.AdamW([{"params": ppm.body.parameters(), "lr": lr},
                             {"params": ppm.head.parameters(), "lr": lr * HEAD_LR_FACTOR}], weight_decay=0.0)
    steps_per_epoch = (len(train) + batch_size - 1) // batch_size
    total = steps_per_epoch * epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, total // 10))
                                              * max(0.0, 1 - s / total))     # warm-up, then linear decay
    rng = random.Random(seed)
    log, t0 = [], time.perf_counter()
    first_loss = None
    ppm.train()
    for epoch in range(1, epochs + 1):
        order = list(range(len(train)))
        rng.shuffle(order)
        losses = []
        for i in range(0, len(order), batch_size):
            batch = [train[j] for j in order[i:i + batch_size]]
            loss, _ = pair_loss(ppm, batch)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(ppm.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            first_loss = losses[0] if first_loss is None else first_loss
            if progress:
                progress(1)
        row = {"epoch": epoch, "loss": round(sum(losses) / len(losses), 5),
               "held_out_accuracy": round(pairwise_accuracy(ppm, held), 4) if held else None,
               "seconds": round(time.perf_counter() - t0, 1)}
        log.append(row)
    metrics = {"train_pairs": len(train), "held_out_pairs": len(held),
               "train_accuracy": round(pairwise_accuracy(ppm, train), 4),
               "held_out_accuracy": round(pairwise_accuracy(ppm, held), 4) if held else None,
               "first_batch_loss": round(first_loss, 5), "final_epoch_loss": log[-1]["loss"],
               "seconds": round(time.perf_counter() - t0, 1)}
    return _save(ppm, out, metrics, log, init_from, save_dtype, data_info,
                 dict(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, threads=threads,
                      holdout_share=holdout_share, freeze_body=False, head_hidden=head_hidden))


def _save(ppm, out, metrics: dict, log: list, init_from, save_dtype: str, data_info, config: dict) -> dict:
    source = init_from.info.source if hasattr(init_from, "info") else init_from
    ppm.meta = {"training": {"init_from": str(source), **config, "loss": "bradley_terry", "data": data_info or {}},
                "metrics": metrics, "log": log}
    ppm.save(out, dtype=save_dtype)
    return metrics


@torch.no_grad()
def _features(ppm, texts: list[str], batch_size: int = 32) -> torch.Tensor:
    ppm.eval()
    return torch.cat([ppm.features(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)])


def _train_head(ppm, train: list[Pair], held: list[Pair], *, epochs: int, lr: float, batch_size: int, seed: int,
                progress) -> tuple[dict, list]:
    """A frozen body: every text's last-token state is computed once, then only the head learns
    (the same loss; many epochs cost seconds). ``progress`` gets one call per epoch."""
    t0 = time.perf_counter()
    texts = sorted({p.prompt + x for p in list(train) + list(held) for x in (p.chosen, p.rejected)})
    index = {t: i for i, t in enumerate(texts)}
    feats = _features(ppm, texts)                                              # (texts, hidden)

    def sides(pairs):
        return (torch.tensor([index[p.prompt + p.chosen] for p in pairs], dtype=torch.long),
                torch.tensor([index[p.prompt + p.rejected] for p in pairs], dtype=torch.long))

    def accuracy(pairs) -> float | None:
        if not pairs:
            return None
        c, r = sides(pairs)
        with torch.no_grad():
            s = ppm.from_features(feats)
        return round(float((s[c] > s[r]).float().mean()), 4)

    tc, tr = sides(train)
    opt = torch.optim.AdamW(ppm.head.parameters(), lr=lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    log, first = [], None
    ppm.head.train()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(train), generator=gen)
        losses = []
        for i in range(0, len(order), batch_size):
            j = order[i:i + batch_size]
            margin = ppm.from_features(feats[tc[j]]) - ppm.from_features(feats[tr[j]])
            loss = -F.logsigmoid(margin).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            first = losses[0] if first is None else first
        if progress:
            progress(1)
        if epoch == 1 or epoch == epochs or epoch % max(1, epochs // 20) == 0:
            log.append({"epoch": epoch, "loss": round(sum(losses) / len(losses), 5),
                        "held_out_accuracy": accuracy(held), "seconds": round(time.perf_counter() - t0, 1)})
    ppm.eval()
    metrics = {"train_pairs": len(train), "held_out_pairs": len(held), "train_accuracy": accuracy(train),
               "held_out_accuracy": accuracy(held), "first_batch_loss": round(first, 5),
               "final_epoch_loss": log[-1]["loss"], "seconds": round(time.perf_counter() - t0, 1)}
    return metrics, log


def log_lines(metrics: dict, log: list[dict]) -> str:
    """A human-readable training log (docs/training/ppm-*.log)."""
    return "\n".join([json.dumps(r) for r in log] + [json.dumps(metrics)]) + "\n"


def read_metrics(folder) -> dict:
    """A saved PPM's training metrics (from ppm.json)."""
    return json.loads((Path(folder) / "ppm.json").read_text(encoding="utf-8")).get("metrics", {})
