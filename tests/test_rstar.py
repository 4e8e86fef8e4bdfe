"""rStar: the legality table, terminal rules, vote rewards, the discriminator's cut points, verdicts
and scores on hand-made trajectories; then real runs on the embedded model (determinism, a run
that reaches its answer, replay from the store, the CLI and eval).

A scripted backend appears only in the tests of pure search logic, where the expected rewards
must be computable by hand; everything else runs the real embedded model."""

from __future__ import annotations

import json
import random

import pytest

from engine import events as E
from engine.models.base import Generation, TokenLogprob
from engine.search import METHODS
from engine.search import rstar as R
from engine.search import rstar_discriminator as D
from engine.store import Store, record
from engine.tree import Tree
from scripted import ScriptBackend

SMALL = dict(rollouts=2, one_step_thoughts=2, subquestions=2, votes=3, final_votes=3, max_depth=4)
HARD_Q = ("Jonas starts with 245 beads. He loses 214 beads. Then Jonas's pile of beads grows to 6 times its size. "
          "He shares the beads equally among 3 children and keeps one share. Jonas is 7 years old. He gives away "
          "15 beads. How many beads does Jonas have now?")
EASY_Q = "Mia has 23 apples. She buys 14 more apples. How many apples does Mia have now?"


# ---- the legality table and terminal rules ----------------------------------------------------

@pytest.mark.parametrize("kind,expected", [
    ("root", ("A1", "A2", "A3", "A5")),
    ("A5", ("A1", "A2", "A3")),          # after a rephrase
    ("A3", ("A1", "A2", "A3", "A4")),    # after a sub-question
    ("A4", ("A1", "A2", "A3")),          # after a re-answered sub-question
    ("A1", ("A1", "A2")),                # after a one-step thought: never a sub-question
    ("A2", ()),                          # a direct answer ends the path
])
def test_legality_table_matches_the_paper(kind, expected):
    assert R.legal_actions(kind) == expected


def test_disabling_a1_and_a5_removes_only_them():
    assert R.legal_actions("root", disable_a1=True, disable_a5=True) == ("A2", "A3")
    assert R.legal_actions("A1", disable_a1=True) == ("A2",)       # a path can always still answer


@pytest.mark.parametrize("subquestion,final", [
    ("Now we can answer the question: How many beads does Jonas have now?", True),
    ("How many beads does Jonas have now?", True),                  # restates the question (official rule 2)
    ("How many beads does Jonas have after losing 214?", False),
    ("How many beads does Jonas have after the pile grows to 6 times its size? The answer is 186.", False),
])
def test_a_subquestion_ends_the_path_only_when_it_answers_the_question(subquestion, final):
    assert R.is_final_subquestion(subquestion, HARD_Q) is final


def test_question_part_is_the_last_sentence():
    assert R.question_part(HARD_Q) == "How many beads does Jonas have now?"
    assert R.question_part("Tom has 3 pens. He buys 2. How many pens?") == "How many pens?"


def test_vote_is_the_majority_share_and_keeps_the_first_majority_text():
    texts = ["Answer 1: 3 + 2 = 6. The answer is 6.", "Answer 1: 3 + 2 = 5. The answer is 5.",
             "Answer 1: 3 + 2 = 5. The answer is 5.", "Answer 1: 3 + 2 =", "Answer 1: 3 + 2 = 5. The answer is 5."]
    answers, maj, share, first = R.vote(texts)
    assert answers == ["6", "5", "5", None, "5"]
    assert (maj, share, first) == ("5", 3 / 5, 1)                   # no-answer completions count in the total
    assert R.vote(["Step 1: 3 + 2 =", "nothing"])[1:3] == (None, 0.0)


# ---- the discriminator's pure parts -----------------------------------------------------------

def test_word_cuts_keep_20_to_50_percent_of_the_words():
    text = "a b c d e f g h i j"                                      # 10 words
    cuts = D.word_cuts(text, 4, 0.2, 0.5)
    assert [(r, k, n) for r, k, n, _ in cuts] == [(0.2, 2, 10), (0.3, 3, 10), (0.4, 4, 10), (0.5, 5, 10)]
    assert [p for *_, p in cuts] == ["a b", "a b c", "a b c d", "a b c d e"]
    # 7 words: ceil(1.4)=2, ceil(2.1)=3, ceil(2.8)=3, ceil(3.5)=4
    assert [k for _, k, _, _ in D.word_cuts("1 2 3 4 5 6 7", 4, 0.2, 0.5)] == [2, 3, 3, 4]
    assert D.word_cuts(text, 1, 0.3, 0.5)[0][:2] == (0.3, 3)         # one cut: at the low end


def test_word_cuts_round_the_product_before_the_ceiling():
    # 6 ratios from 0.1 to 0.2 of 50 words; 50 * 0.14 is 7.000000000000001 in floats, the rule says 7
    text = " ".join(["w"] * 50)
    assert [k for _, k, _, _ in D.word_cuts(text, 6, 0.1, 0.2)] == [5, 6, 7, 8, 9, 10]
    assert D.word_cuts(text, 1, 0.14, 0.14)[0][1] == 7


def test_word_cut_prefix_is_the_start_of_the_trajectory_lines_included():
    text = "Step 1: 6 * 16 = 96\nStep 2: 96 / 2 = 48\nThe answer is 48.\n"
    for _, keep, n, prefix in D.word_cuts(text, 4, 0.2, 0.5):
        assert text.startswith(prefix) and n == len(text.split(" "))


def test_step_cuts_keep_whole_steps_chosen_at_random_with_the_seed():
    text = "Step 1: 6 * 16 = 96\nStep 2: 96 / 2 = 48\nStep 3: 48 - 41 = 7\nThe answer is 7.\n"
    cuts = D.step_cuts(text, 2, random.Random(0))
    keeps = [k for _, k, _, _ in cuts]
    assert keeps == sorted(set(keeps)) and all(1 <= k <= 3 for k in keeps) and len(keeps) == 2
    lines = text.splitlines(keepends=True)
    assert all(prefix == "".join(lines[:k]) and n == 4 for _, k, n, prefix in cuts)
    assert cuts == D.step_cuts(text, 2, random.Random(0))            # seeded
    assert len(D.step_cuts(text, 9, random.Random(1))) == 3           # at most steps - 1 distinct cuts
    assert D.step_cuts("The answer is 7.\n", 4, random.Random(0)) == [(None, 0, 1, "")]


def test_completion_answer_reads_across_a_cut_inside_the_answer_line():
    assert D.completion_answer("Step 1: 3 + 2 = 5\nThe answer is", " 5.\n") == "5"
    assert D.completion_answer("Answer 1: 3 + 2 = 5. The answer", " is 5.\nStep 2: 5 * 2 = 10\nThe answer is 10.") == "10"
    assert D.completion_answer("Step 1: 3 +", " 2 = 5\n") is None


@pytest.mark.parametrize("rule,answers,expected", [
    ("mid", ["5", "5", "6", None], (2, 2, True)),        # half of 4 is enough (official rc_mode mid)
    ("mid", ["5", "6", "6", None], (1, 2, False)),
    ("mid", ["5", "6", "7"], (1, 2, False)),             # half of 3, rounded up
    ("loose", ["6", "6", "5"], (1, 1, True)),
    ("strict", ["5", "5", "6"], (2, 3, False)),
    ("strict", ["5", "5.0"], (2, 2, True)),              # equal after normalising
    ("maj", ["5", "6", "5"], (2, 0, True)),
    ("maj", ["6", "6", "5"], (1, 0, False)),
])
def test_verdicts_on_constructed_completions(rule, answers, expected):
    assert D.verdict(rule, "5", answers) == expected


def _cands():
    rows = [(4, [0, 4], "A", "5", 0.8), (9, [0, 9], "B", "7", 0.9), (4, [0, 4], "A", "5", 0.7),
            (12, [0, 1, 12], "C", "5", 0.4), (15, [0, 15], "D", None, 0.0)]
    return D.collect_candidates(rows)


def test_collect_candidates_merges_equal_trajectories():
    cands = _cands()
    assert [(c.candidate, c.text, c.freq, c.answer) for c in cands] == [
        (0, "A", 2, "5"), (1, "B", 1, "7"), (2, "C", 1, "5"), (3, "D", 1, None)]
    assert cands[0].reward == pytest.approx(1.5)


def test_scores_are_confidence_plus_survival_as_the_official_code():
    cands = _cands()
    # consistent: A (answer 5, freq 2, reward 1.5) and B (7, freq 1, reward 0.9); C (5) is not.
    # confidence among consistent (freq 3): 5 -> 1.5/3 = 0.5, 7 -> 0.9/3 = 0.3
    # survival: 5 -> 2 of 3, 7 -> 1 of 1.  score: 5 -> 1.1667, 7 -> 1.3: B wins on survival.
    rows, winner, reason = D.choose_winner(cands, {0: True, 1: True, 2: False, 3: False})
    assert winner == 1 and "highest score" in reason
    assert rows[0]["confidence"] == pytest.approx(0.5) and rows[0]["survival"] == pytest.approx(2 / 3)
    assert rows[0]["score"] == pytest.approx(0.5 + 2 / 3) and rows[1]["score"] == pytest.approx(1.3)
    assert rows[2]["consistent"] is False and rows[2]["score"] is None
    assert rows[3]["consistent"] is None                               # no answer: never judged
    assert [r["winner"] for r in rows] == [False, True, False, False]


def test_candidates_without_an_answer_count_in_the_generators_confidence():
    # 9 trajectories answering 5 and one with no answer line: the official confidence is 0.9, not 1.0,
    # so the default confident_skip (0.999) does not skip the discriminator
    rows = [(i + 1, [0, i + 1], f"path {i}", "5", 1.0) for i in range(9)] + [(10, [0, 10], "no answer", None, 0.0)]
    cands = D.collect_candidates(rows)
    assert D.answer_confidence(cands, "freq") == pytest.approx({"5": 0.9})
    assert D.answer_confidence(cands, "reward") == pytest.approx({"5": 0.9})
    assert max(D.answer_confidence(cands).values()) < R.RStarConfig().confident_skip
    assert D.answer_confidence([c for c in cands if c.answer is None]) == {}


def test_by_frequency_the_same_candidates_choose_the_other_answer():
    # score_by freq: confidence 5 -> 2/3, 7 -> 1/3; scores 5 -> 4/3, 7 -> 4/3: a tie goes to the first seen
    rows, winner, _ = D.choose_winner(_cands(), {0: True, 1: True, 2: False}, score_by="freq")
    assert rows[0]["score"] == pytest.approx(rows[1]["score"]) and winner == 0


def test_no_consistent_candidate_falls_back_to_the_generators_best():
    # generator confidence over every candidate (freq 5, D has no answer): 5 -> (1.5 + 0.4)/5, 7 -> 0.9/5
    assert D.answer_confidence(_cands()) == pytest.approx({"5": 0.38, "7": 0.18})
    rows, winner, reason = D.choose_winner(_cands(), {0: False, 1: False, 2: False})
    assert winner == 0 and "generator" in reason
    assert D.choose_winner(_cands(), {0: True})[1:] == (0, "the only mutually consistent candidate")


def test_the_gold_fallback_is_an_analysis_toggle_off_by_default():
    consistent = {0: True, 1: True, 2: False}
    assert D.choose_winner(_cands(), consistent, gold="9")[1] == 1                      # off: gold unused
    rows, winner, reason = D.choose_winner(_cands(), consistent, gold="9", gold_fallback=True)
    assert winner == 0 and reason.startswith("ANALYSIS")
    assert D.choose_winner(_cands(), consistent, gold="7", gold_fallback=True)[1] == 1  # a right one is kept


# ---- the search on a scripted backend (pure logic, hand-computed rewards) ---------------------

TOM_Q = "Tom has 3 pens. He buys 2 more. How many pens does Tom have now?"


class ScriptedBackend(ScriptBackend):
    """Answers each action's prompt from a script: a direct answer says 5 in 6 of 10 samples, a
    sub-question's answer says 5 in 7 of 10; the first sampled sub-question is not final, the
    others are; the discriminator agrees only with trajectories without sub-questions."""

    def reply(self, i, p, prompts, sampling, stop, seed):
        j = prompts[:i].count(p) % 10                # which sample of this prompt (groups of 10)
        last = p.rsplit("\n", 1)[-1]
        if sampling.temperature == 1.0:              # the discriminator (its own temperature)
            text = " The answer is 6.\n" if "Sub-question" in p else " The answer is 5.\n"
        elif "\nQuestion:" in stop.strings:          # A2: 6 of 10 say 5
            text = " 3 + 2 = 5\nThe answer is 5.\n" if j < 6 else " 3 + 2 = 4\nThe answer is 4.\n"
        elif last.startswith("Step"):
            text = " 3 + 2 = 5\n"
        elif last.startswith("Sub-question"):
            text = (" How many pens does Tom buy?\n" if i == 0 else
                    " Now we can answer the question: How many pens does Tom have now?\n")
        elif last.startswith("Answer") and "Now we can" in p:    # 7 of 10 say 5
            text = " 3 + 2 = 5. The answer is 5.\n" if j < 7 else " 3 + 2 = 6. The answer is 6.\n"
        elif last.startswith("Answer"):
            text = " Tom buys 2. The answer is 2.\n"
        elif last.startswith("Rephrased"):
            text = (" Condition 1: Tom has 3 pens. Condition 2: He buys 2 more. "
                    "Question: How many pens does Tom have now?\n")
        else:
            raise AssertionError(f"unexpected prompt {p!r}")
        return Generation(text, (TokenLogprob(0, text, -0.25),), "stop", None, 10)


def _scripted_run(**overrides):
    cfg = R.RStarConfig(**{**dict(rollouts=6, votes=4, final_votes=10, max_depth=3), **overrides})
    return list(R.run(TOM_Q, ScriptedBackend(), config=cfg, seed=3, gold="5"))


def test_every_expansion_creates_all_legal_actions_and_only_those():
    tree = Tree.fold(_scripted_run())
    expanded = [n for n in tree.nodes if n.children]
    assert expanded
    for n in expanded:
        kids = [tree[c].action for c in n.children]
        assert tuple(dict.fromkeys(kids)) == R.legal_actions(n.action)
    root_kids = [tree[c].action for c in tree[E.ROOT].children]
    assert root_kids == ["A1"] * 3 + ["A2"] + ["A3"] * 3 + ["A5"]      # defaults: 3 thoughts, 3 sub-questions


def test_terminal_rules_and_vote_rewards_by_hand():
    events = _scripted_run()
    tree = Tree.fold(events)
    for n in tree.nodes[1:]:
        final_sq = n.action == "A3" and "Now we can answer" in n.text
        # a sub-answer says "The answer is 5." too, but only the final sub-question ends the path
        assert n.terminal == (n.action == "A2" or final_sq or n.depth >= 3), (n.id, n.action, n.text)
        if n.action == "A3":
            assert len(n.votes.answers) == (10 if final_sq else 4)     # final_votes for the last sub-question
    rewards = [ev for ev in events if isinstance(ev, E.TerminalReward)]
    assert len(rewards) == 6
    for ev in rewards:
        leaf = tree[ev.node]
        final_sq = leaf.action == "A3" and "Now we can" in leaf.text
        expected = 0.6 if leaf.action == "A2" else 0.7 if final_sq else 0.0     # else: the depth limit
        assert ev.reward == pytest.approx(expected), (leaf.action, leaf.text)
        if expected:
            assert ev.detail["share"] == round(expected * 10) and ev.detail["of"] == 10


def test_re_answer_replaces_the_answer_it_follows_in_the_trajectory():
    tree = Tree.fold(_scripted_run(rollouts=12, max_depth=4))
    a4 = [n for n in tree.nodes if n.action == "A4"]
    assert a4
    for n in a4:
        parent = tree[n.parent]
        assert parent.action == "A3" and n.text.startswith("Answer 1:")
        text = R.trace_text(tree, n.id)
        assert text == parent.text.split("\n")[0] + "\n" + n.text      # the old answer line is gone


def test_discriminator_verdicts_decide_between_candidates():
    events = _scripted_run(rollouts=8)
    tree = Tree.fold(events)
    assert tree.candidates is not None and tree.candidate_table is not None
    for cand in tree.candidates.candidates:
        d = tree.discriminator[cand["candidate"]]
        if cand["answer"] is None:
            assert d["verdict"] is None
            continue
        assert len(d["cuts"]) == 4 and len(d["completions"]) == 4
        text = R.trace_text(tree, cand["node"])
        # the scripted discriminator reaches 5 only from prefixes without a sub-question
        agree = sum(c.agrees for c in d["completions"])
        assert agree == sum(1 for cut in d["cuts"] if "Sub-question" not in cut.prefix) * (cand["answer"] == "5")
        assert all(text.startswith(cut.prefix) for cut in d["cuts"])
        assert d["verdict"].consistent == (agree >= 2)
    win = tree.candidate_table.winner
    assert win is not None and tree.discriminator[win]["verdict"].consistent
    final = tree.final
    assert final.rule == "discriminator" and final.path == tree.candidates.candidates[win]["path"]


def test_without_the_discriminator_the_generator_answers():
    tree = Tree.fold(_scripted_run(discriminate=False))
    assert tree.final.rule == "generator" and "discriminator" not in tree.final.alternatives
    assert tree.candidates.skipped and tree.discriminator and all(
        d["verdict"] is None for d in tree.discriminator.values())
    assert tree.final.answer == tree.candidates.generator_answer == "5"


def test_a_confident_generator_skips_the_discriminator_as_the_official_script():
    tree = Tree.fold(_scripted_run(confident_skip=0.0))        # any confidence is "above" 0
    assert "confident" in tree.candidates.skipped
    assert all(d["verdict"] is None and not d["cuts"] for d in tree.discriminator.values())
    assert tree.final.answer == tree.candidates.generator_answer and "confident" in tree.candidate_table.reason


def test_the_gold_fallback_skips_a_problem_without_a_right_candidate_only_when_asked():
    wrong_gold = R.RStarConfig(rollouts=4, votes=4, max_depth=3, gold_fallback=True)
    tree = Tree.fold(R.run(TOM_Q, ScriptedBackend(), config=wrong_gold, seed=3, gold="9"))
    assert tree.candidates.skipped.startswith("ANALYSIS") and tree.final.answer is None
    assert tree.candidate_table.winner is None and tree.final.correct is False
    plain = Tree.fold(R.run(TOM_Q, ScriptedBackend(), config=R.RStarConfig(rollouts=4, votes=4, max_depth=3),
                            seed=3, gold="9"))
    assert not plain.candidates.skipped and plain.final.answer == "5"    # off: the answer key is not used


@pytest.mark.parametrize("field,value", [("rollouts", 0), ("c", -1.0), ("max_depth", 0), ("votes", 0),
                                         ("cut_mode", "sentences"), ("cut_low", 0.0), ("cut_high", 0.1),
                                         ("consistency", "some"), ("discriminate", "yes"), ("cuts", 0),
                                         ("disc_temperature", -1.0), ("score_by", "vibes")])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        R.RStarConfig(**{field: value})


# ---- the real embedded model ------------------------------------------------------------------

def test_same_seed_same_events_on_the_embedded_model(default_backend):
    cfg = R.RStarConfig(**SMALL)
    a = [e.dumps() for e in R.run(EASY_Q, default_backend, config=cfg, seed=5, gold="37")]
    b = [e.dumps() for e in R.run(EASY_Q, default_backend, config=cfg, seed=5, gold="37")]
    assert a == b
    c = [e.dumps() for e in R.run(EASY_Q, default_backend, config=cfg, seed=6, gold="37")]
    assert a != c


def test_a_real_run_reaches_a_final_answer_with_every_action(default_backend, tmp_path):
    cfg = R.RStarConfig(rollouts=4, one_step_thoughts=2, subquestions=2, votes=4, final_votes=4)
    store = Store(tmp_path / "runs.db")
    sid = store.create_session(method="rstar", model=default_backend.info.name, question=HARD_Q, gold="47",
                               config=cfg.to_json(), seed=0)
    tree = record(store, sid, R.run(HARD_Q, default_backend, config=cfg, seed=0, gold="47"))
    assert tree.final is not None and tree.finished.status == "done"
    assert tree.final.answer is not None and tree.final.rule == "discriminator"
    actions = {n.action for n in tree.nodes}
    assert {"A1", "A2", "A3", "A4", "A5"} <= actions
    rephrase = next(n for n in tree.nodes if n.action == "A5")
    assert rephrase.text.startswith("Rephrased: Condition 1:") and "Question:" in rephrase.text
    for n in tree.nodes:
        if n.action == "A3":
            sq, answer = n.text.rstrip("\n").split("\n")
            k = R.next_number(tree, n.parent)
            assert sq.startswith(f"Sub-question {k}:") and answer.startswith(f"Answer {k}:")
    assert tree.candidate_table.rows and len(tree.final.path) >= 2
    # the stored run replays to the same tree
    replayed = Tree.fold(store.events(sid))
    assert [e.dumps() for e in store.events(sid)][-1] == tree.finished.dumps()
    assert replayed.candidate_table == tree.candidate_table and len(replayed) == len(tree)
    store.close()


def test_stop_keeps_a_stopped_run_with_an_answer_rule(default_backend):
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 6

    events = list(R.run(EASY_Q, default_backend, config=R.RStarConfig(**SMALL), seed=0, should_stop=stop))
    tree = Tree.fold(events)
    assert tree.finished.status == "stopped" and tree.final is not None and tree.final.rule == "generator"


def test_rstar_is_a_method_with_cli_run_and_eval(default_backend, tmp_path, capsys):
    from engine.cli import main
    from engine.evaluation.evaluate import EVAL_METHODS, run_eval
    assert "rstar" in METHODS and "rstar" in EVAL_METHODS
    db = tmp_path / "cli.db"
    rc = main(["run", "rstar", "--question", EASY_Q, "--answer", "37", "--db", str(db), "--rollouts", "1",
               "--votes", "2", "--final-votes", "2", "--cut-mode", "steps", "--discriminate", "true", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["method"] == "rstar" and out["status"] == "done" and out["nodes"] > 1
    assert main(["run", "rstar", "--question", EASY_Q, "--db", str(db), "--discriminate", "maybe"]) == 2
    summary = run_eval(default_backend, "rstar", "easy", 2, 0, R.RStarConfig(**SMALL))
    assert 0 <= summary["discriminator_agreement"] <= 1
    assert set(summary["discriminator_changed"]) == {"changed", "better", "worse"}
    assert set(summary["accuracy_by_rule"]) == {"generator", "majority", "discriminator"}
    assert summary["generator_tokens"] < summary["generated_tokens"]
