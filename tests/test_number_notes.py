"""Numbers a student would stumble on are explained where they appear (issue 24 part 5), in
English and Chinese: semantic entropy's four estimators (the 2023 one below zero when every
sample agrees), UCT's explore term, Q in the node inspector, LECO's scores, min-p's threshold.

The numbers a note quotes are checked against the estimators themselves, on the recorded runs
in sample_runs/ and on hand-made clusterings.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from app import i18n
from app import number_notes as N
from engine import events as E
from engine.scoring.semantic_entropy import ESTIMATORS, entropies

SAMPLES = Path(__file__).resolve().parents[1] / "sample_runs"
CJK = re.compile(r"[\u4e00-\u9fff]")


def _events(name: str) -> list[E.Event]:
    return [E.from_json(d) for d in json.loads((SAMPLES / f"{name}.json").read_text())["events"]]


def test_the_2023_estimator_is_minus_ln_n_when_all_agree_and_its_note_says_so():
    # ten samples, one cluster, each answer certain (log-likelihood 0)
    values = entropies([0] * 10, [0.0] * 10)
    assert values["mc2023"] == pytest.approx(-math.log(10), abs=1e-12)        # −2.303, below zero
    assert values["discrete"] == pytest.approx(0.0, abs=1e-12) and values["rao"] == pytest.approx(0.0, abs=1e-12)
    note = N.entropy_note("mc2023", 10)
    assert f"−ln 10 = −{math.log(10):.3f}" in note and "below 0" in note
    assert f"ln 10 = {math.log(10):.3f} = all different" in N.entropy_note("discrete", 10)
    # ten different answers: the discrete estimator is ln 10, as its note says
    assert entropies(list(range(10)), [0.0] * 10)["discrete"] == pytest.approx(math.log(10), abs=1e-12)
    with pytest.raises(ValueError, match="estimator must be one of"):
        N.entropy_note("nope", 10)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_semantic_entropy_table_explains_each_estimator_beside_its_value(lang):
    from app.se_tab import fold, numbers_markdown
    events = _events("lesson-sugar-heldout-hard-0023-sugar")
    with i18n.using(lang):
        md = numbers_markdown(fold(events, "strict"), "mc2023")
        notes = {e: N.entropy_note(e, 10) for e in ESTIMATORS}
    ent = next(ev for ev in events if isinstance(ev, E.EntropyMeasured) and ev.mode == "strict")
    assert ent.mc2023 < 0                                                        # the number to explain
    for e in ESTIMATORS:
        row = next(line for line in md.splitlines() if f"| {getattr(ent, e):.3f} |" in line)
        assert notes[e] in row                                                   # beside its own value
    if lang == "zh":
        assert CJK.search(notes["mc2023"]) and "−2.303" in notes["mc2023"] and "含义" in md


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_uct_q_leco_and_min_p_have_their_line(lang):
    from app.inspector import inspect_node
    from app.leco_tab import summary_markdown
    from app.replay import explain
    from engine.tree import Tree
    mcts = _events("mcts-fixes-greedy-heldout-hard-0023-mcts")
    k = next(i for i, ev in enumerate(mcts) if isinstance(ev, E.Selected) and ev.rule == "uct") + 1
    with i18n.using(lang):
        words = explain(Tree.fold(mcts[:k]), mcts[k - 1])
        assert words.endswith(N.explore_note())
        # an unvisited-first selection has no explore term to explain
        first = next(i for i, ev in enumerate(mcts) if isinstance(ev, E.Selected)) + 1
        assert N.explore_note() not in explain(Tree.fold(mcts[:first]), mcts[first - 1])
        inspector = inspect_node({"events": mcts}, 1, len(mcts))
        assert N.q_note("self_consistency") in inspector
        assert "0 to 1" in N.q_note("self_consistency") or "0 到 1" in N.q_note("self_consistency")
        assert "−1" in N.q_note("gold")
        leco = _events("leco-fixes-error-heldout-hard-0061-leco")
        assert N.leco_note() in summary_markdown(leco)
        note = N.min_p_note(0.1, 0.734)
        assert "0.1 × 0.734" in note
        if lang == "zh":
            for line in (N.explore_note(), N.q_note(None), N.leco_note(), note):
                assert CJK.search(line), line


def test_the_sampling_lab_position_line_quotes_its_threshold(default_backend):
    from app.sampling_tab import position_markdown
    from engine.sampling_lab import LabConfig, position_view
    cfg = LabConfig(temperature=1.0, min_p=0.1, top_p=0.9, top_k=20)
    prompt = default_backend.render_prompt("What is 2 + 3?")
    drawn = default_backend.encode(" Step")[:1]
    logits = default_backend.continuation_logits(prompt, drawn)[0]
    view = position_view(logits, drawn[0], cfg, default_backend.token_text)
    md = position_markdown(view, cfg)
    # the note beside the threshold quotes the same p_max the threshold is made of
    assert f"0.1 × {view.p_max:.3f}" in md and f"{view.threshold:.4f}" in md
    assert view.threshold == pytest.approx(0.1 * view.p_max, rel=1e-6)
