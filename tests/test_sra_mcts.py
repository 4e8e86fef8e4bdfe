"""SRA-MCTS: self-evaluation and reflection parsing (malformed outputs fall back clearly), the
UCB variant, value blending, the visit-weighted backup, reflection-guided proposals, the early
stop (at any node, with a summary, or only at an answer), merged duplicate proposals, and
replay.

Search-logic tests use `SRAScriptBackend`, a stand-in that answers the three prompt kinds
(reflection, step, score) from a script (allowed for search logic only).
"""

from __future__ import annotations

import math
import random
import re

import pytest

from engine import events as E
from engine.search.sra_mcts import SRAConfig, _ucb, parse_reflection, parse_score, run
from engine.tree import Tree
from scripted import ScriptBackend, word_generation

QUESTION = "Mia has 23 apples. She buys 14 more. How many apples does she have?"


class SRAScriptBackend(ScriptBackend):
    def __init__(self, score=lambda step: " 8", reflection=" add the apples", first=None):
        super().__init__()
        self.score, self.reflection, self.first = score, reflection, first
        self.temperatures: list[tuple[str, float]] = []

    def reply(self, i, prompt, prompts, sampling, stop, seed):
        rng = random.Random(f"{seed}:{i}")
        self.temperatures.append((prompt, sampling.temperature))
        if prompt.endswith("Analysis:"):
            text = self.reflection
        elif prompt.endswith("Score:"):
            text = self.score(prompt.rsplit("\n", 2)[-2])
        else:
            depth = len(re.findall(r"^Step \d+:.*\n", prompt, flags=re.M))
            first = self.first() if self.first else f" v{rng.randint(1, 3)}\n"
            text = first if depth < 1 else f" The answer is {rng.choice(['37', '36'])}.\n"
        return word_generation(text, prompt, lambda j: -0.1 * (j + 1))


@pytest.mark.parametrize("raw, expected", [
    ("Score: 7", (7.0, True)),
    ("The step is fine. score：9", (9.0, True)),
    (" 7", (7.0, True)),                     # the model continued after our "Score:"
    ("7/10", (7.0, True)),
    ("6.5.", (6.0, True)),                   # the integer digits, as the official code reads them
    ("Score: 7.9", (7.0, True)),
    ("score: 9.99 out of 10", (9.0, True)),
    ("Score: 42", (10.0, True)),             # clamped to [0, 10] as the official code (the inspector says so)
    ("226", (10.0, True)),
    ("Score: 85%", (8.0, True)),             # a percentage, read on the 0-10 scale (it was a fallback 5)
    (" 100%", (10.0, True)),
    ("Score: 85/100", (8.0, True)),
    ("", (5.0, False)),                      # the official code's fallback, marked unparsed
    (None, (5.0, False)),
    ("ten out of ten", (5.0, False)),
    (" 961 - 87", (5.0, False)),             # arithmetic, not a score
    ("Score: -3", (5.0, False)),
    ("Score:", (5.0, False)),
    ("\x00\ufffd\n\n", (5.0, False)),
    (b"Score: 7", (5.0, False)),             # not text at all
])
def test_self_evaluation_parsing_falls_back_clearly(raw, expected):
    assert parse_score(raw) == expected


def test_reflection_parsing():
    assert parse_reflection(" <end>") == ("<end>", True)
    assert parse_reflection("The problem is solved.") == ("<end>", True)
    assert parse_reflection("Analysis: add the two numbers\nthen stop") == ("add the two numbers", False)
    assert parse_reflection("\n  first line \nsecond") == ("first line", False)
    assert parse_reflection(None) == ("", False)


def test_the_sra_ucb_variant_worked_by_hand():
    # V + c * sqrt(2 ln N_parent / N): 6 + 0.5 * sqrt(2 ln 5 / 2) = 6 + 0.5 * 1.268636 = 6.634318
    explore, ucb = _ucb(6.0, 2, 5, 0.5, 8.0)
    assert explore == pytest.approx(0.634318, abs=1e-6) and ucb == pytest.approx(6.634318, abs=1e-6)
    assert _ucb(3.0, 0, 5, 0.5, 8.0) == (8.0, 11.0)        # unvisited: V + inf bonus


def test_reflection_comes_before_expansion_and_guides_the_children():
    backend = SRAScriptBackend(reflection=" add 14 to 23")
    events = list(run(QUESTION, backend, config=SRAConfig(rollouts=3), seed=0, gold="37"))
    first_reflect = next(i for i, ev in enumerate(events) if isinstance(ev, E.Reflected) and ev.node == 0)
    first_expand = next(i for i, ev in enumerate(events) if isinstance(ev, E.Expanded) and ev.node == 0)
    assert first_reflect < first_expand
    step_prompts = [p for p in backend.prompts if p.endswith("Step 1:")]
    assert step_prompts and all("Analysis: add 14 to 23\nStep 1:" in p for p in step_prompts)
    # only the first step is seeded with its prefix: later, the model may write the answer line
    assert not any(re.search(r"Step [2-9]\d*:$", p) for p in backend.prompts)
    assert any(p.endswith("Analysis: add 14 to 23\n") for p in backend.prompts)
    tree = Tree.fold(events)
    assert tree[0].reflection == "add 14 to 23"
    assert all(tree[c].self_eval == {"score": 8.0, "parsed": True, "raw": " 8", "source": "prompt"}
               for c in tree[0].children)


def test_value_blending_and_the_visit_weighted_backup():
    scores = {"v1": " 9", "v2": " 3", "v3": " 6"}
    backend = SRAScriptBackend(score=lambda step: next((s for k, s in scores.items() if k in step), " 4"))
    cfg = SRAConfig(rollouts=4, alpha=0.5)
    events = list(run(QUESTION, backend, config=cfg, seed=1, gold="37"))
    rollouts = [ev for ev in events if isinstance(ev, E.SraRollout)]
    assert rollouts
    for r in rollouts:   # V <- (1 - alpha) V + alpha * best
        assert r.value_after == pytest.approx((1 - cfg.alpha) * r.value_before + cfg.alpha * r.best, abs=1e-6)
        assert r.best == max(r.scores + [0.0]) or not r.scores
    tree = Tree.fold(events)
    kids = [tree[c] for c in tree[0].children if tree[c].visits]
    # the root's V (= 10 Q) is the visit-weighted mean of its children's V
    mean = sum(10 * k.q * k.visits for k in kids) / sum(k.visits for k in kids)
    assert 10 * tree[0].q == pytest.approx(mean, abs=1e-4)
    assert sum(ev.rule == "sra_ucb" for ev in events if isinstance(ev, E.Selected)) >= 1


def test_malformed_self_evaluations_do_not_crash_the_search():
    garbage = iter(["", "\x00", "Score: banana", " 961 - 87", "NaN", "Score: 1e999999"] * 50)
    backend = SRAScriptBackend(score=lambda step: next(garbage))
    events = list(run(QUESTION, backend, config=SRAConfig(rollouts=3), seed=0, gold="37"))
    evals = [ev for ev in events if isinstance(ev, E.SelfEvaluated)]
    assert evals and all(0 <= ev.score <= 10 for ev in evals)
    assert sum(not ev.parsed for ev in evals) >= len(evals) // 2
    assert all(ev.score == 5.0 for ev in evals if not ev.parsed)
    assert Tree.fold(events).finished.status == "done"


def test_a_good_enough_answer_ends_the_search_early():
    backend = SRAScriptBackend(score=lambda step: " 10")
    events = list(run(QUESTION, backend, config=SRAConfig(rollouts=30, children=1), seed=0, gold="37"))
    iterations = [ev for ev in events if isinstance(ev, E.IterationStarted)]
    tree = Tree.fold(events)
    assert len(iterations) < 30 and tree.final.answer in ("36", "37")
    assert tree[tree.final.path[-1]].terminal and tree.final.rule == "highest_value"


def test_any_node_reaching_end_gate_ends_the_search_and_a_greedy_summary_writes_the_answer():
    backend = SRAScriptBackend(score=lambda step: " 10")
    events = list(run(QUESTION, backend, config=SRAConfig(rollouts=30, children=1), seed=0, gold="37"))
    tree = Tree.fold(events)
    # iteration 1 expands the root (its one child scores 10); iteration 2 selects that child,
    # a step without an answer, and stops there, as the official isTerminal does (V >= 8.8)
    assert sum(isinstance(ev, E.IterationStarted) for ev in events) == 2
    summary = tree[tree.final.path[-1]]
    stopped = tree[summary.parent]
    assert summary.action == "summary" and summary.terminal and summary.visits == 0
    assert not stopped.terminal and stopped.answer is None and stopped.parent == 0
    assert tree.final.answer == summary.answer in ("36", "37")
    assert summary.correct == (summary.answer == "37") and tree.final.correct == summary.correct
    # the summary is one greedy completion of the solution from the stopped node
    prompt, temperature = backend.temperatures[-1]
    assert prompt == tree[0].text + tree.path_text(stopped.id) and temperature == 0.0
    assert [E.loads(ev.dumps()) for ev in events] == events


def test_early_stop_answered_keeps_the_earlier_rule():
    backend = SRAScriptBackend(score=lambda step: " 10")
    events = list(run(QUESTION, backend, config=SRAConfig(rollouts=30, children=1, early_stop="answered"), seed=0,
                      gold="37"))
    tree = Tree.fold(events)
    assert sum(isinstance(ev, E.IterationStarted) for ev in events) > 2
    assert not any(n.action == "summary" for n in tree.nodes)
    last = tree[tree.final.path[-1]]
    assert last.action == "step" and last.terminal and last.answer == tree.final.answer
    with pytest.raises(ValueError, match=r"early_stop must be one of \('any', 'answered'\), got 'never'"):
        SRAConfig(early_stop="never")


def test_a_repeated_proposal_is_merged_into_its_earlier_sibling():
    # every first step the model proposes reads "Step 1: v1" (once with a trailing space)
    texts = iter([" v1\n", " v1 \n", " v1\n"] * 20)
    backend = SRAScriptBackend(first=lambda: next(texts))
    events = list(run(QUESTION, backend, config=SRAConfig(rollouts=1, children=3), seed=0, gold="37"))
    tree = Tree.fold(events)
    expanded = next(ev for ev in events if isinstance(ev, E.Expanded) and ev.node == 0)
    assert len(expanded.children) == 1 and tree[0].children == expanded.children
    # the merged proposals are not scored either
    assert sum(isinstance(ev, E.SelfEvaluated) for ev in events) == 1
    assert sum(bool(re.search(r"Step 1:[^\n]*\nScore:$", p)) for p in backend.prompts) == 1


def test_confidence_self_evaluation_is_ten_times_the_mean_token_probability():
    events = list(run(QUESTION, SRAScriptBackend(), config=SRAConfig(rollouts=1, self_eval="confidence"), seed=0))
    tree = Tree.fold(events)
    for c in tree[0].children:
        assert tree[c].self_eval["score"] == pytest.approx(10 * math.exp(tree[c].prior), abs=1e-3)
        assert tree[c].self_eval["source"] == "confidence"


def test_events_replay_from_json_and_config_validates():
    events = list(run(QUESTION, SRAScriptBackend(), config=SRAConfig(rollouts=3), seed=0, gold="37"))
    assert [E.loads(ev.dumps()) for ev in events] == events
    live, replay = Tree.fold(events), Tree.fold(E.loads(ev.dumps()) for ev in events)
    assert [(n.reflection, n.self_eval, n.rollout) for n in live.nodes] == \
        [(n.reflection, n.self_eval, n.rollout) for n in replay.nodes]
    with pytest.raises(ValueError, match="alpha must be a number from 0 to 1, got 2"):
        SRAConfig(alpha=2)
    with pytest.raises(ValueError, match="self_eval must be one of"):
        SRAConfig(self_eval="vibes")


def test_simple_reflection_only_ends_paths_and_does_not_guide_children():
    backend = SRAScriptBackend(reflection=" add 14 to 23")
    events = list(run(QUESTION, backend, config=SRAConfig(rollouts=3, reflection="simple"), seed=0, gold="37"))
    assert not any("Analysis: add 14" in p for p in backend.prompts if not p.endswith("Analysis:"))
    assert f"Question: {QUESTION}\nAnalysis:" not in backend.prompts    # the root is not reflected on
    root = next(ev for ev in events if isinstance(ev, E.Reflected) and ev.node == 0)
    assert (root.text, root.raw) == ("<continue>", "")          # the first step is never asked about
    assert Tree.fold(events)[0].reflection == "<continue>"
