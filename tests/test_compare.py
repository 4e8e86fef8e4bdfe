"""Compute-matched comparison (engine/evaluation/compare.py, engine/compare_store.py,
engine/cli/compare.py): sizes chosen from a pilot, every run a stored session linked to the
experiment, the chart's points are the stored means, bad requests are one line."""

import json

import pytest

from engine.cli import main as cli_main
from engine.compare_store import CompareStore
from engine.evaluation import compare as C
from engine.evaluation.compare_chart import compare_figure, write_chart
from engine.evaluation.evaluate import eval_problems


def test_choose_size_is_the_budget_over_tokens_per_unit_at_least_one_at_most_the_limit():
    assert C.choose_size(1000, 87.5, "samples") == 11      # 11.43 rounds to 11
    assert C.choose_size(300, 5700.0, "rollouts") == 1     # rStar: one rollout already costs more
    assert C.choose_size(10**6, 1.0, "beam_width") == 32   # the beam config's own limit


def test_wilson_interval_matches_the_textbook_value():
    # 50/100: 0.5 ± 1.96·sqrt(.25/100 + 1.96²/40000) / (1 + 1.96²/100) = 0.4038 .. 0.5962
    lo, hi = C.wilson(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    assert C.wilson(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("kw, says", [
    (dict(methods=("sc", "nope"), budgets=(100,)), "methods: nope"),
    (dict(methods=("sc", "sc"), budgets=(100,)), "names one twice"),
    (dict(methods=("sc",), budgets=(300, 100)), "budgets must be distinct and increasing"),
    (dict(methods=("sc",), budgets=(0,)), "budgets must be whole numbers"),
    (dict(methods=("sc",), budgets=(100,), pilot=0), "pilot must be"),
])
def test_a_bad_request_names_the_field(kw, says):
    with pytest.raises(ValueError, match=says):
        C.CompareRequest(**kw)


def test_arms_share_a_size_that_two_budgets_calibrate_to():
    req = C.CompareRequest(("greedy", "rstar", "sc"), (300, 1000))
    cal = {"greedy": {"knob": None, "sizes": {"300": None, "1000": None}},
           "rstar": {"knob": "rollouts", "sizes": {"300": 1, "1000": 1}},
           "sc": {"knob": "samples", "sizes": {"300": 3, "1000": 11}}}
    assert C.arms(req, cal) == [("greedy", None, [300, 1000]), ("rstar", 1, [300, 1000]),
                                ("sc", 3, [300]), ("sc", 11, [1000])]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, default_backend):
    """greedy, sc and mcts at two budgets on three hard problems of the embedded model."""
    from engine.store import Store
    path = tmp_path_factory.mktemp("compare") / "runs.db"
    problems = eval_problems("mcts", "hard", 3)
    req = C.CompareRequest(("greedy", "sc", "mcts"), (200, 600), seed=0, pilot=2)
    with Store(path) as store:
        ticks, planned = [], []
        eid = C.run_compare(default_backend, store, req, problems, source="held-out", tier="hard",
                            progress=ticks.append, planned=planned.append)
    assert planned == [sum(ticks)]          # the bar's total, once the pilot has chosen the sizes
    return path, eid, problems, sum(ticks)


def test_each_size_is_chosen_from_the_pilot_and_every_run_is_a_linked_session(experiment):
    from engine.store import Store
    path, eid, problems, ticks = experiment
    with Store(path) as store:
        cs = CompareStore(store)
        exp = cs.experiment(eid)
        assert exp["status"] == "done" and exp["budgets"] == [200, 600] and exp["n"] == 3
        cal = exp["calibration"]
        for m in ("sc", "mcts"):
            per_unit = cal[m]["tokens_per_unit"]
            assert cal[m]["tokens_per_unit"] == pytest.approx(cal[m]["pilot_mean_tokens"] / cal[m]["pilot_size"],
                                                              abs=0.1)
            assert cal[m]["sizes"] == {str(b): C.choose_size(b, per_unit, cal[m]["knob"]) for b in (200, 600)}
        arms = C.results(store, eid)
        assert [a.method for a in arms if a.method == "greedy"] == ["greedy"]      # one size, one point
        runs = cs.runs(eid)
        assert len(runs) == 3 * len(arms) and ticks == len(runs) + 2 * 2           # runs + the pilot's
        for r in runs:                          # the link is to the very session, with its own numbers
            row = store.session(r["session_id"])
            assert row["generated_tokens"] == r["generated_tokens"] and row["status"] == "done"
            assert row["question"] == problems[r["problem"]].question and row["seed"] == r["problem"]
            assert bool(row["correct"]) == bool(r["correct"])
        for a in arms:
            mine = [r for r in runs if r["method"] == a.method and r["size"] == (a.size or 0)]
            assert a.runs == 3 and a.mean_tokens == pytest.approx(sum(r["generated_tokens"] for r in mine) / 3, abs=0.05)
            assert a.accuracy == pytest.approx(sum(r["correct"] for r in mine) / 3, abs=1e-4)


def test_the_chart_draws_each_arm_at_its_measured_mean(experiment, tmp_path):
    from engine.store import Store
    path, eid, _, _ = experiment
    with Store(path) as store:
        arms = C.results(store, eid)
    fig = compare_figure(arms)
    tokens = {t.name: list(t.x) for t in fig.data if t.xaxis == "x"}
    assert set(tokens) == {"greedy", "sc", "mcts"}
    assert tokens["sc"] == sorted(a.mean_tokens for a in arms if a.method == "sc")
    assert fig.data[0].mode == "markers"                     # greedy: a single point, no line
    out, note = write_chart(fig, tmp_path / "chart.html")
    assert out.exists() and "plotly" in out.read_text()[:5000].lower() and note.startswith("HTML")
    with pytest.raises(ValueError, match="--out must end in"):
        write_chart(fig, tmp_path / "chart.pdf")


def test_cli_shows_a_stored_experiment_with_triage_adding_up(experiment, capsys):
    path, eid, _, _ = experiment
    assert cli_main(["compare", "--show", eid[:6], "--db", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for a in report["arms"]:
        wrong = a["runs"] - a["right"]
        t = a["triage"]
        assert sum(t["classes"].values()) + t["status"]["unfinished"] == wrong
    assert set(report["winners"]) == {"200", "600"}
    assert cli_main(["compare", "--list", "--db", str(path)]) == 0
    assert eid in capsys.readouterr().out


@pytest.mark.parametrize("argv, says", [
    (["compare", "--methods", "sc", "--budgets", "a,b"], "--budgets must be comma-separated whole numbers"),
    (["compare", "--methods", "sc,zz", "--budgets", "100"], "methods: zz cannot be compared"),
    (["compare", "--budgets", "100"], "--methods is needed"),
    (["compare", "--show", "nosuch"], "experiment 'nosuch' is not"),
])
def test_cli_bad_input_is_one_line(argv, says, tmp_path, capsys):
    assert cli_main(argv + ["--db", str(tmp_path / "x.db")]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and "\n" not in err


@pytest.fixture(scope="module")
def second(experiment, default_backend):
    """best-of-N on the same three problems, as a second experiment in the same file."""
    from engine.store import Store
    path, _, problems, _ = experiment
    with Store(path) as store:
        return C.run_compare(default_backend, store, C.CompareRequest(("bon",), (200, 600), seed=0, pilot=2),
                             problems, source="held-out", tier="hard")


def test_two_experiments_on_the_same_problems_show_as_one(experiment, second, capsys, tmp_path):
    path, eid, _, _ = experiment
    assert cli_main(["compare", "--show", f"{eid},{second}", "--db", str(path), "--json",
                     "--out", str(tmp_path / "both.html")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["experiment"]["experiment_id"] == f"{eid}+{second}"
    assert {a["method"] for a in report["arms"]} == {"greedy", "sc", "mcts", "bon"}
    assert (tmp_path / "both.html").exists()


def test_experiments_of_other_problems_are_not_merged(experiment, default_backend, tmp_path):
    from engine.cli.compare import experiment_report
    from engine.store import Store
    path, eid, problems, _ = experiment
    with Store(path) as store:
        other = C.run_compare(default_backend, store, C.CompareRequest(("greedy",), (100,), pilot=1),
                              problems[:1], source="held-out", tier="hard")
        with pytest.raises(ValueError, match="ran on different problems"):
            experiment_report(store, [eid, other])


def test_the_experiments_tab_lists_and_shows_a_stored_experiment(experiment):
    import gradio as gr

    from app import experiments_tab as X
    from engine.store import Store
    path, eid, _, _ = experiment
    with Store(path) as store:
        assert eid in [v for _, v in X.experiment_choices(store)]
        fig, table = X.show_experiment(store, [eid])
        assert {t.name for t in fig.data} == {"greedy", "sc", "mcts"}
        arms = C.results(store, eid)
        sc = [a for a in arms if a.method == "sc"][0]
        assert f"| sc | samples = {sc.size} | {', '.join(map(str, sc.budgets))} | {sc.mean_tokens:.0f} |" in table
        assert "budget 200 tokens: best" in table
        with pytest.raises(gr.Error, match="no experiment .*nope"):
            X.show_experiment(store, ["nope"])
        with pytest.raises(gr.Error, match="choose an experiment"):
            X.show_experiment(store, [])


def test_an_arm_in_two_merged_experiments_is_shown_once(experiment, default_backend, capsys):
    from engine.store import Store
    path, eid, problems, _ = experiment
    with Store(path) as store:       # greedy again on the same problems: the same seeds, the same runs
        again = C.run_compare(default_backend, store, C.CompareRequest(("greedy",), (200, 600), pilot=2),
                              problems, source="held-out", tier="hard")
        first = [r["generated_tokens"] for r in CompareStore(store).runs(eid, "greedy")]
        assert [r["generated_tokens"] for r in CompareStore(store).runs(again, "greedy")] == first
    assert cli_main(["compare", "--show", f"{eid},{again}", "--db", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [a["method"] for a in report["arms"]].count("greedy") == 1


def test_an_arm_over_its_budget_does_not_win_it():
    def arm(method, size, budgets, tokens, right, knob="samples"):
        return C.ArmResult(method, knob, size, budgets, 100, right / 100, tokens, 1.0, right)
    arms = [arm("greedy", None, [300, 1000], 85, 53, knob=None), arm("sc", 3, [300], 256, 55),
            arm("sc", 12, [1000], 1022, 52), arm("rstar", 1, [300, 1000], 5134, 54, knob="rollouts")]
    # rStar's one rollout spends 5,134 tokens: above both budgets, so it wins neither
    assert C.winners(arms, [300, 1000]) == {300: ["sc"], 1000: ["greedy"]}
    assert C.winners(arms[3:], [300]) == {300: []}
