"""The app's first screen: callbacks as plain functions, then the real app served on loopback
and driven through gradio_client. Real parts only: the tiny random Llama from conftest."""

from __future__ import annotations

import math
import re
import socket
import threading
import time
import urllib.request

import gradio as gr
import pytest
from conftest import free_port

from app import figures
from app.generate_tab import (SOLUTION_STOP, gold_for, gold_markdown, make_sampling, new_pick_state,
                              pick_random_problem, run_generation, summary_markdown)
from app.main import LAUNCH_KWARGS, ServeError, build_app, header_html, serve
from engine.demo_model.problems import load_problems
from engine.evaluation.evaluate import HELDOUT
from engine.models.base import Generation, ModelLoadError, TokenLogprob

GREEDY_ARGS = dict(temperature=0.0, top_k=0, top_p=1.0, min_p=0.0, order="transformers",
                   max_new_tokens=12, seed=0)
SPAN = re.compile(r'<span class="ts-tok[^"]*" style="background-color:#[0-9a-f]{6}" data-p="[0-9.]+" '
                  r'data-tip="[^"]*">')


def _gen(backend, question, picked=None, **overrides):
    args = {**GREEDY_ARGS, **overrides}
    return run_generation(backend, question, args["temperature"], args["top_k"], args["top_p"],
                          args["min_p"], args["order"], args["max_new_tokens"], args["seed"], picked)


@pytest.fixture(scope="module")
def hard():
    return load_problems(HELDOUT, "hard")


# ---- random problems and the gold answer ----------------------------------------------------

def test_random_problem_fills_question_and_gold(hard):
    question, gold, state = pick_random_problem(hard, new_pick_state(), tier="hard")
    problem = next(p for p in hard if p.id == state["id"])
    assert question == problem.question and state["answer"] == problem.answer
    assert gold.startswith("Gold answer:") and f"**{problem.answer}**" in gold
    assert state["clicks"] == 1
    # the counter seeds the next pick: replaying a state gives the same problem, the next click moves on
    assert pick_random_problem(hard, new_pick_state(), tier="hard")[0] == question
    picks = {question}
    for _ in range(5):
        question, _, state = pick_random_problem(hard, state, tier="hard")
        picks.add(question)
    assert len(picks) > 1 and state["clicks"] == 6


def test_random_problem_does_not_mutate_the_given_state(hard):
    state = new_pick_state()
    pick_random_problem(hard, state)
    assert state == new_pick_state()


def test_empty_problem_list_is_a_gr_error():
    with pytest.raises(gr.Error, match="no held-out easy problems"):
        pick_random_problem([], None, tier="easy")


def test_gold_is_dropped_once_the_question_is_edited(hard):
    question, _, state = pick_random_problem(hard, None)
    assert gold_for(question, state) == state["answer"]
    assert gold_for("  " + question + "\n", state) == state["answer"]       # whitespace is no edit
    assert gold_for(question + " Then he buys 1 more.", state) is None
    assert "no longer applies" in gold_markdown(question + "!", state)
    assert gold_markdown("anything", new_pick_state()) == ""
    assert gold_for(question, None) is None


# ---- the token view ----------------------------------------------------------------------

def _tok(text, p, alts=()):
    return TokenLogprob(1, text, math.log(p), tuple((t, math.log(q)) for t, q in alts))


def test_token_html_escapes_marks_newlines_and_lists_alternatives():
    gen = Generation("<b>&\n${x}{{y}}", (_tok("<b>", 0.9, [("<b>", 0.9), ("'\"", 0.05)]),
                                         _tok("&\n", 0.2, [("x", 0.5), ("&\n", 0.2)]),
                                         _tok("${x}{{y}}", 0.5)), "length")
    out = figures.generation_html(gen)
    assert len(SPAN.findall(out)) == 3
    assert "<b>" not in out and "&lt;b&gt;" in out
    assert "${" not in out and "{{" not in out
    assert "&amp;<br>" in out and "ts-nl" in out
    assert re.search(r"&#x27;&#x27;&quot;&#x27; +0\.050", out)   # the alternative '" and its probability
    assert "p = 0.900" in out and "\\n" in out                  # newline spelled out in the tooltip


def test_tooltip_marks_the_chosen_token_once():
    tok = TokenLogprob(7, "\ufffd", math.log(0.4), (("\ufffd", math.log(0.5)), ("\ufffd", math.log(0.4)),
                                                   ("a", math.log(0.1))))
    lines = figures.token_tooltip(tok).splitlines()
    assert [("chosen" in line) for line in lines[2:]] == [False, True, False]
    sampled = TokenLogprob(8, "b", math.log(0.01), (("a", math.log(0.9)),))
    assert "not among these 1" in figures.token_tooltip(sampled)


def test_colour_scale_is_monotone_from_warm_to_cool():
    colours = [figures.prob_colour(p / 10) for p in range(11)]
    reds = [int(c[1:3], 16) for c in colours]
    blues = [int(c[5:7], 16) for c in colours]
    assert reds[0] > reds[-1] and blues[0] < blues[-1]
    assert figures.prob_colour(-1) == colours[0] and figures.prob_colour(2) == colours[-1]
    assert figures.prob_colour(float("nan")) == colours[0]


def test_stop_string_tokens_are_marked():
    gen = Generation("7.\nQuestion:", (_tok("7", 0.9), _tok(".", 0.9), _tok("\nQu", 0.4),
                                       _tok("estion", 0.9), _tok(":", 0.9)), "stop", "\nQuestion:")
    spans = SPAN.findall(figures.generation_html(gen))
    assert ["ts-stop" in s for s in spans] == [False, False, True, True, True]


def test_end_of_sequence_and_empty_tokens_stay_visible():
    gen = Generation("7", (_tok("7", 0.9), _tok("", 0.5), _tok("</s>", 0.8)), "eos")
    spans = SPAN.findall(figures.generation_html(gen))
    assert "ts-blank" in spans[1] and "ts-special" in spans[2] and "end-of-sequence" in spans[2]


def test_summary_counts_answer_and_verdict():
    gen = Generation("Step 1: 2 + 3 = 5\nThe answer is 5.\n", (_tok("a", 0.5), _tok("b", 1.0)), "eos")
    s = summary_markdown(gen, 5)
    assert "**2** tokens" in s and "end of sequence" in s and "**0.750**" in s
    assert "answer: **5**" in s and "✓ correct" in s
    assert "✗ incorrect" in summary_markdown(gen, 6)
    assert "correct" not in summary_markdown(gen, None)
    assert "none found" in summary_markdown(Generation("no", (_tok("no", 0.5),), "length"), 1)


# ---- generation through the real backend ---------------------------------------------------

def test_generate_returns_one_span_per_token(tiny_backend, hard):
    question, _, picked = pick_random_problem(hard, None)
    out, summary = _gen(tiny_backend, question, picked)
    gen = tiny_backend.generate([tiny_backend.render_prompt(question)],
                                sampling=make_sampling(0, 0, 1, 0, "transformers"),
                                stop=SOLUTION_STOP, max_new_tokens=12, seed=0)[0]
    assert len(SPAN.findall(out)) == len(gen.tokens) == 12
    assert summary.startswith("**12** tokens") and "max new tokens reached" in summary
    assert f"(gold {picked['answer']}, {picked['id']})" in summary   # the shown problem's gold is judged
    for t in gen.tokens[:3]:                                      # each tooltip lists the alternatives
        for alt, lp in t.top:
            assert f"{figures._escape(figures._visible(alt))}" in out
            assert f"{math.exp(lp):.3f}" in out
    edited = _gen(tiny_backend, question + " How many now?", picked)[1]
    assert "gold" not in edited and "correct" not in edited


def test_sampled_generation_is_seeded(tiny_backend):
    a = _gen(tiny_backend, "Mia has 5 apples.", temperature=1.0, top_p=0.9, min_p=0.05,
             order="llama.cpp", seed=7)
    b = _gen(tiny_backend, "Mia has 5 apples.", temperature=1.0, top_p=0.9, min_p=0.05,
             order="llama.cpp", seed=7)
    assert a == b


@pytest.mark.parametrize("question", ["", "   \n"])
def test_empty_question_is_a_gr_error(tiny_backend, question):
    with pytest.raises(gr.Error, match="question is empty"):
        _gen(tiny_backend, question)


@pytest.mark.parametrize("field, value", [("temperature", -1), ("temperature", float("nan")),
                                          ("top_k", 2.5), ("top_p", 0), ("min_p", 1.5),
                                          ("order", "nope"), ("max_new_tokens", 0),
                                          ("max_new_tokens", None), ("seed", -3)])
def test_bad_sampling_values_are_gr_errors_naming_the_field(tiny_backend, field, value):
    with pytest.raises(gr.Error) as err:
        _gen(tiny_backend, "Mia has 5 apples. How many apples does Mia have?", **{field: value})
    assert field in str(err.value) and "Traceback" not in str(err.value)


def test_prompt_longer_than_the_context_is_a_gr_error(tiny_backend):
    with pytest.raises(gr.Error, match="reads at most"):
        _gen(tiny_backend, "Mia has 5 apples.", max_new_tokens=tiny_backend.info.context_length)


def test_header_names_the_model(tiny_backend):
    out = header_html(tiny_backend)
    assert tiny_backend.info.describe() in out and "context 512 tokens" in out


def test_build_app_reads_the_given_problems_file(tiny_backend, hard, tmp_path):
    import json
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(p.to_json()) + "\n" for p in hard[:2]))
    demo = build_app(tiny_backend, problems_path=path)
    # a superset: other views add their own tabs
    assert {"search", "generate", "sessions", "leco", "sampling", "se", "compare", "experiments"} <= set(
        demo.thoughtscope_tabs)
    fns = {f.api_name: f.fn for f in demo.fns.values()}
    assert {"generate", "random_easy", "random_medium", "random_hard"} <= set(fns)
    question, gold, _ = fns["random_hard"](new_pick_state())
    assert question in {p.question for p in hard[:2]} and gold.startswith("Gold answer:")
    with pytest.raises(gr.Error, match="no held-out easy problems"):
        fns["random_easy"](new_pick_state())


# ---- the served app ------------------------------------------------------------------------



@pytest.fixture(scope="module")
def served(tiny_backend):
    demo = build_app(tiny_backend)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(),
                            prevent_thread_lock=True, **LAUNCH_KWARGS)
    yield demo, url
    demo.close(verbose=False)


@pytest.mark.slow
def test_served_app_generates_through_the_client(served):
    from gradio_client import Client

    _, url = served
    client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
    try:
        question, gold = client.predict(api_name="/random_medium")
        assert question and gold.startswith("Gold answer:")
        out, summary = client.predict(question, 0.0, 0, 1.0, 0.0, "transformers", 10, 0, api_name="/generate")
        assert len(SPAN.findall(out)) == 10 and summary.startswith("**10** tokens")
        with pytest.raises(Exception, match="top_k must be a whole number"):
            client.predict(question, 0.0, 2.5, 1.0, 0.0, "transformers", 10, 0, api_name="/generate")
    finally:
        client.close()


@pytest.mark.slow
def test_served_page_is_local_and_titled(served, tiny_backend):
    demo, url = served
    assert url.startswith("http://127.0.0.1:")
    assert not demo.share
    with urllib.request.urlopen(url, timeout=10) as r:
        page = r.read().decode()
    assert f"ThoughtScope — {tiny_backend.info.name}" in page


@pytest.mark.slow
def test_serve_loads_the_model_prints_the_url_and_serves(tiny_llama_dir, capsys, tmp_path):
    from engine.sample_runs import SAMPLES
    from engine.store import Store
    port = free_port()
    db = tmp_path / "runs.db"
    thread = threading.Thread(target=serve, args=(str(tiny_llama_dir),),
                              kwargs=dict(port=port, device="cpu", db=str(db)), daemon=True)
    thread.start()
    out, deadline = "", time.monotonic() + 60
    while f"http://127.0.0.1:{port}" not in out and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.1)
        out += capsys.readouterr().out
    demo = next(d for d in gr.Blocks.get_instances() if d.is_running and d.server_port == port)
    try:
        lines = [line for line in out.splitlines() if line.strip()]
        samples = sorted(SAMPLES.glob("*.json"))
        assert len(lines) == (2 if samples else 1), out
        assert "ThoughtScope is running at http://127.0.0.1:" in lines[-1] and tiny_llama_dir.name in lines[-1]
        if samples:                          # a new database starts with the recorded sample runs
            assert lines[0].startswith(f"Imported {len(samples)} sample runs")
            with Store(db) as store:
                assert len(store.list_sessions()) == len(samples)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert r.status == 200
        assert not demo.share
    finally:
        demo.close(verbose=False)
    thread.join(timeout=10)
    assert not thread.is_alive()            # serve returns once the server stops


def test_serve_propagates_model_load_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="not a model folder"):
        serve(str(tmp_path), port=free_port(), device="cpu")


@pytest.mark.slow
def test_serve_on_a_taken_port_is_one_clear_error(tiny_llama_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServeError, match=f"cannot serve on 127.0.0.1:{port}.*--port"):
            serve(str(tiny_llama_dir), port=port, device="cpu")
