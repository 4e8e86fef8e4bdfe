"""Stop: checked inside generation (before every forward pass) and between model calls; a run
stopped in the served app ends at once, keeps its partial tree, and the model serves the next run."""

import time

import pytest

from app.main import LAUNCH_KWARGS, build_app
from engine.models.base import StopSpec, Stopped
from engine.sampling import SamplingConfig
from engine.store import Store
from engine.tree import Tree
from tests.conftest import free_port

QUESTION = "Mia has 23 apples. She buys 14 more apples. How many apples does Mia have now?"
SAMPLING = SamplingConfig(temperature=1.0)


def test_generate_polls_stop_before_every_forward_pass_and_abandons_the_generation(tiny_backend):
    calls = []

    def stop_on_fourth():
        calls.append(1)
        return len(calls) >= 4

    prompt = tiny_backend.render_prompt(QUESTION)
    with pytest.raises(Stopped):
        tiny_backend.generate([prompt, prompt], sampling=SAMPLING, stop=StopSpec(), max_new_tokens=200, seed=3,
                              should_stop=stop_on_fourth)
    assert len(calls) == 4                       # three tokens were sampled, the fourth never was


def test_a_stopped_generation_leaves_the_model_and_its_prefix_cache_as_they_were(tiny_backend):
    prompt = tiny_backend.render_prompt(QUESTION)
    tiny_backend.configure_prefix_cache(16)
    try:
        def gen(**kw):
            return [g.to_json() for g in tiny_backend.generate([prompt] * 2, sampling=SAMPLING, stop=StopSpec(),
                                                               max_new_tokens=12, seed=5, **kw)]
        tiny_backend.reset_prefix_cache()
        before = gen()
        tiny_backend.reset_prefix_cache()
        with pytest.raises(Stopped):
            gen(should_stop=iter([False] * 6 + [True]).__next__)
        assert gen() == before                   # nothing half-written was cached or left behind
    finally:
        tiny_backend.configure_prefix_cache(None)


@pytest.mark.parametrize("method", ["mcts", "rstar", "leco", "sc", "se"])
def test_stop_mid_generation_ends_every_method_with_a_stopped_run(tiny_backend, method):
    from engine.search import METHODS
    polls = []

    def stop_after(n=25):
        polls.append(1)
        return len(polls) > n

    cfg = METHODS[method].config()
    events = list(METHODS[method].run(QUESTION, tiny_backend, config=cfg, seed=0, should_stop=stop_after))
    assert events[-1].type == "run_finished" and events[-1].status == "stopped"
    assert len(polls) == 26                      # not polled again after it said stop


def _served(backend, tmp_path):
    store = Store(tmp_path / "runs.db")
    demo = build_app(backend, store)
    demo.queue()
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                            **LAUNCH_KWARGS)
    return demo, url, store


def _search_args(rollouts):
    # question, method, rollouts, children, c, max depth, temperature, min-p, reward, final rule,
    # samples, beam width, seed (the rest keep the page's defaults)
    return dict(question=QUESTION, method="mcts", rollouts=rollouts, children=3, c=2.0, max_depth=8,
                temperature=1.0, min_p=0.0, reward="self_consistency", final_rule="majority", samples=3,
                beam_width=2, seed=0)


@pytest.mark.slow
def test_stop_in_the_served_app_ends_a_long_search_at_once_and_frees_the_model(tiny_backend, tmp_path):
    from gradio_client import Client

    demo, url, store = _served(tiny_backend, tmp_path)
    client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
    try:
        job = client.submit(**_search_args(200), api_name="/run_search")     # the slider's most
        deadline = time.monotonic() + 60

        def grown():                                                  # a few nodes are on screen
            rows = store.list_sessions()
            return job.outputs() and rows and rows[0]["events"] >= 12

        while not grown() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert grown(), "the search never grew a tree"
        t0 = time.perf_counter()
        client.predict(api_name="/stop_search")
        job.result(timeout=30)
        latency = time.perf_counter() - t0
        print(f"\ncancel latency in the served app: {latency * 1000:.0f} ms")
        (row,) = store.list_sessions()
        assert row["status"] == "stopped"
        tree = Tree.fold(store.events(row["session_id"]))
        assert len(tree) > 1 and tree.finished.status == "stopped"     # the partial tree is kept
        assert latency < 5, f"Stop took {latency:.1f} s"                # vs. minutes for 200 rollouts
        # the model is free: the next run starts and finishes
        client.predict(**_search_args(2), api_name="/run_search")
        assert [r["status"] for r in store.list_sessions()] == ["done", "stopped"]
    finally:
        client.close()
        demo.close(verbose=False)
        store.close()


def test_stop_in_the_generate_tab_ends_the_generation_between_tokens(tiny_backend):
    from app.generate_tab import RunControl, run_generation
    control = RunControl()
    polls = []
    control.stopped = lambda: polls.append(1) or len(polls) > 5      # Stop pressed after 5 tokens
    html, summary = run_generation(tiny_backend, QUESTION, 1.0, 0, 1.0, 0.0, "transformers", 400, 0,
                                   control=control)
    assert summary == "Stopped." and len(polls) == 6
    html, summary = run_generation(tiny_backend, QUESTION, 1.0, 0, 1.0, 0.0, "transformers", 8, 0,
                                   control=RunControl())
    assert summary.startswith("**8** tokens")                        # the next generation runs in full
