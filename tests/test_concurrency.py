"""Many searches at once: K problems' searches whose model calls share forward passes give
each search the events it yields alone (tokens, texts and choices exactly, floats within the
golden tolerance, FLOAT_ATOL = 1e-4: a row in a bigger batch is not summed in the same order),
on the embedded model and a random-initialised real architecture; calls joining a running batch
mid-way, and one stopped while others run, are unaffected; bad settings get one-line errors."""

import subprocess
import sys
import threading

import pytest

from engine.evaluation.concurrent import map_concurrently
from engine.evaluation.evaluate import eval_problems, run_eval
from engine.golden import diff_events
from engine.models.base import StopSpec, Stopped
from engine.models.batching import Batcher
from engine.models.decode import Decoder, Request
from engine.models.registry import DEFAULT_MODEL, load_backend
from engine.models.transformers_backend import TransformersBackend
from engine.sampling import GREEDY, SamplingConfig
from engine.search import METHODS
from llama_server import llama_server  # noqa: F401 (the fixture: a real llama.cpp server, skipped where none is built)

WARM = SamplingConfig(temperature=0.8)
STEP = StopSpec(("\n",), eos=False)


@pytest.fixture(scope="module")
def embedded():
    return load_backend(DEFAULT_MODEL, prefix_cache_mb=64)   # the CLI runs with the cache on


def _events(backend, method: str, problems, k: int, **cfg) -> list[list[dict]]:
    m = METHODS[method]
    config = m.config(**cfg)
    return map_concurrently(lambda b, i, p: [e.to_json() for e in m.run(p.question, b, config=config, seed=40 + i,
                                                                         gold=str(p.answer))],
                            backend, problems, k)


def _same_runs(alone, together) -> None:
    assert len(alone) == len(together)
    for i, (a, t) in enumerate(zip(alone, together)):
        assert diff_events(a, t) is None, f"search {i}: {diff_events(a, t)}"


@pytest.mark.slow
def test_four_mcts_searches_at_once_yield_the_events_each_yields_alone(embedded):
    problems = eval_problems("mcts", "hard", 6)
    alone = _events(embedded, "mcts", problems, 1, rollouts=6)
    together = _events(embedded, "mcts", problems, 4, rollouts=6)
    _same_runs(alone, together)
    # the prefix cache is per search: each search reused exactly what it reuses alone
    assert [a[-1]["reused_tokens"] for a in alone] == [t[-1]["reused_tokens"] for t in together]
    assert all(a[-1]["reused_tokens"] > 0 for a in alone)


@pytest.mark.slow
@pytest.mark.parametrize("method,cfg", [("beam", dict(beam_width=2, children=2, max_depth=3)),
                                        ("bon", dict(samples=3))])
def test_other_searches_at_once_on_a_random_llama_yield_their_events_alone(tiny_llama_dir, method, cfg):
    b = TransformersBackend.load(tiny_llama_dir, prefix_cache_mb=16)
    problems = eval_problems(method, "easy", 3)
    _same_runs(_events(b, method, problems, 1, **cfg), _events(b, method, problems, 3, **cfg))


@pytest.mark.slow
def test_eval_with_concurrency_4_gives_the_per_problem_answers_of_concurrency_1(embedded):
    cfg = METHODS["mcts"].config(rollouts=6)
    one = run_eval(embedded, "mcts", "hard", 8, 0, cfg)
    four = run_eval(embedded, "mcts", "hard", 8, 0, cfg, concurrency=4)
    key = [(r["problem_id"], r["answer"], r["generated_tokens"], r["nodes"], r["triage"]) for r in one["results"]]
    assert key == [(r["problem_id"], r["answer"], r["generated_tokens"], r["nodes"], r["triage"]) for r in four["results"]]
    assert (one["concurrency"], four["concurrency"]) == (1, 4)
    # where the decoding time went: a pass at 4 at once carries the rows of several searches, so
    # there are fewer passes of more rows (a step with nothing to feed runs no pass, so merged
    # steps can only save passes)
    d1, d4 = one["decoding"], four["decoding"]
    assert 0 < d4["passes"] < d1["passes"] and d4["rows_mean"] > d1["rows_mean"] >= 1
    assert set(d1["seconds"]) == {"joins", "forward", "sampling", "stop_checks", "leaves"}
    assert all(v >= 0 for v in [*d1["seconds"].values(), *d4["seconds"].values()])
    assert d1["seconds"]["forward"] > 0 and d4["columns_mean"] > 0
    # one search's 3 rows keep plain attention; merged passes read shared prompts once (cascade.py)
    assert d1["cascade_passes"] == 0 < d4["cascade_passes"] <= d4["passes"]


def _alone(b, prompts, sampling, seed, n=24):
    return b.generate(prompts, sampling=sampling, stop=STEP, max_new_tokens=n, seed=seed)


def _tokens(gens):
    return [(g.token_ids, g.text, g.stop_reason, g.prompt_tokens, g.reused_tokens) for g in gens]


def test_a_call_joining_a_running_batch_midway_gets_the_tokens_it_gets_alone(tiny_qwen2_dir):
    b = TransformersBackend.load(tiny_qwen2_dir)
    first, second = ["Question: 1 + 2 =", "Question: ab"], ["Question: what is 7 * 8?", "Q", "Question: 9"]
    want_a, want_b = _alone(b, first, WARM, 5), _alone(b, second, GREEDY, 9, n=30)
    a = Request([b.encode(p) for p in first], WARM, STEP, 24, 5)
    c = Request([b.encode(p) for p in second], GREEDY, STEP, 30, 9)
    d = Decoder(b)
    d.admit([a])
    for _ in range(7):                  # a has drawn 7 tokens when c joins
        d.step()
    d.admit([c])
    while not d.step():
        pass
    assert _tokens(a.result) == _tokens(want_a)
    assert _tokens(c.result) == _tokens(want_b)
    for got, want in zip(a.result + c.result, want_a + want_b):
        assert got.logprobs == pytest.approx(want.logprobs, abs=1e-4)


def test_a_stopped_call_leaves_the_batch_and_the_others_finish_as_alone(tiny_llama_dir):
    b = TransformersBackend.load(tiny_llama_dir, prefix_cache_mb=8)
    prompts = ["Question: 3 + 4 =", "Question: 10 - 2 ="]
    want = _alone(b, prompts, WARM, 3, n=40)
    b.reset_prefix_cache()
    stop_now = threading.Event()
    out, errors = {}, {}
    with Batcher(b) as batcher:
        def run(name, client, **kw):
            try:
                out[name] = client.generate(prompts, sampling=WARM, stop=STEP, max_new_tokens=40, seed=3, **kw)
            except Stopped as e:
                errors[name] = e
        threads = [threading.Thread(target=run, args=("kept", batcher.client())),
                   threading.Thread(target=run, args=("stopped", batcher.client()), kwargs={"should_stop": stop_now.is_set})]
        stop_now.set()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert set(errors) == {"stopped"} and _tokens(out["kept"]) == _tokens(want)


def test_concurrency_settings_are_checked_with_a_message_naming_them(embedded):
    with pytest.raises(ValueError, match="concurrency must be a whole number from 1 to 256, got 0"):
        run_eval(embedded, "mcts", "hard", 2, 0, METHODS["mcts"].config(), concurrency=0)
    with pytest.raises(ValueError, match="concurrency must be 1 for method 'greedy': it batches problems"):
        run_eval(embedded, "greedy", "hard", 2, 0, None, concurrency=2)
    with pytest.raises(ValueError, match="max_rows must be a whole number >= 1, got 0"):
        Batcher(embedded, max_rows=0)
    r = subprocess.run([sys.executable, "-m", "engine.cli", "eval", "--method", "sc", "--concurrency", "4"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "thoughtscope: error: concurrency must be 1 for method 'sc': it batches problems already (use --batch-size)"]


@pytest.mark.slow
def test_through_a_server_k_searches_run_from_k_threads_with_the_answers_of_one_at_a_time(llama_server):  # noqa: F811
    from engine.evaluation.concurrent import mergeable
    b = load_backend(server=llama_server, max_solution_tokens=48)
    assert not mergeable(b)           # the server batches: no merging layer in front of it
    cfg = METHODS["bon"].config(samples=2)
    one = run_eval(b, "bon", "easy", 3, 0, cfg)
    three = run_eval(b, "bon", "easy", 3, 0, cfg, concurrency=3)
    assert [(r["problem_id"], r["answer"]) for r in one["results"]] == \
           [(r["problem_id"], r["answer"]) for r in three["results"]]
