"""Self-evolution rounds (engine/ppm/evolve.py) end to end on the embedded model, tiny: real MCTS,
real fine-tuning and PPM training, a real SQLite file; a crash in round 1 is resumed without
redoing the phases that had finished; the Evolution tab draws the stored rounds and lists the
round's example trees."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from engine.evolution_store import EvolutionStore
from engine.ppm.evolve import EvolveConfig, evolve, open_run, round_problems
from engine.ppm.finetune import FinetuneConfig
from engine.store import Store

# 8 hard problems x 16 rollouts give pairs on the training share (about 10 s of MCTS a problem here
# at most); evaluation is 2 problems, so the test checks the plumbing, not the accuracy
CONFIG = EvolveConfig(train_problems=8, rollouts=16, eval_n=2, eval_rollouts=2, sc_samples=2, examples=1,
                      ppm_epochs=1, ppm_min_pairs=1, finetune=FinetuneConfig(max_steps=2, batch=4), seed=0)


class Crash(Exception):
    pass


def _loader():
    from engine.models.registry import load_backend
    cache = {}

    def load(path):
        if path not in cache:
            cache[path] = load_backend(path, threads=1)
        return cache[path]
    return load


def _crash_at(phase):
    """A progress factory that dies when ``phase``'s bar opens, as a killed process would there."""
    class Bar:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def update(self, k=1):
            pass

    def progress(desc, total, unit):
        if desc == phase:
            raise Crash(desc)
        return Bar()
    return progress


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def evolved(tmp_path_factory):
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("evolve")
    db, out = tmp / "runs.db", tmp / "out"
    load = _loader()
    with Store(db) as store:
        run = open_run(store, out, model="arith-llama-3m", ppm=None, config=CONFIG)
        with pytest.raises(Crash):
            evolve(run, 1, load_backend=load, progress=_crash_at("round 1 eval greedy"))
        crashed = EvolutionStore(store).rounds(run.run_id)
        sessions_before = len(store.list_sessions())
    folder = out / "round-1"
    before = {"pairs": _digest(folder / "pairs.jsonl"), "policy": _digest(folder / "policy" / "model.safetensors"),
              "sessions": sessions_before}
    with Store(db) as store:           # a new process: a new store on the same file, the same command
        run = open_run(store, out, model="arith-llama-3m", ppm=None, config=CONFIG)
        rows = evolve(run, 1, load_backend=load)
        sessions_after = len(store.list_sessions())
    return {"db": db, "out": out, "run_id": run.run_id, "crashed": crashed, "rows": rows, "before": before,
            "sessions_after": sessions_after}


@pytest.mark.slow
def test_a_crash_in_round_1_keeps_round_0_and_the_finished_phases(evolved):
    crashed = evolved["crashed"]
    assert [r["round"] for r in crashed] == [0, 1]
    assert crashed[0]["status"] == "done" and crashed[0]["phases"] == ["eval"]
    assert crashed[1]["status"] == "running" and crashed[1]["phases"] == ["collect", "finetune", "ppm"]
    assert crashed[1]["greedy_accuracy"] is None


@pytest.mark.slow
def test_resuming_finishes_the_round_without_redoing_its_phases(evolved):
    rows, before, folder = evolved["rows"], evolved["before"], evolved["out"] / "round-1"
    assert [(r["round"], r["status"]) for r in rows] == [(0, "done"), (1, "done")]
    assert rows[1]["phases"] == ["collect", "finetune", "ppm", "eval"]
    # collection and fine-tuning were not run again: same files, no new example sessions
    assert _digest(folder / "pairs.jsonl") == before["pairs"]
    assert _digest(folder / "policy" / "model.safetensors") == before["policy"]
    assert evolved["sessions_after"] == before["sessions"]
    for name in ("eval-greedy.json", "eval-sc.json", "eval-mcts.json"):
        assert json.loads((folder / name).read_text())["n"] == 2


@pytest.mark.slow
def test_rows_hold_the_rounds_numbers_and_where_the_weights_are(evolved):
    r0, r1 = evolved["rows"]
    assert r0["train_problems"] == 0 and r0["policy_path"] == "arith-llama-3m" and r0["ppm_path"] is None
    assert r0["mcts_reward"] == "self_consistency"          # no PPM yet: the reward that needs no key
    assert r1["train_problems"] == 8 and r1["trajectories"] > 0 and r1["pairs"] > 0
    assert r1["policy_path"] == str(evolved["out"] / "round-1" / "policy")
    assert r1["ppm_path"] == str(evolved["out"] / "round-1" / "ppm")
    assert (evolved["out"] / "round-1" / "ppm" / "ppm.json").is_file()
    assert r1["mcts_reward"] == "ppm" and r1["metrics"]["eval"]["mcts"]["config"]["final_rule"] == "ppm"
    assert 0.0 <= r1["ppm_pairwise_accuracy"] <= 1.0
    for r in (r0, r1):
        for k in ("greedy_accuracy", "sc_accuracy", "mcts_accuracy"):
            assert r[k] in (0.0, 0.5, 1.0)                 # 2 problems
        assert r["eval_n"] == 2
    ft = r1["metrics"]["finetune"]
    assert ft["trajectories"] == r1["metrics"]["collect"]["sft_documents"] and ft["steps"] >= 1
    # the PPM was scored on pairs of problems it did not train on
    assert r1["metrics"]["ppm"]["val_problems"] == 2 and r1["metrics"]["ppm"]["val_pairs"] > 0


@pytest.mark.slow
def test_the_fine_tuned_policy_is_a_loadable_model_with_new_weights(evolved):
    from safetensors.torch import load_file
    from engine.models.registry import EMBEDDED, load_backend
    new = load_file(str(evolved["out"] / "round-1" / "policy" / "model.safetensors"))
    old = load_file(str(EMBEDDED["arith-llama-3m"].path() / "model.safetensors"))
    assert new.keys() == old.keys()
    assert any(not torch.equal(new[k], old[k]) for k in new)
    backend = load_backend(str(evolved["out"] / "round-1" / "policy"), threads=1)
    assert backend.prompt_format.name == "embedded"


@pytest.mark.slow
def test_example_trees_are_stored_sessions_of_gold_guided_mcts(evolved):
    with Store(evolved["db"]) as store:
        (sid,) = evolved["rows"][1]["example_sessions"]
        meta = store.session(sid)
        assert meta["method"] == "mcts" and meta["status"] == "done"
        assert meta["config"]["reward"] == "gold"
        first = round_problems(CONFIG, 1)[0]
        assert meta["question"] == first.question and meta["gold"] == str(first.answer)


@pytest.mark.slow
def test_resuming_with_other_settings_is_refused_naming_the_setting(evolved):
    import dataclasses
    with Store(evolved["db"]) as store:
        with pytest.raises(ValueError, match="train_problems 8, not 9"):
            open_run(store, evolved["out"], model="arith-llama-3m", ppm=None,
                     config=dataclasses.replace(CONFIG, train_problems=9))


@pytest.mark.slow
def test_the_evolution_view_draws_the_stored_rounds(evolved):
    from app.evolve_tab import TABLE_COLUMNS, example_choices, refresh, rounds_figure, rounds_table
    with Store(evolved["db"]) as store:
        rows = EvolutionStore(store).rounds(evolved["run_id"])
        fig = rounds_figure(rows)
        by_name = {t.name: t for t in fig.data}
        assert list(by_name["greedy"].x) == [0, 1]
        assert list(by_name["greedy"].y) == [round(100 * r["greedy_accuracy"], 1) for r in rows]
        assert list(by_name["MCTS (+ PPM from round 1)"].y) == [round(100 * r["mcts_accuracy"], 1) for r in rows]
        ppm = by_name["PPM pairwise accuracy (unseen problems)"]
        assert ppm.y[0] is None and ppm.y[1] == round(100 * rows[1]["ppm_pairwise_accuracy"], 1)
        table = rounds_table(rows)
        assert [t[0] for t in table] == [0, 1] and len(table[0]) == len(TABLE_COLUMNS)
        assert [c[1] for c in example_choices(rows, store)] == rows[1]["example_sessions"]
        dropdown, fig2, table2, examples, status = refresh(store, None)
        assert dropdown.value == evolved["run_id"] and table2.values.tolist() == table     # headers: app/i18n.py table
        assert "2 of 2 rounds done" in status


def test_round_problems_are_fresh_per_round_and_never_held_out():
    from engine.demo_model.problems import load_problems
    from engine.evaluation.evaluate import HELDOUT
    cfg = EvolveConfig(train_problems=30)
    one, two = round_problems(cfg, 1), round_problems(cfg, 2)
    assert len(one) == len(two) == 30
    assert not {p.question for p in one} & {p.question for p in two}
    held = {p.question for p in load_problems(HELDOUT)}
    assert not held & {p.question for p in one + two}
    assert [p.question for p in round_problems(cfg, 1)] == [p.question for p in one]     # seeded


@pytest.mark.parametrize("field, value, message", [
    ("train_problems", 1, "train_problems must be a whole number from 2"),
    ("rollouts", 0, "rollouts must be"),
    ("train_tier", "impossible", "train_tier must be one of"),
    ("ppm_val_share", 1.0, "ppm_val_share must be a number between 0 and 1"),
])
def test_bad_settings_are_refused_naming_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        EvolveConfig(**{field: value})


def test_the_cli_refuses_a_ppm_path_that_is_not_a_ppm(tmp_path, capsys):
    from engine.cli import main
    code = main(["evolve", "--rounds", "1", "--train-problems", "4", "--ppm", str(tmp_path),
                 "--out", str(tmp_path / "out"), "--db", str(tmp_path / "runs.db")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "is not a PPM folder" in err


@pytest.mark.slow
def test_the_served_app_shows_the_rounds_and_opens_an_example_tree(evolved, default_backend):
    from gradio_client import Client
    from app.main import LAUNCH_KWARGS, build_app
    from conftest import free_port
    with Store(evolved["db"]) as store:
        demo = build_app(default_backend, store)
        _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                                **LAUNCH_KWARGS)
        client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
        try:
            _, table, examples, status = client.predict(evolved["run_id"], api_name="/evolution_rounds")
            assert [row[0] for row in table["data"]] == [0, 1] and "2 of 2 rounds done" in status
            (sid,) = evolved["rows"][1]["example_sessions"]
            assert examples["value"] == sid
            opened = client.predict(sid, api_name="/open_evolution_example")
            assert opened.startswith(f"Opened `{sid}` (mcts,") and opened.endswith("done).")
        finally:
            client.close()
            demo.close(verbose=False)


@pytest.mark.slow
def test_evolve_code_collects_and_evaluates_with_claim_checked_code_mcts(tmp_path):
    from engine.ppm.phases import CODE_SEARCH
    torch.set_num_threads(1)
    # ppm_min_pairs above any pair count: round 1 keeps the PPM it started with (none) and says why
    cfg = EvolveConfig(train_problems=2, rollouts=2, eval_n=1, eval_rollouts=1, sc_samples=1, examples=1,
                       ppm_epochs=1, ppm_min_pairs=1_000_000, code=True, finetune=FinetuneConfig(max_steps=1, batch=2),
                       seed=3)
    with Store(tmp_path / "runs.db") as store:
        run = open_run(store, tmp_path / "out", model="arith-llama-3m", ppm=None, config=cfg)
        evolve(run, 1, load_backend=_loader())
        r1 = EvolutionStore(store).rounds(run.run_id)[1]
        kept = store.events(r1["example_sessions"][0])
    assert r1["ppm_path"] is None and not (tmp_path / "out" / "round-1" / "ppm").exists()
    assert r1["metrics"]["ppm"]["skipped"].endswith("fewer than 1000000: the PPM is kept")
    folder = tmp_path / "out" / "round-1"
    assert kept[0].method == "mcts-code" and all(kept[0].config[k] == v for k, v in CODE_SEARCH.items())
    # the fine-tuning documents continue the code prompt the trajectories were written after
    docs = [json.loads(line) for line in (folder / "sft.jsonl").read_text().splitlines()]
    assert docs and all(d["prompt"].endswith("\nCode:\n") and d["completion"].startswith("Step 1: x1 = ")
                        for d in docs)
    for name in ("eval-mcts.json", "eval-greedy.json"):
        summary = json.loads((folder / name).read_text())
        if name == "eval-mcts.json":
            assert summary["method"] == "mcts-code"
            assert all(summary["config"][k] == v for k, v in CODE_SEARCH.items())
