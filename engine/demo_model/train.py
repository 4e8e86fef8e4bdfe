"""Train the embedded reasoning model from scratch: ``python -m engine.demo_model.train``.

Seeded, logs loss, resumable (``--resume``), stops at a time budget (``--minutes``) or a
step count (``--max-steps``). The learning rate follows a cosine over the budget, so a
resumed run continues the same schedule. Problems are generated and tokenised once, up
front, into one packed tensor: generating on the fly in Python would starve the model.

Output: a Llama-architecture causal LM and its tokenizer, written with ``save_pretrained``
(safetensors) into ``assets/models/<name>/`` plus ``training.json`` with the run's settings
and loss curve. Loss is taken on solutions only: the question is given, never predicted.

Not here: evaluation beyond a quick held-out check (``thoughtscope eval`` does that).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from pathlib import Path

import torch

from engine.demo_model import problems as P
from engine.demo_model.tokenizer import EOS, build_tokenizer
from engine.steps import answers_equal, extract_answer

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "assets" / "models" / "arith-llama-3m"
HELDOUT = ROOT / "assets" / "problems" / "heldout.jsonl"
TIER_WEIGHTS = {"easy": 0.2, "medium": 0.35, "hard": 0.45}
FORMAT_WEIGHTS = {"steps": 0.5, "rstar": 0.3, "code": 0.2}
IGNORE = -100  # label of tokens that carry no loss (question, padding)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--minutes", type=float, default=40.0, help="wall-clock budget")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: budget only)")
    ap.add_argument("--docs", type=int, default=200_000, help="training problems to generate")
    ap.add_argument("--batch", type=int, default=16, help="packed rows per step")
    ap.add_argument("--seq", type=int, default=512, help="tokens per packed row")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--ffn", type=int, default=640)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-every", type=float, default=5.0, help="minutes between quick evals")
    ap.add_argument("--split-share", type=float, default=P.SPLIT_SHARE,
                    help="share of splittable steps written worked, e.g. 478 + 356 = 478 + 300 + 56 = ... "
                         "(shipped model: 0; run 3 tried 0.4)")
    ap.add_argument("--reorder-share", type=float, default=P.REORDER_SHARE,
                    help="share of steps/code solutions written in a random valid order of their events "
                         "(several paths to one answer; arith-llama-3m: 0)")
    ap.add_argument("--name-events", action="store_true",
                    help="plain and rStar step lines name the event they use, in the story's words "
                         "(`Step 2: loses 230, 298 - 230 = 68`; arith-llama-3m: off)")
    ap.add_argument("--name-share", type=float, default=P.NAME_SHARE,
                    help="chance a plain-steps solution names its events; the rest are plain "
                         "(default: all follow --name-events)")
    ap.add_argument("--merge-share", type=float, default=P.MERGE_SHARE,
                    help="chance a plain step takes the next event too, in one expression "
                         "(`Step 2: 298 - 230 + 40 = 108`; arith-llama-3m: 0)")
    ap.add_argument("--hard-steps", type=int, nargs=2, metavar=("LO", "HI"), default=None,
                    help="events in a hard training problem (arith-llama-3m: the tier's own, "
                         f"{P.TIER_SPECS['hard'].ops[0]} {P.TIER_SPECS['hard'].ops[1]})")
    ap.add_argument("--init-from", type=Path, default=None,
                    help="start from this saved model and its tokenizer instead of from scratch "
                         "(a fresh optimizer and schedule)")
    ap.add_argument("--resume", action="store_true")
    return ap.parse_args(argv)


def tier_specs(hard_steps: list[int] | None) -> dict[str, P.TierSpec]:
    """The tiers to train on: TIER_SPECS, with hard problems' event count from ``--hard-steps``."""
    if not hard_steps:
        return dict(P.TIER_SPECS)
    try:
        return {**P.TIER_SPECS, "hard": P.with_events("hard", *hard_steps)}
    except ValueError as e:
        raise SystemExit(f"--hard-steps: {e}") from None


def build_corpus(n_docs: int, seed: int, heldout_questions: set[str],
                 split_share: float = P.SPLIT_SHARE,
                 reorder_share: float = P.REORDER_SHARE,
                 name_events: bool = P.NAME_EVENTS,
                 merge_share: float = P.MERGE_SHARE,
                 name_share: float | None = P.NAME_SHARE,
                 specs: dict[str, P.TierSpec] | None = None) -> list[tuple[str, str]]:
    """(prompt, completion) pairs, tiers and formats drawn by weight, held-out excluded;
    ``split_share`` of the splittable steps are written worked and ``reorder_share`` of the
    steps/code solutions take a random valid order; ``name_events`` tags step lines with their
    event, ``merge_share`` of plain steps take the next event too and ``name_share`` of the
    plain-steps solutions are named, the rest plain (problems.render)."""
    rng = random.Random(seed)
    stream = P.iter_mixed(seed, TIER_WEIGHTS, specs)
    fmts, fw = zip(*FORMAT_WEIGHTS.items())
    out = []
    while len(out) < n_docs:
        p = next(stream)
        if p.question in heldout_questions:
            continue
        out.append(P.render(p, rng.choices(fmts, fw)[0], rng, split_share, reorder_share,
                            name_events, merge_share, name_share))
    return out


def pack(tokenizer, docs: list[tuple[str, str]], seq: int, *, keep_last: bool = False,
         eos: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pack whole documents into rows of ``seq`` tokens: (rows, seq) inputs and labels, loss on
    completions only. The last, partly filled row is dropped (one row of a 120,000-problem corpus
    is nothing) unless ``keep_last``: of a self-evolution round's few hundred trajectories it can
    be all of them (engine/ppm/finetune.py). ``eos``: the end token's id, else the tokenizer's EOS."""
    eos = tokenizer.convert_tokens_to_ids(EOS) if eos is None else eos
    prompts = tokenizer([d[0] for d in docs], add_special_tokens=False)["input_ids"]
    comps = tokenizer([d[1] for d in docs], add_special_tokens=False)["input_ids"]
    rows_x, rows_y, x, y = [], [], [], []
    for p, c in zip(prompts, comps):
        dx = p + c + [eos]
        dy = [IGNORE] * len(p) + c + [eos]
        if len(dx) > seq:
            continue
        if len(x) + len(dx) > seq:
            rows_x.append(x + [eos] * (seq - len(x)))
            rows_y.append(y + [IGNORE] * (seq - len(y)))
            x, y = [], []
        x += dx
        y += dy
    if keep_last and x:
        rows_x.append(x + [eos] * (seq - len(x)))
        rows_y.append(y + [IGNORE] * (seq - len(y)))
    return (torch.tensor(rows_x, dtype=torch.long).reshape(-1, seq),
            torch.tensor(rows_y, dtype=torch.long).reshape(-1, seq))


def quick_eval(model, tokenizer, problems: list[P.Problem], max_new_tokens: int = 260) -> float:
    """Greedy accuracy on a few held-out problems (plain step format)."""
    from engine.demo_model.formats import question_prompt
    model.eval()
    tokenizer.padding_side = "left"
    correct = 0
    with torch.no_grad():
        for i in range(0, len(problems), 32):
            batch = problems[i:i + 32]
            enc = tokenizer([question_prompt(p.question) for p in batch], return_tensors="pt",
                            padding=True, add_special_tokens=False)
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id)
            texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            correct += sum(answers_equal(extract_answer(t), p.answer) for t, p in zip(texts, batch))
    model.train()
    return correct / len(problems)


def main(argv=None) -> None:
    args = parse_args(argv)
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt_path = args.out / "checkpoint.pt"

    if not HELDOUT.exists():
        HELDOUT.parent.mkdir(parents=True, exist_ok=True)
        P.write_heldout(HELDOUT)
    heldout = P.load_problems(HELDOUT)
    t0 = time.time()
    docs = build_corpus(args.docs, args.seed, {p.question for p in heldout}, args.split_share,
                        args.reorder_share, args.name_events, args.merge_share,
                        args.name_share, tier_specs(args.hard_steps))
    if args.init_from:
        from transformers import AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained(args.init_from)
    else:
        tokenizer = build_tokenizer(d[0] + d[1] for d in docs[:30_000])
    X, Y = pack(tokenizer, docs, args.seq)
    print(f"corpus: {len(docs)} problems -> {X.shape[0]} rows x {args.seq} tokens "
          f"({(Y != IGNORE).sum().item() / 1e6:.1f}M loss tokens), vocab {len(tokenizer)}, "
          f"{time.time() - t0:.0f}s", flush=True)

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=args.d_model,
                         intermediate_size=args.ffn, num_hidden_layers=args.layers,
                         num_attention_heads=args.heads, num_key_value_heads=args.heads,
                         max_position_embeddings=args.seq, rope_theta=10000.0,
                         tie_word_embeddings=True, bos_token_id=tokenizer.eos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM.from_pretrained(args.init_from) if args.init_from else LlamaForCausalLM(config)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.05)
    state = {"step": 0, "elapsed": 0.0, "log": [], "evals": []}
    if args.resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
        torch.set_rng_state(ck["rng"])
        print(f"resumed at step {state['step']} ({state['elapsed'] / 60:.1f} min)", flush=True)
    print(f"model: {n_params / 1e6:.2f}M parameters, {args.threads} thread(s)", flush=True)

    budget = args.minutes * 60
    warmup = 100
    gen = torch.Generator().manual_seed(args.seed * 1000 + state["step"])
    eval_probs = {t: [p for p in heldout if p.tier == t][:48] for t in ("easy", "hard")}
    last_eval = state["elapsed"]
    model.train()
    start = time.time() - state["elapsed"]
    while True:
        elapsed = time.time() - start
        step = state["step"]
        if elapsed >= budget or (args.max_steps and step >= args.max_steps):
            break
        progress = elapsed / budget if not args.max_steps else step / args.max_steps
        lr = args.lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(0, X.shape[0], (args.batch,), generator=gen)
        out = model(input_ids=X[idx], labels=Y[idx])
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state["step"] = step + 1
        if step % 50 == 0:
            state["log"].append({"step": step, "min": round(elapsed / 60, 2), "loss": round(out.loss.item(), 4), "lr": lr})
            print(f"step {step:6d}  {elapsed / 60:6.1f} min  loss {out.loss.item():.4f}  lr {lr:.2e}", flush=True)
        if (time.time() - start) - last_eval >= args.eval_every * 60:
            last_eval = time.time() - start
            accs = {t: quick_eval(model, tokenizer, ps) for t, ps in eval_probs.items()}
            state["evals"].append({"step": step, "min": round(last_eval / 60, 2), **accs})
            print(f"  eval (greedy, 48 held-out each): {accs}", flush=True)
            state["elapsed"] = time.time() - start
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state,
                        "rng": torch.get_rng_state()}, ckpt_path)

    state["elapsed"] = time.time() - start
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state,
                "rng": torch.get_rng_state()}, ckpt_path)
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(args.out, safe_serialization=True)
    tokenizer.save_pretrained(args.out)
    summary = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "parameters": n_params, "steps": state["step"], "minutes": round(state["elapsed"] / 60, 1),
               "tier_weights": TIER_WEIGHTS, "format_weights": FORMAT_WEIGHTS,
               "log": state["log"], "evals": state["evals"]}
    (args.out / "training.json").write_text(json.dumps(summary, indent=1))
    print(f"saved to {args.out} after {state['step']} steps, {state['elapsed'] / 60:.1f} min", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
