"""The se and sugar searches: routing at the thresholds, the event stream (samples, both
clusterings, entropies, routing, passages, answers with and without retrieval), config errors,
a real run on the embedded model (stored and replayed), the CLI's run and eval."""

from __future__ import annotations

import json
import math

import pytest

from engine import events as E
from engine.cli import main
from engine.models.base import Generation, ModelInfo, TokenLogprob
from engine.scoring import semantic_entropy as S
from engine.search import METHODS
from engine.search.sugar import SEConfig, SugarConfig, route

QUESTION = "Who founded the Saltmarsh School in Velmora?"
GOLD = "Maud Tinsley"


# ---- routing -------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, decision", [
    (0.0, "none"), (0.4999, "none"),        # below low: answer from memory
    (0.5, "single"), (1.1999, "single"),    # low <= SE < high: retrieve once
    (1.2, "multi"), (5.0, "multi"),         # SE >= high: retrieve, answer, retrieve again
])
def test_route_at_the_thresholds(value, decision):
    assert route(value, 0.5, 1.2) == decision


def test_equal_thresholds_leave_no_single_step_band():
    assert route(0.69, 0.7, 0.7) == "none" and route(0.7, 0.7, 0.7) == "multi"


@pytest.mark.parametrize("kwargs, field", [
    (dict(low=1.0, high=0.5), "high"), (dict(samples=1), "samples"), (dict(policy="sometimes"), "policy"),
    (dict(judge="nli"), "nli_model"), (dict(route_on="max"), "route_on"), (dict(mode="loose"), "mode"),
    (dict(passages=0), "passages"), (dict(loglik="max"), "loglik"), (dict(task="poetry"), "task"),
])
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field} must be"):
        SugarConfig(**kwargs)


# ---- the event stream, on a scripted backend (pure search logic) ----------------------------------

class ScriptedBackend:
    """Answers from a script, each token with logprob ``lp``; a chat model (open questions)."""

    use_chat_template = True

    def __init__(self, samples: list[str], greedy: str = "I do not know.", lp: float = -0.5):
        self.samples, self.greedy, self.lp = samples, greedy, lp
        self.info = ModelInfo("scripted", "-", 0, "cpu", "float32", 10, 4096, True, "none")
        self.prompts: list[list[str]] = []

    def render_prompt(self, question: str) -> str:
        return f"<user>{question}</user>"

    def apply_chat_template(self, messages: list[dict]) -> str:      # open questions ask through it
        return "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages)

    def generate(self, prompts, *, sampling, stop, max_new_tokens, seed, should_stop=None):
        self.prompts.append(list(prompts))
        if sampling.temperature == 0:
            texts = [("Maud Tinsley founded it." if "Notes:" in p else self.greedy) for p in prompts]
        else:
            texts = self.samples[:len(prompts)]
        return [Generation(t, tuple(TokenLogprob(0, w, self.lp) for w in t.split()), "stop") for t in texts]


def _sugar(backend, **cfg):
    cfg.setdefault("judge", "nli")
    cfg.setdefault("route_on", "rao")        # bounded: these tests reason in ln(clusters)
    cfg.setdefault("low", 0.5)
    cfg.setdefault("high", 1.2)
    return list(METHODS["sugar"].run(QUESTION, backend, config=SugarConfig(**{"nli_model": "-", **cfg}), seed=3,
                                     gold=GOLD))


@pytest.fixture
def same_judge(monkeypatch):
    """A deterministic judge: answers naming the same founder entail each other, others contradict."""
    class Founder:
        name, note = "founder", "same surname"

        def check(self, a, b, question=""):
            return S.ENTAILMENT if a.split()[-1] == b.split()[-1] else S.CONTRADICTION
    monkeypatch.setattr("engine.search.sugar._nli_judge", lambda model: Founder())


def test_agreeing_samples_answer_without_retrieval(same_judge):
    backend = ScriptedBackend(["It was Tinsley"] * 4 + ["Founded by Tinsley"] * 2, greedy="Maud Tinsley did.")
    events = _sugar(backend, samples=6)
    types = [e.type for e in events]
    assert types.count("clusters_formed") == 2 and types.count("entropy_measured") == 2
    strict = next(e for e in events if isinstance(e, E.ClustersFormed) and e.mode == "strict")
    assert strict.clusters == [[1, 2, 3, 4, 5, 6]] and strict.mass == [1.0]
    routed = next(e for e in events if isinstance(e, E.RetrievalRouted))
    assert routed.decision == "none" and routed.value == 0.0
    assert "passages_retrieved" not in types
    final = next(e for e in events if isinstance(e, E.FinalAnswer))
    assert final.answer == "Maud Tinsley did." and final.correct and final.rule == "retrieval:none"
    assert final.alternatives["without_retrieval"] == "Maud Tinsley did."


def test_scattered_samples_retrieve_twice_and_answer_from_both_steps(same_judge):
    backend = ScriptedBackend(["It was Crane", "It was Hale", "It was Farrow", "It was Lowther"])
    events = _sugar(backend, samples=4, low=0.5, high=1.2)
    measured = next(e for e in events if isinstance(e, E.EntropyMeasured) and e.mode == "strict")
    assert measured.rao == pytest.approx(math.log(4), abs=1e-6)         # four clusters of equal mass
    assert measured.discrete == pytest.approx(math.log(4), abs=1e-6)
    routed = next(e for e in events if isinstance(e, E.RetrievalRouted))
    assert routed.decision == "multi"
    steps = [e for e in events if isinstance(e, E.PassagesRetrieved)]
    assert [s.step for s in steps] == [1, 2] and steps[0].query == QUESTION
    assert steps[0].passages[0]["text"].startswith("The Saltmarsh School was founded in")
    assert not {p["id"] for p in steps[0].passages} & {p["id"] for p in steps[1].passages}
    nodes = {e.node: e for e in events if isinstance(e, E.NodeProposed)}
    final = next(e for e in events if isinstance(e, E.FinalAnswer))
    assert [nodes[n].action for n in final.path] == ["root", "sub_answer", "answer_retrieval"]
    assert final.correct and final.alternatives["without_retrieval"] == "I do not know."
    # the last prompt carries the notes of both steps
    last = backend.prompts[-1][0]
    assert all(p["text"] in last for s in steps for p in s.passages)


def test_a_middle_value_retrieves_once(same_judge):
    backend = ScriptedBackend(["It was Crane", "It was Hale", "It was Crane", "It was Crane"])
    events = _sugar(backend, samples=4, low=0.1, high=2.0)
    assert next(e for e in events if isinstance(e, E.RetrievalRouted)).decision == "single"
    assert [e.step for e in events if isinstance(e, E.PassagesRetrieved)] == [1]


def test_by_default_sugar_routes_on_its_papers_estimator(same_judge):
    # mc2023 = -(1/|C|) sum_C log sum_{i in C} p_i; six agreeing answers of mean logprob -0.5:
    # -(ln 6 - 0.5) = -1.29 < low = -1.0: no retrieval
    events = list(METHODS["sugar"].run(QUESTION, ScriptedBackend(["It was Tinsley"] * 6),
                                       config=SugarConfig(judge="nli", nli_model="-", samples=6), seed=0, gold=GOLD))
    routed = next(e for e in events if isinstance(e, E.RetrievalRouted))
    assert routed.estimator == "mc2023" and routed.value == pytest.approx(-(math.log(6) - 0.5), abs=1e-6)
    assert routed.decision == "none"


@pytest.mark.parametrize("policy, decision, retrievals", [("always", "single", 1), ("never", "none", 0)])
def test_fixed_policies_skip_the_samples(same_judge, policy, decision, retrievals):
    backend = ScriptedBackend(["unused"] * 4)
    events = _sugar(backend, policy=policy)
    assert not any(isinstance(e, (E.ClustersFormed, E.EntropyMeasured)) for e in events)
    routed = next(e for e in events if isinstance(e, E.RetrievalRouted))
    assert routed.decision == decision and routed.value is None
    assert sum(isinstance(e, E.PassagesRetrieved) for e in events) == retrievals
    assert all(len(p) == 1 for p in backend.prompts)                    # greedy calls only


def test_sweep_policy_answers_both_ways_and_follows_the_low_threshold(same_judge):
    backend = ScriptedBackend(["It was Crane", "It was Hale", "It was Crane", "It was Hale"])
    events = _sugar(backend, samples=4, policy="sweep", low=2.0, high=3.0)     # SE = ln 2 < low
    final = next(e for e in events if isinstance(e, E.FinalAnswer))
    assert set(final.alternatives) >= {"without_retrieval", "with_retrieval"}
    assert final.answer == final.alternatives["without_retrieval"]
    assert [e.step for e in events if isinstance(e, E.PassagesRetrieved)] == [1]
    assert next(e for e in events if isinstance(e, E.RetrievalRouted)).decision == "none"


def test_threshold_sweep_scores_every_threshold():
    from engine.search.sugar import threshold_sweep
    rows = threshold_sweep([0.1, 0.9, 0.5], [True, False, True], [False, True, False])
    assert [r["threshold"] for r in rows] == [0.1, 0.5, 0.9, 1.9]
    assert [r["retrieval_rate"] for r in rows] == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0])
    # t = 0.1: always retrieve (1 of 3 right); t = 0.9: only the uncertain one retrieves (3 of 3)
    assert [r["accuracy"] for r in rows] == pytest.approx([1 / 3, 2 / 3, 1.0, 2 / 3])
    with pytest.raises(ValueError, match="one SE and two answers"):
        threshold_sweep([0.1], [True], [])


def test_open_eval_counts_the_stated_answer_and_reports_contains_beside_it():
    from engine.demo_model.problems import Problem
    from engine.evaluation.evaluate import run_eval
    # the reply names the gold but states another answer: right only under the lenient check
    backend = ScriptedBackend(["unused"], greedy="Not 18 but 20.")
    problems = [Problem("q0", "velmora", "How many bridges does Velmora have?", "18", ())]
    summary = run_eval(backend, "sugar", "hard", 1, 0, SugarConfig(policy="never"), problems=problems)
    assert summary["accuracy"] == 0.0 and summary["accuracy_contains"] == 1.0 and summary["answered"] == 1.0
    assert summary["accuracy_by_rule"] == {"without_retrieval": 0.0}


def test_events_round_trip_through_json(same_judge):
    events = _sugar(ScriptedBackend(["It was Crane", "It was Hale", "It was Crane", "It was Hale"]), samples=4)
    assert [E.loads(e.dumps()).dumps() for e in events] == [e.dumps() for e in events]


# ---- real runs on the embedded model ---------------------------------------------------------------

@pytest.fixture(scope="module")
def problem():
    from engine.demo_model.problems import load_problems
    from engine.evaluation.evaluate import HELDOUT
    return load_problems(HELDOUT, "medium")[0]


@pytest.mark.slow
def test_se_on_the_embedded_model_clusters_final_answers(default_backend, problem, tmp_path):
    from engine.store import Store, record
    cfg = SEConfig(samples=6)
    events = list(METHODS["se"].run(problem.question, default_backend, config=cfg, seed=1, gold=str(problem.answer)))
    samples = [e for e in events if isinstance(e, E.NodeProposed) and e.action == "sample"]
    assert len(samples) == 6 and all(s.tokens for s in samples)
    for clusters in (e for e in events if isinstance(e, E.ClustersFormed)):
        assert clusters.judge == "math"
        assert sorted(n for c in clusters.clusters for n in c) == [s.node for s in samples]
        answers = {s.node: s.answer for s in samples}
        for c in clusters.clusters:                     # one final answer per cluster (numbers compare exactly)
            assert len({answers[n] for n in c}) == 1
        assert sum(clusters.mass) == pytest.approx(1.0, abs=1e-5)
    final = next(e for e in events if isinstance(e, E.FinalAnswer))
    strict = next(e for e in events if isinstance(e, E.ClustersFormed) and e.mode == "strict")
    top = strict.clusters[max(range(len(strict.mass)), key=strict.mass.__getitem__)][0]
    assert final.path == [E.ROOT, top]
    # same seed, same events; stored and read back byte for byte
    again = list(METHODS["se"].run(problem.question, default_backend, config=cfg, seed=1, gold=str(problem.answer)))
    assert [e.dumps() for e in again] == [e.dumps() for e in events]
    store = Store(tmp_path / "runs.db")
    sid = store.create_session(method="se", model="m", question=problem.question, gold=str(problem.answer),
                               config=cfg.to_json(), seed=1)
    record(store, sid, iter(events))
    assert [e.dumps() for e in store.events(sid)] == [e.dumps() for e in events]
    store.close()


@pytest.mark.slow
def test_sugar_open_mode_on_a_real_model_with_the_lm_judge(tiny_backend):
    cfg = SugarConfig(samples=3, task="open", judge="lm", low=0.0, high=0.0, passages=1, max_answer_tokens=8)
    events = list(METHODS["sugar"].run(QUESTION, tiny_backend, config=cfg, seed=0, gold=GOLD))
    clusters = next(e for e in events if isinstance(e, E.ClustersFormed))
    assert clusters.judge == "lm" and "weak judge" in clusters.judge_note
    assert next(e for e in events if isinstance(e, E.RetrievalRouted)).decision == "multi"
    assert events[-1].status == "done" and events[-1].generated_tokens > 0


# ---- CLI ------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_run_se_and_eval_sugar(tmp_path, capsys, tiny_llama_dir):
    db = str(tmp_path / "runs.db")
    assert main(["run", "se", "--question", "Mia has 3 apples and buys 4 more. How many now?", "--answer", "7",
                 "--samples", "3", "--db", db, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "se" and out["status"] == "done" and out["nodes"] == 4
    assert main(["eval", "--method", "sugar", "--model", str(tiny_llama_dir), "--n", "2", "--samples", "2",
                 "--passages", "1", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    for key in ("accuracy", "generated_tokens", "wall_s", "retrieval_rate", "auroc_error", "tier"):
        assert key in summary
    assert summary["tier"] == "velmora" and summary["n"] == 2
    assert main(["eval", "--method", "sugar", "--policy", "never", "--model", str(tiny_llama_dir), "--n", "1",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["retrieval_rate"] == 0.0
    assert main(["eval", "--method", "sugar", "--policy", "sweep", "--model", str(tiny_llama_dir), "--n", "2",
                 "--samples", "2", "--passages", "1", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    sweep = summary["sweep"]
    at_low = next((r for r in sweep if r["threshold"] >= 0.5), sweep[-1])      # the default low threshold
    assert summary["retrieval_rate"] == at_low["retrieval_rate"]
    assert sweep[0]["retrieval_rate"] == 1.0 and sweep[-1]["retrieval_rate"] == 0.0
    assert main(["eval", "--method", "sugar", "--n", "999"]) == 2
    assert "Velmora question set" in capsys.readouterr().err
