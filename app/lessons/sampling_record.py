"""The min-p lesson's recorded distributions: ``python -m app.lessons.sampling_record``.

The lesson "min-p against top-p as temperature rises" needs a model's whole next-token
distribution, which a stored search run does not keep (only each token's top five
alternatives). So this records, once, from the embedded model (greedy, deterministic) on the
MCTS lessons' problem: the generation's token ids, and the raw logits of two positions — the
digit where the model was least sure (highest entropy) and the digit where it was most sure — with
the vocabulary's token texts. app/lessons/content/sampling.json is the result; the lesson then
views those logits at any temperature through engine/sampling_lab.py, instantly, with no
model. tests/test_lessons.py re-records it and compares (floats within 1e-4), as the golden
runs do for sample_runs/.

Not here: the views (engine/sampling_lab.py), the figure (app/sampling_figures.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.lessons import catalogue as C

OUT = C.CONTENT / "sampling.json"
MAX_NEW_TOKENS = 160
DIGITS = 4              # logits rounded to this many decimals (one step is the golden tolerance, 1e-4)


def record(backend) -> dict:
    from engine.evaluation.evaluate import SOLUTION_STOP
    from engine.sampling_lab import LabConfig, run_lab
    question = C.run_events(C.MCTS_RUN)[0].question
    prompt = backend.render_prompt(question)
    run = run_lab(backend, prompt, draw="greedy", cfg=LabConfig(), seed=0, max_new_tokens=MAX_NEW_TOKENS,
                  stop=SOLUTION_STOP)
    # digits of the arithmetic: where the model is sure or unsure of a result that matters
    digits = [p for p in run.positions if p.drawn.strip().isdigit()]
    ranked = sorted(digits, key=lambda p: (p.entropy_model, -p.position))
    picks = {"unsure": ranked[-1], "sure": ranked[0]}
    ids = run.generation.token_ids
    return {"model": backend.info.name, "question": question, "token_ids": list(ids),
            "text": run.generation.text,
            "positions": {name: {"position": p.position, "token_id": ids[p.position],
                                 "before": backend.token_text(ids[p.position - 1]) if p.position else "",
                                 "logits": [round(float(x), DIGITS) for x in run.logits[p.position]]}
                          for name, p in picks.items()},
            "vocab": [backend.token_text(i) for i in range(backend.info.vocab_size)]}


def main(argv=None) -> int:
    from engine.models.registry import DEFAULT_MODEL, load_backend
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    data = record(load_backend(args.model))
    args.out.write_text(json.dumps(data, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
