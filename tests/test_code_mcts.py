"""Code-verified MCTS: step parsing, cumulative execution in the real sandbox, the failure
threshold, the claim check, and a run of the embedded model.

Search-logic tests use `CodeScriptBackend`, a stand-in that writes code steps from a script
(allowed for search logic only); every program it writes runs in the real sandbox.
"""

from __future__ import annotations

import re

import pytest

from engine import events as E
from engine.search import METHODS
from engine.search.code_mcts import (CodeMCTSConfig, CodeVerifier, cumulative_program, parse_code_step, run)
from engine.tree import Tree
from scripted import ScriptBackend, word_generation

QUESTION = "Mia has 6 packs of 16 cards. She gives half away. How many cards does Mia have?"


class CodeScriptBackend(ScriptBackend):
    """Writes ``script[depth]`` at each depth (depth = steps already on the path)."""

    def __init__(self, script: list[str]):
        super().__init__()
        self.script = script

    def reply(self, i, prompt, prompts, sampling, stop, seed):
        depth = len(re.findall(r"^Step \d+:", prompt, flags=re.M)) - (1 if prompt.endswith("Step 1:") else 0)
        text = self.script[min(depth, len(self.script) - 1)]
        if prompt.endswith("Step 1:"):
            text = text.removeprefix("Step 1:")
        return word_generation(text, prompt)


GOOD = ["Step 1: x1 = 6 * 16  # 6 * 16 = 96\n", "Step 2: x2 = x1 // 2  # 96 / 2 = 48\n", "The answer is 48.\n"]


def test_a_code_step_is_parsed_into_code_target_and_claim():
    p = parse_code_step("Step 2: x2 = x1 // 2  # 96 / 2 = 48\n")
    assert (p.code, p.target, p.claim) == ("x2 = x1 // 2", "x2", "48")
    assert parse_code_step("Step 3: x3 = x2 - 41\n").claim is None           # no comment: no claim
    assert parse_code_step("Step 3: 48 - 41 = 7\n").target is None           # not an assignment
    assert parse_code_step("Mia has cards.\n").code is None                  # no code at all
    assert parse_code_step("Step 4:   # only a comment\n").code is None


def test_each_step_runs_together_with_the_earlier_steps_code():
    backend = CodeScriptBackend(GOOD)
    events = list(run(QUESTION, backend, config=CodeMCTSConfig(rollouts=1, children=1), seed=0))
    code = [ev for ev in events if isinstance(ev, E.CodeExecuted)]
    assert [c.program for c in code] == ["x1 = 6 * 16\nprint(x1)\n", "x1 = 6 * 16\nx2 = x1 // 2\nprint(x2)\n"]
    assert [(c.status, c.value, c.claim, c.claim_ok, c.passed) for c in code] == [
        ("ok", "96", "96", True, True), ("ok", "48", "48", True, True)]
    # step 2's code alone would fail (x1 is undefined): only the cumulative program makes it run
    assert "NameError" in CodeVerifier(CodeMCTSConfig()).run_code("x2 = x1 // 2\nprint(x2)\n").output
    assert backend.prompts[0] == f"Question: {QUESTION}\nCode:\nStep 1:"       # the code-augmented prompt
    tree = Tree.fold(events)
    assert tree.final.answer == "48" and tree[2].code["program"].startswith("x1 = 6 * 16\n")


def test_code_events_survive_json_and_fold_into_the_node():
    events = list(run(QUESTION, CodeScriptBackend(GOOD), config=CodeMCTSConfig(rollouts=1, children=1), seed=0))
    replayed = Tree.fold(E.loads(ev.dumps()) for ev in events)
    live = Tree.fold(events)
    assert [n.code for n in replayed.nodes] == [n.code for n in live.nodes]
    assert replayed[1].code["passed"] is True and replayed[1].code["isolation"]


BROKEN = ["Step 1: x1 = y0 * 16  # 6 * 16 = 96\n", "Step 2: x2 = x1 // 2  # 96 / 2 = 48\n",
          "Step 3: x3 = x2 + 1  # 48 + 1 = 49\n", "The answer is 49.\n"]


def test_one_failing_step_ends_the_branch_with_reward_minus_one():
    events = list(run(QUESTION, CodeScriptBackend(BROKEN), config=CodeMCTSConfig(rollouts=2, children=2), seed=0))
    tree = Tree.fold(events)
    kids = tree[0].children
    assert all(tree[k].terminal and not tree[k].code["passed"] and tree[k].code["ends_branch"] for k in kids)
    assert "NameError" in tree[kids[0]].code["output"] and tree[kids[0]].code["status"] == "error"
    rewards = [ev for ev in events if isinstance(ev, E.TerminalReward)]
    assert [(r.reward, r.source) for r in rewards] == [(-1.0, "code_failure")] * 2
    assert len(tree) == 3                                          # nothing grows below a failed step


def test_the_failure_threshold_counts_consecutive_failures():
    cfg = CodeMCTSConfig(rollouts=1, children=1, max_failures=2)
    tree = Tree.fold(run(QUESTION, CodeScriptBackend(BROKEN), config=cfg, seed=0))
    # step 1 fails (failures 1, goes on), step 2 refers to x1 which never ran: fails again -> ends
    assert [(tree[n].code["failures"], tree[n].code["ends_branch"], tree[n].terminal) for n in (1, 2)] == [
        (1, False, False), (2, True, True)]
    assert tree[2].code["program"] == "x2 = x1 // 2\nprint(x2)\n"      # failing code left out of later programs
    assert tree[2].reward == -1.0
    # a passing step resets the count
    recover = ["Step 1: x1 = y0 * 16  # 6 * 16 = 96\n", "Step 2: x2 = 96 // 2  # 96 / 2 = 48\n",
               "Step 3: x3 = x2 + z  # 48 + 1 = 49\n", "The answer is 49.\n"]
    tree = Tree.fold(run(QUESTION, CodeScriptBackend(recover), config=cfg, seed=0))
    assert [tree[n].code["failures"] for n in (1, 2, 3)] == [1, 0, 1]
    assert tree[4].answer == "49" and tree[4].code is None          # the answer step carries no code


def test_the_claim_check_fails_a_step_whose_comment_disagrees_with_its_code():
    wrong = ["Step 1: x1 = 6 * 16  # 6 * 16 = 98\n", "The answer is 98.\n"]
    runs = Tree.fold(run(QUESTION, CodeScriptBackend(wrong), config=CodeMCTSConfig(rollouts=1, children=1), seed=0))
    assert runs[1].code["passed"] and runs[1].code["claim_ok"] is False      # "runs": the code ran, that is enough
    strict = Tree.fold(run(QUESTION, CodeScriptBackend(wrong),
                           config=CodeMCTSConfig(rollouts=1, children=1, check="runs_and_claim"), seed=0))
    assert not strict[1].code["passed"] and strict[1].terminal and strict[1].reward == -1.0


def test_config_validates_with_a_message_naming_the_field():
    with pytest.raises(ValueError, match="max_failures must be from 1 to 64, got 0"):
        CodeMCTSConfig(max_failures=0)
    with pytest.raises(ValueError, match="check must be one of"):
        CodeMCTSConfig(check="vibes")
    assert METHODS["mcts-code"].config is CodeMCTSConfig


def test_cumulative_program_prints_the_assigned_variable():
    assert cumulative_program(["x1 = 2"], "x2 = x1 * 3", "x2") == "x1 = 2\nx2 = x1 * 3\nprint(x2)\n"
    assert cumulative_program([], "print(5)", None) == "print(5)\n"


def test_the_embedded_model_writes_code_that_runs(default_backend):
    from engine.demo_model.problems import load_problems
    from engine.evaluation.evaluate import HELDOUT
    p = load_problems(HELDOUT, "hard")[0]
    cfg = CodeMCTSConfig(rollouts=2, children=2)
    events = list(run(p.question, default_backend, config=cfg, seed=0, gold=str(p.answer)))
    code = [ev for ev in events if isinstance(ev, E.CodeExecuted)]
    assert code and sum(c.passed for c in code) >= len(code) // 2
    assert [ev.dumps() for ev in run(p.question, default_backend, config=cfg, seed=0, gold=str(p.answer))] == \
        [ev.dumps() for ev in events]                                  # same seed, same events


class SlipFirstBackend(CodeScriptBackend):
    """The first ``slips`` batches write a step whose comment claims the wrong result (as the
    embedded model's arithmetic slips do); later batches write the script's step."""

    def __init__(self, script: list[str], slips: int):
        super().__init__(script)
        self.slips, self.batches = slips, 0

    def reply(self, i, prompt, prompts, sampling, stop, seed):
        if i == 0:
            self.batches += 1
        if self.batches <= self.slips:
            text = " x1 = 6 * 16  # 6 * 16 = 98\n" if prompt.endswith("Step 1:") else "Step 2: x2 = x1 // 2  # 96 / 2 = 47\n"
            return word_generation(text, prompt)
        return super().reply(i, prompt, prompts, sampling, stop, seed)


def test_resample_replaces_the_failed_steps_of_an_expansion_with_new_samples():
    cfg = dict(rollouts=1, children=2, check="runs_and_claim")
    plain = Tree.fold(run(QUESTION, SlipFirstBackend(GOOD, slips=1), config=CodeMCTSConfig(**cfg), seed=0))
    assert [plain[k].code["passed"] for k in plain[0].children] == [False, False]
    assert plain.final.answer is None                                  # every branch ended at the slip
    events = list(run(QUESTION, SlipFirstBackend(GOOD, slips=1), config=CodeMCTSConfig(**cfg, resample=1), seed=0))
    tree = Tree.fold(events)
    # the two failed steps stay in the tree (visible, reward -1 if walked into), two new samples join them
    assert [tree[k].code["passed"] for k in tree[0].children] == [False, False, True, True]
    root_expanded = next(ev for ev in events if isinstance(ev, E.Expanded) and ev.node == 0)
    assert root_expanded.children == tree[0].children
    # resampling stops after `resample` extra batches even when they fail too
    capped = Tree.fold(run(QUESTION, SlipFirstBackend(GOOD, slips=5), config=CodeMCTSConfig(**cfg, resample=2), seed=0))
    assert len(capped[0].children) == 6 and not any(capped[k].code["passed"] for k in capped[0].children)


def test_drop_failed_never_walks_into_a_failed_step_while_a_sibling_passed():
    cfg = CodeMCTSConfig(rollouts=4, children=2, check="runs_and_claim", resample=1, drop_failed=True)
    events = list(run(QUESTION, SlipFirstBackend(GOOD, slips=1), config=cfg, seed=0))
    tree = Tree.fold(events)
    failed = {k for k in tree[0].children if not tree[k].code["passed"]}
    assert len(failed) == 2
    for sel in (ev for ev in events if isinstance(ev, E.Selected) and ev.node == 0):
        assert sel.chosen not in failed and not failed & {r["node"] for r in sel.candidates}
    assert not [ev for ev in events if isinstance(ev, E.TerminalReward) and ev.source == "code_failure"]
    assert tree.final.answer == "48"
    # without drop_failed the same search spends rollouts on the failed steps
    loose = list(run(QUESTION, SlipFirstBackend(GOOD, slips=1),
                     config=CodeMCTSConfig(rollouts=4, children=2, check="runs_and_claim", resample=1), seed=0))
    assert [ev for ev in loose if isinstance(ev, E.TerminalReward) and ev.source == "code_failure"]


def test_resample_and_drop_failed_validate_with_a_message_naming_the_field():
    with pytest.raises(ValueError, match="resample must be from 0 to 16, got 17"):
        CodeMCTSConfig(resample=17)
    with pytest.raises(ValueError, match="drop_failed must be true or false"):
        CodeMCTSConfig(drop_failed="yes")
    # off by default: earlier mcts-code runs keep their config JSON and their events
    assert CodeMCTSConfig().resample == 0 and CodeMCTSConfig().drop_failed is False
    assert "resample" not in CodeMCTSConfig().to_json() and CodeMCTSConfig(resample=2).to_json()["resample"] == 2
