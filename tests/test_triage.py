"""Failure triage (engine/triage.py) on hand-built trees, and `thoughtscope triage` on a tmp database."""

import json

import pytest

from engine import events as E
from engine import triage as T
from engine.store import Store, record
from engine.tree import Tree


def run_events(gold, final, alternatives, terminals, rule="majority", steps=None):
    """A root, optional inner steps, then one terminal per (text, answer, visits, value, reward)
    row, and the FinalAnswer. ``steps``: texts of a chain of inner nodes under the root; the
    terminals hang under the last of them. The final path ends at the first terminal."""
    evs = [E.RunStarted(method="mcts", question="Q", prompt="Q\n", gold=gold, config={}, seed=0, model="m"),
           E.NodeProposed(node=0, parent=-1, depth=0, action="root", text="Q\n")]
    parent, ids = 0, iter(range(1, 10**6))
    for depth, text in enumerate(steps or [], start=1):
        nid = next(ids)
        evs.append(E.NodeProposed(node=nid, parent=parent, depth=depth, action="step", text=text))
        parent = nid
    depth, first = len(steps or []) + 1, None
    for text, answer, visits, value, reward in terminals:
        nid = next(ids)
        first = nid if first is None else first
        evs.append(E.NodeProposed(node=nid, parent=parent, depth=depth, action="rollout", text=text,
                                  terminal=True, answer=answer))
        if reward is not None:
            evs.append(E.TerminalReward(node=nid, reward=reward, source="gold"))
        if visits:
            evs.append(E.Backprop(path=[nid], reward=value, before=[[0, 0.0]], after=[[visits, value]]))
    path = Tree.fold(evs).path_to(first) if first is not None else [0]
    evs.append(E.FinalAnswer(answer=final, rule=rule, path=path, alternatives=alternatives))
    return evs


def tree_of(*args, **kw):
    return Tree.fold(run_events(*args, **kw))


def test_the_gold_answer_on_no_terminal_is_never_reached():
    tree = tree_of("7", "9", {"majority": "9", "most_visited": "8"}, [
        ("The answer is 9.", "9", 3, 1.0, None),      # the chosen, wrong answer
        ("The answer is 8.", "8", 1, 0.0, None),      # another wrong answer: gold 7 nowhere
    ])
    r = T.triage(tree)
    assert (r.status, r.klass) == ("wrong", "never_reached")
    assert r.gold_terminals == () and r.rules_for_gold == () and r.scores_for_gold == ()


def test_reached_but_not_chosen_names_the_rules_and_scores_that_would_have_chosen_it():
    tree = tree_of("7", "9", {"majority": "9", "most_visited": "7.0", "highest_q": "9"}, [
        ("The answer is 9.", "9", 1, 1.0, 0.2),       # chosen by majority (2 terminals), Q 1.0
        ("The answer is 9.", "9", 1, 0.0, 0.1),       # its second terminal
        ("The answer is 7.", "7", 5, 2.5, 0.9),       # gold: most visits (5), highest reward (0.9), Q 0.5
    ])
    r = T.triage(tree)
    assert (r.status, r.klass) == ("wrong", "reached_not_chosen")
    ids = [n.id for n in tree.terminals()]
    assert r.gold_terminals == (ids[2],)
    assert r.rules_for_gold == ("most_visited",)      # "7.0" equals gold 7 by value
    assert set(r.scores_for_gold) == {"most_visits", "highest_reward"}
    assert r.scores["majority"] == "9" and r.scores["highest_q"] == "9"
    assert "most_visited" in r.reason and "majority chose 9" in r.reason


def test_no_answer_stated_is_its_own_class_even_when_gold_was_reached():
    tree = tree_of("7", None, {"majority": None}, [
        ("Tom has 5.", None, 0, 0.0, None),           # the chosen terminal states nothing
        ("The answer is 7.", "7", 0, 0.0, None),      # gold reached elsewhere: still no_answer
    ])
    r = T.triage(tree)
    assert (r.status, r.klass) == ("wrong", "no_answer")
    assert len(r.gold_terminals) == 1


def test_right_runs_and_runs_without_gold_or_final_are_not_triaged():
    right = T.triage(tree_of("7", "7.00", {"majority": "7.00"}, [("The answer is 7.00.", "7.00", 1, 1.0, None)]))
    no_gold = T.triage(tree_of(None, "9", {"majority": "9"}, [("The answer is 9.", "9", 1, 1.0, None)]))
    unfinished = T.triage(Tree.fold(run_events("7", "9", {}, [("The answer is 9.", "9", 1, 1.0, None)])[:-1]))
    assert (right.status, right.klass) == ("right", None)            # "7.00" = "7" by value
    assert (no_gold.status, no_gold.klass) == ("no_gold", None)
    assert (unfinished.status, unfinished.klass) == ("unfinished", None)
    for r in (right, no_gold, unfinished):
        assert r.reason.startswith("not triaged")


def test_a_tree_without_a_run_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="run_started"):
        T.triage(Tree())


def test_answer_tally_groups_equal_answers_and_sums_visits():
    tree = tree_of("7", "9", {}, [
        ("The answer is 7.", "7", 2, 1.0, None),      # 7: Q 0.5
        ("The answer is 9.", "9", 1, 0.0, None),      # 9: one terminal, Q 0
        ("The answer is 7.0.", "7.0", 1, 1.0, None),  # 7 again by value: Q 1.0
        ("Tom has 5.", None, 0, 0.0, None),           # no answer: a row of its own
    ])
    ids = [n.id for n in tree.terminals()]
    rows = T.answer_tally(tree)
    assert [r.answer for r in rows] == ["7", "9", None]
    seven = rows[0]
    assert seven.terminals == (ids[0], ids[2]) and seven.visits == 3
    assert seven.best_q == 1.0 and seven.mean_q == pytest.approx(0.75) and seven.correct is True
    assert rows[1].correct is False and rows[2].correct is False and rows[2].best_reward is None


def test_scores_without_data_choose_nothing():
    # a sampling run: no visits, no rewards; only the majority score applies
    rows = T.answer_tally(tree_of("7", "9", {}, [("The answer is 9.", "9", 0, 0.0, None),
                                                 ("The answer is 7.", "7", 0, 0.0, None),
                                                 ("The answer is 9.", "9", 0, 0.0, None)]))
    assert T.score_choices(rows) == {"most_visits": None, "highest_q": None, "majority": "9",
                                     "highest_reward": None}


def test_first_wrong_step_is_the_first_false_claim_on_the_chosen_path():
    tree = tree_of("37", "38", {"majority": "38"}, [("45 - 8 = 38.\nThe answer is 38.", "38", 1, 0.0, None)],
                   steps=["Tom has 45 apples.",          # claims nothing
                          "He buys 5: 40 + 5 = 45.",     # right
                          "(40 + 5) * 1 = 45 then."])    # right, merged
    r = T.triage(tree)
    leaf = tree.terminals()[0].id
    assert r.step_check == "claims"
    assert r.first_wrong == T.WrongStep(node=leaf, step="45 - 8 = 38.", claimed=38, true="37")
    out = json.loads(json.dumps(r.to_json()))        # the CLI's --json: plain JSON, the node to jump to
    assert out["first_wrong_node"] == leaf and out["first_wrong"]["claimed"] == 38


def test_claim_error_rows():
    assert T.claim_error("45 - 8 = 37") is None                          # right
    assert T.claim_error("45 - 8 = 38") == (38, "37")                    # wrong by one
    assert T.claim_error("7 / 2 = 3") == (3, "7/2")                      # division is exact
    assert T.claim_error("7 / 0 = 0") == (0, "undefined")                # no division by zero
    assert T.claim_error("298 - 230 + 40 = 108") is None                 # merged, read left to right
    assert T.claim_error("478 + 356 = 478 + 300 + 56 = 834") is None     # a worked chain: its last number
    assert T.claim_error("Tom has 5 apples.") is None                    # no claim


def test_no_check_applies_where_the_path_claims_nothing():
    r = T.triage(tree_of("7", "9", {"majority": "9"}, [("So it is nine. The answer is 9.", "9", 1, 0.0, None)]))
    assert r.step_check is None and r.first_wrong is None


def test_class_counts_over_several_runs_add_up_to_the_wrong_runs():
    trees = [
        tree_of("7", "9", {"majority": "9"}, [("The answer is 9.", "9", 1, 0.0, None)]),            # never reached
        tree_of("7", "9", {"majority": "9"}, [("The answer is 9.", "9", 1, 0.0, None),
                                              ("The answer is 7.", "7", 1, 1.0, None)]),            # reached
        tree_of("7", None, {}, [("Tom.", None, 0, 0.0, None)]),                                    # no answer
        tree_of("7", "9", {}, [("The answer is 9.", "9", 0, 0.0, None)]),                          # never reached
        tree_of("7", "7", {}, [("The answer is 7.", "7", 0, 0.0, None)]),                          # right
        tree_of(None, "7", {}, [("The answer is 7.", "7", 0, 0.0, None)]),                         # no gold
    ]
    s = T.summarize(T.triage(t) for t in trees)
    assert s["status"] == {"right": 1, "wrong": 4, "no_gold": 1, "unfinished": 0}
    assert s["classes"] == {"never_reached": 2, "reached_not_chosen": 1, "no_answer": 1}
    assert sum(s["classes"].values()) == s["status"]["wrong"] and s["runs"] == 6


def _store_run(store, gold, final, terminals, method="mcts"):
    evs = run_events(gold, final, {"majority": final}, terminals)
    evs[0] = E.RunStarted(method=method, question="Q", prompt="Q\n", gold=gold, config={}, seed=0, model="m")
    sid = store.create_session(method=method, model="m", question="Q", gold=gold, config={}, seed=0)
    record(store, sid, evs + [E.RunFinished(status="done")])
    return sid


def test_cli_triages_one_session_and_every_session(tmp_path, capsys):
    from engine.cli import main
    db = str(tmp_path / "runs.db")
    with Store(db) as store:
        wrong = _store_run(store, "7", "9", [("The answer is 9.", "9", 1, 0.0, None),
                                             ("The answer is 7.", "7", 1, 1.0, None)])      # reached, not chosen
        _store_run(store, "7", "7", [("The answer is 7.", "7", 1, 1.0, None)])              # right
        _store_run(store, "7", None, [("Tom.", None, 0, 0.0, None)], method="greedy")       # no answer
    assert main(["triage", "--session", wrong[:6], "--db", db, "--json"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["runs"][0]["class"] == "reached_not_chosen" and one["runs"][0]["session_id"] == wrong
    assert main(["triage", "--all", "--db", db, "--json"]) == 0
    every = json.loads(capsys.readouterr().out)
    assert every["summary"]["classes"] == {"never_reached": 0, "reached_not_chosen": 1, "no_answer": 1}
    assert every["summary"]["status"]["right"] == 1
    assert main(["triage", "--all", "--method", "greedy", "--db", db]) == 0
    text = capsys.readouterr().out
    assert "no_answer 1" in text and "reached_not_chosen 0" in text
    # bad input: one line, exit 2
    assert main(["triage", "--session", "nope", "--db", db]) == 2
    assert main(["triage", "--session", wrong, "--method", "mcts", "--db", db]) == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert len(err) == 2 and "--method" in err[1]


def test_the_reason_is_a_code_with_fields_and_the_cli_says_it_in_the_environment_language(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path
    db = str(tmp_path / "runs.db")
    with Store(db) as store:
        wrong = _store_run(store, "7", "9", [("The answer is 9.", "9", 1, 0.0, None),
                                             ("The answer is 7.", "7", 1, 1.0, None)])      # reached, not chosen
        r = T.triage(store.tree(wrong))
    assert r.why.code == "reached_not_chosen_1" and r.why.fields["gold"] == "7"
    assert r.reason == ("1 terminal reached the gold answer 7; majority chose 9; would have chosen it: "
                        "scores highest_q") == json.loads(json.dumps(r.to_json()))["reason"]
    env = {k: v for k, v in os.environ.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")}
    out = subprocess.run([sys.executable, "-m", "engine.cli", "triage", "--session", wrong, "--db", db],
                         cwd=Path(__file__).resolve().parents[1], env={**env, "LANG": "zh_CN.UTF-8"},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "有 1 个终止节点得到了标准答案 7；majority 选了 9；本会选中它的：评分 highest_q" in out.stdout
    assert out.stdout.startswith("1 次运行：right 0, wrong 1")


def test_eval_results_carry_their_class_and_the_summary_adds_up_to_the_wrong_ones():
    from engine.demo_model.problems import Problem
    from engine.evaluation.evaluate import triage_summary, triaged_result
    p = Problem(id="p", tier="easy", question="Q", answer=7, steps=())
    runs = [
        run_events("7", "9", {"majority": "9"}, [("The answer is 9.", "9", 1, 0.0, None)]),              # never
        run_events("7", "9", {"majority": "9"}, [("The answer is 9.", "9", 1, 0.0, None),
                                                 ("The answer is 7.", "7", 1, 1.0, None)]),              # reached
        run_events("7", "7", {"majority": "7"}, [("The answer is 7.", "7", 1, 1.0, None)]),              # right
        run_events("7", "9", {}, [("The answer is 9.", "9", 1, 0.0, None)])[:-1],                       # no final
    ]
    results = [triaged_result(p, iter(evs)) for evs in runs]
    assert [r.triage for r in results] == ["never_reached", "reached_not_chosen", "right", "unfinished"]
    s = triage_summary(results)
    assert s == {"classes": {"never_reached": 1, "reached_not_chosen": 1, "no_answer": 0}, "unfinished": 1}
    assert sum(s["classes"].values()) + s["unfinished"] == sum(not r.correct for r in results)
