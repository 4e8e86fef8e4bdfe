"""The `thoughtscope` command: JSON contracts, and one-line errors with exit code 2."""

import json
import os
import subprocess
import sys

import pytest

ENV = {**os.environ, "THOUGHTSCOPE_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                          env=ENV, timeout=timeout)


def assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for n in needles:
        assert n in lines[0]


@pytest.mark.parametrize("args,needles", [
    (["eval", "--tier", "impossible"], ["--tier", "impossible"]),
    (["eval", "--n", "-4"], ["--n"]),
    (["eval", "--n", "5000"], ["n must be"]),
    (["eval", "--temperature", "nan"], ["--temperature"]),
    (["generate", "--prompt", "hi", "--top-p", "2"], ["--top-p"]),
    (["generate", "--prompt", "   "], ["empty"]),
    (["generate", "--prompt", "hi", "--model", "/no/such/model"], ["does not exist"]),
    (["generate", "--prompt", "hi", "--model", "nobody/no-such-model"], ["no network"]),
    (["frobnicate"], ["invalid choice"]),
    (["serve", "--port", "99999"], ["--port"]),
])
def test_bad_input_is_one_line_and_exit_2(args, needles):
    assert_one_line_error(run(*args), *needles)


def test_models_json_lists_both_embedded_models():
    proc = run("models", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert set(rows) == {"arith-llama-3m", "smollm2-135m"}
    assert rows["arith-llama-3m"]["default"] and rows["arith-llama-3m"]["available"]
    assert rows["arith-llama-3m"]["size_mb"] < 25


def test_generate_json_has_per_token_logprobs(tiny_llama_dir):
    proc = run("generate", "--model", str(tiny_llama_dir), "--prompt", "Tom has 3 pens.",
               "--max-new-tokens", "6", "--temperature", "0.9", "--min-p", "0.1", "--seed", "4", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert len(out["tokens"]) == 6 and out["stop_reason"] == "length"
    token_id, text, logprob, top = out["tokens"][0]
    assert logprob <= 0 and len(top) == 5
    assert out["sampling"]["min_p"] == 0.1 and out["seed"] == 4
    again = json.loads(run("generate", "--model", str(tiny_llama_dir), "--prompt", "Tom has 3 pens.",
                           "--max-new-tokens", "6", "--temperature", "0.9", "--min-p", "0.1",
                           "--seed", "4", "--json").stdout)
    assert again["tokens"] == out["tokens"]


@pytest.mark.parametrize("method", ["greedy", "sc"])
def test_eval_json_keys(method):
    proc = run("eval", "--method", method, "--tier", "easy", "--n", "4", "--samples", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for key in ("method", "model", "tier", "n", "accuracy", "generated_tokens", "wall_s"):
        assert key in out
    assert out["method"] == method and out["n"] == 4 and out["model"] == "arith-llama-3m"
    assert 0 <= out["accuracy"] <= 1 and out["generated_tokens"] > 0
    # stderr is a pipe here, as in a log file: progress comes as plain lines, the last one complete
    assert proc.stderr.strip().splitlines()[-1].startswith(f"{method} easy: 4/4 problems, ")


def test_eval_on_fresh_problems_names_them_and_skips_the_held_out_ones():
    from engine.demo_model import problems as P
    from engine.evaluation.evaluate import HELDOUT, eval_problems
    fresh = eval_problems("greedy", "hard", 50, fresh=777)
    held = {p.question for p in P.load_problems(HELDOUT)}
    assert len(fresh) == 50 and not {p.question for p in fresh} & held
    assert [p.question for p in fresh] == [p.question for p in P.generate("hard", 50, 777)]
    # the held-out file's own generator seed: its problems are skipped, the stream goes on past them
    again = eval_problems("greedy", "easy", 5, fresh=P.HELDOUT_SEED)
    assert len(again) == 5 and not {p.question for p in again} & held
    proc = run("eval", "--method", "greedy", "--tier", "easy", "--n", "3", "--fresh", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["problems"] == "fresh:5" and out["n"] == 3
    held_out = json.loads(run("eval", "--method", "greedy", "--tier", "easy", "--n", "3", "--json").stdout)
    assert held_out["problems"] == "held-out"
    bad = run("eval", "--method", "sugar", "--n", "3", "--fresh", "5")
    assert bad.returncode == 2 and "Velmora" in bad.stderr and "Traceback" not in bad.stderr



def test_fresh_problems_can_have_more_events_than_their_tier():
    from engine.evaluation.evaluate import eval_problems
    longer = eval_problems("greedy", "hard", 40, fresh=888, events=(6, 7))
    assert {len(p.steps) for p in longer} == {6, 7}
    assert all(p.tier == "hard" and p.id.startswith("fresh888-hard-events6-7-") for p in longer)
    assert all(p.answer == p.steps[-1].result and max(s.result for s in p.steps) <= 999 for p in longer)
    plain = eval_problems("greedy", "hard", 40, fresh=888)
    assert not {p.question for p in plain} & {p.question for p in longer}
    proc = run("eval", "--method", "greedy", "--tier", "easy", "--n", "2", "--fresh", "5", "--events", "3", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["problems"] == "fresh:5:events 3-3"
    for bad_args, says in ((("--events", "3", "3"), "--events needs --fresh"),
                           (("--fresh", "5", "--events", "4", "2"), "1 <= LO <= HI")):
        bad = run("eval", "--method", "greedy", "--n", "2", *bad_args)
        assert bad.returncode == 2 and says in bad.stderr and "Traceback" not in bad.stderr

def test_progress_in_a_log_is_a_line_at_most_every_interval(monkeypatch):
    import io
    from engine.cli import progress as P
    clock = iter([0.0, 1.0, 31.0, 32.0])
    monkeypatch.setattr(P.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    with P.progress(3, "rstar hard", file=out) as bar:
        bar.update()                   # at 1 s: too soon for a line
        bar.update()                   # at 31 s: a line with an estimate of what is left
        bar.update()                   # at 32 s: the last one always prints
    assert out.getvalue().splitlines() == ["rstar hard: 2/3 problems, 31 s, about 16 s left",
                                           "rstar hard: 3/3 problems, 32 s"]


def test_run_method_help_lists_that_methods_own_settings(capsys):
    from engine.cli import main
    with pytest.raises(SystemExit):
        main(["run", "sra-mcts", "--help"])
    out = capsys.readouterr().out
    assert "--end-gate" in out and "--reflection" in out and "--question" in out and "--format" in out
    assert "--beam-width" not in out and "--cut-mode" not in out          # other methods' settings: not listed
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert "sra-mcts" in out and "SRA-MCTS (reflection + self-evaluation)" in out
