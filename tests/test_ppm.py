"""The process preference model (engine/ppm/): its head and loss on a tiny real Llama, the saved
folder, PPM-guided MCTS and its events, bad --ppm paths, and the training data's problems."""

import json
import math

import pytest

from engine import events as E
from engine.pairs import Pair
from engine.tree import Tree

QUESTION = "Mia has 12 apples. She buys 5 more. How many apples does Mia have now?"


def _pair(chosen: str, rejected: str, sid: str = "p0") -> Pair:
    return Pair(prompt=f"Question: {QUESTION}\n", chosen=chosen, rejected=rejected, q_chosen=0.8, q_rejected=-0.6,
                parent=0, chosen_node=1, rejected_node=2, session_id=sid)


@pytest.fixture(scope="module")
def tiny_ppm_dir(tiny_llama_dir, tmp_path_factory):
    """A PPM trained on one pair from the tiny random Llama (so its head is not zero)."""
    import torch
    from engine.ppm.train import train_ppm
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ppm")
    pairs = [_pair("Step 1: 12 + 5 = 17\n", "Step 1: 12 + 5 = 18\n", sid=f"p{i}") for i in range(4)]
    train_ppm(pairs, init_from=str(tiny_llama_dir), out=out, epochs=20, lr=3e-3, batch_size=4, seed=0,
              held_out=pairs[:1])
    return out


def test_the_ppm_starts_from_the_policy_and_scores_zero_with_its_zero_head(tiny_llama_dir):
    import torch
    from transformers import AutoModelForCausalLM
    from engine.ppm.model import ProcessPreferenceModel
    ppm = ProcessPreferenceModel.from_policy(str(tiny_llama_dir))
    policy = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    # the body's weights are the policy's own (rStar-Math initialises the PPM from the policy)
    for k, v in policy.model.state_dict().items():
        assert torch.equal(ppm.body.state_dict()[k], v), k
    assert ppm.score(QUESTION, ["Step 1: 12 + 5 = 17\n"]) == 0.0
    # the text scored is the policy's prompt: its root prompt, then the steps as written
    assert ppm.prompt(QUESTION, ["Step 1: 12 + 5 = 17\n"]) == f"Question: {QUESTION}\nStep 1: 12 + 5 = 17\n"


def test_bradley_terry_training_lowers_the_loss_and_orders_its_pair(tiny_llama_dir, tmp_path):
    import torch
    from engine.ppm.model import ProcessPreferenceModel
    from engine.ppm.train import pair_loss, train_ppm
    torch.set_num_threads(1)
    pairs = [_pair("Step 1: 12 + 5 = 17\n", "Step 1: 12 + 5 = 18\n", sid=f"p{i}") for i in range(4)]
    before = ProcessPreferenceModel.from_policy(str(tiny_llama_dir))
    loss0, _ = pair_loss(before, pairs)
    assert math.isclose(float(loss0.detach()), math.log(2), abs_tol=1e-6)    # zero head: both scores 0, loss ln 2
    metrics = train_ppm(pairs, init_from=str(tiny_llama_dir), out=tmp_path / "ppm", epochs=20, lr=3e-3,
                        batch_size=4, seed=0, held_out=pairs[:1])
    after = ProcessPreferenceModel.load(tmp_path / "ppm")
    loss1, margin = pair_loss(after, pairs)
    assert float(loss1.detach()) < float(loss0.detach()) - 0.05
    assert (margin > 0).all()
    assert after.score(QUESTION, ["Step 1: 12 + 5 = 17\n"]) > after.score(QUESTION, ["Step 1: 12 + 5 = 18\n"])
    assert metrics["train_accuracy"] == 1.0 and metrics["held_out_accuracy"] == 1.0
    meta = json.loads((tmp_path / "ppm" / "ppm.json").read_text())
    assert meta["training"]["loss"] == "bradley_terry" and len(meta["log"]) == 20
    assert meta["metrics"]["final_epoch_loss"] < meta["metrics"]["first_batch_loss"]


def test_save_and_load_give_the_same_scores(tiny_ppm_dir, tmp_path):
    from engine.ppm.model import ProcessPreferenceModel
    ppm = ProcessPreferenceModel.load(tiny_ppm_dir)
    paths = [["Step 1: 12 + 5 = 17\n"], ["Step 1: 12 + 5 = 17\n", "The answer is 17.\n"], []]
    want = ppm.score_many(QUESTION, paths)
    assert all(-1 < s < 1 for s in want) and len(set(want)) == 3
    ppm.save(tmp_path / "again")
    got = ProcessPreferenceModel.load(tmp_path / "again").score_many(QUESTION, paths)
    assert max(abs(a - b) for a, b in zip(want, got)) < 1e-5
    # batched and one at a time agree (right padding reads each row's own last token)
    assert max(abs(ppm.score(QUESTION, p) - w) for p, w in zip(paths, want)) < 1e-5
    for name in ("config.json", "model.safetensors", "tokenizer.json", "ppm.json"):
        assert (tmp_path / "again" / name).is_file()


def test_mcts_with_the_ppm_reward_scores_every_step_and_rewards_terminals_with_it(tiny_backend, tiny_ppm_dir):
    from engine.search.mcts import MCTSConfig, run
    cfg = MCTSConfig(rollouts=3, children=2, max_depth=3, reward="ppm", ppm=str(tiny_ppm_dir), final_rule="ppm")
    events = list(run(QUESTION, tiny_backend, config=cfg, seed=0))
    tree = Tree.fold(events)
    scored = {e.node: e for e in events if isinstance(e, E.StepScored)}
    assert set(scored) == {n.id for n in tree.nodes if n.id != E.ROOT}       # every proposed step, once
    assert all(e.q_init and e.source == "ppm" and -1 < e.score < 1 for e in scored.values())
    for r in (e for e in events if isinstance(e, E.TerminalReward)):
        want = scored[r.node].score if r.answer is not None else -1.0
        assert r.source == "ppm" and r.reward == want
    # Q starts from the PPM score as one pseudo-visit
    n = next(n for n in tree.nodes if n.id != E.ROOT and n.visits)
    assert math.isclose(n.q, (scored[n.id].score + n.value) / (n.visits + 1), abs_tol=1e-9)
    assert tree.final.rule == "ppm" and "ppm" in tree.final.alternatives
    # the score is the PPM's score of the policy's own text for that path
    from engine.ppm.model import ProcessPreferenceModel
    ppm = ProcessPreferenceModel.load(tiny_ppm_dir)
    leaf = max(scored)
    assert abs(ppm.score_texts([tree[0].text + tree.path_text(leaf)])[0] - scored[leaf].score) < 1e-5
    # and the log round-trips through JSON (the store), folding to the same scores
    again = Tree.fold(E.loads(e.dumps()) for e in events)
    assert [n.score for n in again.nodes] == [n.score for n in tree.nodes]


def test_without_a_ppm_the_run_and_its_config_json_are_unchanged(tiny_backend):
    from engine.search.mcts import MCTSConfig, run
    cfg = MCTSConfig(rollouts=2, children=2, max_depth=3)
    assert "ppm" not in cfg.to_json()           # recorded sample runs replay with their old config keys
    events = list(run(QUESTION, tiny_backend, config=cfg, seed=0))
    assert not any(isinstance(e, E.StepScored) for e in events)
    assert set(Tree.fold(events).final.alternatives) == {"majority", "most_visited", "highest_q"}


def test_a_missing_or_corrupt_ppm_is_one_clear_line(tiny_backend, tiny_ppm_dir, tmp_path):
    import shutil
    from engine.ppm.model import PPMLoadError, ProcessPreferenceModel
    from engine.search.mcts import MCTSConfig, run
    with pytest.raises(PPMLoadError, match="no PPM at .*does not exist"):
        list(run(QUESTION, tiny_backend, config=MCTSConfig(reward="ppm", ppm=str(tmp_path / "nope")), seed=0))
    bad = tmp_path / "bad"
    shutil.copytree(tiny_ppm_dir, bad)
    (bad / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(PPMLoadError, match="could not load the PPM"):
        ProcessPreferenceModel.load(bad)
    (bad / "ppm.json").unlink()
    with pytest.raises(PPMLoadError, match="not a PPM folder: it has no ppm.json"):
        ProcessPreferenceModel.load(bad)
    # a model that ships no PPM, with no --ppm: says how to get one
    with pytest.raises(PPMLoadError, match="ships no PPM: give one with --ppm"):
        list(run(QUESTION, tiny_backend, config=MCTSConfig(reward="ppm"), seed=0))
    with pytest.raises(ValueError, match="final_rule"):
        MCTSConfig(final_rule="ppm")


def test_the_cli_says_a_bad_ppm_path_in_one_line(tmp_path, capsys):
    from engine.cli import main
    code = main(["run", "mcts", "--question", QUESTION, "--reward", "ppm", "--ppm", str(tmp_path / "nope"),
                 "--db", str(tmp_path / "runs.db"), "--rollouts", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "no PPM at" in err[-1] and "Traceback" not in "".join(err)


def test_training_problems_are_never_held_out_or_reserved_eval_problems():
    from engine.demo_model.problems import load_problems
    from engine.evaluation.evaluate import HELDOUT, fresh_problems
    from engine.ppm.data import RESERVED_FRESH_SEEDS, check_disjoint, training_problems
    probs = training_problems(60, seed=1)
    held = {p.question for p in load_problems(HELDOUT)}
    fresh = {p.question for s in RESERVED_FRESH_SEEDS for t in ("hard", "medium")
             for p in fresh_problems(t, 200, s)}
    assert len({p.question for p in probs}) == 60
    assert not {p.question for p in probs} & (held | fresh)
    check_disjoint(probs)
    leaked = [load_problems(HELDOUT, "hard")[0]]
    with pytest.raises(ValueError, match="must not be held-out"):
        check_disjoint(probs[:3] + leaked)


def test_collect_pairs_refuses_held_out_problems_before_any_search(tiny_backend):
    from engine.demo_model.problems import load_problems
    from engine.evaluation.evaluate import HELDOUT
    from engine.ppm.data import collect_pairs
    with pytest.raises(ValueError, match="must not be held-out"):
        collect_pairs(tiny_backend, load_problems(HELDOUT, "hard")[:2], rollouts=1)


def test_collect_pairs_on_training_problems_gives_sibling_pairs_and_right_trajectories(default_backend):
    from engine.ppm.data import collect_pairs, training_problems
    probs = training_problems(4, seed=3)
    res = collect_pairs(default_backend, probs, rollouts=8, seed=3)
    assert res.summary["problems"] == 4 and len(res.session_ids) == 4
    for t in res.trajectories:
        assert t.steps[-1].strip().endswith(f"{t.answer}.")
        assert next(p for p in probs if p.id == t.problem_id).answer == int(t.answer)
    for p in res.pairs:
        assert p.chosen.strip() != p.rejected.strip() and p.prompt.startswith("Question: ")


def test_best_of_n_and_beam_rank_by_the_ppm_with_scorer_ppm(tiny_backend, tiny_ppm_dir):
    from engine.search.baselines import BaselineConfig, run_beam, run_best_of_n
    cfg = BaselineConfig(samples=4, beam_width=2, children=2, max_depth=3, scorer="ppm", ppm=str(tiny_ppm_dir))
    events = list(run_best_of_n(QUESTION, tiny_backend, config=cfg, seed=0))
    tree = Tree.fold(events)
    leaves = [n for n in tree.nodes if n.id != E.ROOT and not n.children]
    assert leaves and all(n.score is not None and n.score["source"] == "ppm" for n in leaves)
    best = max(leaves, key=lambda n: (n.score["score"], -n.id))
    assert tree.final.path[-1] == best.id and tree.final.rule == "best_of_n"
    events = list(run_beam(QUESTION, tiny_backend, config=cfg, seed=0))
    tree = Tree.fold(events)
    # every candidate step is scored before the beam keeps the best-scored paths
    assert all(n.score is not None for n in tree.nodes if n.id != E.ROOT)
    assert BaselineConfig().to_json().keys() == {"samples", "temperature", "top_p", "min_p", "beam_width",
                                                 "children", "max_depth"}
    with pytest.raises(ValueError, match="scorer must be one of"):
        BaselineConfig(scorer="votes")


def test_the_tree_hover_and_the_inspector_show_the_ppm_score_and_the_reward_source(tiny_backend, tiny_ppm_dir):
    from app.node_details import node_details_html
    from app.tree_figure import _hover, tree_figure
    from engine.search.mcts import MCTSConfig, run
    cfg = MCTSConfig(rollouts=2, children=2, max_depth=3, reward="ppm", ppm=str(tiny_ppm_dir))
    tree = Tree.fold(run(QUESTION, tiny_backend, config=cfg, seed=0))
    leaf = next(n for n in tree.nodes if n.reward is not None)
    hover = _hover(tree, leaf.id)
    assert f"PPM score = {leaf.score['score']:.3f} ({tiny_ppm_dir.name})" in hover
    assert "reward source: the PPM's score of this path" in hover
    details = node_details_html(tree, leaf.id)
    assert f"{leaf.score['score']:.3f}" in details and "pseudo-visit" in details and "answer key is not used" in details
    assert "PPM" not in _hover(tree, 0) and node_details_html(tree, 0) == ""     # the root is not scored
    assert tree_figure(tree) is not None


def _tree(rows) -> Tree:
    """Root 0 and rows (id, parent, text, Q, end) in id order; end None (a step), "right" or
    "wrong"; every node visited 10 times at Q."""
    evs = [E.RunStarted(method="mcts", question="Q?", prompt="Question: Q?\n", gold="17", config={}, seed=0, model="m"),
           E.NodeProposed(node=0, parent=-1, depth=0, action="root", text="Question: Q?\n")]
    for nid, parent, text, q, end in rows:
        answer = {"right": "17", "wrong": "18"}.get(end)
        evs.append(E.NodeProposed(node=nid, parent=parent, depth=1, action="step", text=text, terminal=end is not None,
                                  answer=answer, correct=None if end is None else end == "right"))
        evs.append(E.Backprop(path=[nid], reward=q, before=[[0, 0.0]], after=[[10, 10 * q]]))
    return Tree.fold(evs)


def test_final_answer_pairs_put_the_best_right_solutions_against_the_worst_wrong_ones():
    from engine.ppm.data import final_answer_pairs
    tree = _tree([(1, 0, "Step 1: 12 + 5 = 17\n", 0.9, None), (2, 1, "The answer is 17.\n", 0.9, "right"),
                  (3, 0, "Step 1: 12 + 5 = 18\n", -0.5, None), (4, 3, "The answer is 18.\n", -0.9, "wrong"),
                  (5, 0, "Step 1: 12 + 6 = 18\n", 0.1, None), (6, 5, "The answer is 18.\n", 0.3, "wrong"),
                  (7, 0, "Step 1: 5 + 12 = 17\n", 0.2, None), (8, 7, "The answer is 17.\n", 0.0, "right"),
                  (9, 0, "Step 1: 12 - 5 = 7\n", 0.5, None), (10, 9, "The answer is 18.\n", 0.8, "wrong")])
    pairs = final_answer_pairs(tree, top=2)
    # right by mean Q: 2 (0.9), 8 (0.1); wrong by lowest mean Q: 4 (-0.7), 6 (0.2); 10 (0.65) left out
    assert [(p.chosen_node, p.rejected_node) for p in pairs] == [(2, 4), (2, 6), (8, 4), (8, 6)]
    assert all(p.prompt == "Question: Q?\n" for p in pairs)
    assert pairs[0].chosen == "Step 1: 12 + 5 = 17\nThe answer is 17.\n"


def test_hard_negatives_are_taken_at_the_first_false_claim_only():
    from engine.ppm.data import hard_negative_pairs
    tree = _tree([(1, 0, "Step 1: 12 + 5 = 17\n", 0.9, None), (2, 1, "The answer is 17.\n", 0.9, "right"),
                  (3, 0, "Step 1: 12 + 5 = 18\n", -0.5, None), (4, 3, "The answer is 18.\n", -0.9, "wrong"),
                  # below a false claim: a later false step is not a *first* wrong step
                  (5, 3, "Step 2: 18 + 1 = 20\n", 0.0, None), (6, 3, "Step 2: 18 + 1 = 19\n", 0.0, None)])
    pairs = hard_negative_pairs(tree)
    assert [(p.chosen_node, p.rejected_node) for p in pairs] == [(1, 3)]


def test_a_frozen_body_trains_only_the_larger_head_and_orders_its_pairs(tiny_llama_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM
    from engine.ppm.model import ProcessPreferenceModel
    from engine.ppm.train import train_ppm
    torch.set_num_threads(1)
    pairs = [_pair("Step 1: 12 + 5 = 17\n", "Step 1: 12 + 5 = 18\n", sid="a"),
             _pair("Step 1: 12 + 5 = 17\nThe answer is 17.\n", "Step 1: 12 + 5 = 17\nThe answer is 18.\n", sid="b")]
    metrics = train_ppm(pairs, init_from=str(tiny_llama_dir), out=tmp_path / "ppm", epochs=60, lr=3e-3,
                        batch_size=2, seed=0, held_out=pairs[:1], freeze_body=True, head_hidden=16)
    assert metrics["train_accuracy"] == 1.0 and metrics["final_epoch_loss"] < metrics["first_batch_loss"]
    ppm = ProcessPreferenceModel.load(tmp_path / "ppm")
    assert ppm.head_hidden == 16
    policy = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    for k, v in policy.model.state_dict().items():       # the body is the policy's, untouched
        assert torch.equal(ppm.body.state_dict()[k], v), k
    for p in pairs:
        assert ppm.score_texts([p.prompt + p.chosen])[0] > ppm.score_texts([p.prompt + p.rejected])[0]


def test_code_mcts_with_the_ppm_scores_only_steps_that_passed_their_check(tiny_ppm_dir):
    from engine.ppm.model import ProcessPreferenceModel
    from engine.search.code_mcts import CodeMCTSConfig, run
    from test_code_mcts import GOOD, QUESTION as CODE_Q, SlipFirstBackend
    cfg = CodeMCTSConfig(rollouts=3, children=2, check="runs_and_claim", resample=1, drop_failed=True,
                         reward="ppm", ppm=str(tiny_ppm_dir), final_rule="ppm")
    events = list(run(CODE_Q, SlipFirstBackend(GOOD, slips=1), config=cfg, seed=0))
    tree = Tree.fold(events)
    scored = {e.node: e for e in events if isinstance(e, E.StepScored)}
    failed = [n.id for n in tree.nodes if n.code is not None and not n.code["passed"]]
    assert len(failed) == 2 and set(scored) == {n.id for n in tree.nodes if n.id != E.ROOT}
    # a failed step is never shown to the PPM: -1, labelled as the code check's
    assert all(scored[f].score == -1.0 and scored[f].source == "code_failure" and scored[f].q_init for f in failed)
    ppm = ProcessPreferenceModel.load(tiny_ppm_dir)
    passed = [i for i in scored if i not in failed]
    want = ppm.score_texts([tree[0].text + tree.path_text(i) for i in passed])
    # the PPM scores the code format's own text (root prompt "...Code:\n" and the code steps)
    assert tree[0].text.endswith("Code:\n")
    assert all(abs(scored[i].score - w) < 1e-5 and scored[i].source == "ppm" for i, w in zip(passed, want))
    assert tree.final.answer == "48" and tree.final.rule == "ppm"


def test_collect_pairs_from_claim_checked_code_mcts_uses_the_code_format_and_verified_steps(default_backend):
    from engine.ppm.data import collect_pairs, training_problems
    from engine.triage import claim_error
    probs = training_problems(2, seed=5, tiers=("hard",))
    res = collect_pairs(default_backend, probs, rollouts=4, seed=5, code=True, resample=1, drop_failed=True,
                        hard_negatives=False)
    s = res.summary
    assert (s["method"], s["check"], s["resample"], s["drop_failed"]) == ("mcts-code", "runs_and_claim", 1, True)
    for t in res.trajectories:              # right paths pass through verified steps only
        assert all(claim_error(step) is None for step in t.steps) and "#" in t.steps[0]
    for p in res.pairs:
        assert "\nCode:\n" in p.prompt and claim_error(p.chosen) is None and claim_error(p.rejected) is None


def test_a_ppm_trained_on_one_text_format_is_refused_by_a_search_writing_the_other(tiny_backend, tiny_ppm_dir, tmp_path):
    import shutil
    from engine.pairs import Pair
    from engine.ppm import shipped_path, text_format
    from engine.ppm.model import PPMLoadError
    from engine.search.mcts import MCTSConfig, run
    code_pair = Pair("Question: Q?\nCode:\n", "Step 1: x1 = 2 + 3  # 2 + 3 = 5\n", "Step 1: x1 = 2 * 3  # 2 * 3 = 6\n",
                     0.5, -0.5, 0, 1, 2)
    assert text_format([code_pair]) == "code" and text_format([_pair("a", "b")]) == "plain"
    assert text_format([code_pair, _pair("a", "b")]) is None                    # mixed: nothing to check
    folder = tmp_path / "code-ppm"
    shutil.copytree(tiny_ppm_dir, folder)
    meta = json.loads((folder / "ppm.json").read_text())
    meta.setdefault("training", {}).setdefault("data", {})["text_format"] = "code"
    (folder / "ppm.json").write_text(json.dumps(meta))
    cfg = MCTSConfig(rollouts=1, children=2, max_depth=2, reward="ppm", ppm=str(folder))
    with pytest.raises(PPMLoadError, match="trained on code steps, but this search writes plain steps") as e:
        list(run(QUESTION, tiny_backend, config=cfg, seed=0))
    assert "\n" not in str(e.value)
    # code-verified MCTS without --ppm looks for the model's PPM of code steps (<model>-ppm-code)
    assert shipped_path("no-such-model", code=True) is None
    from engine.search.code_mcts import CodeMCTSConfig, run as code_run
    with pytest.raises(PPMLoadError, match="ships no PPM for code steps"):
        list(code_run(QUESTION, tiny_backend, config=CodeMCTSConfig(rollouts=1, reward="ppm"), seed=0))


def test_train_ppm_measures_on_a_held_out_pairs_file_and_records_the_text_format(tiny_llama_dir, tmp_path, capsys):
    from engine.cli import main
    from engine.ppm.data import write_pairs
    code_pairs = [Pair(f"Question: Q{i}?\nCode:\n", "Step 1: x1 = 2 + 3  # 2 + 3 = 5\n",
                       "Step 1: x1 = 2 + 3  # 2 + 3 = 6\n", 0.5, -0.5, 0, 1, 2, f"s{i}") for i in range(3)]
    write_pairs(tmp_path / "train.jsonl", code_pairs[:2])
    write_pairs(tmp_path / "held.jsonl", code_pairs[2:])
    code = main(["train-ppm", "--pairs", str(tmp_path / "train.jsonl"), "--held-out-pairs", str(tmp_path / "held.jsonl"),
                 "--model", str(tiny_llama_dir), "--out", str(tmp_path / "ppm"), "--epochs", "1", "--json"])
    assert code == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (metrics["train_pairs"], metrics["held_out_pairs"]) == (2, 1)        # every training pair trains
    data = json.loads((tmp_path / "ppm" / "ppm.json").read_text())["training"]["data"]
    assert data["text_format"] == "code" and data["held_out_pairs_file"].endswith("held.jsonl")
    code = main(["train-ppm", "--pairs", str(tmp_path / "train.jsonl"), "--held-out-pairs", str(tmp_path / "nope"),
                 "--model", str(tiny_llama_dir), "--out", str(tmp_path / "ppm2")])
    assert code == 2 and "--held-out-pairs: no file at" in capsys.readouterr().err


def test_the_shipped_ppm_is_for_plain_steps_and_code_search_refuses_it(default_backend):
    from engine.ppm import shipped_path
    from engine.ppm.model import PPMLoadError
    from engine.search.code_mcts import CodeMCTSConfig, run as code_run
    folder = shipped_path("arith-llama-3m")
    meta = json.loads((folder / "ppm.json").read_text())
    assert meta["training"]["data"]["text_format"] == "plain"
    cfg = CodeMCTSConfig(rollouts=1, reward="ppm", ppm=str(folder))
    with pytest.raises(PPMLoadError, match="trained on plain steps, but this search writes code steps"):
        list(code_run(QUESTION, default_backend, config=cfg, seed=0))


def test_code_verified_mcts_uses_the_shipped_ppm_of_code_steps_and_plain_mcts_refuses_it(default_backend):
    from engine.events import StepScored
    from engine.ppm import shipped_path
    from engine.ppm.model import PPMLoadError
    from engine.search.code_mcts import CodeMCTSConfig, run as code_run
    from engine.search.mcts import MCTSConfig, run
    folder = shipped_path("arith-llama-3m", code=True)
    assert folder is not None and folder.name == "arith-llama-3m-ppm-code"
    assert json.loads((folder / "ppm.json").read_text())["training"]["data"]["text_format"] == "code"
    cfg = CodeMCTSConfig(rollouts=2, reward="ppm", check="runs_and_claim", resample=2, drop_failed=True)
    events = list(code_run(QUESTION, default_backend, config=cfg, seed=0))     # no --ppm: the shipped one
    scored = [e for e in events if isinstance(e, StepScored)]
    assert any(e.source == "ppm" and e.model == folder.name for e in scored)
    assert all(-1.0 <= e.score <= 1.0 for e in scored)
    with pytest.raises(PPMLoadError, match="trained on code steps, but this search writes plain steps"):
        list(run(QUESTION, default_backend, config=MCTSConfig(rollouts=1, reward="ppm", ppm=str(folder)), seed=0))
