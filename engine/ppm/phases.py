"""The four phases of a self-evolution round (engine/ppm/evolve.py runs them in order).

Each phase reads what the phases before it left in ``<out>/round-r/`` and ends by writing its
own files there and then recording itself as finished in the round's row
(`EvolutionStore.finish_phase`), so a phase cut off by a crash is simply run again:

- ``collect``: problems.jsonl, pairs.jsonl, trajectories.jsonl, sft.jsonl (the fine-tuning
  documents: the policy's root prompt and the path's steps), collect.json;
- ``finetune``: policy/ (engine/ppm/finetune.py);
- ``ppm``: ppm/ (engine/ppm/train.py), its pairwise accuracy on the held-back problems' pairs;
- ``eval``: eval-greedy.json, eval-sc.json, eval-mcts.json (run_eval's summaries, per-problem rows
  included).

Not here: the loop, the run's settings and resuming (evolve.py); MCTS, pairs, PPM training.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.demo_model.problems import Problem

# evolve --code: the search of docs/ppm.md's second method, for collection and evaluation alike —
# claim-checked code MCTS whose failed steps are resampled (twice at most) and never walked into
CODE_SEARCH = {"check": "runs_and_claim", "resample": 2, "drop_failed": True}
SFT_PER_PROBLEM = 2          # verified trajectories a problem gives the policy (rStar-Math: top 2 by Q)
PPM_BATCH = 16               # engine/ppm/train.py's default, named here because the bar needs the step count
# each phase's progress label, in English with named fields: the caller's ``say`` (str.format, or
# the CLI's `_t`, which looks the template up in app/locales/zh.json) fills it in its language
LABELS = {"collect": "round {round} collect", "finetune": "round {round} fine-tune", "ppm": "round {round} PPM",
          "eval": "round {round} eval {method}"}


def _write_jsonl(path: Path, rows) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def split_problems(problems: list[Problem], val_share: float) -> tuple[list[Problem], list[Problem]]:
    """(train, validation): the last ``val_share`` of the problems (at least one) hold out their
    pairs, so the PPM's pairwise accuracy is measured on problems it never trained on."""
    k = max(1, round(len(problems) * val_share))
    return problems[:-k], problems[-k:]


def sft_documents(trajectories, root_prompt, per_problem: int = SFT_PER_PROBLEM) -> list[tuple[str, str]]:
    """(prompt, completion) documents: the first ``per_problem`` distinct right paths of each
    problem, the prompt written by the policy's format (``root_prompt(question)``)."""
    seen: dict[str, int] = {}
    out = []
    for t in trajectories:
        if seen.get(t.problem_id, 0) >= per_problem:
            continue
        seen[t.problem_id] = seen.get(t.problem_id, 0) + 1
        out.append((root_prompt(t.question), "".join(t.steps)))
    return out


def collect_phase(run, rnd: int, problems: list[Problem], load_backend, progress, say=str.format) -> None:
    """MCTS with round r-1's policy and PPM on the round's problems, gold-terminal-guided."""
    from dataclasses import asdict
    from engine.formats import format_of
    from engine.ppm.data import collect_pairs, write_pairs
    cfg = run.config
    folder = run.round_dir(rnd)
    folder.mkdir(parents=True, exist_ok=True)
    backend = load_backend(run.policy(rnd - 1))
    ppm = run.ppm_of(rnd - 1)
    seed = cfg.seed * 1_000_000 + rnd * 10_000
    k = min(cfg.examples, len(problems))
    code_opts = CODE_SEARCH if cfg.code else {}
    with progress(say(LABELS["collect"], round=rnd), len(problems), "problem") as bar:
        # the first few trees are kept as sessions (the round's examples); same seeds as one call
        kept = collect_pairs(backend, problems[:k], rollouts=cfg.rollouts, seed=seed, ppm=ppm, code=cfg.code, **code_opts,
                             progress=bar.update, store=run.store) if k else None
        rest = collect_pairs(backend, problems[k:], rollouts=cfg.rollouts, seed=seed + k, ppm=ppm, code=cfg.code, **code_opts,
                             progress=bar.update)
    pairs = (kept.pairs if kept else []) + rest.pairs
    trajs = (kept.trajectories if kept else []) + rest.trajectories
    fmt = format_of(backend)
    if cfg.code:        # code trajectories continue the code prompt they were written after
        from engine.method_prompts import code_prompt
        docs = sft_documents(trajs, lambda q: code_prompt(fmt, backend, q))
    else:
        docs = sft_documents(trajs, lambda q: fmt.root_prompt(backend, q))
    _write_jsonl(folder / "problems.jsonl", [asdict(p) for p in problems])
    write_pairs(folder / "pairs.jsonl", pairs)
    _write_jsonl(folder / "trajectories.jsonl", [t.to_json() for t in trajs])
    _write_jsonl(folder / "sft.jsonl", [{"prompt": p, "completion": c} for p, c in docs])
    summary = {key: (kept.summary.get(key, 0) if kept else 0) + rest.summary.get(key, 0)
               for key in ("pairs", "q_value_pairs", "hard_negative_pairs", "trajectories", "problems_solved")}
    summary.update(problems=len(problems), rollouts=cfg.rollouts, ppm=ppm, sft_documents=len(docs),
                   code=cfg.code)
    (folder / "collect.json").write_text(json.dumps(summary, indent=1))
    run.evo.finish_phase(run.run_id, rnd, "collect", pairs=len(pairs), trajectories=len(trajs),
                         example_sessions=kept.session_ids if kept else [], metrics={"collect": summary})


def finetune_phase(run, rnd: int, progress, say=str.format) -> None:
    """The policy continues from round r-1's on this round's verified trajectories."""
    import dataclasses
    from engine.ppm.finetune import finetune_policy, planned_steps
    folder = run.round_dir(rnd)
    docs = [(d["prompt"], d["completion"]) for d in _read_jsonl(folder / "sft.jsonl")]
    if not docs:
        # nothing verified to learn from: the round keeps the policy it started with, and says so
        run.evo.finish_phase(run.run_id, rnd, "finetune", policy_path=run.policy(rnd - 1),
                             metrics={"finetune": {"skipped": "no verified trajectory: the policy is kept"}})
        return
    ft_cfg = dataclasses.replace(run.config.finetune, seed=run.config.seed * 1000 + rnd)
    with progress(say(LABELS["finetune"], round=rnd), planned_steps(docs, run.policy(rnd - 1), ft_cfg), "step") as bar:
        summary = finetune_policy(docs, init_from=run.policy(rnd - 1), out=folder / "policy", config=ft_cfg,
                                  progress=bar.update)
    run.evo.finish_phase(run.run_id, rnd, "finetune", policy_path=str(folder / "policy"),
                         metrics={"finetune": {k: v for k, v in summary.items() if k != "log"}})


def ppm_phase(run, rnd: int, problems: list[Problem], progress, say=str.format) -> None:
    """The next PPM from the new policy, trained on the pairs of the training share of the
    problems; its pairwise accuracy on the pairs of the held-back share."""
    import math
    from engine.ppm.data import read_pairs
    from engine.ppm import text_format
    from engine.ppm.train import train_ppm
    folder = run.round_dir(rnd)
    pairs = read_pairs(folder / "pairs.jsonl")
    train_ps, val_ps = split_problems(problems, run.config.ppm_val_share)
    val_questions = {p.question for p in val_ps}
    # a pair's prompt starts with the root prompt, which holds the question
    is_val = [any(q in x.prompt for q in val_questions) for x in pairs]
    train_pairs = [x for x, v in zip(pairs, is_val) if not v]
    val_pairs = [x for x, v in zip(pairs, is_val) if v]
    if len(train_pairs) < run.config.ppm_min_pairs:
        # too few pairs to learn from (a PPM trained on one pair scores every step about the same):
        # the round keeps the PPM it started with (or none), and says so
        run.evo.finish_phase(run.run_id, rnd, "ppm", ppm_path=run.ppm_of(rnd - 1),
                             metrics={"ppm": {"skipped": f"{len(train_pairs)} preference pairs on the training "
                                                         f"problems, fewer than {run.config.ppm_min_pairs}: the PPM is kept",
                                              "train_pairs": len(train_pairs), "val_pairs": len(val_pairs)}})
        return
    epochs, batch, frozen = run.config.ppm_epochs, PPM_BATCH, run.config.ppm_freeze_body
    # train.py calls progress once a step, or once an epoch with a frozen body
    with progress(say(LABELS["ppm"], round=rnd), epochs if frozen else epochs * math.ceil(len(train_pairs) / batch),
                  "epoch" if frozen else "step") as bar:
        metrics = train_ppm(train_pairs, init_from=run.policy(rnd), out=folder / "ppm", held_out=val_pairs,
                            epochs=epochs, lr=run.config.ppm_lr, batch_size=batch, seed=run.config.seed * 1000 + rnd,
                            threads=run.config.finetune.threads, progress=bar.update, freeze_body=frozen,
                            head_hidden=run.config.ppm_head_hidden,
                            data_info={"round": rnd, "run_id": run.run_id, "train_problems": len(train_ps),
                                       "text_format": text_format(train_pairs),
                                       "held_out_problems": len(val_ps)})
    acc = metrics.get("held_out_accuracy")
    run.evo.finish_phase(run.run_id, rnd, "ppm", ppm_path=str(folder / "ppm"), ppm_pairwise_accuracy=acc,
                         metrics={"ppm": {"train_pairs": len(train_pairs), "val_pairs": len(val_pairs),
                                          "val_problems": len(val_ps), "pairwise_accuracy_val": acc,
                                          "train": _small(metrics)}})


def _small(metrics) -> dict:
    """The training metrics without per-step logs (those stay in the PPM folder's ppm.json)."""
    if not isinstance(metrics, dict):
        return {"value": metrics}
    return {k: v for k, v in metrics.items() if not isinstance(v, list)}


def eval_phase(run, rnd: int, load_backend, progress, say=str.format) -> None:
    """Greedy, self-consistency and MCTS (with the round's PPM where there is one) on held-out
    problems; the same problems and seeds every round, so rounds differ only by their weights."""
    from engine.evaluation.evaluate import EvalConfig, run_eval
    from engine.search import METHODS
    cfg = run.config
    folder = run.round_dir(rnd)
    folder.mkdir(parents=True, exist_ok=True)
    backend = load_backend(run.policy(rnd))
    ppm = run.ppm_of(rnd)
    # with a PPM, rStar-Math's inference: PPM-started Q, PPM terminal reward, the answer of the path it
    # scores highest; without one (round 0, no --ppm) the default reward, which needs no answer key
    # with --code the PPM was trained on code-format pairs: it guides the same claim-checked code MCTS
    search, extra = ("mcts-code", CODE_SEARCH) if cfg.code else ("mcts", {})
    mcts_cfg = METHODS[search].config(rollouts=cfg.eval_rollouts, reward="ppm", ppm=str(ppm), final_rule="ppm",
                                      **extra) if ppm else METHODS[search].config(rollouts=cfg.eval_rollouts, **extra)
    reward = "ppm" if ppm else mcts_cfg.reward
    out = {}
    for method, mcfg in (("greedy", EvalConfig()), ("sc", EvalConfig(samples=cfg.sc_samples)), ("mcts", mcts_cfg)):
        with progress(say(LABELS["eval"], round=rnd, method=method), cfg.eval_n, "problem") as bar:
            summary = run_eval(backend, search if method == "mcts" else method, cfg.eval_tier, cfg.eval_n, cfg.seed, mcfg, progress=bar.update)
        (folder / f"eval-{method}.json").write_text(json.dumps(summary, indent=1))
        out[method] = {k: v for k, v in summary.items() if k != "results"}
    run.evo.finish_phase(run.run_id, rnd, "eval", greedy_accuracy=out["greedy"]["accuracy"],
                         sc_accuracy=out["sc"]["accuracy"], mcts_accuracy=out["mcts"]["accuracy"],
                         mcts_reward=reward, eval_n=cfg.eval_n, metrics={"eval": out})
